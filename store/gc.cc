#include "store/gc.h"

#include <sys/stat.h>

#include <deque>
#include <filesystem>
#include <mutex>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "base/log.h"
#include "base/mounts.h"
#include "store/content_store.h"
#include "store/image_store.h"
#include "store/lease_manager.h"

namespace strata::store {
namespace {

namespace fs = std::filesystem;

// Digests referenced by a blob's gc.ref.content labels ("containerd.io/gc.ref.content",
// "...content.l.0", "...content.config", ...).
void ReferencedDigests(const Labels& labels, std::vector<Digest>& out) {
  for (const auto& [key, value] : labels) {
    if (!key.starts_with(kLabelGcRefContentPrefix)) continue;
    if (auto digest = Digest::Parse(value)) out.push_back(std::move(*digest));
  }
}

int64_t FileSize(const fs::path& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 ? st.st_size : 0;
}

}  // namespace

Result<GcReport> CollectGarbage(ContentStore& content, ImageStore& images, LeaseManager& leases,
                                const GcOptions& options) {
  std::unique_lock gc(content.gc_lock());
  GcReport report;
  MetaDB& db = content.db();

  // Leases: drop the expired ones, collect what the live ones hold.
  std::unordered_set<Digest> marked;
  std::deque<Digest> pending;
  auto mark = [&](const Digest& digest) {
    if (marked.insert(digest).second) pending.push_back(digest);
  };
  std::unordered_set<std::string> leased_ingests;
  STRATA_ASSIGN_OR_RETURN(auto all_leases, leases.List(Filter()));
  Timestamp now = Now();
  for (const auto& lease : all_leases) {
    auto expires = lease.ExpiresAt();
    if (expires && *expires <= now) {
      report.leases_expired.push_back(lease.id);
      if (!options.dry_run) STRATA_RETURN_IF_ERROR(leases.Delete(lease.id));
      continue;
    }
    STRATA_ASSIGN_OR_RETURN(auto resources, leases.ListResources(lease.id));
    for (const auto& resource : resources) {
      if (resource.type == "content") {
        if (auto digest = Digest::Parse(resource.id)) mark(*digest);
      } else if (resource.type == "ingests") {
        leased_ingests.insert(resource.id);
      }
    }
  }

  STRATA_ASSIGN_OR_RETURN(auto all_images, images.List(Filter()));
  for (const auto& image : all_images) mark(image.target.digest);
  for (const auto& source : options.root_sources) STRATA_RETURN_IF_ERROR(source(mark));

  // Blob records: gc.root labels are roots; remember every record for the sweep.
  std::vector<ContentInfo> blobs;
  STRATA_RETURN_IF_ERROR(content.Walk(Filter(), [&](const ContentInfo& info) {
    if (info.labels.contains(std::string(kLabelGcRoot))) mark(info.digest);
    blobs.push_back(info);
    return true;
  }));
  std::unordered_map<Digest, const ContentInfo*> by_digest;
  for (const auto& info : blobs) by_digest.emplace(info.digest, &info);

  while (!pending.empty()) {
    Digest digest = std::move(pending.front());
    pending.pop_front();
    auto it = by_digest.find(digest);
    if (it == by_digest.end()) continue;  // referenced but not (yet) present
    std::vector<Digest> children;
    ReferencedDigests(it->second->labels, children);
    for (const auto& child : children) mark(child);
  }

  // Sweep blobs: record first, then file.
  std::set<std::string> recorded_files;
  for (const auto& info : blobs) {
    auto path = content.BlobPath(info.digest);
    if (marked.contains(info.digest)) {
      ++report.blobs_kept;
      recorded_files.insert(path.string());
      continue;
    }
    report.blobs_removed.push_back(info.digest);
    report.bytes_freed += info.size;
    if (options.dry_run) continue;
    STRATA_RETURN_IF_ERROR(db.Delete(Table::kBlobs, info.digest.ToString()));
    std::error_code ec;
    fs::remove(path, ec);
  }

  // Sweep ingests no lease holds and no writer has open.
  // Ingest dirs the orphan sweep below must skip: live ones, and in a dry run the stale
  // ones already reported (a real run has removed them).
  std::set<std::string> accounted_ingest_dirs;
  std::vector<std::pair<std::string, std::string>> stale;  // ref, dir id
  STRATA_RETURN_IF_ERROR(db.Scan(Table::kIngests, "", [&](std::string_view key, std::string_view value) {
    std::string ref(key);
    std::string dir_id;
    if (!ContentStore::DecodeIngest(ref, value, &dir_id)) dir_id = ContentStore::IngestDirId(ref);
    if (leased_ingests.contains(ref) || content.IngestActive(ref)) {
      accounted_ingest_dirs.insert(dir_id);
    } else {
      stale.emplace_back(ref, dir_id);
    }
    return true;
  }));
  for (const auto& [ref, dir_id] : stale) {
    report.ingests_removed.push_back(ref);
    report.bytes_freed += FileSize(content.IngestDir(dir_id) / "data");
    if (options.dry_run) {
      accounted_ingest_dirs.insert(dir_id);
      continue;
    }
    STRATA_RETURN_IF_ERROR(db.Delete(Table::kIngests, ref));
    std::error_code ec;
    fs::remove_all(content.IngestDir(dir_id), ec);
  }

  // Files no record names.
  std::error_code ec;
  for (const char* alg : {"sha256", "sha512"}) {
    for (const auto& entry : fs::directory_iterator(content.root() / "blobs" / alg, ec)) {
      if (recorded_files.contains(entry.path().string())) continue;
      report.orphan_files_removed.push_back(fs::relative(entry.path(), content.root()).string());
      report.bytes_freed += FileSize(entry.path());
      if (!options.dry_run) fs::remove(entry.path(), ec);
    }
  }
  for (const auto& entry : fs::directory_iterator(content.root() / "ingest", ec)) {
    auto name = entry.path().filename().string();
    if (accounted_ingest_dirs.contains(name)) continue;
    report.orphan_files_removed.push_back(fs::relative(entry.path(), content.root()).string());
    report.bytes_freed += FileSize(entry.path() / "data");
    if (!options.dry_run) fs::remove_all(entry.path(), ec);
  }
  if (options.live_snapshot_dirs) {
    STRATA_ASSIGN_OR_RETURN(auto live, options.live_snapshot_dirs());
    for (const auto& entry : fs::directory_iterator(content.root() / "snapshots", ec)) {
      if (live.contains(entry.path().filename().string())) continue;
      report.snapshot_dirs_removed.push_back(fs::relative(entry.path(), content.root()).string());
      // Never recurse into a mount: that would delete whatever is mounted there.
      STRATA_ASSIGN_OR_RETURN(auto mounts, MountPointsAtOrBeneath(entry.path()));
      if (!mounts.empty()) {
        spdlog::warn("gc: keeping orphaned snapshot {}: {} is mounted", entry.path().string(), mounts.back().string());
        report.snapshot_dirs_removed.pop_back();
        continue;
      }
      if (!options.dry_run) {
        fs::remove_all(entry.path(), ec);
        if (ec) return Fail(ErrorCode::kInternal, "remove {}: {}", entry.path().string(), ec.message());
      }
    }
  }
  spdlog::info("gc: removed {} blobs, {} ingests, {} orphan files, {} expired leases; {} bytes freed",
               report.blobs_removed.size(), report.ingests_removed.size(), report.orphan_files_removed.size(),
               report.leases_expired.size(), report.bytes_freed);
  return report;
}

}  // namespace strata::store
