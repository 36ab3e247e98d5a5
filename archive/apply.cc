// ApplyLayer: see apply.h. Every file system operation is relative to a directory fd that
// was reached from the root fd without following any symlink.
#include "archive/apply.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include <fmt/format.h>

#include "archive/apply_paths.h"
#include "archive/tar_reader.h"
#include "base/file.h"

namespace strata::archive {
namespace {

namespace fs = std::filesystem;
using namespace apply_detail;  // NOLINT: the helpers exist for this file only

constexpr size_t kCopyBuffer = size_t{1} << 20;  // 1 MiB
constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";

class Applier {
 public:
  Applier(ByteReader& tar, const ApplyOptions& options) : reader_(tar), options_(options) {}

  Result<ApplyStats> Run(const fs::path& root) {
    int fd = ::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return ErrnoFail(errno, "open layer root", root);
    root_.reset(fd);
    root_path_ = root;
    chown_ = options_.same_owner && ::geteuid() == 0;
    buffer_.resize(kCopyBuffer);
    std::string previous;
    while (true) {
      auto next = reader_.Next();
      if (!next) {
        return Fail(next.error().WithContext(previous.empty() ? std::string("reading layer")
                                                              : fmt::format("reading layer after entry {:?}", previous)));
      }
      if (!next->has_value()) break;
      TarEntry& entry = **next;
      previous = entry.name;
      STRATA_RETURN_IF_ERROR(ApplyEntry(entry));
      ++stats_.entries;
    }
    STRATA_RETURN_IF_ERROR(ApplyDirTimes());
    return stats_;
  }

 private:
  // Opens the directory `comps[0..count)` below root without following symlinks,
  // creating missing components (0755) when `create`.
  Result<UniqueFd> OpenDir(const Components& comps, size_t count, bool create, std::string_view entry) {
    if (count == 0) {
      int fd = ::fcntl(root_.get(), F_DUPFD_CLOEXEC, 0);
      if (fd < 0) return SysFail(entry, errno, "dup", ".");
      return UniqueFd(fd);
    }
    std::string rel = Join(comps, count);
    for (int attempt = 0; attempt < 3; ++attempt) {
      long fd = Openat2(root_.get(), rel.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC,
                        RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS);
      if (fd >= 0) return UniqueFd(static_cast<int>(fd));
      if (errno != EAGAIN) break;
    }
    // ENOSYS, or a component missing / a symlink / not a directory: the walk below both
    // creates what is missing and names the offending component.
    UniqueFd cur;
    {
      int fd = ::fcntl(root_.get(), F_DUPFD_CLOEXEC, 0);
      if (fd < 0) return SysFail(entry, errno, "dup", ".");
      cur.reset(fd);
    }
    for (size_t i = 0; i < count; ++i) {
      const std::string& comp = comps[i];
      int fd = ::openat(cur.get(), comp.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0 && errno == ENOENT && create) {
        if (::mkdirat(cur.get(), comp.c_str(), 0755) != 0) {
          if (errno != EEXIST) return SysFail(entry, errno, "mkdir", Join(comps, i + 1));
        } else {
          stats_.implied_dirs.push_back(Join(comps, i + 1));
        }
        fd = ::openat(cur.get(), comp.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      }
      if (fd < 0) {
        int e = errno;
        struct stat st{};
        if ((e == ENOTDIR || e == ELOOP) && ::fstatat(cur.get(), comp.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
          if (S_ISLNK(st.st_mode)) {
            return Refuse(entry, fmt::format("path component {:?} is a symlink (never followed)", Join(comps, i + 1)));
          }
          return Refuse(entry, fmt::format("path component {:?} is not a directory", Join(comps, i + 1)));
        }
        return SysFail(entry, e, "open", Join(comps, i + 1));
      }
      cur.reset(fd);
    }
    return cur;
  }

  // The directory holding entry `comps` (created as needed), as OpenDir resolves it.
  // Consecutive entries mostly share a directory, so the last one stays open; anything
  // that removes entries drops it (the cached inode could be a removed directory).
  Result<int> ParentDir(const Components& comps, std::string_view entry) {
    const size_t count = comps.size() - 1;
    const bool same = cached_parent_ && cached_parent_->comps.size() == count &&
                      std::equal(comps.begin(), comps.begin() + static_cast<std::ptrdiff_t>(count),
                                 cached_parent_->comps.begin());
    if (!same) {
      STRATA_ASSIGN_OR_RETURN(UniqueFd fd, OpenDir(comps, count, true, entry));
      cached_parent_ = CachedDir{Components(comps.begin(), comps.begin() + static_cast<std::ptrdiff_t>(count)),
                                 std::move(fd)};
    }
    return cached_parent_->fd.get();
  }

  // The current entry may still be using the cached fd: it stays open until the next drop.
  void DropParentCache() {
    if (!cached_parent_) return;
    retired_parent_ = std::move(cached_parent_->fd);
    cached_parent_.reset();
  }

  Status ApplyEntry(TarEntry& entry) {
    const std::string& name = entry.name;
    STRATA_ASSIGN_OR_RETURN(Components comps, CleanName(name, name, "name"));
    if (comps.empty()) {
      if (entry.type != TarEntryType::kDirectory) return Refuse(name, "only a directory may name the root");
      STRATA_ASSIGN_OR_RETURN(UniqueFd dir, OpenDir(comps, 0, false, name));
      STRATA_RETURN_IF_ERROR(CheckXattrs(entry));
      STRATA_RETURN_IF_ERROR(SetDirMetadata(dir.get(), entry, "."));
      dir_times_[""] = entry.mtime;
      return {};
    }
    const std::string& base = comps.back();
    if (base.starts_with(kWhiteoutPrefix)) return ApplyWhiteout(entry, comps);
    STRATA_RETURN_IF_ERROR(CheckXattrs(entry));

    STRATA_ASSIGN_OR_RETURN(const int pfd, ParentDir(comps, name));
    const std::string rel = Join(comps);

    // The common case first: a new regular file (no stat before the exclusive create).
    if (entry.type == TarEntryType::kRegular) {
      int raw = ::openat(pfd, base.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
      if (raw >= 0) {
        written_.insert(rel);
        return WriteRegular(UniqueFd(raw), rel, entry);
      }
      if (errno != EEXIST) return SysFail(name, errno, "create", rel);
    }

    struct stat existing{};
    bool exists = ::fstatat(pfd, base.c_str(), &existing, AT_SYMLINK_NOFOLLOW) == 0;
    if (!exists && errno != ENOENT) return SysFail(name, errno, "stat", rel);
    if (exists && !(entry.type == TarEntryType::kDirectory && S_ISDIR(existing.st_mode))) {
      if (entry.type == TarEntryType::kHardLink) {
        // Validate the target before destroying what is there (and a link onto itself).
        STRATA_RETURN_IF_ERROR(CheckLinkTarget(entry));
      }
      STRATA_RETURN_IF_ERROR(RemoveAt(pfd, base, name, rel));
      ForgetDirTimes(rel);
      exists = false;
      DropParentCache();  // what went may have been (above) the cached directory
    }
    written_.insert(rel);

    switch (entry.type) {
      case TarEntryType::kRegular: {
        int raw = ::openat(pfd, base.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (raw < 0) return SysFail(name, errno, "create", rel);
        return WriteRegular(UniqueFd(raw), rel, entry);
      }
      case TarEntryType::kDirectory: {
        if (!exists && ::mkdirat(pfd, base.c_str(), 0700) != 0) return SysFail(name, errno, "mkdir", rel);
        int fd = ::openat(pfd, base.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) return SysFail(name, errno, "open", rel);
        UniqueFd dir(fd);
        STRATA_RETURN_IF_ERROR(SetDirMetadata(dir.get(), entry, rel));
        dir_times_[rel] = entry.mtime;
        return {};
      }
      case TarEntryType::kSymlink:
        if (entry.linkname.empty()) return Refuse(name, "symlink with empty target");
        if (entry.linkname.find('\0') != std::string::npos) return Refuse(name, "NUL byte in symlink target");
        if (::symlinkat(entry.linkname.c_str(), pfd, base.c_str()) != 0) return SysFail(name, errno, "symlink", rel);
        return SetPathMetadata(pfd, base, rel, entry, /*is_symlink=*/true);
      case TarEntryType::kHardLink: {
        STRATA_ASSIGN_OR_RETURN(auto target, CheckLinkTarget(entry));
        if (::linkat(target.first.get(), target.second.c_str(), pfd, base.c_str(), 0) != 0) {
          return SysFail(name, errno, "link", rel);
        }
        return {};  // metadata belongs to the shared inode, set by its first entry
      }
      case TarEntryType::kCharDevice:
      case TarEntryType::kBlockDevice:
      case TarEntryType::kFifo: {
        mode_t kind = entry.type == TarEntryType::kCharDevice   ? S_IFCHR
                      : entry.type == TarEntryType::kBlockDevice ? S_IFBLK
                                                                 : S_IFIFO;
        dev_t dev = kind == S_IFIFO ? 0 : makedev(entry.devmajor, entry.devminor);
        if (::mknodat(pfd, base.c_str(), kind | 0600, dev) != 0) return SysFail(name, errno, "mknod", rel);
        return SetPathMetadata(pfd, base, rel, entry, /*is_symlink=*/false);
      }
    }
    return Refuse(name, fmt::format("unsupported entry type {:?}", static_cast<char>(entry.type)));
  }

  // The hard-link target's parent dir and base name, after checking that it resolves under
  // root and is an existing non-directory.
  Result<std::pair<UniqueFd, std::string>> CheckLinkTarget(const TarEntry& entry) {
    STRATA_ASSIGN_OR_RETURN(Components target, CleanName(entry.name, entry.linkname, "hard link target"));
    if (target.empty()) return Refuse(entry.name, "hard link to the root directory");
    STRATA_ASSIGN_OR_RETURN(UniqueFd dir, OpenDir(target, target.size() - 1, false, entry.name));
    struct stat st{};
    if (::fstatat(dir.get(), target.back().c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      return SysFail(entry.name, errno, "stat hard link target", Join(target));
    }
    if (S_ISDIR(st.st_mode)) return Refuse(entry.name, fmt::format("hard link to directory {:?}", entry.linkname));
    return std::pair<UniqueFd, std::string>(std::move(dir), target.back());
  }

  Status CheckXattrs(const TarEntry& entry) {
    for (const auto& [key, value] : entry.xattrs) {
      if (key.starts_with("trusted.overlay.") || key.starts_with("user.overlay.")) {
        return Refuse(entry.name, fmt::format("forged overlay xattr {:?} refused", key));
      }
      if (key.empty() || key.find('\0') != std::string::npos) return Refuse(entry.name, "invalid xattr name");
    }
    return {};
  }

  // Content and metadata of a regular file just created as `fd`.
  Status WriteRegular(UniqueFd fd, const std::string& rel, const TarEntry& entry) {
    while (true) {
      auto got = reader_.ReadContent(std::span<char>(buffer_.data(), buffer_.size()));
      if (!got) return Fail(got.error().WithContext(fmt::format("layer entry {}", QuotedName(entry.name))));
      if (*got == 0) break;
      for (std::string_view data(buffer_.data(), *got); !data.empty();) {
        const ssize_t n = ::write(fd.get(), data.data(), data.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return SysFail(entry.name, errno, "write", rel);  // ENOSPC names the file
        data.remove_prefix(static_cast<size_t>(n));
      }
      stats_.bytes += *got;
    }
    if (chown_ && ::fchown(fd.get(), static_cast<uid_t>(entry.uid), static_cast<gid_t>(entry.gid)) != 0) {
      return SysFail(entry.name, errno, "chown", rel);
    }
    if (::fchmod(fd.get(), entry.mode & 07777) != 0) return SysFail(entry.name, errno, "chmod", rel);
    for (const auto& [key, value] : entry.xattrs) {
      if (::fsetxattr(fd.get(), key.c_str(), value.data(), value.size(), 0) != 0) {
        return SysFail(entry.name, errno, fmt::format("setxattr {}", key), rel);
      }
    }
    timespec times[2] = {ToTimespec(entry.mtime), ToTimespec(entry.mtime)};
    if (::futimens(fd.get(), times) != 0) return SysFail(entry.name, errno, "utimens", rel);
    return {};
  }

  // Owner, mode, xattrs of a directory opened O_RDONLY; times are set at the end.
  Status SetDirMetadata(int fd, const TarEntry& entry, const std::string& rel) {
    int target = fd;
    UniqueFd reopened;
    if (rel == ".") {  // the root fd is O_PATH: reopen for fchmod/fsetxattr
      int raw = ::openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (raw < 0) return SysFail(entry.name, errno, "open", rel);
      reopened.reset(raw);
      target = raw;
    }
    if (chown_ && ::fchown(target, static_cast<uid_t>(entry.uid), static_cast<gid_t>(entry.gid)) != 0) {
      return SysFail(entry.name, errno, "chown", rel);
    }
    if (::fchmod(target, entry.mode & 07777) != 0) return SysFail(entry.name, errno, "chmod", rel);
    for (const auto& [key, value] : entry.xattrs) {
      if (::fsetxattr(target, key.c_str(), value.data(), value.size(), 0) != 0) {
        return SysFail(entry.name, errno, fmt::format("setxattr {}", key), rel);
      }
    }
    return {};
  }

  // Metadata of a just-created symlink, device or fifo, addressed as (parent fd, name).
  Status SetPathMetadata(int pfd, const std::string& base, const std::string& rel, const TarEntry& entry,
                         bool is_symlink) {
    if (chown_ && ::fchownat(pfd, base.c_str(), static_cast<uid_t>(entry.uid), static_cast<gid_t>(entry.gid),
                             AT_SYMLINK_NOFOLLOW) != 0) {
      return SysFail(entry.name, errno, "chown", rel);
    }
    // Symlink modes do not exist on Linux. The node was created by us a moment ago in a
    // directory reached without symlinks, so fchmodat on it cannot be redirected.
    if (!is_symlink && ::fchmodat(pfd, base.c_str(), entry.mode & 07777, 0) != 0) {
      return SysFail(entry.name, errno, "chmod", rel);
    }
    if (!entry.xattrs.empty()) {
      // l*xattr through the parent's /proc/self/fd link: the final component is not followed.
      std::string path = fmt::format("/proc/self/fd/{}/{}", pfd, base);
      for (const auto& [key, value] : entry.xattrs) {
        if (::lsetxattr(path.c_str(), key.c_str(), value.data(), value.size(), 0) != 0) {
          return SysFail(entry.name, errno, fmt::format("setxattr {}", key), rel);
        }
      }
    }
    timespec times[2] = {ToTimespec(entry.mtime), ToTimespec(entry.mtime)};
    if (::utimensat(pfd, base.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
      return SysFail(entry.name, errno, "utimensat", rel);
    }
    return {};
  }

  Status ApplyWhiteout(const TarEntry& entry, const Components& comps) {
    const std::string& name = entry.name;
    const std::string& base = comps.back();
    ++stats_.whiteouts;
    Components dir(comps.begin(), comps.end() - 1);
    DropParentCache();  // whiteouts remove entries
    STRATA_ASSIGN_OR_RETURN(UniqueFd parent, OpenDir(dir, dir.size(), true, name));
    if (base == kOpaqueMarker) {
      if (options_.overlay_whiteouts) {
        int raw = ::openat(parent.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (raw < 0) return SysFail(name, errno, "open", Join(dir));
        UniqueFd fd(raw);
        const char* key = options_.userxattr ? "user.overlay.opaque" : "trusted.overlay.opaque";
        if (::fsetxattr(fd.get(), key, "y", 1, 0) != 0) return SysFail(name, errno, fmt::format("setxattr {}", key), Join(dir));
        return {};
      }
      return RemoveUnwritten(parent.get(), Join(dir), name);
    }
    std::string target = base.substr(kWhiteoutPrefix.size());
    if (target.empty() || target == "." || target == "..") {
      return Refuse(name, fmt::format("whiteout of {:?} refused", target));
    }
    if (target.starts_with(kWhiteoutPrefix)) return Refuse(name, "whiteout of a whiteout name refused");
    std::string rel = dir.empty() ? target : Join(dir) + "/" + target;
    STRATA_RETURN_IF_ERROR(RemoveAt(parent.get(), target, name, rel));
    ForgetDirTimes(rel);
    if (!options_.overlay_whiteouts) return {};
    if (::mknodat(parent.get(), target.c_str(), S_IFCHR | 0, makedev(0, 0)) != 0) {
      return SysFail(name, errno, "mknod whiteout", rel);
    }
    written_.insert(rel);
    if (chown_ && ::fchownat(parent.get(), target.c_str(), static_cast<uid_t>(entry.uid),
                             static_cast<gid_t>(entry.gid), AT_SYMLINK_NOFOLLOW) != 0) {
      return SysFail(name, errno, "chown", rel);
    }
    // The marker's mtime, so a diff of this upper dir reproduces the marker exactly.
    timespec times[2] = {ToTimespec(entry.mtime), ToTimespec(entry.mtime)};
    if (::utimensat(parent.get(), target.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
      return SysFail(name, errno, "utimensat", rel);
    }
    return {};
  }

  // Non-overlay opaque marker: removes every descendant of `dir` not written by this layer.
  Status RemoveUnwritten(int dirfd, const std::string& dir_rel, std::string_view entry) {
    STRATA_ASSIGN_OR_RETURN(DirListing listing, ListDirAt(dirfd, ".", entry, dir_rel));
    Status status;
    for (const auto& child : listing.children) {
      std::string rel = dir_rel.empty() ? child : dir_rel + "/" + child;
      if (!written_.contains(rel)) {
        status = RemoveAt(listing.fd.get(), child, entry, rel);
      } else {
        int sub = ::openat(listing.fd.get(), child.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub >= 0) {
          UniqueFd subfd(sub);
          status = RemoveUnwritten(subfd.get(), rel, entry);
        }
      }
      if (!status) break;
    }
    return status;
  }

  // `rel` was removed: its pending directory times (and its descendants') no longer apply.
  void ForgetDirTimes(const std::string& rel) {
    // Keys starting with `rel` are contiguous in the map; erase rel itself and rel/...
    for (auto it = dir_times_.lower_bound(rel); it != dir_times_.end() && it->first.starts_with(rel);) {
      if (it->first.size() == rel.size() || it->first[rel.size()] == '/') {
        it = dir_times_.erase(it);
      } else {
        ++it;
      }
    }
  }

  // Directory times, deepest first, after everything beneath them was written.
  Status ApplyDirTimes() {
    std::vector<std::pair<std::string, TarTime>> dirs(dir_times_.begin(), dir_times_.end());
    std::stable_sort(dirs.begin(), dirs.end(), [](const auto& a, const auto& b) {
      auto depth = [](const std::string& s) { return s.empty() ? 0 : 1 + std::count(s.begin(), s.end(), '/'); };
      return depth(a.first) > depth(b.first);
    });
    for (const auto& [rel, mtime] : dirs) {
      timespec times[2] = {ToTimespec(mtime), ToTimespec(mtime)};
      auto comps = CleanName(rel, rel.empty() ? "." : rel, "name");
      if (!comps) return Fail(comps.error());
      auto dir = OpenDir(*comps, comps->size(), false, rel.empty() ? "." : rel);
      if (!dir) {
        if (dir.error().code() == ErrorCode::kNotFound) continue;  // removed later by this layer
        return Fail(dir.error());
      }
      // O_PATH fds cannot futimens: go through the /proc link to the directory we opened.
      std::string path = fmt::format("/proc/self/fd/{}", dir->get());
      if (::utimensat(AT_FDCWD, path.c_str(), times, 0) != 0) {
        return SysFail(rel.empty() ? "." : rel, errno, "utimensat", rel.empty() ? "." : rel);
      }
    }
    return {};
  }

  static timespec ToTimespec(const TarTime& t) {
    timespec ts{};
    ts.tv_sec = static_cast<time_t>(t.seconds);
    ts.tv_nsec = static_cast<long>(t.nanoseconds);
    return ts;
  }

  // apply_detail::SysFail with the path under the layer root made whole: a failure (ENOSPC
  // above all) names the file in the store, not just its place in the layer.
  std::unexpected<Error> SysFail(std::string_view name, int errnum, std::string_view op, std::string_view rel) const {
    return apply_detail::SysFail(name, errnum, op, (root_path_ / rel).lexically_normal().string());
  }

  TarReader reader_;
  const ApplyOptions& options_;
  UniqueFd root_;
  fs::path root_path_;
  bool chown_ = false;
  std::vector<char> buffer_;
  ApplyStats stats_;
  struct CachedDir {
    Components comps;
    UniqueFd fd;
  };
  std::optional<CachedDir> cached_parent_;
  UniqueFd retired_parent_;
  std::map<std::string, TarTime> dir_times_;
  std::unordered_set<std::string> written_;
};

}  // namespace

Result<ApplyStats> ApplyLayer(ByteReader& tar, const std::filesystem::path& root, const ApplyOptions& options) {
  Applier applier(tar, options);
  return applier.Run(root);
}

}  // namespace strata::archive
