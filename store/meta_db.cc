#include "store/meta_db.h"

#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>
#include <rocksdb/options.h>
#include <rocksdb/utilities/options_util.h>
#include <rocksdb/write_batch.h>

#include <unistd.h>

#include <array>
#include <cerrno>
#include <system_error>
#include <vector>

#include "base/file.h"

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

// Passes every call through except the syncs RocksDB asks for, which it skips: for building a
// new database that is made durable as a whole afterwards (CreateDatabase).
class SkipSyncFileSystem : public rocksdb::FileSystemWrapper {
 public:
  explicit SkipSyncFileSystem(const std::shared_ptr<rocksdb::FileSystem>& base) : FileSystemWrapper(base) {}
  const char* Name() const override { return "StrataSkipSync"; }

  rocksdb::IOStatus NewWritableFile(const std::string& name, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* file,
                                    rocksdb::IODebugContext* debug) override {
    rocksdb::IOStatus status = target()->NewWritableFile(name, options, file, debug);
    if (status.ok()) *file = std::make_unique<File>(std::move(*file));
    return status;
  }
  rocksdb::IOStatus ReopenWritableFile(const std::string& name, const rocksdb::FileOptions& options,
                                       std::unique_ptr<rocksdb::FSWritableFile>* file,
                                       rocksdb::IODebugContext* debug) override {
    rocksdb::IOStatus status = target()->ReopenWritableFile(name, options, file, debug);
    if (status.ok()) *file = std::make_unique<File>(std::move(*file));
    return status;
  }
  rocksdb::IOStatus NewDirectory(const std::string& name, const rocksdb::IOOptions& options,
                                 std::unique_ptr<rocksdb::FSDirectory>* directory,
                                 rocksdb::IODebugContext* debug) override {
    rocksdb::IOStatus status = target()->NewDirectory(name, options, directory, debug);
    if (status.ok()) *directory = std::make_unique<Directory>(std::move(*directory));
    return status;
  }

 private:
  struct File : rocksdb::FSWritableFileOwnerWrapper {
    using FSWritableFileOwnerWrapper::FSWritableFileOwnerWrapper;
    rocksdb::IOStatus Sync(const rocksdb::IOOptions&, rocksdb::IODebugContext*) override {
      return rocksdb::IOStatus::OK();
    }
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions&, rocksdb::IODebugContext*) override {
      return rocksdb::IOStatus::OK();
    }
    rocksdb::IOStatus RangeSync(uint64_t, uint64_t, const rocksdb::IOOptions&, rocksdb::IODebugContext*) override {
      return rocksdb::IOStatus::OK();
    }
  };
  struct Directory : rocksdb::FSDirectoryWrapper {
    using FSDirectoryWrapper::FSDirectoryWrapper;
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions&, rocksdb::IODebugContext*) override {
      return rocksdb::IOStatus::OK();
    }
    rocksdb::IOStatus FsyncWithDirOptions(const rocksdb::IOOptions&, rocksdb::IODebugContext*,
                                          const rocksdb::DirFsyncOptions&) override {
      return rocksdb::IOStatus::OK();
    }
  };
};

rocksdb::DBOptions DatabaseOptions() {
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
  // The default (16) starts 16 short-lived threads per column family at every open to load
  // a handful of table files: ~100 thread creations per CLI command for nothing.
  db_options.max_file_opening_threads = 1;
  return db_options;
}

std::vector<rocksdb::ColumnFamilyDescriptor> ColumnFamilies() {
  rocksdb::ColumnFamilyOptions cf_options;
  cf_options.OptimizeForSmallDb();
  std::vector<rocksdb::ColumnFamilyDescriptor> families;
  families.emplace_back(rocksdb::kDefaultColumnFamilyName, cf_options);
  for (Table table : kTables) families.emplace_back(std::string(TableName(table)), cf_options);
  return families;
}

// Creates the database at `dir` (which must not exist or be an empty directory) in one
// durable step. RocksDB creating it in place syncs ~25 times (CURRENT, a MANIFEST edit and an
// OPTIONS file per column family, directory fsyncs): ~80 ms on a disk, most of a first
// `strata pull` into a fresh root, which CI jobs and the benchmarks do every time. Here it is
// built in a temporary sibling with those syncs skipped, made durable with one syncfs and
// renamed into place, so a crash leaves either no `dir` or a complete one (plus, at worst, a
// `meta.new-PID` directory nothing reads). When another process put a database at `dir`
// first, ours is dropped and theirs kept.
Status CreateDatabase(const std::filesystem::path& dir) {
  const std::filesystem::path staging = dir.parent_path() / fmt::format("{}.new-{}", dir.filename().string(), ::getpid());
  std::error_code ec;
  std::filesystem::remove_all(staging, ec);
  {
    std::unique_ptr<rocksdb::Env> env =
        rocksdb::NewCompositeEnv(std::make_shared<SkipSyncFileSystem>(rocksdb::FileSystem::Default()));
    rocksdb::DBOptions db_options = DatabaseOptions();
    db_options.env = env.get();
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    rocksdb::Status status = rocksdb::DB::Open(db_options, staging.string(), ColumnFamilies(), &handles, &raw);
    if (!status.ok()) return Fail(FromRocks(status, fmt::format("create metadata db {}", staging.string())));
    std::unique_ptr<rocksdb::DB> db(raw);
    status = db->Put(rocksdb::WriteOptions(), handles[0], ToSlice(kSchemaKey), std::to_string(kSchemaVersion));
    for (auto* handle : handles) db->DestroyColumnFamilyHandle(handle);
    rocksdb::Status closed = db->Close();
    if (!status.ok()) return Fail(FromRocks(status, "write schema version"));
    if (!closed.ok()) return Fail(FromRocks(closed, fmt::format("close metadata db {}", staging.string())));
  }
  STRATA_RETURN_IF_ERROR(SyncFilesystemOf(staging));
  if (::rename(staging.c_str(), dir.c_str()) != 0) {
    const int error = errno;
    std::filesystem::remove_all(staging, ec);
    if (error == ENOTEMPTY || error == EEXIST) return {};  // another process created it first
    return ErrnoFail(error, "rename new metadata db", dir);
  }
  return FsyncDir(dir.parent_path());
}

// No database at `dir` yet: nothing there, or an empty directory.
bool NoDatabaseAt(const std::filesystem::path& dir) {
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) return !ec;
  return std::filesystem::is_directory(dir, ec) && std::filesystem::is_empty(dir, ec) && !ec;
}

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
  if (NoDatabaseAt(dir) && dir.has_parent_path()) STRATA_RETURN_IF_ERROR(CreateDatabase(dir));
  auto rep = std::make_unique<Rep>();
  rep->dir = dir;
  rocksdb::DB* raw = nullptr;
  auto status = rocksdb::DB::Open(DatabaseOptions(), dir.string(), ColumnFamilies(), &rep->handles, &raw);
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
