// Leases: named holds that keep content, ingests and snapshots alive through GC while an
// operation (a pull, an unpack) is in flight. Mirrors containerd's leases.Manager.
//
// Records in the leases table:
//   key <id>                         -> {c: created ns, l: {labels}}
//   key <id> \0 <type> \0 <resource> -> "" (one per held resource)
// Resource types: "content" (a digest), "ingests" (an ingest ref), "snapshots/<driver>"
// (a snapshot key). A lease with label containerd.io/gc.expire (RFC 3339) expires then; GC
// deletes expired leases. Thread-safe.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "store/filters.h"
#include "store/meta_db.h"
#include "store/types.h"

namespace strata::store {

struct Lease {
  std::string id;
  Timestamp created_at;
  Labels labels;
  // The expiry time from the containerd.io/gc.expire label, if any (and parseable).
  std::optional<Timestamp> ExpiresAt() const;
};

struct LeaseResource {
  std::string type;
  std::string id;
  bool operator==(const LeaseResource&) const = default;
};

class LeaseManager {
 public:
  explicit LeaseManager(MetaDB& db) : db_(db) {}

  // Creates lease `id` (a fresh random id when empty). `ttl` > 0 sets containerd.io/gc.expire.
  // AlreadyExists if the id is taken; InvalidArgument for ids with NUL or over 256 bytes.
  Result<Lease> Create(std::string id, Labels labels, std::chrono::seconds ttl = std::chrono::seconds(0));
  Result<Lease> Get(const std::string& id) const;
  // Deletes the lease and its resource records (not the resources). NotFound if absent.
  Status Delete(const std::string& id);
  // Fields: id, labels.<k>.
  Result<std::vector<Lease>> List(const Filter& filter) const;

  // NotFound if the lease does not exist.
  Status AddResource(const std::string& lease, const LeaseResource& resource);
  Status DeleteResource(const std::string& lease, const LeaseResource& resource);
  Result<std::vector<LeaseResource>> ListResources(const std::string& lease) const;
  // Adds the resource record to `batch` without checking the lease (the caller checked it,
  // or GC tolerates dangling resource records).
  static void AddResourceToBatch(MetaDB::Batch& batch, const std::string& lease, const LeaseResource& resource);
  static void DeleteResourceFromBatch(MetaDB::Batch& batch, const std::string& lease, const LeaseResource& resource);

 private:
  MetaDB& db_;
  KeyLocks locks_;
};

// A lease that lives as long as this object: created with a fresh id and a TTL (so a
// crashed holder's lease still expires), deleted on destruction. Move-only.
class ScopedLease {
 public:
  static Result<ScopedLease> Create(LeaseManager& leases, Labels labels, std::chrono::seconds ttl);
  ScopedLease(ScopedLease&& other) noexcept : leases_(other.leases_), id_(std::move(other.id_)) { other.id_.clear(); }
  ScopedLease& operator=(ScopedLease&&) = delete;
  ~ScopedLease();
  const std::string& id() const { return id_; }

 private:
  ScopedLease(LeaseManager& leases, std::string id) : leases_(leases), id_(std::move(id)) {}
  LeaseManager& leases_;
  std::string id_;
};

}  // namespace strata::store
