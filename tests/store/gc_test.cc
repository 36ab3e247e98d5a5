#include "store/gc.h"

#include <sys/mount.h>

#include <algorithm>
#include <cstring>

#include "base/file.h"
#include "tests/store/store_test_util.h"

namespace strata::store {
namespace {

using testing::Ingest;
using testing::StoreTest;
namespace fs = std::filesystem;

class GcTest : public StoreTest {
 protected:
  bool Exists(const Digest& d) { return content().Info(d).has_value() && fs::exists(content().BlobPath(d)); }
};

TEST_F(GcTest, ImagesKeepWhatTheirLabelsReference) {
  auto layer = Ingest(content(), "layer bytes", "layer");
  auto config = Ingest(content(), "config bytes", "config");
  auto manifest = Ingest(content(), "manifest bytes", "manifest",
                         {{"containerd.io/gc.ref.content.l.0", layer.digest.ToString()},
                          {"containerd.io/gc.ref.content.config", config.digest.ToString()}});
  auto loose = Ingest(content(), "loose bytes", "loose");
  auto rooted = Ingest(content(), "rooted bytes", "rooted", {{"containerd.io/gc.root", "2026-01-01"}});
  auto target = oci::Descriptor::Parse(fmt::format(
      R"({{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{}}})",
      manifest.digest.ToString(), manifest.size));
  ASSERT_OK(target);
  ASSERT_OK(store_->images().Create({"docker.io/library/test:1", *target, {}, {}, {}}));

  auto report = store_->CollectGarbage({});
  ASSERT_OK(report);
  EXPECT_EQ(report->blobs_removed, std::vector<Digest>{loose.digest});
  EXPECT_EQ(report->bytes_freed, loose.size);
  EXPECT_EQ(report->blobs_kept, 4);
  EXPECT_FALSE(Exists(loose.digest));
  for (const auto& d : {layer.digest, config.digest, manifest.digest, rooted.digest}) EXPECT_TRUE(Exists(d)) << d;

  // Without the image, its content goes too (the gc.root blob stays).
  ASSERT_OK(store_->images().Delete("docker.io/library/test:1"));
  report = store_->CollectGarbage({});
  ASSERT_OK(report);
  EXPECT_EQ(report->blobs_removed.size(), 3u);
  EXPECT_TRUE(Exists(rooted.digest));
}

TEST_F(GcTest, LeasesProtectContentAndIngestsUntilTheyExpire) {
  auto lease = store_->leases().Create("pull-1", {});
  ASSERT_OK(lease);
  auto writer = content().Writer("leased-blob", {.lease = "pull-1"});
  ASSERT_OK(writer);
  ASSERT_OK((*writer)->Write("leased"));
  auto info = (*writer)->Commit(6, std::nullopt);
  ASSERT_OK(info);
  {
    auto half = content().Writer("half-done", {.lease = "pull-1"});
    ASSERT_OK(half);
    ASSERT_OK((*half)->Write("half"));
  }
  {
    auto unleased = content().Writer("abandoned", {});
    ASSERT_OK(unleased);
    ASSERT_OK((*unleased)->Write("abandoned"));
  }
  auto report = store_->CollectGarbage({});
  ASSERT_OK(report);
  EXPECT_TRUE(report->blobs_removed.empty());
  EXPECT_EQ(report->ingests_removed, std::vector<std::string>{"abandoned"});
  EXPECT_TRUE(Exists(info->digest));
  EXPECT_TRUE(content().StatusOf("half-done").has_value());

  // An expired lease protects nothing and is itself removed.
  ASSERT_OK(store_->leases().Delete("pull-1"));
  ASSERT_OK(store_->leases().Create("old", {{"containerd.io/gc.expire", "2020-01-01T00:00:00Z"}}));
  ASSERT_OK(store_->leases().AddResource("old", {"content", info->digest.ToString()}));
  report = store_->CollectGarbage({});
  ASSERT_OK(report);
  EXPECT_EQ(report->leases_expired, std::vector<std::string>{"old"});
  EXPECT_EQ(report->blobs_removed, std::vector<Digest>{info->digest});
  EXPECT_EQ(report->ingests_removed, std::vector<std::string>{"half-done"});
  EXPECT_FALSE(store_->leases().Get("old").has_value());
}

TEST_F(GcTest, OpenWritersAreNotSwept) {
  auto writer = content().Writer("in-flight", {});
  ASSERT_OK(writer);
  ASSERT_OK((*writer)->Write("partial"));
  auto report = store_->CollectGarbage({});
  ASSERT_OK(report);
  EXPECT_TRUE(report->ingests_removed.empty());
  EXPECT_TRUE(report->orphan_files_removed.empty());
  ASSERT_OK((*writer)->Write(" then done"));
  ASSERT_OK((*writer)->Commit(0, Digest::Of("partial then done")));
}

TEST_F(GcTest, OrphanFilesAreRemovedAndDryRunRemovesNothing) {
  auto orphan = content().BlobPath(Digest::Of("nobody names me"));
  ASSERT_OK(AtomicWriteFile(orphan, "nobody names me"));
  fs::create_directories(root() / "ingest/deadbeef");
  ASSERT_OK(AtomicWriteFile(root() / "ingest/deadbeef/data", "leftover"));
  auto dry = store_->CollectGarbage({.dry_run = true});
  ASSERT_OK(dry);
  EXPECT_EQ(dry->orphan_files_removed.size(), 2u);
  EXPECT_TRUE(fs::exists(orphan));
  auto report = store_->CollectGarbage({});
  ASSERT_OK(report);
  EXPECT_EQ(report->orphan_files_removed.size(), 2u);
  EXPECT_FALSE(fs::exists(orphan));
  EXPECT_FALSE(fs::exists(root() / "ingest/deadbeef"));
}

TEST_F(GcTest, ExtraRootSourcesKeepContent) {
  auto kept = Ingest(content(), "snapshot-referenced", "s");
  GcOptions options;
  options.root_sources.push_back([&](const std::function<void(const Digest&)>& mark) -> Status {
    mark(kept.digest);
    return {};
  });
  auto report = store_->CollectGarbage(options);
  ASSERT_OK(report);
  EXPECT_TRUE(report->blobs_removed.empty());
}

}  // namespace
}  // namespace strata::store

namespace strata::store {
namespace {

class GcSnapshotDirsTest : public testing::StoreTest {};

TEST_F(GcSnapshotDirsTest, SweepsDirectoriesTheSnapshotterDoesNotName) {
  for (const char* id : {"1", "2", "new-123"}) fs::create_directories(root() / "snapshots" / id / "fs");
  ASSERT_OK(AtomicWriteFile(root() / "snapshots/2/fs/file", "orphaned layer data"));
  // Without a provider, snapshots/ is not GC's business.
  auto untouched = store_->CollectGarbage({});
  ASSERT_OK(untouched);
  EXPECT_TRUE(untouched->snapshot_dirs_removed.empty());

  GcOptions options;
  options.live_snapshot_dirs = []() -> Result<std::set<std::string>> { return std::set<std::string>{"1"}; };
  auto report = store_->CollectGarbage(options);
  ASSERT_OK(report);
  std::sort(report->snapshot_dirs_removed.begin(), report->snapshot_dirs_removed.end());
  EXPECT_EQ(report->snapshot_dirs_removed, (std::vector<std::string>{"snapshots/2", "snapshots/new-123"}));
  EXPECT_TRUE(fs::exists(root() / "snapshots/1/fs"));
  EXPECT_FALSE(fs::exists(root() / "snapshots/2"));
}

TEST_F(GcSnapshotDirsTest, NeverRecursesIntoAMount) {
  STRATA_REQUIRE_ROOT();
  auto elsewhere = TempDir::Create("strata-gc-mounted");
  ASSERT_OK(elsewhere);
  ASSERT_OK(AtomicWriteFile(elsewhere->path() / "precious", "must survive"));
  fs::create_directories(root() / "snapshots/7/fs");
  ASSERT_EQ(mount(elsewhere->path().c_str(), (root() / "snapshots/7/fs").c_str(), nullptr, MS_BIND, nullptr), 0)
      << strerror(errno);
  GcOptions options;
  options.live_snapshot_dirs = []() -> Result<std::set<std::string>> { return std::set<std::string>{}; };
  auto report = store_->CollectGarbage(options);
  umount2((root() / "snapshots/7/fs").c_str(), MNT_DETACH);
  ASSERT_OK(report);
  EXPECT_TRUE(report->snapshot_dirs_removed.empty());
  EXPECT_EQ(ReadFile(elsewhere->path() / "precious").value_or(""), "must survive");
}

}  // namespace
}  // namespace strata::store
