// Pull: an image from a registry into the store — resolve, fetch the platform's manifest,
// config and layers (in parallel, resumable, each blob once), record the image.
//
// Everything fetched is held by a lease for the duration, so a concurrent GC cannot take
// it; the finished image is kept alive by its image record and the gc.ref labels on its
// index and manifest (containerd's scheme), after which the lease goes.
#pragma once

#include <cstdint>
#include <string>

#include "base/error.h"
#include "images/unpack.h"
#include "oci/descriptor.h"
#include "oci/platform.h"
#include "oci/reference.h"
#include "registry/fetcher.h"
#include "registry/progress.h"
#include "registry/resolver.h"
#include "store/store.h"

namespace strata::images {

struct PullOptions {
  oci::Platform platform = oci::Platform::Host();
  // For an index: every platform's manifest, config and layers (not just `platform`'s).
  bool all_platforms = false;
  // Layers downloaded at once.
  int parallelism = 4;
  registry::ProgressSink progress;
  // Name the image is recorded under; "" = the reference's normalised form.
  std::string image_name;
  // False: fetch only, record no image (copy stages content this way).
  bool record_image = true;
  // Lease that holds the content ("" = a lease of the pull's own, deleted at the end; the
  // caller's lease is left in place, still holding everything).
  std::string lease;
  // Unpack the platform's layers into snapshots named by chainID, streaming each layer
  // into its snapshot as it downloads (null = fetch only). Ignored with all_platforms.
  snapshotter::OverlaySnapshotter* unpack_into = nullptr;
  UnpackLimits unpack_limits;
};

struct PullResult {
  std::string image_name;
  oci::Descriptor target;    // what the name points at (index or manifest)
  oci::Descriptor manifest;  // the platform's manifest (the first of several with all_platforms)
  oci::Descriptor config;
  std::vector<oci::Descriptor> manifests;  // every image manifest fetched
  int blobs_fetched = 0;     // downloaded by this pull
  int blobs_present = 0;     // already in the store (or fetched by a concurrent pull)
  int64_t bytes_received = 0;
  // With unpack: the chainID of every layer (the last names the image's top snapshot), and
  // how many layers this pull unpacked (the others were unpacked already).
  std::vector<Digest> chain_ids;
  int layers_unpacked = 0;
};

// Pulls `reference` for options.platform (or every platform). `fetcher` may be shared between concurrent pulls
// (it fetches each blob once); it must be built on `store`'s content store.
// Errors: those of Resolver::ResolvePlatform and Fetcher::Fetch (the first layer failure;
// other downloads stop), store errors; with unpack, a layer the apply refuses (naming the
// entry and why), a diffID that differs from the config's (FailedPrecondition). On failure
// nothing is recorded under the image name, no snapshot of the pull is committed, and
// completed blobs stay (unreferenced, for the next try or GC).
Result<PullResult> Pull(registry::Resolver& resolver, registry::Fetcher& fetcher, store::Store& store,
                        const oci::Reference& reference, const PullOptions& options);

// The gc.ref labels a manifest carries for its config and layers, and an index for its
// manifests ("containerd.io/gc.ref.content.config", ".l.<i>", ".m.<i>").
store::Labels ManifestGcLabels(const oci::Descriptor& config, const std::vector<oci::Descriptor>& layers);
store::Labels IndexGcLabels(const std::vector<oci::Descriptor>& manifests);

}  // namespace strata::images
