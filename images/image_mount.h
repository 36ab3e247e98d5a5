// Images as root filesystems: an image's manifest found in the store, its layers unpacked
// (if a pull did not already), and a container snapshot over its chain mounted on a
// directory — writable (`strata mount --rw`) or a read-only view.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "base/error.h"
#include "images/unpack.h"
#include "oci/descriptor.h"
#include "oci/manifest.h"
#include "oci/platform.h"
#include "snapshotter/overlay_snapshotter.h"
#include "store/store.h"

namespace strata::images {

// Labels of a mount's snapshot: where it is mounted, which image and manifest it shows.
inline constexpr std::string_view kLabelMountTarget = "strata.io/mount.target";
inline constexpr std::string_view kLabelMountImage = "strata.io/mount.image";
inline constexpr std::string_view kLabelMountManifest = "strata.io/mount.manifest";

struct StoredManifest {
  oci::Descriptor descriptor;
  oci::Manifest manifest;
};

// The image manifest `target` stands for: itself, or the `platform` entry of a stored
// index. NotFound when the index has no such platform in the store.
Result<StoredManifest> ResolveStoredManifest(const store::ContentStore& content, const oci::Descriptor& target,
                                             const oci::Platform& platform);

enum class Isolation {
  kProcess,  // the layers composed into one tree on the host (overlayfs or fsfilter)
  kVm,       // what a VM runtime attaches (Windows images: layer dirs + a scratch VHD)
};

// Windows images (config os "windows"; their snapshots are Windows layer dirs, see
// images/unpack.h) mount differently from Linux ones:
//  - kProcess: read-only only (writable: InvalidArgument), always fsfilter's Windows layer
//    view (union_mount is ignored): one fuse3.strata-fsfilter mount with options
//    {"ro", "windows", "lowerdir=<layer dirs, topmost first>"} over a view snapshot.
//  - kVm: an active snapshot whose dir holds layerchain.json and sandbox.vhd (see
//    images/windows_container.h), described as one "windows-layer" mount; MountImage
//    bind-mounts that dir on the target. `writable` does not matter (the scratch disk is
//    the container's writable layer).
// Linux images with kVm (or union_mount kVm): each layer as a read-only EROFS image
// (snapshots/<id>/layer.erofs, built the first time) and, when writable, an active snapshot
// with a sparse ext4 scratch disk (scratch.img: upper/ + work/); a read-only one is a view
// of the layer images. The mounts are snapshotter/vm_layout.h's (a VM runtime follows them);
// MountImage composes them on the host: loop mounts of the disks under the snapshot's mnt/
// and the overlay (or the single layer) on the target, all undone by UnmountImage.
struct MountOptions {
  bool writable = false;  // an active snapshot (changes kept in its upper dir) vs a view
  // Kernel overlayfs, or strata's FUSE union view (strata-fsfilter) over the same layers.
  snapshotter::UnionMount union_mount = snapshotter::UnionMount::kKernelOverlay;
  oci::Platform platform = oci::Platform::Host();
  UnpackLimits limits;
  Isolation isolation = Isolation::kProcess;
  // kVm, Windows: the sandbox disk's size in bytes (a multiple of 512); 0 = 20 GiB.
  // kVm, Linux, writable: the scratch disk's (a multiple of 4096, >= 16 MiB); 0 = the
  // strata.io/scratch-size label's, else 10 GiB.
  uint64_t scratch_bytes = 0;
};

// "process" or "vm"; InvalidArgument naming the text otherwise.
Result<Isolation> ParseIsolation(std::string_view text);

// An image's snapshot, ready to mount.
struct PreparedImage {
  StoredManifest manifest;
  std::vector<Digest> chain_ids;
  std::vector<snapshotter::Mount> mounts;  // the snapshot's mounts (not applied anywhere)
};

// The manifest of image `image_name` for options.platform, its layers unpacked where no
// pull did, and snapshot `key` over its top layer — active when options.writable, else a
// view — labelled `labels` plus kLabelMountImage and kLabelMountManifest (Windows images:
// see MountOptions). Errors: the image's (NotFound, unpack errors); AlreadyExists when `key`
// is taken; InvalidArgument / Unimplemented for the combinations MountOptions refuses
// (before anything is unpacked or prepared).
Result<PreparedImage> PrepareImageSnapshot(store::Store& store, snapshotter::OverlaySnapshotter& snapshots,
                                           const std::string& image_name, const std::string& key,
                                           store::Labels labels, const MountOptions& options);

struct MountedImage {
  std::string key;  // the snapshot holding the mount ("strata-mount:<dir>")
  StoredManifest manifest;
  std::vector<Digest> chain_ids;
  std::vector<snapshotter::Mount> mounts;  // what was mounted on the directory
};

// `dir` as mounts are recorded: absolute and normalised, so the key, the label and what
// the CLI prints agree however the directory was typed.
std::string MountTarget(const std::filesystem::path& dir);
// The snapshot key a mount at `dir` uses ("strata-mount:" + MountTarget(dir)).
std::string MountKey(const std::filesystem::path& dir);

// Mounts image `image_name` on existing directory `dir`. AlreadyExists when strata already
// has a mount there; the image's errors (NotFound, unpack errors) otherwise. REQUIRES: root.
Result<MountedImage> MountImage(store::Store& store, snapshotter::OverlaySnapshotter& snapshots,
                                const std::string& image_name, const std::filesystem::path& dir,
                                const MountOptions& options);

// Unmounts `dir` and removes its snapshot (a writable mount's changes go with it: commit
// first to keep them). NotFound when strata has no mount there.
Status UnmountImage(snapshotter::OverlaySnapshotter& snapshots, const std::filesystem::path& dir);

// Mounts for someone else to apply (the daemon's Images.Mount without a target): the
// image's snapshot held by a lease of its own, so it outlives the call and the caller.
inline constexpr std::string_view kLeaseKeyPrefix = "strata-lease:";

struct LeasedImage {
  std::string lease;  // the lease's id
  std::string key;    // the snapshot: kLeaseKeyPrefix + lease
  PreparedImage prepared;
};

// A new lease (no expiry; labelled kLabelMountImage) holding snapshot "strata-lease:<id>"
// of image `image_name`, prepared as PrepareImageSnapshot does. Nothing is mounted. On
// failure neither the lease nor the snapshot is left behind.
Result<LeasedImage> PrepareLeasedImage(store::Store& store, snapshotter::OverlaySnapshotter& snapshots,
                                       const std::string& image_name, const MountOptions& options);

// Removes the snapshots lease `lease` holds (a writable one's changes with them; whoever
// mounted them unmounts first), then the lease, then reclaims their directories. NotFound
// when there is no such lease; FailedPrecondition for a lease PrepareLeasedImage did not make.
Status ReleaseLeasedImage(store::Store& store, snapshotter::OverlaySnapshotter& snapshots, const std::string& lease);

}  // namespace strata::images
