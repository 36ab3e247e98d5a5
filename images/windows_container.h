// How a Windows image becomes mounts (internal to images/; image_mount.cc uses it).
//  - Process isolation: a read-only FUSE mount of fsfilter's Windows layer view
//    (strata-fsfilter -o windows): the merged Files/ trees, case-insensitive, Windows
//    metadata as user.windows.* xattrs.
//  - VM isolation (Hyper-V style): the container's own layer dir holding layerchain.json
//    (the image's layer dirs, nearest first) and sandbox.vhd, a sparse, unformatted fixed
//    VHD the VM formats as its scratch volume; described by a "windows-layer" mount as
//    containerd on Windows hands them out, and bind-mounted when a directory is given.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "snapshotter/mount.h"

namespace strata::images {

// containerd's Windows mount type: source = the container's layer dir, options = {"rw",
// "parentLayerPaths=<JSON array of the parent layer dirs, nearest first>"}.
inline constexpr std::string_view kWindowsLayerMountType = "windows-layer";
// What a container dir holds besides layerchain.json.
inline constexpr std::string_view kSandboxDiskName = "sandbox.vhd";
// Windows' default sandbox size.
inline constexpr uint64_t kDefaultScratchBytes = uint64_t{20} << 30;

// The read-only Windows view mount over `layer_dirs` (topmost first).
snapshotter::Mount WindowsViewMount(const std::vector<std::filesystem::path>& layer_dirs);

// Writes layerchain.json (`layer_dirs`, nearest first) and a sparse fixed-VHD sandbox of
// `scratch_bytes` (a positive multiple of 512: InvalidArgument otherwise) into the existing,
// empty `container_dir`, and returns its windows-layer mount. Errors name the file.
Result<snapshotter::Mount> WriteWindowsContainerDir(const std::filesystem::path& container_dir,
                                                    const std::vector<std::filesystem::path>& layer_dirs,
                                                    uint64_t scratch_bytes);

// What to mount on a host directory for `mount`: a windows-layer mount becomes a bind of
// its dir (the VM runtime reads the files there); any other mount is returned as it is.
snapshotter::Mount HostMountOf(const snapshotter::Mount& mount);

}  // namespace strata::images
