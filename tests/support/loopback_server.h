// Pieces shared by the fixtures' small HTTP servers (token server, fault proxy).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "base/error.h"
#include "base/file.h"

namespace strata::test_support {

struct LoopbackListener {
  UniqueFd fd;
  int port = 0;
};

// A listening TCP socket on 127.0.0.1 with a kernel-chosen port, kept open (no window for
// another process to take the port). `who` names the server in errors.
Result<LoopbackListener> ListenOnLoopback(std::string_view who);

// Waits for a connection on `listener` or for `wake_fd` to become readable (the server is
// stopping). nullopt = stop serving; otherwise the accepted connection, which is an empty
// UniqueFd when the accept itself failed (try again).
std::optional<UniqueFd> AcceptUnlessWoken(int listener, int wake_fd);

// Reads from the connection `fd` until the received bytes contain the blank line ending an
// HTTP request head, or until EOF or an error; returns everything read (which may include
// the start of a body, or be a partial head). Blocks without a timeout: for fixtures whose
// clients always send a whole head.
std::string ReadRequestHead(int fd);

// An HTTP server on 127.0.0.1 for tests that need a hand-written registry front: one
// thread, one request per connection. For each connection it reads the request head
// (ReadRequestHead), sends what `handler` returns for it (a whole response, status line to
// body) and closes. The handler runs on the server thread. The destructor stops the thread
// and joins it, so whatever the handler uses must outlive this object.
class OneShotHttpServer {
 public:
  using Handler = std::function<std::string(const std::string& request_head)>;

  static Result<std::unique_ptr<OneShotHttpServer>> Start(std::string_view who, Handler handler);
  ~OneShotHttpServer();
  OneShotHttpServer(const OneShotHttpServer&) = delete;
  OneShotHttpServer& operator=(const OneShotHttpServer&) = delete;

  int port() const { return port_; }

 private:
  OneShotHttpServer(LoopbackListener listener, UniqueFd wake_read, UniqueFd wake_write, Handler handler);
  void Serve();

  UniqueFd listener_;
  UniqueFd wake_read_;
  UniqueFd wake_write_;
  int port_ = 0;
  Handler handler_;
  std::thread thread_;  // last: starts after the members it uses
};

// "OK", "Not Found", ... for the statuses the fixtures send; "Status" otherwise.
std::string_view HttpReasonPhrase(int status);

}  // namespace strata::test_support
