// SnapshotStore: the containerd snapshot model's metadata, on MetaDB — what exists, its
// kind, parent, labels and times — with no knowledge of directories or mounts (drivers
// add those). Semantics follow containerd's snapshots.v1 API and its storage package
// (shared/reference/containerd-api.md):
//   - keys are opaque strings; a snapshot is active or view while it has a key, and
//     committed under a name once Commit renames it (the id, and so the data, stays);
//   - parents must be committed; a snapshot with children cannot be removed;
//   - every snapshot has a short numeric id naming its directory (snapshots/<id>).
//
// Records in the snapshots table, per snapshotter name S:
//   S \0 "k" \0 <key>     -> {i: id, k: kind, p: parent, c: created ns, u: updated ns,
//                            l: {labels}, s: usage size, n: usage inodes}
//   S \0 "c" \0 <parent> \0 <child>  -> ""        (children index)
//   S \0 "next-id"                    -> decimal   (id allocator)
// Thread-safe: mutations are serialised by one mutex (snapshot operations are rare next
// to reads and each is a single small batch).
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "store/filters.h"
#include "store/meta_db.h"
#include "store/types.h"

namespace strata::snapshotter {

// Values as in containerd's API (Kind enum; never UNKNOWN).
enum class Kind { kView = 1, kActive = 2, kCommitted = 3 };
std::string_view KindName(Kind kind);  // "view", "active", "committed"

struct Usage {
  int64_t size = 0;
  int64_t inodes = 0;
};

struct SnapshotInfo {
  std::string name;    // the key (active/view) or the committed name
  std::string parent;  // "" for none
  Kind kind = Kind::kActive;
  store::Timestamp created_at;
  store::Timestamp updated_at;
  store::Labels labels;
};

// What drivers need besides Info: the directory id, the stored usage of committed
// snapshots, and the ids of the parent chain.
struct SnapshotRecord {
  SnapshotInfo info;
  uint64_t id = 0;
  Usage usage;                        // committed only
  std::vector<uint64_t> parent_ids;  // nearest parent first
};

class SnapshotStore {
 public:
  // `snapshotter` names the namespace (containerd's proxy plugin name, e.g. "strata").
  SnapshotStore(store::MetaDB& db, std::string snapshotter) : db_(db), prefix_(std::move(snapshotter) + '\0') {}

  // Allocates an id no record names and no earlier allocation of this process returned,
  // so a driver can create the snapshot's directory before the record that names it. The
  // counter's write is buffered: it is durable once the record naming the id is (Create
  // syncs). After a power loss an id whose record was never written may come back: its
  // directory, if any, is a leftover no record names, which the driver may replace.
  Result<uint64_t> AllocateId();

  // Creates an active or view snapshot `key` with directory id `id` (from AllocateId; 0 =
  // allocate one here) over committed `parent` ("" = none).
  // AlreadyExists when the key (or a committed name equal to it) exists; NotFound for a
  // missing parent; InvalidArgument for kCommitted, an empty key, or a parent that is not
  // committed. Created == updated.
  Result<SnapshotRecord> Create(Kind kind, const std::string& key, const std::string& parent,
                                const store::Labels& labels, uint64_t id = 0);
  // NotFound when absent.
  Result<SnapshotRecord> Get(const std::string& key) const;
  // Labels only (containerd's Update): no paths = replace all labels; "labels" = same;
  // "labels.<k>" sets or (empty/absent value) deletes one. "parent" or other paths:
  // InvalidArgument. Bumps updated_at.
  Result<SnapshotInfo> Update(const SnapshotInfo& info, const std::vector<std::string>& fieldpaths);
  // Renames active `key` to committed `name` keeping its id; labels replaced; created =
  // updated = now; stores `usage`. NotFound for a missing key; FailedPrecondition for a
  // view or committed key; AlreadyExists for a taken name.
  // `rebase_onto` (containerd's rebase): the committed snapshot's parent becomes this
  // committed snapshot instead; only for an active snapshot prepared without a parent
  // (else FailedPrecondition); NotFound / InvalidArgument for a bad parent, as in Create.
  // `durability`: kBuffered leaves the record to the next synced write or Sync() (a caller
  // committing several snapshots in a row syncs only the last).
  Result<SnapshotRecord> Commit(const std::string& key, const std::string& name, const store::Labels& labels,
                                Usage usage, const std::optional<std::string>& rebase_onto = std::nullopt,
                                store::MetaDB::Durability durability = store::MetaDB::Durability::kSynced);
  // Removes the record (not the directory: the driver's cleanup does that). NotFound;
  // FailedPrecondition when it has children. Returns the removed record. The removal is
  // buffered (MetaDB::Durability::kBuffered): a power loss may bring the record back, which
  // is harmless while its directory exists; call Sync() before deleting the directory.
  Result<SnapshotRecord> Remove(const std::string& key);
  // Makes every change so far durable (removals included).
  Status Sync() { return db_.Sync(); }
  // Visits snapshots matching `filter` (fields: name, parent, kind, labels.<k>) in key order.
  Status Walk(const store::Filter& filter, const std::function<bool(const SnapshotInfo&)>& fn) const;
  // Ids of every snapshot of this snapshotter (for directory cleanup).
  Result<std::vector<uint64_t>> Ids() const;

 private:
  struct Stored;
  Result<std::optional<Stored>> Load(const std::string& key) const;
  std::string RecordKey(std::string_view key) const;
  std::string ChildKey(std::string_view parent, std::string_view child) const;
  Result<SnapshotRecord> ToRecord(const std::string& key, const Stored& stored) const;
  // REQUIRES: mutex_ held.
  Result<uint64_t> AllocateIdLocked();

  store::MetaDB& db_;
  std::string prefix_;
  std::mutex mutex_;  // serialises mutations
};

}  // namespace strata::snapshotter
