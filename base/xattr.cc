#include "base/xattr.h"

#include <sys/xattr.h>

#include <cerrno>

#include <fmt/format.h>

#include "base/file.h"

namespace strata {

Result<std::map<std::string, std::string>> ReadXattrs(int fd, const std::filesystem::path& path) {
  auto list = [&](char* buf, size_t size) {
    return fd >= 0 ? ::flistxattr(fd, buf, size) : ::llistxattr(path.c_str(), buf, size);
  };
  auto get = [&](const char* key, char* buf, size_t size) {
    return fd >= 0 ? ::fgetxattr(fd, key, buf, size) : ::lgetxattr(path.c_str(), key, buf, size);
  };
  std::map<std::string, std::string> out;
  std::string names;
  // Most entries have few xattrs or none: one call into a small buffer answers them.
  char small[256];
  bool listed = false;
  if (const ssize_t n = list(small, sizeof(small)); n >= 0) {
    names.assign(small, static_cast<size_t>(n));
    listed = true;
  } else if (errno == ENOTSUP || errno == EOPNOTSUPP) {
    return out;
  } else if (errno != ERANGE) {
    return ErrnoFail(errno, "listxattr", path);
  }
  while (!listed) {  // the list can grow between the size query and the read: retry on ERANGE
    ssize_t n = list(nullptr, 0);
    if (n < 0 && (errno == ENOTSUP || errno == EOPNOTSUPP)) return out;
    if (n < 0) return ErrnoFail(errno, "listxattr", path);
    names.resize(static_cast<size_t>(n));
    n = list(names.data(), names.size());
    if (n < 0 && errno == ERANGE) continue;
    if (n < 0) return ErrnoFail(errno, "listxattr", path);
    names.resize(static_cast<size_t>(n));
    listed = true;
  }
  for (size_t pos = 0; pos < names.size();) {
    std::string key(names.c_str() + pos);
    pos += key.size() + 1;
    if (key.empty()) continue;
    std::string value;
    for (;;) {
      ssize_t n = get(key.c_str(), nullptr, 0);
      if (n < 0 && errno == ENODATA) break;  // removed since listed
      if (n < 0) return ErrnoFail(errno, fmt::format("getxattr {}", key), path);
      value.resize(static_cast<size_t>(n));
      n = get(key.c_str(), value.data(), value.size());
      if (n < 0 && errno == ERANGE) continue;
      if (n < 0) return ErrnoFail(errno, fmt::format("getxattr {}", key), path);
      value.resize(static_cast<size_t>(n));
      out.emplace(std::move(key), std::move(value));
      break;
    }
  }
  return out;
}

}  // namespace strata
