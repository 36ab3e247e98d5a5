#include "snapshotter/overlay_lookup.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include <cerrno>

#include "base/file.h"

namespace strata::snapshotter {

namespace {

bool IsOpaque(const std::filesystem::path& dir, const char* opaque_xattr) {
  char value[2];
  const ssize_t n = ::lgetxattr(dir.c_str(), opaque_xattr, value, sizeof(value));
  return n == 1 && value[0] == 'y';
}

}  // namespace

Result<std::optional<std::string>> FindMergedSymlink(const std::vector<std::filesystem::path>& layers,
                                                     std::string_view relative, const char* opaque_xattr) {
  // Invariant: in every layer of `candidates`, the prefix walked so far is a directory (or
  // absent), so lstat of the next prefix follows no symlink.
  std::vector<const std::filesystem::path*> candidates;
  for (const auto& layer : layers) candidates.push_back(&layer);
  std::string prefix;
  size_t start = 0;
  while (start <= relative.size() && !candidates.empty()) {
    const size_t slash = relative.find('/', start);
    const size_t end = slash == std::string_view::npos ? relative.size() : slash;
    if (!prefix.empty()) prefix += '/';
    prefix.append(relative.substr(start, end - start));
    start = end + 1;

    std::vector<const std::filesystem::path*> directories;
    for (const std::filesystem::path* layer : candidates) {
      const std::filesystem::path path = *layer / prefix;
      struct stat st{};
      if (::lstat(path.c_str(), &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR) continue;
        return ErrnoFail(errno, "lstat", path);
      }
      if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) break;  // whited out below here
      if (!S_ISDIR(st.st_mode)) {
        // The nearest entry decides; a non-directory under directories is hidden by them.
        if (directories.empty() && S_ISLNK(st.st_mode)) return prefix;
        break;
      }
      directories.push_back(layer);
      if (IsOpaque(path, opaque_xattr)) break;
    }
    candidates = std::move(directories);
    if (slash == std::string_view::npos) break;
  }
  return std::nullopt;
}

}  // namespace strata::snapshotter
