// The daemon's one door between strata's Error and gRPC: code mapping (1:1, as containerd's
// errdefs expects), timestamps, and the guard every handler runs in.
#pragma once

#include <functional>
#include <vector>

#include <google/protobuf/timestamp.pb.h>
#include <grpcpp/grpcpp.h>

#include "base/error.h"
#include "store/types.h"

namespace strata::daemon {

class PeerGate;

grpc::StatusCode ToGrpcCode(ErrorCode code);
grpc::Status ToGrpcStatus(const Error& error);
// The inverse, for clients of the daemon (the CLI): codes strata has no class for become
// kInternal; Canceled and DeadlineExceeded become kCanceled.
Error FromGrpcStatus(const grpc::Status& status);

void ToProto(store::Timestamp t, google::protobuf::Timestamp* out);
store::Timestamp FromProto(const google::protobuf::Timestamp& t);

// Runs `body` for a call once the peer is allowed (PermissionDenied otherwise), and turns
// its Status into the call's. An exception escaping `body` becomes Internal (and is logged)
// rather than ending the daemon.
grpc::Status Guarded(const PeerGate& gate, grpc::ServerContext* context, const char* method,
                     const std::function<Status()>& body);

// Streams `items` in messages of up to `batch` each (containerd's List servers send 100),
// `add(item, response)` appending one item to a response. Canceled when the client left.
template <typename Response, typename Item, typename Add>
Status StreamInBatches(grpc::ServerWriter<Response>* writer, const std::vector<Item>& items, int batch, Add add) {
  Response response;
  int in_response = 0;
  for (const Item& item : items) {
    add(item, response);
    if (++in_response == batch) {
      if (!writer->Write(response)) return Fail(ErrorCode::kCanceled, "list: the client went away");
      response.Clear();
      in_response = 0;
    }
  }
  if (in_response > 0 && !writer->Write(response)) return Fail(ErrorCode::kCanceled, "list: the client went away");
  return {};
}

}  // namespace strata::daemon
