// OverlaySnapshotter end to end as containerd drives it: prepare, mount, write, commit,
// stack a child with a deletion, view it read-only; removal rules, usage, and cleanup of
// directories no record names.
#include "snapshotter/overlay_snapshotter.h"

#include <fcntl.h>

#include <atomic>
#include <fstream>
#include <thread>

#include <fmt/format.h>

#include <gtest/gtest.h>

#include "base/file.h"
#include "tests/support/assertions.h"
#include "tests/support/root.h"

namespace strata::snapshotter {
namespace {

namespace fs = std::filesystem;

class OverlaySnapshotterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    STRATA_REQUIRE_ROOT();
    auto root = test_support::TempRoot::Create("strata-overlay-sn");
    ASSERT_TRUE(root) << root.error().ToString();
    root_.emplace(std::move(*root));
    auto db = store::MetaDB::Open(*root_ / "meta");
    ASSERT_TRUE(db) << db.error().ToString();
    db_ = std::move(*db);
    auto snapshotter = OverlaySnapshotter::Open(root_->path(), *db_);
    ASSERT_TRUE(snapshotter) << snapshotter.error().ToString();
    snapshotter_ = std::move(*snapshotter);
    target_ = *root_ / "mnt";
    fs::create_directories(target_);
  }

  void TearDown() override {
    snapshotter_.reset();
    db_.reset();
  }

  // Mounts `mounts` at target_, runs `body`, unmounts.
  void WithMounted(const std::vector<Mount>& mounts, const std::function<void()>& body) {
    ASSERT_EQ(mounts.size(), 1u);
    ASSERT_OK(MountAt(mounts[0], target_));
    body();
    ASSERT_OK(UnmountAt(target_));
  }

  std::set<std::string> SnapshotDirs() const {
    std::set<std::string> names;
    for (const auto& entry : fs::directory_iterator(*root_ / "snapshots")) names.insert(entry.path().filename());
    return names;
  }

  std::optional<test_support::TempRoot> root_;
  std::unique_ptr<store::MetaDB> db_;
  std::unique_ptr<OverlaySnapshotter> snapshotter_;
  fs::path target_;
};

TEST_F(OverlaySnapshotterTest, PrepareCommitStackAndView) {
  ASSERT_OK_AND_ASSIGN(auto base_mounts, snapshotter_->Prepare("extract-1", "", {}));
  WithMounted(base_mounts, [&] {
    std::ofstream(target_ / "keep.txt") << "keep";
    std::ofstream(target_ / "gone.txt") << "gone";
  });
  ASSERT_OK(snapshotter_->Commit("layer-1", "extract-1", {{"k", "v"}}));
  ASSERT_OK_AND_ASSIGN(SnapshotInfo layer1, snapshotter_->Stat("layer-1"));
  EXPECT_EQ(layer1.kind, Kind::kCommitted);
  EXPECT_EQ(layer1.labels, (store::Labels{{"k", "v"}}));
  ASSERT_OK_AND_ASSIGN(Usage usage1, snapshotter_->UsageOf("layer-1"));
  EXPECT_EQ(usage1.inodes, 3);  // fs root + two files

  ASSERT_OK_AND_ASSIGN(auto child_mounts, snapshotter_->Prepare("extract-2", "layer-1", {}));
  EXPECT_EQ(child_mounts[0].type, "overlay");
  WithMounted(child_mounts, [&] {
    EXPECT_TRUE(fs::exists(target_ / "keep.txt"));
    fs::remove(target_ / "gone.txt");
    std::ofstream(target_ / "new.txt") << std::string(1 << 20, 'n');
  });
  ASSERT_OK_AND_ASSIGN(Usage active_usage, snapshotter_->UsageOf("extract-2"));
  EXPECT_GE(active_usage.size, 1 << 20);
  ASSERT_OK(snapshotter_->Commit("layer-2", "extract-2", {}));

  ASSERT_OK_AND_ASSIGN(auto view_mounts, snapshotter_->View("view", "layer-2", {}));
  WithMounted(view_mounts, [&] {
    EXPECT_TRUE(fs::exists(target_ / "keep.txt"));
    EXPECT_TRUE(fs::exists(target_ / "new.txt"));
    EXPECT_FALSE(fs::exists(target_ / "gone.txt"));
    EXPECT_EQ(::open((target_ / "x").c_str(), O_CREAT | O_WRONLY, 0644), -1);
  });
  ASSERT_OK_AND_ASSIGN(auto again, snapshotter_->Mounts("view"));
  EXPECT_EQ(again, view_mounts);
  EXPECT_EQ(snapshotter_->Mounts("layer-1").error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_EQ(fs::status(root_->path() / "snapshots" / "1" / "fs").permissions() & fs::perms::all,
            fs::perms(0755));
}

TEST_F(OverlaySnapshotterTest, RemoveRulesAndDirectories) {
  ASSERT_OK(snapshotter_->Prepare("a", "", {}));
  ASSERT_OK(snapshotter_->Commit("base", "a", {}));
  ASSERT_OK(snapshotter_->Prepare("child", "base", {}));
  EXPECT_EQ(snapshotter_->Remove("base").error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_EQ(SnapshotDirs(), (std::set<std::string>{"1", "2"}));
  ASSERT_OK(snapshotter_->Remove("child"));
  ASSERT_OK(snapshotter_->Remove("base"));
  EXPECT_EQ(SnapshotDirs(), (std::set<std::string>{"1", "2"}));  // Remove is metadata-only
  ASSERT_OK(snapshotter_->Cleanup());
  EXPECT_TRUE(SnapshotDirs().empty());
  EXPECT_EQ(snapshotter_->Stat("base").error().code(), ErrorCode::kNotFound);
}

TEST_F(OverlaySnapshotterTest, ActiveUsageIsCachedUntilTtlOrCommit) {
  ASSERT_OK(snapshotter_->Prepare("active", "", {}));
  ASSERT_OK_AND_ASSIGN(SnapshotRecord record, snapshotter_->records().Get("active"));
  const fs::path upper = snapshotter_->layout().FsDir(record.id);
  ASSERT_OK_AND_ASSIGN(Usage before, snapshotter_->UsageOf("active"));
  std::ofstream(upper / "grown.bin") << std::string(1 << 20, 'g');
  ASSERT_OK_AND_ASSIGN(Usage cached, snapshotter_->UsageOf("active"));
  EXPECT_EQ(cached.size, before.size);  // within the TTL: no walk
  EXPECT_EQ(cached.inodes, before.inodes);

  snapshotter_->set_usage_cache_ttl(std::chrono::seconds(0));
  ASSERT_OK_AND_ASSIGN(Usage walked, snapshotter_->UsageOf("active"));
  EXPECT_GE(walked.size, before.size + (1 << 20));
  EXPECT_EQ(walked.inodes, before.inodes + 1);

  snapshotter_->set_usage_cache_ttl(std::chrono::hours(1));
  ASSERT_OK(snapshotter_->Commit("done", "active", {}));
  ASSERT_OK_AND_ASSIGN(Usage committed, snapshotter_->UsageOf("done"));
  EXPECT_EQ(committed.size, walked.size);
}

TEST_F(OverlaySnapshotterTest, FailedPrepareLeavesNoDirectoryAndCleanupRemovesStrays) {
  EXPECT_EQ(snapshotter_->Prepare("x", "missing", {}).error().code(), ErrorCode::kNotFound);
  ASSERT_OK(snapshotter_->Prepare("active", "", {}));
  EXPECT_EQ(snapshotter_->Prepare("y", "active", {}).error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(snapshotter_->Prepare("active", "", {}).error().code(), ErrorCode::kAlreadyExists);
  EXPECT_EQ(SnapshotDirs(), (std::set<std::string>{"1"}));

  // A crash between mkdir and record, and a directory whose record went away.
  fs::create_directories(*root_ / "snapshots" / "77" / "fs");
  fs::create_directories(*root_ / "snapshots" / "new-123");
  ASSERT_OK(snapshotter_->Cleanup());
  EXPECT_EQ(SnapshotDirs(), (std::set<std::string>{"1"}));
}

// Prepare does not fsync the new directories (one durability barrier per Prepare): after a
// power loss that kept the record but lost them, Mounts makes them again, empty.
TEST_F(OverlaySnapshotterTest, MountsRemakesTheLostDirectoriesOfAnActiveSnapshot) {
  ASSERT_OK(snapshotter_->Prepare("base-work", "", {}));
  ASSERT_OK(snapshotter_->Commit("base", "base-work", {}));
  ASSERT_OK(snapshotter_->Prepare("active", "base", {}));
  ASSERT_OK_AND_ASSIGN(SnapshotRecord record, snapshotter_->records().Get("active"));
  fs::remove_all(snapshotter_->layout().SnapshotDir(record.id));
  ASSERT_OK_AND_ASSIGN(std::vector<Mount> mounts, snapshotter_->Mounts("active"));
  EXPECT_TRUE(fs::is_directory(snapshotter_->layout().FsDir(record.id)));
  EXPECT_TRUE(fs::is_directory(snapshotter_->layout().WorkDir(record.id)));
  WithMounted(mounts, [&] { std::ofstream(target_ / "written") << "x"; });
  EXPECT_TRUE(fs::exists(snapshotter_->layout().FsDir(record.id) / "written"));
}

// The id counter's write is buffered: after a power loss a fresh id may name a directory a
// cut-short Prepare left. No record names it, so Prepare replaces it.
TEST_F(OverlaySnapshotterTest, PrepareReplacesALeftoverDirectoryAtAFreshId) {
  fs::create_directories(*root_ / "snapshots" / "1" / "fs" / "junk");
  ASSERT_OK(snapshotter_->Prepare("a", "", {}));
  ASSERT_OK_AND_ASSIGN(SnapshotRecord record, snapshotter_->records().Get("a"));
  EXPECT_EQ(record.id, 1u);
  EXPECT_TRUE(fs::is_empty(snapshotter_->layout().FsDir(record.id)));
  EXPECT_TRUE(fs::is_directory(snapshotter_->layout().WorkDir(record.id)));
}

// containerd calls Cleanup (after its GC) while other clients Prepare, and strata's umount
// does the same beside running pulls: Cleanup must not take the directory of a snapshot whose
// record is still being written for a leftover (found by tests/load: unpacks failed with
// "open layer root .../snapshots/283/fs: No such file or directory").
TEST_F(OverlaySnapshotterTest, CleanupBesidePreparesRemovesNoneOfTheirDirectories) {
  std::atomic<bool> done{false};
  std::atomic<int> cleanup_errors{0};
  std::thread cleaner([&] {
    while (!done) {
      if (!snapshotter_->Cleanup()) ++cleanup_errors;
    }
  });
  int lost = 0;
  for (int i = 0; i < 300; ++i) {
    const std::string key = fmt::format("k{}", i);
    auto prepared = snapshotter_->Prepare(key, "", {});
    auto record = snapshotter_->records().Get(key);
    if (!prepared || !record) {
      ADD_FAILURE() << key << ": " << (prepared ? record.error().ToString() : prepared.error().ToString());
      break;
    }
    // What an unpack does next: write into fs/ (Mounts would remake a lost directory).
    if (!std::ofstream(snapshotter_->layout().FsDir(record->id) / "file")) ++lost;
    if (i % 2 == 1) {
      auto removed = snapshotter_->Remove(key);  // real leftovers for Cleanup too
      EXPECT_TRUE(removed) << removed.error().ToString();
    }
  }
  done = true;
  cleaner.join();
  EXPECT_EQ(lost, 0) << "Cleanup removed directories of snapshots being prepared";
  EXPECT_EQ(cleanup_errors.load(), 0);
}

}  // namespace
}  // namespace strata::snapshotter
