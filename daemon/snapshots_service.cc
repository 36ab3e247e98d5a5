#include "daemon/snapshots_service.h"

#include <fmt/format.h>

#include "daemon/rpc_status.h"

namespace strata::daemon {

namespace api = containerd::services::snapshots::v1;
using snapshotter::OverlaySnapshotter;

namespace {

store::Labels ToLabels(const google::protobuf::Map<std::string, std::string>& labels) {
  return store::Labels(labels.begin(), labels.end());
}

void ToProto(const std::vector<snapshotter::Mount>& mounts, google::protobuf::RepeatedPtrField<containerd::types::Mount>* out) {
  for (const auto& mount : mounts) {
    auto* m = out->Add();
    m->set_type(mount.type);
    m->set_source(mount.source);
    for (const auto& option : mount.options) m->add_options(option);
  }
}

void ToProto(const snapshotter::SnapshotInfo& info, api::Info* out) {
  out->set_name(info.name);
  out->set_parent(info.parent);
  out->set_kind(static_cast<api::Kind>(info.kind));
  daemon::ToProto(info.created_at, out->mutable_created_at());
  daemon::ToProto(info.updated_at, out->mutable_updated_at());
  out->mutable_labels()->insert(info.labels.begin(), info.labels.end());
}

// The remote-snapshotter contract: AlreadyExists when a committed snapshot made for the
// same target chainID over the same parent is here already (containerd then Walks for it
// with the same filter and uses it instead of unpacking).
Status CheckTargetAbsent(const OverlaySnapshotter& snapshots, const store::Labels& labels, const std::string& parent) {
  auto target = labels.find(std::string(SnapshotsService::kLabelTargetRef));
  if (target == labels.end() || target->second.empty()) return {};
  STRATA_ASSIGN_OR_RETURN(
      store::Filter filter,
      store::Filter::Parse({fmt::format("kind==committed,labels.\"{}\"=={:?},parent=={:?}", SnapshotsService::kLabelTargetRef,
                                        target->second, parent)}));
  bool found = false;
  STRATA_RETURN_IF_ERROR(snapshots.Walk(filter, [&](const snapshotter::SnapshotInfo&) {
    found = true;
    return false;
  }));
  if (found) return Fail(ErrorCode::kAlreadyExists, "target snapshot {:?} exists", target->second);
  return {};
}

}  // namespace

grpc::Status SnapshotsService::Prepare(grpc::ServerContext* context, const api::PrepareSnapshotRequest* request,
                                       api::PrepareSnapshotResponse* response) {
  return Guarded(gate_, context, "snapshots.Prepare", [&]() -> Status {
    STRATA_ASSIGN_OR_RETURN(OverlaySnapshotter * snapshots, snapshotters_.Find(request->snapshotter()));
    const store::Labels labels = ToLabels(request->labels());
    STRATA_RETURN_IF_ERROR(CheckTargetAbsent(*snapshots, labels, request->parent()));
    STRATA_ASSIGN_OR_RETURN(auto mounts, snapshots->Prepare(request->key(), request->parent(), labels));
    ToProto(mounts, response->mutable_mounts());
    return {};
  });
}

grpc::Status SnapshotsService::View(grpc::ServerContext* context, const api::ViewSnapshotRequest* request,
                                    api::ViewSnapshotResponse* response) {
  return Guarded(gate_, context, "snapshots.View", [&]() -> Status {
    STRATA_ASSIGN_OR_RETURN(OverlaySnapshotter * snapshots, snapshotters_.Find(request->snapshotter()));
    const store::Labels labels = ToLabels(request->labels());
    STRATA_RETURN_IF_ERROR(CheckTargetAbsent(*snapshots, labels, request->parent()));
    STRATA_ASSIGN_OR_RETURN(auto mounts, snapshots->View(request->key(), request->parent(), labels));
    ToProto(mounts, response->mutable_mounts());
    return {};
  });
}

grpc::Status SnapshotsService::Mounts(grpc::ServerContext* context, const api::MountsRequest* request,
                                      api::MountsResponse* response) {
  return Guarded(gate_, context, "snapshots.Mounts", [&]() -> Status {
    STRATA_ASSIGN_OR_RETURN(OverlaySnapshotter * snapshots, snapshotters_.Find(request->snapshotter()));
    STRATA_ASSIGN_OR_RETURN(auto mounts, snapshots->Mounts(request->key()));
    ToProto(mounts, response->mutable_mounts());
    return {};
  });
}

grpc::Status SnapshotsService::Commit(grpc::ServerContext* context, const api::CommitSnapshotRequest* request,
                                      google::protobuf::Empty*) {
  return Guarded(gate_, context, "snapshots.Commit", [&]() -> Status {
    STRATA_ASSIGN_OR_RETURN(OverlaySnapshotter * snapshots, snapshotters_.Find(request->snapshotter()));
    std::optional<std::string> rebase_onto;
    if (!request->parent().empty()) rebase_onto = request->parent();
    return snapshots->Commit(request->name(), request->key(), ToLabels(request->labels()), rebase_onto);
  });
}

grpc::Status SnapshotsService::Remove(grpc::ServerContext* context, const api::RemoveSnapshotRequest* request,
                                      google::protobuf::Empty*) {
  return Guarded(gate_, context, "snapshots.Remove", [&]() -> Status {
    STRATA_ASSIGN_OR_RETURN(OverlaySnapshotter * snapshots, snapshotters_.Find(request->snapshotter()));
    return snapshots->Remove(request->key());
  });
}

grpc::Status SnapshotsService::Stat(grpc::ServerContext* context, const api::StatSnapshotRequest* request,
                                    api::StatSnapshotResponse* response) {
  return Guarded(gate_, context, "snapshots.Stat", [&]() -> Status {
    STRATA_ASSIGN_OR_RETURN(OverlaySnapshotter * snapshots, snapshotters_.Find(request->snapshotter()));
    STRATA_ASSIGN_OR_RETURN(auto info, snapshots->Stat(request->key()));
    ToProto(info, response->mutable_info());
    return {};
  });
}

grpc::Status SnapshotsService::Update(grpc::ServerContext* context, const api::UpdateSnapshotRequest* request,
                                      api::UpdateSnapshotResponse* response) {
  return Guarded(gate_, context, "snapshots.Update", [&]() -> Status {
    STRATA_ASSIGN_OR_RETURN(OverlaySnapshotter * snapshots, snapshotters_.Find(request->snapshotter()));
    snapshotter::SnapshotInfo info;
    info.name = request->info().name();
    info.parent = request->info().parent();
    info.labels = ToLabels(request->info().labels());
    std::vector<std::string> paths(request->update_mask().paths().begin(), request->update_mask().paths().end());
    STRATA_ASSIGN_OR_RETURN(auto updated, snapshots->Update(info, paths));
    ToProto(updated, response->mutable_info());
    return {};
  });
}

grpc::Status SnapshotsService::List(grpc::ServerContext* context, const api::ListSnapshotsRequest* request,
                                    grpc::ServerWriter<api::ListSnapshotsResponse>* writer) {
  return Guarded(gate_, context, "snapshots.List", [&]() -> Status {
    STRATA_ASSIGN_OR_RETURN(OverlaySnapshotter * snapshots, snapshotters_.Find(request->snapshotter()));
    STRATA_ASSIGN_OR_RETURN(
        store::Filter filter,
        store::Filter::Parse(std::vector<std::string>(request->filters().begin(), request->filters().end())));
    // Collect first, send after: no lock of the store is held while the client reads (it
    // may Stat during the List; containerd's StatInWalk case does).
    std::vector<snapshotter::SnapshotInfo> infos;
    STRATA_RETURN_IF_ERROR(snapshots->Walk(filter, [&](const snapshotter::SnapshotInfo& info) {
      infos.push_back(info);
      return true;
    }));
    return StreamInBatches(writer, infos, kListBatch,
                           [](const snapshotter::SnapshotInfo& info, api::ListSnapshotsResponse& out) {
                             ToProto(info, out.add_info());
                           });
  });
}

grpc::Status SnapshotsService::Usage(grpc::ServerContext* context, const api::UsageRequest* request,
                                     api::UsageResponse* response) {
  return Guarded(gate_, context, "snapshots.Usage", [&]() -> Status {
    STRATA_ASSIGN_OR_RETURN(OverlaySnapshotter * snapshots, snapshotters_.Find(request->snapshotter()));
    STRATA_ASSIGN_OR_RETURN(auto usage, snapshots->UsageOf(request->key()));
    response->set_size(usage.size);
    response->set_inodes(usage.inodes);
    return {};
  });
}

grpc::Status SnapshotsService::Cleanup(grpc::ServerContext* context, const api::CleanupRequest* request,
                                       google::protobuf::Empty*) {
  return Guarded(gate_, context, "snapshots.Cleanup", [&]() -> Status {
    STRATA_ASSIGN_OR_RETURN(OverlaySnapshotter * snapshots, snapshotters_.Find(request->snapshotter()));
    return snapshots->Cleanup();
  });
}

}  // namespace strata::daemon
