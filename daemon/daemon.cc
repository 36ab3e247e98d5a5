#include "daemon/daemon.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/server_posix.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "daemon/content_service.h"
#include "daemon/images_service.h"
#include "daemon/snapshots_service.h"

namespace strata::daemon {

namespace fs = std::filesystem;

namespace {

// containerd's proxy clients allow 16 MiB messages; so do we.
constexpr int kMaxMessageBytes = 16 << 20;

fs::path DaemonRecordPath(const fs::path& root) { return root / "daemon.json"; }

Result<sockaddr_un> UnixAddress(const fs::path& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  const std::string text = path.string();
  if (text.size() >= sizeof(address.sun_path)) {
    return Fail(ErrorCode::kInvalidArgument, "socket path {} is longer than {} bytes", text, sizeof(address.sun_path) - 1);
  }
  std::memcpy(address.sun_path, text.c_str(), text.size() + 1);
  return address;
}

// Whether something accepts connections on the unix socket at `path`.
bool SocketAnswers(const fs::path& path) {
  auto address = UnixAddress(path);
  if (!address) return false;
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return false;
  return ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&*address), sizeof(*address)) == 0;
}

}  // namespace

Result<std::unique_ptr<Daemon>> Daemon::Start(DaemonOptions options) {
  std::unique_ptr<Daemon> daemon(new Daemon(std::move(options)));
  DaemonOptions& opts = daemon->options_;
  STRATA_ASSIGN_OR_RETURN(daemon->store_, store::Store::Open(opts.root));
  STRATA_ASSIGN_OR_RETURN(daemon->snapshotters_, Snapshotters::Open(opts.root, daemon->store_->db(), opts.snapshotters));
  daemon->gate_ = std::make_unique<PeerGate>(opts.allowed_groups);
  STRATA_RETURN_IF_ERROR(daemon->Listen());

  daemon->services_.push_back(std::make_unique<SnapshotsService>(*daemon->snapshotters_, *daemon->gate_));
  daemon->services_.push_back(std::make_unique<ContentService>(daemon->store_->content(), *daemon->gate_));
  // strata.v1.Images works on the CLI's own snapshots ("overlayfs"), not containerd's.
  STRATA_ASSIGN_OR_RETURN(daemon->image_snapshots_,
                          snapshotter::OverlaySnapshotter::Open(daemon->store_->root(), daemon->store_->db()));
  daemon->services_.push_back(
      std::make_unique<ImagesService>(*daemon->store_, *daemon->image_snapshots_, *daemon->gate_));

  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.SetMaxSendMessageSize(kMaxMessageBytes);
  for (auto& service : daemon->services_) builder.RegisterService(service.get());
  daemon->server_ = builder.BuildAndStart();
  if (!daemon->server_) return Fail(ErrorCode::kInternal, "gRPC server did not start");

  daemon->stop_event_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!daemon->stop_event_) return ErrnoFail(errno, "eventfd");
  // The record is written before the first accept: whoever gets an answer on the socket can
  // already find it (connections wait in the listen backlog meanwhile).
  nlohmann::json record = {{"socket", fs::absolute(opts.socket_path).string()}, {"pid", ::getpid()}};
  STRATA_RETURN_IF_ERROR(AtomicWriteFile(DaemonRecordPath(opts.root), record.dump() + "\n", 0644));
  daemon->acceptor_ = std::thread([d = daemon.get()] { d->AcceptLoop(); });
  spdlog::info("serving {} on {} (snapshotters: {})", opts.root.string(), opts.socket_path.string(),
               fmt::join(daemon->snapshotters_->names(), ", "));
  return daemon;
}

Status Daemon::Listen() {
  if (options_.inherited_listener >= 0) {
    // systemd owns the socket file; we only learn its path (for daemon.json).
    listener_ = UniqueFd(options_.inherited_listener);
    sockaddr_un address{};
    socklen_t length = sizeof(address);
    if (::getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&address), &length) != 0) {
      return ErrnoFail(errno, "getsockname of the inherited listener");
    }
    if (address.sun_family != AF_UNIX || address.sun_path[0] == '\0') {
      return Fail(ErrorCode::kInvalidArgument, "the inherited listener is not a unix socket with a path");
    }
    options_.socket_path = address.sun_path;
    return {};
  }
  const fs::path& path = options_.socket_path;
  STRATA_ASSIGN_OR_RETURN(sockaddr_un address, UnixAddress(path));
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  if (ec) return Fail(ErrorCode::kInternal, "create {}: {}", path.parent_path().string(), ec.message());
  if (fs::exists(fs::symlink_status(path))) {
    if (SocketAnswers(path)) {
      return Fail(ErrorCode::kFailedPrecondition, "another server answers on {}", path.string());
    }
    fs::remove(path, ec);  // a stale socket from a daemon that died
  }
  listener_ = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!listener_) return ErrnoFail(errno, "socket", path);
  // Created 0660 from the start (umask), so no moment exists when others could connect.
  const mode_t old_umask = ::umask(0117);
  const int bound = ::bind(listener_.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address));
  const int bind_errno = errno;
  ::umask(old_umask);
  if (bound != 0) return ErrnoFail(bind_errno, "bind", path);
  owns_socket_file_ = true;
  if (!options_.allowed_groups.empty() && ::chown(path.c_str(), 0, *options_.allowed_groups.begin()) != 0) {
    return ErrnoFail(errno, "chown", path);
  }
  if (::listen(listener_.get(), 128) != 0) return ErrnoFail(errno, "listen", path);
  return {};
}

void Daemon::AcceptLoop() {
  // Signals are for the main thread (strata serve waits for SIGTERM there).
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);
  for (;;) {
    pollfd fds[2] = {{listener_.get(), POLLIN, 0}, {stop_event_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("serve: poll: {}", std::strerror(errno));
      return;
    }
    if (fds[1].revents != 0) return;
    if ((fds[0].revents & POLLIN) == 0) continue;
    const int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
        spdlog::warn("serve: accept: {}", std::strerror(errno));
      }
      continue;
    }
    auto credentials = ReadPeerCredentials(fd);
    if (!credentials) {
      spdlog::warn("serve: {}", credentials.error().message());
      ::close(fd);
      continue;
    }
    spdlog::debug("serve: connection from pid {} uid {}", credentials->pid, credentials->uid);
    gate_->Admit(fd, std::move(*credentials));
    grpc::AddInsecureChannelFromFd(server_.get(), fd);  // gRPC owns the fd from here
  }
}

void Daemon::Shutdown() {
  if (shut_down_.exchange(true)) return;
  if (acceptor_.joinable()) {
    const uint64_t one = 1;
    (void)!::write(stop_event_.get(), &one, sizeof(one));
    acceptor_.join();
  }
  listener_.reset();
  std::error_code ec;
  if (owns_socket_file_) fs::remove(options_.socket_path, ec);
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() + options_.shutdown_grace);
    server_->Wait();
  }
  if (store_) fs::remove(DaemonRecordPath(options_.root), ec);
  spdlog::info("stopped serving {}", options_.root.string());
}

Daemon::~Daemon() { Shutdown(); }

std::optional<fs::path> FindDaemonSocket(const fs::path& root) {
  auto text = ReadFile(DaemonRecordPath(root));
  if (!text) return std::nullopt;
  auto record = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (!record.is_object() || !record["socket"].is_string() || !record["pid"].is_number_integer()) return std::nullopt;
  const pid_t pid = record["pid"].get<pid_t>();
  if (pid <= 0 || (::kill(pid, 0) != 0 && errno == ESRCH)) return std::nullopt;
  fs::path socket = record["socket"].get<std::string>();
  if (!SocketAnswers(socket)) return std::nullopt;
  return socket;
}

}  // namespace strata::daemon
