// The union engine without FUSE: lookup, readdir, copy-up, whiteouts, opaque dirs, rename
// and inode numbers, checked both through the engine and by reading the upper dir directly.
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <thread>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "fsfilter/union_filesystem.h"
#include "tests/fsfilter/layer_fixture.h"
#include "tests/support/root.h"

namespace strata::fsfilter {
namespace {

using testing::Exists;
using testing::GetXattr;
using testing::IsWhiteoutAt;
using testing::LayerDirs;
using testing::Lstat;
using testing::MakeWhiteout;
using testing::ReadText;
using testing::SetXattr;
using testing::WriteText;

// The errno of a failed result, 0 on success.
template <typename T>
int ErrnoOf(const SysResult<T>& result) {
  return result ? 0 : result.error();
}

class UnionEngineTest : public ::testing::Test {
 protected:
  void SetUp() override { STRATA_REQUIRE_ROOT(); }  // whiteouts, trusted.* xattrs, chown

  // Opens the view over l1:l2 (+ upper/work when `writable`).
  void OpenView(bool writable = true) {
    LayerChainConfig config;
    config.lower_dirs = {dirs_.l1(), dirs_.l2()};
    if (writable) {
      config.upper_dir = dirs_.upper();
      config.work_dir = dirs_.work();
    }
    auto fs = UnionFilesystem::Open(config);
    ASSERT_TRUE(fs.has_value()) << fs.error().ToString();
    fs_ = std::move(*fs);
  }

  SysResult<Entry> Resolve(const std::string& path) { return testing::ResolvePath(*fs_, path); }
  Node* NodeAt(const std::string& path) { return testing::NodeAtPath(*fs_, path); }

  std::set<std::string> Names(const std::string& dir) {
    std::set<std::string> names;
    Node* node = dir.empty() ? fs_->root() : NodeAt(dir);
    if (node == nullptr) return names;
    auto entries = fs_->view().ListDir(node);
    EXPECT_TRUE(entries.has_value());
    if (!entries) return names;
    for (const DirEntry& entry : *entries) {
      EXPECT_TRUE(names.insert(entry.name).second) << "duplicate " << entry.name;
    }
    return names;
  }

  std::string ReadAll(const std::string& path) { return testing::ReadThroughView(*fs_, path); }

  void Append(const std::string& path, const std::string& text) {
    Node* node = NodeAt(path);
    ASSERT_NE(node, nullptr);
    auto fd = fs_->Open(node, O_WRONLY | O_APPEND);
    ASSERT_TRUE(fd.has_value()) << std::strerror(fd.error());
    ASSERT_EQ(::write(fd->get(), text.data(), text.size()), static_cast<ssize_t>(text.size()));
  }

  LayerDirs dirs_;
  std::unique_ptr<UnionFilesystem> fs_;
};

TEST_F(UnionEngineTest, LookupHonoursWhiteoutsInBothForms) {
  WriteText(dirs_.l2() / "dev_whiteout", "x");
  WriteText(dirs_.l2() / "file_whiteout", "x");
  WriteText(dirs_.l2() / "kept", "kept");
  MakeWhiteout(dirs_.l1() / "dev_whiteout");
  WriteText(dirs_.l1() / ".wh.file_whiteout", "");
  OpenView();
  EXPECT_EQ(ErrnoOf(Resolve("dev_whiteout")), ENOENT);
  EXPECT_EQ(ErrnoOf(Resolve("file_whiteout")), ENOENT);
  EXPECT_EQ(ErrnoOf(Resolve(".wh.file_whiteout")), ENOENT);
  EXPECT_EQ(ReadAll("kept"), "kept");
  EXPECT_EQ(Names(""), (std::set<std::string>{".", "..", "kept"}));
}

TEST_F(UnionEngineTest, OpaqueDirectoriesInEveryFormStopTheDescent) {
  for (const char* dir : {"trusted", "user", "marker", "plain"}) {
    WriteText(dirs_.l2() / dir / "old", "old");
    WriteText(dirs_.l1() / dir / "new", "new");
  }
  SetXattr(dirs_.l1() / "trusted", "trusted.overlay.opaque", "y");
  SetXattr(dirs_.l1() / "user", "user.overlay.opaque", "y");
  WriteText(dirs_.l1() / "marker" / ".wh..wh..opq", "");
  OpenView();
  for (const char* dir : {"trusted", "user", "marker"}) {
    EXPECT_EQ(Names(dir), (std::set<std::string>{".", "..", "new"})) << dir;
    EXPECT_EQ(ErrnoOf(Resolve(std::string(dir) + "/old")), ENOENT) << dir;
  }
  EXPECT_EQ(Names("plain"), (std::set<std::string>{".", "..", "new", "old"}));
  EXPECT_EQ(ReadAll("plain/old"), "old");
}

TEST_F(UnionEngineTest, ReaddirMergesLayersOnceAndHidesMarkers) {
  WriteText(dirs_.l2() / "d" / "a", "l2");
  WriteText(dirs_.l2() / "d" / "b", "l2");
  WriteText(dirs_.l2() / "d" / "c", "l2");
  WriteText(dirs_.l2() / "d" / "e", "l2");
  WriteText(dirs_.l1() / "d" / "b", "l1");
  WriteText(dirs_.l1() / "d" / ".wh.c", "");
  MakeWhiteout(dirs_.l1() / "d" / "e");
  WriteText(dirs_.upper() / "d" / "f", "upper");
  MakeWhiteout(dirs_.upper() / "d" / "a");
  OpenView();
  EXPECT_EQ(Names("d"), (std::set<std::string>{".", "..", "b", "f"}));
  EXPECT_EQ(ReadAll("d/b"), "l1");
  EXPECT_EQ(ReadAll("d/f"), "upper");
  // A merged directory reports nlink 1; a one-layer directory its own nlink.
  EXPECT_EQ(NodeAt("d") ? Resolve("d")->attr.st_nlink : 0u, 1u);
  std::filesystem::create_directories(dirs_.l2() / "solo" / "x");
  EXPECT_EQ(Resolve("solo")->attr.st_nlink, 3u);
}

TEST_F(UnionEngineTest, ReaddirOffsetsAreStableIndices) {
  for (int i = 0; i < 50; ++i) WriteText(dirs_.l2() / "many" / ("f" + std::to_string(i)), "x");
  for (int i = 25; i < 75; ++i) WriteText(dirs_.l1() / "many" / ("f" + std::to_string(i)), "y");
  OpenView();
  auto first = fs_->view().ListDir(NodeAt("many"));
  auto second = fs_->view().ListDir(NodeAt("many"));
  ASSERT_TRUE(first && second);
  ASSERT_EQ(first->size(), 77u);  // 75 names + . + ..
  for (size_t i = 0; i < first->size(); ++i) EXPECT_EQ((*first)[i].name, (*second)[i].name);
}

TEST_F(UnionEngineTest, CopyUpPreservesMetadataXattrsAndParents) {
  const auto dir = dirs_.l2() / "etc";
  WriteText(dir / "conf", "content");
  ASSERT_EQ(::chmod(dir.c_str(), 0751), 0);
  ASSERT_EQ(::chown(dir.c_str(), 1001, 1002), 0);
  ASSERT_EQ(::chmod((dir / "conf").c_str(), 04754), 0);
  ASSERT_EQ(::lchown((dir / "conf").c_str(), 1234, 5678), 0);
  ASSERT_EQ(::chmod((dir / "conf").c_str(), 04754), 0);
  SetXattr(dir / "conf", "user.color", "blue");
  SetXattr(dir / "conf", "trusted.note", "n");
  ASSERT_EQ(::symlink("conf", (dir / "link").c_str()), 0);
  ASSERT_EQ(::lchown((dir / "link").c_str(), 77, 88), 0);
  ASSERT_EQ(::mkfifo((dir / "fifo").c_str(), 0640), 0);
  ASSERT_EQ(::mknod((dir / "null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
  const struct timespec times[2] = {{1000000, 5}, {2000000, 7}};
  for (const char* name : {"conf", "link", "fifo", "null"})
    ASSERT_EQ(::utimensat(AT_FDCWD, (dir / name).c_str(), times, AT_SYMLINK_NOFOLLOW), 0);
  ASSERT_EQ(::utimensat(AT_FDCWD, dir.c_str(), times, 0), 0);
  OpenView();
  for (const char* name : {"conf", "link", "fifo", "null"}) {
    Node* node = NodeAt(std::string("etc/") + name);
    ASSERT_NE(node, nullptr);
    ASSERT_TRUE(fs_->writer().CopyUp(node).has_value()) << name;
  }
  const auto up = dirs_.upper() / "etc";
  struct stat dst = Lstat(up);
  EXPECT_EQ(dst.st_mode & 07777, 0751u);
  EXPECT_EQ(dst.st_uid, 1001u);
  EXPECT_EQ(dst.st_gid, 1002u);
  EXPECT_EQ(dst.st_mtim.tv_sec, 2000000) << "parent times restored after copy-up";
  EXPECT_FALSE(GetXattr(up, "trusted.overlay.opaque").has_value()) << "copied-up dirs are not opaque";
  struct stat conf = Lstat(up / "conf");
  EXPECT_EQ(conf.st_mode & 07777, 04754u);
  EXPECT_EQ(conf.st_uid, 1234u);
  EXPECT_EQ(conf.st_gid, 5678u);
  EXPECT_EQ(conf.st_mtim.tv_sec, 2000000);
  EXPECT_EQ(conf.st_mtim.tv_nsec, 7);
  EXPECT_EQ(ReadText(up / "conf"), "content");
  EXPECT_EQ(GetXattr(up / "conf", "user.color"), "blue");
  EXPECT_EQ(GetXattr(up / "conf", "trusted.note"), "n");
  struct stat link = Lstat(up / "link");
  EXPECT_TRUE(S_ISLNK(link.st_mode));
  EXPECT_EQ(link.st_uid, 77u);
  EXPECT_EQ(std::filesystem::read_symlink(up / "link"), "conf");
  EXPECT_TRUE(S_ISFIFO(Lstat(up / "fifo").st_mode));
  struct stat null_dev = Lstat(up / "null");
  EXPECT_TRUE(S_ISCHR(null_dev.st_mode));
  EXPECT_EQ(null_dev.st_rdev, makedev(1, 3));
  // The lower layer is untouched and the work dir is left empty.
  EXPECT_EQ(ReadText(dir / "conf"), "content");
  EXPECT_TRUE(std::filesystem::is_empty(dirs_.work() / "work"));
}

TEST_F(UnionEngineTest, WritesCopyUpAndKeepTheInodeNumber) {
  WriteText(dirs_.l2() / "d" / "file", "hello\n");
  OpenView();
  SysResult<Entry> before = Resolve("d/file");
  ASSERT_TRUE(before.has_value());
  Append("d/file", "world\n");
  EXPECT_EQ(ReadText(dirs_.upper() / "d" / "file"), "hello\nworld\n");
  EXPECT_EQ(ReadText(dirs_.l2() / "d" / "file"), "hello\n");
  EXPECT_EQ(ReadAll("d/file"), "hello\nworld\n");
  SysResult<Entry> after = Resolve("d/file");
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->attr.st_ino, before->attr.st_ino);
  // Even once the kernel forgot the node, the upper file reports the origin's number.
  fs_->view().Forget(after->node, 100);
  SysResult<Entry> again = Resolve("d/file");
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->attr.st_ino, before->attr.st_ino);
}

TEST_F(UnionEngineTest, TruncateAndSetattrCopyUp) {
  WriteText(dirs_.l2() / "big", std::string(10000, 'x'));
  WriteText(dirs_.l2() / "mode", "m");
  OpenView();
  AttrChanges truncate;
  truncate.size = 0;
  ASSERT_TRUE(fs_->writer().SetAttr(NodeAt("big"), truncate).has_value());
  EXPECT_EQ(Lstat(dirs_.upper() / "big").st_size, 0);
  AttrChanges chmod;
  chmod.mode = 0600;
  chmod.uid = 42;
  auto st = fs_->writer().SetAttr(NodeAt("mode"), chmod);
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->st_mode & 07777, 0600u);
  EXPECT_EQ(Lstat(dirs_.upper() / "mode").st_uid, 42u);
  EXPECT_EQ(ReadText(dirs_.upper() / "mode"), "m");
}

TEST_F(UnionEngineTest, UnlinkLeavesOverlayWhiteoutsOnlyWhereNeeded) {
  WriteText(dirs_.l2() / "lower_only", "x");
  WriteText(dirs_.l2() / "copied", "x");
  OpenView();
  Append("copied", "y");
  Caller root{0, 0};
  ASSERT_TRUE(fs_->writer().Create(fs_->root(), "upper_only", 0644, O_WRONLY, root).has_value());
  for (const char* name : {"lower_only", "copied", "upper_only"})
    ASSERT_TRUE(fs_->writer().Unlink(fs_->root(), name).has_value()) << name;
  EXPECT_TRUE(IsWhiteoutAt(dirs_.upper() / "lower_only"));
  EXPECT_TRUE(IsWhiteoutAt(dirs_.upper() / "copied"));
  EXPECT_FALSE(Exists(dirs_.upper() / "upper_only"));
  EXPECT_EQ(Names(""), (std::set<std::string>{".", ".."}));
  EXPECT_EQ(ErrnoOf(Resolve("lower_only")), ENOENT);
  // Recreating a whited-out name replaces the whiteout.
  ASSERT_TRUE(fs_->writer().Create(fs_->root(), "lower_only", 0600, O_WRONLY, root).has_value());
  EXPECT_TRUE(S_ISREG(Lstat(dirs_.upper() / "lower_only").st_mode));
  EXPECT_EQ(ReadAll("lower_only"), "");
}

TEST_F(UnionEngineTest, RmdirThenMkdirGivesAnOpaqueDirectory) {
  WriteText(dirs_.l2() / "dir" / "child", "x");
  OpenView();
  Caller root{0, 0};
  EXPECT_EQ(ErrnoOf(fs_->writer().Rmdir(fs_->root(), "dir")), ENOTEMPTY);
  ASSERT_TRUE(fs_->writer().Unlink(NodeAt("dir"), "child").has_value());
  ASSERT_TRUE(fs_->writer().Rmdir(fs_->root(), "dir").has_value());
  EXPECT_TRUE(IsWhiteoutAt(dirs_.upper() / "dir"));
  ASSERT_TRUE(fs_->writer().MakeDir(fs_->root(), "dir", 0755, root).has_value());
  EXPECT_EQ(GetXattr(dirs_.upper() / "dir", "trusted.overlay.opaque"), "y");
  EXPECT_EQ(Names("dir"), (std::set<std::string>{".", ".."}));
  // A directory over nothing is not opaque, as with kernel overlayfs.
  ASSERT_TRUE(fs_->writer().MakeDir(fs_->root(), "fresh", 0700, root).has_value());
  EXPECT_FALSE(GetXattr(dirs_.upper() / "fresh", "trusted.overlay.opaque").has_value());
  EXPECT_EQ(Lstat(dirs_.upper() / "fresh").st_mode & 07777, 0700u);
  EXPECT_TRUE(std::filesystem::is_empty(dirs_.work() / "work"));
}

TEST_F(UnionEngineTest, RenameFollowsOverlayRules) {
  WriteText(dirs_.l2() / "file", "data");
  WriteText(dirs_.l2() / "dir" / "x", "x");
  WriteText(dirs_.l2() / "other", "other");
  OpenView();
  Caller root{0, 0};
  ASSERT_TRUE(fs_->writer().Rename(fs_->root(), "file", fs_->root(), "moved", 0).has_value());
  EXPECT_TRUE(IsWhiteoutAt(dirs_.upper() / "file"));
  EXPECT_EQ(ReadText(dirs_.upper() / "moved"), "data");
  EXPECT_EQ(ReadAll("moved"), "data");
  EXPECT_EQ(ErrnoOf(Resolve("file")), ENOENT);
  EXPECT_EQ(ErrnoOf(fs_->writer().Rename(fs_->root(), "dir", fs_->root(), "dir2", 0)), EXDEV);
  EXPECT_EQ(ErrnoOf(fs_->writer().Rename(fs_->root(), "moved", fs_->root(), "other", RENAME_NOREPLACE)), EEXIST);
  EXPECT_EQ(ErrnoOf(fs_->writer().Rename(fs_->root(), "moved", fs_->root(), "other", RENAME_WHITEOUT)), EINVAL);
  // Replacing a lower file: the target's lower copy stays hidden by the renamed file.
  ASSERT_TRUE(fs_->writer().Rename(fs_->root(), "moved", fs_->root(), "other", 0).has_value());
  EXPECT_EQ(ReadAll("other"), "data");
  EXPECT_TRUE(IsWhiteoutAt(dirs_.upper() / "file"));
  // A directory that only exists in upper can move.
  ASSERT_TRUE(fs_->writer().MakeDir(fs_->root(), "newdir", 0755, root).has_value());
  ASSERT_TRUE(fs_->writer().Rename(fs_->root(), "newdir", NodeAt("dir"), "inside", 0).has_value());
  EXPECT_TRUE(std::filesystem::is_directory(dirs_.upper() / "dir" / "inside"));
  EXPECT_EQ(Names("dir"), (std::set<std::string>{".", "..", "x", "inside"}));
  EXPECT_EQ(ErrnoOf(fs_->writer().Rename(fs_->root(), "dir", NodeAt("dir"), "loop", 0)), EINVAL);
}

TEST_F(UnionEngineTest, RenameExchangeSwapsCopiedUpEntries) {
  WriteText(dirs_.l2() / "one", "1");
  WriteText(dirs_.l2() / "sub" / "two", "2");
  WriteText(dirs_.l2() / "lowerdir" / "x", "x");
  OpenView();
  ASSERT_TRUE(fs_->writer().Rename(fs_->root(), "one", NodeAt("sub"), "two", RENAME_EXCHANGE).has_value());
  EXPECT_EQ(ReadAll("one"), "2");
  EXPECT_EQ(ReadAll("sub/two"), "1");
  EXPECT_EQ(ReadText(dirs_.upper() / "one"), "2");
  EXPECT_EQ(ReadText(dirs_.upper() / "sub" / "two"), "1");
  EXPECT_EQ(ErrnoOf(fs_->writer().Rename(fs_->root(), "one", fs_->root(), "lowerdir", RENAME_EXCHANGE)), EXDEV);
  EXPECT_EQ(ErrnoOf(fs_->writer().Rename(fs_->root(), "one", fs_->root(), "missing", RENAME_EXCHANGE)), ENOENT);
}

TEST_F(UnionEngineTest, RemovingAMissingXattrDoesNotCopyUp) {
  WriteText(dirs_.l2() / "f", "x");
  OpenView();
  EXPECT_EQ(ErrnoOf(fs_->writer().RemoveXattr(NodeAt("f"), "user.absent")), ENODATA);
  EXPECT_FALSE(Exists(dirs_.upper() / "f"));
}

TEST_F(UnionEngineTest, HardLinksShareInodeNumbers) {
  WriteText(dirs_.l2() / "a", "shared");
  ASSERT_EQ(::link((dirs_.l2() / "a").c_str(), (dirs_.l2() / "b").c_str()), 0);
  OpenView();
  SysResult<Entry> a = Resolve("a");
  SysResult<Entry> b = Resolve("b");
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->attr.st_ino, b->attr.st_ino);
  EXPECT_EQ(a->attr.st_nlink, 2u);
  auto link = fs_->writer().Link(a->node, fs_->root(), "c");
  ASSERT_TRUE(link.has_value()) << std::strerror(link.error());
  EXPECT_EQ(link->attr.st_nlink, 2u);  // the upper copy and its new name
  EXPECT_EQ(Lstat(dirs_.upper() / "a").st_ino, Lstat(dirs_.upper() / "c").st_ino);
  // Copy-up separated "a" from its lower hard link "b" (overlayfs without index): a and c
  // now share the upper file's number, b keeps the lower one.
  EXPECT_EQ(Resolve("c")->attr.st_ino, link->attr.st_ino);
  EXPECT_EQ(Resolve("a")->attr.st_ino, link->attr.st_ino);
  EXPECT_NE(Resolve("b")->attr.st_ino, link->attr.st_ino);
  EXPECT_EQ(Resolve("b")->attr.st_nlink, 2u);
  EXPECT_EQ(ReadAll("c"), "shared");
  EXPECT_EQ(ErrnoOf(fs_->writer().Link(NodeAt("c"), fs_->root(), "b")), EEXIST);
}

TEST_F(UnionEngineTest, OverlayXattrsAreHidden) {
  WriteText(dirs_.l1() / "d" / "f", "x");
  SetXattr(dirs_.l1() / "d", "trusted.overlay.opaque", "y");
  SetXattr(dirs_.l1() / "d", "user.visible", "1");
  OpenView();
  Node* dir = NodeAt("d");
  auto names = fs_->view().ListXattr(dir, 0);
  ASSERT_TRUE(names.has_value());
  EXPECT_EQ(*names, std::string("user.visible\0", 13));
  EXPECT_EQ(ErrnoOf(fs_->view().GetXattr(dir, "trusted.overlay.opaque", 64)), ENODATA);
  EXPECT_EQ(ErrnoOf(fs_->writer().SetXattr(dir, "trusted.overlay.opaque", "n", 0)), EPERM);
  ASSERT_TRUE(fs_->writer().SetXattr(NodeAt("d/f"), "user.new", "v", 0).has_value());
  EXPECT_EQ(GetXattr(dirs_.upper() / "d" / "f", "user.new"), "v");
  EXPECT_EQ(fs_->view().GetXattr(NodeAt("d/f"), "user.new", 64).value_or(""), "v");
  ASSERT_TRUE(fs_->writer().RemoveXattr(NodeAt("d/f"), "user.new").has_value());
  EXPECT_FALSE(GetXattr(dirs_.upper() / "d" / "f", "user.new").has_value());
}

TEST_F(UnionEngineTest, SymlinksInLayersAreNeverFollowed) {
  ASSERT_EQ(::symlink("/etc", (dirs_.l1() / "escape").c_str()), 0);
  std::filesystem::create_directories(dirs_.l2() / "escape");
  WriteText(dirs_.l2() / "escape" / "passwd", "inside");
  OpenView();
  SysResult<Entry> link = Resolve("escape");
  ASSERT_TRUE(link.has_value());
  EXPECT_TRUE(S_ISLNK(link->attr.st_mode));
  EXPECT_EQ(ErrnoOf(Resolve("escape/passwd")), ENOTDIR);
  EXPECT_EQ(fs_->view().ReadLink(link->node).value_or(""), "/etc");
  EXPECT_EQ(ErrnoOf(fs_->Open(link->node, O_RDONLY)), ELOOP);
}

TEST_F(UnionEngineTest, ReadOnlyViewRefusesWrites) {
  WriteText(dirs_.l2() / "f", "x");
  OpenView(/*writable=*/false);
  Caller root{0, 0};
  EXPECT_EQ(ErrnoOf(fs_->Open(NodeAt("f"), O_RDWR)), EROFS);
  EXPECT_EQ(ErrnoOf(fs_->writer().Unlink(fs_->root(), "f")), EROFS);
  EXPECT_EQ(ErrnoOf(fs_->writer().MakeDir(fs_->root(), "d", 0755, root)), EROFS);
  EXPECT_EQ(ReadAll("f"), "x");
}

TEST_F(UnionEngineTest, NewEntriesBelongToTheCaller) {
  std::filesystem::create_directories(dirs_.l2() / "shared");
  ASSERT_EQ(::chown((dirs_.l2() / "shared").c_str(), 0, 500), 0);
  ASSERT_EQ(::chmod((dirs_.l2() / "shared").c_str(), 02775), 0);
  OpenView();
  Caller user{1000, 1000};
  ASSERT_TRUE(fs_->writer().Create(fs_->root(), "mine", 0640, O_WRONLY, user).has_value());
  struct stat mine = Lstat(dirs_.upper() / "mine");
  EXPECT_EQ(mine.st_uid, 1000u);
  EXPECT_EQ(mine.st_gid, 1000u);
  EXPECT_EQ(mine.st_mode & 07777, 0640u);
  ASSERT_TRUE(fs_->writer().MakeDir(NodeAt("shared"), "sub", 0755, user).has_value());
  struct stat sub = Lstat(dirs_.upper() / "shared" / "sub");
  EXPECT_EQ(sub.st_gid, 500u) << "setgid parent gives its group";
  EXPECT_EQ(sub.st_mode & 07777, 02755u);
  EXPECT_EQ(ErrnoOf(fs_->writer().MakeNode(fs_->root(), "wh", S_IFCHR | 0600, 0, user)), EPERM);
  EXPECT_EQ(ErrnoOf(fs_->writer().MakeDir(fs_->root(), ".wh.x", 0755, user)), EINVAL);
}

TEST_F(UnionEngineTest, ForgetFreesNodesOnceNothingRefersToThem) {
  WriteText(dirs_.l2() / "a" / "b" / "c", "x");
  OpenView();
  SysResult<Entry> a = Resolve("a");
  SysResult<Entry> b = fs_->view().Lookup(a->node, "b");
  SysResult<Entry> c = fs_->view().Lookup(b->node, "c");
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(fs_->view().NodeCount(), 4u);
  // A parent stays while a child refers to it, even with no lookups of its own.
  fs_->view().Forget(a->node, 1);
  fs_->view().Forget(b->node, 1);
  EXPECT_EQ(fs_->view().NodeCount(), 4u);
  fs_->view().Forget(c->node, 1);
  EXPECT_EQ(fs_->view().NodeCount(), 1u);
  // Nodes of removed entries live until forgotten.
  SysResult<Entry> again = Resolve("a/b/c");
  ASSERT_TRUE(again.has_value());
  ASSERT_TRUE(fs_->writer().Unlink(NodeAt("a/b"), "c").has_value());
  EXPECT_EQ(ErrnoOf(Resolve("a/b/c")), ENOENT);
  EXPECT_EQ(ErrnoOf(fs_->view().GetAttr(again->node)), ENOENT);
}

TEST_F(UnionEngineTest, ConcurrentLookupsForgetsAndChangesStayConsistent) {
  for (int i = 0; i < 64; ++i) WriteText(dirs_.l2() / "d" / ("f" + std::to_string(i)), "x");
  OpenView();
  Node* dir = NodeAt("d");
  ASSERT_NE(dir, nullptr);
  std::atomic<bool> stop{false};
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&, t] {
      for (int round = 0; !stop.load(); ++round) {
        const std::string name = "f" + std::to_string((round * 7 + t) % 64);
        SysResult<Entry> entry = fs_->view().Lookup(dir, name);
        if (entry) {
          (void)fs_->view().GetAttr(entry->node);
          fs_->view().Forget(entry->node, 1);
        }
        (void)fs_->view().ListDir(dir);
      }
    });
  }
  Caller root{0, 0};
  for (int i = 0; i < 64; ++i) {
    const std::string name = "f" + std::to_string(i);
    SysStatus done;
    if (i % 3 == 0) {
      done = fs_->writer().Unlink(dir, name);
    } else if (i % 3 == 1) {
      done = fs_->writer().Rename(dir, name, dir, "r" + name, 0);
    } else {
      auto created = fs_->writer().Create(dir, "n" + name, 0644, O_WRONLY, root);
      if (!created) done = SysFail(created.error());
    }
    EXPECT_TRUE(done.has_value()) << name;
  }
  stop = true;
  for (auto& reader : readers) reader.join();
  EXPECT_EQ(Names("d").size(), 2u + 64u - 22u + 21u);
}

TEST(LayerChainTest, ErrorsNameTheOptionAndPath) {
  LayerChainConfig config;
  EXPECT_NE(LayerChain::Open(config).error().message().find("lowerdir"), std::string::npos);
  config.lower_dirs = {"/nonexistent/strata-layer"};
  auto missing = LayerChain::Open(config);
  ASSERT_FALSE(missing.has_value());
  EXPECT_NE(missing.error().message().find("/nonexistent/strata-layer"), std::string::npos);
  config.lower_dirs = {"/"};
  config.upper_dir = "/tmp";
  EXPECT_NE(LayerChain::Open(config).error().message().find("workdir"), std::string::npos);
}

}  // namespace
}  // namespace strata::fsfilter
