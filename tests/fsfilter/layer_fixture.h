// Test helpers for fsfilter: a temp dir holding lower layers l1 (topmost), l2, an upper
// and a work dir, plus small writers for files, whiteouts and xattrs in those layers.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "base/file.h"
#include "fsfilter/union_filesystem.h"

namespace strata::fsfilter::testing {

// Walks "a/b/c" from the root of `fs`. The lookup references are left to the view.
inline SysResult<Entry> ResolvePath(UnionFilesystem& fs, const std::string& path) {
  Entry entry{fs.root(), {}};
  FS_ASSIGN_OR_RETURN(entry.attr, fs.view().GetAttr(entry.node));
  size_t start = 0;
  while (start < path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    FS_ASSIGN_OR_RETURN(entry, fs.view().Lookup(entry.node, path.substr(start, end - start)));
    start = end + 1;
  }
  return entry;
}

// The node at `path`, or nullptr with a test failure naming the path and errno.
inline Node* NodeAtPath(UnionFilesystem& fs, const std::string& path) {
  SysResult<Entry> entry = ResolvePath(fs, path);
  EXPECT_TRUE(entry.has_value()) << path << ": " << std::strerror(entry.error());
  return entry ? entry->node : nullptr;
}

// The first 64 KiB of the file at `path` read through the view ("<missing>"/"<unopenable>").
inline std::string ReadThroughView(UnionFilesystem& fs, const std::string& path) {
  Node* node = NodeAtPath(fs, path);
  if (node == nullptr) return "<missing>";
  auto fd = fs.Open(node, O_RDONLY);
  EXPECT_TRUE(fd.has_value());
  if (!fd) return "<unopenable>";
  std::string data(1 << 16, '\0');
  const ssize_t n = ::pread(fd->get(), data.data(), data.size(), 0);
  data.resize(n < 0 ? 0 : static_cast<size_t>(n));
  return data;
}

inline void WriteText(const std::filesystem::path& path, const std::string& text) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  ASSERT_TRUE(out.good()) << path;
}

inline std::string ReadText(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

inline void MakeWhiteout(const std::filesystem::path& path) {
  std::filesystem::create_directories(path.parent_path());
  ASSERT_EQ(::mknod(path.c_str(), S_IFCHR | 0, makedev(0, 0)), 0) << path << ": " << std::strerror(errno);
}

inline void SetXattr(const std::filesystem::path& path, const std::string& name, const std::string& value) {
  ASSERT_EQ(::lsetxattr(path.c_str(), name.c_str(), value.data(), value.size(), 0), 0)
      << path << " " << name << ": " << std::strerror(errno);
}

inline std::optional<std::string> GetXattr(const std::filesystem::path& path, const std::string& name) {
  char buffer[256];
  const ssize_t n = ::lgetxattr(path.c_str(), name.c_str(), buffer, sizeof(buffer));
  if (n < 0) return std::nullopt;
  return std::string(buffer, static_cast<size_t>(n));
}

inline bool IsWhiteoutAt(const std::filesystem::path& path) {
  struct stat st{};
  return ::lstat(path.c_str(), &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0);
}

inline bool Exists(const std::filesystem::path& path) {
  struct stat st{};
  return ::lstat(path.c_str(), &st) == 0;
}

inline struct stat Lstat(const std::filesystem::path& path) {
  struct stat st{};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path << ": " << std::strerror(errno);
  return st;
}

// <tmp>/l1, l2, upper, work (and mnt for mount tests).
class LayerDirs {
 public:
  LayerDirs() {
    auto dir = TempDir::Create("strata-fsfilter-test");
    EXPECT_TRUE(dir.has_value());
    dir_.emplace(std::move(*dir));
    for (const char* name : {"l1", "l2", "upper", "work", "mnt"}) std::filesystem::create_directories(root() / name);
  }
  const std::filesystem::path& root() const { return dir_->path(); }
  std::filesystem::path l1() const { return root() / "l1"; }
  std::filesystem::path l2() const { return root() / "l2"; }
  std::filesystem::path upper() const { return root() / "upper"; }
  std::filesystem::path work() const { return root() / "work"; }
  std::filesystem::path mnt() const { return root() / "mnt"; }

 private:
  std::optional<TempDir> dir_;
};

}  // namespace strata::fsfilter::testing
