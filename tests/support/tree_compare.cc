#include "tests/support/tree_compare.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <set>
#include <utility>

#include <fmt/format.h>

#include "base/digest.h"
#include "base/file.h"

namespace strata::test_support {
namespace {

namespace fs = std::filesystem;


bool IsIgnoredPath(const std::string& path, const TreeCompareOptions& options) {
  for (const auto& ignored : options.ignore_paths) {
    if (path == ignored || (path.size() > ignored.size() && path.starts_with(ignored) && path[ignored.size()] == '/')) {
      return true;
    }
  }
  return false;
}

Result<std::string> Sha256OfFile(const fs::path& file) {
  STRATA_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(file, O_RDONLY | O_NOFOLLOW));
  Digester digester;
  std::string buffer(1 << 16, '\0');
  for (;;) {
    ssize_t n = ::read(fd.get(), buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoFail(errno, "read", file);
    if (n == 0) break;
    digester.Update(buffer.data(), static_cast<size_t>(n));
  }
  return digester.Finish().hex();
}

Result<std::map<std::string, std::string>> XattrsOf(const fs::path& file, const TreeCompareOptions& options) {
  std::map<std::string, std::string> xattrs;
  ssize_t size = ::llistxattr(file.c_str(), nullptr, 0);
  if (size < 0 && (errno == ENOTSUP || errno == EOPNOTSUPP)) return xattrs;
  if (size < 0) return ErrnoFail(errno, "llistxattr", file);
  std::string names(static_cast<size_t>(size), '\0');
  size = ::llistxattr(file.c_str(), names.data(), names.size());
  if (size < 0) return ErrnoFail(errno, "llistxattr", file);
  names.resize(static_cast<size_t>(size));
  for (size_t pos = 0; pos < names.size();) {
    std::string name(names.c_str() + pos);
    pos += name.size() + 1;
    if (name.empty()) continue;
    bool ignored = std::ranges::any_of(options.ignore_xattr_prefixes,
                                       [&](const std::string& prefix) { return name.starts_with(prefix); });
    if (ignored) continue;
    ssize_t vsize = ::lgetxattr(file.c_str(), name.c_str(), nullptr, 0);
    if (vsize < 0) return ErrnoFail(errno, "lgetxattr " + name, file);
    std::string value(static_cast<size_t>(vsize), '\0');
    vsize = ::lgetxattr(file.c_str(), name.c_str(), value.data(), value.size());
    if (vsize < 0) return ErrnoFail(errno, "lgetxattr " + name, file);
    value.resize(static_cast<size_t>(vsize));
    xattrs.emplace(std::move(name), std::move(value));
  }
  return xattrs;
}

struct Scan {
  const TreeCompareOptions& options;
  dev_t root_dev = 0;
  std::vector<TreeEntry> entries;
  std::map<std::pair<dev_t, ino_t>, std::vector<size_t>> inodes;  // non-dirs -> entry indexes

  Status Visit(const fs::path& file, const std::string& rel) {
    struct stat st;
    if (::lstat(file.c_str(), &st) != 0) return ErrnoFail(errno, "lstat", file);
    TreeEntry entry{.path = rel, .type = TreeEntryType(st.st_mode), .mode = static_cast<uint32_t>(st.st_mode & 07777),
                    .uid = st.st_uid, .gid = st.st_gid};
    entry.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
    if (entry.type == 'f') {
      entry.size = static_cast<uint64_t>(st.st_size);
      STRATA_ASSIGN_OR_RETURN(entry.content_sha256, Sha256OfFile(file));
    } else if (entry.type == 'l') {
      std::error_code ec;
      entry.symlink_target = fs::read_symlink(file, ec).string();
      if (ec) return Fail(ErrorCode::kInternal, "readlink \"{}\": {}", file.string(), ec.message());
    } else if (entry.type == 'c' || entry.type == 'b') {
      entry.rdev_major = major(st.st_rdev);
      entry.rdev_minor = minor(st.st_rdev);
    }
    STRATA_ASSIGN_OR_RETURN(entry.xattrs, XattrsOf(file, options));
    if (entry.type != 'd') inodes[{st.st_dev, st.st_ino}].push_back(entries.size());
    entries.push_back(std::move(entry));

    // Do not cross into other mounts: list the mount point, skip its contents.
    if (!S_ISDIR(st.st_mode) || st.st_dev != root_dev) return {};
    std::error_code ec;
    fs::directory_iterator it(file, ec);
    if (ec) return Fail(ErrorCode::kInternal, "opendir \"{}\": {}", file.string(), ec.message());
    for (const auto& child : it) {
      std::string name = child.path().filename().string();
      std::string child_rel = rel == "." ? name : rel + "/" + name;
      if (IsIgnoredPath(child_rel, options)) continue;
      STRATA_RETURN_IF_ERROR(Visit(child.path(), child_rel));
    }
    return {};
  }
};

std::string Octal(uint32_t mode) { return fmt::format("{:04o}", mode); }

std::string Quote(const std::string& value) {
  std::string out = "\"";
  for (unsigned char c : value) {
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("\\x{:02x}", c);
    }
  }
  return out + "\"";
}

std::string Join(const std::set<std::string>& paths) {
  std::string out = "{";
  for (const auto& path : paths) out += (out.size() > 1 ? ", " : "") + path;
  return out + "}";
}

void CompareEntry(const TreeEntry& a, const TreeEntry& b, const TreeCompareOptions& options,
                  std::vector<std::string>& out) {
  const std::string& p = a.path;
  if (a.type != b.type) {
    out.push_back(fmt::format("{}: type {} vs {}", p, a.type, b.type));
    return;
  }
  if (a.mode != b.mode) out.push_back(fmt::format("{}: mode {} vs {}", p, Octal(a.mode), Octal(b.mode)));
  if (a.uid != b.uid || a.gid != b.gid) {
    out.push_back(fmt::format("{}: owner {}:{} vs {}:{}", p, a.uid, a.gid, b.uid, b.gid));
  }
  if (a.size != b.size) out.push_back(fmt::format("{}: size {} vs {}", p, a.size, b.size));
  if (a.content_sha256 != b.content_sha256) {
    out.push_back(fmt::format("{}: content sha256 {:.12} vs {:.12}", p, a.content_sha256, b.content_sha256));
  }
  if (a.symlink_target != b.symlink_target) {
    out.push_back(fmt::format("{}: symlink target {} vs {}", p, Quote(a.symlink_target), Quote(b.symlink_target)));
  }
  if (a.rdev_major != b.rdev_major || a.rdev_minor != b.rdev_minor) {
    out.push_back(fmt::format("{}: device {}:{} vs {}:{}", p, a.rdev_major, a.rdev_minor, b.rdev_major, b.rdev_minor));
  }
  std::set<std::string> names;
  for (const auto& [name, value] : a.xattrs) names.insert(name);
  for (const auto& [name, value] : b.xattrs) names.insert(name);
  for (const auto& name : names) {
    auto ia = a.xattrs.find(name);
    auto ib = b.xattrs.find(name);
    if (ib == b.xattrs.end()) {
      out.push_back(fmt::format("{}: xattr {} only in A", p, name));
    } else if (ia == a.xattrs.end()) {
      out.push_back(fmt::format("{}: xattr {} only in B", p, name));
    } else if (ia->second != ib->second) {
      out.push_back(fmt::format("{}: xattr {} {} vs {}", p, name, Quote(ia->second), Quote(ib->second)));
    }
  }
  bool mtime_applies = a.type == 'd' ? options.compare_dir_mtimes : options.compare_mtimes;
  if (mtime_applies && a.mtime_ns != b.mtime_ns) {
    out.push_back(fmt::format("{}: mtime_ns {} vs {}", p, a.mtime_ns, b.mtime_ns));
  }
}

// path -> every path of its hard-link group (only paths with a group).
std::map<std::string, std::set<std::string>> GroupsByPath(const std::vector<TreeEntry>& entries) {
  std::map<std::string, std::set<std::string>> groups;
  for (const auto& entry : entries) {
    if (!entry.hardlink_group.empty()) groups[entry.hardlink_group].insert(entry.path);
  }
  std::map<std::string, std::set<std::string>> by_path;
  for (const auto& [leader, members] : groups) {
    for (const auto& member : members) by_path[member] = members;
  }
  return by_path;
}

}  // namespace

char TreeEntryType(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG: return 'f';
    case S_IFDIR: return 'd';
    case S_IFLNK: return 'l';
    case S_IFCHR: return 'c';
    case S_IFBLK: return 'b';
    case S_IFIFO: return 'p';
    case S_IFSOCK: return 's';
    default: return '?';
  }
}

Result<std::vector<TreeEntry>> ScanTree(const fs::path& root, const TreeCompareOptions& options) {
  struct stat st;
  if (::lstat(root.c_str(), &st) != 0) return ErrnoFail(errno, "lstat", root);
  if (!S_ISDIR(st.st_mode)) return Fail(ErrorCode::kInvalidArgument, "tree root \"{}\" is not a directory", root.string());
  Scan scan{.options = options, .root_dev = st.st_dev};
  STRATA_RETURN_IF_ERROR(scan.Visit(root, "."));
  for (const auto& [inode, indexes] : scan.inodes) {
    if (indexes.size() < 2) continue;
    std::string leader = scan.entries[indexes[0]].path;
    for (size_t index : indexes) leader = std::min(leader, scan.entries[index].path);
    for (size_t index : indexes) scan.entries[index].hardlink_group = leader;
  }
  std::ranges::sort(scan.entries, {}, &TreeEntry::path);
  return std::move(scan.entries);
}

std::vector<std::string> CompareEntries(const std::vector<TreeEntry>& a, const std::vector<TreeEntry>& b,
                                        const TreeCompareOptions& options) {
  std::vector<std::string> out;
  std::set<std::string> common;
  size_t i = 0, j = 0;
  while (i < a.size() || j < b.size()) {
    if (j == b.size() || (i < a.size() && a[i].path < b[j].path)) {
      out.push_back(fmt::format("only in A: {} ({})", a[i].path, a[i].type));
      ++i;
    } else if (i == a.size() || b[j].path < a[i].path) {
      out.push_back(fmt::format("only in B: {} ({})", b[j].path, b[j].type));
      ++j;
    } else {
      CompareEntry(a[i], b[j], options, out);
      common.insert(a[i].path);
      ++i, ++j;
    }
  }

  // Hard links as partitions: paths present in both trees must share inodes with the same
  // other common paths. Each differing pair of groups is reported once.
  auto groups_a = GroupsByPath(a);
  auto groups_b = GroupsByPath(b);
  auto common_group = [&](const std::map<std::string, std::set<std::string>>& groups, const std::string& path) {
    std::set<std::string> members;
    if (auto it = groups.find(path); it != groups.end()) {
      for (const auto& member : it->second) {
        if (common.contains(member)) members.insert(member);
      }
    }
    if (members.size() < 2) members = {path};
    return members;
  };
  // A differing path and every path linked to it on either side, transitively, make one
  // report: "A {x, y} vs B {x} {y}".
  std::set<std::string> reported;
  for (const auto& path : common) {
    if (reported.contains(path) || common_group(groups_a, path) == common_group(groups_b, path)) continue;
    std::set<std::string> component = {path};
    for (std::vector<std::string> todo = {path}; !todo.empty();) {
      std::string next = todo.back();
      todo.pop_back();
      for (const auto* groups : {&groups_a, &groups_b}) {
        for (const auto& member : common_group(*groups, next)) {
          if (component.insert(member).second) todo.push_back(member);
        }
      }
    }
    auto describe = [&](const std::map<std::string, std::set<std::string>>& groups) {
      std::set<std::set<std::string>> partition;
      for (const auto& member : component) partition.insert(common_group(groups, member));
      std::string text;
      for (const auto& group : partition) text += (text.empty() ? "" : " ") + Join(group);
      return text;
    };
    out.push_back(fmt::format("hard-link groups differ at {}: A {} vs B {}", path, describe(groups_a), describe(groups_b)));
    reported.insert(component.begin(), component.end());
  }

  if (out.size() > kMaxTreeDifferences) {
    size_t more = out.size() - kMaxTreeDifferences;
    out.resize(kMaxTreeDifferences);
    out.push_back(fmt::format("... and {} more differences", more));
  }
  return out;
}

std::vector<std::string> CompareTrees(const fs::path& a, const fs::path& b, const TreeCompareOptions& options) {
  auto entries_a = ScanTree(a, options);
  if (!entries_a) return {"cannot scan A (" + a.string() + "): " + entries_a.error().ToString()};
  auto entries_b = ScanTree(b, options);
  if (!entries_b) return {"cannot scan B (" + b.string() + "): " + entries_b.error().ToString()};
  return CompareEntries(*entries_a, *entries_b, options);
}

::testing::AssertionResult TreesEqual(const fs::path& a, const fs::path& b, const TreeCompareOptions& options) {
  std::vector<std::string> differences = CompareTrees(a, b, options);
  if (differences.empty()) return ::testing::AssertionSuccess();
  auto failure = ::testing::AssertionFailure();
  failure << "trees differ (A = " << a.string() << ", B = " << b.string() << "):";
  for (const auto& line : differences) failure << "\n  " << line;
  return failure;
}

}  // namespace strata::test_support
