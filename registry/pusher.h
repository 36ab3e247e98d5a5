// Pusher: uploads blobs and manifests to a registry, as containerd's pusher and
// docker push do: HEAD first (skip what the registry has), cross-repository mounts,
// monolithic or chunked uploads that resume from the registry's Range after a failed
// chunk, and a digest check on every answer that names one.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "base/digest.h"
#include "base/error.h"
#include "oci/descriptor.h"
#include "oci/reference.h"
#include "registry/http_client.h"
#include "registry/progress.h"
#include "registry/resolver.h"

namespace strata::registry {

// Supplies a blob's bytes for upload: a fresh reader positioned at `offset` that yields
// the bytes from there to the end. Called again to replay a request (401, redirect) or to
// resume after a failed chunk, so it must be able to start at any offset < the blob size.
// A reader error with code Unavailable counts as a transient failure (the chunk is retried
// as if the connection dropped); any other error aborts the push.
using BlobOpener = std::function<Result<BodyReader>(uint64_t offset)>;

struct PushOptions {
  // 0 = one monolithic PUT; else PATCH chunks of this many bytes, then PUT ?digest=.
  uint64_t chunk_size = 0;
  // A repository path ("library/alpine") on the same registry that already holds the
  // blob: a cross-repository mount is tried before uploading.
  std::optional<std::string> mount_from;
  ProgressSink progress;  // null = nobody watching
  BlobKind kind = BlobKind::kLayer;
};

enum class BlobPushOutcome { kExists, kMounted, kUploaded };
std::string_view BlobPushOutcomeName(BlobPushOutcome outcome);  // "exists", "mounted", "uploaded"

// Thread-safe: PushBlob, PushManifest and BlobExists may run concurrently (for different
// blobs; two concurrent uploads of one blob both succeed, one of them needlessly). Holds no
// state of its own. REQUIRES: `resolver` outlives the Pusher.
class Pusher {
 public:
  explicit Pusher(Resolver& resolver) : resolver_(resolver) {}

  // Makes `blob` exist in `target`'s repository (tag and digest of `target` are ignored).
  // HEAD first: present with the right size -> kExists, nothing uploaded. Then, with
  // options.mount_from, POST uploads/?mount=&from= (201 -> kMounted; 202 -> upload into
  // the session it opened). Otherwise POST uploads/ and a monolithic PUT, or PATCH chunks
  // that always follow the newest Location; after a failed chunk (transport error, 408,
  // 429, 5xx) the registry's Range says where to resume, and when the registry lost the
  // session a new one starts from byte 0. Transient failures in a row are bounded by the
  // resolver's RetryPolicy. The final 201's Docker-Content-Digest, when present, must equal
  // blob.digest. Errors say "push blob <digest> to <registry/repository>: ...":
  //   FailedPrecondition for the registry's refusals (DIGEST_INVALID when the bytes do not
  //   hash to blob.digest, "unauthorized: <host>" from auth, size mismatch on HEAD);
  //   Unavailable when transient failures ran out; the opener's errors.
  // Progress: kUploading with a growing offset, then kDone; or kExists / kMounted / kFailed.
  Result<BlobPushOutcome> PushBlob(const oci::Reference& target, const oci::Descriptor& blob, const BlobOpener& open,
                                   const PushOptions& options = {});

  // PUT /v2/<name>/manifests/<tag_or_digest> with Content-Type `media_type` and exactly
  // `bytes` ("" = by its sha256 digest). Returns sha256(bytes). Expects 201; a
  // Docker-Content-Digest in the answer must equal the returned digest. InvalidArgument
  // when `tag_or_digest` is a digest other than sha256(bytes); registry refusals
  // (MANIFEST_BLOB_UNKNOWN, MANIFEST_INVALID, ...) as FailedPrecondition or NotFound.
  Result<Digest> PushManifest(const oci::Reference& target, std::string_view media_type, std::string_view bytes,
                              std::string_view tag_or_digest);

  // Whether `target`'s repository has `blob` (HEAD). FailedPrecondition when the registry
  // has it with another size (the descriptor is wrong).
  Result<bool> BlobExists(const oci::Reference& target, const oci::Descriptor& blob);

 private:
  class Upload;

  Result<bool> BlobExistsOn(const RegistryHost& host, const oci::Reference& target, const oci::Descriptor& blob,
                            const std::vector<std::string>& scopes);
  Result<BlobPushOutcome> PushBlobOn(const RegistryHost& host, const oci::Reference& target,
                                     const oci::Descriptor& blob, const BlobOpener& open, const PushOptions& options);

  Resolver& resolver_;
};

}  // namespace strata::registry
