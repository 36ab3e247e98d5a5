#include "tests/support/containerd_fixture.h"

#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "base/file.h"

namespace strata::test_support {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr const char* kContainerd = "/usr/bin/containerd";
constexpr const char* kCtr = "/usr/bin/ctr";

// Pids of containerd shims serving the containerd on `address` (they outlive containerd).
std::vector<pid_t> ShimsOf(const fs::path& address) {
  std::vector<pid_t> pids;
  std::error_code ec;
  for (auto it = fs::directory_iterator("/proc", ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(it->path() / "cmdline", std::ios::binary);
    std::vector<std::string> argv;
    for (std::string arg; std::getline(in, arg, '\0');) argv.push_back(arg);
    if (argv.empty() || fs::path(argv[0]).filename().string().find("containerd-shim") == std::string::npos) continue;
    for (size_t i = 0; i + 1 < argv.size(); ++i) {
      if (argv[i] == "-address" && argv[i + 1] == address.string()) pids.push_back(std::stoi(name));
    }
  }
  return pids;
}

}  // namespace

bool UnixSocketAccepts(const fs::path& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::snprintf(address.sun_path, sizeof(address.sun_path), "%s", path.c_str());
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  ::close(fd);
  return ok;
}

std::string MissingContainerdTool() {
  for (const char* tool : {kContainerd, kCtr, "/usr/sbin/runc", "/usr/bin/docker-registry"}) {
    if (::access(tool, X_OK) != 0) return tool;
  }
  return "";
}

Result<std::unique_ptr<ContainerdFixture>> ContainerdFixture::Start(const fs::path& dir, const fs::path& strata_socket,
                                                                    std::string ctr_namespace,
                                                                    ContainerdOptions options) {
  std::unique_ptr<ContainerdFixture> fixture(new ContainerdFixture(dir, std::move(ctr_namespace)));
  // containerd-shim-runc-v2 puts its socket under /run/containerd/s whatever the config
  // says (hard-coded in 1.6); note what exists so that teardown removes only what we made.
  fixture->run_containerd_existed_ = fs::exists("/run/containerd");
  fixture->run_containerd_s_existed_ = fs::exists("/run/containerd/s");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Fail(ErrorCode::kInternal, "create {}: {}", dir.string(), ec.message());
  std::vector<std::string> disabled = {
      "io.containerd.grpc.v1.cri",              // CNI, /etc, /opt, the sandbox image
      "io.containerd.internal.v1.opt",          // /opt/containerd
      "io.containerd.snapshotter.v1.aufs",      "io.containerd.snapshotter.v1.btrfs",
      "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
      "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing",
  };
  if (options.content_proxy) disabled.push_back("io.containerd.content.v1.content");
  std::string config = fmt::format(
      "version = 2\n"
      "root = \"{0}/root\"\n"
      "state = \"{0}/state\"\n"
      "disabled_plugins = [{1}]\n"
      "[grpc]\n  address = \"{2}\"\n"
      "[ttrpc]\n  address = \"{2}.ttrpc\"\n"
      "[debug]\n  level = \"{3}\"\n",
      dir.string(), fmt::format("\"{}\"", fmt::join(disabled, "\", \"")), fixture->socket().string(),
      options.log_level);
  for (const std::string& name : options.snapshot_proxies) {
    config += fmt::format("[proxy_plugins.\"{}\"]\n  type = \"snapshot\"\n  address = \"{}\"\n", name,
                          strata_socket.string());
  }
  if (options.content_proxy) {
    // Any name works: with the built-in store disabled, the proxy is the only content plugin
    // the metadata plugin can get (services/server/server.go, ic.Get(ContentPlugin)).
    config += fmt::format("[proxy_plugins.strata-content]\n  type = \"content\"\n  address = \"{}\"\n",
                          strata_socket.string());
  }
  STRATA_RETURN_IF_ERROR(AtomicWriteFile(dir / "config.toml", config));
  ChildOptions child_options{.argv = {kContainerd, "--config", (dir / "config.toml").string()},
                             .log_path = dir / "containerd.log"};
  STRATA_ASSIGN_OR_RETURN(fixture->child_, Child::Start(std::move(child_options)));
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  for (;;) {
    if (!fixture->child_.Running()) {
      return Fail(ErrorCode::kUnavailable, "containerd exited:\n{}", fixture->LogTail(4096));
    }
    if (UnixSocketAccepts(fixture->socket()) && fixture->Ctr({"version"}).code == 0) break;
    if (Clock::now() > deadline) {
      return Fail(ErrorCode::kUnavailable, "containerd did not come up:\n{}", fixture->LogTail(4096));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return fixture;
}

ContainerdFixture::~ContainerdFixture() {
  if (child_.pid() >= 0 && child_.Running()) {
    // Tasks first (a failed step may leave one running): kill and delete, so the shims exit.
    if (CtrResult tasks = Ctr({"tasks", "ls", "-q"}); tasks.code == 0) {
      std::istringstream in(tasks.output);
      for (std::string id; std::getline(in, id);) {
        if (!id.empty()) Ctr({"tasks", "rm", "-f", id});
      }
    }
  }
  child_.Stop(std::chrono::seconds(10));
  for (pid_t shim : ShimsOf(socket())) {
    std::fprintf(stderr, "killing leftover shim %d\n", shim);
    ::kill(shim, SIGKILL);
  }
  // Empty cgroups of our namespace (rmdir fails on a non-empty one: nothing else is touched).
  if (!namespace_.empty()) {
    std::error_code ec;
    for (auto it = fs::directory_iterator("/sys/fs/cgroup", ec); !ec && it != fs::directory_iterator();
         it.increment(ec)) {
      ::rmdir((it->path() / namespace_).c_str());
    }
    ::rmdir((fs::path("/sys/fs/cgroup") / namespace_).c_str());
  }
  if (!run_containerd_s_existed_) ::rmdir("/run/containerd/s");
  if (!run_containerd_existed_) ::rmdir("/run/containerd");
}

CtrResult ContainerdFixture::Run(std::vector<std::string> argv, std::chrono::milliseconds timeout) const {
  CtrResult run;
  const auto start = Clock::now();
  auto code = RunCommand(argv, &run.output, timeout);
  run.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  run.code = code.value_or(-1);
  if (!code) run.output += "\n[test] " + code.error().ToString();
  return run;
}

CtrResult ContainerdFixture::Ctr(const std::vector<std::string>& args, std::chrono::milliseconds timeout) const {
  std::vector<std::string> argv = {kCtr, "--address", socket().string(), "--namespace", namespace_};
  argv.insert(argv.end(), args.begin(), args.end());
  return Run(std::move(argv), timeout);
}

CtrResult ContainerdFixture::CtrToFile(const std::vector<std::string>& args, const fs::path& file) const {
  std::vector<std::string> argv = {"/bin/sh", "-c", "exec \"$0\" \"$@\" > " + file.string(), kCtr,
                                   "--address", socket().string(), "--namespace", namespace_};
  argv.insert(argv.end(), args.begin(), args.end());
  return Run(std::move(argv), std::chrono::seconds(120));
}

}  // namespace strata::test_support
