#include "mirror/http_server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <optional>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace strata::mirror {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kPollSlice = std::chrono::milliseconds(250);
// A worker holding an idle keep-alive connection gives it up after this long when other
// connections wait for a worker.
constexpr auto kIdleWhenBusy = std::chrono::seconds(1);

std::string_view Reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 416: return "Range Not Satisfiable";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    default: return "Status";
  }
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// %XX decoding; nullopt for a malformed escape or a decoded NUL.
std::optional<std::string> PercentDecode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    if (i + 2 >= text.size()) return std::nullopt;
    const int high = HexValue(text[i + 1]);
    const int low = HexValue(text[i + 2]);
    if (high < 0 || low < 0 || (high == 0 && low == 0)) return std::nullopt;
    out += static_cast<char>(high * 16 + low);
    i += 2;
  }
  return out;
}

std::string Lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view Trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

struct ParsedHead {
  HttpServerRequest request;
  bool keep_alive = true;
};

// Parses "METHOD target HTTP/1.x" and the header lines; nullopt when malformed.
std::optional<ParsedHead> ParseHead(std::string_view head) {
  ParsedHead parsed;
  HttpServerRequest& request = parsed.request;
  size_t line_end = head.find("\r\n");
  std::string_view line = head.substr(0, line_end);
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp1 == std::string_view::npos || sp2 == std::string_view::npos || sp1 == 0) return std::nullopt;
  request.method = std::string(line.substr(0, sp1));
  request.target = std::string(line.substr(sp1 + 1, sp2 - sp1 - 1));
  const std::string_view version = line.substr(sp2 + 1);
  if (version != "HTTP/1.1" && version != "HTTP/1.0") return std::nullopt;
  if (request.target.empty() || request.target.front() != '/') return std::nullopt;
  for (char c : request.method) {
    if (!std::isupper(static_cast<unsigned char>(c))) return std::nullopt;
  }
  const size_t question = request.target.find('?');
  auto path = PercentDecode(std::string_view(request.target).substr(0, question));
  if (!path) return std::nullopt;
  request.path = std::move(*path);
  if (question != std::string::npos) {
    std::string_view query = std::string_view(request.target).substr(question + 1);
    while (!query.empty()) {
      const size_t amp = query.find('&');
      std::string_view pair = query.substr(0, amp);
      const size_t eq = pair.find('=');
      auto key = PercentDecode(pair.substr(0, eq));
      auto value = PercentDecode(eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1));
      if (!key || !value) return std::nullopt;
      if (!key->empty()) request.query[*key] = *value;
      if (amp == std::string_view::npos) break;
      query.remove_prefix(amp + 1);
    }
  }
  while (line_end != std::string_view::npos) {
    const size_t start = line_end + 2;
    line_end = head.find("\r\n", start);
    line = head.substr(start, line_end == std::string_view::npos ? std::string_view::npos : line_end - start);
    if (line.empty()) break;
    if (line.front() == ' ' || line.front() == '\t') return std::nullopt;  // obsolete line folding
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return std::nullopt;
    const std::string name = Lower(line.substr(0, colon));
    if (name.find_first_of(" \t") != std::string::npos) return std::nullopt;
    const std::string value(Trim(line.substr(colon + 1)));
    auto [it, inserted] = request.headers.emplace(name, value);
    if (!inserted) it->second += ", " + value;
  }
  const std::string connection = Lower(request.Header("connection"));
  parsed.keep_alive = version == "HTTP/1.1" ? connection.find("close") == std::string::npos
                                            : connection.find("keep-alive") != std::string::npos;
  const std::string length = request.Header("content-length");
  if (!length.empty() && length != "0") request.has_body = true;
  if (!request.Header("transfer-encoding").empty()) request.has_body = true;
  return parsed;
}

Status SendAll(int fd, std::string_view bytes, int flags = 0) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | flags);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoFail(errno, "send response");
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return {};
}

class ConnectionWriter : public HttpResponseWriter {
 public:
  ConnectionWriter(int fd, bool head_only, bool keep_alive) : fd_(fd), head_only_(head_only), keep_alive_(keep_alive) {}

  Status Send(int status, const Headers& headers, std::string_view body, int64_t content_length = -1) override {
    const int64_t length = content_length >= 0 ? content_length : static_cast<int64_t>(body.size());
    std::string bytes = Head(status, headers, length);
    if (!head_only_) bytes.append(body);
    return Finish(SendAll(fd_, bytes));
  }

  Status SendFile(int status, const Headers& headers, int fd, int64_t offset, int64_t length) override {
    const bool with_body = !head_only_ && length > 0;
    STRATA_RETURN_IF_ERROR(Finish(SendAll(fd_, Head(status, headers, length), with_body ? MSG_MORE : 0)));
    if (!with_body) return {};
    off_t position = offset;
    int64_t remaining = length;
    while (remaining > 0) {
      ssize_t n = ::sendfile(fd_, fd, &position, static_cast<size_t>(std::min<int64_t>(remaining, 1 << 30)));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Finish(ErrnoFail(errno, "sendfile"));
      if (n == 0) return Finish(Fail(ErrorCode::kInternal, "sendfile: file ended {} bytes early", remaining));
      remaining -= n;
    }
    return {};
  }

  bool sent() const { return sent_; }
  bool failed() const { return failed_; }
  bool keep_alive() const { return keep_alive_; }

 private:
  std::string Head(int status, const Headers& headers, int64_t length) {
    sent_ = true;
    std::string head = fmt::format("HTTP/1.1 {} {}\r\n", status, Reason(status));
    for (const auto& [name, value] : headers) head += fmt::format("{}: {}\r\n", name, value);
    head += fmt::format("Content-Length: {}\r\nConnection: {}\r\n\r\n", length, keep_alive_ ? "keep-alive" : "close");
    return head;
  }
  Status Finish(Status status) {
    if (!status) failed_ = true;
    return status;
  }

  int fd_;
  bool head_only_;
  bool keep_alive_;
  bool sent_ = false;
  bool failed_ = false;
};

void SendSimple(int fd, int status, std::string_view body) {
  ConnectionWriter writer(fd, false, false);
  (void)writer.Send(status, {{"Content-Type", "text/plain; charset=utf-8"}}, body);
}

// "host:port" -> host, port. "[::1]:80" -> "::1", "80"; ":80" -> "", "80".
std::optional<std::pair<std::string, std::string>> SplitAddress(std::string_view address) {
  const size_t colon = address.rfind(':');
  if (colon == std::string_view::npos || colon + 1 == address.size()) return std::nullopt;
  std::string host(address.substr(0, colon));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return std::make_pair(host, std::string(address.substr(colon + 1)));
}

std::string PeerName(const sockaddr_storage& address) {
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (address.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&address);
    ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
    port = ntohs(in->sin_port);
    return fmt::format("{}:{}", host, port);
  }
  const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&address);
  ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
  return fmt::format("[{}]:{}", host, ntohs(in6->sin6_port));
}

}  // namespace

std::string HttpServerRequest::Header(std::string_view name) const {
  auto it = headers.find(std::string(name));
  return it == headers.end() ? std::string() : it->second;
}

Result<std::unique_ptr<HttpServer>> HttpServer::Start(HttpServerOptions options, HttpHandler handler) {
  auto split = SplitAddress(options.address);
  if (!split) return Fail(ErrorCode::kInvalidArgument, "listen address {:?} is not HOST:PORT", options.address);
  if (options.workers < 1) return Fail(ErrorCode::kInvalidArgument, "http server needs at least one worker");
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const int rc = ::getaddrinfo(split->first.empty() ? nullptr : split->first.c_str(), split->second.c_str(), &hints,
                               &found);
  if (rc != 0) {
    return Fail(ErrorCode::kInvalidArgument, "listen address {:?}: {}", options.address, ::gai_strerror(rc));
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> addresses(found, ::freeaddrinfo);

  auto server = std::unique_ptr<HttpServer>(new HttpServer(std::move(options), std::move(handler)));
  int last_errno = 0;
  for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    UniqueFd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0));
    if (!fd) {
      last_errno = errno;
      continue;
    }
    const int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0 || ::listen(fd.get(), 1024) != 0) {
      last_errno = errno;
      continue;
    }
    server->listener_ = std::move(fd);
    break;
  }
  if (!server->listener_) return ErrnoFail(last_errno, fmt::format("listen on {}", server->options_.address));
  sockaddr_storage bound{};
  socklen_t length = sizeof(bound);
  ::getsockname(server->listener_.get(), reinterpret_cast<sockaddr*>(&bound), &length);
  server->bound_address_ = PeerName(bound);
  server->port_ = bound.ss_family == AF_INET ? ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port)
                                             : ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
  server->wake_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!server->wake_) return ErrnoFail(errno, "eventfd");

  HttpServer* self = server.get();
  server->threads_.emplace_back([self] { self->AcceptLoop(); });
  for (int i = 0; i < self->options_.workers; ++i) server->threads_.emplace_back([self] { self->WorkerLoop(); });
  return server;
}

HttpServer::~HttpServer() {
  Stop();
  for (std::thread& thread : threads_) {
    if (thread.joinable()) thread.join();
  }
}

void HttpServer::Stop() {
  if (stopping_.exchange(true)) return;
  const uint64_t one = 1;
  if (wake_) (void)!::write(wake_.get(), &one, sizeof(one));
  std::lock_guard lock(mutex_);
  ready_.notify_all();
}

void HttpServer::AcceptLoop() {
  while (!stopping_) {
    pollfd fds[2] = {{listener_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("http server {}: poll: {}", bound_address_, strerror(errno));
      return;
    }
    if (stopping_ || fds[1].revents != 0) return;
    sockaddr_storage peer{};
    socklen_t length = sizeof(peer);
    UniqueFd connection(::accept4(listener_.get(), reinterpret_cast<sockaddr*>(&peer), &length, SOCK_CLOEXEC));
    if (!connection) {
      if (errno == EMFILE || errno == ENFILE) std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    std::unique_lock lock(mutex_);
    if (pending_.size() >= options_.max_pending) {
      lock.unlock();
      SendSimple(connection.get(), 503, "too many connections\n");
      continue;
    }
    pending_.emplace_back(std::move(connection), PeerName(peer));
    ready_.notify_one();
  }
}

void HttpServer::WorkerLoop() {
  for (;;) {
    std::pair<UniqueFd, std::string> next;
    {
      std::unique_lock lock(mutex_);
      ++idle_workers_;
      ready_.wait(lock, [this] { return stopping_ || !pending_.empty(); });
      --idle_workers_;
      if (stopping_) return;
      next = std::move(pending_.front());
      pending_.pop_front();
    }
    Serve(std::move(next.first), next.second);
  }
}

void HttpServer::Serve(UniqueFd connection, const std::string& peer) {
  const int fd = connection.get();
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  timeval send_timeout{.tv_sec = static_cast<time_t>(options_.io_timeout.count() / 1000),
                       .tv_usec = static_cast<suseconds_t>((options_.io_timeout.count() % 1000) * 1000)};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof(send_timeout));
  std::string buffer;
  std::vector<char> chunk(16 << 10);
  for (;;) {
    size_t head_end;
    const Clock::time_point waiting_since = Clock::now();
    while ((head_end = buffer.find("\r\n\r\n")) == std::string::npos) {
      if (buffer.size() > options_.max_head_bytes) return SendSimple(fd, 431, "request head too large\n");
      const auto waited = Clock::now() - waiting_since;
      if (buffer.empty()) {
        if (stopping_ || waited > options_.idle_timeout) return;
        bool others_wait;
        {
          std::lock_guard lock(mutex_);
          others_wait = !pending_.empty() && idle_workers_ == 0;
        }
        if (others_wait && waited > kIdleWhenBusy) return;
      } else if (waited > options_.io_timeout) {
        return SendSimple(fd, 408, "request head timed out\n");
      }
      pollfd fds[2] = {{fd, POLLIN, 0}, {wake_.get(), POLLIN, 0}};
      const int ready = ::poll(fds, buffer.empty() ? 2 : 1, static_cast<int>(kPollSlice.count()));
      if (ready < 0 && errno != EINTR) return;
      if (ready <= 0 || (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      ssize_t n = ::recv(fd, chunk.data(), chunk.size(), 0);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) return;
      buffer.append(chunk.data(), static_cast<size_t>(n));
      // Not HTTP (a TLS ClientHello starts with 0x16): refuse at once, so a client probing
      // https first (skopeo, docker) falls back to plain HTTP without waiting for a timeout.
      if (!std::isupper(static_cast<unsigned char>(buffer.front()))) {
        return SendSimple(fd, 400, "this is a plain HTTP server\n");
      }
    }
    auto parsed = ParseHead(std::string_view(buffer).substr(0, head_end + 2));
    buffer.erase(0, head_end + 4);
    if (!parsed) return SendSimple(fd, 400, "malformed request\n");
    parsed->request.peer = peer;
    const bool keep_alive = parsed->keep_alive && !parsed->request.has_body && !stopping_;
    ConnectionWriter writer(fd, parsed->request.method == "HEAD", keep_alive);
    handler_(parsed->request, writer);
    if (!writer.sent()) (void)writer.Send(500, {}, "no response\n");
    if (writer.failed() || !writer.keep_alive()) return;
  }
}

}  // namespace strata::mirror
