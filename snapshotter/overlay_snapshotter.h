// OverlaySnapshotter: containerd's snapshots.Snapshotter on kernel overlayfs — the
// SnapshotStore's records joined to directories under <root>/snapshots/<id>/{fs,work} and
// the mounts OverlayLayout gives them.
//
// Files first, metadata last: Prepare/View allocate an id, create the directory, then the
// record; a crash in between leaves a directory no record names, which Cleanup removes.
// Remove is metadata-only (fast on a container's teardown path); Cleanup and GC reclaim
// the directories no record names (with a layer's layer.erofs and a container's
// scratch.img inside them).
// With UnionMount::kVm (snapshotter/vm_layout.h): Prepare of an active snapshot also makes
// its scratch disk (size from label strata.io/scratch-size, default 10 GiB sparse);
// Prepare/View/Mounts hand out the vm mounts, building each parent's layer.erofs the first
// time. Commit (any driver) of a snapshot with a scratch disk first copies the disk's
// upper/ into fs/ in overlay form. Layer unpacks (IsLayerUnpack) get the overlay driver's
// mounts and no scratch disk even with kVm: whoever unpacks (containerd's unpacker, strata's
// pull) mounts them on the host and applies a layer tar into fs/. Durability barriers per operation (what bounds the
// snapshot op rate): Prepare/View one (the record's synced write; their directories start
// empty, so Mounts remakes them if a power loss kept only the record), Commit two (syncfs
// of the layer, then the record), Remove none (buffered; Cleanup syncs before it deletes).
// Thread-safe.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <vector>

#include "base/error.h"
#include "snapshotter/mount.h"
#include "snapshotter/overlay_layout.h"
#include "snapshotter/snapshot_store.h"
#include "store/filters.h"
#include "store/meta_db.h"

namespace strata::snapshotter {

// The label containerd's unpacker (and strata's pull) puts on the Prepare of a layer it is
// about to unpack: the layer's chainID.
inline constexpr std::string_view kLabelUnpackTarget = "containerd.io/snapshot.ref";
// Whether active snapshot `key` is a layer being unpacked rather than a container: it has
// kLabelUnpackTarget, or its key's last "/"-part starts with "extract-" (containerd's
// unpack keys: "<ns>/<n>/extract-<random> <chainID>"; strata's pull uses the same form).
bool IsLayerUnpack(const std::string& key, const store::Labels& labels);

// How OverlaySnapshotter::Commit makes a layer and its record durable. The default: syncfs
// of the upper dir's filesystem, then a synced record. A caller committing many snapshots at
// once pays two barriers in all instead of two each (a pull of 40 layers: 80 syncs, ~0.3 s):
// it syncs the filesystem itself once after the last write into any of them (`layer_synced`:
// no syncfs in Commit, unless Commit itself writes into the upper dir, as for a vm
// snapshot), and buffers every record but the last (`record_buffered`; see
// SnapshotStore::Commit).
struct CommitDurability {
  bool layer_synced = false;
  bool record_buffered = false;
};

class OverlaySnapshotter {
 public:
  // `root` is the store root (snapshots/ is created beneath it); `name` the snapshotter's
  // namespace in the metadata. `db` must outlive the snapshotter. `union_mount` chooses what
  // Prepare/View/Mounts hand out for snapshots with parents (OverlayLayout); the records
  // and directories are the same either way.
  static Result<std::unique_ptr<OverlaySnapshotter>> Open(const std::filesystem::path& root, store::MetaDB& db,
                                                          std::string name = "overlayfs",
                                                          UnionMount union_mount = UnionMount::kKernelOverlay);
  // The same with the directories in `snapshots_dir`. Every namespace needs a directory of
  // its own: Cleanup removes whatever its records do not name.
  static Result<std::unique_ptr<OverlaySnapshotter>> OpenIn(const std::filesystem::path& snapshots_dir,
                                                            store::MetaDB& db, std::string name,
                                                            UnionMount union_mount = UnionMount::kKernelOverlay);

  // An active snapshot over committed `parent` ("" = empty), and its mounts. fs is 0755,
  // owned like the parent's fs root (containerd does the same).
  Result<std::vector<Mount>> Prepare(const std::string& key, const std::string& parent, const store::Labels& labels);
  // A read-only view of `parent`.
  Result<std::vector<Mount>> View(const std::string& key, const std::string& parent, const store::Labels& labels);
  Result<std::vector<Mount>> Mounts(const std::string& key) const;
  // Commits active `key` as `name`; its usage is computed now (one walk) and stored, and
  // the upper dir's filesystem is synced before the record says "committed".
  // `rebase_onto`: see SnapshotStore::Commit. Overlay-form layers do not depend on their
  // parent, so a pull unpacks layers concurrently into parentless snapshots and stacks
  // them here, in chain order.
  // `durability`: see CommitDurability.
  Status Commit(const std::string& name, const std::string& key, const store::Labels& labels,
                const std::optional<std::string>& rebase_onto = std::nullopt, CommitDurability durability = {});
  Status Remove(const std::string& key);
  Result<SnapshotInfo> Stat(const std::string& key) const;
  Result<SnapshotInfo> Update(const SnapshotInfo& info, const std::vector<std::string>& fieldpaths);
  Status Walk(const store::Filter& filter, const std::function<bool(const SnapshotInfo&)>& fn) const;
  // Committed: the stored figure. Active/view: a walk of its upper dir (disk blocks and
  // inodes), cached for `usage_cache_ttl` so pollers (CRI stats every few seconds per
  // container) do not walk a big upper dir on every call; Commit and Remove drop the entry.
  Result<Usage> UsageOf(const std::string& key) const;
  void set_usage_cache_ttl(std::chrono::steady_clock::duration ttl) { usage_cache_ttl_ = ttl; }
  // Removes directories under snapshots/ that no record names (crash leftovers, removed
  // snapshots whose directory was busy); one with a mount at or beneath it stays.
  Status Cleanup();

  const OverlayLayout& layout() const { return layout_; }
  // The snapshotter's name: its namespace in the metadata, and the suffix of the
  // "containerd.io/gc.ref.snapshot.<name>" labels that reference its snapshots.
  const std::string& name() const { return name_; }
  SnapshotStore& records() { return records_; }

 private:
  OverlaySnapshotter(std::filesystem::path snapshots_dir, store::MetaDB& db, std::string name, UnionMount union_mount)
      : layout_(snapshots_dir, union_mount), snapshots_dir_(std::move(snapshots_dir)), name_(name), records_(db, std::move(name)) {}
  Result<std::vector<Mount>> Create(Kind kind, const std::string& key, const std::string& parent,
                                    const store::Labels& labels);
  // What Prepare/View/Mounts hand out: OverlayLayout's mount, or with UnionMount::kVm the
  // vm mounts (building missing layer images).
  Result<std::vector<Mount>> MountsOf(const SnapshotRecord& record) const;
  // kVm and not a layer unpack.
  bool UsesVmMounts(const SnapshotInfo& info) const;
  // snapshots/<id> for a fresh id (a leftover of a lost id is replaced).
  Status CreateSnapshotDir(uint64_t id);
  // fs (0755) and, for an active snapshot, work inside snapshots/<id>.
  Status CreateEmptyDirs(uint64_t id, Kind kind) const;
  // Remakes the empty directories of an active or view snapshot whose directory is gone.
  Status RestoreLostDirs(const SnapshotRecord& record) const;

  OverlayLayout layout_;
  std::filesystem::path snapshots_dir_;
  std::string name_;
  SnapshotStore records_;
  struct CachedUsage {
    Usage usage;
    std::chrono::steady_clock::time_point at;
  };
  std::chrono::steady_clock::duration usage_cache_ttl_ = std::chrono::seconds(10);
  mutable std::mutex usage_mutex_;
  mutable std::map<uint64_t, CachedUsage> usage_cache_;  // by snapshot id; guarded by usage_mutex_
  // Create holds it shared from making a snapshot's directory until its record exists;
  // Cleanup exclusively, so it never takes a directory being prepared for a leftover.
  std::shared_mutex dirs_mutex_;
  void ForgetUsage(uint64_t id) const;
};

// Disk usage of the tree at `dir` (st_blocks * 512 summed over distinct inodes, and the
// inode count), not following symlinks or crossing mounts.
Result<Usage> DiskUsage(const std::filesystem::path& dir);

}  // namespace strata::snapshotter
