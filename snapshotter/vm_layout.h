// The vm driver's mounts: what a VM runtime attaches for a snapshot (each layer as a
// read-only EROFS disk, the container's scratch ext4 disk) and how they compose, plus the
// same composition done on the host with loop devices (`strata mount --isolation vm`).
//
// A snapshot's mounts, in order (k = number of parent layers, nearest first):
//   0 .. k-1  {type "erofs", source <parent snapshot>/layer.erofs, options [ro, loop]}
//   k         {type "ext4",  source <snapshot>/scratch.img,       options [rw, loop]}  (active)
//   last      {type "format/overlay", source "overlay", options
//               [lowerdir={{ mount 0 }}:..:{{ mount k-1 }},
//                upperdir={{ mount k }}/upper, workdir={{ mount k }}/work]}        (active)
//             [ro, lowerdir=...]                                                (view, k >= 2)
// The last mount goes on the container's root; each earlier one is mounted first on a
// directory of the runtime's choosing, and "{{ mount N }}" in a "format/<type>" mount's
// options stands for where mount N went (containerd 2.x's mount-manager templates use the
// same form). Other shapes: active with no parent -> the ext4 mount, then
// {format/bind, "{{ mount 0 }}/upper", [rw, rbind]}; a view of one layer -> that layer's
// erofs mount alone; a view of nothing -> {bind, <snapshot>/fs, [ro, rbind]}.
#pragma once

#include <filesystem>
#include <functional>
#include <vector>

#include "base/error.h"
#include "snapshotter/mount.h"
#include "snapshotter/overlay_layout.h"
#include "snapshotter/snapshot_store.h"

namespace strata::snapshotter {

inline constexpr std::string_view kFormatMountPrefix = "format/";
// Where the host composition mounts the earlier mounts: snapshots/<id>/mnt/<N>.
inline constexpr std::string_view kVmStagingDirName = "mnt";

// The mounts above for active or view `record` (FailedPrecondition for a committed one).
// Builds each parent's layer.erofs that is missing (EnsureLayerImage, seeded with the
// parent's name). An active snapshot must have its scratch.img (PrepareVmScratch).
Result<std::vector<Mount>> VmMountsFor(const OverlayLayout& layout, const SnapshotStore& records,
                                       const SnapshotRecord& record);

// Creates the scratch disk of active `record` (snapshots/<id>/scratch.img) of `bytes`.
Status PrepareVmScratch(const OverlayLayout& layout, const SnapshotRecord& record, uint64_t bytes);

// Mounts `mounts` (VmMountsFor's form) on the host: every mount but the last on
// staging_dir/<N> (created), loop ones through loop devices, then the last on `target` with
// the templates filled in. On failure whatever was mounted is unmounted again.
// REQUIRES: CAP_SYS_ADMIN.
Status MountVmComposition(const std::vector<Mount>& mounts, const std::filesystem::path& staging_dir,
                          const std::filesystem::path& target);

// Unmounts everything at or beneath staging_dir, deepest first (their loop devices detach
// themselves), and removes the directory. A staging dir that does not exist is fine.
Status UnmountVmStaging(const std::filesystem::path& staging_dir);

// Calls `fn` with the upper/ dir of the scratch disk of active `record`: the one the host
// composition has mounted, else the disk mounted read-only for the call (a dirty journal
// is replayed). NotFound when the snapshot has no scratch disk.
// REQUIRES: whatever writes to the disk (a VM, the host overlay) is stopped or quiescent.
Status WithScratchUpper(const OverlayLayout& layout, const SnapshotRecord& record,
                        const std::function<Status(const std::filesystem::path& upper)>& fn);

// Copies the changes in the scratch disk of active `record` (its upper/, overlay form) into
// the snapshot's fs/, keeping overlay form (whiteouts, opaque dirs, owners, modes, mtimes,
// xattrs, hard links) — what Commit does so the committed layer is like an overlay
// driver's. Streams the overlay diff of upper/ through archive::ApplyLayer.
Status CopyScratchChanges(const OverlayLayout& layout, const SnapshotRecord& record);

}  // namespace strata::snapshotter
