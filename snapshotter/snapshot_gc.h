// Garbage collection of snapshots, after containerd's: what the content store's images
// reference stays, the rest goes.
#pragma once

#include <string>
#include <vector>

#include "base/error.h"
#include "snapshotter/overlay_snapshotter.h"
#include "store/content_store.h"

namespace strata::snapshotter {

// Label an active snapshot may carry with an RFC 3339 time after which GC removes it: the
// extract snapshots of a pull that crashed.
inline constexpr std::string_view kLabelSnapshotExpire = "containerd.io/gc.expire";

// Removes the committed snapshots nothing needs, and expired active ones. Roots: every
// active snapshot and view not expired, and every committed snapshot named by a
// "containerd.io/gc.ref.snapshot.<snapshotter name>" label of a blob in `content` (an image
// config's top layer); the parent chains of roots are kept too. Returns the removed names,
// children before parents; removal is metadata-only (OverlaySnapshotter::Remove), so call
// Cleanup after for their directories. `dry_run`: report only. REQUIRES: no concurrent Prepare/Commit (the CLI holds the
// store lock; the daemon will hold the GC lock).
Result<std::vector<std::string>> CollectSnapshots(const store::ContentStore& content, OverlaySnapshotter& snapshots,
                                                  bool dry_run);

}  // namespace strata::snapshotter
