// HttpClient: the registry client's HTTP transport over libcurl.
//
// What it does for every request: reuses connections, DNS answers and TLS sessions
// across requests and threads; trusts the system CA store plus per-registry CAs and client
// certificates from a certs.d directory; follows redirects itself so that credentials
// never leave the origin they were meant for; and fails a transfer when no bytes move for
// a while instead of bounding its total time (a multi-GB layer may take an hour).
// It knows nothing of the registry protocol (auth, retries, digests live above it).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/error.h"
#include "registry/url.h"

namespace strata::registry {

// Response headers in arrival order; lookup by name is case-insensitive. Repeated headers
// keep every value.
class HttpHeaders {
 public:
  void Add(std::string name, std::string value) { entries_.emplace_back(std::move(name), std::move(value)); }
  // First value of `name`, if any.
  std::optional<std::string_view> Get(std::string_view name) const;
  // Every value of `name`, in order.
  std::vector<std::string_view> GetAll(std::string_view name) const;
  bool Has(std::string_view name) const { return Get(name).has_value(); }
  const std::vector<std::pair<std::string, std::string>>& entries() const { return entries_; }
  void Clear() { entries_.clear(); }

 private:
  std::vector<std::pair<std::string, std::string>> entries_;
};

struct RequestHeader {
  std::string name;
  std::string value;
  // Dropped when a redirect leads to another scheme, host or port. Authorization,
  // Proxy-Authorization and Cookie are always treated as sensitive.
  bool sensitive = false;
};

// Supplies a streamed upload: fills `buffer` and returns how many bytes it wrote (0 only
// at the end). An error aborts the transfer and is what Send returns.
using BodyReader = std::function<Result<size_t>(std::span<char> buffer)>;
// Receives the response body chunk by chunk. An error aborts the transfer and is what
// Send returns, unchanged.
using BodySink = std::function<Status(std::string_view chunk)>;

struct HttpResponse;

struct HttpRequest {
  std::string method = "GET";
  std::string url;  // absolute http(s) URL
  std::vector<RequestHeader> headers;

  // Body: `body`, or, when `body_reader` is set, exactly `body_size` bytes from it
  // (Content-Length is always sent; streamed uploads must know their length).
  std::string body;
  BodyReader body_reader;
  uint64_t body_size = 0;
  // Restarts `body_reader` from the first byte; needed only to replay a streamed body
  // after a 307/308 redirect (without it such a redirect fails with FailedPrecondition).
  std::function<Status()> body_rewind;

  // Sends "Range: bytes=<range_start>-". The server may still answer 200 with the whole
  // body: check the status (on_headers is the place when streaming).
  std::optional<uint64_t> range_start;

  // Where the body of a 2xx final response goes: collected into HttpResponse::body when
  // unset, else streamed to `body_sink` (and HttpResponse::body stays empty). Bodies of
  // non-2xx responses are always collected (error documents are small); past
  // max_error_body_bytes the rest is dropped.
  BodySink body_sink;
  // Called once with the final response's status and headers, before any body byte goes
  // to `body_sink`; an error aborts the transfer and is returned unchanged.
  std::function<Status(const HttpResponse&)> on_headers;
  // A collected 2xx body larger than this fails the request with FailedPrecondition.
  uint64_t max_body_bytes = 64ull << 20;
  uint64_t max_error_body_bytes = 1ull << 20;
};

struct HttpResponse {
  long status = 0;
  HttpHeaders headers;  // of the final response
  std::string body;
  std::string effective_url;  // the URL the final response came from
  int redirects = 0;          // hops followed
  // New TCP connections opened for this request (redirect hops included): 0 when a pooled
  // connection was reused.
  long new_connections = 0;
};

struct HttpClientOptions {
  // Per-registry CAs and client certificates (see tls_config.h).
  std::filesystem::path certs_dir = "/etc/strata/certs.d";
  // "host:port" (or "host" for the default port) whose TLS certificates are not verified.
  std::set<std::string> insecure_skip_verify_hosts;
  // A transfer fails when no byte moves in either direction for this long.
  std::chrono::seconds stall_timeout{30};
  std::chrono::seconds connect_timeout{30};
  int max_redirects = 10;
  std::string user_agent = "strata/0.1";
};

// Thread-safe: Send may be called from many threads at once; each call borrows a pooled
// curl handle together with the connections it keeps open, so sequential requests reuse
// one connection and N concurrent senders use about N. All handles share one DNS cache
// and one TLS session cache. Never throws. REQUIRES: no Send in progress at destruction.
class HttpClient {
 public:
  static Result<std::unique_ptr<HttpClient>> Create(HttpClientOptions options = {});
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends `request`, following redirects (at most options.max_redirects hops). Any HTTP
  // status is a successful Result; errors are transport failures:
  //   Unavailable: DNS, connect or TLS failure (naming the host and curl's reason), a
  //     connection dropped mid-transfer, or a stall ("no data from <host> for N s while
  //     <METHOD> <url>");
  //   InvalidArgument: a malformed URL, Location or header; FailedPrecondition: too many
  //     redirects, body too large, a streamed body that cannot be replayed;
  //   whatever body_reader, body_sink or on_headers returned.
  Result<HttpResponse> Send(HttpRequest request);

  const HttpClientOptions& options() const { return options_; }

 private:
  struct Shared;
  struct Handle;
  class Lease;
  explicit HttpClient(HttpClientOptions options);
  // One hop: no redirect handling.
  Result<HttpResponse> SendOnce(Handle& handle, const HttpRequest& request);

  HttpClientOptions options_;
  std::unique_ptr<Shared> shared_;
};

}  // namespace strata::registry
