#include "fsfilter/copy_up.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <vector>

#include "fsfilter/overlay_markers.h"

namespace strata::fsfilter {

namespace {

constexpr size_t kCopyBufferSize = 1 << 20;

SysStatus CopyData(int src, int dst, off_t size) {
  if (::ioctl(dst, FICLONE, src) == 0) return {};
  off_t copied = 0;
  bool use_read_write = false;
  while (copied < size) {
    const ssize_t n = ::copy_file_range(src, nullptr, dst, nullptr, static_cast<size_t>(size - copied), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP || errno == EBADF) {
        use_read_write = true;
        break;
      }
      return LastErrno();
    }
    if (n == 0) break;  // the source shrank
    copied += n;
  }
  if (!use_read_write) return {};
  // Across filesystems (ext4 has no cross-device copy_file_range): sendfile copies in the
  // kernel, without a user buffer. copy_file_range with null offsets advanced both file
  // offsets past what it copied, and sendfile continues from there.
  for (;;) {
    const ssize_t n = ::sendfile(dst, src, nullptr, kCopyBufferSize);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EINVAL || errno == ENOSYS) break;  // a source sendfile cannot read
      return LastErrno();
    }
    if (n == 0) return {};
  }
  std::vector<char> buffer(kCopyBufferSize);
  for (;;) {
    const ssize_t n = ::read(src, buffer.data(), buffer.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return LastErrno();
    }
    if (n == 0) return {};
    for (ssize_t written = 0; written < n;) {
      const ssize_t w = ::write(dst, buffer.data() + written, static_cast<size_t>(n - written));
      if (w < 0) {
        if (errno == EINTR) continue;
        return LastErrno();
      }
      written += w;
    }
  }
}

// Owner, then mode (chown may clear setuid bits), for the staged entry `work`/`name`.
SysStatus CopyOwnerAndMode(int work_fd, const std::string& name, const struct stat& st) {
  if (::fchownat(work_fd, name.c_str(), st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) != 0 && errno != EPERM)
    return LastErrno();
  if (!S_ISLNK(st.st_mode) && ::fchmodat(work_fd, name.c_str(), st.st_mode & 07777, 0) != 0) return LastErrno();
  return {};
}

SysStatus CopyTimes(int dir_fd, const std::string& name, const struct stat& st) {
  const struct timespec times[2] = {st.st_atim, st.st_mtim};
  if (::utimensat(dir_fd, name.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) return LastErrno();
  return {};
}

SysStatus RestoreDirTimes(int dir_fd, const struct stat& st) {
  const struct timespec times[2] = {st.st_atim, st.st_mtim};
  if (::utimensat(AT_FDCWD, ProcFdPath(dir_fd).c_str(), times, 0) != 0) return LastErrno();
  return {};
}

// xattr calls on an open file (f*xattr) or, for an O_PATH fd, through its /proc/self/fd
// path (the f* calls refuse O_PATH fds).
class XattrHandle {
 public:
  XattrHandle(int fd, bool is_o_path) : fd_(fd), path_(is_o_path ? ProcFdPath(fd) : std::string()) {}
  ssize_t List(char* out, size_t size) const {
    return path_.empty() ? ::flistxattr(fd_, out, size) : ::listxattr(path_.c_str(), out, size);
  }
  ssize_t Get(const char* name, void* out, size_t size) const {
    return path_.empty() ? ::fgetxattr(fd_, name, out, size) : ::getxattr(path_.c_str(), name, out, size);
  }
  int Set(const char* name, const void* value, size_t size) const {
    return path_.empty() ? ::fsetxattr(fd_, name, value, size, 0) : ::setxattr(path_.c_str(), name, value, size, 0);
  }

 private:
  int fd_;
  std::string path_;
};

SysStatus CopyXattrsBetween(const XattrHandle& src, const XattrHandle& dst) {
  ssize_t size = src.List(nullptr, 0);
  if (size < 0) return (errno == ENOTSUP || errno == EOPNOTSUPP) ? SysStatus{} : LastErrno();
  if (size == 0) return {};
  std::string names(static_cast<size_t>(size), '\0');
  size = src.List(names.data(), names.size());
  if (size < 0) return LastErrno();
  names.resize(static_cast<size_t>(size));
  for (size_t start = 0; start < names.size();) {
    const std::string name(names.c_str() + start);
    start += name.size() + 1;
    if (name.empty() || IsOverlayXattr(name)) continue;
    const ssize_t value_size = src.Get(name.c_str(), nullptr, 0);
    if (value_size < 0) {
      if (errno == ENODATA) continue;
      return LastErrno();
    }
    std::string value(static_cast<size_t>(value_size), '\0');
    const ssize_t n = src.Get(name.c_str(), value.data(), value.size());
    if (n < 0) return LastErrno();
    value.resize(static_cast<size_t>(n));
    if (dst.Set(name.c_str(), value.data(), value.size()) != 0 && errno != ENOTSUP && errno != EOPNOTSUPP &&
        errno != EPERM)
      return LastErrno();
  }
  return {};
}

// Builds the copy of `src_parent`/`name` (lstat `st`) as `work`/`stage`.
SysStatus StageCopy(int src_parent, const std::string& name, const struct stat& st, int work_fd,
                    const std::string& stage, bool with_data) {
  switch (st.st_mode & S_IFMT) {
    case S_IFREG: {
      UniqueFd src(::openat(src_parent, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
      if (!src) return LastErrno();
      UniqueFd dst(::openat(work_fd, stage.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600));
      if (!dst) return LastErrno();
      if (with_data) FS_RETURN_IF_ERROR(CopyData(src.get(), dst.get(), st.st_size));
      FS_RETURN_IF_ERROR(CopyOwnerAndMode(work_fd, stage, st));
      FS_RETURN_IF_ERROR(CopyXattrsBetween(XattrHandle(src.get(), false), XattrHandle(dst.get(), false)));
      return CopyTimes(work_fd, stage, st);
    }
    case S_IFDIR:
      if (::mkdirat(work_fd, stage.c_str(), 0700) != 0) return LastErrno();
      break;
    case S_IFLNK: {
      std::string target(PATH_MAX, '\0');
      const ssize_t n = ::readlinkat(src_parent, name.c_str(), target.data(), target.size());
      if (n < 0) return LastErrno();
      target.resize(static_cast<size_t>(n));
      if (::symlinkat(target.c_str(), work_fd, stage.c_str()) != 0) return LastErrno();
      break;
    }
    default:
      if (::mknodat(work_fd, stage.c_str(), st.st_mode & (S_IFMT | 07777), st.st_rdev) != 0) return LastErrno();
      break;
  }
  FS_RETURN_IF_ERROR(CopyOwnerAndMode(work_fd, stage, st));
  FS_ASSIGN_OR_RETURN(UniqueFd src_path, OpenBeneath(src_parent, name, O_PATH));
  FS_ASSIGN_OR_RETURN(UniqueFd dst_path, OpenBeneath(work_fd, stage, O_PATH));
  FS_RETURN_IF_ERROR(CopyXattrs(src_path.get(), dst_path.get()));
  if (!S_ISDIR(st.st_mode)) FS_RETURN_IF_ERROR(CopyTimes(work_fd, stage, st));
  return {};
}

}  // namespace

std::string StagingName() {
  static std::atomic<uint64_t> counter{0};
  return "#strata-" + std::to_string(::getpid()) + "-" + std::to_string(counter.fetch_add(1));
}

SysStatus CopyXattrs(int src_fd, int dst_fd) {
  return CopyXattrsBetween(XattrHandle(src_fd, true), XattrHandle(dst_fd, true));
}

SysStatus CopyUp(LayerUnion& union_view, Node* node, bool with_data) {
  const LayerChain& chain = union_view.chain();
  if (!chain.has_upper()) return SysFail(EROFS);
  if (node->layer == 0) return {};
  if (!node->attached) return SysFail(ENOENT);
  if (node->parent != nullptr) FS_RETURN_IF_ERROR(CopyUp(union_view, node->parent, true));

  FS_ASSIGN_OR_RETURN(UniqueFd src_parent, union_view.OpenParentIn(node->layer, node));
  FS_ASSIGN_OR_RETURN(UniqueFd dst_parent, union_view.OpenParentIn(0, node));
  struct stat st{};
  if (::fstatat(src_parent.get(), node->name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return LastErrno();
  struct stat parent_st{};
  if (::fstat(dst_parent.get(), &parent_st) != 0) return LastErrno();

  const std::string stage = StagingName();
  const int work_fd = chain.work_fd();
  if (SysStatus staged = StageCopy(src_parent.get(), node->name, st, work_fd, stage, with_data); !staged) {
    (void)RemoveTreeAt(work_fd, stage);
    return staged;
  }
  if (::renameat(work_fd, stage.c_str(), dst_parent.get(), node->name.c_str()) != 0) {
    const int err = errno;
    (void)RemoveTreeAt(work_fd, stage);
    return SysFail(err);
  }
  // Directory times last: the rename updated its ".." entry.
  if (S_ISDIR(st.st_mode)) FS_RETURN_IF_ERROR(CopyTimes(dst_parent.get(), node->name, st));
  FS_RETURN_IF_ERROR(RestoreDirTimes(dst_parent.get(), parent_st));

  struct stat upper_st{};
  if (::fstatat(dst_parent.get(), node->name.c_str(), &upper_st, AT_SYMLINK_NOFOLLOW) != 0) return LastErrno();
  // As kernel overlayfs (without index): the origin's number is kept unless the lower file
  // had other hard links, which copy-up separates from this one; the copy then reports its
  // own number, so the two different files never share one.
  if (S_ISDIR(st.st_mode) || st.st_nlink == 1) {
    union_view.RememberUpperIno(upper_st.st_ino, node->ino);
  } else {
    node->ino = chain.UniqueIno(upper_st.st_dev, upper_st.st_ino);
  }
  node->layer = 0;
  return {};
}

}  // namespace strata::fsfilter
