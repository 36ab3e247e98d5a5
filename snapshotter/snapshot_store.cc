#include "snapshotter/snapshot_store.h"

#include <charconv>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace strata::snapshotter {

using json = nlohmann::json;
using store::Table;

std::string_view KindName(Kind kind) {
  switch (kind) {
    case Kind::kView: return "view";
    case Kind::kActive: return "active";
    case Kind::kCommitted: return "committed";
  }
  return "unknown";
}

// The stored form of one snapshot, as the record encodes it.
struct SnapshotStore::Stored {
  uint64_t id = 0;
  Kind kind = Kind::kActive;
  std::string parent;
  int64_t created = 0;
  int64_t updated = 0;
  store::Labels labels;
  Usage usage;

  std::string Encode() const {
    json doc = {{"i", id}, {"k", static_cast<int>(kind)}, {"p", parent}, {"c", created}, {"u", updated},
                {"l", labels}, {"s", usage.size},          {"n", usage.inodes}};
    auto bytes = json::to_msgpack(doc);
    return std::string(bytes.begin(), bytes.end());
  }

  static Result<Stored> Decode(std::string_view key, std::string_view value) {
    try {
      auto doc = json::from_msgpack(value);
      Stored stored;
      stored.id = doc.at("i").get<uint64_t>();
      const int kind = doc.at("k").get<int>();
      if (kind < 1 || kind > 3) throw std::runtime_error(fmt::format("kind {}", kind));
      stored.kind = static_cast<Kind>(kind);
      stored.parent = doc.at("p").get<std::string>();
      stored.created = doc.at("c").get<int64_t>();
      stored.updated = doc.at("u").get<int64_t>();
      stored.labels = doc.at("l").get<store::Labels>();
      stored.usage = {doc.value("s", int64_t{0}), doc.value("n", int64_t{0})};
      return stored;
    } catch (const std::exception& e) {
      return Fail(ErrorCode::kInternal, "snapshot record {:?}: corrupt: {}", key, e.what());
    }
  }
};

std::string SnapshotStore::RecordKey(std::string_view key) const { return fmt::format("{}k{}{}", prefix_, '\0', key); }

std::string SnapshotStore::ChildKey(std::string_view parent, std::string_view child) const {
  return fmt::format("{}c{}{}{}{}", prefix_, '\0', parent, '\0', child);
}

Result<std::optional<SnapshotStore::Stored>> SnapshotStore::Load(const std::string& key) const {
  STRATA_ASSIGN_OR_RETURN(std::optional<std::string> value, db_.Get(Table::kSnapshots, RecordKey(key)));
  if (!value) return std::optional<Stored>();
  STRATA_ASSIGN_OR_RETURN(Stored stored, Stored::Decode(key, *value));
  return std::optional<Stored>(std::move(stored));
}

Result<SnapshotRecord> SnapshotStore::ToRecord(const std::string& key, const Stored& stored) const {
  SnapshotRecord record;
  record.info = SnapshotInfo{.name = key,
                             .parent = stored.parent,
                             .kind = stored.kind,
                             .created_at = store::FromUnixNanos(stored.created),
                             .updated_at = store::FromUnixNanos(stored.updated),
                             .labels = stored.labels};
  record.id = stored.id;
  record.usage = stored.usage;
  for (std::string parent = stored.parent; !parent.empty();) {
    STRATA_ASSIGN_OR_RETURN(std::optional<Stored> ancestor, Load(parent));
    if (!ancestor) {
      return Fail(ErrorCode::kInternal, "snapshot {:?}: parent {:?} has no record", key, parent);
    }
    record.parent_ids.push_back(ancestor->id);
    parent = ancestor->parent;
  }
  return record;
}

Result<uint64_t> SnapshotStore::AllocateId() {
  std::lock_guard lock(mutex_);
  return AllocateIdLocked();
}

Result<uint64_t> SnapshotStore::AllocateIdLocked() {
  uint64_t next_id = 1;
  const std::string counter_key = prefix_ + "next-id";
  STRATA_ASSIGN_OR_RETURN(std::optional<std::string> counter, db_.Get(Table::kSnapshots, counter_key));
  if (counter) std::from_chars(counter->data(), counter->data() + counter->size(), next_id);
  STRATA_RETURN_IF_ERROR(
      db_.Put(Table::kSnapshots, counter_key, std::to_string(next_id + 1), store::MetaDB::Durability::kBuffered));
  return next_id;
}

Result<SnapshotRecord> SnapshotStore::Create(Kind kind, const std::string& key, const std::string& parent,
                                             const store::Labels& labels, uint64_t id) {
  if (kind == Kind::kCommitted) return Fail(ErrorCode::kInvalidArgument, "snapshot {:?}: cannot create committed", key);
  if (key.empty()) return Fail(ErrorCode::kInvalidArgument, "snapshot key must not be empty");
  STRATA_RETURN_IF_ERROR(store::ValidateLabels(labels));
  std::lock_guard lock(mutex_);
  STRATA_ASSIGN_OR_RETURN(std::optional<Stored> existing, Load(key));
  if (existing) return Fail(ErrorCode::kAlreadyExists, "snapshot {:?} already exists", key);
  if (!parent.empty()) {
    STRATA_ASSIGN_OR_RETURN(std::optional<Stored> parent_record, Load(parent));
    if (!parent_record) return Fail(ErrorCode::kNotFound, "parent snapshot {:?} not found", parent);
    if (parent_record->kind != Kind::kCommitted) {
      return Fail(ErrorCode::kInvalidArgument, "parent snapshot {:?} is {}, not committed", parent,
                  KindName(parent_record->kind));
    }
  }
  if (id == 0) {
    STRATA_ASSIGN_OR_RETURN(id, AllocateIdLocked());
  }

  const int64_t now = store::ToUnixNanos(store::Now());
  Stored stored{.id = id, .kind = kind, .parent = parent, .created = now, .updated = now, .labels = labels};
  store::MetaDB::Batch batch;
  batch.Put(Table::kSnapshots, RecordKey(key), stored.Encode());
  if (!parent.empty()) batch.Put(Table::kSnapshots, ChildKey(parent, key), "");
  STRATA_RETURN_IF_ERROR(db_.Write(batch));
  return ToRecord(key, stored);
}

Result<SnapshotRecord> SnapshotStore::Get(const std::string& key) const {
  STRATA_ASSIGN_OR_RETURN(std::optional<Stored> stored, Load(key));
  if (!stored) return Fail(ErrorCode::kNotFound, "snapshot {:?} not found", key);
  return ToRecord(key, *stored);
}

Result<SnapshotInfo> SnapshotStore::Update(const SnapshotInfo& info, const std::vector<std::string>& fieldpaths) {
  std::lock_guard lock(mutex_);
  STRATA_ASSIGN_OR_RETURN(std::optional<Stored> stored, Load(info.name));
  if (!stored) return Fail(ErrorCode::kNotFound, "snapshot {:?} not found", info.name);
  STRATA_RETURN_IF_ERROR(
      store::ApplyLabelUpdate(stored->labels, info.labels, fieldpaths, fmt::format("snapshot {:?}", info.name)));
  stored->updated = store::ToUnixNanos(store::Now());
  STRATA_RETURN_IF_ERROR(db_.Put(Table::kSnapshots, RecordKey(info.name), stored->Encode()));
  STRATA_ASSIGN_OR_RETURN(SnapshotRecord record, ToRecord(info.name, *stored));
  return record.info;
}

Result<SnapshotRecord> SnapshotStore::Commit(const std::string& key, const std::string& name,
                                             const store::Labels& labels, Usage usage,
                                             const std::optional<std::string>& rebase_onto,
                                             store::MetaDB::Durability durability) {
  if (name.empty()) return Fail(ErrorCode::kInvalidArgument, "commit of {:?}: name must not be empty", key);
  STRATA_RETURN_IF_ERROR(store::ValidateLabels(labels));
  std::lock_guard lock(mutex_);
  STRATA_ASSIGN_OR_RETURN(std::optional<Stored> stored, Load(key));
  if (!stored) return Fail(ErrorCode::kNotFound, "snapshot {:?} not found", key);
  if (stored->kind != Kind::kActive) {
    return Fail(ErrorCode::kFailedPrecondition, "snapshot {:?} is {}: only active snapshots can be committed", key,
                KindName(stored->kind));
  }
  STRATA_ASSIGN_OR_RETURN(std::optional<Stored> taken, Load(name));
  if (taken) return Fail(ErrorCode::kAlreadyExists, "snapshot {:?} already exists", name);
  if (rebase_onto && !stored->parent.empty()) {
    return Fail(ErrorCode::kFailedPrecondition, "commit of {:?} onto {:?}: it already has parent {:?}", key,
                *rebase_onto, stored->parent);
  }
  if (rebase_onto && !rebase_onto->empty()) {
    STRATA_ASSIGN_OR_RETURN(std::optional<Stored> parent_record, Load(*rebase_onto));
    if (!parent_record) return Fail(ErrorCode::kNotFound, "parent snapshot {:?} not found", *rebase_onto);
    if (parent_record->kind != Kind::kCommitted) {
      return Fail(ErrorCode::kInvalidArgument, "parent snapshot {:?} is {}, not committed", *rebase_onto,
                  KindName(parent_record->kind));
    }
  }

  const int64_t now = store::ToUnixNanos(store::Now());
  stored->kind = Kind::kCommitted;
  stored->labels = labels;
  stored->created = now;
  stored->updated = now;
  stored->usage = usage;
  store::MetaDB::Batch batch;
  if (!stored->parent.empty()) batch.Delete(Table::kSnapshots, ChildKey(stored->parent, key));
  if (rebase_onto) stored->parent = *rebase_onto;
  batch.Delete(Table::kSnapshots, RecordKey(key));
  batch.Put(Table::kSnapshots, RecordKey(name), stored->Encode());
  if (!stored->parent.empty()) batch.Put(Table::kSnapshots, ChildKey(stored->parent, name), "");
  STRATA_RETURN_IF_ERROR(db_.Write(batch, durability));
  return ToRecord(name, *stored);
}

Result<SnapshotRecord> SnapshotStore::Remove(const std::string& key) {
  std::lock_guard lock(mutex_);
  STRATA_ASSIGN_OR_RETURN(std::optional<Stored> stored, Load(key));
  if (!stored) return Fail(ErrorCode::kNotFound, "snapshot {:?} not found", key);
  std::string child;
  const std::string children_prefix = fmt::format("{}c{}{}{}", prefix_, '\0', key, '\0');
  STRATA_RETURN_IF_ERROR(db_.Scan(Table::kSnapshots, children_prefix, [&](std::string_view child_key, std::string_view) {
    child = std::string(child_key.substr(children_prefix.size()));
    return false;
  }));
  if (!child.empty()) {
    return Fail(ErrorCode::kFailedPrecondition, "snapshot {:?} has children (e.g. {:?}): remove them first", key,
                child);
  }
  STRATA_ASSIGN_OR_RETURN(SnapshotRecord record, ToRecord(key, *stored));
  store::MetaDB::Batch batch;
  batch.Delete(Table::kSnapshots, RecordKey(key));
  if (!stored->parent.empty()) batch.Delete(Table::kSnapshots, ChildKey(stored->parent, key));
  STRATA_RETURN_IF_ERROR(db_.Write(batch, store::MetaDB::Durability::kBuffered));
  return record;
}

Status SnapshotStore::Walk(const store::Filter& filter, const std::function<bool(const SnapshotInfo&)>& fn) const {
  const std::string records_prefix = fmt::format("{}k{}", prefix_, '\0');
  Status status;
  STRATA_RETURN_IF_ERROR(db_.Scan(Table::kSnapshots, records_prefix, [&](std::string_view key, std::string_view value) {
    const std::string name(key.substr(records_prefix.size()));
    auto stored = Stored::Decode(name, value);
    if (!stored) {
      status = Fail(stored.error());
      return false;
    }
    SnapshotInfo info{.name = name,
                      .parent = stored->parent,
                      .kind = stored->kind,
                      .created_at = store::FromUnixNanos(stored->created),
                      .updated_at = store::FromUnixNanos(stored->updated),
                      .labels = stored->labels};
    const bool matches = filter.Match([&](const std::vector<std::string>& path) -> std::optional<std::string> {
      if (path.size() == 1 && path[0] == "name") return info.name;
      if (path.size() == 1 && path[0] == "parent") return info.parent;
      if (path.size() == 1 && path[0] == "kind") return std::string(KindName(info.kind));
      if (path.size() == 2 && path[0] == "labels") {
        auto it = info.labels.find(path[1]);
        if (it != info.labels.end()) return it->second;
      }
      return std::nullopt;
    });
    return !matches || fn(info);
  }));
  return status;
}

Result<std::vector<uint64_t>> SnapshotStore::Ids() const {
  std::vector<uint64_t> ids;
  const std::string records_prefix = fmt::format("{}k{}", prefix_, '\0');
  Status status;
  STRATA_RETURN_IF_ERROR(db_.Scan(Table::kSnapshots, records_prefix, [&](std::string_view key, std::string_view value) {
    auto stored = Stored::Decode(key, value);
    if (!stored) {
      status = Fail(stored.error());
      return false;
    }
    ids.push_back(stored->id);
    return true;
  }));
  STRATA_RETURN_IF_ERROR(status);
  return ids;
}

}  // namespace strata::snapshotter
