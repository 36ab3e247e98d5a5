// Layer unpack: a layer blob applied into a fresh active snapshot while it downloads (the
// fetcher's tee feeds a pipe; decompress -> diffID hash -> tar apply run on a thread of
// their own), then committed under its chainID on top of its parent — the one-pass data
// path of DESIGN.md. Internal to images/ (Pull uses it).
//
// Two layer formats, chosen by the image config's os:
//   overlay (every os but windows): archive::ApplyLayer, OCI whiteouts in overlay form.
//     Layers need no parent to apply, so a pull unpacks them concurrently.
//   windows: archive::ApplyWindowsLayer; the snapshot's fs/ dir *is* the windowsfilter-style
//     layer dir (Files/, Hives/, UtilityVM/Files/, layerchain.json naming the parents' fs/
//     dirs, .strata/ index), so no path inside it changes when it is committed. Snapshots
//     are labelled kLabelLayerFormat = "windows". A delta needs its parents applied first
//     (hard links into them are copied, layerchain.json names them): it streams only when
//     its parent is ready as its download starts, else it is applied from the stored blob
//     once the parent is (at the latest in CommitAll, bottom up, before any commit).
// Either way OverlaySnapshotter::Commit syncs the layer's filesystem before the record
// says committed (ApplyWindowsLayer does not fsync file data itself).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/byte_pipe.h"
#include "base/digest.h"
#include "base/error.h"
#include "oci/descriptor.h"
#include "oci/image_config.h"
#include "oci/manifest.h"
#include "registry/fetcher.h"
#include "snapshotter/overlay_snapshotter.h"
#include "store/content_store.h"

namespace strata::images {

struct UnpackLimits {
  // Decompression-bomb guard: a layer whose tar grows beyond max_ratio x its compressed
  // bytes (+ 256 MiB of slack) is refused. 0 = no guard.
  double max_ratio = 200;
};

// How a layer is stored in its snapshot (see the top of this file).
enum class LayerFormat { kOverlay, kWindows };
// The label unpack puts on Windows layer snapshots (absent = overlay form).
inline constexpr std::string_view kLabelLayerFormat = "strata.io/layer.format";
inline constexpr std::string_view kLayerFormatWindows = "windows";

// kWindows for os "windows" (any case), else kOverlay.
LayerFormat ImageLayerFormat(const oci::ImageConfig& config);
// The same for the stored config blob `config`.
Result<LayerFormat> StoredImageLayerFormat(const store::ContentStore& content, const oci::Descriptor& config);
// From a snapshot's labels.
LayerFormat SnapshotLayerFormat(const snapshotter::SnapshotInfo& info);
// The layer dirs (fs/) of committed snapshot `name` and its parents, nearest first.
Result<std::vector<std::filesystem::path>> ChainLayerDirs(snapshotter::OverlaySnapshotter& snapshots,
                                                          const std::string& name);

// Where and how one layer is applied.
struct LayerPlacement {
  LayerFormat format = LayerFormat::kOverlay;
  // kWindows: the parents' layer dirs, nearest first, each complete; empty = a base layer.
  std::vector<std::filesystem::path> parent_layers;
};

// One layer into one parentless active snapshot. Use from one thread, except that the
// apply runs on a thread of its own while streaming. Destroying it before Commit removes
// the snapshot (a failed pull leaves nothing half-committed).
class LayerUnpack {
 public:
  // Prepares the snapshot. `streaming`: start the apply thread now, to be fed by OnData;
  // otherwise Finish applies the stored blob.
  static Result<std::unique_ptr<LayerUnpack>> Start(snapshotter::OverlaySnapshotter& snapshots,
                                                    const oci::Descriptor& layer, const Digest& chain_id,
                                                    const UnpackLimits& limits, LayerPlacement placement,
                                                    bool streaming);
  ~LayerUnpack();
  LayerUnpack(const LayerUnpack&) = delete;
  LayerUnpack& operator=(const LayerUnpack&) = delete;

  // The fetcher's tee (registry::FetchOptions::on_data). A chunk that does not continue
  // the stream (a resumed old ingest, a restart from 0) abandons streaming: Finish then
  // applies the stored blob. Returns the apply's error once it failed, stopping the fetch.
  Status OnData(int64_t offset, std::string_view bytes);
  // The download ended with `fetched`.
  void EndStream(const Status& fetched);
  // Waits for the apply; re-applies from `content`'s committed blob when the stream was
  // not whole. REQUIRES: the blob is committed in `content` (the fetch succeeded).
  // Returns the diffID (sha256 of the uncompressed tar). Errors: the apply's ("layer
  // sha256:..: layer entry ../x: ..."), decompression's.
  Result<Digest> Finish(const store::ContentStore& content);
  // Commits the snapshot as the chainID over committed `parent` ("" for a base layer).
  // When another pull committed the same chainID first, ours is dropped and theirs kept.
  // `durability`: see OverlaySnapshotter::Commit.
  Status Commit(const std::string& parent, snapshotter::CommitDurability durability = {});

  // The snapshot's upper dir, and the directories the apply created only as parents of
  // other entries (archive::ApplyStats::implied_dirs); valid after Finish.
  const std::filesystem::path& dir() const { return dir_; }
  const std::vector<std::string>& implied_dirs() const { return implied_dirs_; }
  const LayerPlacement& placement() const { return placement_; }

 private:
  LayerUnpack(snapshotter::OverlaySnapshotter& snapshots, oci::Descriptor layer, Digest chain_id,
              UnpackLimits limits, LayerPlacement placement)
      : snapshots_(snapshots), layer_(std::move(layer)), chain_id_(std::move(chain_id)), limits_(limits),
        placement_(std::move(placement)) {}
  store::Labels Labels() const;
  Status Prepare();
  // What one pass of decompress -> hash -> apply produced.
  struct Applied {
    Digest diff_id;
    std::vector<std::string> implied_dirs;  // see archive::ApplyStats
  };
  Result<Applied> ApplyFrom(ByteReader& blob);
  void Discard();

  snapshotter::OverlaySnapshotter& snapshots_;
  const oci::Descriptor layer_;
  const Digest chain_id_;
  const UnpackLimits limits_;
  const LayerPlacement placement_;
  std::string key_;  // the active snapshot; "" once committed or discarded
  std::filesystem::path dir_;
  BytePipe pipe_{static_cast<size_t>(4) << 20};
  std::thread apply_thread_;
  std::optional<Result<Applied>> streamed_;  // written by apply_thread_ before it ends
  std::vector<std::string> implied_dirs_;  // of the finished apply
  int64_t next_offset_ = 0;  // stream position OnData expects
  bool stream_broken_ = false;
};

// The unpack of one image manifest: which layers need it and, once their blobs were
// transferred, the ordered commits. Transfer may run concurrently for different blobs;
// Plan before, CommitAll after. Destroying it before CommitAll removes what it prepared.
class ImageUnpack {
 public:
  ImageUnpack(snapshotter::OverlaySnapshotter& snapshots, const oci::Manifest& manifest, UnpackLimits limits)
      : snapshots_(snapshots), layers_(manifest.layers), limits_(limits) {}

  // Reads the committed config for the diffIDs and the layer format (its os), and finds the
  // first layer whose chainID is not committed yet (chains are committed bottom up): that
  // layer and all above need work. InvalidArgument when the config's diff_ids do not match
  // the layers; FailedPrecondition when a committed chain snapshot is in the other format
  // (the same layers unpacked for an image of another os), or, for Windows, when a
  // committed parent's layer dir is missing or incomplete (no layerchain.json).
  Status Plan(store::ContentStore& content, const oci::Descriptor& config);

  // Fetches `blob` with `fetch` (given the tee to stream into, or null), unpacking it into
  // every layer position that needs it: the first streamed during the download, repeats of
  // the same blob applied from the store afterwards. Then checks each diffID against the
  // config (FailedPrecondition naming both). Windows: a position whose parent is not
  // applied yet is only fetched here, and applied later (another Transfer or CommitAll).
  using Fetch = std::function<Result<registry::FetchOutcome>(registry::FetchOptions::DataTee tee)>;
  Result<registry::FetchOutcome> Transfer(const oci::Descriptor& blob, const Fetch& fetch);

  // Commits every unpacked layer over its parent, bottom up, after checking that no layer
  // writes through a symlink of the layers below it (an implied directory under a lower
  // symlink: InvalidArgument naming both; then nothing is committed), and labels the config
  // "containerd.io/gc.ref.snapshot.<snapshotter>" = top chainID. Returns how many.
  // Windows: first applies the positions Transfer left (bottom up; a refusal commits
  // nothing); a layer whose parent chainID another pull committed first is re-applied over
  // that snapshot's dir before it is committed (its layerchain.json must name it); only a
  // failure of that re-apply can leave layers of this pull committed.
  Result<int> CommitAll();

  // Chain IDs of every layer (after Plan); the last names the image's top snapshot.
  const std::vector<Digest>& chain_ids() const { return chain_ids_; }

 private:
  Status CheckNoWritesThroughSymlinks() const;
  // Checks the committed chain below first_missing_: same format; Windows dirs complete.
  Status CheckCommittedBelow();
  // Windows: the parents' layer dirs of position i when all are applied or committed, else
  // nullopt. Thread-safe.
  std::optional<std::vector<std::filesystem::path>> ReadyParents(size_t i) const;
  // Applies position i from its stored blob over `placement` (replacing any earlier
  // unpack of it), checks the diffID and, for Windows, marks it ready.
  Status ApplyStored(size_t i, LayerPlacement placement);
  // Checks position i's diffID; for Windows then marks it ready for its children.
  Status Applied(size_t i, const Digest& diff_id);

  snapshotter::OverlaySnapshotter& snapshots_;
  std::vector<oci::Descriptor> layers_;
  UnpackLimits limits_;
  store::ContentStore* content_ = nullptr;  // set by Plan
  Digest config_ = Digest::Of("");
  std::vector<Digest> diff_ids_;
  std::vector<Digest> chain_ids_;
  size_t first_missing_ = 0;
  LayerFormat format_ = LayerFormat::kOverlay;
  std::vector<std::filesystem::path> committed_below_;  // Windows: dirs below first_missing_, nearest first
  std::vector<std::unique_ptr<LayerUnpack>> unpacks_;  // per layer position
  // Windows, per position: the layer dir once applied with its diffID checked (children
  // apply over it); guarded by ready_mutex_.
  mutable std::mutex ready_mutex_;
  std::vector<std::optional<std::filesystem::path>> ready_dirs_;
};

// Unpacks `manifest`'s layers from the content store (all blobs must be there) into
// `snapshots`, skipping chains already committed. Returns the chain IDs.
Result<std::vector<Digest>> UnpackStored(store::ContentStore& content, snapshotter::OverlaySnapshotter& snapshots,
                                         const oci::Manifest& manifest, const UnpackLimits& limits = {});

}  // namespace strata::images
