// The overlay driver's mounts: the mount containerd would hand out for each kind and chain,
// and those mounts made for real (overlayfs, bind), including whiteouts from an upper layer
// and a 130-layer chain (past mount(2)'s option-string limit).
#include "snapshotter/overlay_layout.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <fstream>

#include <gtest/gtest.h>

#include "base/file.h"
#include "base/subprocess.h"
#include "tests/support/assertions.h"
#include "tests/support/root.h"

namespace strata::snapshotter {
namespace {

namespace fs = std::filesystem;

SnapshotRecord Record(Kind kind, uint64_t id, std::vector<uint64_t> parents) {
  return SnapshotRecord{.info = {.name = "s", .kind = kind}, .id = id, .parent_ids = std::move(parents)};
}

std::string ReadText(const fs::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteText(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

TEST(OverlayLayoutTest, MountsFollowContainerdsOverlayRules) {
  OverlayLayout layout("/s");
  ASSERT_OK_AND_ASSIGN(Mount bind, layout.MountFor(Record(Kind::kActive, 1, {})));
  EXPECT_EQ(bind, (Mount{"bind", "/s/1/fs", {"rw", "rbind"}}));
  ASSERT_OK_AND_ASSIGN(Mount view_bind, layout.MountFor(Record(Kind::kView, 5, {2})));
  EXPECT_EQ(view_bind, (Mount{"bind", "/s/2/fs", {"ro", "rbind"}}));
  ASSERT_OK_AND_ASSIGN(Mount view, layout.MountFor(Record(Kind::kView, 5, {3, 2})));
  EXPECT_EQ(view, (Mount{"overlay", "overlay", {"ro", "lowerdir=/s/3/fs:/s/2/fs"}}));
  ASSERT_OK_AND_ASSIGN(Mount active, layout.MountFor(Record(Kind::kActive, 4, {3, 2})));
  EXPECT_EQ(active.type, "overlay");
  EXPECT_EQ(active.options.back(), "lowerdir=/s/3/fs:/s/2/fs");
  EXPECT_NE(std::find(active.options.begin(), active.options.end(), "upperdir=/s/4/fs"), active.options.end());
  EXPECT_NE(std::find(active.options.begin(), active.options.end(), "workdir=/s/4/work"), active.options.end());
  EXPECT_EQ(layout.MountFor(Record(Kind::kCommitted, 1, {})).error().code(), ErrorCode::kFailedPrecondition);
}

TEST(OverlayLayoutTest, FsfilterUnionGivesFuseMountsWithTheSameDirectories) {
  OverlayLayout kernel("/s");
  OverlayLayout fuse("/s", UnionMount::kFsfilter);
  for (const SnapshotRecord& record : {Record(Kind::kActive, 4, {3, 2}), Record(Kind::kView, 5, {3, 2})}) {
    ASSERT_OK_AND_ASSIGN(Mount overlay, kernel.MountFor(record));
    ASSERT_OK_AND_ASSIGN(Mount mount, fuse.MountFor(record));
    EXPECT_EQ(mount.type, "fuse3.strata-fsfilter");
    EXPECT_EQ(mount.source, "overlay");
    std::erase(overlay.options, "index=off");  // kernel overlayfs only
    EXPECT_EQ(mount.options, overlay.options);
  }
  // Single layers need no union: binds either way.
  ASSERT_OK_AND_ASSIGN(Mount bind, fuse.MountFor(Record(Kind::kActive, 1, {})));
  EXPECT_EQ(bind, (Mount{"bind", "/s/1/fs", {"rw", "rbind"}}));
  ASSERT_OK_AND_ASSIGN(Mount view_bind, fuse.MountFor(Record(Kind::kView, 5, {2})));
  EXPECT_EQ(view_bind.type, "bind");

  EXPECT_EQ(ParseUnionMount("overlay").value(), UnionMount::kKernelOverlay);
  EXPECT_EQ(ParseUnionMount("").value(), UnionMount::kKernelOverlay);
  EXPECT_EQ(ParseUnionMount("fsfilter").value(), UnionMount::kFsfilter);
  auto unknown = ParseUnionMount("aufs");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(unknown.error().message().find("overlay, fsfilter"), std::string::npos);
}

class OverlayMountTest : public ::testing::Test {
 protected:
  void SetUp() override {
    STRATA_REQUIRE_ROOT();
    auto root = test_support::TempRoot::Create("strata-overlay");
    ASSERT_TRUE(root) << root.error().ToString();
    root_.emplace(std::move(*root));
    layout_.emplace(*root_ / "snapshots");
    target_ = *root_ / "mnt";
    fs::create_directories(target_);
  }

  void MakeSnapshotDirs(uint64_t id) {
    fs::create_directories(layout_->FsDir(id));
    fs::create_directories(layout_->WorkDir(id));
  }

  std::optional<test_support::TempRoot> root_;
  std::optional<OverlayLayout> layout_;
  fs::path target_;
};

TEST_F(OverlayMountTest, ActiveOverlayShowsLayersHonoursWhiteoutsAndWritesToItsUpper) {
  MakeSnapshotDirs(1);
  WriteText(layout_->FsDir(1) / "a.txt", "from layer 1");
  WriteText(layout_->FsDir(1) / "dir/x", "x");
  MakeSnapshotDirs(2);
  WriteText(layout_->FsDir(2) / "b.txt", "from layer 2");
  ASSERT_EQ(::mknod((layout_->FsDir(2) / "a.txt").c_str(), S_IFCHR | 0, makedev(0, 0)), 0);  // whiteout
  MakeSnapshotDirs(3);

  ASSERT_OK_AND_ASSIGN(Mount mount, layout_->MountFor(Record(Kind::kActive, 3, {2, 1})));
  ASSERT_OK(MountAt(mount, target_));
  EXPECT_FALSE(fs::exists(target_ / "a.txt"));
  EXPECT_EQ(ReadText(target_ / "b.txt"), "from layer 2");
  EXPECT_EQ(ReadText(target_ / "dir/x"), "x");
  WriteText(target_ / "c.txt", "new");
  ASSERT_OK(UnmountAt(target_));
  EXPECT_EQ(ReadText(layout_->FsDir(3) / "c.txt"), "new");
  EXPECT_FALSE(fs::exists(layout_->FsDir(1) / "c.txt"));
  EXPECT_EQ(UnmountAt(target_).error().code(), ErrorCode::kNotFound);
}

TEST_F(OverlayMountTest, HundredThirtyLayerViewMountsReadOnly) {
  std::vector<uint64_t> parents;
  for (uint64_t id = 130; id >= 1; --id) {
    MakeSnapshotDirs(id);
    WriteText(layout_->FsDir(id) / fmt::format("f{}", id), std::to_string(id));
    parents.push_back(id);
  }
  ASSERT_OK_AND_ASSIGN(Mount mount, layout_->MountFor(Record(Kind::kView, 131, parents)));
  ASSERT_GT(mount.options.back().size(), 4096u);  // past what a mount(2) option page holds
  ASSERT_OK(MountAt(mount, target_));
  EXPECT_EQ(ReadText(target_ / "f1"), "1");
  EXPECT_EQ(ReadText(target_ / "f130"), "130");
  EXPECT_EQ(::open((target_ / "new").c_str(), O_CREAT | O_WRONLY, 0644), -1);
  EXPECT_EQ(errno, EROFS);
  ASSERT_OK(UnmountAt(target_));
}

TEST_F(OverlayMountTest, BindMountsForSingleLayers) {
  MakeSnapshotDirs(1);
  ASSERT_OK_AND_ASSIGN(Mount active, layout_->MountFor(Record(Kind::kActive, 1, {})));
  ASSERT_OK(MountAt(active, target_));
  WriteText(target_ / "written", "yes");
  ASSERT_OK(UnmountAt(target_));
  EXPECT_EQ(ReadText(layout_->FsDir(1) / "written"), "yes");

  ASSERT_OK_AND_ASSIGN(Mount view, layout_->MountFor(Record(Kind::kView, 2, {1})));
  ASSERT_OK(MountAt(view, target_));
  EXPECT_EQ(ReadText(target_ / "written"), "yes");
  EXPECT_EQ(::open((target_ / "new").c_str(), O_CREAT | O_WRONLY, 0644), -1);
  EXPECT_EQ(errno, EROFS);
  ASSERT_OK(UnmountAt(target_));
}

// "fuse3.<program>" mounts run the program as mount.fuse3 would; fuse-overlayfs takes the
// same command line as strata-fsfilter, so it stands in for any such program here.
TEST_F(OverlayMountTest, FuseMountTypesRunTheirProgramAndUnmount) {
  if (!FindInPath("fuse-overlayfs")) GTEST_SKIP() << "fuse-overlayfs is not installed (scripts/setup installs it)";
  MakeSnapshotDirs(1);
  WriteText(layout_->FsDir(1) / "a.txt", "from layer 1");
  MakeSnapshotDirs(2);
  ASSERT_OK_AND_ASSIGN(Mount mount, layout_->MountFor(Record(Kind::kActive, 2, {1})));
  mount = WithUnionMount(std::move(mount), UnionMount::kFsfilter);
  mount.type = "fuse3.fuse-overlayfs";
  ASSERT_OK(MountAt(mount, target_));
  EXPECT_EQ(ReadText(target_ / "a.txt"), "from layer 1");
  WriteText(target_ / "b.txt", "written through FUSE");
  ASSERT_OK(UnmountAt(target_));
  EXPECT_EQ(ReadText(layout_->FsDir(2) / "b.txt"), "written through FUSE");
  EXPECT_EQ(UnmountAt(target_).error().code(), ErrorCode::kNotFound);
}

TEST_F(OverlayMountTest, FailingFuseProgramIsReportedWithItsOwnWords) {
  if (!FindInPath("fuse-overlayfs")) GTEST_SKIP() << "fuse-overlayfs is not installed (scripts/setup installs it)";
  const Mount bad{"fuse3.fuse-overlayfs", "overlay", {"lowerdir=" + (*root_ / "missing").string()}};
  auto status = MountAt(bad, target_);
  ASSERT_FALSE(status);
  EXPECT_NE(status.error().message().find("fuse-overlayfs failed (exit status"), std::string::npos)
      << status.error().message();
  EXPECT_EQ(UnmountAt(target_).error().code(), ErrorCode::kNotFound);  // nothing was mounted

  auto escape = MountAt(Mount{"fuse3.../../bin/sh", "overlay", {}}, target_);
  ASSERT_FALSE(escape);
  EXPECT_EQ(escape.error().code(), ErrorCode::kInvalidArgument);
  auto missing = MountAt(Mount{"fuse3.strata-no-such-program", "overlay", {}}, target_);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message().find("program strata-no-such-program not found"), std::string::npos)
      << missing.error().message();
}

}  // namespace
}  // namespace strata::snapshotter
