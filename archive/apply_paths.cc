// Path helpers of ApplyLayer: name cleaning, openat2, fd-relative recursive removal.
#include "archive/apply_paths.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>

#include <fmt/format.h>

#include "archive/apply.h"
#include "base/file.h"

namespace strata::archive {
namespace {
std::atomic<bool> g_force_no_openat2{false};
}  // namespace

namespace internal {
void SetForceNoOpenat2(bool force) { g_force_no_openat2.store(force); }
}  // namespace internal

namespace apply_detail {

std::string QuotedName(std::string_view name) {
  constexpr size_t kShown = 200;
  if (name.size() <= kShown) return fmt::format("{:?}", name);
  return fmt::format("{:?}... ({} bytes)", name.substr(0, kShown), name.size());
}

std::unexpected<Error> Refuse(std::string_view name, std::string_view reason) {
  return Fail(ErrorCode::kInvalidArgument, "layer entry {}: {}", QuotedName(name), reason);
}

std::unexpected<Error> SysFail(std::string_view name, int errnum, std::string_view op, std::string_view path) {
  return Fail(ErrnoFail(errnum, op, path).error().WithContext(fmt::format("layer entry {}", QuotedName(name))));
}

// Applies the name rules of apply.h; `what` names the field in messages ("name", "link target").
Result<Components> CleanName(std::string_view entry_name, std::string_view raw, std::string_view what) {
  if (raw.empty()) return Refuse(entry_name, fmt::format("empty {}", what));
  if (raw.find('\0') != std::string_view::npos) return Refuse(entry_name, fmt::format("NUL byte in {}", what));
  // No path the kernel resolves in one call is longer (and no 100,000-level name is read
  // into components).
  if (raw.size() >= PATH_MAX) {
    return Refuse(entry_name, fmt::format("{} is {} bytes, longer than PATH_MAX ({})", what, raw.size(), PATH_MAX));
  }
  if (raw.front() == '/') return Refuse(entry_name, fmt::format("absolute {} {:?} refused", what, raw));
  Components out;
  size_t pos = 0;
  while (pos <= raw.size()) {
    size_t slash = raw.find('/', pos);
    if (slash == std::string_view::npos) slash = raw.size();
    std::string_view comp = raw.substr(pos, slash - pos);
    pos = slash + 1;
    if (comp.empty() || comp == ".") continue;
    if (comp == "..") return Refuse(entry_name, fmt::format("\"..\" component in {} {:?}", what, raw));
    out.emplace_back(comp);
  }
  if (out.size() > kMaxPathDepth) {
    return Refuse(entry_name, fmt::format("{} is {} levels deep, deeper than the {} a layer may nest", what, out.size(),
                                          kMaxPathDepth));
  }
  return out;
}

std::string Join(const Components& comps, size_t count) {
  std::string out;
  for (size_t i = 0; i < count && i < comps.size(); ++i) {
    if (i > 0) out += '/';
    out += comps[i];
  }
  return out;
}
std::string Join(const Components& comps) { return Join(comps, comps.size()); }

long Openat2(int dirfd, const char* path, uint64_t flags, uint64_t resolve) {
  if (g_force_no_openat2.load(std::memory_order_relaxed)) {
    errno = ENOSYS;
    return -1;
  }
  open_how how{};
  how.flags = flags;
  how.resolve = resolve;
  return ::syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

// Removes `name` in `dirfd` (recursively if it is a directory), never following symlinks.
// Missing is fine.
Status RemoveAt(int dirfd, const std::string& name, std::string_view entry, const std::string& display) {
  struct stat st{};
  if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return {};
    return SysFail(entry, errno, "stat", display);
  }
  if (S_ISDIR(st.st_mode)) {
    STRATA_ASSIGN_OR_RETURN(DirListing listing, ListDirAt(dirfd, name, entry, display));
    Status status;
    for (const auto& child : listing.children) {
      status = RemoveAt(listing.fd.get(), child, entry, display + "/" + child);
      if (!status) break;
    }
    if (!status) return status;
    if (::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
      return SysFail(entry, errno, "rmdir", display);
    }
    return {};
  }
  if (::unlinkat(dirfd, name.c_str(), 0) != 0 && errno != ENOENT) return SysFail(entry, errno, "unlink", display);
  return {};
}

Result<DirListing> ListDirAt(int dirfd, const std::string& name, std::string_view entry, std::string_view display) {
  DirListing listing;
  listing.fd = UniqueFd(::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!listing.fd) return SysFail(entry, errno, "open", display);
  // fdopendir takes ownership of the fd it is given: hand it a duplicate.
  const int scan_fd = ::dup(listing.fd.get());
  if (scan_fd < 0) return SysFail(entry, errno, "dup", display);
  DIR* dir = ::fdopendir(scan_fd);
  if (dir == nullptr) {
    const int error = errno;
    ::close(scan_fd);
    return SysFail(entry, error, "fdopendir", display);
  }
  while (dirent* de = ::readdir(dir)) {
    std::string_view child = de->d_name;
    if (child != "." && child != "..") listing.children.emplace_back(child);
  }
  ::closedir(dir);
  return listing;
}

}  // namespace apply_detail
}  // namespace strata::archive
