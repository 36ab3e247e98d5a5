#include "images/image_mount.h"

#include <fmt/format.h>

#include "oci/index.h"
#include "oci/media_types.h"
#include "snapshotter/mount.h"

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

std::string MountTarget(const fs::path& dir) { return fs::absolute(dir).lexically_normal().string(); }

std::string MountKey(const fs::path& dir) { return "strata-mount:" + MountTarget(dir); }

Result<MountedImage> MountImage(store::Store& store, snapshotter::OverlaySnapshotter& snapshots,
                                const std::string& image_name, const fs::path& dir, const MountOptions& options) {
  STRATA_ASSIGN_OR_RETURN(store::Image image, store.images().Get(image_name));
  MountedImage mounted{.key = MountKey(dir)};
  STRATA_ASSIGN_OR_RETURN(mounted.manifest, ResolveStoredManifest(store.content(), image.target, options.platform));
  STRATA_ASSIGN_OR_RETURN(mounted.chain_ids,
                          UnpackStored(store.content(), snapshots, mounted.manifest.manifest, options.limits));
  const std::string parent = mounted.chain_ids.empty() ? "" : mounted.chain_ids.back().ToString();
  const store::Labels labels{{std::string(kLabelMountTarget), MountTarget(dir)},
                             {std::string(kLabelMountImage), image_name},
                             {std::string(kLabelMountManifest), mounted.manifest.descriptor.digest.ToString()}};
  STRATA_ASSIGN_OR_RETURN(std::vector<snapshotter::Mount> mounts,
                          options.writable ? snapshots.Prepare(mounted.key, parent, labels)
                                           : snapshots.View(mounted.key, parent, labels));
  for (const snapshotter::Mount& mount : mounts) {
    if (auto status = snapshotter::MountAt(mount, dir); !status) {
      (void)snapshots.Remove(mounted.key);
      return Fail(status.error());
    }
  }
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
  STRATA_RETURN_IF_ERROR(snapshots.Remove(key));
  return snapshots.Cleanup();  // Remove is metadata-only: reclaim the container's upper dir now
}

}  // namespace strata::images
