#include "images/commit.h"

#include <unistd.h>

#include <atomic>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "archive/compress.h"
#include "archive/diff.h"
#include "archive/windows_layer.h"
#include "images/image_mount.h"
#include "images/pull.h"
#include "images/unpack.h"
#include "oci/image_config.h"
#include "oci/manifest.h"
#include "snapshotter/scratch_disk.h"
#include "snapshotter/vm_layout.h"
#include "store/lease_manager.h"

namespace strata::images {

namespace {

using json = nlohmann::ordered_json;

Result<json> ParseJson(std::string_view bytes, std::string_view what) {
  json doc = json::parse(bytes, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) return Fail(ErrorCode::kInvalidArgument, "{} is not a JSON object", what);
  return doc;
}

std::string_view LayerMediaType(std::string_view manifest_media_type, oci::Compression compression) {
  const bool docker = manifest_media_type == oci::media_type::kDockerManifest;
  switch (compression) {
    case oci::Compression::kGzip: return docker ? oci::media_type::kDockerLayerGzip : oci::media_type::kOciLayerGzip;
    case oci::Compression::kZstd: return docker ? oci::media_type::kDockerLayerZstd : oci::media_type::kOciLayerZstd;
    case oci::Compression::kNone: break;
  }
  return docker ? oci::media_type::kDockerLayer : oci::media_type::kOciLayer;
}

// Streams the layer tar of snapshot `key` through the compressor into a new blob; returns
// its descriptor (media type unset) and the diffID.
Result<std::pair<oci::Descriptor, Digest>> WriteLayer(store::ContentStore& content,
                                                      snapshotter::OverlaySnapshotter& snapshots,
                                                      const std::string& key, oci::Compression compression,
                                                      const std::string& lease, uint64_t& entries) {
  // Unique across processes: a killed commit leaves its ingest, and a later process with
  // the same pid (pid namespaces) must not resume it and append a second layer to it.
  static std::atomic<uint64_t> counter{0};
  const std::string ref =
      fmt::format("commit-{}-{}-{}", ::getpid(), store::ToUnixNanos(store::Now()), counter.fetch_add(1));
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<store::ContentWriter> writer, content.Writer(ref, {.lease = lease}));
  Digester compressed_digest;
  Digester tar_digest;
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<archive::Compressor> compressor,
                          archive::Compressor::Create(compression, [&](std::string_view bytes) -> Status {
                            compressed_digest.Update(bytes);
                            return writer->Write(bytes);
                          }));
  STRATA_ASSIGN_OR_RETURN(entries, ExportSnapshotLayer(snapshots, key, [&](std::string_view bytes) {
                            tar_digest.Update(bytes);
                            return compressor->Write(bytes);
                          }));
  STRATA_RETURN_IF_ERROR(compressor->Finish());
  oci::Descriptor layer;
  layer.digest = compressed_digest.Finish();
  layer.size = static_cast<int64_t>(compressor->bytes_written());
  auto committed = writer->Commit(layer.size, layer.digest);
  if (!committed && committed.error().code() != ErrorCode::kAlreadyExists) return Fail(committed.error());
  return std::pair{layer, tar_digest.Finish()};
}

}  // namespace

Result<uint64_t> ExportSnapshotLayer(snapshotter::OverlaySnapshotter& snapshots, const std::string& key,
                                     const archive::ByteSink& sink) {
  STRATA_ASSIGN_OR_RETURN(snapshotter::SnapshotRecord record, snapshots.records().Get(key));
  const std::filesystem::path dir = snapshots.layout().FsDir(record.id);
  if (SnapshotLayerFormat(record.info) == LayerFormat::kWindows) {
    STRATA_ASSIGN_OR_RETURN(archive::WindowsLayerStats stats, archive::WriteWindowsLayer(dir, sink));
    return stats.entries;
  }
  // A container of the vm composition keeps its changes in its scratch disk's upper/ until
  // the snapshot is committed.
  std::error_code ec;
  if (record.info.kind == snapshotter::Kind::kActive &&
      std::filesystem::exists(snapshots.layout().SnapshotDir(record.id) / snapshotter::kScratchImageName, ec)) {
    uint64_t entries = 0;
    STRATA_RETURN_IF_ERROR(snapshotter::WithScratchUpper(
        snapshots.layout(), record, [&](const std::filesystem::path& upper) -> Status {
          STRATA_ASSIGN_OR_RETURN(archive::DiffStats stats, archive::WriteOverlayDiff(upper, sink));
          entries = stats.entries;
          return {};
        }));
    return entries;
  }
  STRATA_ASSIGN_OR_RETURN(archive::DiffStats stats, archive::WriteOverlayDiff(dir, sink));
  return stats.entries;
}

Result<CommitResult> CommitContainer(store::Store& store, snapshotter::OverlaySnapshotter& snapshots,
                                     const std::string& key, const std::string& new_name,
                                     const CommitOptions& options) {
  const std::string what = fmt::format("commit of snapshot {:?}", key);
  STRATA_ASSIGN_OR_RETURN(snapshotter::SnapshotRecord record, snapshots.records().Get(key));
  if (record.info.kind != snapshotter::Kind::kActive) {
    return Fail(ErrorCode::kFailedPrecondition, "{}: it is {}, not a writable container snapshot", what,
                snapshotter::KindName(record.info.kind));
  }
  auto base_label = record.info.labels.find(std::string(kLabelMountManifest));
  if (base_label == record.info.labels.end()) {
    return Fail(ErrorCode::kFailedPrecondition, "{}: it was not mounted from an image by strata (no {} label)", what,
                kLabelMountManifest);
  }
  STRATA_ASSIGN_OR_RETURN(Digest base_manifest_digest, Digest::Parse(base_label->second));
  store::ContentStore& content = store.content();
  auto base_bytes = store::ReadBlob(content, base_manifest_digest);
  if (!base_bytes) return Fail(ErrorCode::kFailedPrecondition, "{}: base manifest: {}", what, base_bytes.error().message());
  STRATA_ASSIGN_OR_RETURN(json manifest, ParseJson(*base_bytes, "base manifest"));
  STRATA_ASSIGN_OR_RETURN(oci::Manifest base, oci::Manifest::Parse(*base_bytes));
  STRATA_ASSIGN_OR_RETURN(std::string config_bytes, store::ReadBlob(content, base.config.digest));
  STRATA_ASSIGN_OR_RETURN(json config, ParseJson(config_bytes, "base config"));
  oci::ImageConfig base_os;
  if (config.contains("os") && config["os"].is_string()) base_os.os = config["os"].get<std::string>();
  bool over_windows_layers = ImageLayerFormat(base_os) == LayerFormat::kWindows;
  if (!record.info.parent.empty()) {
    STRATA_ASSIGN_OR_RETURN(snapshotter::SnapshotInfo parent, snapshots.Stat(record.info.parent));
    over_windows_layers = over_windows_layers || SnapshotLayerFormat(parent) == LayerFormat::kWindows;
  }
  if (over_windows_layers) {
    return Fail(ErrorCode::kFailedPrecondition,
                "{}: it is a container over Windows image {}: its changes cannot be exported as a Windows layer "
                "yet (strata does not mount Windows images yet; an overlay diff would be a wrong layer)",
                what, base_manifest_digest);
  }

  // Everything written is held by a lease until the image record names it.
  STRATA_ASSIGN_OR_RETURN(store::ScopedLease lease,
                          store::ScopedLease::Create(store.leases(), {{"strata.io/commit", key}}, std::chrono::hours(1)));
  CommitResult result;
  STRATA_ASSIGN_OR_RETURN(auto layer, WriteLayer(content, snapshots, key, options.compression, lease.id(),
                                                 result.entries));
  result.layer = layer.first;
  result.layer.media_type = std::string(LayerMediaType(base.media_type, options.compression));
  result.diff_id = layer.second;

  const std::string now = store::FormatTimestamp(store::Now());
  config["created"] = now;
  config["rootfs"]["diff_ids"].push_back(result.diff_id.ToString());
  json history = {{"created", now}, {"created_by", options.created_by}};
  if (!options.comment.empty()) history["comment"] = options.comment;
  config["history"].push_back(std::move(history));
  const std::string new_config = config.dump();
  result.config = {.media_type = base.config.media_type, .digest = Digest::Of(new_config),
                   .size = static_cast<int64_t>(new_config.size())};
  STRATA_RETURN_IF_ERROR(store::WriteBlob(content, &store.leases(), result.config.digest, new_config, {}, lease.id()));

  manifest["config"]["digest"] = result.config.digest.ToString();
  manifest["config"]["size"] = result.config.size;
  manifest["layers"].push_back(
      {{"mediaType", result.layer.media_type}, {"digest", result.layer.digest.ToString()}, {"size", result.layer.size}});
  const std::string new_manifest = manifest.dump();
  STRATA_ASSIGN_OR_RETURN(oci::Manifest parsed, oci::Manifest::Parse(new_manifest));
  result.manifest = {.media_type = base.media_type, .digest = Digest::Of(new_manifest),
                     .size = static_cast<int64_t>(new_manifest.size())};
  STRATA_RETURN_IF_ERROR(store::WriteBlob(content, &store.leases(), result.manifest.digest, new_manifest,
                                          ManifestGcLabels(parsed.config, parsed.layers), lease.id()));
  STRATA_RETURN_IF_ERROR(store.images().Put(store::Image{.name = new_name, .target = result.manifest}));
  return result;
}

}  // namespace strata::images
