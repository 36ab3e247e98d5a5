#include "images/unpack.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <set>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "archive/apply.h"
#include "archive/decompress.h"
#include "archive/windows_layer.h"
#include "base/file.h"
#include "oci/chain_id.h"
#include "oci/image_config.h"
#include "snapshotter/overlay_lookup.h"
#include "snapshotter/snapshot_gc.h"

namespace strata::images {

namespace {

// A unique active key per unpack; the chainID at the end says what it is for (as
// containerd's "extract-<time>-<rand> <chainID>"). The time matters: a killed pull's
// snapshot stays until it expires, and the pid comes round again (every CLI run in a fresh
// pid namespace is pid 1), so pid and counter alone would collide with it.
std::string ExtractKey(const Digest& chain_id) {
  static std::atomic<uint64_t> counter{0};
  return fmt::format("extract-{}-{}-{} {}", ::getpid(), store::ToUnixNanos(store::Now()), counter.fetch_add(1),
                     chain_id);
}

std::string_view FormatName(LayerFormat format) {
  return format == LayerFormat::kWindows ? kLayerFormatWindows : std::string_view("overlay");
}

}  // namespace

LayerFormat ImageLayerFormat(const oci::ImageConfig& config) {
  std::string os = config.os;
  std::ranges::transform(os, os.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return os == "windows" ? LayerFormat::kWindows : LayerFormat::kOverlay;
}

Result<LayerFormat> StoredImageLayerFormat(const store::ContentStore& content, const oci::Descriptor& config) {
  STRATA_ASSIGN_OR_RETURN(std::string bytes, store::ReadBlob(content, config.digest));
  STRATA_ASSIGN_OR_RETURN(oci::ImageConfig parsed, oci::ImageConfig::Parse(bytes));
  return ImageLayerFormat(parsed);
}

LayerFormat SnapshotLayerFormat(const snapshotter::SnapshotInfo& info) {
  auto label = info.labels.find(std::string(kLabelLayerFormat));
  return label != info.labels.end() && label->second == kLayerFormatWindows ? LayerFormat::kWindows
                                                                            : LayerFormat::kOverlay;
}

Result<std::vector<std::filesystem::path>> ChainLayerDirs(snapshotter::OverlaySnapshotter& snapshots,
                                                          const std::string& name) {
  STRATA_ASSIGN_OR_RETURN(snapshotter::SnapshotRecord record, snapshots.records().Get(name));
  std::vector<std::filesystem::path> dirs{snapshots.layout().FsDir(record.id)};
  for (uint64_t id : record.parent_ids) dirs.push_back(snapshots.layout().FsDir(id));
  return dirs;
}

Result<std::unique_ptr<LayerUnpack>> LayerUnpack::Start(snapshotter::OverlaySnapshotter& snapshots,
                                                        const oci::Descriptor& layer, const Digest& chain_id,
                                                        const UnpackLimits& limits, LayerPlacement placement,
                                                        bool streaming) {
  std::unique_ptr<LayerUnpack> unpack(new LayerUnpack(snapshots, layer, chain_id, limits, std::move(placement)));
  STRATA_RETURN_IF_ERROR(unpack->Prepare());
  if (streaming) {
    LayerUnpack* self = unpack.get();
    self->apply_thread_ = std::thread([self] {
      Result<Applied> applied = self->ApplyFrom(self->pipe_);
      // Stop the download feeding us: after a failure there is no point, and after success
      // nothing more may come.
      self->pipe_.CloseRead(applied ? Error(ErrorCode::kInternal, "layer unpack ended before its blob")
                                    : applied.error());
      self->streamed_ = std::move(applied);
    });
  }
  return unpack;
}

LayerUnpack::~LayerUnpack() {
  if (apply_thread_.joinable()) {
    pipe_.CloseWrite(Fail(ErrorCode::kCanceled, "layer unpack abandoned"));
    apply_thread_.join();
  }
  Discard();
}

Status LayerUnpack::Prepare() {
  key_ = ExtractKey(chain_id_);
  // A crashed pull's snapshot expires; GC removes it then (snapshotter/snapshot_gc.h).
  store::Labels labels = Labels();
  labels[std::string(snapshotter::kLabelSnapshotExpire)] = store::FormatTimestamp(store::Now() + std::chrono::hours(24));
  STRATA_RETURN_IF_ERROR(snapshots_.Prepare(key_, "", labels));
  STRATA_ASSIGN_OR_RETURN(snapshotter::SnapshotRecord record, snapshots_.records().Get(key_));
  dir_ = snapshots_.layout().FsDir(record.id);
  return {};
}

store::Labels LayerUnpack::Labels() const {
  if (placement_.format != LayerFormat::kWindows) return {};
  return {{std::string(kLabelLayerFormat), std::string(kLayerFormatWindows)}};
}

void LayerUnpack::Discard() {
  if (key_.empty()) return;
  if (auto removed = snapshots_.Remove(key_); !removed) {
    spdlog::warn("unpack of layer {}: removing snapshot {:?}: {}", layer_.digest, key_, removed.error().message());
  } else if (auto synced = snapshots_.records().Sync(); !synced) {
    spdlog::warn("unpack of layer {}: {}", layer_.digest, synced.error().message());
  } else {
    // Remove is metadata-only; a refused layer's partial files go now, not at the next GC
    // (after the removal is durable: no record may come back without its directory).
    std::error_code ec;
    std::filesystem::remove_all(dir_.parent_path(), ec);
  }
  key_.clear();
}

Result<LayerUnpack::Applied> LayerUnpack::ApplyFrom(ByteReader& blob) {
  Result<oci::Compression> compression = oci::LayerCompression(layer_.media_type);
  const archive::DecompressOptions guard{.max_ratio = limits_.max_ratio, .ratio_slack_bytes = 256ULL << 20};
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<ByteReader> tar,
                          compression ? archive::NewDecompressingReader(blob, *compression, guard)
                                      : archive::NewAutoDecompressingReader(blob, guard));
  // Three stages on three threads: decompression (read ahead), the diffID hash (inside
  // DigestingReader) and, here, the apply's system calls.
  DigestingReader hashed(*tar);
  ReadAheadReader tar_stream(hashed, /*chunk_size=*/256 << 10, /*capacity=*/1 << 20);
  std::vector<std::string> implied_dirs;
  if (placement_.format == LayerFormat::kWindows) {
    const archive::WindowsLayerOptions options{.is_base = placement_.parent_layers.empty(),
                                               .parent_layers = placement_.parent_layers};
    STRATA_RETURN_IF_ERROR(archive::ApplyWindowsLayer(tar_stream, dir_, options));
  } else {
    STRATA_ASSIGN_OR_RETURN(archive::ApplyStats stats, archive::ApplyLayer(tar_stream, dir_));
    implied_dirs = std::move(stats.implied_dirs);
  }
  // The diffID covers the whole tar, padding after the end-of-archive blocks included.
  std::string rest(64 * 1024, '\0');
  for (;;) {
    STRATA_ASSIGN_OR_RETURN(size_t n, tar_stream.Read(rest));
    if (n == 0) break;
  }
  STRATA_RETURN_IF_ERROR(tar_stream.Join());
  return Applied{.diff_id = hashed.Finish(), .implied_dirs = std::move(implied_dirs)};
}

Status LayerUnpack::OnData(int64_t offset, std::string_view bytes) {
  if (stream_broken_) return {};
  if (offset != next_offset_) {
    // Not the continuation of what the apply has seen: stop it, apply the stored blob later.
    stream_broken_ = true;
    pipe_.CloseWrite(Fail(ErrorCode::kCanceled, "layer {}: stream restarted at {}", layer_.digest, offset));
    return {};
  }
  next_offset_ += static_cast<int64_t>(bytes.size());
  return pipe_.Write(bytes);
}

void LayerUnpack::EndStream(const Status& fetched) {
  if (!stream_broken_) pipe_.CloseWrite(fetched);
}

Result<Digest> LayerUnpack::Finish(const store::ContentStore& content) {
  const std::string what = fmt::format("layer {}", layer_.digest);
  std::optional<Result<Applied>> applied;
  if (apply_thread_.joinable()) {
    apply_thread_.join();
    if (!stream_broken_ && next_offset_ == layer_.size) applied = std::move(streamed_);
  }
  if (!applied) {
    // The stream was not the whole blob (it was stored already, or the fetch resumed an old
    // ingest): start over in a fresh snapshot from the verified blob.
    Discard();
    STRATA_RETURN_IF_ERROR(Prepare());
    STRATA_ASSIGN_OR_RETURN(std::unique_ptr<store::BlobReader> reader, content.Reader(layer_.digest));
    FdReader file(reader->fd());
    applied = ApplyFrom(file);
  }
  if (!*applied) return Fail(applied->error().WithContext(what));
  implied_dirs_ = std::move((*applied)->implied_dirs);
  return (*applied)->diff_id;
}

Status LayerUnpack::Commit(const std::string& parent, snapshotter::CommitDurability durability) {
  const std::string what = fmt::format("layer {}", layer_.digest);
  auto committed = snapshots_.Commit(chain_id_.ToString(), key_, Labels(), parent, durability);
  if (!committed) {
    if (committed.error().code() != ErrorCode::kAlreadyExists) return Fail(committed.error().WithContext(what));
    // A concurrent pull committed this chainID first: theirs is the same layer.
    Discard();
    return {};
  }
  key_.clear();
  return {};
}

Status ImageUnpack::Plan(store::ContentStore& content, const oci::Descriptor& config) {
  content_ = &content;
  config_ = config.digest;
  STRATA_ASSIGN_OR_RETURN(std::string bytes, store::ReadBlob(content, config.digest));
  auto parsed_config = oci::ImageConfig::Parse(bytes);  // a manifest posing as a config fails here
  if (!parsed_config) return Fail(parsed_config.error().WithContext(fmt::format("config {}", config.digest)));
  const oci::ImageConfig& parsed = *parsed_config;
  format_ = ImageLayerFormat(parsed);
  diff_ids_ = parsed.rootfs.diff_ids;
  if (diff_ids_.size() != layers_.size()) {
    return Fail(ErrorCode::kInvalidArgument, "image config {} lists {} diff_ids for the manifest's {} layers",
                config.digest, diff_ids_.size(), layers_.size());
  }
  chain_ids_ = oci::ChainIDs(diff_ids_);
  first_missing_ = layers_.size();
  for (size_t i = 0; i < layers_.size(); ++i) {
    auto existing = snapshots_.Stat(chain_ids_[i].ToString());
    if (existing && existing->kind == snapshotter::Kind::kCommitted) continue;
    if (!existing && existing.error().code() != ErrorCode::kNotFound) return Fail(existing.error());
    first_missing_ = i;
    break;
  }
  unpacks_.resize(layers_.size());
  ready_dirs_.assign(layers_.size(), std::nullopt);
  return CheckCommittedBelow();
}

Status ImageUnpack::CheckCommittedBelow() {
  committed_below_.clear();
  if (first_missing_ == 0) return {};
  for (size_t i = 0; i < first_missing_; ++i) {
    STRATA_ASSIGN_OR_RETURN(snapshotter::SnapshotInfo info, snapshots_.Stat(chain_ids_[i].ToString()));
    if (SnapshotLayerFormat(info) != format_) {
      return Fail(ErrorCode::kFailedPrecondition,
                  "layer {} (#{}): snapshot {} holds it in {} form (unpacked for an image of another os), "
                  "this image needs {} form",
                  layers_[i].digest, i, chain_ids_[i], FormatName(SnapshotLayerFormat(info)), FormatName(format_));
    }
  }
  if (format_ != LayerFormat::kWindows) return {};
  STRATA_ASSIGN_OR_RETURN(committed_below_, ChainLayerDirs(snapshots_, chain_ids_[first_missing_ - 1].ToString()));
  for (size_t n = 0; n < committed_below_.size(); ++n) {
    const std::filesystem::path& dir = committed_below_[n];
    std::error_code ec;
    if (!std::filesystem::is_regular_file(dir / "layerchain.json", ec)) {
      const size_t i = first_missing_ - 1 - n;
      return Fail(ErrorCode::kFailedPrecondition,
                  "windows layer {} (#{}): its layer dir {} (snapshot {}) is missing or incomplete "
                  "(no layerchain.json): the layers above cannot be applied over it",
                  layers_[i].digest, i, dir.string(), chain_ids_[i]);
    }
  }
  return {};
}

std::optional<std::vector<std::filesystem::path>> ImageUnpack::ReadyParents(size_t i) const {
  std::vector<std::filesystem::path> parents;
  {
    std::lock_guard lock(ready_mutex_);
    for (size_t below = i; below > first_missing_; --below) {
      if (!ready_dirs_[below - 1]) return std::nullopt;
      parents.push_back(*ready_dirs_[below - 1]);
    }
  }
  parents.insert(parents.end(), committed_below_.begin(), committed_below_.end());
  return parents;
}

Status ImageUnpack::Applied(size_t i, const Digest& diff_id) {
  if (diff_id != diff_ids_[i]) {
    return Fail(ErrorCode::kFailedPrecondition, "layer {} (#{}): its tar has diffID {}, the config says {}",
                layers_[i].digest, i, diff_id, diff_ids_[i]);
  }
  if (format_ == LayerFormat::kWindows) {
    std::lock_guard lock(ready_mutex_);
    ready_dirs_[i] = unpacks_[i]->dir();
  }
  return {};
}

Status ImageUnpack::ApplyStored(size_t i, LayerPlacement placement) {
  unpacks_[i].reset();  // its snapshot goes first
  STRATA_ASSIGN_OR_RETURN(unpacks_[i], LayerUnpack::Start(snapshots_, layers_[i], chain_ids_[i], limits_,
                                                          std::move(placement), /*streaming=*/false));
  STRATA_ASSIGN_OR_RETURN(Digest diff_id, unpacks_[i]->Finish(*content_));
  return Applied(i, diff_id);
}

Result<registry::FetchOutcome> ImageUnpack::Transfer(const oci::Descriptor& blob, const Fetch& fetch) {
  const store::ContentStore& content = *content_;
  std::vector<size_t> positions;
  for (size_t i = first_missing_; i < layers_.size(); ++i) {
    if (layers_[i].digest == blob.digest) positions.push_back(i);
  }
  if (positions.empty()) return fetch(nullptr);
  // A blob in the store already is applied from there; otherwise the first position
  // streams from the download (for Windows, only when its parents are ready now: a
  // streaming apply that waited for them would stall this download and hold a pool thread).
  const bool stored = content.Info(blob.digest).has_value();
  const bool windows = format_ == LayerFormat::kWindows;
  for (size_t n = 0; n < positions.size(); ++n) {
    const size_t i = positions[n];
    LayerPlacement placement{.format = format_};
    if (windows) {
      std::optional<std::vector<std::filesystem::path>> parents = ReadyParents(i);
      if (!parents || n > 0 || stored) continue;  // applied after the fetch, or later
      placement.parent_layers = std::move(*parents);
    }
    STRATA_ASSIGN_OR_RETURN(unpacks_[i], LayerUnpack::Start(snapshots_, layers_[i], chain_ids_[i], limits_,
                                                            std::move(placement),
                                                            /*streaming=*/n == 0 && !stored));
  }
  LayerUnpack* streamed = stored ? nullptr : unpacks_[positions.front()].get();
  Result<registry::FetchOutcome> fetched = registry::FetchOutcome::kExists;
  if (streamed == nullptr) {
    fetched = fetch(nullptr);  // still: the caller's lease must hold it
  } else {
    fetched = fetch([streamed](int64_t offset, std::string_view bytes) { return streamed->OnData(offset, bytes); });
    streamed->EndStream(fetched ? Status{} : Status(std::unexpected(fetched.error())));
  }
  if (!fetched) return fetched;
  for (size_t i : positions) {
    if (!unpacks_[i]) {
      // Windows, not started: apply now if the parents are ready, else CommitAll does.
      std::optional<std::vector<std::filesystem::path>> parents = ReadyParents(i);
      if (!parents) continue;
      STRATA_RETURN_IF_ERROR(ApplyStored(i, {.format = format_, .parent_layers = std::move(*parents)}));
      continue;
    }
    STRATA_ASSIGN_OR_RETURN(Digest diff_id, unpacks_[i]->Finish(content));
    STRATA_RETURN_IF_ERROR(Applied(i, diff_id));
  }
  return fetched;
}

Status ImageUnpack::CheckNoWritesThroughSymlinks() const {
  // The layer dirs below first_missing_ are committed; those above are still active.
  std::vector<std::filesystem::path> lowers;  // nearest first
  if (first_missing_ > 0) {
    STRATA_ASSIGN_OR_RETURN(snapshotter::SnapshotRecord below,
                            snapshots_.records().Get(chain_ids_[first_missing_ - 1].ToString()));
    lowers.push_back(snapshots_.layout().FsDir(below.id));
    for (uint64_t id : below.parent_ids) lowers.push_back(snapshots_.layout().FsDir(id));
  }
  for (size_t i = first_missing_; i < layers_.size(); ++i) {
    for (const std::string& dir : unpacks_[i]->implied_dirs()) {
      STRATA_ASSIGN_OR_RETURN(std::optional<std::string> symlink, snapshotter::FindMergedSymlink(lowers, dir));
      if (symlink) {
        return Fail(ErrorCode::kInvalidArgument,
                    "layer {} (#{}): layer entry under {:?}: path component {:?} is a symlink in a lower layer "
                    "(never followed)",
                    layers_[i].digest, i, dir, *symlink);
      }
    }
    lowers.insert(lowers.begin(), unpacks_[i]->dir());
  }
  return {};
}

Result<int> ImageUnpack::CommitAll() {
  const bool windows = format_ == LayerFormat::kWindows;
  for (size_t i = first_missing_; i < layers_.size(); ++i) {
    if (unpacks_[i]) continue;
    // Windows: a layer fetched while its parent was not applied yet; its parent is now.
    std::optional<std::vector<std::filesystem::path>> parents;
    if (windows) parents = ReadyParents(i);
    if (!parents) return Fail(ErrorCode::kInternal, "layer {} (#{}) was never transferred", layers_[i].digest, i);
    STRATA_RETURN_IF_ERROR(ApplyStored(i, {.format = format_, .parent_layers = std::move(*parents)}));
  }
  // Every check before the first commit: a refused layer leaves no snapshot of this pull.
  // (Windows layers refuse writes through symlinks themselves and imply no dirs.)
  STRATA_RETURN_IF_ERROR(CheckNoWritesThroughSymlinks());
  // Every layer dir is on the snapshots' filesystem: one syncfs makes them all durable, and
  // the records follow buffered, the last one synced (2 barriers, not 2 per layer).
  if (first_missing_ < layers_.size()) STRATA_RETURN_IF_ERROR(SyncFilesystemOf(unpacks_[first_missing_]->dir()));
  int committed = 0;
  for (size_t i = first_missing_; i < layers_.size(); ++i) {
    const std::string parent = i == 0 ? "" : chain_ids_[i - 1].ToString();
    bool reapplied = false;
    if (windows && i > 0) {
      // The parent's snapshot may be another pull's (it committed that chainID first).
      STRATA_ASSIGN_OR_RETURN(std::vector<std::filesystem::path> parents, ChainLayerDirs(snapshots_, parent));
      if (parents != unpacks_[i]->placement().parent_layers) {
        STRATA_RETURN_IF_ERROR(ApplyStored(i, {.format = format_, .parent_layers = std::move(parents)}));
        reapplied = true;  // written after the syncfs above: its commit syncs again
      }
    }
    const bool last = i + 1 == layers_.size();
    if (Status done = unpacks_[i]->Commit(parent, {.layer_synced = !reapplied, .record_buffered = !last}); !done) {
      (void)snapshots_.records().Sync();  // the layers committed so far stay committed, durably
      return Fail(done.error());
    }
    ++committed;
  }
  if (!chain_ids_.empty()) {
    // containerd's scheme: the config holds the image's top snapshot (and so its chain) for GC.
    store::ContentInfo info{.digest = config_};
    const std::string label = std::string(store::kLabelGcRefSnapshotPrefix) + snapshots_.name();
    info.labels[label] = chain_ids_.back().ToString();
    STRATA_RETURN_IF_ERROR(content_->Update(info, {"labels." + label}));
  }
  return committed;
}

Result<std::vector<Digest>> UnpackStored(store::ContentStore& content, snapshotter::OverlaySnapshotter& snapshots,
                                         const oci::Manifest& manifest, const UnpackLimits& limits) {
  ImageUnpack unpack(snapshots, manifest, limits);
  STRATA_RETURN_IF_ERROR(unpack.Plan(content, manifest.config));
  std::set<Digest> done;
  for (const oci::Descriptor& layer : manifest.layers) {
    if (!done.insert(layer.digest).second) continue;
    STRATA_RETURN_IF_ERROR(unpack.Transfer(layer, [&](registry::FetchOptions::DataTee) -> Result<registry::FetchOutcome> {
      STRATA_RETURN_IF_ERROR(content.Info(layer.digest));
      return registry::FetchOutcome::kExists;
    }));
  }
  STRATA_RETURN_IF_ERROR(unpack.CommitAll());
  return unpack.chain_ids();
}

}  // namespace strata::images
