#include "snapshotter/mount.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "base/file.h"
#include "base/subprocess.h"

namespace strata::snapshotter {
namespace {

std::vector<std::string> SplitLowerDirs(std::string_view value) {
  std::vector<std::string> dirs;
  size_t start = 0;
  while (start <= value.size()) {
    size_t end = value.find(':', start);
    if (end == std::string_view::npos) end = value.size();
    if (end > start) dirs.emplace_back(value.substr(start, end - start));
    start = end + 1;
  }
  return dirs;
}

Error MountError(const Mount& mount, const std::filesystem::path& target, std::string_view step, int error) {
  return Error(ErrorCode::kInternal,
               fmt::format("mount {} on {}: {}: {}", mount.type, target.string(), step, std::strerror(error)));
}

// The new mount API: fsopen + one fsconfig per option (one per lower dir) + fsmount +
// move_mount. Returns ENOSYS/EINVAL-class failures as errno for the caller's fallback.
Status MountOverlayWithFsconfig(const Mount& mount, const std::filesystem::path& target, int* fallback_errno) {
  UniqueFd fs(::fsopen("overlay", FSOPEN_CLOEXEC));
  if (!fs) {
    *fallback_errno = errno;
    return Fail(MountError(mount, target, "fsopen", errno));
  }
  unsigned int attributes = 0;
  for (const std::string& option : mount.options) {
    const size_t equals = option.find('=');
    const std::string key = option.substr(0, equals);
    if (key == "ro") {
      attributes |= MOUNT_ATTR_RDONLY;
      continue;
    }
    if (key == "rw") continue;
    if (equals == std::string::npos) {
      if (::fsconfig(fs.get(), FSCONFIG_SET_FLAG, key.c_str(), nullptr, 0) != 0) {
        return Fail(MountError(mount, target, "option " + key, errno));
      }
      continue;
    }
    const std::string value = option.substr(equals + 1);
    if (key == "lowerdir") {
      for (const std::string& dir : SplitLowerDirs(value)) {
        if (::fsconfig(fs.get(), FSCONFIG_SET_STRING, "lowerdir+", dir.c_str(), 0) != 0) {
          *fallback_errno = errno;  // kernels before 6.8 do not know "lowerdir+"
          return Fail(MountError(mount, target, "lowerdir+ " + dir, errno));
        }
      }
      continue;
    }
    if (::fsconfig(fs.get(), FSCONFIG_SET_STRING, key.c_str(), value.c_str(), 0) != 0) {
      return Fail(MountError(mount, target, "option " + option, errno));
    }
  }
  if (::fsconfig(fs.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0) {
    return Fail(MountError(mount, target, "create", errno));
  }
  UniqueFd mounted(::fsmount(fs.get(), FSMOUNT_CLOEXEC, attributes));
  if (!mounted) return Fail(MountError(mount, target, "fsmount", errno));
  if (::move_mount(mounted.get(), "", AT_FDCWD, target.c_str(), MOVE_MOUNT_F_EMPTY_PATH) != 0) {
    return Fail(MountError(mount, target, "move_mount", errno));
  }
  return {};
}

Status MountOverlayLegacy(const Mount& mount, const std::filesystem::path& target) {
  unsigned long flags = 0;
  std::string data;
  for (const std::string& option : mount.options) {
    if (option == "ro") {
      flags |= MS_RDONLY;
      continue;
    }
    if (option == "rw") continue;
    if (!data.empty()) data += ',';
    data += option;
  }
  if (::mount("overlay", target.c_str(), "overlay", flags, data.c_str()) != 0) {
    return Fail(MountError(mount, target, fmt::format("mount(2) with {} bytes of options", data.size()), errno));
  }
  return {};
}

Status MountBind(const Mount& mount, const std::filesystem::path& target) {
  bool read_only = false;
  unsigned long flags = MS_BIND;
  for (const std::string& option : mount.options) {
    if (option == "ro") read_only = true;
    if (option == "rbind") flags |= MS_REC;
  }
  if (::mount(mount.source.c_str(), target.c_str(), nullptr, flags, nullptr) != 0) {
    return Fail(MountError(mount, target, "bind " + mount.source, errno));
  }
  if (read_only &&
      ::mount(nullptr, target.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | (flags & MS_REC), nullptr) != 0) {
    const int error = errno;
    ::umount2(target.c_str(), MNT_DETACH);
    return Fail(MountError(mount, target, "remount read-only", error));
  }
  return {};
}

// The program a "fuse3.<program>" mount names: next to this executable first (a build or
// install of strata keeps strata-fsfilter beside strata), then $PATH, as mount.fuse3 looks.
Result<std::filesystem::path> FuseProgram(const Mount& mount, std::string_view program,
                                          const std::filesystem::path& target) {
  if (program.empty() || program.find('/') != std::string_view::npos) {
    return Fail(ErrorCode::kInvalidArgument, "mount on {}: bad FUSE type {:?}", target.string(), mount.type);
  }
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const std::filesystem::path beside = self.parent_path() / program;
    if (::access(beside.c_str(), X_OK) == 0) return beside;
  }
  if (auto found = FindInPath(program)) return *found;
  return Fail(ErrorCode::kFailedPrecondition, "mount {} on {}: program {} not found next to {} or in PATH",
              mount.type, target.string(), program, self.parent_path().string());
}

// A FUSE mount the way mount.fuse3 does it: `<program> SOURCE TARGET -o OPTIONS`; the
// program daemonises once the mount is ready, so its exit status says whether it is.
Status MountFuse(const Mount& mount, std::string_view program, const std::filesystem::path& target) {
  STRATA_ASSIGN_OR_RETURN(std::filesystem::path binary, FuseProgram(mount, program, target));
  std::vector<std::string> argv = {std::string(program), mount.source, target.string()};
  if (!mount.options.empty()) {
    argv.push_back("-o");
    argv.push_back(fmt::format("{}", fmt::join(mount.options, ",")));
  }
  auto ran = RunProgram(binary, argv, {.timeout = std::chrono::seconds(60), .kill_group_on_exit = false});
  if (!ran) return Fail(Error(ran.error().code(), fmt::format("mount {} on {}: {}", mount.type, target.string(), ran.error().message())));
  if (!ran->Succeeded()) {
    std::string_view detail = ran->err.empty() ? ran->out : ran->err;
    while (!detail.empty() && (detail.back() == '\n' || detail.back() == ' ')) detail.remove_suffix(1);
    return Fail(ErrorCode::kInternal, "mount {} on {}: {} failed ({}){}{}", mount.type, target.string(),
                binary.string(), ran->HowItEnded(), detail.empty() ? "" : ": ", detail.substr(0, 1024));
  }
  return {};
}

}  // namespace

Status MountAt(const Mount& mount, const std::filesystem::path& target) {
  if (mount.type == "bind") return MountBind(mount, target);
  for (std::string_view prefix : {"fuse3.", "fuse."}) {
    if (mount.type.starts_with(prefix)) return MountFuse(mount, std::string_view(mount.type).substr(prefix.size()), target);
  }
  if (mount.type != "overlay") {
    return Fail(ErrorCode::kInvalidArgument, "mount on {}: unsupported type {:?}", target.string(), mount.type);
  }
  int fallback_errno = 0;
  Status status = MountOverlayWithFsconfig(mount, target, &fallback_errno);
  if (status || (fallback_errno != ENOSYS && fallback_errno != EINVAL)) return status;
  return MountOverlayLegacy(mount, target);
}

Status UnmountAt(const std::filesystem::path& target) {
  if (::umount2(target.c_str(), UMOUNT_NOFOLLOW) == 0) return {};
  if (errno == EBUSY && ::umount2(target.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) == 0) return {};
  if (errno == EINVAL) return Fail(ErrorCode::kNotFound, "unmount {}: not a mount point", target.string());
  return ErrnoFail(errno, "unmount", target);
}

}  // namespace strata::snapshotter
