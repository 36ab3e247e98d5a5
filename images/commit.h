// Commit: a container's changes (the upper dir of a `strata mount --rw` snapshot) become a
// new layer on top of the image it was mounted from — a new config (diffID and history
// appended) and manifest, stored and named, ready for `strata push`. Layer tars of
// snapshots come from ExportSnapshotLayer: overlay diffs, or for Windows layer snapshots
// (images/unpack.h) the entries of the tar they were unpacked from.
#pragma once

#include <string>

#include "archive/tar_writer.h"
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

// Writes the layer tar of snapshot `key` (any kind) to `sink`, ending with the
// end-of-archive blocks: a Windows layer snapshot (labelled kLabelLayerFormat = windows)
// through archive::WriteWindowsLayer, any other as the overlay diff of its upper dir
// (archive::WriteOverlayDiff). Returns the tar's entry count. REQUIRES: the snapshot does
// not change meanwhile. Errors: NotFound for an unknown key; the writers' (on error the
// sink has received a partial archive).
Result<uint64_t> ExportSnapshotLayer(snapshotter::OverlaySnapshotter& snapshots, const std::string& key,
                                     const archive::ByteSink& sink);

// Diffs active snapshot `key` (made by MountImage with writable=true, whose labels name
// the base image manifest) into a layer and records the result as image `new_name`.
// The snapshot stays as it is. NotFound for an unknown key; FailedPrecondition for a
// snapshot strata did not mount from an image, or a base manifest no longer in the store,
// and for a container over a Windows image (mounts of those are not supported yet, and a
// container's changes over Windows layers have no export: an overlay diff of them would be
// a wrong Windows layer).
Result<CommitResult> CommitContainer(store::Store& store, snapshotter::OverlaySnapshotter& snapshots,
                                     const std::string& key, const std::string& new_name,
                                     const CommitOptions& options = {});

}  // namespace strata::images
