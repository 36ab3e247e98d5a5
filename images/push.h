// Push and copy: an image from the store to a registry, and an image from one registry
// to another (skopeo copy) staged through the content store, never unpacked.
//
// Blobs go first (in parallel; each checked with HEAD, mounted across repositories of the
// same registry when possible), then manifests, then the index, so the registry never
// holds a manifest whose blobs are missing. Manifests are pushed as the exact stored bytes:
// digests survive the trip.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "oci/descriptor.h"
#include "oci/reference.h"
#include "registry/fetcher.h"
#include "registry/progress.h"
#include "registry/pusher.h"
#include "store/store.h"

namespace strata::images {

struct PushImageOptions {
  int parallelism = 4;
  // 0 = monolithic uploads; else chunked with this chunk size.
  uint64_t chunk_size = 0;
  // Push non-distributable (foreign) layers too; by default they are skipped, as the
  // registry is expected to refer to their urls.
  bool allow_nondistributable = false;
  // Repository on the target's registry the blobs are known to be in ("team/app"): tried
  // as a cross-repository mount source. Unset: the source image's repository when it is on
  // the same registry.
  std::optional<std::string> mount_from;
  registry::ProgressSink progress;
};

struct PushImageResult {
  oci::Descriptor pushed;  // what the target now names (index or manifest)
  int uploaded = 0;
  int existed = 0;
  int mounted = 0;
  int skipped = 0;  // non-distributable layers left out
  // Set when an index could not be pushed whole (platforms missing from the store) and
  // only the manifest that is present was pushed.
  std::string note;
};

// The image name `text` stands for in `images`: `text` itself when an image has exactly that
// name, else its normalised form ("alpine" -> "docker.io/library/alpine:latest") when it
// parses as a reference, else `text`.
std::string StoredImageName(const store::ImageStore& images, const std::string& text);

// Pushes the image recorded as `image_name` in `store` to `target` (its tag, or its digest
// when it has one and no tag). NotFound when the image or a blob it needs is not in the
// store; the pusher's errors otherwise (the first failure; other uploads stop).
Result<PushImageResult> PushImage(registry::Pusher& pusher, store::Store& store, const std::string& image_name,
                                  const oci::Reference& target, const PushImageOptions& options);

struct CopyOptions {
  oci::Platform platform = oci::Platform::Host();
  bool all_platforms = false;  // every platform of an index (and the index itself, byte-identical)
  int parallelism = 4;
  uint64_t chunk_size = 0;
  bool allow_nondistributable = false;
  registry::ProgressSink progress;
};

// Copies `source` to `target` registry to registry: fetches into the content store under
// a lease (resumable, each blob once), then pushes. Without all_platforms an index is
// narrowed to `platform`'s manifest. Records no image; the staged blobs are released
// when the copy ends (GC reclaims them unless an image references them).
Result<PushImageResult> CopyImage(registry::Resolver& resolver, registry::Fetcher& fetcher,
                                  registry::Pusher& pusher, store::Store& store, const oci::Reference& source,
                                  const oci::Reference& target, const CopyOptions& options);

}  // namespace strata::images
