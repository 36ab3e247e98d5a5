// strata-fsfilter: mounts a union view (see fsfilter/mount_options.h for the command line).
// Without -f it daemonises only once the mount is in place: the parent exits 0 when the
// file system is mounted and non-zero, with the child's error, when it is not. The daemon
// exits when the file system is unmounted.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "fsfilter/fuse_frontend.h"
#include "fsfilter/mount_options.h"
#include "fsfilter/union_filesystem.h"
#include "fsfilter/windows_view.h"

namespace {

using strata::fsfilter::CommandLine;

constexpr char kReady[] = "ready";

int Fatal(const std::string& message) {
  std::fprintf(stderr, "strata-fsfilter: %s\n", message.c_str());
  return 1;
}

// Runs in the process that will serve: opens the layers, mounts, reports on `status_fd`
// (-1 in the foreground), then serves until unmounted.
int MountAndServe(const CommandLine& line, int status_fd) {
  auto report = [&](const std::string& message) {
    if (status_fd >= 0) {
      (void)!::write(status_fd, message.data(), message.size());
      ::close(status_fd);
    } else if (message != kReady) {
      std::fprintf(stderr, "strata-fsfilter: %s\n", message.c_str());
    }
  };
  auto fs = line.windows_layers ? strata::fsfilter::OpenWindowsLayerView(line.layers.lower_dirs)
                                : strata::fsfilter::UnionFilesystem::Open(line.layers);
  if (!fs) {
    report(fs.error().message());
    return 1;
  }
  auto server = strata::fsfilter::FuseServer::Mount(**fs, line.mount);
  if (!server) {
    report(server.error().message());
    return 1;
  }
  if (status_fd >= 0) {
    (void)!::chdir("/");
    const int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null_fd >= 0) {
      ::dup2(null_fd, STDIN_FILENO);
      ::dup2(null_fd, STDOUT_FILENO);
      ::dup2(null_fd, STDERR_FILENO);
      ::close(null_fd);
    }
  }
  report(kReady);
  if (auto served = (*server)->Serve(); !served) {
    std::fprintf(stderr, "strata-fsfilter: %s\n", served.error().message().c_str());
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  auto line = strata::fsfilter::ParseCommandLine(args);
  if (!line) return Fatal(line.error().message() + "\n" + strata::fsfilter::UsageText());
  if (line->help) {
    std::fputs(strata::fsfilter::UsageText().c_str(), stdout);
    return 0;
  }
  if (line->version) {
    std::puts("strata-fsfilter 0.1.0");
    return 0;
  }
  // Resolve relative layer paths before a daemon changes directory.
  auto absolute = [](std::filesystem::path& path) {
    if (!path.empty()) {
      std::error_code ec;
      auto abs = std::filesystem::absolute(path, ec);
      if (!ec) path = abs;
    }
  };
  for (auto& dir : line->layers.lower_dirs) absolute(dir);
  absolute(line->layers.upper_dir);
  absolute(line->layers.work_dir);
  absolute(line->mount.mountpoint);

  if (line->foreground) return MountAndServe(*line, -1);

  int status_pipe[2];
  if (::pipe2(status_pipe, O_CLOEXEC) != 0) return Fatal("pipe: " + std::string(std::strerror(errno)));
  const pid_t pid = ::fork();
  if (pid < 0) return Fatal("fork: " + std::string(std::strerror(errno)));
  if (pid == 0) {
    ::close(status_pipe[0]);
    ::setsid();
    ::_exit(MountAndServe(*line, status_pipe[1]));
  }
  ::close(status_pipe[1]);
  std::string status;
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::read(status_pipe[0], buffer, sizeof(buffer));
    if (n > 0) {
      status.append(buffer, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    break;
  }
  if (status == kReady) return 0;
  if (status.empty()) status = "the mount process exited before the file system was mounted";
  return Fatal(status);
}
