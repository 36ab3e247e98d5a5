#include "fsfilter/overlay_markers.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <vector>

#include "base/file.h"
#include "fsfilter/layer_chain.h"

namespace strata::fsfilter {

namespace {

bool XattrIsY(const std::string& proc_path, const char* name) {
  char value[2];
  const ssize_t n = ::getxattr(proc_path.c_str(), name, value, sizeof(value));
  return n == 1 && value[0] == 'y';
}

}  // namespace

std::string WhiteoutFileName(std::string_view name) {
  std::string file(kWhiteoutPrefix);
  file.append(name);
  return file;
}

bool IsOpaqueDir(int dir_fd) {
  const std::string proc = ProcFdPath(dir_fd);
  if (XattrIsY(proc, kTrustedOpaqueXattr) || XattrIsY(proc, kUserOpaqueXattr)) return true;
  struct stat st{};
  return ::fstatat(dir_fd, std::string(kOpaqueMarker).c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
}

bool HasWhiteoutFile(int dir_fd, std::string_view name) {
  struct stat st{};
  return ::fstatat(dir_fd, WhiteoutFileName(name).c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
}

SysStatus CreateWhiteout(int dir_fd, std::string_view name) {
  const std::string n(name);
  if (::mknodat(dir_fd, n.c_str(), S_IFCHR | 0, makedev(0, 0)) == 0) return {};
  if (errno != EPERM) return LastErrno();
  const int fd = ::openat(dir_fd, WhiteoutFileName(name).c_str(), O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0);
  if (fd < 0) return LastErrno();
  ::close(fd);
  return {};
}

SysStatus MarkOpaque(int dir_fd, std::string_view name) {
  FS_ASSIGN_OR_RETURN(UniqueFd dir, OpenBeneath(dir_fd, std::string(name), O_PATH | O_DIRECTORY));
  const std::string proc = ProcFdPath(dir.get());
  if (::setxattr(proc.c_str(), kTrustedOpaqueXattr, "y", 1, 0) == 0) return {};
  if (errno != EPERM) return LastErrno();
  if (::setxattr(proc.c_str(), kUserOpaqueXattr, "y", 1, 0) == 0) return {};
  return LastErrno();
}

SysResult<bool> RemoveWhiteout(int dir_fd, std::string_view name) {
  bool removed = false;
  const std::string n(name);
  struct stat st{};
  if (::fstatat(dir_fd, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && IsWhiteoutStat(st)) {
    if (::unlinkat(dir_fd, n.c_str(), 0) != 0) return LastErrno();
    removed = true;
  }
  const std::string file = WhiteoutFileName(name);
  if (::unlinkat(dir_fd, file.c_str(), 0) == 0) {
    removed = true;
  } else if (errno != ENOENT) {
    return LastErrno();
  }
  return removed;
}

SysStatus RemoveChildrenAt(int dir_fd) {
  FS_ASSIGN_OR_RETURN(UniqueFd readable, OpenBeneath(dir_fd, ".", O_RDONLY | O_DIRECTORY));
  DIR* dir = ::fdopendir(readable.get());
  if (dir == nullptr) return LastErrno();
  readable.release();
  std::vector<std::pair<std::string, bool>> children;
  while (struct dirent* entry = ::readdir(dir)) {
    const std::string_view name = entry->d_name;
    if (name == "." || name == "..") continue;
    children.emplace_back(entry->d_name, entry->d_type == DT_DIR);
  }
  ::closedir(dir);
  for (const auto& [name, is_dir] : children) {
    if (::unlinkat(dir_fd, name.c_str(), 0) == 0) continue;
    if (errno != EISDIR && errno != EPERM) return LastErrno();
    FS_RETURN_IF_ERROR(RemoveTreeAt(dir_fd, name));
  }
  return {};
}

SysStatus RemoveTreeAt(int dir_fd, const std::string& name) {
  if (::unlinkat(dir_fd, name.c_str(), 0) == 0) return {};
  if (errno != EISDIR && errno != EPERM) return errno == ENOENT ? SysStatus{} : LastErrno();
  FS_ASSIGN_OR_RETURN(UniqueFd child, OpenBeneath(dir_fd, name, O_PATH | O_DIRECTORY));
  FS_RETURN_IF_ERROR(RemoveChildrenAt(child.get()));
  if (::unlinkat(dir_fd, name.c_str(), AT_REMOVEDIR) != 0) return LastErrno();
  return {};
}

}  // namespace strata::fsfilter
