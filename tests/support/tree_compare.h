// Comparing two directory trees entry by entry (type, mode, owner, content, symlink target,
// xattrs, device numbers, hard-link grouping, optionally mtimes): checks an unpack of ours
// against a peer's (umoci, tar) without trusting either implementation's own bookkeeping.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/error.h"

namespace strata::test_support {

// One filesystem entry as lstat/lgetxattr see it.
struct TreeEntry {
  std::string path;  // relative to the root, "/"-separated; the root itself is "."
  char type = '?';   // 'f' file, 'd' dir, 'l' symlink, 'c' char dev, 'b' block dev, 'p' fifo, 's' socket
  uint32_t mode = 0;  // permission bits incl. setuid/setgid/sticky (07777)
  uint64_t uid = 0, gid = 0;
  uint64_t size = 0;               // files only (0 for other types: dir sizes are fs-specific)
  std::string content_sha256;      // files only, hex
  std::string symlink_target;      // symlinks only
  std::map<std::string, std::string> xattrs;  // after ignore_xattr_prefixes
  uint32_t rdev_major = 0, rdev_minor = 0;    // devices only
  int64_t mtime_ns = 0;
  // Smallest path of this entry's inode group when the inode has >= 2 paths inside the
  // tree; "" otherwise. Directories never have one.
  std::string hardlink_group;
};

struct TreeCompareOptions {
  // Off by default: most unpackers do not promise mtimes. compare_mtimes covers non-dirs;
  // directory mtimes also need compare_dir_mtimes (they change as children are written).
  bool compare_mtimes = false;
  bool compare_dir_mtimes = false;
  // xattrs whose name starts with one of these are dropped (overlayfs bookkeeping, LSM labels).
  std::vector<std::string> ignore_xattr_prefixes = {"trusted.overlay.", "user.overlay.", "security.selinux"};
  // Relative paths ("etc/hosts") skipped together with everything beneath them. The root
  // "." is always listed (edit ScanTree's output and use CompareEntries to neutralise it).
  std::vector<std::string> ignore_paths;
};

// Every entry under `root`, root itself included as ".", sorted by path (byte order).
// Never follows symlinks; a directory on another device (a mount point) is listed but not
// descended into. Errors name the path that could not be read.
Result<std::vector<TreeEntry>> ScanTree(const std::filesystem::path& root, const TreeCompareOptions& options = {});

// TreeEntry::type for a st_mode: 'f' 'd' 'l' 'c' 'b' 'p' 's', '?' otherwise.
char TreeEntryType(mode_t mode);

// Differences between the trees at `a` and `b`, one human-readable line each
// ("only in A: etc/x", "etc/passwd: mode 0644 vs 0600", "hard-link groups differ at x: ...");
// empty when they are equal. At most kMaxTreeDifferences lines plus one "... N more" line.
// A tree that cannot be scanned yields one line with the error.
inline constexpr size_t kMaxTreeDifferences = 50;
std::vector<std::string> CompareTrees(const std::filesystem::path& a, const std::filesystem::path& b,
                                      const TreeCompareOptions& options = {});

// The same, on already scanned entries (lets tests edit one side).
std::vector<std::string> CompareEntries(const std::vector<TreeEntry>& a, const std::vector<TreeEntry>& b,
                                        const TreeCompareOptions& options = {});

// gtest form: EXPECT_TRUE(TreesEqual(a, b)) prints every difference on failure.
::testing::AssertionResult TreesEqual(const std::filesystem::path& a, const std::filesystem::path& b,
                                      const TreeCompareOptions& options = {});

}  // namespace strata::test_support
