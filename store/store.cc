#include "store/store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <charconv>
#include <set>

namespace strata::store {
namespace {

namespace fs = std::filesystem;

// flock(2) locks belong to the open file description, so a second Store in the same
// process conflicts too. The holder writes its pid into the file for the error message.
Result<UniqueFd> LockRoot(const fs::path& root) {
  fs::path path = root / "lock";
  STRATA_ASSIGN_OR_RETURN(auto fd, OpenFile(path, O_RDWR | O_CREAT, 0644));
  if (flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) {
      return Fail(ErrorCode::kInternal, "lock store {}: {}", root.string(), strerror(errno));
    }
    std::string holder = "another process";
    if (auto text = ReadFile(path); text && !text->empty()) {
      int pid = 0;
      auto [ptr, ec] = std::from_chars(text->data(), text->data() + text->size(), pid);
      if (ec == std::errc() && pid > 0) holder = fmt::format("pid {}", pid);
    }
    return Fail(ErrorCode::kFailedPrecondition, "store {} is in use by {}", root.string(), holder);
  }
  std::string pid = fmt::format("{}\n", getpid());
  if (ftruncate(fd.get(), 0) != 0 || pwrite(fd.get(), pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    return Fail(ErrorCode::kInternal, "write lock file {}: {}", path.string(), strerror(errno));
  }
  return fd;
}

}  // namespace

Result<std::unique_ptr<Store>> Store::Open(const fs::path& root) {
  std::error_code ec;
  const bool created = fs::create_directories(root, ec);
  if (ec) return Fail(ErrorCode::kInternal, "create store root {}: {}", root.string(), ec.message());
  // A new root's entry is durable before anything inside it is recorded.
  if (created) {
    fs::path absolute = fs::absolute(root).lexically_normal();
    if (!absolute.has_filename()) absolute = absolute.parent_path();  // "dir/" names dir
    STRATA_RETURN_IF_ERROR(FsyncDir(absolute.parent_path()));
  }
  std::unique_ptr<Store> store(new Store());
  store->root_ = fs::absolute(root);
  STRATA_ASSIGN_OR_RETURN(store->lock_, LockRoot(store->root_));
  STRATA_ASSIGN_OR_RETURN(store->db_, MetaDB::Open(store->root_ / "meta"));
  store->leases_ = std::make_unique<LeaseManager>(*store->db_);
  STRATA_ASSIGN_OR_RETURN(store->content_, ContentStore::Open(store->root_, *store->db_, store->leases_.get()));
  store->images_ = std::make_unique<ImageStore>(*store->db_);

  // Ingest directories without a record: a crash came between mkdir and the record.
  std::set<std::string> named;
  STRATA_RETURN_IF_ERROR(store->db_->Scan(Table::kIngests, "", [&](std::string_view key, std::string_view value) {
    std::string dir_id;
    if (ContentStore::DecodeIngest(key, value, &dir_id)) named.insert(dir_id);
    return true;
  }));
  for (const auto& entry : fs::directory_iterator(store->root_ / "ingest", ec)) {
    if (!named.contains(entry.path().filename().string())) fs::remove_all(entry.path(), ec);
  }
  // Blob files a crash published without their record (store/fsck.h).
  STRATA_RETURN_IF_ERROR(FinishInterruptedCommits(*store->content_));
  return store;
}

Store::~Store() = default;

Result<GcReport> Store::CollectGarbage(const GcOptions& options) {
  return store::CollectGarbage(*content_, *images_, *leases_, options);
}

Result<FsckReport> Store::Check(const FsckOptions& options) { return CheckStore(*content_, options); }

}  // namespace strata::store
