#include "registry/fetcher.h"

#include <charconv>

#include <spdlog/spdlog.h>

#include "registry/registry_errors.h"
#include "registry/url.h"

namespace strata::registry {

std::string FetchIngestRef(const Digest& digest) { return "fetch-" + digest.ToString(); }

// One download in progress; followers wait on `done`.
struct Fetcher::Flight {
  std::mutex mutex;
  std::condition_variable finished;
  bool done = false;
  std::optional<Error> error;  // the leader's failure, shared with the followers
};

// Somewhere a blob can come from: a registry host or a foreign URL.
struct Fetcher::Source {
  std::string url;
  std::string name;  // for messages: the host, or the foreign URL
  std::vector<std::string> scopes;
  RetryPolicy policy;
};

namespace {

// A failure of the local side of a download (the disk is full: ENOSPC is Unavailable) as
// FailedPrecondition, so the transfer is not retried: fetching the bytes again cannot help.
Status NotRetried(Status status) {
  if (!status && status.error().code() == ErrorCode::kUnavailable) {
    return Fail(ErrorCode::kFailedPrecondition, "{}", status.error().message());
  }
  return status;
}

// The start offset of a 206's Content-Range ("bytes 100-199/200"), if it parses.
std::optional<int64_t> ContentRangeStart(std::string_view value) {
  constexpr std::string_view kPrefix = "bytes ";
  if (!value.starts_with(kPrefix)) return std::nullopt;
  value.remove_prefix(kPrefix.size());
  int64_t start = 0;
  auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), start);
  if (ec != std::errc() || ptr == value.data() + value.size() || *ptr != '-') return std::nullopt;
  return start;
}

void Emit(const FetchOptions& options, const oci::Descriptor& blob, TransferState state, int64_t offset,
          std::string error = {}) {
  if (!options.progress) return;
  options.progress(ProgressEvent{.digest = blob.digest,
                                 .kind = options.kind,
                                 .state = state,
                                 .offset = offset,
                                 .total = blob.size,
                                 .error = std::move(error)});
}

}  // namespace

Fetcher::Fetcher(Resolver& resolver, store::ContentStore& content, store::LeaseManager* leases,
                 FetcherOptions options)
    : resolver_(resolver), content_(content), leases_(leases), options_(options) {}

int64_t Fetcher::bytes_received() const { return bytes_received_.load(); }

Status Fetcher::HoldWithLease(const std::string& lease, const Digest& digest) {
  if (lease.empty() || leases_ == nullptr) return {};
  return leases_->AddResource(lease, {"content", digest.ToString()});
}

Result<FetchOutcome> Fetcher::Fetch(const oci::Reference& reference, const oci::Descriptor& blob,
                                    const FetchOptions& options) {
  auto already_here = [&]() -> Result<FetchOutcome> {
    STRATA_RETURN_IF_ERROR(HoldWithLease(options.lease, blob.digest));
    Emit(options, blob, TransferState::kExists, blob.size);
    return FetchOutcome::kExists;
  };
  if (content_.Info(blob.digest)) return already_here();

  std::shared_ptr<Flight> flight;
  bool leader = false;
  {
    std::lock_guard lock(mutex_);
    auto [it, inserted] = flights_.try_emplace(blob.digest);
    if (inserted) it->second = std::make_shared<Flight>();
    flight = it->second;
    leader = inserted;
  }
  if (!leader) {
    Emit(options, blob, TransferState::kWaiting, 0);
    std::unique_lock lock(flight->mutex);
    flight->finished.wait(lock, [&] { return flight->done; });
    if (flight->error) {
      Emit(options, blob, TransferState::kFailed, 0, flight->error->message());
      return std::unexpected(*flight->error);
    }
    lock.unlock();
    return already_here();
  }

  Result<FetchOutcome> result = FetchAsLeader(reference, blob, options);
  if (!result) Emit(options, blob, TransferState::kFailed, 0, result.error().message());
  {
    std::lock_guard lock(flight->mutex);
    flight->done = true;
    if (!result) flight->error = result.error();
  }
  flight->finished.notify_all();
  {
    std::lock_guard lock(mutex_);
    flights_.erase(blob.digest);
  }
  return result;
}

Result<FetchOutcome> Fetcher::FetchAsLeader(const oci::Reference& reference, const oci::Descriptor& blob,
                                            const FetchOptions& options) {
  const std::string what = fmt::format("blob {}@{}", reference.name(), blob.digest);
  std::vector<Source> sources;
  STRATA_ASSIGN_OR_RETURN(std::vector<RegistryHost> hosts, resolver_.Hosts(reference, kCapabilityPull));
  for (const RegistryHost& host : hosts) {
    sources.push_back(Source{.url = host.RepositoryUrl(reference.path()) + "blobs/" + blob.digest.ToString(),
                             .name = host.host,
                             .scopes = {fmt::format("repository:{}:pull", reference.path())},
                             .policy = resolver_.PolicyFor(host)});
  }
  // Foreign layers: the registry may hold them (asked first unless foreign_urls_first),
  // else their URLs.
  std::vector<Source> foreign;
  for (const std::string& url : blob.urls) {
    if (!ParseOrigin(url)) continue;  // only http(s) URLs are fetched
    foreign.push_back(Source{.url = url, .name = url, .scopes = {}, .policy = resolver_.options().retry});
  }
  sources.insert(options_.foreign_urls_first ? sources.begin() : sources.end(), foreign.begin(), foreign.end());

  std::vector<std::string> failures;
  for (size_t i = 0; i < sources.size(); ++i) {
    Result<FetchOutcome> result = FetchFrom(sources[i], reference, blob, options);
    if (result) return result;
    if (sources.size() == 1) return result;
    if (i + 1 < sources.size()) {
      spdlog::info("{}: {} failed ({}); trying the next source", what, sources[i].name, result.error().message());
    }
    failures.push_back(fmt::format("{}: {}", sources[i].name, result.error().message()));
    if (i + 1 == sources.size()) {
      std::string message = fmt::format("{}: every source failed", what);
      for (const std::string& failure : failures) message += "; " + failure;
      return Fail(result.error().code(), "{}", message);
    }
  }
  return Fail(ErrorCode::kNotFound, "{}: no host can serve blobs for {}", what, reference.domain());
}

Result<FetchOutcome> Fetcher::FetchFrom(const Source& source, const oci::Reference& reference,
                                        const oci::Descriptor& blob, const FetchOptions& options) {
  const std::string what = fmt::format("blob {}@{} from {}", reference.name(), blob.digest, source.name);
  auto opened = content_.Writer(FetchIngestRef(blob.digest), {.total = blob.size,
                                                               .expected = blob.digest,
                                                               .lease = options.lease,
                                                               .wait_for_lock = true});
  if (!opened && opened.error().code() == ErrorCode::kAlreadyExists) {
    // Another Fetcher (the daemon has one per pull) committed it while we waited for the
    // ingest's lock: the blob is here, as if we had found it at the start.
    STRATA_RETURN_IF_ERROR(HoldWithLease(options.lease, blob.digest));
    Emit(options, blob, TransferState::kExists, blob.size);
    return FetchOutcome::kExists;
  }
  if (!opened) return Fail(opened.error());
  std::unique_ptr<store::ContentWriter> writer = std::move(*opened);
  if (writer->offset() > blob.size) STRATA_RETURN_IF_ERROR(writer->Reset());

  if (writer->offset() < blob.size) {
    Emit(options, blob, TransferState::kDownloading, writer->offset());
    auto make_request = [&]() {
      HttpRequest request{.method = "GET", .url = source.url};
      const int64_t offset = writer->offset();
      if (offset > 0) request.range_start = static_cast<uint64_t>(offset);
      request.on_headers = [&writer, offset, &what](const HttpResponse& response) -> Status {
        if (response.status == 206) {
          auto start = ContentRangeStart(response.headers.Get("Content-Range").value_or(""));
          if (start != offset) {
            return Fail(ErrorCode::kFailedPrecondition, "{}: asked for bytes from {}, got Content-Range \"{}\"", what,
                        offset, response.headers.Get("Content-Range").value_or(""));
          }
        } else if (response.status == 200 && offset > 0) {
          return writer->Reset();  // the server ignored Range: start over
        }
        return {};
      };
      request.body_sink = [&](std::string_view chunk) -> Status {
        if (options.cancel != nullptr && options.cancel->load()) {
          return Fail(ErrorCode::kCanceled, "{}: canceled", what);
        }
        if (writer->offset() + static_cast<int64_t>(chunk.size()) > blob.size) {
          return Fail(ErrorCode::kFailedPrecondition, "{}: more than the descriptor's {} bytes received", what,
                      blob.size);
        }
        const int64_t chunk_offset = writer->offset();
        STRATA_RETURN_IF_ERROR(NotRetried(writer->Write(chunk)));
        bytes_received_ += static_cast<int64_t>(chunk.size());
        if (options.on_data) STRATA_RETURN_IF_ERROR(NotRetried(options.on_data(chunk_offset, chunk)));
        Emit(options, blob, TransferState::kDownloading, writer->offset());
        return {};
      };
      return request;
    };
    STRATA_ASSIGN_OR_RETURN(HttpResponse response,
                            resolver_.SendFresh(make_request, fmt::format("GET {}", source.url), source.scopes,
                                                source.policy));
    if (response.status != 200 && response.status != 206) return Fail(StatusError(response, what));
    if (writer->offset() < blob.size) {
      return Fail(ErrorCode::kFailedPrecondition, "{}: body ended after {} of {} bytes", what, writer->offset(),
                  blob.size);
    }
  }

  Emit(options, blob, TransferState::kVerifying, writer->offset());
  auto committed = writer->Commit(blob.size, blob.digest, options.labels);
  if (!committed) {
    if (committed.error().code() == ErrorCode::kAlreadyExists) {
      STRATA_RETURN_IF_ERROR(HoldWithLease(options.lease, blob.digest));
      Emit(options, blob, TransferState::kExists, blob.size);
      return FetchOutcome::kExists;
    }
    return Fail(committed.error().WithContext(what));
  }
  Emit(options, blob, TransferState::kDone, blob.size);
  return FetchOutcome::kFetched;
}

}  // namespace strata::registry
