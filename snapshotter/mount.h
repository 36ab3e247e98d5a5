// Mounts as containerd describes them (containerd.types.Mount: type, source, options), and
// mounting them here. One overlay mount may stack any number of layers: lower dirs are
// passed one by one through the new mount API (fsconfig "lowerdir+", Linux >= 6.8), so the
// page-sized limit of a mount(2) option string (about 4 KiB, ~100 layers) does not apply;
// older kernels fall back to mount(2).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "base/error.h"

namespace strata::snapshotter {

struct Mount {
  std::string type;    // "overlay", "bind", or "fuse3.<program>" (e.g. fuse3.strata-fsfilter)
  std::string source;  // "overlay" for overlay and FUSE unions; the directory for bind
  std::vector<std::string> options;  // e.g. "ro", "rbind", "workdir=...", "lowerdir=a:b"

  bool operator==(const Mount&) const = default;
};

// Mounts `mount` on the existing directory `target`. Errors name the mount type, the
// target and the kernel's reason (InvalidArgument for an unknown type or option form).
// "fuse3.<program>" and "fuse.<program>" run `<program> SOURCE TARGET -o OPTIONS` as
// mount.fuse3 would (the program found next to this executable, else in $PATH) and wait
// until it reports the mount ready; UnmountAt ends such mounts too.
// REQUIRES: CAP_SYS_ADMIN.
Status MountAt(const Mount& mount, const std::filesystem::path& target);

// Unmounts `target` (lazily when it is busy). NotFound when nothing is mounted there.
Status UnmountAt(const std::filesystem::path& target);

}  // namespace strata::snapshotter
