// Mount -> change -> commit -> push -> pull elsewhere -> mount: a writable mount's changes
// (modified, deleted and recreated files and dirs, hard links, symlinks, chmod) committed
// as a new layer, pushed to a real registry and pulled into a fresh store root must give
// back exactly the tree that was seen through the writable mount. And commit refuses what
// is not a writable strata mount.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include "base/file.h"
#include "images/commit.h"
#include "images/image_mount.h"
#include "images/pull.h"
#include "images/push.h"
#include "oci/image_config.h"
#include "oci/manifest.h"
#include "registry/pusher.h"
#include "tests/images/unpack_fixture.h"
#include "tests/support/assertions.h"
#include "tests/support/image_builder.h"
#include "tests/support/registry_fixture.h"
#include "tests/support/root.h"
#include "tests/support/tree_compare.h"

namespace strata::images {
namespace {

namespace fs = std::filesystem;
using test_support::EntryAttrs;
using test_support::LayerBuilder;

void WriteText(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  ASSERT_TRUE(out.good()) << path;
}

class CommitTest : public UnpackFixture {
 protected:
  CommitTest() : UnpackFixture("strata-commit") {}

  void SetUpStrata() override {
    MakeFastResolver(3, /*instant_retries=*/false);
    pusher_ = std::make_unique<registry::Pusher>(*resolver_);
    OpenRoot(first_, "store");
  }

  void TearDown() override {
    // Roots go before the resolver they use.
    second_.Reset();
    first_.Reset();
  }

  // Base image: two layers, with what the container will change.
  Result<test_support::PushedImage> PushBase(const std::string& repository) {
    auto lower = LayerBuilder()
                     .Dir("etc")
                     .File("etc/config", "v1\n")
                     .File("etc/remove-me", "bye\n")
                     .Dir("lowerdir")
                     .File("lowerdir/a", "a\n")
                     .Dir("lowerdir/sub")
                     .File("lowerdir/sub/b", "b\n")
                     .File("chmod-me", "mode\n", {.mode = 0644})
                     .Build();
    if (!lower) return std::unexpected(lower.error());
    auto upper = LayerBuilder()
                     .Dir("usr")
                     .Dir("usr/bin")
                     .File("usr/bin/tool", "tool\n", {.mode = 0755})
                     .File("etc/untouched", "same\n")
                     .Build(test_support::Compression::kZstd);
    if (!upper) return std::unexpected(upper.error());
    test_support::ImageBuilder builder;
    builder.AddLayer(std::move(*lower)).AddLayer(std::move(*upper));
    return builder.PushTo(*registry_, repository, "1");
  }

  std::unique_ptr<registry::Pusher> pusher_;
  StrataRoot first_;
  StrataRoot second_;
};

TEST_F(CommitTest, CommittedChangesSurvivePushAndPullIntoAFreshStore) {
  ASSERT_OK_AND_ASSIGN(auto base, PushBase("commit/base"));
  const std::string base_name = registry_->host() + "/commit/base:1";
  ASSERT_OK(PullInto(first_, base_name));

  MountGuard rw_guard;
  ASSERT_OK_AND_ASSIGN(MountedImage rw, MountAt(first_, rw_guard, base_name, "rw", /*writable=*/true));
  const fs::path m = root_->path() / "rw";
  // Changes through the mount.
  WriteText(m / "etc/config", "v2, longer than before\n");
  ASSERT_TRUE(fs::remove(m / "etc/remove-me"));
  ASSERT_GT(fs::remove_all(m / "lowerdir"), 0u);
  fs::create_directories(m / "lowerdir");
  WriteText(m / "lowerdir/new", "recreated dir, other content\n");
  fs::create_directories(m / "links");
  WriteText(m / "links/one", "linked\n");
  ASSERT_EQ(::link((m / "links/one").c_str(), (m / "links/two").c_str()), 0) << strerror(errno);
  fs::create_symlink("one", m / "links/sym");
  fs::create_symlink("/etc/config", m / "links/abs");
  ASSERT_EQ(::chmod((m / "chmod-me").c_str(), 0600), 0);
  ASSERT_EQ(::chmod((m / "usr/bin/tool").c_str(), 04750), 0);
  ASSERT_EQ(::chown((m / "links/one").c_str(), 1000, 1000), 0);
  ::sync();

  const test_support::TreeCompareOptions options{.compare_mtimes = true, .compare_dir_mtimes = true};
  ASSERT_OK_AND_ASSIGN(auto seen, test_support::ScanTree(m, options));
  // Sanity: the view is what we think it is.
  auto find = [](const std::vector<test_support::TreeEntry>& entries, const std::string& path) {
    auto it = std::ranges::find(entries, path, &test_support::TreeEntry::path);
    return it == entries.end() ? nullptr : &*it;
  };
  EXPECT_EQ(find(seen, "lowerdir/a"), nullptr);
  EXPECT_EQ(find(seen, "lowerdir/sub"), nullptr);
  EXPECT_EQ(find(seen, "etc/remove-me"), nullptr);
  ASSERT_NE(find(seen, "links/two"), nullptr);
  EXPECT_EQ(find(seen, "links/two")->hardlink_group, "links/one");

  const std::string new_name = registry_->host() + "/commit/new:2";
  ASSERT_OK_AND_ASSIGN(CommitResult committed,
                       CommitContainer(*first_.store, *first_.snapshots, rw.key, new_name, {.comment = "test"}));
  EXPECT_GT(committed.entries, 0u);
  ASSERT_OK_AND_ASSIGN(store::Image recorded, first_.store->images().Get(new_name));
  EXPECT_EQ(recorded.target.digest, committed.manifest.digest);
  // The config has the base's diffIDs plus the new layer's.
  ASSERT_OK_AND_ASSIGN(std::string config_bytes, store::ReadBlob(first_.store->content(), committed.config.digest));
  ASSERT_OK_AND_ASSIGN(oci::ImageConfig config, oci::ImageConfig::Parse(config_bytes));
  ASSERT_EQ(config.rootfs.diff_ids.size(), 3u);
  EXPECT_EQ(config.rootfs.diff_ids[0], base.diff_ids[0]);
  EXPECT_EQ(config.rootfs.diff_ids[2], committed.diff_id);
  // The writable snapshot stays as it was.
  ASSERT_OK_AND_ASSIGN(auto still, first_.snapshots->Stat(rw.key));
  EXPECT_EQ(still.kind, snapshotter::Kind::kActive);

  ASSERT_OK(PushImage(*pusher_, *first_.store, new_name, Ref(new_name), {}));
  rw_guard.Release();

  // A fresh root pulls the committed image from the registry and mounts it read-only.
  OpenRoot(second_, "store2");
  ASSERT_OK_AND_ASSIGN(PullResult pulled, PullInto(second_, new_name));
  EXPECT_EQ(pulled.layers_unpacked, 3);
  MountGuard ro_guard;
  ASSERT_OK(MountAt(second_, ro_guard, new_name, "ro", /*writable=*/false));
  ASSERT_OK_AND_ASSIGN(auto again, test_support::ScanTree(root_->path() / "ro", options));
  // The root's mtime is excluded: no layer names "./" (the diff does not record the root
  // dir), so each side shows its own top snapshot's fs dir.
  ASSERT_EQ(seen.at(0).path, ".");
  ASSERT_EQ(again.at(0).path, ".");
  again[0].mtime_ns = seen[0].mtime_ns;
  std::vector<std::string> differences = test_support::CompareEntries(seen, again, options);
  EXPECT_TRUE(differences.empty()) << "writable mount (A) vs pulled commit (B):\n  "
                                   << fmt::format("{}", fmt::join(differences, "\n  "));
}

TEST_F(CommitTest, CommitOfAViewAnUnknownKeyOrAForeignSnapshotFails) {
  ASSERT_OK(PushBase("commit/refuse"));
  const std::string base_name = registry_->host() + "/commit/refuse:1";
  ASSERT_OK_AND_ASSIGN(PullResult pulled, PullInto(first_, base_name));

  MountGuard view_guard;
  ASSERT_OK_AND_ASSIGN(MountedImage view, MountAt(first_, view_guard, base_name, "view", /*writable=*/false));
  auto of_view = CommitContainer(*first_.store, *first_.snapshots, view.key, "example.com/x:1");
  ASSERT_FALSE(of_view);
  EXPECT_EQ(of_view.error().code(), ErrorCode::kFailedPrecondition) << of_view.error().ToString();
  EXPECT_NE(of_view.error().message().find("view"), std::string::npos) << of_view.error().message();
  EXPECT_NE(of_view.error().message().find(view.key), std::string::npos) << of_view.error().message();

  auto unknown = CommitContainer(*first_.store, *first_.snapshots, "no-such-snapshot", "example.com/x:1");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code(), ErrorCode::kNotFound) << unknown.error().ToString();
  EXPECT_NE(unknown.error().message().find("no-such-snapshot"), std::string::npos) << unknown.error().message();

  // An active snapshot strata did not mount from an image (no base manifest label).
  ASSERT_OK(first_.snapshots->Prepare("hand-made", pulled.chain_ids.back().ToString(), {}));
  auto foreign = CommitContainer(*first_.store, *first_.snapshots, "hand-made", "example.com/x:1");
  ASSERT_FALSE(foreign);
  EXPECT_EQ(foreign.error().code(), ErrorCode::kFailedPrecondition) << foreign.error().ToString();
  EXPECT_NE(foreign.error().message().find("not mounted from an image"), std::string::npos)
      << foreign.error().message();
  ASSERT_OK(first_.snapshots->Remove("hand-made"));

  // A committed chain snapshot is not a container either.
  auto layer = CommitContainer(*first_.store, *first_.snapshots, pulled.chain_ids.back().ToString(), "example.com/x:1");
  ASSERT_FALSE(layer);
  EXPECT_EQ(layer.error().code(), ErrorCode::kFailedPrecondition) << layer.error().ToString();
  EXPECT_FALSE(first_.store->images().Get("example.com/x:1"));
}

}  // namespace
}  // namespace strata::images
