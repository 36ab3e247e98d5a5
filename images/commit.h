// Commit: a container's changes (the upper dir of a `strata mount --rw` snapshot) become a
// new layer on top of the image it was mounted from — a new config (diffID and history
// appended) and manifest, stored and named, ready for `strata push`.
#pragma once

#include <string>

#include "base/error.h"
#include "oci/descriptor.h"
#include "oci/media_types.h"
#include "snapshotter/overlay_snapshotter.h"
#include "store/store.h"

namespace strata::images {

struct CommitOptions {
  oci::Compression compression = oci::Compression::kGzip;
  std::string created_by = "strata commit";  // the history entry's text
  std::string comment;
};

struct CommitResult {
  oci::Descriptor manifest;
  oci::Descriptor config;
  oci::Descriptor layer;
  Digest diff_id = Digest::Of("");
  uint64_t entries = 0;  // tar entries of the new layer
};

// Diffs active snapshot `key` (made by MountImage with writable=true, whose labels name
// the base image manifest) into a layer and records the result as image `new_name`.
// The snapshot stays as it is. NotFound for an unknown key; FailedPrecondition for a
// snapshot strata did not mount from an image, or a base manifest no longer in the store.
Result<CommitResult> CommitContainer(store::Store& store, snapshotter::OverlaySnapshotter& snapshots,
                                     const std::string& key, const std::string& new_name,
                                     const CommitOptions& options = {});

}  // namespace strata::images
