#include "images/collect_garbage.h"

#include <cstdint>
#include <set>

#include "snapshotter/snapshot_gc.h"

namespace strata::images {

Result<GarbageReport> CollectGarbage(store::Store& store, snapshotter::OverlaySnapshotter& snapshots, bool dry_run) {
  // Directories under snapshots/ that no snapshot record names go with the content sweep.
  auto live_dirs = [&snapshots]() -> Result<std::set<std::string>> {
    STRATA_ASSIGN_OR_RETURN(std::vector<uint64_t> ids, snapshots.records().Ids());
    std::set<std::string> names;
    for (uint64_t id : ids) names.insert(std::to_string(id));
    return names;
  };
  GarbageReport report;
  STRATA_ASSIGN_OR_RETURN(report.content,
                          (store.CollectGarbage({.dry_run = dry_run, .live_snapshot_dirs = live_dirs})));
  STRATA_ASSIGN_OR_RETURN(report.snapshots_removed, snapshotter::CollectSnapshots(store.content(), snapshots, dry_run));
  if (!dry_run && !report.snapshots_removed.empty()) {
    STRATA_RETURN_IF_ERROR(snapshots.Cleanup());  // their directories
  }
  return report;
}

}  // namespace strata::images
