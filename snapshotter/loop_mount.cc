#include "snapshotter/loop_mount.h"

#include <fcntl.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include <fmt/format.h>

#include "base/file.h"

namespace strata::snapshotter {

namespace {

// Opens /dev/loop<n>, making the node when /dev is not a devtmpfs (containers).
Result<UniqueFd> OpenLoopDevice(int number, int flags) {
  const std::string path = fmt::format("/dev/loop{}", number);
  int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) {
    if (::mknod(path.c_str(), S_IFBLK | 0660, makedev(7, number)) != 0 && errno != EEXIST) {
      return ErrnoFail(errno, "mknod", path);
    }
    fd = ::open(path.c_str(), flags | O_CLOEXEC);
  }
  if (fd < 0) return ErrnoFail(errno, "open", path);
  return UniqueFd(fd);
}

}  // namespace

Status MountLoopImage(const std::filesystem::path& image, std::string_view fstype, const std::filesystem::path& target,
                      const LoopMountOptions& options) {
  const int open_flags = options.read_only_device ? O_RDONLY : O_RDWR;
  STRATA_ASSIGN_OR_RETURN(UniqueFd file, OpenFile(image, open_flags));
  STRATA_ASSIGN_OR_RETURN(UniqueFd control, OpenFile("/dev/loop-control", O_RDWR));
  // Another process may take the free device between GET_FREE and CONFIGURE: try again.
  for (int attempt = 0; attempt < 32; ++attempt) {
    const int number = ::ioctl(control.get(), LOOP_CTL_GET_FREE);
    if (number < 0) return ErrnoFail(errno, "find a free loop device for", image);
    STRATA_ASSIGN_OR_RETURN(UniqueFd loop, OpenLoopDevice(number, open_flags));
    loop_config config{};
    config.fd = static_cast<uint32_t>(file.get());
    config.info.lo_flags = LO_FLAGS_AUTOCLEAR | (options.read_only_device ? LO_FLAGS_READ_ONLY : 0);
    std::strncpy(reinterpret_cast<char*>(config.info.lo_file_name), image.c_str(), LO_NAME_SIZE - 1);
    if (::ioctl(loop.get(), LOOP_CONFIGURE, &config) != 0) {
      if (errno == EBUSY) continue;
      return ErrnoFail(errno, fmt::format("attach /dev/loop{} to", number), image);
    }
    const std::string device = fmt::format("/dev/loop{}", number);
    const std::string type(fstype);
    const unsigned long flags = options.read_only_mount ? MS_RDONLY : 0;
    if (::mount(device.c_str(), target.c_str(), type.c_str(), flags, nullptr) != 0) {
      const int error = errno;
      // Closing `loop` (the last opener) detaches it: autoclear.
      return Fail(ErrorCode::kInternal, "mount {} ({} on {}) on {}: {}", type, image.string(), device,
                  target.string(), std::strerror(error));
    }
    return {};  // the mount holds the device now; closing ours leaves it attached until umount
  }
  return Fail(ErrorCode::kUnavailable, "attach a loop device to {}: every free device was taken meanwhile",
              image.string());
}

}  // namespace strata::snapshotter
