// The daemon's one door between strata's Error and gRPC: code mapping (1:1, as containerd's
// errdefs expects), timestamps, and the guard every handler runs in.
#pragma once

#include <functional>

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

}  // namespace strata::daemon
