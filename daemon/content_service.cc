#include "daemon/content_service.h"

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "daemon/rpc_status.h"

namespace strata::daemon {

namespace api = containerd::services::content::v1;

namespace {

void ToProto(const store::ContentInfo& info, api::Info* out) {
  out->set_digest(info.digest.ToString());
  out->set_size(info.size);
  daemon::ToProto(info.created_at, out->mutable_created_at());
  daemon::ToProto(info.updated_at, out->mutable_updated_at());
  out->mutable_labels()->insert(info.labels.begin(), info.labels.end());
}

void ToProto(const store::IngestStatus& status, api::Status* out) {
  daemon::ToProto(status.started_at, out->mutable_started_at());
  daemon::ToProto(status.updated_at, out->mutable_updated_at());
  out->set_ref(status.ref);
  out->set_offset(status.offset);
  out->set_total(status.total);
  if (status.expected) out->set_expected(status.expected->ToString());
}

Result<std::optional<Digest>> OptionalDigest(const std::string& text) {
  if (text.empty()) return std::optional<Digest>();
  STRATA_ASSIGN_OR_RETURN(Digest digest, Digest::Parse(text));
  return std::optional<Digest>(digest);
}

std::vector<std::string> ToVector(const google::protobuf::RepeatedPtrField<std::string>& items) {
  return std::vector<std::string>(items.begin(), items.end());
}

}  // namespace

grpc::Status ContentService::Info(grpc::ServerContext* context, const api::InfoRequest* request,
                                  api::InfoResponse* response) {
  return Guarded(gate_, context, "content.Info", [&]() -> strata::Status {
    STRATA_ASSIGN_OR_RETURN(Digest digest, Digest::Parse(request->digest()));
    STRATA_ASSIGN_OR_RETURN(auto info, content_.Info(digest));
    ToProto(info, response->mutable_info());
    return {};
  });
}

grpc::Status ContentService::Update(grpc::ServerContext* context, const api::UpdateRequest* request,
                                    api::UpdateResponse* response) {
  return Guarded(gate_, context, "content.Update", [&]() -> strata::Status {
    STRATA_ASSIGN_OR_RETURN(Digest digest, Digest::Parse(request->info().digest()));
    store::ContentInfo info{.digest = digest};
    info.labels = store::Labels(request->info().labels().begin(), request->info().labels().end());
    STRATA_ASSIGN_OR_RETURN(auto updated, content_.Update(info, ToVector(request->update_mask().paths())));
    ToProto(updated, response->mutable_info());
    return {};
  });
}

grpc::Status ContentService::List(grpc::ServerContext* context, const api::ListContentRequest* request,
                                  grpc::ServerWriter<api::ListContentResponse>* writer) {
  return Guarded(gate_, context, "content.List", [&]() -> strata::Status {
    STRATA_ASSIGN_OR_RETURN(store::Filter filter, store::Filter::Parse(ToVector(request->filters())));
    std::vector<store::ContentInfo> infos;  // sent after the walk: no store lock while the client reads
    STRATA_RETURN_IF_ERROR(content_.Walk(filter, [&](const store::ContentInfo& info) {
      infos.push_back(info);
      return true;
    }));
    return StreamInBatches(writer, infos, kListBatch, [](const store::ContentInfo& info, api::ListContentResponse& out) {
      ToProto(info, out.add_info());
    });
  });
}

grpc::Status ContentService::Delete(grpc::ServerContext* context, const api::DeleteContentRequest* request,
                                    google::protobuf::Empty*) {
  return Guarded(gate_, context, "content.Delete", [&]() -> strata::Status {
    STRATA_ASSIGN_OR_RETURN(Digest digest, Digest::Parse(request->digest()));
    return content_.Delete(digest);
  });
}

grpc::Status ContentService::Read(grpc::ServerContext* context, const api::ReadContentRequest* request,
                                  grpc::ServerWriter<api::ReadContentResponse>* writer) {
  return Guarded(gate_, context, "content.Read", [&]() -> strata::Status {
    STRATA_ASSIGN_OR_RETURN(Digest digest, Digest::Parse(request->digest()));
    STRATA_ASSIGN_OR_RETURN(auto reader, content_.Reader(digest));
    int64_t offset = std::max<int64_t>(request->offset(), 0);
    if (offset > reader->size()) {
      return Fail(ErrorCode::kInvalidArgument, "read of {} at offset {}: past its {} bytes", digest, offset,
                  reader->size());
    }
    // Size 0 (or one reaching past the end) reads to the end, as containerd's server does.
    int64_t end = reader->size();
    if (request->size() > 0 && offset + request->size() < end) end = offset + request->size();
    api::ReadContentResponse response;
    std::string buffer;
    while (offset < end) {
      buffer.resize(static_cast<size_t>(std::min<int64_t>(kReadChunk, end - offset)));
      STRATA_ASSIGN_OR_RETURN(size_t n, reader->ReadAt(buffer.data(), buffer.size(), offset));
      if (n == 0) return Fail(ErrorCode::kInternal, "blob {} ends at {}, before its recorded size", digest, offset);
      buffer.resize(n);
      response.set_offset(offset);
      response.set_data(std::move(buffer));
      if (!writer->Write(response)) return Fail(ErrorCode::kCanceled, "read of {}: the client went away", digest);
      buffer = std::move(*response.mutable_data());
      offset += static_cast<int64_t>(n);
    }
    return {};
  });
}

grpc::Status ContentService::Status(grpc::ServerContext* context, const api::StatusRequest* request,
                                    api::StatusResponse* response) {
  return Guarded(gate_, context, "content.Status", [&]() -> strata::Status {
    STRATA_ASSIGN_OR_RETURN(auto status, content_.StatusOf(request->ref()));
    ToProto(status, response->mutable_status());
    return {};
  });
}

grpc::Status ContentService::ListStatuses(grpc::ServerContext* context, const api::ListStatusesRequest* request,
                                          api::ListStatusesResponse* response) {
  return Guarded(gate_, context, "content.ListStatuses", [&]() -> strata::Status {
    STRATA_ASSIGN_OR_RETURN(store::Filter filter, store::Filter::Parse(ToVector(request->filters())));
    STRATA_ASSIGN_OR_RETURN(auto statuses, content_.ListStatuses(filter));
    for (const auto& status : statuses) ToProto(status, response->add_statuses());
    return {};
  });
}

// The protocol of containerd's content server: the first message names the ref (and may
// give total and expected); every message is answered with the accepted offset; WRITE at
// offset 0 over existing bytes starts over; COMMIT verifies size and digest and ends the
// stream. A message whose expected digest is already committed aborts the ingest and
// answers AlreadyExists, so the client skips the transfer.
grpc::Status ContentService::Write(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<api::WriteContentResponse, api::WriteContentRequest>* stream) {
  return Guarded(gate_, context, "content.Write", [&]() -> strata::Status {
    api::WriteContentRequest request;
    if (!stream->Read(&request)) return {};
    const std::string ref = request.ref();
    if (ref.empty()) return Fail(ErrorCode::kInvalidArgument, "write: the first message must have a ref");
    int64_t total = request.total();
    STRATA_ASSIGN_OR_RETURN(std::optional<Digest> expected, OptionalDigest(request.expected()));
    STRATA_ASSIGN_OR_RETURN(std::unique_ptr<store::ContentWriter> writer,
                            content_.Writer(ref, {.total = total, .expected = expected}));
    for (;;) {
      api::WriteContentResponse response;
      response.set_action(request.action());
      response.set_offset(writer->offset());
      if (!request.expected().empty()) {
        STRATA_ASSIGN_OR_RETURN(expected, OptionalDigest(request.expected()));
        if (content_.Info(*expected)) {
          writer.reset();  // releases the ref's lock so the ingest can go
          if (auto aborted = content_.Abort(ref); !aborted && aborted.error().code() != ErrorCode::kNotFound) {
            return Fail(aborted.error());
          }
          return Fail(ErrorCode::kAlreadyExists, "blob with expected digest {} exists", *expected);
        }
      }
      if (request.total() > 0) total = request.total();
      switch (request.action()) {
        case api::STAT: {
          const store::IngestStatus status = writer->status();
          daemon::ToProto(status.started_at, response.mutable_started_at());
          daemon::ToProto(status.updated_at, response.mutable_updated_at());
          response.set_total(total);
          break;
        }
        case api::WRITE:
        case api::COMMIT: {
          if (request.offset() > 0 && request.offset() != writer->offset()) {
            return Fail(ErrorCode::kInvalidArgument, "write of {} at offset {}: the ingest is at offset {}", ref,
                        request.offset(), writer->offset());
          }
          if (request.offset() == 0 && writer->offset() > 0) {
            STRATA_RETURN_IF_ERROR(writer->Reset());
            response.set_offset(0);
          }
          if (!request.data().empty()) {
            STRATA_RETURN_IF_ERROR(writer->Write(request.data()));
            response.set_offset(writer->offset());
          }
          if (request.action() == api::COMMIT) {
            store::Labels labels(request.labels().begin(), request.labels().end());
            STRATA_ASSIGN_OR_RETURN(auto info, writer->Commit(total, expected, std::move(labels)));
            response.set_digest(info.digest.ToString());
          }
          break;
        }
        default:
          return Fail(ErrorCode::kInvalidArgument, "write of {}: unknown action {}", ref, static_cast<int>(request.action()));
      }
      if (!stream->Write(response)) return Fail(ErrorCode::kCanceled, "write of {}: the client went away", ref);
      if (request.action() == api::COMMIT) return {};
      if (!stream->Read(&request)) return {};  // the client closed: the ingest stays for a resume
    }
  });
}

grpc::Status ContentService::Abort(grpc::ServerContext* context, const api::AbortRequest* request,
                                   google::protobuf::Empty*) {
  return Guarded(gate_, context, "content.Abort", [&]() -> strata::Status { return content_.Abort(request->ref()); });
}

}  // namespace strata::daemon
