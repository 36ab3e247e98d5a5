#include "tests/support/loopback_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace strata::test_support {

Result<LoopbackListener> ListenOnLoopback(std::string_view who) {
  UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!listener) return Fail(ErrorCode::kInternal, "{}: socket: {}", who, std::strerror(errno));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      ::listen(listener.get(), 64) != 0) {
    return Fail(ErrorCode::kUnavailable, "{}: bind/listen 127.0.0.1:0: {}", who, std::strerror(errno));
  }
  socklen_t length = sizeof(address);
  if (::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    return Fail(ErrorCode::kInternal, "{}: getsockname: {}", who, std::strerror(errno));
  }
  return LoopbackListener{std::move(listener), ntohs(address.sin_port)};
}

std::optional<UniqueFd> AcceptUnlessWoken(int listener, int wake_fd) {
  while (true) {
    pollfd fds[2] = {{.fd = listener, .events = POLLIN, .revents = 0}, {.fd = wake_fd, .events = POLLIN, .revents = 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return std::nullopt;
    }
    if (fds[1].revents != 0) return std::nullopt;
    if (fds[0].revents == 0) continue;
    return UniqueFd(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
  }
}

std::string ReadRequestHead(int fd) {
  std::string request;
  char buffer[4096];
  while (request.find("\r\n\r\n") == std::string::npos) {
    ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) break;
    request.append(buffer, static_cast<size_t>(n));
  }
  return request;
}

Result<std::unique_ptr<OneShotHttpServer>> OneShotHttpServer::Start(std::string_view who, Handler handler) {
  STRATA_ASSIGN_OR_RETURN(LoopbackListener listener, ListenOnLoopback(who));
  int wake[2];
  if (::pipe2(wake, O_CLOEXEC) != 0) return Fail(ErrorCode::kInternal, "{}: pipe: {}", who, std::strerror(errno));
  return std::unique_ptr<OneShotHttpServer>(
      new OneShotHttpServer(std::move(listener), UniqueFd(wake[0]), UniqueFd(wake[1]), std::move(handler)));
}

OneShotHttpServer::OneShotHttpServer(LoopbackListener listener, UniqueFd wake_read, UniqueFd wake_write,
                                     Handler handler)
    : listener_(std::move(listener.fd)),
      wake_read_(std::move(wake_read)),
      wake_write_(std::move(wake_write)),
      port_(listener.port),
      handler_(std::move(handler)),
      thread_([this] { Serve(); }) {}

OneShotHttpServer::~OneShotHttpServer() {
  char stop = 1;
  (void)!::write(wake_write_.get(), &stop, 1);
  thread_.join();
}

void OneShotHttpServer::Serve() {
  while (std::optional<UniqueFd> connection = AcceptUnlessWoken(listener_.get(), wake_read_.get())) {
    if (!*connection) continue;
    std::string answer = handler_(ReadRequestHead(connection->get()));
    (void)!::send(connection->get(), answer.data(), answer.size(), MSG_NOSIGNAL);
  }
}

std::string_view HttpReasonPhrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 429: return "Too Many Requests";
    case 503: return "Service Unavailable";
    default: return "Status";
  }
}

}  // namespace strata::test_support
