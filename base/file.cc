#include "base/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <system_error>
#include <utility>
#include <vector>

namespace strata {
namespace {

ErrorCode CodeForErrno(int errnum) {
  switch (errnum) {
    case ENOENT:
    case ENOTDIR:
      return ErrorCode::kNotFound;
    case EEXIST:
    case ENOTEMPTY:
      return ErrorCode::kAlreadyExists;
    case EINVAL:
    case ENAMETOOLONG:
    case EBADF:
      return ErrorCode::kInvalidArgument;
    case EACCES:
    case EPERM:
    case EROFS:
    case EISDIR:
    case ELOOP:
    case EXDEV:
    case EBUSY:
      return ErrorCode::kFailedPrecondition;
    case ENOSPC:
    case EDQUOT:
    case EMFILE:
    case ENFILE:
    case ENOMEM:
    case EAGAIN:
    case EIO:
      return ErrorCode::kUnavailable;
    case ENOSYS:
    case EOPNOTSUPP:
      return ErrorCode::kUnimplemented;
    case EINTR:
    case ECANCELED:
      return ErrorCode::kCanceled;
    default:
      return ErrorCode::kInternal;
  }
}

// Unlinks a path on scope exit unless disarmed; used for temp files that must not outlive
// a failed operation.
class UnlinkOnExit {
 public:
  explicit UnlinkOnExit(std::filesystem::path path) : path_(std::move(path)) {}
  ~UnlinkOnExit() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  UnlinkOnExit(const UnlinkOnExit&) = delete;
  UnlinkOnExit& operator=(const UnlinkOnExit&) = delete;
  void Disarm() { path_.clear(); }

 private:
  std::filesystem::path path_;
};

// remove_all fails inside directories we may not write to (tests create read-only trees);
// give the owner rwx on every directory below `root` so a second attempt can succeed.
void MakeTreeRemovable(const std::filesystem::path& root) {
  std::error_code ec;
  std::filesystem::permissions(root, std::filesystem::perms::owner_all, std::filesystem::perm_options::add, ec);
  std::filesystem::recursive_directory_iterator it(
      root, std::filesystem::directory_options::skip_permission_denied, ec);
  for (; !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code entry_ec;
    if (it->is_directory(entry_ec) && !it->is_symlink(entry_ec)) {
      std::filesystem::permissions(it->path(), std::filesystem::perms::owner_all,
                                   std::filesystem::perm_options::add, entry_ec);
    }
  }
}

void RemoveTree(const std::filesystem::path& root) {
  std::error_code ec;
  std::filesystem::remove_all(root, ec);
  if (!ec) return;
  MakeTreeRemovable(root);
  std::filesystem::remove_all(root, ec);
}

}  // namespace

std::unexpected<Error> ErrnoFail(int errnum, std::string_view operation, const std::filesystem::path& path) {
  return Fail(CodeForErrno(errnum), "{} {:?}: {}", operation, path.native(),
              std::generic_category().message(errnum));
}

std::unexpected<Error> ErrnoFail(int errnum, std::string_view operation) {
  return Fail(CodeForErrno(errnum), "{}: {}", operation, std::generic_category().message(errnum));
}

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) reset(other.release());
  return *this;
}

int UniqueFd::release() { return std::exchange(fd_, -1); }

void UniqueFd::reset(int fd) {
  const int old = std::exchange(fd_, fd);
  // close(2) is not retried on EINTR: on Linux the descriptor is released either way.
  if (old >= 0 && old != fd) ::close(old);
}

Result<UniqueFd> OpenFile(const std::filesystem::path& path, int flags, mode_t mode) {
  int fd;
  do {
    fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return ErrnoFail(errno, "open", path);
  return UniqueFd(fd);
}

Status WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t written = ::write(fd, data.data(), data.size());
    if (written < 0) {
      if (errno == EINTR) continue;
      return ErrnoFail(errno, fmt::format("write to fd {}", fd));
    }
    if (written == 0) return Fail(ErrorCode::kInternal, "write to fd {} made no progress", fd);
    data.remove_prefix(static_cast<size_t>(written));
  }
  return {};
}

Result<std::string> ReadFile(const std::filesystem::path& path) {
  STRATA_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_RDONLY));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return ErrnoFail(errno, "stat", path);
  if (S_ISDIR(st.st_mode)) return ErrnoFail(EISDIR, "read", path);

  std::string content;
  // st_size is only a hint (procfs reports 0, files can grow); read until EOF.
  size_t capacity = st.st_size > 0 ? static_cast<size_t>(st.st_size) + 1 : 4096;
  content.resize(capacity);
  size_t used = 0;
  while (true) {
    if (used == content.size()) content.resize(content.size() * 2);
    const ssize_t got = ::read(fd.get(), content.data() + used, content.size() - used);
    if (got < 0) {
      if (errno == EINTR) continue;
      return ErrnoFail(errno, "read", path);
    }
    if (got == 0) break;
    used += static_cast<size_t>(got);
  }
  content.resize(used);
  return content;
}

Status FsyncDir(const std::filesystem::path& dir) {
  STRATA_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(dir, O_RDONLY | O_DIRECTORY));
  if (::fsync(fd.get()) != 0) return ErrnoFail(errno, "fsync", dir);
  return {};
}

Status SyncFilesystemOf(const std::filesystem::path& path) {
  STRATA_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_RDONLY | O_CLOEXEC));
  if (::syncfs(fd.get()) != 0) return ErrnoFail(errno, "syncfs", path);
  return {};
}

Status AtomicWriteFile(const std::filesystem::path& path, std::string_view data, mode_t mode) {
  const std::filesystem::path name = path.filename();
  if (name.empty() || name == "." || name == "..") {
    return Fail(ErrorCode::kInvalidArgument, "atomic write: {:?} does not name a file", path.native());
  }
  const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");

  std::string temp_template = (dir / fmt::format(".{}.tmp-XXXXXX", name.native())).native();
  const int raw_fd = ::mkostemp(temp_template.data(), O_CLOEXEC);
  if (raw_fd < 0) return ErrnoFail(errno, "create temp file for", path);
  UniqueFd fd(raw_fd);
  const std::filesystem::path temp_path = temp_template;
  UnlinkOnExit cleanup(temp_path);

  // fchmod, not open's mode: the caller's mode is applied exactly, whatever the umask.
  if (::fchmod(fd.get(), mode) != 0) return ErrnoFail(errno, "chmod", temp_path);
  if (auto written = WriteAll(fd.get(), data); !written) {
    return Fail(written.error().WithContext(fmt::format("write {:?}", temp_path.native())));
  }
  if (::fsync(fd.get()) != 0) return ErrnoFail(errno, "fsync", temp_path);
  // close can report a deferred write error (NFS); a silently lost write is worse than a retry.
  if (::close(fd.release()) != 0) return ErrnoFail(errno, "close", temp_path);
  if (::rename(temp_path.c_str(), path.c_str()) != 0) return ErrnoFail(errno, "rename temp file over", path);
  cleanup.Disarm();
  return FsyncDir(dir);
}

Result<std::filesystem::path> SafeJoin(const std::filesystem::path& root, std::string_view relative) {
  auto reject = [relative](std::string_view reason) {
    return Fail(ErrorCode::kInvalidArgument, "unsafe path {:?}: {}", relative, reason);
  };
  if (relative.empty()) return reject("empty");
  if (relative.find('\0') != std::string_view::npos) return reject("contains a NUL byte");
  if (relative.front() == '/') return reject("absolute");

  std::vector<std::string_view> parts;
  size_t start = 0;
  while (start <= relative.size()) {
    size_t end = relative.find('/', start);
    if (end == std::string_view::npos) end = relative.size();
    const std::string_view part = relative.substr(start, end - start);
    start = end + 1;
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (parts.empty()) return reject("climbs above the root");
      parts.pop_back();
      continue;
    }
    parts.push_back(part);
  }

  std::filesystem::path joined = root;
  for (std::string_view part : parts) joined /= part;
  return joined;
}

Result<TempDir> TempDir::Create(std::string_view prefix) {
  if (prefix.find('/') != std::string_view::npos || prefix.find('\0') != std::string_view::npos) {
    return Fail(ErrorCode::kInvalidArgument, "temp dir prefix {:?} must be a plain name", prefix);
  }
  const char* tmpdir = std::getenv("TMPDIR");
  const std::filesystem::path base = (tmpdir != nullptr && *tmpdir != '\0') ? tmpdir : "/tmp";
  std::string dir_template = (base / fmt::format("{}-XXXXXX", prefix)).native();
  if (::mkdtemp(dir_template.data()) == nullptr) return ErrnoFail(errno, "mkdtemp", dir_template);
  return TempDir(std::filesystem::path(dir_template));
}

TempDir::~TempDir() {
  if (!path_.empty()) RemoveTree(path_);
}

TempDir::TempDir(TempDir&& other) noexcept : path_(std::exchange(other.path_, {})) {}

TempDir& TempDir::operator=(TempDir&& other) noexcept {
  if (this != &other) {
    if (!path_.empty()) RemoveTree(path_);
    path_ = std::exchange(other.path_, {});
  }
  return *this;
}

std::filesystem::path TempDir::Release() { return std::exchange(path_, {}); }

}  // namespace strata
