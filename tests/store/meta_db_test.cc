#include "store/meta_db.h"

#include <rocksdb/db.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <thread>

#include "tests/store/store_test_util.h"
#include "tests/support/process.h"

namespace strata::store {
namespace {

using testing::StoreTest;

class MetaDBTest : public StoreTest {};

TEST_F(MetaDBTest, PutGetScanAndBatch) {
  MetaDB& db = store_->db();
  ASSERT_OK(db.Put(Table::kImages, "a/1", "one"));
  MetaDB::Batch batch;
  batch.Put(Table::kImages, "a/2", "two");
  batch.Put(Table::kImages, "b/1", "three");
  batch.Delete(Table::kImages, "a/1");
  ASSERT_OK(db.Write(batch));
  auto missing = db.Get(Table::kImages, "a/1");
  ASSERT_OK(missing);
  EXPECT_FALSE(missing->has_value());
  std::vector<std::string> seen;
  ASSERT_OK(db.Scan(Table::kImages, "a/", [&](std::string_view key, std::string_view value) {
    seen.push_back(fmt::format("{}={}", key, value));
    return true;
  }));
  EXPECT_EQ(seen, (std::vector<std::string>{"a/2=two"}));
  // Tables are separate namespaces.
  auto other = db.Get(Table::kBlobs, "a/2");
  ASSERT_OK(other);
  EXPECT_FALSE(other->has_value());
}

TEST_F(MetaDBTest, RecordsSurviveReopen) {
  ASSERT_OK(store_->db().Put(Table::kLeases, "k", "v"));
  Reopen();
  auto value = store_->db().Get(Table::kLeases, "k");
  ASSERT_OK(value);
  EXPECT_EQ(value->value_or(""), "v");
}

// A buffered write is visible at once and survives the process being killed (the WAL is
// written before Write returns; only a power loss could lose it before the next sync).
TEST(MetaDBDurability, BufferedWriteSurvivesAKilledProcess) {
  auto dir = TempDir::Create("strata-metadb");
  ASSERT_OK(dir);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto db = MetaDB::Open(dir->path() / "meta");
    if (!db) ::_exit(2);
    if (!(*db)->Put(Table::kSnapshots, "k", "buffered", MetaDB::Durability::kBuffered)) ::_exit(3);
    auto value = (*db)->Get(Table::kSnapshots, "k");
    if (!value || value->value_or("") != "buffered") ::_exit(4);
    ::kill(::getpid(), SIGKILL);  // no close, no sync
    ::_exit(5);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exited with " << WEXITSTATUS(status);
  auto db = MetaDB::Open(dir->path() / "meta");
  ASSERT_OK(db);
  auto value = (*db)->Get(Table::kSnapshots, "k");
  ASSERT_OK(value);
  EXPECT_EQ(value->value_or(""), "buffered");
  ASSERT_OK((*db)->Sync());
}

// A new database is built beside `meta` and renamed into place (MetaDB::Open's fast
// creation): it must come out complete -- every table, the schema version -- whether `meta`
// did not exist or was an empty directory, and leave no staging directory behind.
TEST(MetaDBCreation, NewDatabaseIsCompleteAndNothingElseIsLeft) {
  auto dir = TempDir::Create("strata-metadb");
  ASSERT_OK(dir);
  ASSERT_TRUE(std::filesystem::create_directory(dir->path() / "empty"));
  for (const char* name : {"fresh", "empty"}) {
    const std::filesystem::path meta = dir->path() / name;
    {
      auto db = MetaDB::Open(meta);
      ASSERT_OK(db);
      ASSERT_OK((*db)->Put(Table::kSnapshots, "k", name));
    }
    // Opened again, by RocksDB's own reader: the schema key and every table are there.
    rocksdb::DB* raw = nullptr;
    std::vector<rocksdb::ColumnFamilyDescriptor> families;
    for (const char* family : {"default", "blobs", "ingests", "images", "snapshots", "leases"}) {
      families.emplace_back(family, rocksdb::ColumnFamilyOptions());
    }
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::DBOptions(), meta.string(), families, &handles, &raw).ok()) << name;
    std::string version, value;
    EXPECT_TRUE(raw->Get(rocksdb::ReadOptions(), handles[0], "strata.schema_version", &version).ok());
    EXPECT_EQ(version, std::to_string(kSchemaVersion));
    EXPECT_TRUE(raw->Get(rocksdb::ReadOptions(), handles[4], "k", &value).ok());
    EXPECT_EQ(value, name);
    for (auto* h : handles) raw->DestroyColumnFamilyHandle(h);
    delete raw;
  }
  std::vector<std::string> entries;
  for (const auto& entry : std::filesystem::directory_iterator(dir->path())) {
    entries.push_back(entry.path().filename().string());
  }
  std::sort(entries.begin(), entries.end());
  EXPECT_EQ(entries, (std::vector<std::string>{"empty", "fresh"}));
}

TEST_F(MetaDBTest, NewerSchemaIsRefused) {
  store_.reset();
  {
    // Write a future schema version the way a newer strata would.
    rocksdb::DB* raw = nullptr;
    std::vector<rocksdb::ColumnFamilyDescriptor> families;
    for (const char* name : {"default", "blobs", "ingests", "images", "snapshots", "leases"}) {
      families.emplace_back(name, rocksdb::ColumnFamilyOptions());
    }
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::DBOptions(), (root() / "meta").string(), families, &handles, &raw).ok());
    ASSERT_TRUE(raw->Put(rocksdb::WriteOptions(), handles[0], "strata.schema_version", "99").ok());
    for (auto* h : handles) raw->DestroyColumnFamilyHandle(h);
    delete raw;
  }
  auto store = Store::Open(root());
  ASSERT_FALSE(store.has_value());
  EXPECT_EQ(store.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(store.error().message().find("schema version 99"), std::string::npos) << store.error().message();
}

TEST_F(MetaDBTest, SecondOpenerInThisProcessIsRefusedNamingThePid) {
  auto second = Store::Open(root());
  ASSERT_FALSE(second.has_value());
  EXPECT_EQ(second.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_EQ(second.error().message(),
            fmt::format("store {} is in use by pid {}", root().string(), getpid()));
}

TEST_F(MetaDBTest, SecondOpenerInAnotherProcessIsRefusedNamingThePid) {
  std::string output;
  auto code = test_support::RunCommand({STRATA_BIN, "--root", root().string(), "content", "ls"}, &output);
  ASSERT_OK(code);
  EXPECT_EQ(*code, 1);
  EXPECT_NE(output.find(fmt::format("store {} is in use by pid {}", root().string(), getpid())), std::string::npos)
      << output;
  // Once we let go, the other process gets in.
  store_.reset();
  code = test_support::RunCommand({STRATA_BIN, "--root", root().string(), "content", "ls"}, &output);
  ASSERT_OK(code);
  EXPECT_EQ(*code, 0) << output;
}

TEST(KeyLocks, TryLockFailsWhileHeldAndLockWaits) {
  KeyLocks locks;
  auto first = locks.Lock("k");
  EXPECT_FALSE(locks.TryLock("k"));
  EXPECT_TRUE(locks.TryLock("other"));
  std::atomic<bool> acquired = false;
  std::thread waiter([&] {
    auto second = locks.Lock("k");
    acquired = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(acquired);
  first = KeyLocks::Guard();
  waiter.join();
  EXPECT_TRUE(acquired);
}

}  // namespace
}  // namespace strata::store
