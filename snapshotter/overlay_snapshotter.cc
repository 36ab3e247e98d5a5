#include "snapshotter/overlay_snapshotter.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <set>
#include <system_error>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "base/file.h"
#include "base/mounts.h"
#include "snapshotter/scratch_disk.h"
#include "snapshotter/vm_layout.h"

namespace strata::snapshotter {

namespace fs = std::filesystem;

Result<Usage> DiskUsage(const fs::path& dir) {
  Usage usage;
  std::set<std::pair<dev_t, ino_t>> seen;
  struct stat root_stat {};
  if (::lstat(dir.c_str(), &root_stat) != 0) return ErrnoFail(errno, "stat", dir);
  auto count = [&](const fs::path& path) -> Status {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) return ErrnoFail(errno, "stat", path);
    if (seen.insert({st.st_dev, st.st_ino}).second) {
      usage.size += static_cast<int64_t>(st.st_blocks) * 512;
      usage.inodes += 1;
    }
    return {};
  };
  STRATA_RETURN_IF_ERROR(count(dir));
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, fs::directory_options::none, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    STRATA_RETURN_IF_ERROR(count(it->path()));
    struct stat st {};
    // Do not descend into other filesystems (a mount inside a snapshot is not its usage).
    if (it->is_directory(ec) && ::lstat(it->path().c_str(), &st) == 0 && st.st_dev != root_stat.st_dev) {
      it.disable_recursion_pending();
    }
  }
  if (ec) return Fail(ErrorCode::kInternal, "usage of {}: {}", dir.string(), ec.message());
  return usage;
}

Result<std::unique_ptr<OverlaySnapshotter>> OverlaySnapshotter::Open(const fs::path& root, store::MetaDB& db,
                                                                     std::string name, UnionMount union_mount) {
  return OpenIn(root / "snapshots", db, std::move(name), union_mount);
}

Result<std::unique_ptr<OverlaySnapshotter>> OverlaySnapshotter::OpenIn(const fs::path& snapshots_dir,
                                                                       store::MetaDB& db, std::string name,
                                                                       UnionMount union_mount) {
  std::error_code ec;
  fs::create_directories(snapshots_dir, ec);
  if (ec) return Fail(ErrorCode::kInternal, "create {}: {}", snapshots_dir.string(), ec.message());
  return std::unique_ptr<OverlaySnapshotter>(new OverlaySnapshotter(snapshots_dir, db, std::move(name), union_mount));
}

Result<std::vector<Mount>> OverlaySnapshotter::Create(Kind kind, const std::string& key, const std::string& parent,
                                                      const store::Labels& labels) {
  // Checks that fail cheaply come first, so no id or directory is spent on them.
  if (records_.Get(key)) return Fail(ErrorCode::kAlreadyExists, "snapshot {:?} already exists", key);
  std::optional<SnapshotRecord> parent_record;
  if (!parent.empty()) {
    STRATA_ASSIGN_OR_RETURN(parent_record, records_.Get(parent));
  }

  std::shared_lock dirs(dirs_mutex_);  // until the record names the directory
  STRATA_ASSIGN_OR_RETURN(uint64_t id, records_.AllocateId());
  const fs::path dir = layout_.SnapshotDir(id);
  STRATA_RETURN_IF_ERROR(CreateSnapshotDir(id));
  auto created = [&]() -> Result<SnapshotRecord> {
    const fs::path fs_dir = layout_.FsDir(id);
    STRATA_RETURN_IF_ERROR(CreateEmptyDirs(id, kind));
    if (parent_record) {
      // The new upper's root takes the owner of the parent's root, as containerd does.
      struct stat st {};
      const fs::path parent_fs = layout_.FsDir(parent_record->id);
      if (::stat(parent_fs.c_str(), &st) == 0 && ::chown(fs_dir.c_str(), st.st_uid, st.st_gid) != 0) {
        return ErrnoFail(errno, "chown", fs_dir);
      }
    }
    if (kind == Kind::kActive && UsesVmMounts({.name = key, .kind = kind, .labels = labels})) {
      STRATA_ASSIGN_OR_RETURN(uint64_t scratch_bytes, ScratchBytesFromLabels(labels));
      STRATA_RETURN_IF_ERROR(CreateScratchDisk(layout_.SnapshotDir(id) / kScratchImageName, scratch_bytes));
    }
    // No fsync of the directories: an active or view snapshot starts empty, so should a
    // power loss keep the (synced) record but lose them, Mounts makes them again.
    return records_.Create(kind, key, parent, labels, id);
  }();
  if (!created) {
    std::error_code ec;
    fs::remove_all(dir, ec);
    return Fail(created.error());
  }
  dirs.unlock();
  auto mounts = MountsOf(*created);
  if (!mounts) {
    (void)records_.Remove(key);  // e.g. a layer image that could not be built
    std::error_code ec;
    fs::remove_all(dir, ec);
    return Fail(mounts.error());
  }
  return mounts;
}

bool IsLayerUnpack(const std::string& key, const store::Labels& labels) {
  if (labels.contains(std::string(kLabelUnpackTarget))) return true;
  const size_t slash = key.rfind('/');
  return std::string_view(key).substr(slash == std::string::npos ? 0 : slash + 1).starts_with("extract-");
}

bool OverlaySnapshotter::UsesVmMounts(const SnapshotInfo& info) const {
  return layout_.union_mount() == UnionMount::kVm &&
         !(info.kind == Kind::kActive && IsLayerUnpack(info.name, info.labels));
}

Result<std::vector<Mount>> OverlaySnapshotter::MountsOf(const SnapshotRecord& record) const {
  if (UsesVmMounts(record.info)) return VmMountsFor(layout_, records_, record);
  STRATA_ASSIGN_OR_RETURN(Mount mount, layout_.MountFor(record));
  return std::vector<Mount>{std::move(mount)};
}

Result<std::vector<Mount>> OverlaySnapshotter::Prepare(const std::string& key, const std::string& parent,
                                                       const store::Labels& labels) {
  return Create(Kind::kActive, key, parent, labels);
}

Result<std::vector<Mount>> OverlaySnapshotter::View(const std::string& key, const std::string& parent,
                                                    const store::Labels& labels) {
  return Create(Kind::kView, key, parent, labels);
}

Status OverlaySnapshotter::CreateSnapshotDir(uint64_t id) {
  const fs::path dir = layout_.SnapshotDir(id);
  if (::mkdir(dir.c_str(), 0700) == 0) return {};
  if (errno != EEXIST) return ErrnoFail(errno, "create snapshot directory", dir);
  // A fresh id is named by no record (SnapshotStore::AllocateId): this is a leftover of a
  // Prepare cut short by a power loss that also lost the id counter. Replace it.
  STRATA_ASSIGN_OR_RETURN(std::vector<fs::path> mounted, MountPointsAtOrBeneath(dir));
  if (!mounted.empty()) return Fail(ErrorCode::kInternal, "snapshot directory {} is in use: {} is mounted", dir.string(), mounted.front().string());
  spdlog::warn("snapshot directory {} is a leftover no record names: replacing it", dir.string());
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (ec) return Fail(ErrorCode::kInternal, "remove leftover {}: {}", dir.string(), ec.message());
  if (::mkdir(dir.c_str(), 0700) != 0) return ErrnoFail(errno, "create snapshot directory", dir);
  return {};
}

Status OverlaySnapshotter::CreateEmptyDirs(uint64_t id, Kind kind) const {
  const fs::path fs_dir = layout_.FsDir(id);
  if (::mkdir(fs_dir.c_str(), 0755) != 0) return ErrnoFail(errno, "mkdir", fs_dir);
  if (::chmod(fs_dir.c_str(), 0755) != 0) return ErrnoFail(errno, "chmod", fs_dir);  // umask-proof
  if (kind == Kind::kActive && ::mkdir(layout_.WorkDir(id).c_str(), 0711) != 0) {
    return ErrnoFail(errno, "mkdir", layout_.WorkDir(id));
  }
  return {};
}

Status OverlaySnapshotter::RestoreLostDirs(const SnapshotRecord& record) const {
  struct stat st {};
  if (::lstat(layout_.FsDir(record.id).c_str(), &st) == 0) return {};
  if (errno != ENOENT) return ErrnoFail(errno, "stat", layout_.FsDir(record.id));
  spdlog::warn("snapshot {:?}: its directory {} was lost (power loss after Prepare?): making it again",
               record.info.name, layout_.SnapshotDir(record.id).string());
  if (::mkdir(layout_.SnapshotDir(record.id).c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoFail(errno, "create snapshot directory", layout_.SnapshotDir(record.id));
  }
  return CreateEmptyDirs(record.id, record.info.kind);
}

Result<std::vector<Mount>> OverlaySnapshotter::Mounts(const std::string& key) const {
  STRATA_ASSIGN_OR_RETURN(SnapshotRecord record, records_.Get(key));
  if (record.info.kind != Kind::kCommitted) STRATA_RETURN_IF_ERROR(RestoreLostDirs(record));
  return MountsOf(record);
}

Status OverlaySnapshotter::Commit(const std::string& name, const std::string& key, const store::Labels& labels,
                                  const std::optional<std::string>& rebase_onto, CommitDurability durability) {
  STRATA_ASSIGN_OR_RETURN(SnapshotRecord record, records_.Get(key));
  if (record.info.kind != Kind::kActive) {
    return Fail(ErrorCode::kFailedPrecondition, "snapshot {:?} is {}: only active snapshots can be committed", key,
                KindName(record.info.kind));
  }
  // A vm container's changes are in its scratch disk's upper/: they become fs/, so the
  // committed layer is in overlay form like any other (whichever driver made the snapshot).
  const fs::path scratch = layout_.SnapshotDir(record.id) / kScratchImageName;
  const bool has_scratch = fs::exists(scratch);
  if (has_scratch) STRATA_RETURN_IF_ERROR(CopyScratchChanges(layout_, record));
  STRATA_ASSIGN_OR_RETURN(Usage usage, DiskUsage(layout_.FsDir(record.id)));
  if (has_scratch || !durability.layer_synced) STRATA_RETURN_IF_ERROR(SyncFilesystemOf(layout_.FsDir(record.id)));
  STRATA_RETURN_IF_ERROR(records_.Commit(key, name, labels, usage, rebase_onto,
                                         durability.record_buffered ? store::MetaDB::Durability::kBuffered
                                                                    : store::MetaDB::Durability::kSynced));
  ForgetUsage(record.id);
  if (has_scratch && !fs::exists(layout_.SnapshotDir(record.id) / kVmStagingDirName)) {
    std::error_code ec;
    fs::remove(scratch, ec);  // its changes are in fs/ now; a mounted one goes at Cleanup
  }
  return {};
}

Status OverlaySnapshotter::Remove(const std::string& key) {
  STRATA_ASSIGN_OR_RETURN(SnapshotRecord removed, records_.Remove(key));
  ForgetUsage(removed.id);
  return {};
}

Result<SnapshotInfo> OverlaySnapshotter::Stat(const std::string& key) const {
  STRATA_ASSIGN_OR_RETURN(SnapshotRecord record, records_.Get(key));
  return record.info;
}

Result<SnapshotInfo> OverlaySnapshotter::Update(const SnapshotInfo& info, const std::vector<std::string>& fieldpaths) {
  return records_.Update(info, fieldpaths);
}

Status OverlaySnapshotter::Walk(const store::Filter& filter,
                                const std::function<bool(const SnapshotInfo&)>& fn) const {
  return records_.Walk(filter, fn);
}

Result<Usage> OverlaySnapshotter::UsageOf(const std::string& key) const {
  STRATA_ASSIGN_OR_RETURN(SnapshotRecord record, records_.Get(key));
  if (record.info.kind == Kind::kCommitted) return record.usage;
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(usage_mutex_);
    auto it = usage_cache_.find(record.id);
    if (it != usage_cache_.end() && now - it->second.at < usage_cache_ttl_) return it->second.usage;
  }
  STRATA_ASSIGN_OR_RETURN(Usage usage, DiskUsage(layout_.FsDir(record.id)));
  std::lock_guard lock(usage_mutex_);
  usage_cache_[record.id] = {usage, now};
  return usage;
}

void OverlaySnapshotter::ForgetUsage(uint64_t id) const {
  std::lock_guard lock(usage_mutex_);
  usage_cache_.erase(id);
}

Status OverlaySnapshotter::Cleanup() {
  // No Create between making a directory and recording it (it would look like a leftover),
  // and one Cleanup at a time (two would race to remove the same leftover).
  std::unique_lock dirs(dirs_mutex_);
  // Removals are buffered (SnapshotStore::Remove): make them durable before their
  // directories go, so no record can come back without its directory.
  STRATA_RETURN_IF_ERROR(records_.Sync());
  STRATA_ASSIGN_OR_RETURN(std::vector<uint64_t> ids, records_.Ids());
  std::set<std::string> live;
  for (uint64_t id : ids) live.insert(std::to_string(id));
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(snapshots_dir_, ec)) {
    const std::string name = entry.path().filename().string();
    if (live.contains(name)) continue;
    // Never recurse into something mounted beneath (a bind of a stray dir): leave it for later.
    STRATA_ASSIGN_OR_RETURN(std::vector<fs::path> mounted, MountPointsAtOrBeneath(entry.path()));
    if (!mounted.empty()) {
      spdlog::warn("cleanup: {} stays: {} is mounted", entry.path().string(), mounted.front().string());
      continue;
    }
    std::error_code remove_ec;
    fs::remove_all(entry.path(), remove_ec);
    // ENOENT: its owner removed it meanwhile (a discarded unpack removes its own directory).
    if (remove_ec && remove_ec != std::errc::no_such_file_or_directory) {
      return Fail(ErrorCode::kInternal, "cleanup {}: {}", entry.path().string(), remove_ec.message());
    }
  }
  if (ec) return Fail(ErrorCode::kInternal, "list {}: {}", snapshots_dir_.string(), ec.message());
  return {};
}

}  // namespace strata::snapshotter
