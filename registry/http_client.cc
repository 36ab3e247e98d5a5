#include "registry/http_client.h"

#include <curl/curl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <mutex>

#include "registry/tls_config.h"

namespace strata::registry {
namespace {

using Clock = std::chrono::steady_clock;

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](unsigned char x, unsigned char y) {
           return std::tolower(x) == std::tolower(y);
         });
}

bool AlwaysSensitive(std::string_view name) {
  return EqualsIgnoreCase(name, "authorization") || EqualsIgnoreCase(name, "proxy-authorization") ||
         EqualsIgnoreCase(name, "cookie");
}

bool IsRedirectStatus(long status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

std::string_view Trim(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
  return text;
}

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct SlistDeleter {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};
using UniqueSlist = std::unique_ptr<curl_slist, SlistDeleter>;

// Per-hop state shared with the curl callbacks.
struct Transfer {
  const HttpRequest* request = nullptr;
  HttpResponse* response = nullptr;
  CURL* curl = nullptr;
  std::chrono::seconds stall_timeout{30};

  enum class BodyMode { kDiscard, kCollect, kStream };
  BodyMode mode = BodyMode::kCollect;
  uint64_t body_limit = 0;
  bool headers_done = false;
  std::optional<Error> callback_error;
  bool stalled = false;
  bool too_large = false;

  Clock::time_point last_progress = Clock::now();
  curl_off_t last_bytes = -1;

  size_t body_offset = 0;  // into request->body
  uint64_t uploaded = 0;   // from request->body_reader
  std::string extra_ca_pem;
};

size_t OnHeader(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t length = size * count;
  std::string_view line(data, length);
  if (line.starts_with("HTTP/")) {  // a new response (1xx interim ones come first)
    t->response->headers.Clear();
    t->headers_done = false;
    return length;
  }
  if (t->headers_done) return length;  // trailers
  std::string_view trimmed = Trim(line);
  if (!trimmed.empty()) {
    size_t colon = trimmed.find(':');
    if (colon != std::string_view::npos) {
      t->response->headers.Add(std::string(Trim(trimmed.substr(0, colon))), std::string(Trim(trimmed.substr(colon + 1))));
    }
    return length;
  }
  long status = 0;
  curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
  if (status >= 100 && status < 200) return length;
  t->headers_done = true;
  t->response->status = status;
  if (IsRedirectStatus(status) && t->response->headers.Has("location")) {
    t->mode = Transfer::BodyMode::kDiscard;
    return length;
  }
  bool success = status >= 200 && status < 300;
  if (success && t->request->body_sink) {
    t->mode = Transfer::BodyMode::kStream;
  } else {
    t->mode = Transfer::BodyMode::kCollect;
    t->body_limit = success ? t->request->max_body_bytes : t->request->max_error_body_bytes;
  }
  if (t->request->on_headers) {
    Status accepted = t->request->on_headers(*t->response);
    if (!accepted) {
      t->callback_error = accepted.error();
      return 0;
    }
  }
  return length;
}

size_t OnWrite(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t length = size * count;
  switch (t->mode) {
    case Transfer::BodyMode::kDiscard:
      return length;
    case Transfer::BodyMode::kStream: {
      Status accepted = t->request->body_sink(std::string_view(data, length));
      if (!accepted) {
        t->callback_error = accepted.error();
        return 0;
      }
      return length;
    }
    case Transfer::BodyMode::kCollect:
      if (t->response->body.size() + length > t->body_limit) {
        bool success = t->response->status >= 200 && t->response->status < 300;
        if (!success) {  // an error document: keep its start, drop the rest
          t->response->body.append(data, t->body_limit - t->response->body.size());
          t->mode = Transfer::BodyMode::kDiscard;
          return length;
        }
        t->too_large = true;
        return 0;
      }
      t->response->body.append(data, length);
      return length;
  }
  return 0;
}

size_t OnRead(char* buffer, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t capacity = size * count;
  const HttpRequest& request = *t->request;
  if (!request.body_reader) {
    size_t n = std::min(capacity, request.body.size() - t->body_offset);
    std::memcpy(buffer, request.body.data() + t->body_offset, n);
    t->body_offset += n;
    return n;
  }
  uint64_t left = request.body_size - t->uploaded;
  if (left == 0) return 0;
  size_t want = static_cast<size_t>(std::min<uint64_t>(capacity, left));
  Result<size_t> got = request.body_reader(std::span<char>(buffer, want));
  if (!got) {
    t->callback_error = got.error();
    return CURL_READFUNC_ABORT;
  }
  if (*got == 0 || *got > want) {
    t->callback_error = Error(ErrorCode::kInvalidArgument,
                              fmt::format("request body of {} {} ended after {} of {} bytes", request.method,
                                          request.url, t->uploaded, request.body_size));
    return CURL_READFUNC_ABORT;
  }
  t->uploaded += *got;
  return *got;
}

int OnProgress(void* user, curl_off_t, curl_off_t dlnow, curl_off_t, curl_off_t ulnow) {
  auto* t = static_cast<Transfer*>(user);
  Clock::time_point now = Clock::now();
  if (dlnow + ulnow != t->last_bytes) {
    t->last_bytes = dlnow + ulnow;
    t->last_progress = now;
    return 0;
  }
  if (now - t->last_progress >= t->stall_timeout) {
    t->stalled = true;
    return 1;  // aborts with CURLE_ABORTED_BY_CALLBACK
  }
  return 0;
}

// Adds the registry's extra CAs to the store OpenSSL already filled from the system
// bundle (CURLOPT_CAINFO would replace it instead).
CURLcode OnSslContext(CURL*, void* ssl_ctx, void* user) {
  auto* t = static_cast<Transfer*>(user);
  X509_STORE* store = SSL_CTX_get_cert_store(static_cast<SSL_CTX*>(ssl_ctx));
  BIO* bio = BIO_new_mem_buf(t->extra_ca_pem.data(), static_cast<int>(t->extra_ca_pem.size()));
  if (bio == nullptr) return CURLE_OUT_OF_MEMORY;
  int added = 0;
  while (X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) {
    if (X509_STORE_add_cert(store, cert) == 1) ++added;
    X509_free(cert);
  }
  ERR_clear_error();  // the loop ends with a "no start line" error
  BIO_free(bio);
  return added > 0 ? CURLE_OK : CURLE_SSL_CACERT_BADFILE;
}

}  // namespace

std::optional<std::string_view> HttpHeaders::Get(std::string_view name) const {
  for (const auto& [key, value] : entries_) {
    if (EqualsIgnoreCase(key, name)) return std::string_view(value);
  }
  return std::nullopt;
}

std::vector<std::string_view> HttpHeaders::GetAll(std::string_view name) const {
  std::vector<std::string_view> values;
  for (const auto& [key, value] : entries_) {
    if (EqualsIgnoreCase(key, name)) values.emplace_back(value);
  }
  return values;
}

// One curl share (DNS cache, TLS sessions) and a pool of easy handles (each with its own
// connection cache), handed out last-in first-out so the warmest handle goes first.
struct HttpClient::Shared {
  CURLSH* share = nullptr;
  std::array<std::mutex, CURL_LOCK_DATA_LAST> locks;
  std::mutex pool_mutex;
  std::vector<CURL*> idle;

  ~Shared() {
    for (CURL* curl : idle) curl_easy_cleanup(curl);  // before the share they use
    if (share != nullptr) curl_share_cleanup(share);
  }
};

struct HttpClient::Handle {
  CURL* curl = nullptr;
  char error_buffer[CURL_ERROR_SIZE] = {};
};

// Borrows an easy handle from the pool; gives it back on destruction.
class HttpClient::Lease {
 public:
  explicit Lease(Shared& shared) : shared_(shared) {
    std::lock_guard lock(shared_.pool_mutex);
    if (!shared_.idle.empty()) {
      handle_.curl = shared_.idle.back();
      shared_.idle.pop_back();
    }
  }
  ~Lease() {
    if (handle_.curl == nullptr) return;
    curl_easy_reset(handle_.curl);  // drops pointers into this lease; keeps caches
    std::lock_guard lock(shared_.pool_mutex);
    shared_.idle.push_back(handle_.curl);
  }
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  Handle& handle() { return handle_; }

 private:
  Shared& shared_;
  Handle handle_;
};

HttpClient::HttpClient(HttpClientOptions options) : options_(std::move(options)), shared_(std::make_unique<Shared>()) {}

HttpClient::~HttpClient() = default;

Result<std::unique_ptr<HttpClient>> HttpClient::Create(HttpClientOptions options) {
  GlobalInit();
  if (options.stall_timeout.count() <= 0 || options.connect_timeout.count() <= 0) {
    return Fail(ErrorCode::kInvalidArgument, "http client: stall and connect timeouts must be positive");
  }
  std::unique_ptr<HttpClient> client(new HttpClient(std::move(options)));
  Shared& shared = *client->shared_;
  shared.share = curl_share_init();
  if (shared.share == nullptr) return Fail(ErrorCode::kInternal, "curl_share_init failed");
  auto lock = [](CURL*, curl_lock_data data, curl_lock_access, void* user) {
    static_cast<Shared*>(user)->locks[data].lock();
  };
  auto unlock = [](CURL*, curl_lock_data data, void* user) { static_cast<Shared*>(user)->locks[data].unlock(); };
  curl_share_setopt(shared.share, CURLSHOPT_LOCKFUNC, +lock);
  curl_share_setopt(shared.share, CURLSHOPT_UNLOCKFUNC, +unlock);
  curl_share_setopt(shared.share, CURLSHOPT_USERDATA, &shared);
  // Not CURL_LOCK_DATA_CONNECT: libcurl does not support sharing connections between
  // concurrent threads. Connections live in the pooled easy handles instead (each keeps its
  // cache across curl_easy_reset), so a handle taken from the pool brings its connections.
  for (curl_lock_data data : {CURL_LOCK_DATA_DNS, CURL_LOCK_DATA_SSL_SESSION}) {
    CURLSHcode code = curl_share_setopt(shared.share, CURLSHOPT_SHARE, data);
    if (code != CURLSHE_OK) return Fail(ErrorCode::kInternal, "curl share: {}", curl_share_strerror(code));
  }
  return client;
}

Result<HttpResponse> HttpClient::Send(HttpRequest request) {
  HttpResponse response;
  long new_connections = 0;
  for (int hop = 0;; ++hop) {
    Lease lease(*shared_);
    if (lease.handle().curl == nullptr) {
      lease.handle().curl = curl_easy_init();
      if (lease.handle().curl == nullptr) return Fail(ErrorCode::kInternal, "curl_easy_init failed");
    }
    STRATA_ASSIGN_OR_RETURN(response, SendOnce(lease.handle(), request));
    new_connections += response.new_connections;
    response.new_connections = new_connections;
    response.redirects = hop;
    std::optional<std::string_view> location = response.headers.Get("location");
    if (!IsRedirectStatus(response.status) || !location) return response;
    if (hop >= options_.max_redirects) {
      return Fail(ErrorCode::kFailedPrecondition, "{} {}: more than {} redirects", request.method, request.url,
                  options_.max_redirects);
    }
    STRATA_ASSIGN_OR_RETURN(std::string next, ResolveUrl(request.url, *location));
    STRATA_ASSIGN_OR_RETURN(UrlOrigin from, ParseOrigin(request.url));
    STRATA_ASSIGN_OR_RETURN(UrlOrigin to, ParseOrigin(next));
    if (from != to) {
      std::erase_if(request.headers, [](const RequestHeader& h) { return h.sensitive || AlwaysSensitive(h.name); });
    }
    bool to_get = response.status == 303 ? request.method != "HEAD"
                                         : (response.status == 301 || response.status == 302) &&
                                               request.method != "GET" && request.method != "HEAD";
    if (to_get) {
      request.method = "GET";
      request.body.clear();
      request.body_reader = nullptr;
      request.body_size = 0;
      std::erase_if(request.headers, [](const RequestHeader& h) {
        return EqualsIgnoreCase(h.name, "content-type") || EqualsIgnoreCase(h.name, "content-length");
      });
    } else if (request.body_reader) {
      if (!request.body_rewind) {
        return Fail(ErrorCode::kFailedPrecondition, "{} {}: redirected to {} but the streamed body cannot be replayed",
                    request.method, request.url, next);
      }
      STRATA_RETURN_IF_ERROR(request.body_rewind());
    }
    request.url = std::move(next);
  }
}

Result<HttpResponse> HttpClient::SendOnce(Handle& handle, const HttpRequest& request) {
  STRATA_ASSIGN_OR_RETURN(UrlOrigin origin, ParseOrigin(request.url));
  CURL* curl = handle.curl;
  HttpResponse response;
  Transfer t;
  t.request = &request;
  t.response = &response;
  t.curl = curl;
  t.stall_timeout = options_.stall_timeout;
  handle.error_buffer[0] = '\0';

  curl_easy_setopt(curl, CURLOPT_SHARE, shared_->share);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, handle.error_buffer);
  curl_easy_setopt(curl, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
  // HTTP/1.1: parallel layer downloads do better on their own TCP connections than
  // multiplexed over one (one loss stalls every stream; one flow-control window).
  curl_easy_setopt(curl, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
  curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
  // Large buffers: layers are tens of MB, and each callback costs a hop through the sink
  // (ingest write, progress); 16 KiB defaults made that overhead visible on loopback.
  curl_easy_setopt(curl, CURLOPT_BUFFERSIZE, 512L * 1024);
  curl_easy_setopt(curl, CURLOPT_UPLOAD_BUFFERSIZE, 2L * 1024 * 1024);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, options_.user_agent.c_str());
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, static_cast<long>(options_.connect_timeout.count()));
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, &OnHeader);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &OnWrite);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, &OnProgress);
  curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &t);

  // Headers. "Expect:" stops curl from waiting for 100-continue before large uploads.
  UniqueSlist headers(curl_slist_append(nullptr, "Expect:"));
  for (const RequestHeader& header : request.headers) {
    if (header.name.empty() || header.name.find_first_of(":\r\n") != std::string::npos ||
        header.value.find_first_of("\r\n") != std::string::npos) {
      return Fail(ErrorCode::kInvalidArgument, "{} {}: invalid header name or value for '{}'", request.method, request.url,
                  header.name);
    }
    std::string line = header.value.empty() ? header.name + ";" : header.name + ": " + header.value;
    headers.reset(curl_slist_append(headers.release(), line.c_str()));
    if (!headers) return Fail(ErrorCode::kInternal, "curl_slist_append: out of memory");
  }
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers.get());

  const std::string& method = request.method;
  bool has_body = request.body_reader || !request.body.empty() || method == "POST" || method == "PUT" ||
                  method == "PATCH";
  if (method == "HEAD") {
    curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  } else if (has_body) {
    curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
    curl_off_t size = request.body_reader ? static_cast<curl_off_t>(request.body_size)
                                          : static_cast<curl_off_t>(request.body.size());
    curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, size);
    curl_easy_setopt(curl, CURLOPT_READFUNCTION, &OnRead);
    curl_easy_setopt(curl, CURLOPT_READDATA, &t);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
  } else if (method != "GET") {
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
  }
  std::string range;
  if (request.range_start) {
    range = fmt::format("{}-", *request.range_start);
    curl_easy_setopt(curl, CURLOPT_RANGE, range.c_str());
  }

  HostTlsConfig tls;
  if (origin.scheme == "https") {
    auto loaded = LoadHostTlsConfig(options_.certs_dir, origin);
    if (!loaded) return Fail(loaded.error().WithContext(fmt::format("TLS config for {}", origin.HostPort())));
    tls = std::move(*loaded);
    if (!tls.extra_ca_pem.empty()) {
      t.extra_ca_pem = tls.extra_ca_pem;
      curl_easy_setopt(curl, CURLOPT_SSL_CTX_FUNCTION, &OnSslContext);
      curl_easy_setopt(curl, CURLOPT_SSL_CTX_DATA, &t);
    }
    if (!tls.client_cert.empty()) {
      curl_easy_setopt(curl, CURLOPT_SSLCERT, tls.client_cert.c_str());
      curl_easy_setopt(curl, CURLOPT_SSLKEY, tls.client_key.c_str());
    }
    const auto& insecure = options_.insecure_skip_verify_hosts;
    if (insecure.contains(origin.HostPort()) || insecure.contains(origin.host)) {
      curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
      curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
    }
  }

  CURLcode code = curl_easy_perform(curl);
  curl_easy_getinfo(curl, CURLINFO_NUM_CONNECTS, &response.new_connections);
  char* effective = nullptr;
  curl_easy_getinfo(curl, CURLINFO_EFFECTIVE_URL, &effective);
  response.effective_url = effective != nullptr ? effective : request.url;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &response.status);

  if (t.callback_error) return Fail(*t.callback_error);
  std::string host = UrlHostForMessage(request.url);
  if (t.stalled) {
    return Fail(ErrorCode::kUnavailable, "no data from {} for {} s while {} {}", host, options_.stall_timeout.count(),
                method, request.url);
  }
  if (t.too_large) {
    return Fail(ErrorCode::kFailedPrecondition, "{} {}: response body exceeds {} bytes", method, request.url,
                t.body_limit);
  }
  if (code == CURLE_OK) return response;

  std::string reason = curl_easy_strerror(code);
  if (handle.error_buffer[0] != '\0') reason += fmt::format(" ({})", handle.error_buffer);
  switch (code) {
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
      return Fail(ErrorCode::kInvalidArgument, "{} {}: {}", method, request.url, reason);
    case CURLE_COULDNT_RESOLVE_HOST:
      return Fail(ErrorCode::kUnavailable, "cannot resolve {}: {}", host, reason);
    case CURLE_COULDNT_CONNECT:
      return Fail(ErrorCode::kUnavailable, "cannot connect to {}: {}", host, reason);
    case CURLE_OPERATION_TIMEDOUT:
      return Fail(ErrorCode::kUnavailable, "connecting to {} timed out after {} s: {}", host,
                  options_.connect_timeout.count(), reason);
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_ENGINE_INITFAILED:
      return Fail(ErrorCode::kUnavailable, "TLS with {} failed{}: {}", host,
                  tls.dir.empty() ? "" : fmt::format(" (certs from {})", tls.dir.string()), reason);
    default:
      return Fail(ErrorCode::kUnavailable, "{} {}: {}: {}", method, request.url, host, reason);
  }
}

}  // namespace strata::registry
