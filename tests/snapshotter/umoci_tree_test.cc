// Our layer apply + overlay snapshotter against umoci, an independent OCI unpacker: the
// same three-layer image (every entry kind, whiteouts, an opaque dir, type replacements,
// hard links) applied layer by layer into snapshots and viewed through overlayfs must give
// the same tree as `umoci unpack`.
#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include "archive/apply.h"
#include "base/io.h"
#include "snapshotter/mount.h"
#include "snapshotter/overlay_snapshotter.h"
#include "store/meta_db.h"
#include "tests/support/assertions.h"
#include "tests/support/image_builder.h"
#include "tests/support/oci_layout.h"
#include "tests/support/root.h"
#include "tests/support/tree_compare.h"

namespace strata::snapshotter {
namespace {

namespace fs = std::filesystem;
using test_support::EntryAttrs;
using test_support::LayerBuilder;

// Each layer stamps its own mtime, so a view showing the wrong layer's entry shows in mtimes too.
constexpr int64_t kBaseMtime = test_support::kDefaultEntryMtime;
constexpr int64_t kMiddleMtime = kBaseMtime + 86'400;
constexpr int64_t kTopMtime = kBaseMtime + 2 * 86'400;

EntryAttrs Attrs(uint32_t mode, uint64_t uid = 0, uint64_t gid = 0, std::map<std::string, std::string> xattrs = {},
                 int64_t mtime = kBaseMtime) {
  return EntryAttrs{.mode = mode, .uid = uid, .gid = gid, .mtime = {mtime, 0}, .xattrs = std::move(xattrs)};
}
EntryAttrs Middle(uint32_t mode, uint64_t uid = 0, uint64_t gid = 0, std::map<std::string, std::string> xattrs = {}) {
  return Attrs(mode, uid, gid, std::move(xattrs), kMiddleMtime);
}
EntryAttrs Top(uint32_t mode, uint64_t uid = 0, uint64_t gid = 0) { return Attrs(mode, uid, gid, {}, kTopMtime); }

// Every entry kind and the odd names, plus the paths the later layers change.
LayerBuilder BaseLayer() {
  const std::string long_name(120, 'n');
  LayerBuilder layer;
  layer.Dir("bin")
      .File("bin/busybox", "#!busybox\n", Attrs(0755))
      .File("bin/su", "su\n", Attrs(04755))
      .File("bin/wall", "wall\n", Attrs(02755, 0, 5))
      .Symlink("bin/sh", "busybox")  // relative
      .Dir("etc")
      .File("etc/passwd", "root:x:0:0::/root:/bin/sh\n")
      .File("etc/shadow", "root:*::0:::::\n", Attrs(0600))
      .File("etc/motd", "to be whited out\n")
      .File("etc/empty", "")
      .Symlink("etc/localtime", "/usr/share/zoneinfo/UTC")  // absolute
      .Dir("tmp", Attrs(01777))
      .Dir("home")
      .Dir("home/user", Attrs(0700, 1000, 1000))
      .Dir("home/user/shared", Attrs(02775, 1000, 100, {{"user.purpose", "team"}}))
      .File("home/user/shared/notes.txt", "notes\n", Attrs(0640, 1000, 100))
      .Dir("usr")
      .Dir("usr/bin")
      .File("usr/bin/tool", "tool v1\n", Attrs(0755))
      .Hardlink("usr/bin/tool-a", "usr/bin/tool")
      .Hardlink("usr/bin/tool-b", "usr/bin/tool")
      .Dir("run")
      .Fifo("run/initctl", Attrs(0600))
      .Dir("dev")
      .CharDevice("dev/null", 1, 3, Attrs(0666))
      .BlockDevice("dev/loop0", 7, 0, Attrs(0660, 0, 6))
      .Dir("attrs")
      .File("attrs/user-x", "u\n", Attrs(0644, 0, 0, {{"user.comment", "hello"}, {"user.bin", std::string("\0\x01\xff", 3)}}))
      .File("attrs/trusted-x", "t\n", Attrs(0644, 0, 0, {{"trusted.strata-test", "secret"}}))
      .Dir("names")
      .File("names/" + long_name, "long\n")
      .File("names/h\xc3\xa9llo-\xe4\xb8\x96\xe7\x95\x8c.txt", "non-ascii\n")
      .Dir("data")
      .File("data/big.bin", test_support::RandomBytes(1 << 20, 7))
      .Dir("old")
      .Dir("old/nested")
      .File("old/nested/file", "gone with old/\n")
      .Dir("opaque")
      .File("opaque/lower-a", "hidden by opaque\n")
      .Dir("opaque/lower-dir")
      .Dir("replaced")
      .File("replaced/child", "gone when replaced/ becomes a file\n")
      .File("file2dir", "becomes a dir\n");
  return layer;
}

// Modifies, replaces, whiteouts, makes a dir opaque.
LayerBuilder MiddleLayer() {
  LayerBuilder layer;
  layer.Dir("etc", Middle(0755))
      .File("etc/passwd", "root:x:0:0::/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n", Middle(0644))
      .File("etc/shadow", "root:!::0:::::\n", Middle(0640, 0, 42))
      .Whiteout("etc/motd")
      .File("etc/new.conf", "added in layer 2\n", Middle(0644))
      .Dir("bin", Middle(0755))
      .Symlink("bin/sh", "/bin/busybox", Middle(0777))
      .Whiteout("old")
      .Dir("opaque", Middle(0750, 0, 0, {{"user.layer", "2"}}))
      .OpaqueDir("opaque")
      .File("opaque/upper-b", "visible\n", Middle(0644))
      .Dir("usr", Middle(0755))
      .Dir("usr/bin", Middle(0755))
      .File("usr/bin/tool-b", "tool-b split off\n", Middle(0755))  // leaves tool + tool-a linked
      .Dir("home", Middle(0755))
      .Dir("home/user", Middle(0700, 1000, 1000))
      .File("home/user/.profile", "export A=1\n", Middle(0600, 1000, 1000));
  return layer;
}

// Type replacements both ways and a new hard-link group.
LayerBuilder TopLayer() {
  LayerBuilder layer;
  layer.File("replaced", "now a file\n", Top(0600))
      .Dir("file2dir", Top(0711))
      .File("file2dir/inner", "inside\n", Top(0644))
      .Dir("usr", Top(0755))
      .Dir("usr/lib", Top(0755))
      .File("usr/lib/libx.so.1", "ELF-ish\n", Top(0755))
      .Hardlink("usr/lib/libx.so", "usr/lib/libx.so.1", Top(0755));
  return layer;
}

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

  std::vector<test_support::Layer> layers;
  for (const LayerBuilder& builder : {BaseLayer(), MiddleLayer(), TopLayer()}) {
    ASSERT_OK_AND_ASSIGN(auto layer, builder.Build(test_support::Compression::kGzip));
    layers.push_back(std::move(layer));
  }
  test_support::ImageBuilder image_builder;
  for (const auto& layer : layers) image_builder.AddLayer(layer);
  ASSERT_OK_AND_ASSIGN(auto image, image_builder.Build());

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
  // the root's. No layer names "./", so the image does not define it: umoci leaves rootfs/
  // at mtime 0, our merged root shows the top snapshot's fs dir as Prepare made it (now).
  test_support::TreeCompareOptions options{.compare_mtimes = true, .compare_dir_mtimes = true};
  ASSERT_OK_AND_ASSIGN(auto entries, test_support::ScanTree(merged, options));
  ASSERT_OK_AND_ASSIGN(auto umoci_entries, test_support::ScanTree(umoci_rootfs, options));
  ASSERT_EQ(entries.at(0).path, ".");
  ASSERT_EQ(umoci_entries.at(0).path, ".");
  entries[0].mtime_ns = umoci_entries[0].mtime_ns;
  std::vector<std::string> differences = test_support::CompareEntries(entries, umoci_entries, options);
  EXPECT_TRUE(differences.empty()) << "ours (A, overlay view) vs umoci (B):\n  "
                                   << fmt::format("{}", fmt::join(differences, "\n  "));

  // The comparison is only as good as what the trees hold: check the cases really are there.
  auto find = [&](const std::string& path) -> const test_support::TreeEntry* {
    auto it = std::ranges::find(entries, path, &test_support::TreeEntry::path);
    return it == entries.end() ? nullptr : &*it;
  };
  EXPECT_EQ(find("etc/motd"), nullptr);
  EXPECT_EQ(find("old"), nullptr);
  EXPECT_EQ(find("opaque/lower-a"), nullptr);
  EXPECT_NE(find("opaque/upper-b"), nullptr);
  ASSERT_NE(find("replaced"), nullptr);
  EXPECT_EQ(find("replaced")->type, 'f');
  ASSERT_NE(find("file2dir"), nullptr);
  EXPECT_EQ(find("file2dir")->type, 'd');
  ASSERT_NE(find("usr/bin/tool-a"), nullptr);
  EXPECT_EQ(find("usr/bin/tool-a")->hardlink_group, "usr/bin/tool");
  EXPECT_EQ(find("usr/bin/tool-b")->hardlink_group, "");
  EXPECT_EQ(find("usr/lib/libx.so.1")->hardlink_group, "usr/lib/libx.so");
  ASSERT_NE(find("dev/loop0"), nullptr);
  EXPECT_EQ(find("dev/loop0")->type, 'b');
  EXPECT_EQ(find("bin/su")->mode, 04755u);
  EXPECT_EQ(find("bin/sh")->symlink_target, "/bin/busybox");
  EXPECT_EQ(find("etc")->mtime_ns, kMiddleMtime * 1'000'000'000);
  EXPECT_EQ(find("usr/bin/tool")->mtime_ns, kBaseMtime * 1'000'000'000);
  EXPECT_EQ(find("file2dir")->mtime_ns, kTopMtime * 1'000'000'000);
  EXPECT_EQ(find("attrs/trusted-x")->xattrs.count("trusted.strata-test"), 1u);
}

}  // namespace
}  // namespace strata::snapshotter
