// Store: one strata root, opened by one process at a time. Owns the MetaDB and the stores
// built on it, and the root's lock.
//
// Layout under the root (DESIGN.md): lock, meta/ (RocksDB), blobs/, ingest/, snapshots/.
#pragma once

#include <filesystem>
#include <memory>

#include "base/error.h"
#include "base/file.h"
#include "store/content_store.h"
#include "store/fsck.h"
#include "store/gc.h"
#include "store/image_store.h"
#include "store/lease_manager.h"
#include "store/meta_db.h"

namespace strata::store {

class Store {
 public:
  // Creates the root if needed, takes its lock and opens the metadata. FailedPrecondition
  // "store <root> is in use by pid N" when another opener holds it (another process, or
  // another Store in this one). Removes ingest directories no record names (leftovers of a
  // crash between mkdir and record).
  static Result<std::unique_ptr<Store>> Open(const std::filesystem::path& root);
  ~Store();

  const std::filesystem::path& root() const { return root_; }
  MetaDB& db() { return *db_; }
  ContentStore& content() { return *content_; }
  ImageStore& images() { return *images_; }
  LeaseManager& leases() { return *leases_; }

  Result<GcReport> CollectGarbage(const GcOptions& options = {});
  Result<FsckReport> Check(const FsckOptions& options = {});

 private:
  Store() = default;
  std::filesystem::path root_;
  UniqueFd lock_;
  std::unique_ptr<MetaDB> db_;
  std::unique_ptr<LeaseManager> leases_;
  std::unique_ptr<ContentStore> content_;
  std::unique_ptr<ImageStore> images_;
};

}  // namespace strata::store
