// Linux images for VM isolation, pulled from a real registry: each layer's layer.erofs
// holds exactly its snapshot dir (every entry kind, odd names, hard links, devices,
// whiteouts, opaque dirs, owners, xattrs, mtimes), and `strata mount --isolation vm` —
// loop-mounted layer images + scratch ext4 + overlay — shows the same tree as the overlay
// driver, read-only and writable; umount leaves no mount, loop device or snapshot behind.
#include <fstream>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include "base/file.h"
#include "base/mounts.h"
#include "base/subprocess.h"
#include "images/collect_garbage.h"
#include "images/commit.h"
#include "images/image_mount.h"
#include "snapshotter/erofs_layer.h"
#include "snapshotter/loop_mount.h"
#include "snapshotter/vm_layout.h"
#include "tests/images/unpack_fixture.h"
#include "tests/support/assertions.h"
#include "tests/support/root.h"
#include "tests/support/every_kind_image.h"
#include "tests/support/registry_fixture.h"
#include "tests/support/tree_compare.h"

namespace strata::images {
namespace {

namespace fs = std::filesystem;
using test_support::LoopsBackedUnder;
using test_support::TreeCompareOptions;
using test_support::TreeEntry;

class VmMountTest : public UnpackFixture {
 protected:
  VmMountTest() : UnpackFixture("strata-vm-mount") {}

  void SetUpStrata() override {
    if (!FindInPath("mke2fs")) GTEST_SKIP() << "needs e2fsprogs";
    MakeFastResolver(4);
    OpenRoot(strata_, "store");
  }

  void TearDown() override {
    if (root_) {
      EXPECT_EQ(LoopsBackedUnder(root_->path()), std::vector<std::string>{});
    }
  }

  // Pushes and pulls the every-kind image; returns its name.
  std::string PullEveryKind() {
    auto every_kind = test_support::BuildEveryKindImage();
    EXPECT_TRUE(every_kind) << every_kind.error().ToString();
    if (!every_kind) return "";
    test_support::TestHttpClient http(registry_->ClientOptions());
    auto pushed = test_support::PushImage(http, registry_->url(), "every/kind", "1", every_kind->image);
    EXPECT_TRUE(pushed) << pushed.error().ToString();
    const std::string name = registry_->host() + "/every/kind:1";
    auto pulled = PullInto(strata_, name);
    EXPECT_TRUE(pulled) << pulled.error().ToString();
    return name;
  }

  Result<MountedImage> Mount(MountGuard& guard, const std::string& name, const std::string& dir, bool writable,
                             Isolation isolation) {
    const fs::path target = root_->path() / dir;
    fs::create_directories(target);
    auto mounted = MountImage(*strata_.store, *strata_.snapshots, name, target,
                              {.writable = writable, .isolation = isolation, .scratch_bytes = uint64_t{256} << 20});
    if (mounted) {
      guard.snapshots = strata_.snapshots.get();
      guard.dir = target;
    }
    return mounted;
  }

  StrataRoot strata_;
};

TEST_F(VmMountTest, EachLayerImageEqualsItsLayerDirExactly) {
  const std::string name = PullEveryKind();
  ASSERT_FALSE(name.empty());
  MountGuard view_guard;
  ASSERT_OK_AND_ASSIGN(MountedImage mounted, Mount(view_guard, name, "vm-view", false, Isolation::kVm));
  ASSERT_EQ(mounted.chain_ids.size(), 3u);
  const TreeCompareOptions exact{.compare_mtimes = true, .compare_dir_mtimes = true,
                                 .ignore_xattr_prefixes = {"security.selinux"}};
  size_t whiteouts = 0, opaque = 0;
  for (const Digest& chain_id : mounted.chain_ids) {
    ASSERT_OK_AND_ASSIGN(snapshotter::SnapshotRecord record, strata_.snapshots->records().Get(chain_id.ToString()));
    const fs::path dir = strata_.snapshots->layout().SnapshotDir(record.id);
    ASSERT_TRUE(fs::exists(dir / "layer.erofs")) << "the vm mount builds every layer's image";
    const fs::path at = root_->path() / ("layer-" + std::to_string(record.id));
    fs::create_directories(at);
    ASSERT_OK(snapshotter::MountLoopImage(dir / "layer.erofs", "erofs", at));
    EXPECT_TRUE(test_support::TreesEqual(dir / "fs", at, exact)) << chain_id.ToString();
    auto entries = test_support::ScanTree(at, exact);
    ASSERT_OK(snapshotter::UnmountAt(at));
    ASSERT_OK(entries);
    for (const TreeEntry& entry : *entries) {
      whiteouts += entry.type == 'c' && entry.rdev_major == 0 && entry.rdev_minor == 0;
      opaque += entry.xattrs.contains("trusted.overlay.opaque");
    }
  }
  // The comparison is only as good as what the layers hold.
  EXPECT_GT(whiteouts, 0u);
  EXPECT_GT(opaque, 0u);
}

TEST_F(VmMountTest, VmCompositionShowsWhatTheOverlayDriverShows) {
  const std::string name = PullEveryKind();
  ASSERT_FALSE(name.empty());
  const TreeCompareOptions options{.compare_mtimes = true, .compare_dir_mtimes = true};
  {
    MountGuard overlay_guard, vm_guard;
    ASSERT_OK(Mount(overlay_guard, name, "overlay-ro", false, Isolation::kProcess));
    ASSERT_OK_AND_ASSIGN(MountedImage vm, Mount(vm_guard, name, "vm-ro", false, Isolation::kVm));
    EXPECT_EQ(vm.mounts.size(), 4u);  // three layer images + the read-only overlay
    EXPECT_TRUE(test_support::TreesEqual(root_->path() / "overlay-ro", root_->path() / "vm-ro", options));
    ASSERT_OK_AND_ASSIGN(auto entries, test_support::ScanTree(root_->path() / "vm-ro", options));
    ASSERT_NO_FATAL_FAILURE(test_support::ExpectEveryKindCases(entries));
  }
  {
    MountGuard overlay_guard, vm_guard;
    ASSERT_OK(Mount(overlay_guard, name, "overlay-rw", true, Isolation::kProcess));
    ASSERT_OK_AND_ASSIGN(MountedImage vm, Mount(vm_guard, name, "vm-rw", true, Isolation::kVm));
    ASSERT_EQ(vm.mounts.size(), 5u);  // + the scratch disk
    EXPECT_EQ(vm.mounts[3].type, "ext4");
    // The roots differ (the upper dir's own mtime); everything beneath must not.
    ASSERT_OK_AND_ASSIGN(auto overlay_entries, test_support::ScanTree(root_->path() / "overlay-rw", options));
    ASSERT_OK_AND_ASSIGN(auto vm_entries, test_support::ScanTree(root_->path() / "vm-rw", options));
    vm_entries.front().mtime_ns = overlay_entries.front().mtime_ns;
    const auto differences = test_support::CompareEntries(overlay_entries, vm_entries, options);
    EXPECT_TRUE(differences.empty()) << fmt::format("{}", fmt::join(differences, "\n"));
    std::ofstream(root_->path() / "vm-rw" / "written") << "through the vm composition\n";
    EXPECT_TRUE(fs::exists(root_->path() / "vm-rw" / "written"));
    // `strata commit` of the vm container: its changes live in the scratch disk.
    ASSERT_OK_AND_ASSIGN(CommitResult committed, CommitContainer(*strata_.store, *strata_.snapshots,
                                                                 MountKey(root_->path() / "vm-rw"), "committed:vm"));
    EXPECT_EQ(committed.entries, 1u);
  }
  {
    MountGuard guard;
    ASSERT_OK(Mount(guard, "committed:vm", "committed", false, Isolation::kProcess));
    EXPECT_EQ(ReadFile(root_->path() / "committed" / "written").value_or("missing"), "through the vm composition\n");
  }
  ASSERT_OK(strata_.store->images().Delete("committed:vm"));
  ASSERT_OK(CollectGarbage(*strata_.store, *strata_.snapshots, /*dry_run=*/false));
  // Both guards unmounted: no mount under the root, only the three layer snapshots left.
  ASSERT_OK_AND_ASSIGN(auto points, MountPointsAtOrBeneath(root_->path()));
  EXPECT_TRUE(points.empty()) << points.front().string();
  EXPECT_EQ(Snapshots(strata_).size(), 3u);
  size_t dirs = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(root_->path() / "store" / "snapshots")) ++dirs;
  EXPECT_EQ(dirs, 3u);
}

}  // namespace
}  // namespace strata::images
