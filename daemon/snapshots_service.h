// containerd.services.snapshots.v1.Snapshots over the daemon's snapshotter personalities:
// what containerd's snapshots/proxy client expects of a proxy plugin (see
// shared/reference/containerd-api.md for the codes and the remote-snapshotter contract).
#pragma once

#include "containerd/services/snapshots/v1/snapshots.grpc.pb.h"
#include "daemon/peer_gate.h"
#include "daemon/snapshotters.h"

namespace strata::daemon {

class SnapshotsService final : public containerd::services::snapshots::v1::Snapshots::Service {
 public:
  // The label a remote-snapshotter-aware client (containerd's unpacker, CRI) puts on
  // Prepare: the chainID it is about to unpack. If a committed snapshot with that label and
  // the same parent exists, Prepare answers AlreadyExists and the client skips the unpack.
  static constexpr std::string_view kLabelTargetRef = "containerd.io/snapshot.ref";
  // Info messages per List response, as containerd's own server sends them.
  static constexpr int kListBatch = 100;

  SnapshotsService(const Snapshotters& snapshotters, const PeerGate& gate) : snapshotters_(snapshotters), gate_(gate) {}

  using Api = containerd::services::snapshots::v1::Snapshots::Service;
  grpc::Status Prepare(grpc::ServerContext* context, const containerd::services::snapshots::v1::PrepareSnapshotRequest* request,
                       containerd::services::snapshots::v1::PrepareSnapshotResponse* response) override;
  grpc::Status View(grpc::ServerContext* context, const containerd::services::snapshots::v1::ViewSnapshotRequest* request,
                    containerd::services::snapshots::v1::ViewSnapshotResponse* response) override;
  grpc::Status Mounts(grpc::ServerContext* context, const containerd::services::snapshots::v1::MountsRequest* request,
                      containerd::services::snapshots::v1::MountsResponse* response) override;
  grpc::Status Commit(grpc::ServerContext* context, const containerd::services::snapshots::v1::CommitSnapshotRequest* request,
                      google::protobuf::Empty* response) override;
  grpc::Status Remove(grpc::ServerContext* context, const containerd::services::snapshots::v1::RemoveSnapshotRequest* request,
                      google::protobuf::Empty* response) override;
  grpc::Status Stat(grpc::ServerContext* context, const containerd::services::snapshots::v1::StatSnapshotRequest* request,
                    containerd::services::snapshots::v1::StatSnapshotResponse* response) override;
  grpc::Status Update(grpc::ServerContext* context, const containerd::services::snapshots::v1::UpdateSnapshotRequest* request,
                      containerd::services::snapshots::v1::UpdateSnapshotResponse* response) override;
  grpc::Status List(grpc::ServerContext* context, const containerd::services::snapshots::v1::ListSnapshotsRequest* request,
                    grpc::ServerWriter<containerd::services::snapshots::v1::ListSnapshotsResponse>* writer) override;
  grpc::Status Usage(grpc::ServerContext* context, const containerd::services::snapshots::v1::UsageRequest* request,
                     containerd::services::snapshots::v1::UsageResponse* response) override;
  grpc::Status Cleanup(grpc::ServerContext* context, const containerd::services::snapshots::v1::CleanupRequest* request,
                       google::protobuf::Empty* response) override;

 private:
  const Snapshotters& snapshotters_;
  const PeerGate& gate_;
};

}  // namespace strata::daemon
