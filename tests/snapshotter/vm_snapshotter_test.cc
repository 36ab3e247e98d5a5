// The vm driver (UnionMount::kVm) as containerd's proxy would drive the strata-vm
// personality: layer unpacks get overlay mounts, containers get per-layer EROFS images + a
// scratch ext4 disk + the composition; the images hold their layer dirs exactly (whiteouts
// and opaque dirs included); the composed container, written and committed, diffs exactly
// like the same changes made through the overlay driver. Needs root (loop devices, mounts).
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include "archive/diff.h"
#include "archive/tar_reader.h"
#include "base/digest.h"
#include "base/io.h"
#include "base/mounts.h"
#include "base/subprocess.h"
#include "snapshotter/erofs_layer.h"
#include "snapshotter/loop_mount.h"
#include "snapshotter/overlay_snapshotter.h"
#include "snapshotter/scratch_disk.h"
#include "snapshotter/vm_layout.h"
#include "tests/support/assertions.h"
#include "tests/support/root.h"
#include "tests/support/tree_compare.h"

namespace strata::snapshotter {
namespace {

namespace fs = std::filesystem;
using test_support::LoopsBackedUnder;

void WriteFile(const fs::path& path, std::string_view text) { std::ofstream(path) << text; }

// One line per tar entry: everything a layer says except mtimes (the two containers were
// written at different moments).
Result<std::vector<std::string>> TarListing(const std::string& tar) {
  StringViewReader input(tar);
  archive::TarReader reader(input);
  std::vector<std::string> lines;
  while (true) {
    STRATA_ASSIGN_OR_RETURN(auto entry, reader.Next());
    if (!entry) break;
    std::string content;
    char buffer[65536];
    while (true) {
      STRATA_ASSIGN_OR_RETURN(size_t n, reader.ReadContent(buffer));
      if (n == 0) break;
      content.append(buffer, n);
    }
    lines.push_back(fmt::format("{} type={} mode={:o} owner={}:{} size={} sha={} link={} dev={}:{} xattrs={}",
                                entry->name, static_cast<int>(entry->type), entry->mode, entry->uid, entry->gid,
                                entry->size, Digest::Of(content).hex().substr(0, 16), entry->linkname,
                                entry->devmajor, entry->devminor, fmt::join(entry->xattrs, ",")));
  }
  return lines;
}

// The same container changes, whichever composition `root` is.
void MakeContainerChanges(const fs::path& root) {
  WriteFile(root / "new.txt", "new\n");
  WriteFile(root / "keep.txt", "keep, changed\n");
  fs::remove(root / "gone.txt");
  fs::remove_all(root / "d");
  fs::create_directories(root / "d");
  WriteFile(root / "d/fresh", "fresh\n");
  ::chmod((root / "keep.txt").c_str(), 0600);
  ASSERT_EQ(::chown((root / "owned").c_str(), 1000, 1000), 0);
  ASSERT_EQ(::setxattr((root / "new.txt").c_str(), "user.note", "v", 1, 0), 0);
  fs::create_symlink("new.txt", root / "link");
  WriteFile(root / "h1", "linked\n");
  fs::create_hard_link(root / "h1", root / "h2");
  fs::create_directories(root / "a/b/c");
  WriteFile(root / "a/b/c/deep", "deep\n");
  ASSERT_EQ(::mkfifo((root / "fifo").c_str(), 0640), 0);
}

class VmSnapshotterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    STRATA_REQUIRE_ROOT();
    if (!FindInPath("mke2fs")) GTEST_SKIP() << "needs e2fsprogs";
    auto root = test_support::TempRoot::Create("strata-vm-sn");
    ASSERT_TRUE(root) << root.error().ToString();
    root_.emplace(std::move(*root));
    ASSERT_OK_AND_ASSIGN(db_, store::MetaDB::Open(*root_ / "meta"));
    ASSERT_OK_AND_ASSIGN(vm_, OverlaySnapshotter::OpenIn(*root_ / "vm", *db_, "proxy/strata-vm", UnionMount::kVm));
    ASSERT_NO_FATAL_FAILURE(MakeLayers());
  }

  void TearDown() override {
    // Whatever a failed test left mounted goes, then the check that no loop device stays.
    if (root_) {
      if (auto points = MountPointsAtOrBeneath(root_->path())) {
        for (const fs::path& point : *points) (void)UnmountAt(point);
      }
      EXPECT_EQ(LoopsBackedUnder(root_->path()), std::vector<std::string>{});
    }
    vm_.reset();
    db_.reset();
  }

  fs::path Dir(const std::string& name) {
    fs::create_directories(*root_ / name);
    return *root_ / name;
  }

  // Two layers unpacked the way containerd's unpacker does it through the personality:
  // extract snapshots get overlay mounts; the second deletes a file and replaces a dir.
  void MakeLayers() {
    ASSERT_OK_AND_ASSIGN(auto base, vm_->Prepare("default/1/extract-1 sha256:l1", "", {}));
    ASSERT_EQ(base.size(), 1u);
    EXPECT_EQ(base[0].type, "bind");
    const fs::path target = Dir("unpack");
    ASSERT_OK(MountAt(base[0], target));
    WriteFile(target / "keep.txt", "keep\n");
    WriteFile(target / "gone.txt", "gone\n");
    WriteFile(target / "owned", "owned\n");
    fs::create_directories(target / "d/y");
    WriteFile(target / "d/x", "x\n");
    WriteFile(target / "d/y/z", "z\n");
    fs::create_directories(target / "sub");
    WriteFile(target / "sub/file", "file\n");
    ASSERT_OK(UnmountAt(target));
    ASSERT_OK(vm_->Commit("layer-1", "default/1/extract-1 sha256:l1", {}));

    ASSERT_OK_AND_ASSIGN(auto child, vm_->Prepare("default/2/extract-2 sha256:l2", "layer-1",
                                                  {{std::string(kLabelUnpackTarget), "layer-2"}}));
    ASSERT_EQ(child.size(), 1u);
    EXPECT_EQ(child[0].type, "overlay");
    ASSERT_OK(MountAt(child[0], target));
    fs::remove(target / "sub/file");
    fs::remove_all(target / "d/y");
    fs::create_directories(target / "d/y");
    WriteFile(target / "d/y/new", "new\n");
    ASSERT_OK(UnmountAt(target));
    ASSERT_OK(vm_->Commit("layer-2", "default/2/extract-2 sha256:l2", {}));
  }

  fs::path SnapshotDir(const std::string& key) {
    auto record = vm_->records().Get(key);
    EXPECT_TRUE(record) << record.error().ToString();
    return record ? vm_->layout().SnapshotDir(record->id) : fs::path();
  }

  std::optional<test_support::TempRoot> root_;
  std::unique_ptr<store::MetaDB> db_;
  std::unique_ptr<OverlaySnapshotter> vm_;
};

TEST_F(VmSnapshotterTest, ContainerMountsAreLayerImagesScratchDiskAndTemplatedOverlay) {
  ASSERT_OK_AND_ASSIGN(auto mounts, vm_->Prepare("default/3/container", "layer-2",
                                                 {{std::string(kLabelScratchSize), "64M"}}));
  const fs::path l1 = SnapshotDir("layer-1"), l2 = SnapshotDir("layer-2"), c = SnapshotDir("default/3/container");
  const std::vector<Mount> expected = {
      {.type = "erofs", .source = (l2 / "layer.erofs").string(), .options = {"ro", "loop"}},
      {.type = "erofs", .source = (l1 / "layer.erofs").string(), .options = {"ro", "loop"}},
      {.type = "ext4", .source = (c / "scratch.img").string(), .options = {"rw", "loop"}},
      {.type = "format/overlay",
       .source = "overlay",
       .options = {"upperdir={{ mount 2 }}/upper", "workdir={{ mount 2 }}/work",
                   "lowerdir={{ mount 0 }}:{{ mount 1 }}"}},
  };
  EXPECT_EQ(mounts, expected);
  EXPECT_EQ(fs::file_size(c / "scratch.img"), uint64_t{64} << 20);
  struct stat st {};
  ASSERT_EQ(::stat((c / "scratch.img").c_str(), &st), 0);
  EXPECT_LT(st.st_blocks * 512, 16 << 20) << "scratch disk should be sparse";
  ASSERT_OK_AND_ASSIGN(auto again, vm_->Mounts("default/3/container"));
  EXPECT_EQ(again, expected);

  ASSERT_OK_AND_ASSIGN(auto view, vm_->View("default/4/view", "layer-2", {}));
  ASSERT_EQ(view.size(), 3u);
  EXPECT_EQ(view[2].type, "format/overlay");
  EXPECT_EQ(view[2].options, (std::vector<std::string>{"ro", "lowerdir={{ mount 0 }}:{{ mount 1 }}"}));
  ASSERT_OK_AND_ASSIGN(auto one, vm_->View("default/5/view", "layer-1", {}));
  EXPECT_EQ(one, (std::vector<Mount>{expected[1]}));
  ASSERT_OK_AND_ASSIGN(auto bare, vm_->Prepare("default/6/bare", "", {{std::string(kLabelScratchSize), "32M"}}));
  ASSERT_EQ(bare.size(), 2u);
  EXPECT_EQ(bare[1], (Mount{.type = "format/bind", .source = "{{ mount 0 }}/upper", .options = {"rw", "rbind"}}));
  auto bad = vm_->Prepare("default/7/bad", "layer-2", {{std::string(kLabelScratchSize), "lots"}});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_FALSE(vm_->Stat("default/7/bad"));

  // Removing the snapshots and cleaning up takes their images and disks with them.
  for (const char* key : {"default/3/container", "default/4/view", "default/5/view", "default/6/bare"}) {
    ASSERT_OK(vm_->Remove(key));
  }
  ASSERT_OK(vm_->Remove("layer-2"));
  ASSERT_OK(vm_->Cleanup());
  EXPECT_FALSE(fs::exists(l2));
  EXPECT_FALSE(fs::exists(c));
  EXPECT_TRUE(fs::exists(l1 / "layer.erofs"));
}

TEST_F(VmSnapshotterTest, LayerImagesHoldTheirLayerDirsExactlyWithWhiteoutsAndOpaqueDirs) {
  ASSERT_OK(vm_->View("default/3/view", "layer-2", {}));  // builds both images
  test_support::TreeCompareOptions exact{.compare_mtimes = true, .compare_dir_mtimes = true,
                                         .ignore_xattr_prefixes = {"security.selinux"}};
  for (const std::string layer : {"layer-1", "layer-2"}) {
    const fs::path dir = SnapshotDir(layer);
    const fs::path at = Dir("image-" + layer);
    ASSERT_OK(MountLoopImage(dir / "layer.erofs", "erofs", at));
    EXPECT_TRUE(test_support::TreesEqual(dir / "fs", at, exact)) << layer;
    if (layer == "layer-2") {
      ASSERT_OK_AND_ASSIGN(auto entries, test_support::ScanTree(at, exact));
      auto find = [&](const std::string& path) { return std::ranges::find(entries, path, &test_support::TreeEntry::path); };
      ASSERT_NE(find("sub/file"), entries.end());
      EXPECT_EQ(find("sub/file")->type, 'c');
      EXPECT_EQ(find("sub/file")->rdev_major, 0u);
      EXPECT_EQ(find("sub/file")->rdev_minor, 0u);
      ASSERT_NE(find("d/y"), entries.end());
      EXPECT_EQ(find("d/y")->xattrs["trusted.overlay.opaque"], "y");
    }
    ASSERT_OK(UnmountAt(at));
  }
  // Built once, then kept: a second call returns the same file.
  struct stat before {}, after {};
  ASSERT_EQ(::stat((SnapshotDir("layer-1") / "layer.erofs").c_str(), &before), 0);
  ASSERT_OK(EnsureLayerImage(SnapshotDir("layer-1"), "layer-1"));
  ASSERT_EQ(::stat((SnapshotDir("layer-1") / "layer.erofs").c_str(), &after), 0);
  EXPECT_EQ(before.st_ino, after.st_ino);
}

TEST_F(VmSnapshotterTest, ConcurrentRequestsForOneLayerBuildItOnce) {
  const fs::path dir = SnapshotDir("layer-2");
  std::vector<std::thread> threads;
  std::vector<Result<fs::path>> results(6);
  for (size_t i = 0; i < results.size(); ++i) {
    threads.emplace_back([&, i] { results[i] = EnsureLayerImage(dir, "layer-2"); });
  }
  for (auto& thread : threads) thread.join();
  for (const auto& result : results) ASSERT_OK(result);
  // Exactly one file, no temp leftovers.
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename());
  std::ranges::sort(names);
  EXPECT_EQ(names, (std::vector<std::string>{"fs", "layer.erofs", "work"}));
}

TEST_F(VmSnapshotterTest, CommittedVmContainerDiffsLikeTheSameChangesThroughOverlay) {
  // Through the vm composition (as the host mounts it), then Commit.
  ASSERT_OK_AND_ASSIGN(auto vm_mounts, vm_->Prepare("default/3/container", "layer-2",
                                                    {{std::string(kLabelScratchSize), "64M"}}));
  const fs::path staging = SnapshotDir("default/3/container") / kVmStagingDirName;
  const fs::path vm_root = Dir("vm-root");
  ASSERT_OK(MountVmComposition(vm_mounts, staging, vm_root));
  EXPECT_EQ(fs::file_size(vm_root / "keep.txt"), 5u);
  EXPECT_FALSE(fs::exists(vm_root / "sub/file"));
  EXPECT_FALSE(fs::exists(vm_root / "d/y/z"));
  ASSERT_NO_FATAL_FAILURE(MakeContainerChanges(vm_root));
  ASSERT_OK(UnmountAt(vm_root));
  ASSERT_OK(UnmountVmStaging(staging));  // the VM stopped: its disks are detached
  EXPECT_FALSE(fs::exists(staging));
  ASSERT_OK(vm_->Commit("vm-committed", "default/3/container", {}));  // mounts the scratch disk itself

  // The same changes through kernel overlayfs over the same layers (an extract-style key
  // gets the overlay driver's mounts).
  ASSERT_OK_AND_ASSIGN(auto ov_mounts, vm_->Prepare("default/4/extract-overlay", "layer-2", {}));
  ASSERT_EQ(ov_mounts.size(), 1u);
  const fs::path ov_root = Dir("overlay-root");
  ASSERT_OK(MountAt(ov_mounts[0], ov_root));
  ASSERT_NO_FATAL_FAILURE(MakeContainerChanges(ov_root));
  ASSERT_OK(UnmountAt(ov_root));

  auto diff = [&](const std::string& key) -> Result<std::vector<std::string>> {
    std::string tar;
    STRATA_RETURN_IF_ERROR(archive::WriteOverlayDiff(vm_->layout().FsDir(vm_->records().Get(key)->id),
                                                     [&](std::string_view bytes) -> Status {
                                                       tar.append(bytes);
                                                       return {};
                                                     }));
    return TarListing(tar);
  };
  ASSERT_OK_AND_ASSIGN(auto from_vm, diff("vm-committed"));
  ASSERT_OK_AND_ASSIGN(auto from_overlay, diff("default/4/extract-overlay"));
  EXPECT_EQ(from_vm, from_overlay);
  EXPECT_GE(from_vm.size(), 14u) << fmt::format("{}", fmt::join(from_vm, "\n"));
  // The scratch disk went with the commit; the committed layer is an ordinary one.
  EXPECT_FALSE(fs::exists(SnapshotDir("vm-committed") / kScratchImageName));
  ASSERT_OK_AND_ASSIGN(SnapshotInfo info, vm_->Stat("vm-committed"));
  EXPECT_EQ(info.parent, "layer-2");
}

TEST(ScratchDiskTest, SizesFromLabelsAndRefusals) {
  EXPECT_EQ(ScratchBytesFromLabels({}).value(), kDefaultScratchDiskBytes);
  EXPECT_EQ(ScratchBytesFromLabels({{std::string(kLabelScratchSize), "1G"}}).value(), uint64_t{1} << 30);
  EXPECT_EQ(ScratchBytesFromLabels({{std::string(kLabelScratchSize), "512MiB"}}).value(), uint64_t{512} << 20);
  EXPECT_EQ(ScratchBytesFromLabels({{std::string(kLabelScratchSize), "1048576"}}).value(), uint64_t{1} << 20);
  EXPECT_FALSE(ScratchBytesFromLabels({{std::string(kLabelScratchSize), "1X"}}));
  EXPECT_FALSE(ScratchBytesFromLabels({{std::string(kLabelScratchSize), "G"}}));
  EXPECT_FALSE(CreateScratchDisk("/nonexistent/scratch.img", 4096));
  EXPECT_TRUE(IsLayerUnpack("default/12/extract-123-4 sha256:ab", {}));
  EXPECT_TRUE(IsLayerUnpack("extract-1 sha256:ab", {}));
  EXPECT_TRUE(IsLayerUnpack("k", {{std::string(kLabelUnpackTarget), "sha256:ab"}}));
  EXPECT_FALSE(IsLayerUnpack("default/12/container-extract-x", {}));
}

}  // namespace
}  // namespace strata::snapshotter
