// Mounting filesystem image files through loop devices, as `mount -o loop` does but with
// one atomic LOOP_CONFIGURE and LO_FLAGS_AUTOCLEAR: the loop device detaches by itself when
// the mount goes (umount of the target), so nothing has to remember it.
#pragma once

#include <filesystem>
#include <string_view>

#include "base/error.h"

namespace strata::snapshotter {

struct LoopMountOptions {
  bool read_only_device = true;  // LO_FLAGS_READ_ONLY: the file is opened read-only too
  bool read_only_mount = true;   // MS_RDONLY (a rw device mounted ro still replays a journal)
};

// Attaches a free loop device to `image` and mounts it as `fstype` on existing directory
// `target`. On failure nothing stays attached. Errors name the image, the device and the
// kernel's reason. REQUIRES: CAP_SYS_ADMIN.
Status MountLoopImage(const std::filesystem::path& image, std::string_view fstype, const std::filesystem::path& target,
                      const LoopMountOptions& options = {});

}  // namespace strata::snapshotter
