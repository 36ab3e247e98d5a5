#include "base/file_copy.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>

#include <fmt/format.h>

#include "base/file.h"

namespace strata {

Status PwriteAll(int fd, std::string_view data, uint64_t offset) {
  while (!data.empty()) {
    const ssize_t written = ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset));
    if (written < 0) {
      if (errno == EINTR) continue;
      return ErrnoFail(errno, fmt::format("write to fd {} at {}", fd, offset));
    }
    if (written == 0) return Fail(ErrorCode::kInternal, "write to fd {} made no progress", fd);
    data.remove_prefix(static_cast<size_t>(written));
    offset += static_cast<uint64_t>(written);
  }
  return {};
}

namespace {

Status CopyByReading(int source, uint64_t source_offset, int target, uint64_t target_offset, uint64_t size) {
  std::string buffer(std::min<uint64_t>(size, uint64_t{1} << 20), '\0');
  while (size > 0) {
    const ssize_t n = ::pread(source, buffer.data(), std::min<uint64_t>(size, buffer.size()),
                              static_cast<off_t>(source_offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoFail(errno, fmt::format("read fd {} at {}", source, source_offset));
    if (n == 0) return Fail(ErrorCode::kInternal, "fd {} ended {} bytes early", source, size);
    STRATA_RETURN_IF_ERROR(PwriteAll(target, std::string_view(buffer.data(), static_cast<size_t>(n)), target_offset));
    source_offset += static_cast<uint64_t>(n);
    target_offset += static_cast<uint64_t>(n);
    size -= static_cast<uint64_t>(n);
  }
  return {};
}

}  // namespace

Status CopyFileBytes(int source, uint64_t source_offset, int target, uint64_t target_offset, uint64_t size) {
  auto in = static_cast<loff_t>(source_offset), out = static_cast<loff_t>(target_offset);
  while (size > 0) {
    const ssize_t n = ::copy_file_range(source, &in, target, &out, size, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EOPNOTSUPP || errno == EINVAL)) {
      return CopyByReading(source, static_cast<uint64_t>(in), target, static_cast<uint64_t>(out), size);
    }
    if (n < 0) return ErrnoFail(errno, fmt::format("copy_file_range from fd {} to fd {}", source, target));
    if (n == 0) return Fail(ErrorCode::kInternal, "fd {} ended {} bytes early", source, size);
    size -= static_cast<uint64_t>(n);
  }
  return {};
}

}  // namespace strata
