// HttpServer: a small HTTP/1.1 server for read-mostly APIs (the registry mirror): a fixed
// pool of worker threads, each serving one connection at a time with blocking I/O, keep-alive
// and pipelining, bounded request heads, and timeouts on every wait.
//
// Contracts:
//  - Requests without a body only: a request announcing a body (Content-Length > 0 or
//    Transfer-Encoding) is handed to the handler, and the connection is closed after the
//    response (the body is never read), so handlers can answer 405 to writes cheaply.
//  - Limits: a request head above max_head_bytes gets 431; a malformed head 400; neither is
//    passed to the handler. A client idle longer than idle_timeout between requests, or
//    slower than io_timeout while sending a head or receiving a response, is disconnected.
//    When every worker is busy, workers drop their idle keep-alive connections early.
//  - Connections beyond max_pending waiting for a worker get 503 and are closed.
// Thread-safe; the handler is called concurrently from the workers.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/error.h"
#include "base/file.h"

namespace strata::mirror {

struct HttpServerRequest {
  std::string method;  // "GET", as sent
  std::string target;  // path and query as sent: "/v2/a/b/tags/list?n=1"
  std::string path;    // percent-decoded path without the query
  std::map<std::string, std::string> query;  // decoded; the last of repeated keys wins
  std::map<std::string, std::string> headers;  // keys lower-cased; repeated headers joined with ", "
  std::string peer;    // "127.0.0.1:34567"
  bool has_body = false;

  // The header's value, or "" when absent. `name` must be lower case.
  std::string Header(std::string_view name) const;
};

// One response. A handler calls exactly one of Send / SendFile.
class HttpResponseWriter {
 public:
  using Headers = std::vector<std::pair<std::string, std::string>>;
  virtual ~HttpResponseWriter() = default;
  // Sends status, headers (Content-Length is added from body.size() unless `content_length`
  // >= 0, which HEAD answers use to announce the size of the body they omit) and body.
  virtual Status Send(int status, const Headers& headers, std::string_view body, int64_t content_length = -1) = 0;
  // Sends `length` bytes of `fd` from `offset` (sendfile), with Content-Length = length.
  virtual Status SendFile(int status, const Headers& headers, int fd, int64_t offset, int64_t length) = 0;
};

using HttpHandler = std::function<void(const HttpServerRequest&, HttpResponseWriter&)>;

struct HttpServerOptions {
  std::string address = "127.0.0.1:5000";  // host:port; "[::1]:5000"; port 0 = any free port
  int workers = 32;
  size_t max_pending = 1024;
  size_t max_head_bytes = 32 << 10;
  std::chrono::milliseconds idle_timeout = std::chrono::seconds(30);
  std::chrono::milliseconds io_timeout = std::chrono::seconds(60);
};

class HttpServer {
 public:
  // Binds and listens, then starts the acceptor and the workers. Errors: InvalidArgument for
  // a malformed address, the bind/listen errno otherwise (naming the address).
  static Result<std::unique_ptr<HttpServer>> Start(HttpServerOptions options, HttpHandler handler);
  // Stop() then joins every thread.
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // "127.0.0.1:<port>" as bound (the real port when 0 was asked for).
  const std::string& address() const { return bound_address_; }
  int port() const { return port_; }
  // Stops accepting; responses in progress finish, idle connections close. Idempotent.
  void Stop();

 private:
  HttpServer(HttpServerOptions options, HttpHandler handler)
      : options_(std::move(options)), handler_(std::move(handler)) {}
  void AcceptLoop();
  void WorkerLoop();
  void Serve(UniqueFd connection, const std::string& peer);

  HttpServerOptions options_;
  HttpHandler handler_;
  UniqueFd listener_;
  UniqueFd wake_;  // eventfd: readable once Stop() was called
  std::string bound_address_;
  int port_ = 0;
  std::atomic<bool> stopping_{false};

  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::pair<UniqueFd, std::string>> pending_;  // guarded by mutex_
  std::atomic<int> idle_workers_{0};

  std::vector<std::thread> threads_;  // acceptor first, then the workers
};

}  // namespace strata::mirror
