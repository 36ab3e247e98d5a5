#include "store/fsck.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <mutex>
#include <set>

#include "base/file.h"
#include "store/content_store.h"

namespace strata::store {
namespace {

namespace fs = std::filesystem;

// Rehashes a file; nullopt if it cannot be read.
std::optional<Digest> HashFile(const fs::path& path, DigestAlgorithm algorithm, int64_t* size) {
  auto fd = OpenFile(path, O_RDONLY);
  if (!fd) return std::nullopt;
  posix_fadvise(fd->get(), 0, 0, POSIX_FADV_SEQUENTIAL);
  Digester digester(algorithm);
  std::string buffer(1 << 20, '\0');
  *size = 0;
  while (true) {
    ssize_t n = read(fd->get(), buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::nullopt;
    if (n == 0) break;
    digester.Update(buffer.data(), static_cast<size_t>(n));
    *size += n;
  }
  return digester.Finish();
}

}  // namespace

Result<FsckReport> CheckStore(ContentStore& content, const FsckOptions& options) {
  std::unique_lock gc(content.gc_lock());
  MetaDB& db = content.db();
  FsckReport report;
  auto problem = [&](std::string kind, std::string subject, std::string detail) -> FsckProblem& {
    report.problems.push_back({std::move(kind), std::move(subject), std::move(detail), false});
    return report.problems.back();
  };
  auto drop_blob = [&](FsckProblem& p, const std::string& key, const fs::path& path) -> Status {
    if (!options.repair) return {};
    STRATA_RETURN_IF_ERROR(db.Delete(Table::kBlobs, key));
    std::error_code ec;
    fs::remove(path, ec);
    p.repaired = true;
    return {};
  };

  // Records -> disk.
  std::vector<std::pair<std::string, std::string>> records;
  STRATA_RETURN_IF_ERROR(db.Scan(Table::kBlobs, "", [&](std::string_view key, std::string_view value) {
    records.emplace_back(key, value);
    return true;
  }));
  std::set<std::string> recorded_paths;
  for (const auto& [key, value] : records) {
    auto digest = Digest::Parse(key);
    std::optional<ContentInfo> info;
    if (digest) {
      if (auto decoded = ContentStore::DecodeInfo(*digest, value)) info = std::move(*decoded);
    }
    if (!info) {
      auto& p = problem("corrupt-record", key, "blob record cannot be decoded");
      if (options.repair) {
        STRATA_RETURN_IF_ERROR(db.Delete(Table::kBlobs, key));
        p.repaired = true;
      }
      continue;
    }
    fs::path path = content.BlobPath(info->digest);
    recorded_paths.insert(path.string());
    ++report.blobs_checked;
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) {
      auto& p = problem("missing-blob", key, fmt::format("file {} is missing", path.string()));
      STRATA_RETURN_IF_ERROR(drop_blob(p, key, path));
      continue;
    }
    if (st.st_size != info->size) {
      auto& p = problem("size-mismatch", key,
                        fmt::format("file has {} bytes, record says {}", st.st_size, info->size));
      STRATA_RETURN_IF_ERROR(drop_blob(p, key, path));
      continue;
    }
    if (!options.quick) {
      int64_t size = 0;
      auto actual = HashFile(path, info->digest.algorithm(), &size);
      report.bytes_checked += size;
      if (!actual || *actual != info->digest) {
        auto& p = problem("corrupt-blob", key,
                          actual ? fmt::format("content hashes to {}", *actual) : std::string("unreadable"));
        STRATA_RETURN_IF_ERROR(drop_blob(p, key, path));
        continue;
      }
    }
    if ((st.st_mode & 07777) != 0444) {
      auto& p = problem("bad-mode", key, fmt::format("mode {:o}, expected 444", st.st_mode & 07777));
      if (options.repair && chmod(path.c_str(), 0444) == 0) p.repaired = true;
    }
  }

  // Disk -> records.
  std::error_code ec;
  for (const auto alg : {DigestAlgorithm::kSha256, DigestAlgorithm::kSha512}) {
    fs::path dir = content.root() / "blobs" / std::string(DigestAlgorithmName(alg));
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      if (recorded_paths.contains(entry.path().string())) continue;
      auto rel = fs::relative(entry.path(), content.root()).string();
      auto name = fmt::format("{}:{}", DigestAlgorithmName(alg), entry.path().filename().string());
      auto digest = Digest::Parse(name);
      int64_t size = 0;
      std::optional<Digest> actual;
      if (digest && entry.is_regular_file()) actual = HashFile(entry.path(), alg, &size);
      if (digest && actual && *actual == *digest) {
        auto& p = problem("unrecorded-blob", rel, "verified blob with no record");
        if (options.repair) {
          Timestamp now = Now();
          ContentInfo info{*digest, size, now, now, {}};
          chmod(entry.path().c_str(), 0444);
          STRATA_RETURN_IF_ERROR(db.Put(Table::kBlobs, digest->ToString(), ContentStore::EncodeInfo(info)));
          p.repaired = true;
        }
      } else {
        auto& p = problem("orphan-file", rel, "file is not a recorded or verifiable blob");
        if (options.repair) {
          fs::remove_all(entry.path(), ec);
          p.repaired = !ec;
        }
      }
    }
  }

  // Ingests.
  std::set<std::string> ingest_dirs;
  std::vector<std::pair<std::string, std::string>> ingests;
  STRATA_RETURN_IF_ERROR(db.Scan(Table::kIngests, "", [&](std::string_view key, std::string_view value) {
    ingests.emplace_back(key, value);
    return true;
  }));
  for (const auto& [ref, value] : ingests) {
    std::string dir_id;
    if (!ContentStore::DecodeIngest(ref, value, &dir_id)) {
      auto& p = problem("corrupt-record", ref, "ingest record cannot be decoded");
      if (options.repair) {
        STRATA_RETURN_IF_ERROR(db.Delete(Table::kIngests, ref));
        p.repaired = true;
      }
      continue;
    }
    ingest_dirs.insert(dir_id);
    if (!fs::exists(content.IngestDir(dir_id) / "data")) {
      if (content.IngestActive(ref)) continue;
      auto& p = problem("missing-ingest-data", ref, "ingest has no data file");
      if (options.repair) {
        STRATA_RETURN_IF_ERROR(db.Delete(Table::kIngests, ref));
        fs::remove_all(content.IngestDir(dir_id), ec);
        p.repaired = true;
      }
    }
  }
  for (const auto& entry : fs::directory_iterator(content.root() / "ingest", ec)) {
    if (ingest_dirs.contains(entry.path().filename().string())) continue;
    auto& p = problem("orphan-ingest", fs::relative(entry.path(), content.root()).string(),
                      "ingest directory with no record");
    if (options.repair) {
      fs::remove_all(entry.path(), ec);
      p.repaired = !ec;
    }
  }
  return report;
}

Result<int> FinishInterruptedCommits(ContentStore& content) {
  MetaDB& db = content.db();
  std::vector<std::pair<std::string, std::string>> ingests;
  STRATA_RETURN_IF_ERROR(db.Scan(Table::kIngests, "", [&](std::string_view key, std::string_view value) {
    ingests.emplace_back(key, value);
    return true;
  }));
  int finished = 0;
  for (const auto& [ref, value] : ingests) {
    std::string dir_id;
    auto status = ContentStore::DecodeIngest(ref, value, &dir_id);
    if (!status || !status->expected) continue;
    std::error_code ec;
    if (fs::exists(content.IngestDir(dir_id) / "data", ec)) continue;
    const Digest& digest = *status->expected;
    STRATA_ASSIGN_OR_RETURN(auto recorded, db.Get(Table::kBlobs, digest.ToString()));
    const fs::path blob = content.BlobPath(digest);
    if (recorded || !fs::exists(blob, ec)) continue;
    int64_t size = 0;
    auto actual = HashFile(blob, digest.algorithm(), &size);
    if (!actual || *actual != digest || (status->total > 0 && size != status->total)) continue;
    Timestamp now = Now();
    MetaDB::Batch batch;
    batch.Put(Table::kBlobs, digest.ToString(), ContentStore::EncodeInfo({digest, size, now, now, {}}));
    batch.Delete(Table::kIngests, ref);
    STRATA_RETURN_IF_ERROR(db.Write(batch));
    fs::remove_all(content.IngestDir(dir_id), ec);
    ++finished;
  }
  return finished;
}

}  // namespace strata::store
