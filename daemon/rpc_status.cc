#include "daemon/rpc_status.h"

#include <exception>

#include <spdlog/spdlog.h>

#include "daemon/peer_gate.h"

namespace strata::daemon {

grpc::StatusCode ToGrpcCode(ErrorCode code) {
  switch (code) {
    case ErrorCode::kNotFound: return grpc::StatusCode::NOT_FOUND;
    case ErrorCode::kAlreadyExists: return grpc::StatusCode::ALREADY_EXISTS;
    case ErrorCode::kFailedPrecondition: return grpc::StatusCode::FAILED_PRECONDITION;
    case ErrorCode::kInvalidArgument: return grpc::StatusCode::INVALID_ARGUMENT;
    case ErrorCode::kUnavailable: return grpc::StatusCode::UNAVAILABLE;
    case ErrorCode::kUnimplemented: return grpc::StatusCode::UNIMPLEMENTED;
    case ErrorCode::kCanceled: return grpc::StatusCode::CANCELLED;
    case ErrorCode::kInternal: return grpc::StatusCode::INTERNAL;
  }
  return grpc::StatusCode::UNKNOWN;
}

grpc::Status ToGrpcStatus(const Error& error) { return grpc::Status(ToGrpcCode(error.code()), error.message()); }

Error FromGrpcStatus(const grpc::Status& status) {
  ErrorCode code = ErrorCode::kInternal;
  switch (status.error_code()) {
    case grpc::StatusCode::NOT_FOUND: code = ErrorCode::kNotFound; break;
    case grpc::StatusCode::ALREADY_EXISTS: code = ErrorCode::kAlreadyExists; break;
    case grpc::StatusCode::FAILED_PRECONDITION: code = ErrorCode::kFailedPrecondition; break;
    case grpc::StatusCode::INVALID_ARGUMENT: code = ErrorCode::kInvalidArgument; break;
    case grpc::StatusCode::UNAVAILABLE: code = ErrorCode::kUnavailable; break;
    case grpc::StatusCode::UNIMPLEMENTED: code = ErrorCode::kUnimplemented; break;
    case grpc::StatusCode::CANCELLED:
    case grpc::StatusCode::DEADLINE_EXCEEDED: code = ErrorCode::kCanceled; break;
    case grpc::StatusCode::PERMISSION_DENIED: code = ErrorCode::kFailedPrecondition; break;
    default: break;
  }
  return Error(code, status.error_message());
}

void ToProto(store::Timestamp t, google::protobuf::Timestamp* out) {
  const int64_t nanos = store::ToUnixNanos(t);
  int64_t seconds = nanos / 1'000'000'000;
  int64_t rest = nanos % 1'000'000'000;
  if (rest < 0) {
    rest += 1'000'000'000;
    --seconds;
  }
  out->set_seconds(seconds);
  out->set_nanos(static_cast<int32_t>(rest));
}

store::Timestamp FromProto(const google::protobuf::Timestamp& t) {
  return store::FromUnixNanos(t.seconds() * 1'000'000'000 + t.nanos());
}

grpc::Status Guarded(const PeerGate& gate, grpc::ServerContext* context, const char* method,
                     const std::function<Status()>& body) {
  if (auto allowed = gate.Check(*context); !allowed) {
    spdlog::warn("{}: refused: {}", method, allowed.error().message());
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, allowed.error().message());
  }
  try {
    Status status = body();
    if (!status) {
      spdlog::debug("{}: {}", method, status.error().ToString());
      return ToGrpcStatus(status.error());
    }
    return grpc::Status::OK;
  } catch (const std::exception& e) {
    spdlog::error("{}: unexpected exception: {}", method, e.what());
    return grpc::Status(grpc::StatusCode::INTERNAL, fmt::format("{}: {}", method, e.what()));
  }
}

}  // namespace strata::daemon
