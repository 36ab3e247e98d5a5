#include "tests/support/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <utility>

#include "base/file.h"

extern char** environ;

namespace strata::test_support {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

// NULL-terminated pointer array over strings that outlive it.
std::vector<char*> PointerArray(std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  pointers.reserve(strings.size() + 1);
  for (std::string& s : strings) pointers.push_back(s.data());
  pointers.push_back(nullptr);
  return pointers;
}

std::vector<std::string> MergedEnvironment(const std::map<std::string, std::string>& additions) {
  std::vector<std::string> env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    std::string_view text(*entry);
    std::string key(text.substr(0, text.find('=')));
    if (!additions.contains(key)) env.emplace_back(text);
  }
  for (const auto& [key, value] : additions) env.push_back(key + "=" + value);
  return env;
}

// Resolves a program name the way execvp would, before fork, so a missing program is a
// clear NotFound rather than whatever errno the last PATH entry gave.
Result<std::string> FindProgram(const std::string& program, const std::map<std::string, std::string>& env) {
  if (program.find('/') != std::string::npos) return program;
  std::string path;
  if (auto it = env.find("PATH"); it != env.end()) {
    path = it->second;
  } else if (const char* inherited = std::getenv("PATH"); inherited != nullptr) {
    path = inherited;
  } else {
    path = "/usr/local/bin:/usr/bin:/bin";
  }
  std::string_view dirs = path;
  while (true) {
    size_t colon = dirs.find(':');
    std::string dir(dirs.substr(0, colon));
    std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + program;
    struct stat st {};
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
    if (colon == std::string_view::npos) break;
    dirs.remove_prefix(colon + 1);
  }
  return Fail(ErrorCode::kNotFound, "cannot execute {}: not found in PATH {}", program, path);
}

}  // namespace

int ExitCodeOf(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return -1;
}

Result<Child> Child::Start(ChildOptions options) {
  if (options.argv.empty()) return Fail(ErrorCode::kInvalidArgument, "Child::Start: empty argv");

  // Everything the child needs is prepared before fork: after it, only async-signal-safe
  // calls are allowed (other test threads may hold malloc locks).
  STRATA_ASSIGN_OR_RETURN(std::string program, FindProgram(options.argv[0], options.env));
  std::vector<std::string> argv_strings = options.argv;
  std::vector<std::string> env_strings = MergedEnvironment(options.env);
  std::vector<char*> argv = PointerArray(argv_strings);
  std::vector<char*> envp = PointerArray(env_strings);

  std::filesystem::path log_target = options.log_path.empty() ? "/dev/null" : options.log_path;
  STRATA_ASSIGN_OR_RETURN(UniqueFd log_fd, OpenFile(log_target, O_WRONLY | O_CREAT | O_APPEND, 0644));
  STRATA_ASSIGN_OR_RETURN(UniqueFd null_fd, OpenFile("/dev/null", O_RDONLY));
  int exec_error_pipe[2];
  if (::pipe2(exec_error_pipe, O_CLOEXEC) != 0) {
    return Fail(ErrorCode::kInternal, "pipe2 for {}: {}", options.argv[0], std::strerror(errno));
  }
  UniqueFd error_read(exec_error_pipe[0]);
  UniqueFd error_write(exec_error_pipe[1]);
  std::string working_dir = options.working_dir.native();
  pid_t parent = ::getpid();

  pid_t pid = ::fork();
  if (pid < 0) return Fail(ErrorCode::kInternal, "fork for {}: {}", options.argv[0], std::strerror(errno));
  if (pid == 0) {
    auto die = [&](int error) {
      (void)!::write(error_write.get(), &error, sizeof(error));
      ::_exit(127);
    };
    if (options.kill_with_parent) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);  // the parent died before prctl took effect
    }
    ::setpgid(0, 0);  // own process group: a terminal ^C to the tests does not race teardown
    if (::dup2(null_fd.get(), STDIN_FILENO) < 0 || ::dup2(log_fd.get(), STDOUT_FILENO) < 0 ||
        ::dup2(log_fd.get(), STDERR_FILENO) < 0) {
      die(errno);
    }
    ::syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
    if (!working_dir.empty() && ::chdir(working_dir.c_str()) != 0) die(errno);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execve(program.c_str(), argv.data(), envp.data());
    die(errno);
  }

  error_write.reset();
  Child child;
  child.pid_ = pid;
  child.log_path_ = options.log_path;
  child.program_ = options.argv[0];
  int exec_errno = 0;
  ssize_t got;
  do {
    got = ::read(error_read.get(), &exec_errno, sizeof(exec_errno));
  } while (got < 0 && errno == EINTR);
  if (got > 0) {
    child.Reap(/*block=*/true);
    return Fail(exec_errno == ENOENT ? ErrorCode::kNotFound : ErrorCode::kInternal, "cannot execute {}: {}",
                options.argv[0], std::strerror(exec_errno));
  }
  return child;
}

Child::~Child() { Stop(); }

Child::Child(Child&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      wait_status_(std::exchange(other.wait_status_, std::nullopt)),
      log_path_(std::move(other.log_path_)),
      program_(std::move(other.program_)) {}

Child& Child::operator=(Child&& other) noexcept {
  if (this != &other) {
    Stop();
    pid_ = std::exchange(other.pid_, -1);
    wait_status_ = std::exchange(other.wait_status_, std::nullopt);
    log_path_ = std::move(other.log_path_);
    program_ = std::move(other.program_);
  }
  return *this;
}

bool Child::Reap(bool block) {
  if (pid_ < 0 || wait_status_) return true;
  int status = 0;
  pid_t done;
  do {
    done = ::waitpid(pid_, &status, block ? 0 : WNOHANG);
  } while (done < 0 && errno == EINTR);
  if (done == pid_) {
    wait_status_ = status;
    return true;
  }
  if (done < 0) {  // ECHILD: someone else reaped it; never signal that pid again
    wait_status_ = 0;
    return true;
  }
  return false;
}

bool Child::Running() { return pid_ >= 0 && !Reap(/*block=*/false); }

Result<int> Child::Wait(milliseconds timeout) {
  if (pid_ < 0) return Fail(ErrorCode::kFailedPrecondition, "Child::Wait: no process");
  auto deadline = steady_clock::now() + timeout;
  while (!Reap(/*block=*/false)) {
    if (steady_clock::now() >= deadline) {
      return Fail(ErrorCode::kUnavailable, "{} (pid {}) still running after {} ms", program_, pid_, timeout.count());
    }
    std::this_thread::sleep_for(milliseconds(10));
  }
  return ExitCodeOf(*wait_status_);
}

int Child::Stop(milliseconds grace) {
  if (pid_ < 0) return -1;
  if (Reap(/*block=*/false)) return ExitCodeOf(*wait_status_);
  ::kill(pid_, SIGTERM);
  if (Result<int> code = Wait(grace); code) return *code;
  ::kill(pid_, SIGKILL);
  Reap(/*block=*/true);
  return ExitCodeOf(*wait_status_);
}

std::string Child::LogTail(size_t max_bytes) const {
  if (log_path_.empty()) return "";
  Result<std::string> log = ReadFile(log_path_);
  if (!log) return "";
  if (log->size() > max_bytes) return "..." + log->substr(log->size() - max_bytes);
  return *log;
}

Result<int> RunCommand(const std::vector<std::string>& argv, std::string* output, milliseconds timeout) {
  STRATA_ASSIGN_OR_RETURN(TempDir dir, TempDir::Create("strata-cmd"));
  ChildOptions options{.argv = argv, .log_path = dir.path() / "output"};
  STRATA_ASSIGN_OR_RETURN(Child child, Child::Start(std::move(options)));
  Result<int> code = child.Wait(timeout);
  if (!code) child.Stop(milliseconds(100));
  if (output != nullptr) *output = child.LogTail(64 << 20);
  return code;
}

}  // namespace strata::test_support
