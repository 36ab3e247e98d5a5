#include "images/image_mount.h"

#include <fmt/format.h>

#include "oci/index.h"
#include "oci/media_types.h"
#include "images/windows_container.h"
#include "snapshotter/mount.h"
#include "snapshotter/scratch_disk.h"
#include "snapshotter/vm_layout.h"

namespace strata::images {

namespace fs = std::filesystem;

Result<StoredManifest> ResolveStoredManifest(const store::ContentStore& content, const oci::Descriptor& target,
                                             const oci::Platform& platform) {
  oci::Descriptor descriptor = target;
  if (oci::IsIndex(target.media_type)) {
    STRATA_ASSIGN_OR_RETURN(std::string bytes, store::ReadBlob(content, target.digest));
    STRATA_ASSIGN_OR_RETURN(oci::Index index, oci::Index::Parse(bytes));
    STRATA_ASSIGN_OR_RETURN(descriptor, oci::SelectManifestForPlatform(index, oci::PlatformMatcher(platform)));
  }
  if (!oci::IsManifest(descriptor.media_type)) {
    return Fail(ErrorCode::kUnimplemented, "{} is a {}, not an image manifest", descriptor.digest,
                descriptor.media_type);
  }
  auto bytes = store::ReadBlob(content, descriptor.digest);
  if (!bytes) {
    return Fail(bytes.error().WithContext(
        fmt::format("manifest {} for {} (pulled for another platform?)", descriptor.digest, platform.String())));
  }
  STRATA_ASSIGN_OR_RETURN(oci::Manifest manifest, oci::Manifest::Parse(*bytes));
  return StoredManifest{.descriptor = descriptor, .manifest = std::move(manifest)};
}

Result<Isolation> ParseIsolation(std::string_view text) {
  if (text == "process" || text.empty()) return Isolation::kProcess;
  if (text == "vm") return Isolation::kVm;
  return Fail(ErrorCode::kInvalidArgument, "isolation {:?}: use process or vm", text);
}

namespace {

// The snapshot `key` over a Windows image's unpacked chain, and its mounts (MountOptions).
Result<std::vector<snapshotter::Mount>> PrepareWindowsSnapshot(snapshotter::OverlaySnapshotter& snapshots,
                                                               const std::string& image_name, const std::string& key,
                                                               const std::string& top, const store::Labels& labels,
                                                               const MountOptions& options) {
  STRATA_ASSIGN_OR_RETURN(std::vector<fs::path> layer_dirs, ChainLayerDirs(snapshots, top));
  if (options.isolation == Isolation::kProcess) {
    STRATA_RETURN_IF_ERROR(snapshots.View(key, top, labels));
    return std::vector<snapshotter::Mount>{WindowsViewMount(layer_dirs)};
  }
  STRATA_RETURN_IF_ERROR(snapshots.Prepare(key, top, labels));
  auto container = [&]() -> Result<snapshotter::Mount> {
    STRATA_ASSIGN_OR_RETURN(snapshotter::SnapshotRecord record, snapshots.records().Get(key));
    return WriteWindowsContainerDir(snapshots.layout().FsDir(record.id), layer_dirs,
                                    options.scratch_bytes == 0 ? kDefaultScratchBytes : options.scratch_bytes);
  }();
  if (!container) {
    (void)snapshots.Remove(key);
    return Fail(container.error().WithContext(fmt::format("windows image {}: container dir", image_name)));
  }
  return std::vector<snapshotter::Mount>{std::move(*container)};
}

// The snapshot `key` over a Linux image's chain `parent` for a VM runtime: an active one with
// a scratch disk (writable) or a view, and their vm mounts (snapshotter/vm_layout.h).
Result<std::vector<snapshotter::Mount>> PrepareLinuxVmSnapshot(snapshotter::OverlaySnapshotter& snapshots,
                                                               const std::string& image_name, const std::string& key,
                                                               const std::string& parent, const store::Labels& labels,
                                                               const MountOptions& options) {
  uint64_t scratch_bytes = options.scratch_bytes;
  if (scratch_bytes == 0) {
    STRATA_ASSIGN_OR_RETURN(scratch_bytes, snapshotter::ScratchBytesFromLabels(labels));
  }
  if (options.writable) {
    STRATA_RETURN_IF_ERROR(snapshots.Prepare(key, parent, labels));
  } else {
    STRATA_RETURN_IF_ERROR(snapshots.View(key, parent, labels));
  }
  auto mounts = [&]() -> Result<std::vector<snapshotter::Mount>> {
    STRATA_ASSIGN_OR_RETURN(snapshotter::SnapshotRecord record, snapshots.records().Get(key));
    if (options.writable) STRATA_RETURN_IF_ERROR(snapshotter::PrepareVmScratch(snapshots.layout(), record, scratch_bytes));
    return snapshotter::VmMountsFor(snapshots.layout(), snapshots.records(), record);
  }();
  if (!mounts) {
    (void)snapshots.Remove(key);
    (void)snapshots.Cleanup();
    return Fail(mounts.error().WithContext(fmt::format("image {}: vm mounts", image_name)));
  }
  return mounts;
}

bool IsLinuxVm(const MountOptions& options) {
  return options.isolation == Isolation::kVm || options.union_mount == snapshotter::UnionMount::kVm;
}

// Where the host composition of snapshot `key` mounts its layer and scratch disks.
Result<fs::path> VmStagingDir(snapshotter::OverlaySnapshotter& snapshots, const std::string& key) {
  STRATA_ASSIGN_OR_RETURN(snapshotter::SnapshotRecord record, snapshots.records().Get(key));
  return snapshots.layout().SnapshotDir(record.id) / snapshotter::kVmStagingDirName;
}

}  // namespace

std::string MountTarget(const fs::path& dir) { return fs::absolute(dir).lexically_normal().string(); }

std::string MountKey(const fs::path& dir) { return "strata-mount:" + MountTarget(dir); }

Result<PreparedImage> PrepareImageSnapshot(store::Store& store, snapshotter::OverlaySnapshotter& snapshots,
                                           const std::string& image_name, const std::string& key,
                                           store::Labels labels, const MountOptions& options) {
  STRATA_ASSIGN_OR_RETURN(store::Image image, store.images().Get(image_name));
  PreparedImage prepared;
  STRATA_ASSIGN_OR_RETURN(prepared.manifest, ResolveStoredManifest(store.content(), image.target, options.platform));
  STRATA_ASSIGN_OR_RETURN(const LayerFormat format,
                          StoredImageLayerFormat(store.content(), prepared.manifest.manifest.config));
  const bool windows = format == LayerFormat::kWindows;
  if (windows && options.isolation == Isolation::kProcess && options.writable) {
    return Fail(ErrorCode::kInvalidArgument,
                "windows image {}: mounts read-only (no copy-on-write over Windows layers yet); drop --rw, or use "
                "--isolation vm for a container dir with a scratch disk",
                image_name);
  }
  STRATA_ASSIGN_OR_RETURN(prepared.chain_ids,
                          UnpackStored(store.content(), snapshots, prepared.manifest.manifest, options.limits));
  const std::string parent = prepared.chain_ids.empty() ? "" : prepared.chain_ids.back().ToString();
  labels[std::string(kLabelMountImage)] = image_name;
  labels[std::string(kLabelMountManifest)] = prepared.manifest.descriptor.digest.ToString();
  if (windows) {
    if (parent.empty()) return Fail(ErrorCode::kFailedPrecondition, "windows image {} has no layers", image_name);
    STRATA_ASSIGN_OR_RETURN(prepared.mounts, PrepareWindowsSnapshot(snapshots, image_name, key, parent, labels, options));
    return prepared;
  }
  if (IsLinuxVm(options)) {
    STRATA_ASSIGN_OR_RETURN(prepared.mounts, PrepareLinuxVmSnapshot(snapshots, image_name, key, parent, labels, options));
    return prepared;
  }
  STRATA_ASSIGN_OR_RETURN(prepared.mounts, options.writable ? snapshots.Prepare(key, parent, labels)
                                                            : snapshots.View(key, parent, labels));
  for (snapshotter::Mount& mount : prepared.mounts) mount = snapshotter::WithUnionMount(std::move(mount), options.union_mount);
  return prepared;
}

Result<MountedImage> MountImage(store::Store& store, snapshotter::OverlaySnapshotter& snapshots,
                                const std::string& image_name, const fs::path& dir, const MountOptions& options) {
  MountedImage mounted{.key = MountKey(dir)};
  STRATA_ASSIGN_OR_RETURN(PreparedImage prepared,
                          PrepareImageSnapshot(store, snapshots, image_name, mounted.key,
                                               {{std::string(kLabelMountTarget), MountTarget(dir)}}, options));
  auto undo = [&](const Error& error) {
    (void)snapshots.Remove(mounted.key);
    return Fail(error);
  };
  const bool windows_container = !prepared.mounts.empty() && prepared.mounts.front().type == kWindowsLayerMountType;
  if (IsLinuxVm(options) && !windows_container) {
    auto staging = VmStagingDir(snapshots, mounted.key);
    if (!staging) return undo(staging.error());
    if (auto status = snapshotter::MountVmComposition(prepared.mounts, *staging, dir); !status) {
      auto removed = undo(status.error());
      (void)snapshots.Cleanup();
      return removed;
    }
  } else {
    for (const snapshotter::Mount& mount : prepared.mounts) {
      if (auto status = snapshotter::MountAt(HostMountOf(mount), dir); !status) return undo(status.error());
    }
  }
  mounted.manifest = std::move(prepared.manifest);
  mounted.chain_ids = std::move(prepared.chain_ids);
  mounted.mounts = std::move(prepared.mounts);
  return mounted;
}

Status UnmountImage(snapshotter::OverlaySnapshotter& snapshots, const fs::path& dir) {
  const std::string key = MountKey(dir);
  auto snapshot = snapshots.Stat(key);
  if (!snapshot && snapshot.error().code() != ErrorCode::kNotFound) return Fail(snapshot.error());
  Status unmounted = snapshotter::UnmountAt(dir);
  if (!unmounted && unmounted.error().code() != ErrorCode::kNotFound) return unmounted;
  if (!snapshot) {
    if (!unmounted) return Fail(ErrorCode::kNotFound, "strata has no mount at {}", dir.string());
    return {};
  }
  // A vm composition's layer and scratch disks (their loop devices detach as they go).
  STRATA_ASSIGN_OR_RETURN(fs::path staging, VmStagingDir(snapshots, key));
  STRATA_RETURN_IF_ERROR(snapshotter::UnmountVmStaging(staging));
  STRATA_RETURN_IF_ERROR(snapshots.Remove(key));
  return snapshots.Cleanup();  // Remove is metadata-only: reclaim the container's upper dir now
}

Result<LeasedImage> PrepareLeasedImage(store::Store& store, snapshotter::OverlaySnapshotter& snapshots,
                                       const std::string& image_name, const MountOptions& options) {
  STRATA_ASSIGN_OR_RETURN(store::Lease lease,
                          store.leases().Create("", {{std::string(kLabelMountImage), image_name}}));
  LeasedImage leased{.lease = lease.id, .key = std::string(kLeaseKeyPrefix) + lease.id};
  auto prepared = [&]() -> Status {
    // The lease names the snapshot before it exists, so no moment has it unheld.
    STRATA_RETURN_IF_ERROR(
        store.leases().AddResource(leased.lease, {"snapshots/" + snapshots.name(), leased.key}));
    STRATA_ASSIGN_OR_RETURN(leased.prepared, PrepareImageSnapshot(store, snapshots, image_name, leased.key, {}, options));
    return {};
  }();
  if (!prepared) {
    (void)store.leases().Delete(leased.lease);
    return Fail(prepared.error());
  }
  return leased;
}

Status ReleaseLeasedImage(store::Store& store, snapshotter::OverlaySnapshotter& snapshots, const std::string& lease) {
  STRATA_ASSIGN_OR_RETURN(store::Lease record, store.leases().Get(lease));
  if (!record.labels.contains(std::string(kLabelMountImage))) {
    return Fail(ErrorCode::kFailedPrecondition, "lease {} does not hold an image mount", lease);
  }
  STRATA_ASSIGN_OR_RETURN(std::vector<store::LeaseResource> resources, store.leases().ListResources(lease));
  bool removed = false;
  for (const store::LeaseResource& resource : resources) {
    if (resource.type != "snapshots/" + snapshots.name()) continue;
    Status status = snapshots.Remove(resource.id);
    if (!status && status.error().code() != ErrorCode::kNotFound) return status;
    removed = removed || status.has_value();
  }
  STRATA_RETURN_IF_ERROR(store.leases().Delete(lease));
  return removed ? snapshots.Cleanup() : Status{};
}

}  // namespace strata::images
