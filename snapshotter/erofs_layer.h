// Read-only EROFS block images of committed layers (snapshots/<id>/layer.erofs), for VM
// runtimes that attach layers as disks (the vm driver, `strata mount --isolation vm`).
//
// An image holds the layer's fs/ dir exactly, in overlay form: whiteouts stay 0/0 character
// devices and opaque dirs keep trusted.overlay.opaque="y", so a guest overlayfs over the
// images composes them as the host's would. Modes, owners, per-file mtimes (nanoseconds),
// xattrs, device numbers and hard links are kept. Built by mkfs.erofs (erofs-utils >= 1.5,
// uncompressed, --preserve-mtime) with a UUID derived from the caller's seed, so the same
// layer gives the same image apart from the superblock's build time.
#pragma once

#include <filesystem>
#include <string_view>

#include "base/error.h"

namespace strata::snapshotter {

inline constexpr std::string_view kLayerImageName = "layer.erofs";

// snapshot_dir / layer.erofs.
std::filesystem::path LayerImagePath(const std::filesystem::path& snapshot_dir);

// Returns the path of snapshot_dir/layer.erofs, building it from snapshot_dir/fs first when
// it is missing. `uuid_seed` (the layer's chainID) determines the filesystem UUID.
// Guarantees: the final name only ever holds a complete, fsynced image (built under a temp
// name, fsynced, renamed, directory fsynced); concurrent calls for the same snapshot, from
// threads or processes, build it once (an exclusive flock on snapshot_dir) and the others
// wait for it. REQUIRES: fs/ is a committed layer that no longer changes.
// Errors: FailedPrecondition when mkfs.erofs is missing; Internal naming the snapshot and
// mkfs.erofs' own message when it fails; errno errors naming the file.
Result<std::filesystem::path> EnsureLayerImage(const std::filesystem::path& snapshot_dir, std::string_view uuid_seed);

}  // namespace strata::snapshotter
