#include "store/meta_db.h"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/utilities/options_util.h>
#include <rocksdb/write_batch.h>

#include <array>
#include <vector>

namespace strata::store {
namespace {

constexpr std::array<Table, 5> kTables = {Table::kBlobs, Table::kIngests, Table::kImages,
                                          Table::kSnapshots, Table::kLeases};
constexpr std::string_view kSchemaKey = "strata.schema_version";

Error FromRocks(const rocksdb::Status& status, std::string_view what) {
  ErrorCode code = ErrorCode::kInternal;
  if (status.IsNotFound()) code = ErrorCode::kNotFound;
  if (status.IsBusy() || status.IsTimedOut() || status.IsTryAgain()) code = ErrorCode::kUnavailable;
  if (status.IsInvalidArgument()) code = ErrorCode::kInvalidArgument;
  return Error(code, fmt::format("{}: {}", what, status.ToString()));
}

rocksdb::Slice ToSlice(std::string_view s) { return rocksdb::Slice(s.data(), s.size()); }

}  // namespace

std::string_view TableName(Table table) {
  switch (table) {
    case Table::kBlobs: return "blobs";
    case Table::kIngests: return "ingests";
    case Table::kImages: return "images";
    case Table::kSnapshots: return "snapshots";
    case Table::kLeases: return "leases";
  }
  return "unknown";
}

struct MetaDB::Rep {
  std::filesystem::path dir;
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;  // [0] = default, then kTables order

  rocksdb::ColumnFamilyHandle* Handle(Table table) const {
    return handles[static_cast<size_t>(table) + 1];
  }
  ~Rep() {
    for (auto* handle : handles) {
      if (db && handle) db->DestroyColumnFamilyHandle(handle);
    }
    if (db) db->Close();
  }
};

struct MetaDB::Batch::Rep {
  struct Op {
    Table table;
    std::string key;
    std::optional<std::string> value;  // nullopt = delete
  };
  std::vector<Op> ops;
};

MetaDB::Batch::Batch() : rep_(std::make_unique<Rep>()) {}
MetaDB::Batch::~Batch() = default;
size_t MetaDB::Batch::size() const { return rep_->ops.size(); }

MetaDB::MetaDB(std::unique_ptr<Rep> rep) : rep_(std::move(rep)) {}
MetaDB::~MetaDB() {
  // Buffered writes become durable at a clean close, as synced ones were.
  if (rep_ && rep_->db) rep_->db->SyncWAL();
}

Result<std::unique_ptr<MetaDB>> MetaDB::Open(const std::filesystem::path& dir) {
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.max_background_jobs = 2;
  db_options.keep_log_file_num = 4;
  db_options.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  // Writes sync the WAL (or are synced at close), so open and close need not flush memtables to SST files:
  // a CLI command opens the store each time, and those flushes were most of its cost.
  db_options.avoid_flush_during_recovery = true;
  db_options.avoid_flush_during_shutdown = true;

  rocksdb::ColumnFamilyOptions cf_options;
  cf_options.OptimizeForSmallDb();
  std::vector<rocksdb::ColumnFamilyDescriptor> families;
  families.emplace_back(rocksdb::kDefaultColumnFamilyName, cf_options);
  for (Table table : kTables) families.emplace_back(std::string(TableName(table)), cf_options);

  auto rep = std::make_unique<Rep>();
  rep->dir = dir;
  rocksdb::DB* raw = nullptr;
  auto status = rocksdb::DB::Open(db_options, dir.string(), families, &rep->handles, &raw);
  if (!status.ok()) return Fail(FromRocks(status, fmt::format("open metadata db {}", dir.string())));
  rep->db.reset(raw);

  std::string version;
  status = rep->db->Get(rocksdb::ReadOptions(), rep->handles[0], ToSlice(kSchemaKey), &version);
  if (status.IsNotFound()) {
    rocksdb::WriteOptions sync;
    sync.sync = true;
    status = rep->db->Put(sync, rep->handles[0], ToSlice(kSchemaKey), std::to_string(kSchemaVersion));
    if (!status.ok()) return Fail(FromRocks(status, "write schema version"));
  } else if (!status.ok()) {
    return Fail(FromRocks(status, "read schema version"));
  } else {
    int found = 0;
    try {
      found = std::stoi(version);
    } catch (const std::exception&) {
      return Fail(ErrorCode::kFailedPrecondition, "metadata db {}: unreadable schema version {:?}",
                  dir.string(), version);
    }
    if (found > kSchemaVersion) {
      return Fail(ErrorCode::kFailedPrecondition,
                  "metadata db {} has schema version {}, newer than this strata supports ({}); "
                  "upgrade strata",
                  dir.string(), found, kSchemaVersion);
    }
  }
  return std::unique_ptr<MetaDB>(new MetaDB(std::move(rep)));
}

Result<std::optional<std::string>> MetaDB::Get(Table table, std::string_view key) const {
  std::string value;
  auto status = rep_->db->Get(rocksdb::ReadOptions(), rep_->Handle(table), ToSlice(key), &value);
  if (status.IsNotFound()) return std::optional<std::string>();
  if (!status.ok()) return Fail(FromRocks(status, fmt::format("get {} {:?}", TableName(table), key)));
  return std::optional<std::string>(std::move(value));
}

void MetaDB::Batch::Put(Table table, std::string_view key, std::string_view value) {
  rep_->ops.push_back({table, std::string(key), std::string(value)});
}

void MetaDB::Batch::Delete(Table table, std::string_view key) {
  rep_->ops.push_back({table, std::string(key), std::nullopt});
}

Status MetaDB::Write(Batch& batch, Durability durability) {
  rocksdb::WriteOptions options;
  options.sync = durability == Durability::kSynced;
  rocksdb::WriteBatch write;
  for (const auto& op : batch.rep_->ops) {
    auto status = op.value ? write.Put(rep_->Handle(op.table), ToSlice(op.key), ToSlice(*op.value))
                           : write.Delete(rep_->Handle(op.table), ToSlice(op.key));
    if (!status.ok()) return Fail(FromRocks(status, "build metadata batch"));
  }
  auto status = rep_->db->Write(options, &write);
  if (!status.ok()) return Fail(FromRocks(status, "write metadata batch"));
  return {};
}

Status MetaDB::Put(Table table, std::string_view key, std::string_view value, Durability durability) {
  Batch batch;
  batch.Put(table, key, value);
  return Write(batch, durability);
}

Status MetaDB::Delete(Table table, std::string_view key, Durability durability) {
  Batch batch;
  batch.Delete(table, key);
  return Write(batch, durability);
}

Status MetaDB::Sync() {
  auto status = rep_->db->SyncWAL();
  if (!status.ok()) return Fail(FromRocks(status, "sync the metadata log"));
  return {};
}

Status MetaDB::Scan(Table table, std::string_view prefix, const ScanFn& fn) const {
  const rocksdb::Snapshot* snapshot = rep_->db->GetSnapshot();
  rocksdb::ReadOptions options;
  options.snapshot = snapshot;
  Status result;
  {
    std::unique_ptr<rocksdb::Iterator> it(rep_->db->NewIterator(options, rep_->Handle(table)));
    for (it->Seek(ToSlice(prefix)); it->Valid(); it->Next()) {
      std::string_view key(it->key().data(), it->key().size());
      if (!key.starts_with(prefix)) break;
      if (!fn(key, std::string_view(it->value().data(), it->value().size()))) break;
    }
    if (!it->status().ok()) result = Fail(FromRocks(it->status(), fmt::format("scan {}", TableName(table))));
  }
  rep_->db->ReleaseSnapshot(snapshot);
  return result;
}

KeyLocks::Guard& KeyLocks::Guard::operator=(Guard&& other) noexcept {
  if (this != &other) {
    if (owner_) owner_->Unlock(key_);
    owner_ = other.owner_;
    key_ = std::move(other.key_);
    other.owner_ = nullptr;
  }
  return *this;
}

KeyLocks::Guard::~Guard() {
  if (owner_) owner_->Unlock(key_);
}

KeyLocks::Guard KeyLocks::Lock(std::string_view key) {
  std::unique_lock lock(mu_);
  std::string k(key);
  released_.wait(lock, [&] { return !held_.contains(k); });
  held_.insert(k);
  return Guard(this, std::move(k));
}

KeyLocks::Guard KeyLocks::TryLock(std::string_view key) {
  std::lock_guard lock(mu_);
  std::string k(key);
  if (held_.contains(k)) return Guard();
  held_.insert(k);
  return Guard(this, std::move(k));
}

void KeyLocks::Unlock(const std::string& key) {
  {
    std::lock_guard lock(mu_);
    held_.erase(key);
  }
  released_.notify_all();
}

}  // namespace strata::store
