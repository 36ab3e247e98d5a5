// archive::WriteOverlayDiff: every entry kind survives apply -> diff -> apply, overlay
// whiteouts and opaque dirs become OCI markers, output is sorted and byte-for-byte
// deterministic, a real overlayfs upper dir reproduces the merged view, and refusals name
// the path.
#include "archive/diff.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include "archive/apply.h"
#include "archive/tar_reader.h"
#include "base/file.h"
#include "base/io.h"
#include "tests/support/assertions.h"
#include "tests/support/image_builder.h"
#include "tests/support/root.h"

namespace strata::archive {
namespace {

namespace fs = std::filesystem;
using test_support::EntryAttrs;
using test_support::LayerBuilder;

std::string Slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteText(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

std::map<std::string, std::string> Xattrs(const fs::path& path) {
  std::map<std::string, std::string> out;
  char names[4096];
  ssize_t n = ::llistxattr(path.c_str(), names, sizeof(names));
  for (ssize_t pos = 0; n > 0 && pos < n;) {
    std::string key(names + pos);
    pos += static_cast<ssize_t>(key.size()) + 1;
    char value[4096];
    ssize_t len = ::lgetxattr(path.c_str(), key.c_str(), value, sizeof(value));
    out[key] = len < 0 ? "<error>" : std::string(value, static_cast<size_t>(len));
  }
  return out;
}

// What a tree looks like: path -> "mode uid gid mtime nlink rdev xattrs content/target link-group".
using Tree = std::map<std::string, std::string>;

Tree Describe(const fs::path& dir) {
  Tree out;
  std::map<ino_t, std::set<std::string>> groups;
  std::map<std::string, ino_t> inode_of;
  for (auto it = fs::recursive_directory_iterator(dir); it != fs::recursive_directory_iterator(); ++it) {
    const fs::path& p = it->path();
    const std::string rel = fs::relative(p, dir).string();
    struct stat st{};
    if (::lstat(p.c_str(), &st) != 0) {
      out[rel] = "lstat failed";
      continue;
    }
    std::string desc = fmt::format("{:o} {}:{} {}.{:09}", st.st_mode, st.st_uid, st.st_gid, st.st_mtim.tv_sec,
                                   st.st_mtim.tv_nsec);
    if (!S_ISDIR(st.st_mode)) desc += fmt::format(" nlink={}", st.st_nlink);
    if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) desc += fmt::format(" dev={}:{}", major(st.st_rdev), minor(st.st_rdev));
    for (const auto& [k, v] : Xattrs(p)) desc += fmt::format(" {}={}", k, v);
    if (S_ISREG(st.st_mode)) desc += " content=" + Slurp(p);
    if (S_ISLNK(st.st_mode)) desc += " -> " + fs::read_symlink(p).string();
    if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
      groups[st.st_ino].insert(rel);
      inode_of[rel] = st.st_ino;
    }
    out[rel] = desc;
  }
  // Inode numbers differ between trees; which names share one must not.
  for (const auto& [rel, ino] : inode_of) out[rel] += " group=" + fmt::format("{}", fmt::join(groups[ino], ","));
  return out;
}

struct ReadEntry {
  TarEntry entry;
  std::string content;
};

std::vector<ReadEntry> ReadTar(const std::string& tar) {
  std::vector<ReadEntry> out;
  StringViewReader input(tar);
  TarReader reader(input);
  for (;;) {
    auto next = reader.Next();
    EXPECT_TRUE(next.has_value()) << next.error().ToString();
    if (!next || !*next) break;
    ReadEntry item{std::move(**next), {}};
    char buf[65536];
    for (;;) {
      auto n = reader.ReadContent(buf);
      EXPECT_TRUE(n.has_value()) << n.error().ToString();
      if (!n || *n == 0) break;
      item.content.append(buf, *n);
    }
    out.push_back(std::move(item));
  }
  return out;
}

std::vector<std::string> Names(const std::vector<ReadEntry>& entries) {
  std::vector<std::string> names;
  for (const auto& e : entries) names.push_back(e.entry.name);
  return names;
}

Result<std::string> Diff(const fs::path& upper, const DiffOptions& options = {}, DiffStats* stats = nullptr) {
  std::string tar;
  auto result = WriteOverlayDiff(
      upper,
      [&](std::string_view bytes) -> Status {
        tar.append(bytes);
        return {};
      },
      options);
  if (!result) return Fail(result.error());
  if (stats != nullptr) *stats = *result;
  return tar;
}

Status ApplyTar(const std::string& tar, const fs::path& root, const ApplyOptions& options) {
  StringViewReader reader(tar);
  auto applied = ApplyLayer(reader, root, options);
  if (!applied) return Fail(applied.error());
  return {};
}

class DiffTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = TempDir::Create("diff-test");
    ASSERT_TRUE(dir) << dir.error().ToString();
    parent_.emplace(std::move(*dir));
  }
  fs::path Make(const std::string& name) {
    fs::path p = parent_->path() / name;
    fs::create_directories(p);
    return p;
  }

  std::optional<TempDir> parent_;
};

TEST_F(DiffTest, RoundTripsEveryEntryKind) {
  STRATA_REQUIRE_ROOT();  // devices, ownership, trusted.* xattrs
  const std::string long_name = "long/" + std::string(120, 'n');
  const std::string unicode = "ünïcødé-文件";
  LayerBuilder layer;
  layer.Dir("d", {.mode = 0750, .uid = 7, .gid = 8, .mtime = {1'600'000'000, 5}, .xattrs = {{"user.dir", "dv"}}})
      .File("d/setuid", "suid", {.mode = 04755})
      .File("d/setgid", "sgid", {.mode = 02711, .uid = 1000, .gid = 2000})
      .Dir("d/e").Dir("d/e/f").File("d/e/f/deep", "deep content")
      .Symlink("d/link", "../h1")
      .File("h1", "shared", {.mode = 0600})
      .Hardlink("h2", "h1")
      .Hardlink("d/h3", "h1")
      .Fifo("fifo", {.mode = 0620})
      .CharDevice("null", 1, 3)
      .BlockDevice("blk", 7, 0, {.mode = 0660})
      .File("xattrs", "x", {.xattrs = {{"user.x", "1"}, {"trusted.foo", std::string("\0bin", 4)}}})
      .Dir("long").File(long_name, "long")
      .File(unicode, "unicode")
      .File("subsec", "s", {.mtime = {1'700'000'000, 123'456'789}})
      .File("big", std::string(600'000, 'b'));
  ASSERT_OK_AND_ASSIGN(std::string tar1, layer.Tar());
  const fs::path a = Make("a");
  ASSERT_OK(ApplyTar(tar1, a, {.overlay_whiteouts = true}));

  DiffStats stats;
  ASSERT_OK_AND_ASSIGN(std::string tar2, Diff(a, {}, &stats));
  const std::vector<ReadEntry> entries = ReadTar(tar2);
  // Bytewise per directory: "big" < "blk" < "d/" < ... ; "d/h3" is the first path of the
  // hard-link group, so it carries the content and h1/h2 link to it.
  EXPECT_EQ(Names(entries), (std::vector<std::string>{
                                "big", "blk", "d/", "d/e/", "d/e/f/", "d/e/f/deep", "d/h3", "d/link", "d/setgid",
                                "d/setuid", "fifo", "h1", "h2", "long/", long_name, "null", "subsec", "xattrs",
                                unicode}));
  EXPECT_EQ(stats.entries, entries.size());
  EXPECT_EQ(stats.whiteouts, 0u);
  EXPECT_EQ(stats.bytes, 600'000u + 4 + 4 + 12 + 6 + 4 + 7 + 1 + 1);

  std::map<std::string, const ReadEntry*> by_name;
  for (const auto& e : entries) by_name[e.entry.name] = &e;
  auto get = [&](const std::string& name) -> const TarEntry& { return by_name.at(name)->entry; };
  EXPECT_EQ(get("d/").type, TarEntryType::kDirectory);
  EXPECT_EQ(get("d/").mode, 0750u);
  EXPECT_EQ(get("d/").uid, 7u);
  EXPECT_EQ(get("d/").gid, 8u);
  EXPECT_EQ(get("d/").mtime.seconds, 1'600'000'000);
  EXPECT_EQ(get("d/").mtime.nanoseconds, 5u);
  EXPECT_EQ(get("d/").xattrs, (std::map<std::string, std::string>{{"user.dir", "dv"}}));
  EXPECT_EQ(get("d/setuid").mode, 04755u);
  EXPECT_EQ(get("d/setgid").mode, 02711u);
  EXPECT_EQ(get("d/setgid").uid, 1000u);
  EXPECT_EQ(get("d/setgid").gid, 2000u);
  EXPECT_TRUE(get("d/setgid").uname.empty());
  EXPECT_EQ(by_name.at("d/e/f/deep")->content, "deep content");
  EXPECT_EQ(get("d/h3").type, TarEntryType::kRegular);
  EXPECT_EQ(by_name.at("d/h3")->content, "shared");
  for (const char* link : {"h1", "h2"}) {
    EXPECT_EQ(get(link).type, TarEntryType::kHardLink) << link;
    EXPECT_EQ(get(link).linkname, "d/h3") << link;
    EXPECT_EQ(get(link).size, 0u) << link;
  }
  EXPECT_EQ(get("d/link").type, TarEntryType::kSymlink);
  EXPECT_EQ(get("d/link").linkname, "../h1");
  EXPECT_EQ(get("fifo").type, TarEntryType::kFifo);
  EXPECT_EQ(get("fifo").mode, 0620u);
  EXPECT_EQ(get("null").type, TarEntryType::kCharDevice);
  EXPECT_EQ(get("null").devmajor, 1u);
  EXPECT_EQ(get("null").devminor, 3u);
  EXPECT_EQ(get("blk").type, TarEntryType::kBlockDevice);
  EXPECT_EQ(get("blk").devmajor, 7u);
  EXPECT_EQ(get("xattrs").xattrs,
            (std::map<std::string, std::string>{{"trusted.foo", std::string("\0bin", 4)}, {"user.x", "1"}}));
  EXPECT_EQ(by_name.at(long_name)->content, "long");
  EXPECT_EQ(by_name.at(unicode)->content, "unicode");
  EXPECT_EQ(get("subsec").mtime.seconds, 1'700'000'000);
  EXPECT_EQ(get("subsec").mtime.nanoseconds, 123'456'789u);
  EXPECT_EQ(by_name.at("big")->content, std::string(600'000, 'b'));

  const fs::path b = Make("b");
  ASSERT_OK(ApplyTar(tar2, b, {.overlay_whiteouts = true}));
  EXPECT_EQ(Describe(a), Describe(b));
}

TEST_F(DiffTest, WhiteoutsAndOpaqueDirsBecomeOciMarkers) {
  STRATA_REQUIRE_ROOT();  // whiteout devices, trusted.overlay.opaque
  LayerBuilder layer;
  layer.Dir("a").Whiteout("a/b").File("a/kept", "k").Dir("c").OpaqueDir("c").File("c/.aa", "first").File("c/z", "z");
  ASSERT_OK_AND_ASSIGN(std::string tar1, layer.Tar());
  const fs::path upper = Make("upper");
  ASSERT_OK(ApplyTar(tar1, upper, {.overlay_whiteouts = true}));
  struct stat wh{};
  ASSERT_EQ(::lstat((upper / "a/b").c_str(), &wh), 0);
  ASSERT_TRUE(S_ISCHR(wh.st_mode));
  // Overlay adds its own bookkeeping xattrs; they must not leak into the layer.
  ASSERT_EQ(::lsetxattr((upper / "a").c_str(), "trusted.overlay.impure", "y", 1, 0), 0) << strerror(errno);
  ASSERT_EQ(::lsetxattr((upper / "a/kept").c_str(), "trusted.overlay.origin", "o", 1, 0), 0) << strerror(errno);

  DiffStats stats;
  ASSERT_OK_AND_ASSIGN(std::string tar2, Diff(upper, {}, &stats));
  const std::vector<ReadEntry> entries = ReadTar(tar2);
  EXPECT_EQ(Names(entries),
            (std::vector<std::string>{"a/", "a/.wh.b", "a/kept", "c/", "c/.wh..wh..opq", "c/.aa", "c/z"}));
  EXPECT_EQ(stats.whiteouts, 2u);
  for (const auto& e : entries) {
    for (const auto& [key, value] : e.entry.xattrs) {
      EXPECT_FALSE(key.starts_with("trusted.overlay.") || key.starts_with("user.overlay.")) << e.entry.name << " " << key;
    }
    if (e.entry.name.find(".wh.") != std::string::npos) {
      EXPECT_EQ(e.entry.type, TarEntryType::kRegular);
      EXPECT_EQ(e.entry.size, 0u);
      EXPECT_EQ(e.entry.mode, 0u);
      EXPECT_EQ(e.entry.uid, 0u);
      EXPECT_EQ(e.entry.gid, 0u);
    }
  }
  EXPECT_EQ(entries[1].entry.mtime.seconds, wh.st_mtim.tv_sec);
  EXPECT_EQ(entries[1].entry.mtime.nanoseconds, static_cast<uint32_t>(wh.st_mtim.tv_nsec));

  // Applied back in overlay form, the markers recreate the same upper dir.
  const fs::path again = Make("again");
  ASSERT_OK(ApplyTar(tar2, again, {.overlay_whiteouts = true}));
  ASSERT_EQ(::lremovexattr((upper / "a").c_str(), "trusted.overlay.impure"), 0);
  ASSERT_EQ(::lremovexattr((upper / "a/kept").c_str(), "trusted.overlay.origin"), 0);
  // ApplyLayer gives a whiteout device the current time, not the marker's: compare the rest.
  Tree want = Describe(upper), got = Describe(again);
  for (Tree* tree : {&want, &got}) {
    std::string& desc = (*tree)["a/b"];  // "<mode> <uid:gid> <mtime> ..."
    const size_t start = desc.find(' ', desc.find(' ') + 1);
    desc.erase(start, desc.find(' ', start + 1) - start);
  }
  EXPECT_EQ(want, got);
}

TEST_F(DiffTest, UserxattrSelectsTheOpaqueNamespace) {
  LayerBuilder layer;
  layer.Dir("o").OpaqueDir("o").File("o/f", "f");
  ASSERT_OK_AND_ASSIGN(std::string tar1, layer.Tar());
  const fs::path upper = Make("upper");
  auto applied = ApplyTar(tar1, upper, {.overlay_whiteouts = true, .userxattr = true, .same_owner = false});
  if (!applied) GTEST_SKIP() << "no user xattrs here: " << applied.error().ToString();

  ASSERT_OK_AND_ASSIGN(std::string with_user, Diff(upper, {.userxattr = true}));
  EXPECT_EQ(Names(ReadTar(with_user)), (std::vector<std::string>{"o/", "o/.wh..wh..opq", "o/f"}));
  // Without userxattr the kernel would ignore user.overlay.opaque: not opaque, xattr dropped.
  ASSERT_OK_AND_ASSIGN(std::string with_trusted, Diff(upper));
  const std::vector<ReadEntry> entries = ReadTar(with_trusted);
  EXPECT_EQ(Names(entries), (std::vector<std::string>{"o/", "o/f"}));
  EXPECT_TRUE(entries[0].entry.xattrs.empty());
}

TEST_F(DiffTest, OutputIsSortedAndDeterministic) {
  const fs::path upper = Make("upper");
  // Created in reverse order so that directory order (creation order on many file systems)
  // disagrees with name order.
  for (const char* name : {"z", "y", "a-b", "a", "a/z", "a/m", "a/b", "B", "_"}) {
    const fs::path p = upper / name;
    if (std::string_view(name) == "a") {
      fs::create_directory(p);
    } else {
      WriteText(p, name);
    }
  }
  ASSERT_OK_AND_ASSIGN(std::string first, Diff(upper));
  ASSERT_OK_AND_ASSIGN(std::string second, Diff(upper));
  EXPECT_EQ(first, second);
  // Bytewise within each directory ('B' < '_' < 'a' < 'a-b'), a directory before its children.
  EXPECT_EQ(Names(ReadTar(first)),
            (std::vector<std::string>{"B", "_", "a/", "a/b", "a/m", "a/z", "a-b", "y", "z"}));
}

// Unmounts on scope exit, even when an assertion returned early.
struct MountGuard {
  fs::path target;
  bool mounted = false;
  Status Unmount() {
    if (mounted && ::umount(target.c_str()) != 0) return ErrnoFail(errno, "umount", target);
    mounted = false;
    return {};
  }
  ~MountGuard() {
    if (mounted) ::umount2(target.c_str(), MNT_DETACH);
  }
};

TEST_F(DiffTest, RealOverlayUpperReproducesTheMergedView) {
  STRATA_REQUIRE_ROOT();
  const fs::path lower = Make("lower"), upper = Make("upper"), work = Make("work"), merged = Make("merged");
  WriteText(lower / "keep", "keep");
  WriteText(lower / "modify", "old");
  WriteText(lower / "delete", "gone soon");
  WriteText(lower / "chmod", "mode");
  fs::create_directories(lower / "redo/inner");
  WriteText(lower / "redo/old", "old child");
  fs::create_directories(lower / "dir/sub");
  WriteText(lower / "dir/sub/file", "f");

  MountGuard guard{merged};
  const std::string options = fmt::format("lowerdir={},upperdir={},workdir={},redirect_dir=off,metacopy=off",
                                          lower.string(), upper.string(), work.string());
  if (::mount("overlay", merged.c_str(), "overlay", 0, options.c_str()) != 0) {
    GTEST_SKIP() << "cannot mount overlayfs here: " << strerror(errno);
  }
  guard.mounted = true;

  WriteText(merged / "modify", "new content");
  ASSERT_EQ(::unlink((merged / "delete").c_str()), 0) << strerror(errno);
  fs::remove_all(merged / "redo");
  fs::create_directory(merged / "redo");
  WriteText(merged / "redo/fresh", "fresh");
  WriteText(merged / "pair1", "linked");
  ASSERT_EQ(::link((merged / "pair1").c_str(), (merged / "pair2").c_str()), 0) << strerror(errno);
  ASSERT_EQ(::chmod((merged / "chmod").c_str(), 0600), 0) << strerror(errno);
  WriteText(merged / "dir/sub/added", "added");
  const Tree expected = Describe(merged);
  ASSERT_OK(guard.Unmount());

  ASSERT_OK_AND_ASSIGN(std::string tar, Diff(upper));
  const std::vector<std::string> names = Names(ReadTar(tar));
  EXPECT_EQ(names, (std::vector<std::string>{"chmod", ".wh.delete", "dir/", "dir/sub/", "dir/sub/added", "modify",
                                             "pair1", "pair2", "redo/", "redo/.wh..wh..opq", "redo/fresh"}))
      << "upper dir: " << ::testing::PrintToString(Describe(upper));

  const fs::path copy = parent_->path() / "copy";
  ASSERT_EQ(std::system(fmt::format("cp -a '{}' '{}'", lower.string(), copy.string()).c_str()), 0);
  ASSERT_OK(ApplyTar(tar, copy, {.overlay_whiteouts = false}));
  EXPECT_EQ(Describe(copy), expected);
}

TEST_F(DiffTest, RefusesRedirectAndMetacopy) {
  STRATA_REQUIRE_ROOT();  // trusted.* xattrs
  for (const char* key : {"trusted.overlay.redirect", "trusted.overlay.metacopy"}) {
    SCOPED_TRACE(key);
    const fs::path upper = Make(std::string("upper-") + key);
    fs::create_directories(upper / "x/moved");
    ASSERT_EQ(::lsetxattr((upper / "x/moved").c_str(), key, "/y", 2, 0), 0) << strerror(errno);
    auto result = Diff(upper);
    ASSERT_FALSE(result.has_value());
    EXPECT_EQ(result.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(result.error().message().find((upper / "x/moved").string()), std::string::npos) << result.error().message();
    EXPECT_NE(result.error().message().find("not supported"), std::string::npos) << result.error().message();
  }
}

TEST_F(DiffTest, RefusesMountPointInsideUpper) {
  STRATA_REQUIRE_ROOT();
  const fs::path upper = Make("upper");
  fs::create_directories(upper / "mnt");
  MountGuard guard{upper / "mnt"};
  if (::mount("tmpfs", guard.target.c_str(), "tmpfs", 0, "size=1m") != 0) {
    GTEST_SKIP() << "cannot mount tmpfs: " << strerror(errno);
  }
  guard.mounted = true;
  auto result = Diff(upper);
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(result.error().message().find((upper / "mnt").string()), std::string::npos) << result.error().message();
}

TEST_F(DiffTest, MissingUpperIsNotFoundNamingThePath) {
  const fs::path upper = parent_->path() / "missing";
  auto result = Diff(upper);
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(result.error().message().find(upper.string()), std::string::npos) << result.error().message();
}

TEST_F(DiffTest, UnreadableFileNamesThePath) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads files whatever their mode";
  const fs::path upper = Make("upper");
  WriteText(upper / "secret", "s");
  ASSERT_EQ(::chmod((upper / "secret").c_str(), 0), 0);
  auto result = Diff(upper);
  ASSERT_FALSE(result.has_value());
  EXPECT_NE(result.error().message().find((upper / "secret").string()), std::string::npos) << result.error().message();
}

TEST_F(DiffTest, SinkErrorStopsTheDiff) {
  const fs::path upper = Make("upper");
  WriteText(upper / "f", std::string(1 << 20, 'x'));
  int calls = 0;
  auto result = WriteOverlayDiff(upper, [&](std::string_view) -> Status {
    ++calls;
    return Fail(ErrorCode::kUnavailable, "disk full");
  });
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code(), ErrorCode::kUnavailable);
  EXPECT_EQ(calls, 1);
}

}  // namespace
}  // namespace strata::archive
