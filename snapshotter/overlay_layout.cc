#include "snapshotter/overlay_layout.h"

#include <fmt/format.h>

namespace strata::snapshotter {
namespace {

// overlayfs' inode index is off unless asked for; saying so keeps mounts working when the
// module default is on and lower dirs are reused under other uppers (containerd does this).
bool KernelKnowsIndexOption() { return std::filesystem::exists("/sys/module/overlay/parameters/index"); }

}  // namespace

Result<Mount> OverlayLayout::MountFor(const SnapshotRecord& record) const {
  const SnapshotInfo& info = record.info;
  if (info.kind == Kind::kCommitted) {
    return Fail(ErrorCode::kFailedPrecondition, "snapshot {:?} is committed: only active and view snapshots mount",
                info.name);
  }
  const bool view = info.kind == Kind::kView;
  if (record.parent_ids.empty()) {
    return Mount{.type = "bind", .source = FsDir(record.id).string(), .options = {view ? "ro" : "rw", "rbind"}};
  }
  if (view && record.parent_ids.size() == 1) {
    return Mount{.type = "bind", .source = FsDir(record.parent_ids.front()).string(), .options = {"ro", "rbind"}};
  }
  std::string lower;
  for (uint64_t id : record.parent_ids) {
    if (!lower.empty()) lower += ':';
    lower += FsDir(id).string();
  }
  Mount mount{.type = "overlay", .source = "overlay"};
  if (view) {
    mount.options.push_back("ro");
  } else {
    if (KernelKnowsIndexOption()) mount.options.push_back("index=off");
    mount.options.push_back("workdir=" + WorkDir(record.id).string());
    mount.options.push_back("upperdir=" + FsDir(record.id).string());
  }
  mount.options.push_back("lowerdir=" + lower);
  return WithUnionMount(std::move(mount), union_mount_);
}

Result<UnionMount> ParseUnionMount(std::string_view driver) {
  if (driver.empty() || driver == "overlay") return UnionMount::kKernelOverlay;
  if (driver == "fsfilter") return UnionMount::kFsfilter;
  if (driver == "vm") return UnionMount::kVm;
  return Fail(ErrorCode::kInvalidArgument, "unknown driver {:?} (drivers: overlay, fsfilter, vm)", driver);
}

Mount WithUnionMount(Mount mount, UnionMount how) {
  if (how != UnionMount::kFsfilter || mount.type != "overlay") return mount;
  mount.type = kFsfilterMountType;
  std::erase(mount.options, "index=off");  // a kernel overlayfs option
  return mount;
}

}  // namespace strata::snapshotter
