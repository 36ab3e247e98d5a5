#include "archive/diff.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "archive/apply_paths.h"
#include "base/file.h"
#include "base/xattr.h"

namespace strata::archive {
namespace {

namespace fs = std::filesystem;

constexpr size_t kChunkSize = size_t{256} << 10;
constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";

bool IsOverlayXattr(std::string_view key) {
  return key.starts_with("trusted.overlay.") || key.starts_with("user.overlay.");
}

TarTime MtimeOf(const struct stat& st) {
  return TarTime{static_cast<int64_t>(st.st_mtim.tv_sec), static_cast<uint32_t>(st.st_mtim.tv_nsec)};
}

class OverlayDiffer {
 public:
  OverlayDiffer(const fs::path& upper, const ByteSink& sink, const DiffOptions& options)
      : upper_(upper), writer_(sink), prefix_(options.userxattr ? "user.overlay." : "trusted.overlay.") {}

  Result<DiffStats> Run() {
    STRATA_ASSIGN_OR_RETURN(apply_detail::DirListing root,
                            apply_detail::ListDirAt(AT_FDCWD, upper_.string(), ".", upper_.string()));
    struct stat st{};
    if (::fstat(root.fd.get(), &st) != 0) return ErrnoFail(errno, "stat", upper_);
    dev_ = st.st_dev;
    STRATA_RETURN_IF_ERROR(WalkChildren(std::move(root), ""));
    STRATA_RETURN_IF_ERROR(writer_.Finish());
    return stats_;
  }

 private:
  // Emits the children of directory `dir` (relative name `rel`, "" for the root), sorted.
  Status WalkChildren(apply_detail::DirListing dir, const std::string& rel) {
    std::sort(dir.children.begin(), dir.children.end());
    for (const std::string& child : dir.children) {
      STRATA_RETURN_IF_ERROR(Visit(dir.fd.get(), child, rel.empty() ? child : rel + "/" + child));
    }
    return {};
  }

  Status Emit(const TarEntry& entry) {
    STRATA_RETURN_IF_ERROR(writer_.WriteHeader(entry));
    ++stats_.entries;
    return {};
  }

  Status EmitMarker(std::string name, const struct stat& st) {
    TarEntry marker;
    marker.name = std::move(name);
    marker.mode = 0;
    marker.mtime = MtimeOf(st);
    ++stats_.whiteouts;
    return Emit(marker);
  }

  // Drops overlay's own xattrs; fails on those whose meaning a layer cannot carry.
  Status FilterXattrs(std::map<std::string, std::string>& xattrs, const fs::path& path, bool& opaque) {
    opaque = false;
    for (auto it = xattrs.begin(); it != xattrs.end();) {
      if (!IsOverlayXattr(it->first)) {
        ++it;
        continue;
      }
      if (it->first.starts_with(prefix_)) {
        std::string_view what = std::string_view(it->first).substr(prefix_.size());
        if (what == "redirect") {
          return Fail(ErrorCode::kInvalidArgument, "diff {:?}: overlay redirect_dir is not supported", path.string());
        }
        if (what == "metacopy") {
          return Fail(ErrorCode::kInvalidArgument, "diff {:?}: overlay metacopy is not supported", path.string());
        }
        if (what == "opaque" && it->second == "y") opaque = true;
      }
      it = xattrs.erase(it);
    }
    return {};
  }

  Status Visit(int dirfd, const std::string& name, const std::string& rel) {
    const fs::path path = upper_ / rel;
    struct stat st{};
    if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return ErrnoFail(errno, "stat", path);
    if (st.st_dev != dev_) {
      return Fail(ErrorCode::kInvalidArgument, "diff {:?}: mount point inside the upper dir is not supported",
                  path.string());
    }
    if (S_ISSOCK(st.st_mode)) return {};  // not representable in tar; containerd skips them too
    if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) {
      const size_t slash = rel.rfind('/');
      const std::string dir = slash == std::string::npos ? "" : rel.substr(0, slash + 1);
      return EmitMarker(dir + std::string(kWhiteoutPrefix) + name, st);
    }

    TarEntry entry;
    entry.name = rel;
    entry.mode = st.st_mode & 07777;
    entry.uid = st.st_uid;
    entry.gid = st.st_gid;
    entry.mtime = MtimeOf(st);
    bool opaque = false;

    if (S_ISDIR(st.st_mode)) {
      STRATA_ASSIGN_OR_RETURN(apply_detail::DirListing listing,
                              apply_detail::ListDirAt(dirfd, name, rel, path.string()));
      entry.type = TarEntryType::kDirectory;
      STRATA_ASSIGN_OR_RETURN(entry.xattrs, ReadXattrs(listing.fd.get(), path));
      STRATA_RETURN_IF_ERROR(FilterXattrs(entry.xattrs, path, opaque));
      STRATA_RETURN_IF_ERROR(Emit(entry));
      // The marker must precede the dir's other children: a reader applies it to what the
      // lower layers hold, not to what this layer adds.
      if (opaque) STRATA_RETURN_IF_ERROR(EmitMarker(rel + "/" + std::string(kOpaqueMarker), st));
      return WalkChildren(std::move(listing), rel);
    }

    if (st.st_nlink > 1) {
      auto [it, first] = links_.try_emplace({st.st_dev, st.st_ino}, rel);
      if (!first) {
        entry.type = TarEntryType::kHardLink;
        entry.linkname = it->second;
        return Emit(entry);
      }
    }

    if (S_ISREG(st.st_mode)) return EmitFile(dirfd, name, path, st, std::move(entry));

    if (S_ISLNK(st.st_mode)) {
      entry.type = TarEntryType::kSymlink;
      std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
      for (;;) {  // st_size can be 0 or stale (procfs-like fs, concurrent change): grow until it fits
        ssize_t n = ::readlinkat(dirfd, name.c_str(), target.data(), target.size());
        if (n < 0) return ErrnoFail(errno, "readlink", path);
        if (static_cast<size_t>(n) < target.size()) {
          target.resize(static_cast<size_t>(n));
          break;
        }
        target.resize(target.size() * 2);
      }
      entry.linkname = std::move(target);
    } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
      entry.type = S_ISCHR(st.st_mode) ? TarEntryType::kCharDevice : TarEntryType::kBlockDevice;
      entry.devmajor = major(st.st_rdev);
      entry.devminor = minor(st.st_rdev);
    } else if (S_ISFIFO(st.st_mode)) {
      entry.type = TarEntryType::kFifo;
    } else {
      return Fail(ErrorCode::kInvalidArgument, "diff {:?}: unsupported file type {:o}", path.string(),
                  st.st_mode & S_IFMT);
    }
    // Through /proc/self/fd: the l* calls then never follow a symlink in the parents either.
    const fs::path proc = fmt::format("/proc/self/fd/{}/{}", dirfd, name);
    STRATA_ASSIGN_OR_RETURN(entry.xattrs, ReadXattrs(-1, proc));
    STRATA_RETURN_IF_ERROR(FilterXattrs(entry.xattrs, path, opaque));
    return Emit(entry);
  }

  Status EmitFile(int dirfd, const std::string& name, const fs::path& path, const struct stat& st, TarEntry entry) {
    // O_NONBLOCK: if the file was swapped for a fifo since the stat, open must not hang.
    UniqueFd fd(::openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
    if (!fd) return ErrnoFail(errno, "open", path);
    struct stat now{};
    if (::fstat(fd.get(), &now) != 0) return ErrnoFail(errno, "stat", path);
    if (now.st_ino != st.st_ino || now.st_dev != st.st_dev || now.st_size != st.st_size) return Changed(path);
    STRATA_ASSIGN_OR_RETURN(entry.xattrs, ReadXattrs(fd.get(), path));
    bool opaque = false;
    STRATA_RETURN_IF_ERROR(FilterXattrs(entry.xattrs, path, opaque));
    entry.type = TarEntryType::kRegular;
    entry.size = static_cast<uint64_t>(st.st_size);
    STRATA_RETURN_IF_ERROR(Emit(entry));

    if (buffer_.empty()) buffer_.resize(kChunkSize);
    uint64_t remaining = entry.size;
    for (;;) {
      // Past the expected end, read one byte more to notice a file that grew.
      const size_t want = remaining > 0 ? static_cast<size_t>(std::min<uint64_t>(remaining, buffer_.size())) : 1;
      ssize_t n = ::read(fd.get(), buffer_.data(), want);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoFail(errno, "read", path);
      if (remaining == 0) {
        if (n != 0) return Changed(path);
        break;
      }
      if (n == 0) return Changed(path);
      STRATA_RETURN_IF_ERROR(writer_.WriteData(std::string_view(buffer_.data(), static_cast<size_t>(n))));
      remaining -= static_cast<uint64_t>(n);
      stats_.bytes += static_cast<uint64_t>(n);
    }
    return {};
  }

  static std::unexpected<Error> Changed(const fs::path& path) {
    return Fail(ErrorCode::kFailedPrecondition, "file changed while diffing: {}", path.string());
  }

  const fs::path& upper_;
  TarWriter writer_;
  std::string prefix_;  // the overlay xattr namespace the kernel reads: "trusted.overlay."
  dev_t dev_ = 0;
  std::map<std::pair<dev_t, ino_t>, std::string> links_;  // (dev, ino) -> first path seen
  std::vector<char> buffer_;
  DiffStats stats_;
};

}  // namespace

Result<DiffStats> WriteOverlayDiff(const fs::path& upper, const ByteSink& sink, const DiffOptions& options) {
  OverlayDiffer differ(upper, sink, options);
  return differ.Run();
}

}  // namespace strata::archive
