#include "cli/daemon_client.h"

#include <optional>

#include <spdlog/spdlog.h>

#include "daemon/daemon.h"
#include "daemon/images_proto.h"
#include "daemon/rpc_status.h"

namespace strata::cli {

namespace v1 = strata::v1;

namespace {

// containerd's proxy clients allow 16 MiB messages; a long image list may come close.
constexpr int kMaxMessageBytes = 16 << 20;

Status FromStatus(const grpc::Status& status) {
  if (status.ok()) return {};
  return Fail(daemon::FromGrpcStatus(status));
}

// Reads a Pull/Push stream: progress to `progress`, the result kept.
template <typename Event, typename ResultProto>
Result<ResultProto> ReadTransfer(grpc::ClientReader<Event>& reader, const registry::ProgressSink& progress) {
  std::optional<ResultProto> result;
  Event event;
  while (reader.Read(&event)) {
    if (event.has_progress()) {
      if (!progress) continue;
      auto converted = daemon::FromProto(event.progress());
      if (converted) progress(*converted);
    } else if (event.has_result()) {
      result = event.result();
    }
  }
  STRATA_RETURN_IF_ERROR(FromStatus(reader.Finish()));
  if (!result) return Fail(ErrorCode::kInternal, "the daemon ended the call without a result");
  return *result;
}

}  // namespace

std::unique_ptr<DaemonClient> DaemonClient::Find(const GlobalOptions& options) {
  std::optional<std::filesystem::path> socket = daemon::FindDaemonSocket(options.root);
  if (!socket) return nullptr;
  spdlog::debug("using the daemon on {} for {}", socket->string(), options.root.string());
  return std::unique_ptr<DaemonClient>(new DaemonClient(*socket));
}

DaemonClient::DaemonClient(std::filesystem::path socket) : socket_(std::move(socket)) {
  grpc::ChannelArguments arguments;
  arguments.SetMaxReceiveMessageSize(kMaxMessageBytes);
  arguments.SetMaxSendMessageSize(kMaxMessageBytes);
  channel_ = grpc::CreateCustomChannel("unix:" + socket_.string(), grpc::InsecureChannelCredentials(), arguments);
  stub_ = v1::Images::NewStub(channel_);
}

Result<images::PullResult> DaemonClient::Pull(const v1::PullRequest& request, const registry::ProgressSink& progress) {
  grpc::ClientContext context;
  auto reader = stub_->Pull(&context, request);
  STRATA_ASSIGN_OR_RETURN(v1::PullResult result, (ReadTransfer<v1::PullEvent, v1::PullResult>(*reader, progress)));
  return daemon::FromProto(result);
}

Result<DaemonClient::Pushed> DaemonClient::Push(const v1::PushRequest& request, const registry::ProgressSink& progress) {
  grpc::ClientContext context;
  auto reader = stub_->Push(&context, request);
  STRATA_ASSIGN_OR_RETURN(v1::PushResult result, (ReadTransfer<v1::PushEvent, v1::PushResult>(*reader, progress)));
  STRATA_ASSIGN_OR_RETURN(images::PushImageResult pushed, daemon::FromProto(result));
  return Pushed{.name = result.name(), .result = std::move(pushed)};
}

Result<std::vector<store::Image>> DaemonClient::List(const std::vector<std::string>& filters) {
  grpc::ClientContext context;
  v1::ListImagesRequest request;
  for (const auto& filter : filters) request.add_filters(filter);
  v1::ListImagesResponse response;
  STRATA_RETURN_IF_ERROR(FromStatus(stub_->List(&context, request, &response)));
  std::vector<store::Image> list;
  for (const v1::Image& image : response.images()) {
    STRATA_ASSIGN_OR_RETURN(store::Image converted, daemon::FromProto(image));
    list.push_back(std::move(converted));
  }
  return list;
}

Result<store::Image> DaemonClient::Tag(const std::string& source, const std::string& target) {
  grpc::ClientContext context;
  v1::TagImageRequest request;
  request.set_source(source);
  request.set_target(target);
  v1::TagImageResponse response;
  STRATA_RETURN_IF_ERROR(FromStatus(stub_->Tag(&context, request, &response)));
  return daemon::FromProto(response.image());
}

Result<std::string> DaemonClient::Remove(const std::string& name) {
  grpc::ClientContext context;
  v1::RemoveImageRequest request;
  request.set_name(name);
  v1::RemoveImageResponse response;
  STRATA_RETURN_IF_ERROR(FromStatus(stub_->Remove(&context, request, &response)));
  return response.name();
}

Result<v1::MountImageResponse> DaemonClient::Mount(const v1::MountImageRequest& request) {
  grpc::ClientContext context;
  v1::MountImageResponse response;
  STRATA_RETURN_IF_ERROR(FromStatus(stub_->Mount(&context, request, &response)));
  return response;
}

Status DaemonClient::Unmount(const std::string& target) {
  grpc::ClientContext context;
  v1::UnmountImageRequest request;
  request.set_target(target);
  v1::UnmountImageResponse response;
  return FromStatus(stub_->Unmount(&context, request, &response));
}

Result<images::GarbageReport> DaemonClient::CollectGarbage(bool dry_run) {
  grpc::ClientContext context;
  v1::GCRequest request;
  request.set_dry_run(dry_run);
  v1::GCResponse response;
  STRATA_RETURN_IF_ERROR(FromStatus(stub_->GC(&context, request, &response)));
  return daemon::FromProto(response);
}

void ToProto(const RegistryFlags& flags, v1::RegistryOptions* out) {
  const registry::SessionOptions options = SessionOptionsFrom(flags);
  out->set_plain_http(options.plain_http);
  out->set_certs_dir(std::filesystem::absolute(options.certs_dir).string());
  out->set_stall_timeout_seconds(static_cast<int32_t>(options.stall_timeout.count()));
}

}  // namespace strata::cli
