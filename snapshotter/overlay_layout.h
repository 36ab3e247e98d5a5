// Where the overlay driver keeps a snapshot (snapshots/<id>/fs and /work) and the mount
// containerd's overlay snapshotter would hand out for it:
//   active, no parent   -> bind of fs, [rw, rbind]
//   active, parents     -> overlay [index=off, workdir=, upperdir=, lowerdir=p1:p2:..]
//                          (nearest parent first)
//   view, no parent     -> bind of fs, [ro, rbind]
//   view, one parent    -> bind of the parent's fs, [ro, rbind]
//   view, >= 2 parents  -> overlay [ro, lowerdir=...]
#pragma once

#include <filesystem>

#include "base/error.h"
#include "snapshotter/mount.h"
#include "snapshotter/snapshot_store.h"

namespace strata::snapshotter {

class OverlayLayout {
 public:
  // `snapshots_dir` is <store root>/snapshots.
  explicit OverlayLayout(std::filesystem::path snapshots_dir) : dir_(std::move(snapshots_dir)) {}

  std::filesystem::path SnapshotDir(uint64_t id) const { return dir_ / std::to_string(id); }
  std::filesystem::path FsDir(uint64_t id) const { return SnapshotDir(id) / "fs"; }
  std::filesystem::path WorkDir(uint64_t id) const { return SnapshotDir(id) / "work"; }

  // The mount for an active or view snapshot; FailedPrecondition for a committed one (as
  // containerd: only active and view snapshots have mounts).
  Result<Mount> MountFor(const SnapshotRecord& record) const;

 private:
  std::filesystem::path dir_;
};

}  // namespace strata::snapshotter
