#include "daemon/images_proto.h"

#include <fmt/format.h>

#include "daemon/rpc_status.h"

namespace strata::daemon {

namespace v1 = strata::v1;

namespace {

Result<Digest> ParseDigest(const std::string& text, std::string_view field) {
  auto digest = Digest::Parse(text);
  if (!digest) return Fail(ErrorCode::kInvalidArgument, "{}: {}", field, digest.error().message());
  return *digest;
}

v1::BlobKind ToProto(registry::BlobKind kind) {
  switch (kind) {
    case registry::BlobKind::kManifest: return v1::BLOB_KIND_MANIFEST;
    case registry::BlobKind::kIndex: return v1::BLOB_KIND_INDEX;
    case registry::BlobKind::kConfig: return v1::BLOB_KIND_CONFIG;
    case registry::BlobKind::kLayer: return v1::BLOB_KIND_LAYER;
    case registry::BlobKind::kBlob: return v1::BLOB_KIND_BLOB;
  }
  return v1::BLOB_KIND_UNSPECIFIED;
}

registry::BlobKind FromProto(v1::BlobKind kind) {
  switch (kind) {
    case v1::BLOB_KIND_MANIFEST: return registry::BlobKind::kManifest;
    case v1::BLOB_KIND_INDEX: return registry::BlobKind::kIndex;
    case v1::BLOB_KIND_CONFIG: return registry::BlobKind::kConfig;
    case v1::BLOB_KIND_LAYER: return registry::BlobKind::kLayer;
    default: return registry::BlobKind::kBlob;
  }
}

v1::TransferPhase ToProto(registry::TransferState state) {
  using registry::TransferState;
  switch (state) {
    case TransferState::kWaiting: return v1::TRANSFER_PHASE_WAITING;
    case TransferState::kDownloading: return v1::TRANSFER_PHASE_DOWNLOADING;
    case TransferState::kUploading: return v1::TRANSFER_PHASE_UPLOADING;
    case TransferState::kVerifying: return v1::TRANSFER_PHASE_VERIFYING;
    case TransferState::kDone: return v1::TRANSFER_PHASE_DONE;
    case TransferState::kExists: return v1::TRANSFER_PHASE_EXISTS;
    case TransferState::kMounted: return v1::TRANSFER_PHASE_MOUNTED;
    case TransferState::kSkipped: return v1::TRANSFER_PHASE_SKIPPED;
    case TransferState::kFailed: return v1::TRANSFER_PHASE_FAILED;
  }
  return v1::TRANSFER_PHASE_UNSPECIFIED;
}

Result<registry::TransferState> FromProto(v1::TransferPhase phase) {
  using registry::TransferState;
  switch (phase) {
    case v1::TRANSFER_PHASE_WAITING: return TransferState::kWaiting;
    case v1::TRANSFER_PHASE_DOWNLOADING: return TransferState::kDownloading;
    case v1::TRANSFER_PHASE_UPLOADING: return TransferState::kUploading;
    case v1::TRANSFER_PHASE_VERIFYING: return TransferState::kVerifying;
    case v1::TRANSFER_PHASE_DONE: return TransferState::kDone;
    case v1::TRANSFER_PHASE_EXISTS: return TransferState::kExists;
    case v1::TRANSFER_PHASE_MOUNTED: return TransferState::kMounted;
    case v1::TRANSFER_PHASE_SKIPPED: return TransferState::kSkipped;
    case v1::TRANSFER_PHASE_FAILED: return TransferState::kFailed;
    default: return Fail(ErrorCode::kInvalidArgument, "progress.phase: unknown phase {}", static_cast<int>(phase));
  }
}

}  // namespace

void ToProto(const std::vector<snapshotter::Mount>& mounts,
             google::protobuf::RepeatedPtrField<containerd::types::Mount>* out) {
  for (const snapshotter::Mount& mount : mounts) {
    containerd::types::Mount* m = out->Add();
    m->set_type(mount.type);
    m->set_source(mount.source);
    for (const auto& option : mount.options) m->add_options(option);
  }
}

std::vector<snapshotter::Mount> FromProto(const google::protobuf::RepeatedPtrField<containerd::types::Mount>& mounts) {
  std::vector<snapshotter::Mount> out;
  for (const containerd::types::Mount& mount : mounts) {
    out.push_back({.type = mount.type(),
                   .source = mount.source(),
                   .options = {mount.options().begin(), mount.options().end()}});
  }
  return out;
}

void ToProto(const oci::Descriptor& descriptor, v1::Descriptor* out) {
  out->set_media_type(descriptor.media_type);
  out->set_digest(descriptor.digest.ToString());
  out->set_size(descriptor.size);
  for (const auto& [key, value] : descriptor.annotations) (*out->mutable_annotations())[key] = value;
  for (const auto& url : descriptor.urls) out->add_urls(url);
  if (descriptor.artifact_type) out->set_artifact_type(*descriptor.artifact_type);
}

Result<oci::Descriptor> FromProto(const v1::Descriptor& descriptor, std::string_view field) {
  oci::Descriptor out;
  out.media_type = descriptor.media_type();
  STRATA_ASSIGN_OR_RETURN(out.digest, ParseDigest(descriptor.digest(), fmt::format("{}.digest", field)));
  out.size = descriptor.size();
  out.annotations.insert(descriptor.annotations().begin(), descriptor.annotations().end());
  out.urls.assign(descriptor.urls().begin(), descriptor.urls().end());
  if (!descriptor.artifact_type().empty()) out.artifact_type = descriptor.artifact_type();
  return out;
}

void ToProto(const store::Image& image, v1::Image* out) {
  out->set_name(image.name);
  ToProto(image.target, out->mutable_target());
  for (const auto& [key, value] : image.labels) (*out->mutable_labels())[key] = value;
  ToProto(image.created_at, out->mutable_created_at());
  ToProto(image.updated_at, out->mutable_updated_at());
}

Result<store::Image> FromProto(const v1::Image& image) {
  store::Image out;
  out.name = image.name();
  STRATA_ASSIGN_OR_RETURN(out.target, FromProto(image.target(), "image.target"));
  out.labels.insert(image.labels().begin(), image.labels().end());
  out.created_at = FromProto(image.created_at());
  out.updated_at = FromProto(image.updated_at());
  return out;
}

void ToProto(const registry::ProgressEvent& event, v1::TransferProgress* out) {
  out->set_digest(event.digest.ToString());
  out->set_kind(ToProto(event.kind));
  out->set_phase(ToProto(event.state));
  out->set_done(event.offset);
  out->set_total(event.total);
  out->set_error(event.error);
}

Result<registry::ProgressEvent> FromProto(const v1::TransferProgress& progress) {
  STRATA_ASSIGN_OR_RETURN(Digest digest, ParseDigest(progress.digest(), "progress.digest"));
  STRATA_ASSIGN_OR_RETURN(registry::TransferState state, FromProto(progress.phase()));
  return registry::ProgressEvent{.digest = std::move(digest),
                                 .kind = FromProto(progress.kind()),
                                 .state = state,
                                 .offset = progress.done(),
                                 .total = progress.total(),
                                 .error = progress.error()};
}

void ToProto(const images::PullResult& result, bool unpacked, v1::PullResult* out) {
  out->set_name(result.image_name);
  ToProto(result.target, out->mutable_target());
  ToProto(result.manifest, out->mutable_manifest());
  ToProto(result.config, out->mutable_config());
  for (const Digest& chain_id : result.chain_ids) out->add_chain_ids(chain_id.ToString());
  out->set_layers_unpacked(result.layers_unpacked);
  out->set_blobs_fetched(result.blobs_fetched);
  out->set_blobs_present(result.blobs_present);
  out->set_bytes_received(result.bytes_received);
  out->set_unpacked(unpacked);
}

Result<images::PullResult> FromProto(const v1::PullResult& result) {
  images::PullResult out;
  out.image_name = result.name();
  STRATA_ASSIGN_OR_RETURN(out.target, FromProto(result.target(), "result.target"));
  STRATA_ASSIGN_OR_RETURN(out.manifest, FromProto(result.manifest(), "result.manifest"));
  STRATA_ASSIGN_OR_RETURN(out.config, FromProto(result.config(), "result.config"));
  for (const std::string& chain_id : result.chain_ids()) {
    STRATA_ASSIGN_OR_RETURN(Digest digest, ParseDigest(chain_id, "result.chain_ids"));
    out.chain_ids.push_back(digest);
  }
  out.layers_unpacked = result.layers_unpacked();
  out.blobs_fetched = result.blobs_fetched();
  out.blobs_present = result.blobs_present();
  out.bytes_received = result.bytes_received();
  return out;
}

void ToProto(const images::PushImageResult& result, const std::string& name, v1::PushResult* out) {
  out->set_name(name);
  ToProto(result.pushed, out->mutable_pushed());
  out->set_uploaded(result.uploaded);
  out->set_existed(result.existed);
  out->set_mounted(result.mounted);
  out->set_skipped(result.skipped);
  out->set_note(result.note);
}

Result<images::PushImageResult> FromProto(const v1::PushResult& result) {
  images::PushImageResult out;
  STRATA_ASSIGN_OR_RETURN(out.pushed, FromProto(result.pushed(), "result.pushed"));
  out.uploaded = result.uploaded();
  out.existed = result.existed();
  out.mounted = result.mounted();
  out.skipped = result.skipped();
  out.note = result.note();
  return out;
}

void ToProto(const images::GarbageReport& report, bool dry_run, v1::GCResponse* out) {
  out->set_dry_run(dry_run);
  for (const Digest& digest : report.content.blobs_removed) out->add_blobs_removed(digest.ToString());
  for (const auto& ref : report.content.ingests_removed) out->add_ingests_removed(ref);
  for (const auto& lease : report.content.leases_expired) out->add_leases_expired(lease);
  for (const auto& path : report.content.orphan_files_removed) out->add_orphan_files_removed(path);
  for (const auto& path : report.content.snapshot_dirs_removed) out->add_snapshot_dirs_removed(path);
  for (const auto& name : report.snapshots_removed) out->add_snapshots_removed(name);
  out->set_bytes_freed(report.content.bytes_freed);
  out->set_blobs_kept(report.content.blobs_kept);
}

Result<images::GarbageReport> FromProto(const v1::GCResponse& report) {
  images::GarbageReport out;
  for (const std::string& text : report.blobs_removed()) {
    STRATA_ASSIGN_OR_RETURN(Digest digest, ParseDigest(text, "blobs_removed"));
    out.content.blobs_removed.push_back(digest);
  }
  out.content.ingests_removed.assign(report.ingests_removed().begin(), report.ingests_removed().end());
  out.content.leases_expired.assign(report.leases_expired().begin(), report.leases_expired().end());
  out.content.orphan_files_removed.assign(report.orphan_files_removed().begin(), report.orphan_files_removed().end());
  out.content.snapshot_dirs_removed.assign(report.snapshot_dirs_removed().begin(),
                                           report.snapshot_dirs_removed().end());
  out.snapshots_removed.assign(report.snapshots_removed().begin(), report.snapshots_removed().end());
  out.content.bytes_freed = report.bytes_freed();
  out.content.blobs_kept = report.blobs_kept();
  return out;
}

}  // namespace strata::daemon
