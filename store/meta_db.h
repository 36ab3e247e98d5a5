// MetaDB: strata's metadata in RocksDB, one column family per table.
//
// Values are MessagePack maps with short documented keys (see each table's owner:
// content_store.cc, image_store.cc, lease_manager.cc). Writes are synced to the WAL before
// they return unless the caller asks for Durability::kBuffered: a synced record survives a
// crash or power loss; a buffered one survives a crash of the process (the WAL is written
// before Write returns) and becomes power-loss durable with the next synced write or Sync()
// (the WAL is one sequential log).
// Thread-safe: RocksDB serialises writes; callers that need read-modify-write atomicity
// hold their own per-key locks (KeyLocks below).
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <condition_variable>

#include "base/error.h"

namespace strata::store {

// The tables. Their order is the column family order on disk: append only.
enum class Table { kBlobs, kIngests, kImages, kSnapshots, kLeases };
std::string_view TableName(Table table);

// The schema this build writes. Opening a store whose schema is newer fails
// (FailedPrecondition), so an old strata never misreads a newer store.
inline constexpr int kSchemaVersion = 1;

class MetaDB {
 public:
  // Opens or creates the database in `dir`.
  static Result<std::unique_ptr<MetaDB>> Open(const std::filesystem::path& dir);
  ~MetaDB();
  MetaDB(const MetaDB&) = delete;
  MetaDB& operator=(const MetaDB&) = delete;

  // The value of `key`, or nullopt when absent.
  Result<std::optional<std::string>> Get(Table table, std::string_view key) const;

  // A set of writes applied atomically by Write(). Not thread-safe.
  class Batch {
   public:
    Batch();
    ~Batch();
    void Put(Table table, std::string_view key, std::string_view value);
    void Delete(Table table, std::string_view key);
    size_t size() const;

   private:
    friend class MetaDB;
    struct Rep;
    std::unique_ptr<Rep> rep_;
  };
  enum class Durability { kSynced, kBuffered };
  // Applies every write in `batch` atomically; durably unless kBuffered (see above).
  Status Write(Batch& batch, Durability durability = Durability::kSynced);
  Status Put(Table table, std::string_view key, std::string_view value,
             Durability durability = Durability::kSynced);
  Status Delete(Table table, std::string_view key, Durability durability = Durability::kSynced);
  // Makes every write that returned so far durable (one WAL sync).
  Status Sync();

  // Calls fn(key, value) for every key that starts with `prefix`, in key order, over a
  // consistent snapshot. fn returns false to stop early.
  using ScanFn = std::function<bool(std::string_view key, std::string_view value)>;
  Status Scan(Table table, std::string_view prefix, const ScanFn& fn) const;

 private:
  struct Rep;
  explicit MetaDB(std::unique_ptr<Rep> rep);
  std::unique_ptr<Rep> rep_;
};

// Per-key mutual exclusion within the process, for read-modify-write sequences on MetaDB.
// Lock() blocks; TryLock() fails fast. Keys are opaque strings. Thread-safe.
class KeyLocks {
 public:
  class Guard {
   public:
    Guard() = default;
    Guard(Guard&& other) noexcept : owner_(other.owner_), key_(std::move(other.key_)) { other.owner_ = nullptr; }
    Guard& operator=(Guard&& other) noexcept;
    ~Guard();
    explicit operator bool() const { return owner_ != nullptr; }

   private:
    friend class KeyLocks;
    Guard(KeyLocks* owner, std::string key) : owner_(owner), key_(std::move(key)) {}
    KeyLocks* owner_ = nullptr;
    std::string key_;
  };

  Guard Lock(std::string_view key);
  // An empty Guard when another holder has the key.
  Guard TryLock(std::string_view key);

 private:
  void Unlock(const std::string& key);
  std::mutex mu_;
  std::condition_variable released_;
  std::unordered_set<std::string> held_;
};

}  // namespace strata::store
