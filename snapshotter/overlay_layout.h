// Where the overlay driver keeps a snapshot (snapshots/<id>/fs and /work) and the mount
// containerd's overlay snapshotter would hand out for it:
//   active, no parent   -> bind of fs, [rw, rbind]
//   active, parents     -> overlay [index=off, workdir=, upperdir=, lowerdir=p1:p2:..]
//                          (nearest parent first)
//   view, no parent     -> bind of fs, [ro, rbind]
//   view, one parent    -> bind of the parent's fs, [ro, rbind]
//   view, >= 2 parents  -> overlay [ro, lowerdir=...]
// With UnionMount::kFsfilter the two overlay cases are FUSE mounts of strata's union view
// instead: type fuse3.strata-fsfilter, the same options minus index=off (fuse-overlayfs'
// command line, which containerd mounts through mount.fuse3). The directories are the same
// either way: an upper dir fsfilter wrote is in overlay form, as kernel overlayfs leaves it.
#pragma once

#include <filesystem>
#include <string_view>

#include "base/error.h"
#include "snapshotter/mount.h"
#include "snapshotter/snapshot_store.h"

namespace strata::snapshotter {

// How snapshots with parents are composed. kVm: per-layer EROFS images + a scratch disk
// composed by the VM's (or the host's) overlayfs (snapshotter/vm_layout.h); MountFor still
// gives the overlay form, the driver hands out VmMountsFor's mounts instead.
enum class UnionMount { kKernelOverlay, kFsfilter, kVm };
inline constexpr std::string_view kFsfilterMountType = "fuse3.strata-fsfilter";

// The driver names users give: "overlay" (or ""), "fsfilter" and "vm". InvalidArgument
// naming the known ones otherwise.
Result<UnionMount> ParseUnionMount(std::string_view driver);

// `mount` (as MountFor gives it) composed the `how` way: an overlay mount becomes a
// fuse3.strata-fsfilter one for kFsfilter; binds and everything for kKernelOverlay stay.
Mount WithUnionMount(Mount mount, UnionMount how);

class OverlayLayout {
 public:
  // `snapshots_dir` is <store root>/snapshots.
  explicit OverlayLayout(std::filesystem::path snapshots_dir, UnionMount union_mount = UnionMount::kKernelOverlay)
      : dir_(std::move(snapshots_dir)), union_mount_(union_mount) {}

  std::filesystem::path SnapshotDir(uint64_t id) const { return dir_ / std::to_string(id); }
  std::filesystem::path FsDir(uint64_t id) const { return SnapshotDir(id) / "fs"; }
  std::filesystem::path WorkDir(uint64_t id) const { return SnapshotDir(id) / "work"; }

  // The mount for an active or view snapshot; FailedPrecondition for a committed one (as
  // containerd: only active and view snapshots have mounts).
  Result<Mount> MountFor(const SnapshotRecord& record) const;
  UnionMount union_mount() const { return union_mount_; }

 private:
  std::filesystem::path dir_;
  UnionMount union_mount_;
};

}  // namespace strata::snapshotter
