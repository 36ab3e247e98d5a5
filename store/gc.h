// Garbage collection: mark from roots, sweep the rest, as containerd's metadata GC does.
//
// Roots: every image's target; blobs labelled containerd.io/gc.root; every resource of an
// unexpired lease (content, ingests); and whatever extra root sources report (the
// snapshotter adds the content its snapshots reference). Marking follows
// containerd.io/gc.ref.content* labels from blob to blob. Swept: unmarked blobs, ingests
// no lease holds and no writer has open, expired leases, and files on disk that no record
// names (blob files, ingest directories, temp files, and, when the snapshotter says which
// snapshot directories are live, the other entries of <root>/snapshots).
#pragma once

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "base/digest.h"
#include "base/error.h"

namespace strata::store {

class ContentStore;
class ImageStore;
class LeaseManager;

struct GcOptions {
  bool dry_run = false;  // report what would go, remove nothing
  // Extra roots: each source calls mark(digest) for content it keeps alive.
  std::vector<std::function<Status(const std::function<void(const Digest&)>& mark)>> root_sources;
  // Names of the live entries of <root>/snapshots; every other entry there is swept. Unset =
  // snapshots/ is left alone. REQUIRES: whoever creates a snapshot directory holds the
  // content store's gc_lock() shared from its mkdir until its record is written.
  std::function<Result<std::set<std::string>>()> live_snapshot_dirs;
};

struct GcReport {
  std::vector<Digest> blobs_removed;
  int64_t bytes_freed = 0;
  std::vector<std::string> ingests_removed;
  std::vector<std::string> leases_expired;
  std::vector<std::string> orphan_files_removed;  // paths relative to the root
  std::vector<std::string> snapshot_dirs_removed;  // paths relative to the root
  int64_t blobs_kept = 0;
};

// Holds the content store's GC lock exclusively for the whole run, so no commit lands
// between mark and sweep.
Result<GcReport> CollectGarbage(ContentStore& content, ImageStore& images, LeaseManager& leases,
                                const GcOptions& options);

}  // namespace strata::store
