// SnapshotStore against containerd's snapshot semantics: kinds, parents, commit renames
// keeping the id, removal rules, label updates, filters, and separate namespaces.
#include "snapshotter/snapshot_store.h"

#include <gtest/gtest.h>

#include "base/file.h"
#include "store/meta_db.h"
#include "tests/support/assertions.h"

namespace strata::snapshotter {
namespace {

class SnapshotStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = TempDir::Create("strata-snapshots");
    ASSERT_TRUE(dir) << dir.error().ToString();
    dir_ = std::make_unique<TempDir>(std::move(*dir));
    Reopen();
  }

  void Reopen() {
    snapshots_.reset();
    db_.reset();
    auto db = store::MetaDB::Open(dir_->path() / "meta");
    ASSERT_TRUE(db) << db.error().ToString();
    db_ = std::move(*db);
    snapshots_ = std::make_unique<SnapshotStore>(*db_, "strata");
  }

  // Prepare + commit: a committed layer `name` over `parent`.
  SnapshotRecord Layer(const std::string& name, const std::string& parent) {
    auto active = snapshots_->Create(Kind::kActive, name + "-extract", parent, {});
    EXPECT_TRUE(active) << active.error().ToString();
    auto committed = snapshots_->Commit(name + "-extract", name, {}, {.size = 10, .inodes = 2});
    EXPECT_TRUE(committed) << committed.error().ToString();
    return *committed;
  }

  std::vector<std::string> Names(const std::vector<std::string>& filters) {
    auto filter = store::Filter::Parse(filters);
    EXPECT_TRUE(filter) << filter.error().ToString();
    std::vector<std::string> names;
    auto walked = snapshots_->Walk(*filter, [&](const SnapshotInfo& info) {
      names.push_back(info.name);
      return true;
    });
    EXPECT_TRUE(walked) << walked.error().ToString();
    return names;
  }

  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<store::MetaDB> db_;
  std::unique_ptr<SnapshotStore> snapshots_;
};

TEST_F(SnapshotStoreTest, CreateGetAndCommitKeepsTheId) {
  ASSERT_OK_AND_ASSIGN(SnapshotRecord active, snapshots_->Create(Kind::kActive, "ns/1/extract", "", {{"a", "1"}}));
  EXPECT_EQ(active.info.kind, Kind::kActive);
  EXPECT_EQ(active.info.created_at, active.info.updated_at);
  EXPECT_TRUE(active.parent_ids.empty());
  ASSERT_OK_AND_ASSIGN(SnapshotRecord got, snapshots_->Get("ns/1/extract"));
  EXPECT_EQ(got.id, active.id);
  EXPECT_EQ(got.info.labels, (store::Labels{{"a", "1"}}));

  ASSERT_OK_AND_ASSIGN(SnapshotRecord committed,
                       snapshots_->Commit("ns/1/extract", "sha256:layer1", {{"b", "2"}}, {.size = 42, .inodes = 3}));
  EXPECT_EQ(committed.id, active.id);
  EXPECT_EQ(committed.info.kind, Kind::kCommitted);
  EXPECT_EQ(committed.info.labels, (store::Labels{{"b", "2"}}));
  EXPECT_EQ(committed.info.created_at, committed.info.updated_at);
  EXPECT_EQ(committed.usage.size, 42);
  EXPECT_EQ(snapshots_->Get("ns/1/extract").error().code(), ErrorCode::kNotFound);
}

TEST_F(SnapshotStoreTest, ParentsMustExistAndBeCommitted) {
  EXPECT_EQ(snapshots_->Create(Kind::kActive, "a", "missing", {}).error().code(), ErrorCode::kNotFound);
  ASSERT_OK(snapshots_->Create(Kind::kActive, "active", "", {}));
  EXPECT_EQ(snapshots_->Create(Kind::kView, "v", "active", {}).error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(snapshots_->Create(Kind::kActive, "active", "", {}).error().code(), ErrorCode::kAlreadyExists);
  EXPECT_EQ(snapshots_->Create(Kind::kCommitted, "c", "", {}).error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(snapshots_->Create(Kind::kActive, "", "", {}).error().code(), ErrorCode::kInvalidArgument);

  SnapshotRecord base = Layer("base", "");
  SnapshotRecord middle = Layer("middle", "base");
  ASSERT_OK_AND_ASSIGN(SnapshotRecord top, snapshots_->Create(Kind::kView, "view", "middle", {}));
  EXPECT_EQ(top.parent_ids, (std::vector<uint64_t>{middle.id, base.id}));
  EXPECT_EQ(snapshots_->Create(Kind::kActive, "base", "", {}).error().code(), ErrorCode::kAlreadyExists);
}

TEST_F(SnapshotStoreTest, CommitOnlyActiveIntoAFreeName) {
  ASSERT_OK(snapshots_->Create(Kind::kView, "view", "", {}));
  EXPECT_EQ(snapshots_->Commit("view", "x", {}, {}).error().code(), ErrorCode::kFailedPrecondition);
  Layer("taken", "");
  ASSERT_OK(snapshots_->Create(Kind::kActive, "work", "", {}));
  EXPECT_EQ(snapshots_->Commit("work", "taken", {}, {}).error().code(), ErrorCode::kAlreadyExists);
  EXPECT_EQ(snapshots_->Commit("missing", "y", {}, {}).error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(snapshots_->Commit("taken", "z", {}, {}).error().code(), ErrorCode::kFailedPrecondition);
}

TEST_F(SnapshotStoreTest, RemoveRefusesParentsOfLiveChildren) {
  Layer("base", "");
  Layer("child", "base");
  EXPECT_EQ(snapshots_->Remove("base").error().code(), ErrorCode::kFailedPrecondition);
  ASSERT_OK(snapshots_->Remove("child"));
  ASSERT_OK(snapshots_->Remove("base"));
  EXPECT_EQ(snapshots_->Remove("base").error().code(), ErrorCode::kNotFound);
  // An intermediate removed after its child: the chain's children index follows commits.
  Layer("l1", "");
  ASSERT_OK(snapshots_->Create(Kind::kActive, "work", "l1", {}));
  ASSERT_OK(snapshots_->Commit("work", "l2", {}, {}));
  EXPECT_EQ(snapshots_->Remove("l1").error().code(), ErrorCode::kFailedPrecondition);
  ASSERT_OK(snapshots_->Remove("l2"));
  ASSERT_OK(snapshots_->Remove("l1"));
}

TEST_F(SnapshotStoreTest, UpdateChangesLabelsOnly) {
  ASSERT_OK(snapshots_->Create(Kind::kActive, "s", "", {{"keep", "1"}, {"drop", "2"}}));
  SnapshotInfo change{.name = "s", .labels = {{"drop", ""}, {"new", "3"}}};
  ASSERT_OK_AND_ASSIGN(SnapshotInfo updated, snapshots_->Update(change, {"labels.drop", "labels.new"}));
  EXPECT_EQ(updated.labels, (store::Labels{{"keep", "1"}, {"new", "3"}}));
  EXPECT_GT(updated.updated_at, updated.created_at);
  ASSERT_OK_AND_ASSIGN(updated, snapshots_->Update({.name = "s", .labels = {{"only", "x"}}}, {}));
  EXPECT_EQ(updated.labels, (store::Labels{{"only", "x"}}));
  EXPECT_EQ(snapshots_->Update({.name = "s", .parent = "p"}, {"parent"}).error().code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(snapshots_->Update({.name = "nope"}, {}).error().code(), ErrorCode::kNotFound);
}

TEST_F(SnapshotStoreTest, WalkFiltersByKindParentNameAndLabels) {
  Layer("base", "");
  ASSERT_OK(snapshots_->Create(Kind::kActive, "ctr", "base", {{"containerd.io/gc.root", "x"}}));
  ASSERT_OK(snapshots_->Create(Kind::kView, "peek", "base", {}));
  EXPECT_EQ(Names({}), (std::vector<std::string>{"base", "ctr", "peek"}));
  EXPECT_EQ(Names({"kind==active"}), (std::vector<std::string>{"ctr"}));
  EXPECT_EQ(Names({"kind==view", "kind==committed"}), (std::vector<std::string>{"base", "peek"}));
  EXPECT_EQ(Names({"parent==base"}), (std::vector<std::string>{"ctr", "peek"}));
  EXPECT_EQ(Names({"parent!=\"\",kind==view"}), (std::vector<std::string>{"peek"}));
  EXPECT_EQ(Names({R"(labels."containerd.io/gc.root"==x)"}), (std::vector<std::string>{"ctr"}));
  EXPECT_EQ(Names({"name==base"}), (std::vector<std::string>{"base"}));
}

TEST_F(SnapshotStoreTest, IdsAreUniqueAcrossReopenAndNamespacesAreSeparate) {
  SnapshotRecord first = Layer("a", "");
  Reopen();
  ASSERT_OK_AND_ASSIGN(SnapshotRecord second, snapshots_->Create(Kind::kActive, "b", "a", {}));
  EXPECT_GT(second.id, first.id);
  ASSERT_OK_AND_ASSIGN(auto ids, snapshots_->Ids());
  EXPECT_EQ(ids.size(), 2u);

  SnapshotStore other(*db_, "other");
  EXPECT_EQ(other.Get("a").error().code(), ErrorCode::kNotFound);
  ASSERT_OK(other.Create(Kind::kActive, "a", "", {}));
  ASSERT_OK_AND_ASSIGN(auto other_ids, other.Ids());
  EXPECT_EQ(other_ids.size(), 1u);
}

}  // namespace
}  // namespace strata::snapshotter
