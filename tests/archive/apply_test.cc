// archive::ApplyLayer: every entry kind and its metadata, OCI whiteouts in overlay and
// naive form, replacement of lower entries, and hostile layers that try to write outside
// the root (each checks the refusal names the entry and reason, and that nothing beside
// the root changed).
#include "archive/apply.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>

#include <gtest/gtest.h>

#include "archive/tar_writer.h"
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

std::optional<std::string> GetXattr(const fs::path& path, const std::string& key) {
  char buf[256];
  ssize_t n = ::lgetxattr(path.c_str(), key.c_str(), buf, sizeof(buf));
  if (n < 0) return std::nullopt;
  return std::string(buf, static_cast<size_t>(n));
}

struct stat Lstat(const fs::path& path) {
  struct stat st{};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path << ": " << strerror(errno);
  return st;
}

bool Exists(const fs::path& path) {
  struct stat st{};
  return ::lstat(path.c_str(), &st) == 0;
}

void WriteText(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// What a tree looks like: path -> "type mode uid gid mtime content-or-target".
using TreeSnapshot = std::map<std::string, std::string>;

TreeSnapshot Snapshot(const fs::path& dir, const fs::path& skip) {
  TreeSnapshot out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, fs::directory_options::none, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const fs::path& p = it->path();
    if (p == skip) {
      it.disable_recursion_pending();
      continue;
    }
    struct stat st{};
    if (::lstat(p.c_str(), &st) != 0) continue;
    std::string desc = fmt::format("{:o} {} {} {}.{}", st.st_mode, st.st_uid, st.st_gid, st.st_mtim.tv_sec,
                                   st.st_mtim.tv_nsec);
    if (S_ISREG(st.st_mode)) desc += " " + Slurp(p);
    if (S_ISLNK(st.st_mode)) desc += " -> " + fs::read_symlink(p).string();
    out[fs::relative(p, dir).string()] = desc;
  }
  return out;
}

class ApplyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = TempDir::Create("apply-test");
    ASSERT_TRUE(dir) << dir.error().ToString();
    parent_.emplace(std::move(*dir));
    root_ = parent_->path() / "root";
    outside_ = parent_->path() / "outside";
    fs::create_directory(root_);
    fs::create_directory(outside_);
    WriteText(outside_ / "secret", "do not touch");
    before_ = Snapshot(parent_->path(), root_);
    etc_abs_before_ = Exists("/etc/abs");
  }
  void TearDown() override { internal::SetForceNoOpenat2(false); }

  Result<ApplyStats> Apply(const LayerBuilder& layer, const ApplyOptions& options = {}) {
    auto tar = layer.Tar();
    if (!tar) return Fail(tar.error());
    tar_ = std::move(*tar);
    StringViewReader reader(tar_);
    return ApplyLayer(reader, root_, options);
  }

  // The layer must be refused with InvalidArgument naming `entry` and containing `reason`,
  // and nothing outside the root may have changed.
  void ExpectRefused(const LayerBuilder& layer, const std::string& entry, const std::string& reason,
                     const ApplyOptions& options = {}) {
    for (bool no_openat2 : {false, true}) {
      SCOPED_TRACE(no_openat2 ? "fallback walk (no openat2)" : "openat2");
      internal::SetForceNoOpenat2(no_openat2);
      auto result = Apply(layer, options);
      internal::SetForceNoOpenat2(false);
      ASSERT_FALSE(result.has_value()) << "layer was applied but must be refused";
      EXPECT_EQ(result.error().code(), ErrorCode::kInvalidArgument) << result.error().ToString();
      EXPECT_NE(result.error().message().find(entry), std::string::npos) << result.error().ToString();
      EXPECT_NE(result.error().message().find(reason), std::string::npos) << result.error().ToString();
      ExpectOutsideUnchanged();
    }
  }

  void ExpectOutsideUnchanged() {
    EXPECT_EQ(Snapshot(parent_->path(), root_), before_);
    EXPECT_EQ(Slurp(outside_ / "secret"), "do not touch");
    EXPECT_EQ(Exists("/etc/abs"), etc_abs_before_);
  }

  static TarEntry Raw(std::string name, TarEntryType type = TarEntryType::kRegular, std::string linkname = {}) {
    TarEntry e;
    e.name = std::move(name);
    e.type = type;
    e.linkname = std::move(linkname);
    e.mtime = {test_support::kDefaultEntryMtime, 0};
    return e;
  }

  std::optional<TempDir> parent_;
  fs::path root_;
  fs::path outside_;
  TreeSnapshot before_;
  bool etc_abs_before_ = false;
  std::string tar_;
};

TEST_F(ApplyTest, EveryEntryKindLandsWithItsMetadata) {
  STRATA_REQUIRE_ROOT();
  LayerBuilder layer;
  layer.Dir("d", {.mode = 0750, .uid = 1000, .gid = 1001, .mtime = {1'600'000'000, 5}})
      .File("d/f", "hello world", {.mode = 0640, .uid = 1002, .gid = 1003, .mtime = {1'500'000'000, 123456789},
                                   .xattrs = {{"user.color", "blue"}, {"trusted.t", std::string("\0\1", 2)}}})
      .File("d/suid", "x", {.mode = 06755, .uid = 1004, .gid = 1005})
      .Dir("d/sticky", {.mode = 01777})
      .Symlink("d/l", "../nowhere/target", {.uid = 1006, .gid = 1007, .mtime = {1'400'000'000, 0}})
      .Hardlink("d/h", "d/f")
      .CharDevice("dev/null2", 1, 3, {.mode = 0666, .uid = 7, .gid = 8})
      .BlockDevice("dev/loop9", 7, 9, {.mode = 0660})
      .Fifo("p", {.mode = 0620, .uid = 9, .gid = 10, .mtime = {1'300'000'000, 0}})
      .File("big", test_support::RandomBytes(3 << 20, 42));
  ASSERT_OK_AND_ASSIGN(auto stats, Apply(layer));
  EXPECT_EQ(stats.entries, 10u);
  EXPECT_EQ(stats.bytes, 11u + 1u + (3u << 20));
  EXPECT_EQ(stats.whiteouts, 0u);

  struct stat d = Lstat(root_ / "d");
  EXPECT_TRUE(S_ISDIR(d.st_mode));
  EXPECT_EQ(d.st_mode & 07777, 0750u);
  EXPECT_EQ(d.st_uid, 1000u);
  EXPECT_EQ(d.st_gid, 1001u);
  EXPECT_EQ(d.st_mtim.tv_sec, 1'600'000'000);
  EXPECT_EQ(d.st_mtim.tv_nsec, 5);

  struct stat f = Lstat(root_ / "d/f");
  EXPECT_TRUE(S_ISREG(f.st_mode));
  EXPECT_EQ(f.st_mode & 07777, 0640u);
  EXPECT_EQ(f.st_uid, 1002u);
  EXPECT_EQ(f.st_gid, 1003u);
  EXPECT_EQ(f.st_mtim.tv_sec, 1'500'000'000);
  EXPECT_EQ(f.st_mtim.tv_nsec, 123456789);
  EXPECT_EQ(f.st_nlink, 2u);
  EXPECT_EQ(Slurp(root_ / "d/f"), "hello world");
  EXPECT_EQ(GetXattr(root_ / "d/f", "user.color"), "blue");
  EXPECT_EQ(GetXattr(root_ / "d/f", "trusted.t"), std::string("\0\1", 2));

  struct stat h = Lstat(root_ / "d/h");
  EXPECT_EQ(h.st_ino, f.st_ino);
  EXPECT_EQ(h.st_dev, f.st_dev);

  struct stat suid = Lstat(root_ / "d/suid");
  EXPECT_EQ(suid.st_mode & 07777, 06755u) << "setuid/setgid must survive chown";
  EXPECT_EQ(suid.st_uid, 1004u);
  EXPECT_EQ(suid.st_gid, 1005u);

  EXPECT_EQ(Lstat(root_ / "d/sticky").st_mode & 07777, 01777u);

  struct stat l = Lstat(root_ / "d/l");
  EXPECT_TRUE(S_ISLNK(l.st_mode));
  EXPECT_EQ(fs::read_symlink(root_ / "d/l"), "../nowhere/target");
  EXPECT_EQ(l.st_uid, 1006u);
  EXPECT_EQ(l.st_gid, 1007u);
  EXPECT_EQ(l.st_mtim.tv_sec, 1'400'000'000);

  struct stat c = Lstat(root_ / "dev/null2");
  EXPECT_TRUE(S_ISCHR(c.st_mode));
  EXPECT_EQ(major(c.st_rdev), 1u);
  EXPECT_EQ(minor(c.st_rdev), 3u);
  EXPECT_EQ(c.st_mode & 07777, 0666u);
  EXPECT_EQ(c.st_uid, 7u);
  EXPECT_EQ(c.st_gid, 8u);
  EXPECT_EQ(Lstat(root_ / "dev").st_mode & 07777, 0755u) << "missing parents are created 0755";

  struct stat b = Lstat(root_ / "dev/loop9");
  EXPECT_TRUE(S_ISBLK(b.st_mode));
  EXPECT_EQ(major(b.st_rdev), 7u);
  EXPECT_EQ(minor(b.st_rdev), 9u);
  EXPECT_EQ(b.st_mode & 07777, 0660u);

  struct stat p = Lstat(root_ / "p");
  EXPECT_TRUE(S_ISFIFO(p.st_mode));
  EXPECT_EQ(p.st_mode & 07777, 0620u);
  EXPECT_EQ(p.st_uid, 9u);
  EXPECT_EQ(p.st_mtim.tv_sec, 1'300'000'000);

  EXPECT_EQ(Slurp(root_ / "big"), test_support::RandomBytes(3 << 20, 42));
  ExpectOutsideUnchanged();
}

TEST_F(ApplyTest, DirectoryTimesAreSetAfterTheirChildren) {
  LayerBuilder layer;
  layer.Dir("a", {.mtime = {1000, 0}})
      .Dir("a/b", {.mtime = {2000, 0}})
      .File("a/x", "x")
      .File("a/b/y", "y")
      .Dir("a/b/c", {.mtime = {3000, 0}})
      .Symlink("a/b/c/s", "y")
      .Dir(".", {.mode = 0711, .mtime = {4000, 0}});
  ASSERT_OK(Apply(layer, {.same_owner = false}));
  EXPECT_EQ(Lstat(root_ / "a").st_mtim.tv_sec, 1000);
  EXPECT_EQ(Lstat(root_ / "a/b").st_mtim.tv_sec, 2000);
  EXPECT_EQ(Lstat(root_ / "a/b/c").st_mtim.tv_sec, 3000);
  EXPECT_EQ(Lstat(root_).st_mtim.tv_sec, 4000);
  EXPECT_EQ(Lstat(root_).st_mode & 07777, 0711u);
}

TEST_F(ApplyTest, OverlayWhiteoutsBecomeDevicesAndOpaqueXattrs) {
  STRATA_REQUIRE_ROOT();
  LayerBuilder layer;
  layer.Dir("a").File("a/new", "n").Whiteout("a/gone").OpaqueDir("a").Whiteout("top");
  ASSERT_OK_AND_ASSIGN(auto stats, Apply(layer));
  EXPECT_EQ(stats.whiteouts, 3u);
  for (const char* name : {"a/gone", "top"}) {
    struct stat st = Lstat(root_ / name);
    EXPECT_TRUE(S_ISCHR(st.st_mode)) << name;
    EXPECT_EQ(st.st_rdev, makedev(0, 0)) << name;
  }
  EXPECT_EQ(GetXattr(root_ / "a", "trusted.overlay.opaque"), "y");
  EXPECT_FALSE(Exists(root_ / "a/.wh.gone"));
  EXPECT_FALSE(Exists(root_ / "a/.wh..wh..opq"));
  EXPECT_FALSE(Exists(root_ / ".wh.top"));
  EXPECT_EQ(Slurp(root_ / "a/new"), "n");
}

TEST_F(ApplyTest, OpaqueUsesUserXattrWithUserxattr) {
  LayerBuilder layer;
  layer.Dir("a").OpaqueDir("a");
  ASSERT_OK(Apply(layer, {.userxattr = true, .same_owner = false}));
  EXPECT_EQ(GetXattr(root_ / "a", "user.overlay.opaque"), "y");
  EXPECT_EQ(GetXattr(root_ / "a", "trusted.overlay.opaque"), std::nullopt);
}

TEST_F(ApplyTest, NaiveWhiteoutsRemoveFromTheTree) {
  fs::create_directories(root_ / "a/gonedir/deep");
  WriteText(root_ / "a/gonedir/deep/f", "f");
  WriteText(root_ / "a/gone", "g");
  WriteText(root_ / "a/keep", "k");
  fs::create_directories(root_ / "o/sub");
  WriteText(root_ / "o/lower", "l");
  WriteText(root_ / "o/sub/z", "z");
  fs::create_directories(root_ / "o/kept");
  WriteText(root_ / "o/kept/lower", "l");
  LayerBuilder layer;
  layer.Whiteout("a/gone").Whiteout("a/gonedir").Whiteout("a/never-existed")
      .File("o/new", "new").Dir("o/kept").File("o/kept/mine", "m").OpaqueDir("o");
  ASSERT_OK_AND_ASSIGN(auto stats, Apply(layer, {.overlay_whiteouts = false}));
  EXPECT_EQ(stats.whiteouts, 4u);
  EXPECT_FALSE(Exists(root_ / "a/gone"));
  EXPECT_FALSE(Exists(root_ / "a/gonedir"));
  EXPECT_FALSE(Exists(root_ / "a/never-existed"));
  EXPECT_EQ(Slurp(root_ / "a/keep"), "k");
  EXPECT_FALSE(Exists(root_ / "o/lower"));
  EXPECT_FALSE(Exists(root_ / "o/sub"));
  EXPECT_FALSE(Exists(root_ / "o/kept/lower")) << "opaque hides lower children of kept dirs too";
  EXPECT_EQ(Slurp(root_ / "o/new"), "new");
  EXPECT_EQ(Slurp(root_ / "o/kept/mine"), "m");
  EXPECT_EQ(GetXattr(root_ / "o", "trusted.overlay.opaque"), std::nullopt);
  EXPECT_FALSE(Exists(root_ / "o/.wh..wh..opq"));
  ExpectOutsideUnchanged();
}

TEST_F(ApplyTest, ReplacesLowerEntriesOfAnotherType) {
  fs::create_directories(root_ / "x/child/grandchild");
  WriteText(root_ / "x/child/f", "f");
  WriteText(root_ / "y", "lower file");
  fs::create_directories(root_ / "z/keepme");
  ::chmod((root_ / "z").c_str(), 0700);
  ::symlink((outside_ / "secret").c_str(), (root_ / "s").c_str());
  LayerBuilder layer;
  layer.File("x", "now a file")
      .Dir("y", {.mode = 0751})
      .File("y/inner", "i")
      .Dir("z", {.mode = 0755})
      .File("s", "replaced the symlink");
  ASSERT_OK(Apply(layer, {.same_owner = false}));
  EXPECT_TRUE(S_ISREG(Lstat(root_ / "x").st_mode));
  EXPECT_EQ(Slurp(root_ / "x"), "now a file");
  EXPECT_TRUE(S_ISDIR(Lstat(root_ / "y").st_mode));
  EXPECT_EQ(Lstat(root_ / "y").st_mode & 07777, 0751u);
  EXPECT_EQ(Slurp(root_ / "y/inner"), "i");
  EXPECT_TRUE(Exists(root_ / "z/keepme")) << "dir over dir keeps children";
  EXPECT_EQ(Lstat(root_ / "z").st_mode & 07777, 0755u) << "dir over dir updates metadata";
  EXPECT_TRUE(S_ISREG(Lstat(root_ / "s").st_mode));
  EXPECT_EQ(Slurp(root_ / "s"), "replaced the symlink");
  ExpectOutsideUnchanged();
}

TEST_F(ApplyTest, EntriesReplacedLaterInTheSameLayer) {
  LayerBuilder layer;
  layer.Dir("a", {.mtime = {1000, 0}})
      .Dir("a/sub")
      .File("a/x", "x")
      .Symlink("a", "elsewhere")
      .Dir("w")
      .Dir("w/inner")
      .Whiteout("w")
      .Dir("a-b", {.mtime = {2000, 0}})
      .File("f", "first")
      .File("f", "second");
  ASSERT_OK(Apply(layer, {.same_owner = false}));
  EXPECT_TRUE(S_ISLNK(Lstat(root_ / "a").st_mode));
  EXPECT_TRUE(S_ISCHR(Lstat(root_ / "w").st_mode));
  EXPECT_EQ(Lstat(root_ / "a-b").st_mtim.tv_sec, 2000);
  EXPECT_EQ(Slurp(root_ / "f"), "second");
}

// ---- Hostile layers ----

TEST_F(ApplyTest, RefusesDotDotEscape) {
  LayerBuilder layer;
  layer.Entry(Raw("../escape"), "pwned");
  ExpectRefused(layer, "../escape", "\"..\" component");
  EXPECT_FALSE(Exists(parent_->path() / "escape"));
}

TEST_F(ApplyTest, RefusesDotDotInTheMiddle) {
  LayerBuilder layer;
  layer.Dir("a").Entry(Raw("a/../../escape"), "pwned");
  ExpectRefused(layer, "a/../../escape", "\"..\" component");
  EXPECT_FALSE(Exists(parent_->path() / "escape"));
}

TEST_F(ApplyTest, RefusesAbsoluteName) {
  LayerBuilder layer;
  layer.Entry(Raw("/etc/abs"), "pwned");
  ExpectRefused(layer, "/etc/abs", "absolute");
  EXPECT_FALSE(Exists(root_ / "etc/abs")) << "absolute names are refused, not stripped";
}

TEST_F(ApplyTest, RefusesNulInName) {
  {
    LayerBuilder layer;
    TarEntry e = Raw("a");
    e.pax_records["path"] = std::string("a\0b", 3);
    layer.Entry(e, "x");
    auto result = Apply(layer);
    ASSERT_FALSE(result.has_value());
    EXPECT_EQ(result.error().code(), ErrorCode::kInvalidArgument) << result.error().ToString();
    EXPECT_NE(result.error().message().find("NUL byte in name"), std::string::npos) << result.error().ToString();
    EXPECT_FALSE(Exists(root_ / "a"));
  }
  ExpectOutsideUnchanged();
}

TEST_F(ApplyTest, RefusesWritingThroughSymlinkItCreated) {
  LayerBuilder layer;
  layer.Symlink("link", outside_.string()).Entry(Raw("link/x"), "pwned");
  ExpectRefused(layer, "link/x", "is a symlink");
  EXPECT_FALSE(Exists(outside_ / "x"));
}

TEST_F(ApplyTest, RefusesWritingThroughRelativeSymlinkItCreated) {
  LayerBuilder layer;
  layer.Symlink("link", "../outside").Entry(Raw("link/x"), "pwned");
  ExpectRefused(layer, "link/x", "is a symlink");
  LayerBuilder deeper;
  deeper.Dir("d").Symlink("d/up", "../..").Entry(Raw("d/up/outside/x"), "pwned");
  ExpectRefused(deeper, "d/up/outside/x", "is a symlink");
  EXPECT_FALSE(Exists(outside_ / "x"));
}

TEST_F(ApplyTest, RefusesWritingThroughLowerLayerSymlink) {
  ASSERT_EQ(::symlink(outside_.c_str(), (root_ / "lower").c_str()), 0);
  fs::create_directory(root_ / "real");
  ASSERT_EQ(::symlink("../lower", (root_ / "real/rel").c_str()), 0);
  {
    LayerBuilder layer;
    layer.File("lower/x", "pwned");
    ExpectRefused(layer, "lower/x", "is a symlink");
  }
  {
    LayerBuilder layer;
    layer.File("real/rel/secret", "pwned");
    ExpectRefused(layer, "real/rel/secret", "is a symlink");
  }
  {
    LayerBuilder layer;
    layer.Dir("lower/newdir");
    ExpectRefused(layer, "lower/newdir", "is a symlink");
  }
  {
    LayerBuilder layer;
    layer.Whiteout("lower/secret");
    ExpectRefused(layer, "lower/.wh.secret", "is a symlink", {.overlay_whiteouts = false});
  }
  {
    LayerBuilder layer;
    layer.OpaqueDir("lower");
    ExpectRefused(layer, "lower/.wh..wh..opq", "is a symlink", {.overlay_whiteouts = false});
  }
  EXPECT_FALSE(Exists(outside_ / "x"));
  EXPECT_FALSE(Exists(outside_ / "newdir"));
}

// Policy (apply.h): no write goes through any symlink, even one that stays inside root.
TEST_F(ApplyTest, RefusesWritingThroughSymlinkInsideRoot) {
  fs::create_directory(root_ / "real");
  LayerBuilder layer;
  layer.Symlink("in", "real").File("in/x", "x");
  ExpectRefused(layer, "in/x", "is a symlink");
  // The symlink as an intermediate component of the parent path, not just its last one.
  fs::create_directory(root_ / "real/sub");
  LayerBuilder deeper;
  deeper.File("in/sub/x", "x");
  ExpectRefused(deeper, "in/sub/x", "is a symlink");
  EXPECT_FALSE(Exists(root_ / "real/x"));
  EXPECT_FALSE(Exists(root_ / "real/sub/x"));
}

TEST_F(ApplyTest, RefusesHardLinkOutsideRoot) {
  LayerBuilder layer;
  layer.Entry(Raw("h", TarEntryType::kHardLink, "../outside/secret"));
  ExpectRefused(layer, "h", "\"..\" component in hard link target");
  EXPECT_FALSE(Exists(root_ / "h"));
}

TEST_F(ApplyTest, RefusesAbsoluteHardLink) {
  LayerBuilder layer;
  layer.Entry(Raw("passwd", TarEntryType::kHardLink, "/etc/passwd"));
  ExpectRefused(layer, "passwd", "absolute hard link target");
  EXPECT_FALSE(Exists(root_ / "passwd"));
}

TEST_F(ApplyTest, RefusesHardLinkThroughSymlink) {
  LayerBuilder layer;
  layer.Symlink("l", outside_.string()).Entry(Raw("h", TarEntryType::kHardLink, "l/secret"));
  ExpectRefused(layer, "h", "is a symlink");
  EXPECT_FALSE(Exists(root_ / "h"));
  EXPECT_EQ(Lstat(outside_ / "secret").st_nlink, 1u);
}

TEST_F(ApplyTest, RefusesForgedOverlayXattr) {
  LayerBuilder layer;
  layer.Dir("d", {.xattrs = {{"trusted.overlay.opaque", "y"}}});
  ExpectRefused(layer, "d", "forged overlay xattr \"trusted.overlay.opaque\"");
  LayerBuilder user;
  user.File("f", "x", {.xattrs = {{"user.overlay.redirect", "/etc"}}});
  ExpectRefused(user, "f", "forged overlay xattr");
  EXPECT_FALSE(Exists(root_ / "d"));
  EXPECT_FALSE(Exists(root_ / "f"));
}

TEST_F(ApplyTest, RefusesUnsupportedTypeAndBadWhiteouts) {
  LayerBuilder layer;
  layer.Entry(Raw("weird", static_cast<TarEntryType>('Z')));
  ExpectRefused(layer, "weird", "unsupported entry type");
  LayerBuilder dotdot;
  dotdot.Entry(Raw("a/.wh..."));
  ExpectRefused(dotdot, "a/.wh...", "whiteout of \"..\"");
  LayerBuilder dot;
  dot.Entry(Raw("a/.wh.."));
  ExpectRefused(dot, "a/.wh..", "whiteout of \".\"");
}

TEST_F(ApplyTest, TruncatedTarErrorNamesTheEntry) {
  LayerBuilder layer;
  layer.File("first", "ok").File("big", test_support::RandomBytes(100000, 7));
  ASSERT_OK_AND_ASSIGN(std::string tar, layer.Tar());
  std::string cut = tar.substr(0, 512 * 3 + 50000);
  StringViewReader reader(cut);
  auto result = ApplyLayer(reader, root_, {.same_owner = false});
  ASSERT_FALSE(result.has_value());
  EXPECT_NE(result.error().message().find("big"), std::string::npos) << result.error().ToString();
  EXPECT_EQ(Slurp(root_ / "first"), "ok");
  ExpectOutsideUnchanged();
}

TEST_F(ApplyTest, MissingRootIsAnError) {
  LayerBuilder layer;
  layer.File("f", "x");
  ASSERT_OK_AND_ASSIGN(std::string tar, layer.Tar());
  StringViewReader reader(tar);
  auto result = ApplyLayer(reader, root_ / "nope");
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code(), ErrorCode::kNotFound);
}

TEST_F(ApplyTest, FallbackWalkAppliesNormally) {
  internal::SetForceNoOpenat2(true);
  LayerBuilder layer;
  layer.Dir("a").Dir("a/b").File("a/b/c", "deep").File("new/parent/f", "p").Dir("a", {.mtime = {1234, 0}});
  ASSERT_OK(Apply(layer, {.same_owner = false}));
  EXPECT_EQ(Slurp(root_ / "a/b/c"), "deep");
  EXPECT_EQ(Slurp(root_ / "new/parent/f"), "p");
  EXPECT_EQ(Lstat(root_ / "a").st_mtim.tv_sec, 1234);
}

}  // namespace
}  // namespace strata::archive
