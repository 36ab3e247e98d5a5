#include "store/lease_manager.h"

#include <openssl/rand.h>

#include <nlohmann/json.hpp>

namespace strata::store {
namespace {

using json = nlohmann::json;

std::string ResourceKey(const std::string& lease, const LeaseResource& resource) {
  std::string key = lease;
  key += '\0';
  key += resource.type;
  key += '\0';
  key += resource.id;
  return key;
}

std::string RandomId() {
  unsigned char bytes[12];
  RAND_bytes(bytes, sizeof bytes);
  std::string id;
  for (unsigned char b : bytes) id += fmt::format("{:02x}", b);
  return id;
}

Result<Lease> DecodeLease(std::string_view id, std::string_view value) {
  try {
    auto doc = json::from_msgpack(value);
    Lease lease;
    lease.id = std::string(id);
    lease.created_at = FromUnixNanos(doc.at("c").get<int64_t>());
    if (doc.contains("l")) lease.labels = doc["l"].get<Labels>();
    return lease;
  } catch (const json::exception& e) {
    return Fail(ErrorCode::kInternal, "lease {:?}: corrupt record: {}", id, e.what());
  }
}

std::string EncodeLease(const Lease& lease) {
  json doc = {{"c", ToUnixNanos(lease.created_at)}, {"l", lease.labels}};
  auto bytes = json::to_msgpack(doc);
  return std::string(bytes.begin(), bytes.end());
}

}  // namespace

std::optional<Timestamp> Lease::ExpiresAt() const {
  auto it = labels.find(std::string(kLabelGcExpire));
  if (it == labels.end()) return std::nullopt;
  auto parsed = ParseTimestamp(it->second);
  if (!parsed) return std::nullopt;
  return *parsed;
}

Result<Lease> LeaseManager::Create(std::string id, Labels labels, std::chrono::seconds ttl) {
  if (id.empty()) id = RandomId();
  if (id.size() > 256 || id.find('\0') != std::string::npos) {
    return Fail(ErrorCode::kInvalidArgument, "invalid lease id {:?}", id.substr(0, 64));
  }
  if (ttl.count() > 0) labels[std::string(kLabelGcExpire)] = FormatTimestamp(Now() + ttl);
  STRATA_RETURN_IF_ERROR(ValidateLabels(labels));
  auto guard = locks_.Lock(id);
  STRATA_ASSIGN_OR_RETURN(auto existing, db_.Get(Table::kLeases, id));
  if (existing) return Fail(ErrorCode::kAlreadyExists, "lease {:?} already exists", id);
  Lease lease{id, Now(), std::move(labels)};
  STRATA_RETURN_IF_ERROR(db_.Put(Table::kLeases, id, EncodeLease(lease)));
  return lease;
}

Result<Lease> LeaseManager::Get(const std::string& id) const {
  STRATA_ASSIGN_OR_RETURN(auto value, db_.Get(Table::kLeases, id));
  if (!value) return Fail(ErrorCode::kNotFound, "lease {:?} not found", id);
  return DecodeLease(id, *value);
}

Status LeaseManager::Delete(const std::string& id) {
  auto guard = locks_.Lock(id);
  STRATA_ASSIGN_OR_RETURN(auto value, db_.Get(Table::kLeases, id));
  if (!value) return Fail(ErrorCode::kNotFound, "lease {:?} not found", id);
  MetaDB::Batch batch;
  batch.Delete(Table::kLeases, id);
  std::string prefix = id + '\0';
  STRATA_RETURN_IF_ERROR(db_.Scan(Table::kLeases, prefix, [&](std::string_view key, std::string_view) {
    batch.Delete(Table::kLeases, key);
    return true;
  }));
  return db_.Write(batch);
}

Result<std::vector<Lease>> LeaseManager::List(const Filter& filter) const {
  std::vector<Lease> leases;
  Status status;
  STRATA_RETURN_IF_ERROR(db_.Scan(Table::kLeases, "", [&](std::string_view key, std::string_view value) {
    if (key.find('\0') != std::string_view::npos) return true;  // a resource record
    auto lease = DecodeLease(key, value);
    if (!lease) {
      status = Fail(lease.error());
      return false;
    }
    bool match = filter.Match([&](const std::vector<std::string>& path) -> std::optional<std::string> {
      if (path.size() == 1 && path[0] == "id") return lease->id;
      if (path.size() == 2 && path[0] == "labels") {
        auto it = lease->labels.find(path[1]);
        if (it != lease->labels.end()) return it->second;
      }
      return std::nullopt;
    });
    if (match) leases.push_back(std::move(*lease));
    return true;
  }));
  STRATA_RETURN_IF_ERROR(status);
  return leases;
}

Status LeaseManager::AddResource(const std::string& lease, const LeaseResource& resource) {
  auto guard = locks_.Lock(lease);
  STRATA_ASSIGN_OR_RETURN(auto value, db_.Get(Table::kLeases, lease));
  if (!value) return Fail(ErrorCode::kNotFound, "lease {:?} not found", lease);
  return db_.Put(Table::kLeases, ResourceKey(lease, resource), "");
}

Status LeaseManager::DeleteResource(const std::string& lease, const LeaseResource& resource) {
  return db_.Delete(Table::kLeases, ResourceKey(lease, resource));
}

Result<std::vector<LeaseResource>> LeaseManager::ListResources(const std::string& lease) const {
  STRATA_ASSIGN_OR_RETURN(auto value, db_.Get(Table::kLeases, lease));
  if (!value) return Fail(ErrorCode::kNotFound, "lease {:?} not found", lease);
  std::vector<LeaseResource> resources;
  std::string prefix = lease + '\0';
  STRATA_RETURN_IF_ERROR(db_.Scan(Table::kLeases, prefix, [&](std::string_view key, std::string_view) {
    auto rest = key.substr(prefix.size());
    auto sep = rest.find('\0');
    if (sep != std::string_view::npos) {
      resources.push_back({std::string(rest.substr(0, sep)), std::string(rest.substr(sep + 1))});
    }
    return true;
  }));
  return resources;
}

void LeaseManager::AddResourceToBatch(MetaDB::Batch& batch, const std::string& lease, const LeaseResource& resource) {
  batch.Put(Table::kLeases, ResourceKey(lease, resource), "");
}

void LeaseManager::DeleteResourceFromBatch(MetaDB::Batch& batch, const std::string& lease,
                                           const LeaseResource& resource) {
  batch.Delete(Table::kLeases, ResourceKey(lease, resource));
}

Result<ScopedLease> ScopedLease::Create(LeaseManager& leases, Labels labels, std::chrono::seconds ttl) {
  STRATA_ASSIGN_OR_RETURN(Lease lease, leases.Create("", std::move(labels), ttl));
  return ScopedLease(leases, lease.id);
}

ScopedLease::~ScopedLease() {
  if (!id_.empty()) (void)leases_.Delete(id_);
}

}  // namespace strata::store
