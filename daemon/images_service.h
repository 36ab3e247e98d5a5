// strata.v1.Images (api/strata/v1/images.proto) over the engine: the same images/ calls
// the CLI makes on a store it opens itself, on the daemon's store and its "overlayfs"
// snapshotter (the CLI's snapshots, not containerd's proxy personalities).
//
// Concurrency: GC must not run while snapshots are prepared or committed or images
// recorded, so it holds the engine lock exclusively; Pull, Push, Mount, Unmount, Remove
// and Tag hold it shared (they run concurrently with each other).
#pragma once

#include <shared_mutex>

#include "daemon/peer_gate.h"
#include "snapshotter/overlay_snapshotter.h"
#include "store/store.h"
#include "strata/v1/images.grpc.pb.h"

namespace strata::daemon {

class ImagesService final : public strata::v1::Images::Service {
 public:
  // `store`, `snapshots` and `gate` must outlive the service.
  ImagesService(store::Store& store, snapshotter::OverlaySnapshotter& snapshots, const PeerGate& gate)
      : store_(store), snapshots_(snapshots), gate_(gate) {}

  grpc::Status Pull(grpc::ServerContext* context, const strata::v1::PullRequest* request,
                    grpc::ServerWriter<strata::v1::PullEvent>* writer) override;
  grpc::Status Push(grpc::ServerContext* context, const strata::v1::PushRequest* request,
                    grpc::ServerWriter<strata::v1::PushEvent>* writer) override;
  grpc::Status List(grpc::ServerContext* context, const strata::v1::ListImagesRequest* request,
                    strata::v1::ListImagesResponse* response) override;
  grpc::Status Get(grpc::ServerContext* context, const strata::v1::GetImageRequest* request,
                   strata::v1::GetImageResponse* response) override;
  grpc::Status Remove(grpc::ServerContext* context, const strata::v1::RemoveImageRequest* request,
                      strata::v1::RemoveImageResponse* response) override;
  grpc::Status Tag(grpc::ServerContext* context, const strata::v1::TagImageRequest* request,
                   strata::v1::TagImageResponse* response) override;
  grpc::Status Mount(grpc::ServerContext* context, const strata::v1::MountImageRequest* request,
                     strata::v1::MountImageResponse* response) override;
  grpc::Status Unmount(grpc::ServerContext* context, const strata::v1::UnmountImageRequest* request,
                       strata::v1::UnmountImageResponse* response) override;
  grpc::Status Save(grpc::ServerContext* context, const strata::v1::SaveImagesRequest* request,
                    strata::v1::SaveImagesResponse* response) override;
  grpc::Status Load(grpc::ServerContext* context, const strata::v1::LoadImagesRequest* request,
                    strata::v1::LoadImagesResponse* response) override;
  grpc::Status GC(grpc::ServerContext* context, const strata::v1::GCRequest* request,
                  strata::v1::GCResponse* response) override;

 private:
  store::Store& store_;
  snapshotter::OverlaySnapshotter& snapshots_;
  const PeerGate& gate_;
  std::shared_mutex engine_mutex_;  // GC: exclusive; the calls that change the store: shared
};

}  // namespace strata::daemon
