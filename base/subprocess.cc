#include "base/subprocess.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <climits>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "base/file.h"

extern char** environ;

namespace strata {

namespace fs = std::filesystem;

namespace {

struct Pipe {
  UniqueFd read;
  UniqueFd write;
};

Result<Pipe> MakePipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return ErrnoFail(errno, "pipe2");
  return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

// Writes `data` (at most PIPE_BUF, so one write never blocks) to a pipe whose reader may
// already be gone, without letting SIGPIPE kill the process: the signal is blocked for this
// thread and a SIGPIPE we caused is consumed before unblocking.
void WriteIgnoringSigpipe(int fd, std::string_view data) {
  sigset_t pipe_set, old_set, pending;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
  sigpending(&pending);
  const bool was_pending = sigismember(&pending, SIGPIPE) == 1;
  ssize_t n;
  do {
    n = ::write(fd, data.data(), data.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0 && errno == EPIPE && !was_pending) {
    struct timespec zero = {0, 0};
    while (sigtimedwait(&pipe_set, nullptr, &zero) < 0 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &old_set, nullptr);
}

// Owns a spawned program (the leader of its own process group): unless Reap() ran, kills
// the group and reaps the leader. The leader stays a zombie until reaped, so its pid (the
// group id) cannot be reused by an unrelated process before the group is killed.
class SpawnedProgram {
 public:
  explicit SpawnedProgram(pid_t pid) : pid_(pid) {}
  ~SpawnedProgram() {
    if (pid_ > 0) {
      ::kill(-pid_, SIGKILL);
      Reap();
    }
  }
  SpawnedProgram(const SpawnedProgram&) = delete;
  SpawnedProgram& operator=(const SpawnedProgram&) = delete;

  pid_t pid() const { return pid_; }

  // REQUIRES: the leader has exited (or was killed). Returns its wait status.
  int Reap() {
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    return status;
  }

 private:
  pid_t pid_;
};

// RAII for posix_spawn attribute objects.
struct SpawnSetup {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  SpawnSetup() {
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
  }
  ~SpawnSetup() {
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
};

}  // namespace

std::optional<fs::path> FindInPath(std::string_view program) {
  const char* path_env = std::getenv("PATH");
  std::string_view path = path_env != nullptr ? path_env : "/usr/local/bin:/usr/bin:/bin";
  while (true) {
    const size_t colon = path.find(':');
    const std::string_view dir = path.substr(0, colon);
    fs::path candidate = fs::path(dir.empty() ? "." : std::string(dir)) / program;
    struct stat st;
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
    if (colon == std::string_view::npos) break;
    path.remove_prefix(colon + 1);
  }
  return std::nullopt;
}

bool ProgramOutput::Succeeded() const { return WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0; }

std::string ProgramOutput::HowItEnded() const {
  if (WIFEXITED(wait_status)) return fmt::format("exit status {}", WEXITSTATUS(wait_status));
  if (WIFSIGNALED(wait_status)) return fmt::format("signal {}", WTERMSIG(wait_status));
  return fmt::format("wait status {:#x}", wait_status);
}

Result<ProgramOutput> RunProgram(const fs::path& binary, const std::vector<std::string>& argv,
                                 const RunOptions& options) {
  const std::string name = argv.empty() ? binary.filename().string() : argv.front();
  if (options.input.size() > PIPE_BUF) {
    return Fail(ErrorCode::kInvalidArgument, "input for {} is longer than {} bytes", name, PIPE_BUF);
  }
  STRATA_ASSIGN_OR_RETURN(Pipe in, MakePipe());
  STRATA_ASSIGN_OR_RETURN(Pipe out, MakePipe());
  STRATA_ASSIGN_OR_RETURN(Pipe err, MakePipe());

  SpawnSetup setup;
  // dup2 onto 0/1/2 clears close-on-exec there; every other fd of ours is O_CLOEXEC.
  posix_spawn_file_actions_adddup2(&setup.actions, in.read.get(), STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&setup.actions, out.write.get(), STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&setup.actions, err.write.get(), STDERR_FILENO);
  // Own process group (so a timeout kills what it started too), default signal handling
  // and an empty mask whatever the caller's thread has.
  sigset_t empty, defaults;
  sigemptyset(&empty);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setflags(&setup.attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&setup.attr, 0);
  posix_spawnattr_setsigmask(&setup.attr, &empty);
  posix_spawnattr_setsigdefault(&setup.attr, &defaults);

  std::vector<std::string> args = argv.empty() ? std::vector<std::string>{name} : argv;
  std::vector<char*> c_argv;
  for (std::string& arg : args) c_argv.push_back(arg.data());
  c_argv.push_back(nullptr);
  pid_t pid = -1;
  if (int rc = posix_spawn(&pid, binary.c_str(), &setup.actions, &setup.attr, c_argv.data(), environ); rc != 0) {
    return Fail(ErrorCode::kInternal, "cannot run {} ({}): {}", name, binary.string(), std::strerror(rc));
  }
  SpawnedProgram program(pid);
  // Readable once the program has exited (Linux >= 5.3).
  UniqueFd exited(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!exited) return ErrnoFail(errno, fmt::format("pidfd_open of {}", name));
  in.read.reset();
  out.write.reset();
  err.write.reset();

  if (!options.input.empty()) WriteIgnoringSigpipe(in.write.get(), options.input);
  in.write.reset();  // EOF: the input is complete

  ProgramOutput result;
  const auto deadline = std::chrono::steady_clock::now() + options.timeout;
  std::array<pollfd, 3> fds = {pollfd{out.read.get(), POLLIN, 0}, pollfd{err.read.get(), POLLIN, 0},
                               pollfd{exited.get(), POLLIN, 0}};
  std::array<std::string*, 2> sinks = {&result.out, &result.err};
  bool has_exited = false;
  while (fds[0].fd >= 0 || fds[1].fd >= 0) {
    int wait_ms = 0;  // once the program has exited: drain what is there, then stop
    if (!has_exited) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        return Fail(ErrorCode::kUnavailable, "{} timed out after {} ms", name, options.timeout.count());
      }
      wait_ms = static_cast<int>(left.count()) + 1;
    }
    const int n = ::poll(fds.data(), fds.size(), wait_ms);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoFail(errno, fmt::format("poll on {}", name));
    }
    if (n == 0 && has_exited) break;  // a daemon it left may hold the pipes: do not wait for it
    if (fds[2].revents != 0) {
      has_exited = true;
      fds[2].fd = -1;
    }
    for (size_t i = 0; i < sinks.size(); ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      const ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        fds[i].fd = -1;  // EOF or error: stop watching (poll ignores negative fds)
        continue;
      }
      if (sinks[i]->size() + static_cast<size_t>(got) > options.max_output) {
        return Fail(ErrorCode::kInternal, "{} wrote more than {} bytes", name, options.max_output);
      }
      sinks[i]->append(buf, static_cast<size_t>(got));
    }
  }
  if (!has_exited) {
    // Both pipes closed: wait for the exit itself, within the deadline.
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd exit_fd{exited.get(), POLLIN, 0};
    int n;
    do {
      n = ::poll(&exit_fd, 1, std::max<int>(0, static_cast<int>(left.count()) + 1));
    } while (n < 0 && errno == EINTR);
    if (n == 0) return Fail(ErrorCode::kUnavailable, "{} timed out after {} ms", name, options.timeout.count());
  }
  if (options.kill_group_on_exit) ::kill(-program.pid(), SIGKILL);
  result.wait_status = program.Reap();
  return result;
}

}  // namespace strata
