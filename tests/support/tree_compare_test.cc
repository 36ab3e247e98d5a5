// The tree comparison helper: equal trees compare equal, and every kind of difference it
// promises to see is seen (each test changes one thing in one tree and looks for its line).
#include "tests/support/tree_compare.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <fstream>
#include <optional>

#include <gtest/gtest.h>

#include "base/file.h"
#include "tests/support/assertions.h"
#include "tests/support/root.h"

namespace strata::test_support {
namespace {

namespace fs = std::filesystem;

void WriteText(const fs::path& path, const std::string& text) { std::ofstream(path, std::ios::trunc) << text; }

void SetXattr(const fs::path& path, const std::string& name, const std::string& value) {
  ASSERT_EQ(::lsetxattr(path.c_str(), name.c_str(), value.data(), value.size(), 0), 0) << name << " on " << path;
}

// True when some line of `diffs` contains `needle`; prints them all otherwise.
::testing::AssertionResult HasDifference(const std::vector<std::string>& diffs, const std::string& needle) {
  for (const auto& line : diffs) {
    if (line.find(needle) != std::string::npos) return ::testing::AssertionSuccess();
  }
  auto failure = ::testing::AssertionFailure() << "no difference mentions \"" << needle << "\"; got:";
  for (const auto& line : diffs) failure << "\n  " << line;
  return failure;
}

class TreeCompareTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = TempDir::Create("strata-tree-cmp");
    ASSERT_TRUE(dir) << dir.error().ToString();
    dir_.emplace(std::move(*dir));
    a_ = dir_->path() / "a";
    b_ = dir_->path() / "b";
    ASSERT_NO_FATAL_FAILURE(Populate(a_));
    ASSERT_NO_FATAL_FAILURE(Populate(b_));
  }

  // The same small tree in each side, with fixed mtimes so the sides can match exactly.
  static void Populate(const fs::path& root) {
    fs::create_directories(root / "etc" / "sub");
    WriteText(root / "etc" / "passwd", "root:x:0:0::/root:/bin/sh\n");
    WriteText(root / "etc" / "sub" / "empty", "");
    WriteText(root / "data", "payload");
    ASSERT_EQ(::link((root / "data").c_str(), (root / "data-link").c_str()), 0);
    fs::create_symlink("etc/passwd", root / "rel-link");
    ASSERT_EQ(::mkfifo((root / "fifo").c_str(), 0600), 0);
    SetXattr(root / "data", "user.note", "v1");
    SetXattr(root / "data", "user.overlay.origin", "ignored by default");
    for (const char* rel : {".", "etc", "etc/sub", "etc/passwd", "etc/sub/empty", "data", "rel-link", "fifo"}) {
      struct timespec times[2] = {{1'700'000'000, 5}, {1'700'000'000, 5}};
      ASSERT_EQ(::utimensat(AT_FDCWD, (root / rel).c_str(), times, AT_SYMLINK_NOFOLLOW), 0) << rel;
    }
  }

  std::optional<TempDir> dir_;
  fs::path a_, b_;
};

TEST_F(TreeCompareTest, IdenticalTreesAreEqualIncludingMtimes) {
  EXPECT_TRUE(TreesEqual(a_, b_));
  EXPECT_TRUE(TreesEqual(a_, b_, {.compare_mtimes = true, .compare_dir_mtimes = true}));
}

TEST_F(TreeCompareTest, ScanListsRootSortedWithTypesAndHardLinkLeader) {
  ASSERT_OK_AND_ASSIGN(auto entries, ScanTree(a_));
  std::vector<std::string> paths;
  for (const auto& entry : entries) paths.push_back(entry.path);
  EXPECT_EQ(paths, (std::vector<std::string>{".", "data", "data-link", "etc", "etc/passwd", "etc/sub",
                                             "etc/sub/empty", "fifo", "rel-link"}));
  EXPECT_EQ(entries[0].type, 'd');
  EXPECT_EQ(entries[1].type, 'f');
  EXPECT_EQ(entries[1].size, 7u);
  EXPECT_EQ(entries[1].hardlink_group, "data");
  EXPECT_EQ(entries[2].hardlink_group, "data");
  EXPECT_EQ(entries[4].hardlink_group, "");
  EXPECT_EQ(entries[1].xattrs, (std::map<std::string, std::string>{{"user.note", "v1"}}));
  EXPECT_EQ(entries[7].type, 'p');
  EXPECT_EQ(entries[8].type, 'l');
  EXPECT_EQ(entries[8].symlink_target, "etc/passwd");
}

TEST_F(TreeCompareTest, DetectsContentChangeOfSameSize) {
  WriteText(b_ / "etc" / "passwd", "ROOT:x:0:0::/root:/bin/sh\n");
  auto diffs = CompareTrees(a_, b_);
  EXPECT_TRUE(HasDifference(diffs, "etc/passwd: content sha256"));
  EXPECT_FALSE(HasDifference(diffs, "size"));
}

TEST_F(TreeCompareTest, DetectsSizeChange) {
  WriteText(b_ / "etc" / "sub" / "empty", "x");
  EXPECT_TRUE(HasDifference(CompareTrees(a_, b_), "etc/sub/empty: size 0 vs 1"));
}

TEST_F(TreeCompareTest, DetectsModeIncludingSpecialBits) {
  ASSERT_EQ(::chmod((b_ / "etc" / "passwd").c_str(), 0600), 0);
  ASSERT_EQ(::chmod((b_ / "etc").c_str(), 01755), 0);
  auto diffs = CompareTrees(a_, b_);
  EXPECT_TRUE(HasDifference(diffs, "etc/passwd: mode 0644 vs 0600"));
  EXPECT_TRUE(HasDifference(diffs, "etc: mode 0755 vs 1755"));
}

TEST_F(TreeCompareTest, DetectsOwner) {
  STRATA_REQUIRE_ROOT();
  ASSERT_EQ(::lchown((b_ / "rel-link").c_str(), 1000, 1001), 0);
  EXPECT_TRUE(HasDifference(CompareTrees(a_, b_), "rel-link: owner 0:0 vs 1000:1001"));
}

TEST_F(TreeCompareTest, DetectsSymlinkTarget) {
  fs::remove(b_ / "rel-link");
  fs::create_symlink("/etc/passwd", b_ / "rel-link");
  EXPECT_TRUE(HasDifference(CompareTrees(a_, b_), "rel-link: symlink target \"etc/passwd\" vs \"/etc/passwd\""));
}

TEST_F(TreeCompareTest, DetectsXattrValueMissingAndExtra) {
  SetXattr(b_ / "data", "user.note", "v2");
  SetXattr(b_ / "etc", "user.extra", "1");
  SetXattr(a_ / "etc" / "passwd", "user.gone", "1");
  auto diffs = CompareTrees(a_, b_);
  EXPECT_TRUE(HasDifference(diffs, "data: xattr user.note \"v1\" vs \"v2\""));
  EXPECT_TRUE(HasDifference(diffs, "etc: xattr user.extra only in B"));
  EXPECT_TRUE(HasDifference(diffs, "etc/passwd: xattr user.gone only in A"));
}

TEST_F(TreeCompareTest, DetectsTrustedXattrAndHonoursIgnoredPrefixes) {
  STRATA_REQUIRE_ROOT();
  SetXattr(b_ / "etc", "trusted.overlay.opaque", "y");
  SetXattr(b_ / "etc", "trusted.other", "1");
  auto diffs = CompareTrees(a_, b_);
  EXPECT_TRUE(HasDifference(diffs, "etc: xattr trusted.other only in B"));
  EXPECT_FALSE(HasDifference(diffs, "overlay"));
  // With no prefixes ignored, the overlay xattrs count too.
  EXPECT_TRUE(HasDifference(CompareTrees(a_, b_, {.ignore_xattr_prefixes = {}}), "etc: xattr trusted.overlay.opaque"));
}

TEST_F(TreeCompareTest, DetectsMissingEntriesOnEitherSide) {
  fs::remove(b_ / "fifo");
  WriteText(b_ / "etc" / "sub" / "new", "");
  auto diffs = CompareTrees(a_, b_);
  EXPECT_TRUE(HasDifference(diffs, "only in A: fifo (p)"));
  EXPECT_TRUE(HasDifference(diffs, "only in B: etc/sub/new (f)"));
  EXPECT_EQ(diffs.size(), 2u) << ::testing::PrintToString(diffs);
}

TEST_F(TreeCompareTest, DetectsTypeChange) {
  fs::remove(b_ / "fifo");
  fs::create_directory(b_ / "fifo");
  EXPECT_TRUE(HasDifference(CompareTrees(a_, b_), "fifo: type p vs d"));
}

TEST_F(TreeCompareTest, DetectsHardLinkGroupingEvenWithEqualContent) {
  // Same content, mode and owner: only the inode partition differs.
  fs::remove(b_ / "data-link");
  fs::copy_file(b_ / "data", b_ / "data-link");
  SetXattr(b_ / "data-link", "user.note", "v1");
  auto diffs = CompareTrees(a_, b_);
  EXPECT_TRUE(HasDifference(diffs, "hard-link groups differ at data: A {data, data-link} vs B {data} {data-link}"));
  EXPECT_EQ(diffs.size(), 1u) << ::testing::PrintToString(diffs);

  // Regrouping with the same group sizes is also a difference.
  ASSERT_EQ(::unlink((b_ / "etc" / "passwd").c_str()), 0);
  ASSERT_EQ(::link((b_ / "data-link").c_str(), (b_ / "etc" / "passwd").c_str()), 0);
  EXPECT_TRUE(HasDifference(CompareTrees(a_, b_),
                            "hard-link groups differ at data: A {data, data-link} {etc/passwd} vs B {data} "
                            "{data-link, etc/passwd}"));
}

TEST_F(TreeCompareTest, DetectsDeviceNumbers) {
  STRATA_REQUIRE_ROOT();
  ASSERT_EQ(::mknod((a_ / "null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
  ASSERT_EQ(::mknod((b_ / "null").c_str(), S_IFCHR | 0666, makedev(1, 5)), 0);
  ASSERT_EQ(::mknod((a_ / "disk").c_str(), S_IFBLK | 0660, makedev(7, 0)), 0);
  ASSERT_EQ(::mknod((b_ / "disk").c_str(), S_IFBLK | 0660, makedev(7, 0)), 0);
  auto diffs = CompareTrees(a_, b_);
  EXPECT_TRUE(HasDifference(diffs, "null: device 1:3 vs 1:5"));
  EXPECT_FALSE(HasDifference(diffs, "disk"));
}

TEST_F(TreeCompareTest, MtimesOnlyWhenAskedAndDirsSeparately) {
  struct timespec later[2] = {{1'800'000'000, 0}, {1'800'000'000, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, (b_ / "rel-link").c_str(), later, AT_SYMLINK_NOFOLLOW), 0);
  ASSERT_EQ(::utimensat(AT_FDCWD, (b_ / "etc" / "sub").c_str(), later, 0), 0);
  EXPECT_TRUE(TreesEqual(a_, b_));
  auto files_only = CompareTrees(a_, b_, {.compare_mtimes = true});
  EXPECT_TRUE(HasDifference(files_only, "rel-link: mtime_ns 1700000000000000005 vs 1800000000000000000"));
  EXPECT_FALSE(HasDifference(files_only, "etc/sub"));
  EXPECT_TRUE(HasDifference(CompareTrees(a_, b_, {.compare_dir_mtimes = true}), "etc/sub: mtime_ns"));
}

TEST_F(TreeCompareTest, IgnoredPathsSkipTheirSubtree) {
  WriteText(b_ / "etc" / "sub" / "new", "");
  fs::remove(b_ / "fifo");
  EXPECT_FALSE(TreesEqual(a_, b_, {.ignore_paths = {"etc"}}));
  EXPECT_TRUE(TreesEqual(a_, b_, {.ignore_paths = {"etc/sub", "fifo"}}));
}

TEST_F(TreeCompareTest, CapsTheNumberOfLines) {
  for (int i = 0; i < 60; ++i) WriteText(b_ / ("extra-" + std::to_string(i)), "");
  auto diffs = CompareTrees(a_, b_);
  ASSERT_EQ(diffs.size(), kMaxTreeDifferences + 1);
  EXPECT_EQ(diffs.back(), "... and 10 more differences");
}

TEST_F(TreeCompareTest, UnreadableRootIsReportedNotEqual) {
  auto diffs = CompareTrees(a_, dir_->path() / "missing");
  ASSERT_EQ(diffs.size(), 1u);
  EXPECT_TRUE(HasDifference(diffs, "cannot scan B"));
}

}  // namespace
}  // namespace strata::test_support
