#include "registry/pusher.h"

#include <algorithm>
#include <charconv>
#include <random>
#include <thread>

#include "registry/registry_errors.h"
#include "registry/retry.h"
#include "registry/url.h"

namespace strata::registry {

std::string_view BlobPushOutcomeName(BlobPushOutcome outcome) {
  switch (outcome) {
    case BlobPushOutcome::kExists:
      return "exists";
    case BlobPushOutcome::kMounted:
      return "mounted";
    case BlobPushOutcome::kUploaded:
      return "uploaded";
  }
  return "unknown";
}

namespace {

constexpr std::string_view kOctetStream = "application/octet-stream";

std::string PushScope(const oci::Reference& target) { return fmt::format("repository:{}:pull,push", target.path()); }

// `url` with `parameter` ("name=value") added to its query. The rest of the URL is kept
// verbatim: distribution signs its `_state` parameter.
std::string AppendQuery(std::string_view url, std::string_view parameter) {
  return fmt::format("{}{}{}", url, url.find('?') == std::string_view::npos ? '?' : '&', parameter);
}

// The last byte index of an upload Range header: "0-<last>" (distribution, no unit) or
// "bytes=0-<last>". nullopt when malformed.
std::optional<uint64_t> RangeEnd(std::string_view value) {
  if (value.starts_with("bytes=")) value.remove_prefix(6);
  size_t dash = value.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  uint64_t end = 0;
  const char* first = value.data() + dash + 1;
  const char* last = value.data() + value.size();
  auto [ptr, ec] = std::from_chars(first, last, end);
  if (ec != std::errc() || ptr != last || first == last) return std::nullopt;
  return end;
}

// The absolute URL of the answer's Location, resolved against the URL that answered.
Result<std::string> LocationOf(const HttpResponse& response, std::string_view request_url) {
  std::optional<std::string_view> location = response.headers.Get("Location");
  if (!location || location->empty()) {
    return Fail(ErrorCode::kFailedPrecondition, "registry answered {} without a Location", response.status);
  }
  return ResolveUrl(response.effective_url.empty() ? request_url : std::string_view(response.effective_url), *location);
}

// When the answer names a digest of `expected`'s algorithm, it must be `expected`.
Status CheckContentDigest(const HttpResponse& response, const Digest& expected) {
  std::optional<std::string_view> header = response.headers.Get("Docker-Content-Digest");
  if (!header) return {};
  Result<Digest> named = Digest::Parse(*header);
  if (!named) {
    return Fail(ErrorCode::kFailedPrecondition, "registry sent an invalid Docker-Content-Digest: {}",
                named.error().message());
  }
  if (named->algorithm() == expected.algorithm() && *named != expected) {
    return Fail(ErrorCode::kFailedPrecondition, "registry stored digest {}, expected {}", *named, expected);
  }
  return {};
}

// "status 503: UNAVAILABLE: ..." or the transport error, for "last ..." messages.
std::string Describe(const Result<HttpResponse>& response) {
  if (!response) return response.error().message();
  std::string text = ParseRegistryErrors(response->body).text;
  return text.empty() ? fmt::format("status {}", response->status) : fmt::format("status {}: {}", response->status, text);
}

bool IsTransient(const Result<HttpResponse>& response) {
  return response ? IsRetryableStatus(response->status) : IsRetryableError(response.error());
}

// distribution answers these when the session is gone or no longer matches its state
// (after a partly received chunk it cancels the session): the upload must start over.
bool SessionLost(const HttpResponse& response) {
  return response.status == 404 || (response.status == 400 && response.body.find("BLOB_UPLOAD_") != std::string::npos);
}

}  // namespace

// One blob's upload to one host: the session's newest Location, what the registry has
// confirmed, and a reader positioned where the next byte comes from. Lives for one
// PushBlobOn call. Not thread-safe (requests run one at a time).
class Pusher::Upload {
 public:
  Upload(Pusher& pusher, Resolver& resolver, const RegistryHost& host, const oci::Reference& target, const oci::Descriptor& blob,
         const BlobOpener& open, const PushOptions& options)
      : pusher_(pusher),
        resolver_(resolver),
        host_(host),
        target_(target),
        blob_(blob),
        open_(open),
        options_(options),
        scopes_{PushScope(target)},
        size_(static_cast<uint64_t>(blob.size)) {}

  // Uploads every byte and commits, into `session` (a Location) or a new session.
  Status Run(std::optional<std::string> session);

  void Report(TransferState state, uint64_t offset, std::string error = {});

 private:
  Result<std::string> StartSession();
  // GET <location>: the registry's byte count, or nullopt when the session must start over.
  Result<std::optional<uint64_t>> QueryOffset();
  // One try: PATCH of [offset, offset + length), or the committing PUT carrying that range.
  Result<HttpResponse> SendPiece(const std::string& method, const std::string& url, uint64_t offset, uint64_t length);
  Status Rewind(uint64_t offset);
  Result<size_t> Read(std::span<char> buffer);
  void Wait(int failures, const Result<HttpResponse>& response);

  Pusher& pusher_;
  Resolver& resolver_;
  const RegistryHost& host_;
  const oci::Reference& target_;
  const oci::Descriptor& blob_;
  const BlobOpener& open_;
  const PushOptions& options_;
  const std::vector<std::string> scopes_;
  const uint64_t size_;

  std::string location_;
  uint64_t confirmed_ = 0;  // bytes the registry holds in the session
  BodyReader reader_;
  std::optional<uint64_t> position_;  // where reader_ stands; nullopt = must reopen
  int64_t reported_ = -1;             // highest offset reported, so progress never goes back
};

void Pusher::Upload::Report(TransferState state, uint64_t offset, std::string error) {
  if (!options_.progress) return;
  if (state == TransferState::kUploading) {
    if (static_cast<int64_t>(offset) <= reported_) return;
    reported_ = static_cast<int64_t>(offset);
  }
  options_.progress(ProgressEvent{.digest = blob_.digest,
                                  .kind = options_.kind,
                                  .state = state,
                                  .offset = static_cast<int64_t>(offset),
                                  .total = blob_.size,
                                  .error = std::move(error)});
}

Result<std::string> Pusher::Upload::StartSession() {
  HttpRequest request{.method = "POST", .url = host_.RepositoryUrl(target_.path()) + "blobs/uploads/"};
  STRATA_ASSIGN_OR_RETURN(HttpResponse response, resolver_.Send(host_, target_, request, scopes_));
  if (response.status != 202) return Fail(StatusError(response, "start upload"));
  return LocationOf(response, request.url);
}

Result<std::optional<uint64_t>> Pusher::Upload::QueryOffset() {
  HttpRequest request{.method = "GET", .url = location_};
  STRATA_ASSIGN_OR_RETURN(HttpResponse response, resolver_.Send(host_, target_, request, scopes_));
  if (SessionLost(response)) return std::optional<uint64_t>();
  if (response.status != 204) return Fail(StatusError(response, "upload status"));
  if (response.headers.Has("Location")) {
    STRATA_ASSIGN_OR_RETURN(location_, LocationOf(response, request.url));
  }
  std::optional<std::string_view> range = response.headers.Get("Range");
  if (!range) return std::optional<uint64_t>(0);
  std::optional<uint64_t> end = RangeEnd(*range);
  if (!end) return Fail(ErrorCode::kFailedPrecondition, "upload status: malformed Range \"{}\"", *range);
  // distribution says "0-0" for both 0 and 1 bytes received; only a known byte decides.
  if (*end == 0 && confirmed_ == 0) return std::optional<uint64_t>();
  if (*end + 1 > size_) {
    return Fail(ErrorCode::kFailedPrecondition, "upload status: registry holds {} bytes of a {}-byte blob", *end + 1,
                size_);
  }
  return std::optional<uint64_t>(*end + 1);
}

Status Pusher::Upload::Rewind(uint64_t offset) {
  if (reader_ && position_ == offset) return {};
  reader_ = nullptr;
  position_.reset();
  STRATA_ASSIGN_OR_RETURN(reader_, open_(offset));
  position_ = offset;
  return {};
}

Result<size_t> Pusher::Upload::Read(std::span<char> buffer) {
  if (!reader_ || !position_) return Fail(ErrorCode::kInternal, "blob reader used before it was positioned");
  Result<size_t> got = reader_(buffer);
  if (!got) {
    reader_ = nullptr;  // its state is unknown now
    position_.reset();
    return got;
  }
  *position_ += *got;
  Report(TransferState::kUploading, *position_);
  return got;
}

Result<HttpResponse> Pusher::Upload::SendPiece(const std::string& method, const std::string& url, uint64_t offset,
                                               uint64_t length) {
  HttpRequest request{.method = method, .url = url};
  if (length > 0) {
    STRATA_RETURN_IF_ERROR(Rewind(offset));
    request.headers.push_back({"Content-Type", std::string(kOctetStream)});
    if (method == "PATCH") {
      request.headers.push_back({"Content-Range", fmt::format("{}-{}", offset, offset + length - 1)});
    }
    request.body_size = length;
    request.body_reader = [this](std::span<char> buffer) { return Read(buffer); };
    // Replays after a 401 challenge or a 307/308 redirect start again at the piece's start.
    request.body_rewind = [this, offset]() { return Rewind(offset); };
  }
  // Not Resolver::Send: its retries would resend a consumed body and would not know that
  // a failed chunk must resume where the registry stands. Run() does both.
  return resolver_.authorizer().Send(std::move(request), scopes_);
}

void Pusher::Upload::Wait(int failures, const Result<HttpResponse>& response) {
  const RetryPolicy& policy = resolver_.options().retry;
  std::optional<std::chrono::milliseconds> delay;
  if (response) {
    if (auto header = response->headers.Get("Retry-After")) delay = ParseRetryAfter(*header);
  }
  if (delay) {
    delay = std::min(*delay, policy.max_backoff);
  } else {
    thread_local std::mt19937 random{std::random_device{}()};
    delay = BackoffDelay(policy, failures - 1, std::uniform_real_distribution<double>(0.0, 1.0)(random));
  }
  if (resolver_.options().sleep) {
    resolver_.options().sleep(*delay);
  } else {
    std::this_thread::sleep_for(*delay);
  }
}

Status Pusher::Upload::Run(std::optional<std::string> session) {
  if (session) {
    location_ = std::move(*session);
  } else {
    STRATA_ASSIGN_OR_RETURN(location_, StartSession());
  }
  const bool chunked = options_.chunk_size > 0;
  const int max_attempts = std::max(1, resolver_.options().retry.max_attempts);
  const std::string digest_parameter = "digest=" + blob_.digest.ToString();
  Report(TransferState::kUploading, 0);
  int failures = 0;        // transient failures since the last progress
  uint64_t high_water = 0;  // most bytes the registry ever confirmed
  for (;;) {
    // A monolithic upload puts every byte the session lacks in the committing PUT.
    const bool committing = !chunked || confirmed_ >= size_;
    const uint64_t length = committing ? size_ - confirmed_ : std::min(options_.chunk_size, size_ - confirmed_);
    const std::string url = committing ? AppendQuery(location_, digest_parameter) : location_;
    const std::string what =
        committing ? std::string("commit") : fmt::format("chunk {}-{}", confirmed_, confirmed_ + length - 1);
    Result<HttpResponse> response = SendPiece(committing ? "PUT" : "PATCH", url, confirmed_, length);

    if (response && committing && response->status == 201) {
      return CheckContentDigest(*response, blob_.digest);
    }
    if (response && !committing && response->status == 202) {
      STRATA_ASSIGN_OR_RETURN(location_, LocationOf(*response, url));
      uint64_t received = confirmed_ + length;
      if (auto range = response->headers.Get("Range")) {
        std::optional<uint64_t> end = RangeEnd(*range);
        if (!end || *end + 1 > size_) {
          return Fail(ErrorCode::kFailedPrecondition, "{}: registry answered Range \"{}\" for a {}-byte blob", what,
                      *range, size_);
        }
        received = *end + 1;  // the registry's count wins: it says what it holds
      }
      // Only bytes never confirmed before count as progress: a session lost at the same
      // chunk again and again must still run out of attempts.
      if (received > high_water) failures = 0;
      high_water = std::max(high_water, received);
      confirmed_ = received;
      continue;
    }
    const bool lost = response && SessionLost(*response);
    if (!IsTransient(response) && !lost) {
      return response ? Fail(StatusError(*response, what)) : Fail(response.error().WithContext(what));
    }
    if (++failures >= max_attempts) {
      return Fail(ErrorCode::kUnavailable, "{}: giving up after {} failed attempts in a row: last {}", what, failures,
                  Describe(response));
    }
    Wait(failures, response);
    if (committing) {
      // The commit may have happened with only its answer lost.
      STRATA_ASSIGN_OR_RETURN(bool exists, pusher_.BlobExistsOn(host_, target_, blob_, scopes_));
      if (exists) return {};
    }
    std::optional<uint64_t> offset;
    if (!lost) {
      STRATA_ASSIGN_OR_RETURN(offset, QueryOffset());
    }
    if (!offset) {
      STRATA_ASSIGN_OR_RETURN(location_, StartSession());
      offset = 0;
    }
    confirmed_ = *offset;
  }
}

Result<bool> Pusher::BlobExistsOn(const RegistryHost& host, const oci::Reference& target, const oci::Descriptor& blob,
                                  const std::vector<std::string>& scopes) {
  HttpRequest request{.method = "HEAD",
                      .url = host.RepositoryUrl(target.path()) + "blobs/" + blob.digest.ToString()};
  STRATA_ASSIGN_OR_RETURN(HttpResponse response, resolver_.Send(host, target, request, scopes));
  if (response.status == 404) return false;
  if (response.status != 200) return Fail(StatusError(response, "blob HEAD"));
  if (auto length = response.headers.Get("Content-Length")) {
    int64_t size = -1;
    auto [ptr, ec] = std::from_chars(length->data(), length->data() + length->size(), size);
    if (ec == std::errc() && ptr == length->data() + length->size() && size != blob.size) {
      return Fail(ErrorCode::kFailedPrecondition, "registry has the blob with size {}, the descriptor says {}", size,
                  blob.size);
    }
  }
  return true;
}

Result<bool> Pusher::BlobExists(const oci::Reference& target, const oci::Descriptor& blob) {
  const std::string what = fmt::format("blob {} in {}", blob.digest, target.name());
  STRATA_ASSIGN_OR_RETURN(std::vector<RegistryHost> hosts, resolver_.Hosts(target, kCapabilityPush));
  Result<bool> exists = TryEachHost<bool>(hosts, what, [&](const RegistryHost& host) {
    return BlobExistsOn(host, target, blob, {fmt::format("repository:{}:pull", target.path())});
  });
  if (!exists) return Fail(exists.error().WithContext(what));
  return exists;
}

Result<BlobPushOutcome> Pusher::PushBlobOn(const RegistryHost& host, const oci::Reference& target,
                                           const oci::Descriptor& blob, const BlobOpener& open,
                                           const PushOptions& options) {
  Upload upload(*this, resolver_, host, target, blob, open, options);
  const std::vector<std::string> scopes = {PushScope(target)};
  STRATA_ASSIGN_OR_RETURN(bool exists, BlobExistsOn(host, target, blob, scopes));
  if (exists) {
    upload.Report(TransferState::kExists, static_cast<uint64_t>(blob.size));
    return BlobPushOutcome::kExists;
  }
  std::optional<std::string> session;
  if (options.mount_from && *options.mount_from != target.path()) {
    std::vector<std::string> mount_scopes = scopes;
    mount_scopes.push_back(fmt::format("repository:{}:pull", *options.mount_from));
    HttpRequest request{.method = "POST",
                        .url = fmt::format("{}blobs/uploads/?mount={}&from={}", host.RepositoryUrl(target.path()),
                                           blob.digest, *options.mount_from)};
    STRATA_ASSIGN_OR_RETURN(HttpResponse response, resolver_.Send(host, target, request, mount_scopes));
    if (response.status == 201) {
      STRATA_RETURN_IF_ERROR(CheckContentDigest(response, blob.digest));
      upload.Report(TransferState::kMounted, static_cast<uint64_t>(blob.size));
      return BlobPushOutcome::kMounted;
    }
    // 202: the registry could not mount and opened an ordinary session instead.
    if (response.status != 202) return Fail(StatusError(response, fmt::format("mount from {}", *options.mount_from)));
    STRATA_ASSIGN_OR_RETURN(session, LocationOf(response, request.url));
  }
  STRATA_RETURN_IF_ERROR(upload.Run(std::move(session)));
  upload.Report(TransferState::kDone, static_cast<uint64_t>(blob.size));
  return BlobPushOutcome::kUploaded;
}

Result<BlobPushOutcome> Pusher::PushBlob(const oci::Reference& target, const oci::Descriptor& blob,
                                         const BlobOpener& open, const PushOptions& options) {
  const std::string what = fmt::format("push blob {} to {}", blob.digest, target.name());
  Result<BlobPushOutcome> outcome = [&]() -> Result<BlobPushOutcome> {
    if (blob.size < 0) return Fail(ErrorCode::kInvalidArgument, "negative size {}", blob.size);
    STRATA_ASSIGN_OR_RETURN(std::vector<RegistryHost> hosts, resolver_.Hosts(target, kCapabilityPush));
    return TryEachHost<BlobPushOutcome>(
        hosts, what, [&](const RegistryHost& host) { return PushBlobOn(host, target, blob, open, options); });
  }();
  if (outcome) return outcome;
  Error error = outcome.error().WithContext(what);
  if (options.progress) {
    options.progress(ProgressEvent{.digest = blob.digest,
                                   .kind = options.kind,
                                   .state = TransferState::kFailed,
                                   .total = blob.size,
                                   .error = error.message()});
  }
  return Fail(std::move(error));
}

Result<Digest> Pusher::PushManifest(const oci::Reference& target, std::string_view media_type,
                                    std::string_view bytes, std::string_view tag_or_digest) {
  const Digest digest = Digest::Of(bytes);
  std::string reference = tag_or_digest.empty() ? digest.ToString() : std::string(tag_or_digest);
  const std::string what = fmt::format("push manifest {} to {}", reference, target.name());
  if (reference.find(':') != std::string::npos) {
    STRATA_ASSIGN_OR_RETURN(Digest named, Digest::Parse(reference));
    if (Digest::Of(bytes, named.algorithm()) != named) {
      return Fail(ErrorCode::kInvalidArgument, "{}: the bytes hash to {}", what,
                  Digest::Of(bytes, named.algorithm()));
    }
  }
  STRATA_ASSIGN_OR_RETURN(std::vector<RegistryHost> hosts, resolver_.Hosts(target, kCapabilityPush));
  Result<Digest> pushed = TryEachHost<Digest>(hosts, what, [&](const RegistryHost& host) -> Result<Digest> {
    HttpRequest request{.method = "PUT",
                        .url = host.RepositoryUrl(target.path()) + "manifests/" + reference,
                        .headers = {{"Content-Type", std::string(media_type)}},
                        .body = std::string(bytes)};
    STRATA_ASSIGN_OR_RETURN(HttpResponse response, resolver_.Send(host, target, request, {PushScope(target)}));
    if (response.status != 201) return Fail(StatusError(response, "manifest PUT"));
    std::optional<std::string_view> header = response.headers.Get("Docker-Content-Digest");
    if (header) {
      Result<Digest> named = Digest::Parse(*header);
      if (!named || Digest::Of(bytes, named->algorithm()) != *named) {
        return Fail(ErrorCode::kFailedPrecondition, "registry stored digest {}, expected {}", *header, digest);
      }
    }
    return digest;
  });
  if (!pushed) return Fail(pushed.error().WithContext(what));
  return pushed;
}

}  // namespace strata::registry
