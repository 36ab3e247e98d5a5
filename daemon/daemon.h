// `strata serve`: one store root served over a unix socket by a synchronous gRPC server —
// containerd's snapshots.v1 and content.v1, strata.v1.Images, grpc.health.v1.
//
// The daemon accepts connections itself so it can read each peer's credentials
// (PeerGate) before gRPC sees the connection. While it runs it holds the store's lock and
// records its socket in <root>/daemon.json, where the CLI finds it.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/service_type.h>

#include "base/error.h"
#include "base/file.h"
#include "daemon/peer_gate.h"
#include "daemon/snapshotters.h"
#include "store/store.h"

namespace strata::daemon {

inline constexpr std::string_view kDefaultSocket = "/run/strata/strata.sock";

struct DaemonOptions {
  std::filesystem::path root;
  std::filesystem::path socket_path = std::string(kDefaultSocket);
  // A listening unix socket handed over by systemd (LISTEN_FDS); -1 = bind socket_path.
  int inherited_listener = -1;
  // Groups whose members may call besides root; the socket is made group-owned by the
  // first (mode 0660 either way).
  std::set<gid_t> allowed_groups;
  std::vector<PersonalitySpec> snapshotters = {PersonalitySpec{.name = "strata"}};
  // How long Shutdown lets in-flight calls run before cancelling them.
  std::chrono::seconds shutdown_grace{30};
};

class Daemon {
 public:
  // Opens the store, binds the socket and starts serving. FailedPrecondition when the
  // store is in use or another server answers on the socket.
  static Result<std::unique_ptr<Daemon>> Start(DaemonOptions options);
  ~Daemon();

  // Stops accepting, lets in-flight calls finish (up to the grace period), removes the
  // socket and daemon.json. Idempotent.
  void Shutdown();

  const std::filesystem::path& socket_path() const { return options_.socket_path; }
  // The store it serves (thread-safe), for servers running beside it (the registry mirror).
  store::Store& store() { return *store_; }

 private:
  explicit Daemon(DaemonOptions options) : options_(std::move(options)) {}
  Status Listen();
  void AcceptLoop();

  DaemonOptions options_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<Snapshotters> snapshotters_;
  std::unique_ptr<snapshotter::OverlaySnapshotter> image_snapshots_;  // the Images service's
  std::unique_ptr<PeerGate> gate_;
  std::vector<std::unique_ptr<grpc::Service>> services_;
  std::unique_ptr<grpc::Server> server_;
  UniqueFd listener_;
  bool owns_socket_file_ = false;
  UniqueFd stop_event_;
  std::thread acceptor_;
  std::atomic<bool> shut_down_{false};
};

// Where the CLI finds a daemon serving `root`: the socket of <root>/daemon.json when the
// daemon that wrote it is alive; nullopt otherwise.
std::optional<std::filesystem::path> FindDaemonSocket(const std::filesystem::path& root);

}  // namespace strata::daemon
