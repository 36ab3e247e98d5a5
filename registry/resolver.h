// Resolver: turns an image reference into verified manifest bytes, as containerd's
// remotes.Resolver does: HEAD/GET /v2/<name>/manifests/<tag-or-digest> with Accept of all
// four manifest types, digest checks on every byte fetched, and the walk from an index to
// one platform's manifest and config.
#pragma once

#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "oci/descriptor.h"
#include "oci/image_config.h"
#include "oci/index.h"
#include "oci/manifest.h"
#include "oci/platform.h"
#include "oci/reference.h"
#include "registry/auth.h"
#include "registry/hosts.h"
#include "registry/retry.h"

namespace strata::registry {

// The most a manifest or index may be (distribution refuses larger manifest uploads, and
// a 10,000-layer manifest is ~1.6 MB), and the most a blob read into memory (a config) may
// be: what a hostile registry can make a pull hold.
inline constexpr uint64_t kMaxManifestBytes = 4 << 20;
inline constexpr uint64_t kMaxInMemoryBlobBytes = 16 << 20;

struct ResolverOptions {
  // Where each registry is reached: mirrors, then the upstream (plain HTTP rules included).
  HostsConfig hosts;
  RetryPolicy retry;
  // Retries on a mirror before falling back to the next host (a mirror is not worth a long
  // wait: the upstream is there).
  int mirror_max_attempts = 2;
  // How retries wait; unset = really sleep.
  SleepFunction sleep;
};

// What a reference names: its descriptor and the exact bytes the registry served.
struct Resolved {
  oci::Descriptor descriptor;  // media type, digest (sha256 of `manifest`), size
  std::string manifest;
};

// One platform's image, reached from a reference (through an index when it names one).
struct ResolvedImage {
  Resolved top;                        // what the reference names (index or manifest)
  std::optional<oci::Index> index;     // parsed `top` when it is an index
  oci::Descriptor manifest_descriptor;  // == top.descriptor when the reference names a manifest
  std::string manifest_bytes;
  oci::Manifest manifest;
  std::string config_bytes;
  oci::ImageConfig config;
};

// Thread-safe (all state lives in the Authorizer, which is). REQUIRES: `authorizer`
// outlives the Resolver.
class Resolver {
 public:
  explicit Resolver(Authorizer& authorizer, ResolverOptions options = {});

  // Resolves `reference` to a manifest or index. HEAD first (falling back to GET on 405 or
  // when the answer has no Docker-Content-Digest); when HEAD named a digest the body is
  // fetched by that digest. Verification: by digest, sha256 of the bytes must equal the
  // digest; by tag, it must equal Docker-Content-Digest when the registry sent one. The body's
  // mediaType (when present) must match Content-Type. Errors:
  //   NotFound "manifest <reference> not found: ..." for 404 / MANIFEST_UNKNOWN / NAME_UNKNOWN;
  //   FailedPrecondition naming both digests when bytes do not match, for a media type
  //     mismatch, or when the registry refuses access; Unimplemented for schema 1;
  //   Unavailable after retries ran out (see retry.h); transport and auth errors.
  Result<Resolved> Resolve(const oci::Reference& reference);

  // The manifest (or index) `descriptor` names in `reference`'s repository, verified
  // against its digest and size and its media type. Errors as for Resolve.
  Result<std::string> FetchManifest(const oci::Reference& reference, const oci::Descriptor& descriptor);

  // A small blob (a config) held in memory, verified against digest and size.
  // NotFound for 404 / BLOB_UNKNOWN, otherwise errors as for Resolve.
  Result<std::string> FetchBlob(const oci::Reference& reference, const oci::Descriptor& descriptor);

  // Resolve, then (for an index) the manifest SelectManifestForPlatform chooses for
  // `platform`, then the parsed config. A reference naming a single manifest is returned as
  // it is, whatever its platform. NotFound when an index has no entry for `platform`
  // (the message lists what it has); InvalidArgument for unparseable documents.
  Result<ResolvedImage> ResolvePlatform(const oci::Reference& reference, const oci::Platform& platform);

  // The hosts to try for `capability` on `reference`'s registry, mirrors first. Mirrors
  // serve only pulls: a mirror with push capability is still skipped for kCapabilityPush
  // unless it is the upstream.
  Result<std::vector<RegistryHost>> Hosts(const oci::Reference& reference, Capability capability) const;

  // Sends `request` to `host` with auth (`scopes`; default: pull on the reference's
  // repository) and the retry policy (fewer tries on a mirror).
  Result<HttpResponse> Send(const RegistryHost& host, const oci::Reference& reference, const HttpRequest& request,
                            const std::vector<std::string>& scopes = {});
  // As above, but each try sends a fresh request from `make_request` (a resumed download
  // asks for a later Range on each try). `url_for_messages` names the request in errors.
  // Retries follow `policy` (see PolicyFor).
  Result<HttpResponse> SendFresh(const std::function<HttpRequest()>& make_request, std::string_view what,
                                 const std::vector<std::string>& scopes, const RetryPolicy& policy);
  // The retry policy for requests to `host` (fewer tries on a mirror).
  RetryPolicy PolicyFor(const RegistryHost& host) const;

  Authorizer& authorizer() { return authorizer_; }
  const ResolverOptions& options() const { return options_; }

 private:
  Result<std::string> FetchBlobFrom(const RegistryHost& host, const oci::Reference& reference,
                                    const oci::Descriptor& descriptor);
  Result<Resolved> ResolveOn(const RegistryHost& host, const oci::Reference& reference);
  // GET manifests/<ref_text> and checks status, digest, media type and (when > = 0) size.
  Result<Resolved> GetManifest(const RegistryHost& host, const oci::Reference& reference, const std::string& ref_text,
                               const std::optional<Digest>& expected_digest, int64_t expected_size);

  Authorizer& authorizer_;
  ResolverOptions options_;
};

// The Accept header value listing the four manifest types (OCI first).
std::string ManifestAcceptHeader();

}  // namespace strata::registry
