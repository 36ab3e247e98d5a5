// containerd.services.content.v1.Content over strata's ContentStore: what containerd's
// content/proxy client expects of a content proxy plugin, including the streamed write
// protocol (STAT / WRITE / COMMIT, resumable by ref) and ranged streamed reads.
#pragma once

#include "containerd/services/content/v1/content.grpc.pb.h"
#include "daemon/peer_gate.h"
#include "store/content_store.h"

namespace strata::daemon {

class ContentService final : public containerd::services::content::v1::Content::Service {
 public:
  // Bytes per Read response and Info messages per List response.
  static constexpr size_t kReadChunk = 1 << 20;
  static constexpr int kListBatch = 100;

  ContentService(store::ContentStore& content, const PeerGate& gate) : content_(content), gate_(gate) {}

  grpc::Status Info(grpc::ServerContext* context, const containerd::services::content::v1::InfoRequest* request,
                    containerd::services::content::v1::InfoResponse* response) override;
  grpc::Status Update(grpc::ServerContext* context, const containerd::services::content::v1::UpdateRequest* request,
                      containerd::services::content::v1::UpdateResponse* response) override;
  grpc::Status List(grpc::ServerContext* context, const containerd::services::content::v1::ListContentRequest* request,
                    grpc::ServerWriter<containerd::services::content::v1::ListContentResponse>* writer) override;
  grpc::Status Delete(grpc::ServerContext* context, const containerd::services::content::v1::DeleteContentRequest* request,
                      google::protobuf::Empty* response) override;
  grpc::Status Read(grpc::ServerContext* context, const containerd::services::content::v1::ReadContentRequest* request,
                    grpc::ServerWriter<containerd::services::content::v1::ReadContentResponse>* writer) override;
  grpc::Status Status(grpc::ServerContext* context, const containerd::services::content::v1::StatusRequest* request,
                      containerd::services::content::v1::StatusResponse* response) override;
  grpc::Status ListStatuses(grpc::ServerContext* context,
                            const containerd::services::content::v1::ListStatusesRequest* request,
                            containerd::services::content::v1::ListStatusesResponse* response) override;
  grpc::Status Write(grpc::ServerContext* context,
                     grpc::ServerReaderWriter<containerd::services::content::v1::WriteContentResponse,
                                              containerd::services::content::v1::WriteContentRequest>* stream) override;
  grpc::Status Abort(grpc::ServerContext* context, const containerd::services::content::v1::AbortRequest* request,
                     google::protobuf::Empty* response) override;

 private:
  store::ContentStore& content_;
  const PeerGate& gate_;
};

}  // namespace strata::daemon
