// FaultProxy: a misbehaving HTTP/1.1 reverse proxy on 127.0.0.1 for tests of a client's
// resilience. It forwards every request to an upstream base URL (a RegistryFixture's
// plain-HTTP url()), except that requests matching a FaultRule get a fault instead: the
// connection drops after B body bytes, a 429 with Retry-After, a 503, a stall after B
// bytes (until the proxy is destroyed), one corrupted body byte, or a redirect.
// Range requests pass through untouched; Location headers that point at the upstream are
// rewritten to point at the proxy. Client connections are kept alive when the upstream
// response has a known length, so tests can count TCP connections.
//
// Threads: one accept thread plus one per client connection, all joined by the
// destructor (which also releases stalled connections). Accessors are thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <regex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/error.h"
#include "base/file.h"
#include "tests/support/http_client.h"

namespace strata::test_support {

enum class FaultAction {
  kDropAfter,           // forward `body_bytes` bytes of the response body, then close
  kTooManyRequests,     // answer 429 with "Retry-After: <retry_after_seconds>"
  kServiceUnavailable,  // answer 503
  kStallAfter,          // forward `body_bytes` bytes, then send nothing until destroyed
  kCorruptByte,         // forward everything, with the byte at offset `body_bytes` flipped
  kRedirect,            // answer `redirect_status` with "Location: <location>" (verbatim)
};

struct FaultRule {
  std::string method;             // "" = any method
  std::string path_regex = ".*";  // ECMAScript, searched in the request path (no query)
  FaultAction action = FaultAction::kServiceUnavailable;
  uint64_t body_bytes = 0;
  int retry_after_seconds = 1;
  std::string location;
  int redirect_status = 307;
  // Which matching requests get the fault: the first `first_n` (0 = every one), or, when
  // every_kth > 0, the K-th, 2K-th, ... instead.
  int first_n = 1;
  int every_kth = 0;
};

// A request as the proxy received it.
struct ProxiedRequest {
  std::string method;
  std::string target;  // path and query
  HttpHeaders headers;  // names as sent
  int fault_rule = -1;  // index of the rule that fired, -1 = forwarded
  // First value of a header (name matched case-insensitively).
  std::optional<std::string> Header(std::string_view name) const;
};

class FaultProxy {
 public:
  // Listens on 127.0.0.1:<ephemeral>; `upstream_url` is "http://host:port" (no path).
  static Result<std::unique_ptr<FaultProxy>> Start(std::string upstream_url, std::vector<FaultRule> rules = {});
  ~FaultProxy();
  FaultProxy(const FaultProxy&) = delete;
  FaultProxy& operator=(const FaultProxy&) = delete;

  // "http://127.0.0.1:<port>", "127.0.0.1:<port>".
  std::string url() const;
  std::string host() const;
  int port() const { return port_; }
  const std::string& upstream_url() const { return upstream_; }

  // Replaces the rules and resets their counters.
  void SetRules(std::vector<FaultRule> rules);
  // Requests that matched rule `index` (method and path), and how many got its fault.
  int matched(size_t index) const;
  int fired(size_t index) const;

  // TCP connections accepted and requests received so far.
  int connections() const { return connections_.load(); }
  int request_count() const;
  std::vector<ProxiedRequest> requests() const;
  // Response body bytes sent to clients for requests whose path starts with `path_prefix`
  // (counted as they are handed to the socket, so never behind what a client received)
  // (what a test compares to tell a resumed download from a restarted one).
  uint64_t BodyBytesForwarded(std::string_view path_prefix) const;

 private:
  struct CompiledRule {
    FaultRule rule;
    std::regex path;
    int matched = 0;
    int fired = 0;
  };
  FaultProxy(std::string upstream, UniqueFd listener, UniqueFd wake_read, UniqueFd wake_write, int port);
  void AcceptLoop();
  void ServeConnection(int fd);
  // Records the request and returns the rule to apply (nullopt = forward as is).
  std::optional<FaultRule> Match(const ProxiedRequest& request, int* rule_index);
  void AddBodyBytes(const std::string& path, uint64_t bytes);
  bool stopping() const { return stopping_.load(); }

  friend class ProxyConnection;

  std::string upstream_;
  UniqueFd listener_;
  UniqueFd wake_read_;  // readable once the destructor wrote to wake_write_
  UniqueFd wake_write_;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> connections_{0};

  mutable std::mutex mutex_;
  std::vector<CompiledRule> rules_;
  std::vector<ProxiedRequest> requests_;
  std::map<std::string, uint64_t> body_bytes_;  // path -> bytes sent
  std::vector<std::thread> connection_threads_;

  std::thread accept_thread_;  // declared last: started after everything above exists
};

}  // namespace strata::test_support
