// Garbage collection of a whole root, as `strata gc` and the daemon's Images.GC run it:
// content first (sweeping snapshot directories no record names), then the snapshots no
// image or mount needs, then their directories.
#pragma once

#include <string>
#include <vector>

#include "base/error.h"
#include "snapshotter/overlay_snapshotter.h"
#include "store/gc.h"
#include "store/store.h"

namespace strata::images {

struct GarbageReport {
  store::GcReport content;
  std::vector<std::string> snapshots_removed;  // names, children before parents
};

// Runs store GC with `snapshots`' directories as the live entries of <root>/snapshots, then
// snapshotter::CollectSnapshots, then Cleanup (when anything was removed). `dry_run`:
// report only. REQUIRES: nothing prepares, commits or removes snapshots of `snapshots`
// meanwhile (the CLI holds the store lock; the daemon its engine lock exclusively).
Result<GarbageReport> CollectGarbage(store::Store& store, snapshotter::OverlaySnapshotter& snapshots, bool dry_run);

}  // namespace strata::images
