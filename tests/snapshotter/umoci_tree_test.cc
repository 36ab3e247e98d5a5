// Our layer apply + overlay snapshotter against umoci, an independent OCI unpacker: the
// same three-layer image (every entry kind, whiteouts, an opaque dir, type replacements,
// hard links) applied layer by layer into snapshots and viewed through overlayfs must give
// the same tree as `umoci unpack`.
#include <algorithm>

#include <gtest/gtest.h>

#include "archive/apply.h"
#include "base/io.h"
#include "snapshotter/mount.h"
#include "snapshotter/overlay_snapshotter.h"
#include "store/meta_db.h"
#include "tests/support/assertions.h"
#include "tests/support/every_kind_image.h"
#include "tests/support/image_builder.h"
#include "tests/support/oci_layout.h"
#include "tests/support/root.h"
#include "tests/support/tree_compare.h"

namespace strata::snapshotter {
namespace {

namespace fs = std::filesystem;
using test_support::kEveryKindBaseMtime;
using test_support::kEveryKindMiddleMtime;
using test_support::kEveryKindTopMtime;

// Unmounts on scope exit, whatever happened in between.
struct UnmountGuard {
  fs::path target;
  ~UnmountGuard() {
    if (auto status = UnmountAt(target); !status) ADD_FAILURE() << status.error().ToString();
  }
};

TEST(UmociTreeTest, OverlayViewOfAppliedLayersMatchesUmociUnpack) {
  STRATA_REQUIRE_ROOT();
  if (!fs::exists(test_support::kUmociPath)) {
    GTEST_SKIP() << test_support::kUmociPath << " not found: install umoci (apt-get install umoci) to compare against it";
  }
  ASSERT_OK_AND_ASSIGN(auto root, test_support::TempRoot::Create("strata-umoci-tree"));

  ASSERT_OK_AND_ASSIGN(auto every_kind, test_support::BuildEveryKindImage());
  const std::vector<test_support::Layer>& layers = every_kind.layers;
  const test_support::BuiltImage& image = every_kind.image;

  // Theirs.
  ASSERT_OK(test_support::WriteOciLayout(image, root / "layout", "latest"));
  ASSERT_OK_AND_ASSIGN(fs::path umoci_rootfs, test_support::UmociUnpack(root / "layout", "latest", root / "bundle"));

  // Ours: one snapshot per layer, applied in overlay form, committed as a chain.
  ASSERT_OK_AND_ASSIGN(auto db, store::MetaDB::Open(root / "meta"));
  ASSERT_OK_AND_ASSIGN(auto snapshotter, OverlaySnapshotter::Open(root.path(), *db));
  std::string parent;
  for (size_t i = 0; i < layers.size(); ++i) {
    std::string key = "extract-" + std::to_string(i), name = "layer-" + std::to_string(i);
    ASSERT_OK(snapshotter->Prepare(key, parent, {}));
    ASSERT_OK_AND_ASSIGN(SnapshotRecord record, snapshotter->records().Get(key));
    StringViewReader tar(layers[i].tar);
    auto applied = archive::ApplyLayer(tar, snapshotter->layout().FsDir(record.id));
    ASSERT_TRUE(applied) << "layer " << i << ": " << applied.error().ToString();
    ASSERT_OK(snapshotter->Commit(name, key, {}));
    parent = name;
  }
  ASSERT_OK_AND_ASSIGN(auto view, snapshotter->View("view", parent, {}));
  ASSERT_EQ(view.size(), 1u);
  const fs::path merged = root / "merged";
  fs::create_directories(merged);
  ASSERT_OK(MountAt(view[0], merged));
  UnmountGuard unmount{merged};

  // umoci keeps the mtimes of every entry, directories included (it restores a parent's
  // mtime after writing into it), and so do apply and overlayfs: compare them all, except
  // the root's (our merged root shows the top snapshot's fs dir as Prepare made it, now).
  std::vector<test_support::TreeEntry> entries;
  ASSERT_NO_FATAL_FAILURE(test_support::ExpectSameTreeAsUmoci(merged, umoci_rootfs, "overlay view", entries));

  // The comparison is only as good as what the trees hold: check the cases really are there,
  // the image's common ones and these.
  ASSERT_NO_FATAL_FAILURE(test_support::ExpectEveryKindCases(entries));
  auto find = [&](const std::string& path) -> const test_support::TreeEntry* {
    auto it = std::ranges::find(entries, path, &test_support::TreeEntry::path);
    return it == entries.end() ? nullptr : &*it;
  };
  EXPECT_EQ(find("usr/bin/tool-b")->hardlink_group, "");
  EXPECT_EQ(find("usr/lib/libx.so.1")->hardlink_group, "usr/lib/libx.so");
  EXPECT_EQ(find("bin/sh")->symlink_target, "/bin/busybox");
  EXPECT_EQ(find("etc")->mtime_ns, kEveryKindMiddleMtime * 1'000'000'000);
  EXPECT_EQ(find("usr/bin/tool")->mtime_ns, kEveryKindBaseMtime * 1'000'000'000);
  EXPECT_EQ(find("file2dir")->mtime_ns, kEveryKindTopMtime * 1'000'000'000);
}

}  // namespace
}  // namespace strata::snapshotter
