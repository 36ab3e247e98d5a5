// `strata serve`: the local RPC service (containerd's snapshots.v1 and content.v1, strata's
// image API) on a unix socket, until SIGTERM or SIGINT.
#include <grp.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "cli/app.h"
#include "cli/registry_mirror.h"
#include "daemon/daemon.h"
#include "store/store.h"

namespace strata::cli {
namespace {

gid_t GroupIdOrDie(const std::string& text) {
  if (!text.empty() && text.find_first_not_of("0123456789") == std::string::npos) {
    return static_cast<gid_t>(std::stoul(text));
  }
  struct group* entry = ::getgrnam(text.c_str());
  if (entry == nullptr) Die(Error(ErrorCode::kInvalidArgument, fmt::format("--group {}: no such group", text)));
  return entry->gr_gid;
}

// The listening socket systemd passes (socket activation), or -1.
int InheritedListener() {
  const char* pid = std::getenv("LISTEN_PID");
  const char* fds = std::getenv("LISTEN_FDS");
  if (pid == nullptr || fds == nullptr || std::atoi(pid) != ::getpid() || std::atoi(fds) < 1) return -1;
  return 3;  // SD_LISTEN_FDS_START
}

}  // namespace

void AddServeCommand(CLI::App& app, const GlobalOptions& options) {
  auto* cmd = app.add_subcommand(
      "serve",
      "Serve the store over a unix socket: containerd's snapshots.v1 and content.v1 (use strata as a containerd "
      "proxy plugin), strata's image API and grpc.health.v1. Stops on SIGTERM: calls in flight finish, the socket "
      "goes. Only root and members of --group may call. While it runs, `strata pull`, `push`, `images`, `tag`, "
      "`rmi`, `mount`, `umount` and `gc` on the same --root go through it; other commands that need the store "
      "refuse until it stops. With --registry it also serves the store as a read-only registry mirror over HTTP "
      "(with --no-socket: only that, holding the store itself).");
  struct Flags {
    std::string socket = std::string(daemon::kDefaultSocket);
    std::vector<std::string> groups;
    std::vector<std::string> snapshotters;
    int grace_seconds = 30;
    bool no_socket = false;
    MirrorFlags mirror;
  };
  auto flags = std::make_shared<Flags>();
  cmd->add_option("--socket", flags->socket, "Unix socket to listen on (mode 0660)")->capture_default_str();
  cmd->add_option("--group", flags->groups, "Group (name or gid) whose members may call besides root; repeatable");
  cmd->add_option("--snapshotter", flags->snapshotters,
                  "Snapshotter personality NAME[=DRIVER] served under containerd's proxy plugin name NAME "
                  "(driver: overlay; fsfilter for strata's FUSE union view; vm for VM runtimes: per-layer EROFS "
                  "images + a scratch ext4 disk per container, e.g. strata-vm=vm); repeatable; default: strata");
  cmd->add_option("--shutdown-grace", flags->grace_seconds, "Seconds calls in flight get to finish on SIGTERM")
      ->capture_default_str();
  cmd->add_flag("--no-socket", flags->no_socket, "Serve no unix socket (only --registry)");
  AddMirrorFlags(cmd, flags->mirror);
  cmd->callback([&options, flags] {
    if (flags->no_socket && flags->mirror.address.empty()) {
      Die(Error(ErrorCode::kInvalidArgument, "--no-socket leaves nothing to serve without --registry"));
    }
    daemon::DaemonOptions daemon_options;
    daemon_options.root = options.root;
    daemon_options.socket_path = flags->socket;
    daemon_options.inherited_listener = InheritedListener();
    for (const auto& group : flags->groups) daemon_options.allowed_groups.insert(GroupIdOrDie(group));
    if (!flags->snapshotters.empty()) {
      daemon_options.snapshotters.clear();
      for (const auto& spec : flags->snapshotters) {
        daemon_options.snapshotters.push_back(OrDie(daemon::ParsePersonalitySpec(spec)));
      }
    }
    daemon_options.shutdown_grace = std::chrono::seconds(flags->grace_seconds);

    // Block the stop signals before any thread starts, so every thread inherits the mask
    // and only sigwait below receives them.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    std::unique_ptr<daemon::Daemon> server;
    std::unique_ptr<store::Store> own_store;  // --no-socket: the mirror's store
    if (!flags->no_socket) {
      server = OrDie(daemon::Daemon::Start(std::move(daemon_options)));
      fmt::print(stderr, "strata: serving {} on {}\n", options.root.string(), server->socket_path().string());
    } else {
      own_store = OpenStoreOrDie(options);
    }
    std::unique_ptr<RunningMirror> mirror;
    if (!flags->mirror.address.empty()) {
      mirror = StartMirrorOrDie(flags->mirror, server ? server->store() : *own_store);
      fmt::print(stderr, "strata: serving {} as a registry on http://{}\n", options.root.string(), mirror->address());
    }
    int signal_number = 0;
    sigwait(&stop_signals, &signal_number);
    spdlog::info("serve: {} received, shutting down", strsignal(signal_number));
    mirror.reset();
    if (server) server->Shutdown();
  });
}

}  // namespace strata::cli
