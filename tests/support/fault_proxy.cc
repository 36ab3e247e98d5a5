#include "tests/support/fault_proxy.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

#include "tests/support/loopback_server.h"

namespace strata::test_support {
namespace {

constexpr size_t kMaxHead = 64 * 1024;

bool IEquals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](unsigned char x, unsigned char y) {
           return std::tolower(x) == std::tolower(y);
         });
}

std::string_view Trim(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
  return text;
}

// Headers that describe one hop, not the message: never forwarded.
bool HopByHop(std::string_view name) {
  for (std::string_view hop : {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "proxy-connection",
                               "host", "content-length", "expect"}) {
    if (IEquals(name, hop)) return true;
  }
  return false;
}

}  // namespace

std::optional<std::string> ProxiedRequest::Header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (IEquals(key, name)) return value;
  }
  return std::nullopt;
}

// One client connection: parses requests, applies faults, forwards the rest with libcurl
// (one easy handle per connection, so upstream connections are reused too).
class ProxyConnection {
 public:
  ProxyConnection(FaultProxy& proxy, int fd) : proxy_(proxy), fd_(fd), curl_(curl_easy_init()) {}
  ~ProxyConnection() {
    if (curl_ != nullptr) curl_easy_cleanup(curl_);
  }

  void Run() {
    while (!proxy_.stopping() && curl_ != nullptr) {
      if (!ServeOne()) return;
    }
  }

 private:
  // Waits until fd_ is ready for `events` or the proxy stops. False on stop/timeout/error.
  bool Wait(short events, int timeout_ms = 30000) {
    pollfd fds[2] = {{.fd = fd_, .events = events, .revents = 0},
                     {.fd = proxy_.wake_read_.get(), .events = POLLIN, .revents = 0}};
    int ready = ::poll(fds, 2, timeout_ms);
    if (ready <= 0 || fds[1].revents != 0) return false;
    return fds[0].revents != 0;
  }

  bool SendAll(std::string_view data) {
    while (!data.empty()) {
      if (!Wait(POLLOUT)) return false;
      ssize_t sent = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (sent < 0 && errno == EINTR) continue;
      if (sent <= 0) return false;
      data.remove_prefix(static_cast<size_t>(sent));
    }
    return true;
  }

  // Appends received bytes to buffer_; false on EOF, error or stop.
  bool Receive() {
    if (!Wait(POLLIN)) return false;
    char chunk[16384];
    ssize_t got = ::recv(fd_, chunk, sizeof(chunk), 0);
    if (got <= 0) return false;
    buffer_.append(chunk, static_cast<size_t>(got));
    return true;
  }

  // Handles one request; false when the connection must close.
  bool ServeOne() {
    size_t end;
    while ((end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (buffer_.size() > kMaxHead || !Receive()) return false;
    }
    std::string head = buffer_.substr(0, end);
    buffer_.erase(0, end + 4);

    ProxiedRequest request;
    size_t line_end = head.find("\r\n");
    std::string_view first = std::string_view(head).substr(0, line_end);
    size_t sp1 = first.find(' ');
    size_t sp2 = first.rfind(' ');
    if (sp1 == std::string_view::npos || sp2 <= sp1) return false;
    request.method = std::string(first.substr(0, sp1));
    request.target = std::string(first.substr(sp1 + 1, sp2 - sp1 - 1));
    bool close_after = false;
    uint64_t content_length = 0;
    std::string_view rest = line_end == std::string::npos ? "" : std::string_view(head).substr(line_end + 2);
    while (!rest.empty()) {
      size_t eol = rest.find("\r\n");
      std::string_view line = rest.substr(0, eol);
      rest = eol == std::string_view::npos ? "" : rest.substr(eol + 2);
      size_t colon = line.find(':');
      if (colon == std::string_view::npos) continue;
      std::string name(Trim(line.substr(0, colon)));
      std::string value(Trim(line.substr(colon + 1)));
      if (IEquals(name, "content-length")) content_length = std::stoull(value);
      if (IEquals(name, "connection") && IEquals(value, "close")) close_after = true;
      if (IEquals(name, "transfer-encoding")) {
        SendAll("HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return false;
      }
      request.headers.emplace_back(std::move(name), std::move(value));
    }
    while (buffer_.size() < content_length) {
      if (!Receive()) return false;
    }
    std::string body = buffer_.substr(0, content_length);
    buffer_.erase(0, content_length);

    int rule_index = -1;
    std::optional<FaultRule> fault = proxy_.Match(request, &rule_index);
    path_ = request.target.substr(0, request.target.find('?'));
    if (fault && fault->action == FaultAction::kTooManyRequests) {
      std::string json = R"({"errors":[{"code":"TOOMANYREQUESTS","message":"fault proxy: too many requests"}]})";
      return SendAll(fmt::format("HTTP/1.1 429 Too Many Requests\r\nRetry-After: {}\r\nContent-Type: "
                                 "application/json\r\nContent-Length: {}\r\n\r\n{}",
                                 fault->retry_after_seconds, json.size(), json)) &&
             !close_after;
    }
    if (fault && fault->action == FaultAction::kServiceUnavailable) {
      std::string json = R"({"errors":[{"code":"UNAVAILABLE","message":"fault proxy: service unavailable"}]})";
      return SendAll(fmt::format("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                 "Content-Length: {}\r\n\r\n{}",
                                 json.size(), json)) &&
             !close_after;
    }
    if (fault && fault->action == FaultAction::kRedirect) {
      return SendAll(fmt::format("HTTP/1.1 {} {}\r\nLocation: {}\r\nContent-Length: 0\r\n\r\n", fault->redirect_status,
                                 HttpReasonPhrase(fault->redirect_status), fault->location)) &&
             !close_after;
    }
    fault_ = fault;
    return Forward(request, body) && !close_after;
  }

  static size_t OnHeader(char* data, size_t size, size_t count, void* user) {
    auto* self = static_cast<ProxyConnection*>(user);
    size_t length = size * count;
    std::string_view line = Trim(std::string_view(data, length));
    if (line.starts_with("HTTP/")) {
      self->response_headers_.clear();
      return length;
    }
    if (!line.empty()) {
      size_t colon = line.find(':');
      if (colon != std::string_view::npos) {
        self->response_headers_.emplace_back(std::string(Trim(line.substr(0, colon))),
                                             std::string(Trim(line.substr(colon + 1))));
      }
      return length;
    }
    long status = 0;
    curl_easy_getinfo(self->curl_, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200) return length;
    return self->SendResponseHead(static_cast<int>(status)) ? length : 0;
  }

  bool SendResponseHead(int status) {
    std::string head = fmt::format("HTTP/1.1 {} {}\r\n", status, HttpReasonPhrase(status));
    bool has_length = head_only_ || status == 204 || status == 304;
    for (auto [name, value] : response_headers_) {
      if (IEquals(name, "content-length")) {
        has_length = true;
      } else if (HopByHop(name)) {
        continue;
      }
      if (IEquals(name, "location") && value.starts_with(proxy_.upstream_)) {
        value = proxy_.url() + value.substr(proxy_.upstream_.size());
      }
      head += fmt::format("{}: {}\r\n", name, value);
    }
    if (!has_length) {
      head += "Connection: close\r\n";
      keep_alive_ = false;
    }
    head += "\r\n";
    head_sent_ = true;
    return SendAll(head);
  }

  static size_t OnBody(char* data, size_t size, size_t count, void* user) {
    auto* self = static_cast<ProxyConnection*>(user);
    size_t length = size * count;
    std::string chunk(data, length);
    size_t allowed = length;
    if (self->fault_) {
      const FaultRule& rule = *self->fault_;
      uint64_t offset = self->sent_;
      if (rule.action == FaultAction::kCorruptByte && rule.body_bytes >= offset && rule.body_bytes < offset + length) {
        chunk[rule.body_bytes - offset] ^= 0x5a;
      }
      if (rule.action == FaultAction::kDropAfter || rule.action == FaultAction::kStallAfter) {
        allowed = static_cast<size_t>(std::min<uint64_t>(length, rule.body_bytes > offset ? rule.body_bytes - offset : 0));
      }
    }
    if (allowed > 0) {
      // Counted before sending: once a client holds the bytes, the counter already shows them.
      self->proxy_.AddBodyBytes(self->path_, allowed);
      self->sent_ += allowed;
      if (!self->SendAll(std::string_view(chunk).substr(0, allowed))) return 0;
    }
    if (allowed == length) return length;
    if (self->fault_->action == FaultAction::kStallAfter) {
      // Sends nothing and holds the connection open until the proxy stops.
      while (!self->proxy_.stopping()) {
        pollfd wake{.fd = self->proxy_.wake_read_.get(), .events = POLLIN, .revents = 0};
        ::poll(&wake, 1, 1000);
      }
    }
    self->keep_alive_ = false;
    return 0;  // aborts the upstream transfer; the caller closes the client connection
  }

  bool Forward(const ProxiedRequest& request, const std::string& body) {
    curl_easy_reset(curl_);
    response_headers_.clear();
    head_sent_ = false;
    keep_alive_ = true;
    sent_ = 0;
    head_only_ = request.method == "HEAD";
    std::string url = proxy_.upstream_ + request.target;
    curl_easy_setopt(curl_, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl_, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
    curl_slist* headers = curl_slist_append(nullptr, "Expect:");
    bool has_accept = false;
    for (const auto& [name, value] : request.headers) {
      if (HopByHop(name)) continue;
      if (IEquals(name, "accept")) has_accept = true;
      std::string line = value.empty() ? name + ";" : name + ": " + value;
      headers = curl_slist_append(headers, line.c_str());
    }
    if (!has_accept) headers = curl_slist_append(headers, "Accept:");
    curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, headers);
    if (head_only_) {
      curl_easy_setopt(curl_, CURLOPT_NOBODY, 1L);
    } else if (!body.empty() || request.method == "POST" || request.method == "PUT" || request.method == "PATCH") {
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDS, body.data());
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
      curl_easy_setopt(curl_, CURLOPT_CUSTOMREQUEST, request.method.c_str());
    } else if (request.method != "GET") {
      curl_easy_setopt(curl_, CURLOPT_CUSTOMREQUEST, request.method.c_str());
    }
    curl_easy_setopt(curl_, CURLOPT_HEADERFUNCTION, &OnHeader);
    curl_easy_setopt(curl_, CURLOPT_HEADERDATA, this);
    curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, &OnBody);
    curl_easy_setopt(curl_, CURLOPT_WRITEDATA, this);
    CURLcode code = curl_easy_perform(curl_);
    curl_slist_free_all(headers);
    if (code != CURLE_OK && !head_sent_) {
      std::string message = fmt::format("fault proxy: upstream {}: {}", url, curl_easy_strerror(code));
      SendAll(fmt::format("HTTP/1.1 502 Bad Gateway\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                          message.size(), message));
      return false;
    }
    return code == CURLE_OK && keep_alive_;
  }

  FaultProxy& proxy_;
  int fd_;
  CURL* curl_;
  std::string buffer_;  // received, not yet consumed
  std::optional<FaultRule> fault_;
  std::string path_;
  std::vector<std::pair<std::string, std::string>> response_headers_;
  bool head_only_ = false;
  bool head_sent_ = false;
  bool keep_alive_ = true;
  uint64_t sent_ = 0;
};

Result<std::unique_ptr<FaultProxy>> FaultProxy::Start(std::string upstream_url, std::vector<FaultRule> rules) {
  while (upstream_url.ends_with('/')) upstream_url.pop_back();
  STRATA_ASSIGN_OR_RETURN(LoopbackListener listener, ListenOnLoopback("fault proxy"));
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return Fail(ErrorCode::kInternal, "pipe2: {}", std::strerror(errno));
  std::unique_ptr<FaultProxy> proxy(new FaultProxy(std::move(upstream_url), std::move(listener.fd),
                                                   UniqueFd(pipe_fds[0]), UniqueFd(pipe_fds[1]), listener.port));
  proxy->SetRules(std::move(rules));
  proxy->accept_thread_ = std::thread([raw = proxy.get()] { raw->AcceptLoop(); });
  return proxy;
}

FaultProxy::FaultProxy(std::string upstream, UniqueFd listener, UniqueFd wake_read, UniqueFd wake_write, int port)
    : upstream_(std::move(upstream)),
      listener_(std::move(listener)),
      wake_read_(std::move(wake_read)),
      wake_write_(std::move(wake_write)),
      port_(port) {}

FaultProxy::~FaultProxy() {
  stopping_ = true;
  char stop = 1;
  (void)!::write(wake_write_.get(), &stop, 1);
  if (accept_thread_.joinable()) accept_thread_.join();
  // The accept thread is gone: nobody adds threads any more.
  for (std::thread& thread : connection_threads_) thread.join();
}

std::string FaultProxy::url() const { return fmt::format("http://127.0.0.1:{}", port_); }
std::string FaultProxy::host() const { return fmt::format("127.0.0.1:{}", port_); }

void FaultProxy::SetRules(std::vector<FaultRule> rules) {
  std::lock_guard lock(mutex_);
  rules_.clear();
  for (FaultRule& rule : rules) {
    std::regex path(rule.path_regex, std::regex::ECMAScript);
    rules_.push_back(CompiledRule{.rule = std::move(rule), .path = std::move(path)});
  }
}

int FaultProxy::matched(size_t index) const {
  std::lock_guard lock(mutex_);
  return index < rules_.size() ? rules_[index].matched : 0;
}

int FaultProxy::fired(size_t index) const {
  std::lock_guard lock(mutex_);
  return index < rules_.size() ? rules_[index].fired : 0;
}

int FaultProxy::request_count() const {
  std::lock_guard lock(mutex_);
  return static_cast<int>(requests_.size());
}

std::vector<ProxiedRequest> FaultProxy::requests() const {
  std::lock_guard lock(mutex_);
  return requests_;
}

uint64_t FaultProxy::BodyBytesForwarded(std::string_view path_prefix) const {
  std::lock_guard lock(mutex_);
  uint64_t total = 0;
  for (const auto& [path, bytes] : body_bytes_) {
    if (path.starts_with(path_prefix)) total += bytes;
  }
  return total;
}

void FaultProxy::AddBodyBytes(const std::string& path, uint64_t bytes) {
  std::lock_guard lock(mutex_);
  body_bytes_[path] += bytes;
}

std::optional<FaultRule> FaultProxy::Match(const ProxiedRequest& request, int* rule_index) {
  std::lock_guard lock(mutex_);
  std::string path = request.target.substr(0, request.target.find('?'));
  std::optional<FaultRule> chosen;
  *rule_index = -1;
  for (size_t i = 0; i < rules_.size(); ++i) {
    CompiledRule& rule = rules_[i];
    if (!rule.rule.method.empty() && rule.rule.method != request.method) continue;
    if (!std::regex_search(path, rule.path)) continue;
    int n = ++rule.matched;
    bool applies = rule.rule.every_kth > 0 ? n % rule.rule.every_kth == 0 : rule.rule.first_n == 0 || n <= rule.rule.first_n;
    if (applies && !chosen) {
      ++rule.fired;
      chosen = rule.rule;
      *rule_index = static_cast<int>(i);
    }
  }
  requests_.push_back(request);
  requests_.back().fault_rule = *rule_index;
  return chosen;
}

void FaultProxy::AcceptLoop() {
  while (!stopping()) {
    std::optional<UniqueFd> connection = AcceptUnlessWoken(listener_.get(), wake_read_.get());
    if (!connection) return;
    if (!*connection) continue;
    int fd = connection->release();  // owned by ServeConnection from here
    // The head and the body go out in separate writes: without NODELAY, Nagle plus the
    // peer's delayed ACK would add 40 ms to every response.
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    ++connections_;
    std::lock_guard lock(mutex_);
    connection_threads_.emplace_back([this, fd] { ServeConnection(fd); });
  }
}

void FaultProxy::ServeConnection(int fd) {
  UniqueFd connection(fd);
  ProxyConnection(*this, fd).Run();
}

}  // namespace strata::test_support
