// Layer unpack: a layer blob applied in overlay form into a fresh active snapshot while it
// downloads (the fetcher's tee feeds a pipe; decompress -> diffID hash -> tar apply run on
// a thread of their own), then committed under its chainID on top of its parent — the
// one-pass data path of DESIGN.md. Internal to images/ (Pull uses it).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/byte_pipe.h"
#include "base/digest.h"
#include "base/error.h"
#include "oci/descriptor.h"
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

// One layer into one parentless active snapshot. Use from one thread, except that the
// apply runs on a thread of its own while streaming. Destroying it before Commit removes
// the snapshot (a failed pull leaves nothing half-committed).
class LayerUnpack {
 public:
  // Prepares the snapshot. `streaming`: start the apply thread now, to be fed by OnData;
  // otherwise Finish applies the stored blob.
  static Result<std::unique_ptr<LayerUnpack>> Start(snapshotter::OverlaySnapshotter& snapshots,
                                                    const oci::Descriptor& layer, const Digest& chain_id,
                                                    const UnpackLimits& limits, bool streaming);
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
  Status Commit(const std::string& parent);

  // The snapshot's upper dir, and the directories the apply created only as parents of
  // other entries (archive::ApplyStats::implied_dirs); valid after Finish.
  const std::filesystem::path& dir() const { return dir_; }
  const std::vector<std::string>& implied_dirs() const { return implied_dirs_; }

 private:
  LayerUnpack(snapshotter::OverlaySnapshotter& snapshots, oci::Descriptor layer, Digest chain_id,
              UnpackLimits limits)
      : snapshots_(snapshots), layer_(std::move(layer)), chain_id_(std::move(chain_id)), limits_(limits) {}
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

  // Reads the committed config for the diffIDs and finds the first layer whose chainID is
  // not committed yet (chains are committed bottom up): that layer and all above need work.
  // InvalidArgument when the config's diff_ids do not match the layers.
  Status Plan(store::ContentStore& content, const oci::Descriptor& config);

  // Fetches `blob` with `fetch` (given the tee to stream into, or null), unpacking it into
  // every layer position that needs it: the first streamed during the download, repeats of
  // the same blob applied from the store afterwards. Then checks each diffID against the
  // config (FailedPrecondition naming both).
  using Fetch = std::function<Result<registry::FetchOutcome>(registry::FetchOptions::DataTee tee)>;
  Result<registry::FetchOutcome> Transfer(const oci::Descriptor& blob, const Fetch& fetch);

  // Commits every unpacked layer over its parent, bottom up, after checking that no layer
  // writes through a symlink of the layers below it (an implied directory under a lower
  // symlink: InvalidArgument naming both; then nothing is committed), and labels the config
  // "containerd.io/gc.ref.snapshot.<snapshotter>" = top chainID. Returns how many.
  Result<int> CommitAll();

  // Chain IDs of every layer (after Plan); the last names the image's top snapshot.
  const std::vector<Digest>& chain_ids() const { return chain_ids_; }

 private:
  Status CheckNoWritesThroughSymlinks() const;

  snapshotter::OverlaySnapshotter& snapshots_;
  std::vector<oci::Descriptor> layers_;
  UnpackLimits limits_;
  store::ContentStore* content_ = nullptr;  // set by Plan
  Digest config_ = Digest::Of("");
  std::vector<Digest> diff_ids_;
  std::vector<Digest> chain_ids_;
  size_t first_missing_ = 0;
  std::vector<std::unique_ptr<LayerUnpack>> unpacks_;  // per layer position
};

// Unpacks `manifest`'s layers from the content store (all blobs must be there) into
// `snapshots`, skipping chains already committed. Returns the chain IDs.
Result<std::vector<Digest>> UnpackStored(store::ContentStore& content, snapshotter::OverlaySnapshotter& snapshots,
                                         const oci::Manifest& manifest, const UnpackLimits& limits = {});

}  // namespace strata::images
