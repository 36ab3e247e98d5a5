// Read-only EROFS block images of committed layers (snapshots/<id>/layer.erofs), for VM
// runtimes that attach layers as disks (the vm driver, `strata mount --isolation vm`).
//
// An image holds the layer's fs/ dir exactly, in overlay form: whiteouts stay 0/0 character
// devices and opaque dirs keep trusted.overlay.opaque="y", so a guest overlayfs over the
// images composes them as the host's would. Modes, owners, per-file mtimes (nanoseconds),
// xattrs, device numbers and hard links are kept. Written by our own encoder
// (snapshotter/erofs_builder.h: uncompressed, file data copied in the kernel) with a UUID
// derived from the caller's seed, so the same layer gives the same image byte for byte.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

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
// Errors name the snapshot and the entry: errno errors (ENOSPC, EIO, ...), InvalidArgument
// for what EROFS cannot hold (an xattr outside user./trusted./security./POSIX ACLs, a
// symlink target of 4096+ bytes), FailedPrecondition when fs/ changes during the build.
Result<std::filesystem::path> EnsureLayerImage(const std::filesystem::path& snapshot_dir, std::string_view uuid_seed);

// One layer for EnsureLayerImages: its snapshot dir and UUID seed.
struct LayerImageSource {
  std::filesystem::path snapshot_dir;
  std::string uuid_seed;
};

// EnsureLayerImage for every layer, the missing images built up to four at a time (a build
// mostly waits on the disk, so more overlap well than there are cores).
// Returns the image paths in the order given, or the first error (after every build ends).
Result<std::vector<std::filesystem::path>> EnsureLayerImages(const std::vector<LayerImageSource>& layers);

}  // namespace strata::snapshotter
