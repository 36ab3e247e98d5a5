// Child processes for tests (registries, daemons, tools), owned by pid and reaped.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"

namespace strata::test_support {

struct ChildOptions {
  // argv[0] is the program; without a '/' it is looked up in PATH (env's PATH if given).
  std::vector<std::string> argv;
  // Added to (or replacing entries of) the parent's environment.
  std::map<std::string, std::string> env;
  // stdout and stderr are appended to this file (created if missing); empty = /dev/null.
  std::filesystem::path log_path;
  // Working directory of the child; empty = the parent's.
  std::filesystem::path working_dir;
  // The kernel sends SIGKILL to the child when the thread that started it exits, so a
  // crashed test binary leaves no stray registry behind. Start children from the test's
  // main thread (or a thread that outlives them) when this is on.
  bool kill_with_parent = true;
};

// One started process. The destructor stops it (SIGTERM, then SIGKILL after a grace
// period) and reaps it; only this pid is ever signalled. Move-only; not thread-safe.
class Child {
 public:
  // Forks and execs. Fails (naming argv[0]) if the program cannot be executed: exec errors
  // are reported through a close-on-exec pipe, so a missing binary is an error here rather
  // than an exit status later.
  static Result<Child> Start(ChildOptions options);

  Child() = default;
  ~Child();
  Child(Child&& other) noexcept;
  Child& operator=(Child&& other) noexcept;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  const std::filesystem::path& log_path() const { return log_path_; }

  // True while the process has not exited (reaps it if it just did).
  bool Running();
  // Raw wait status once the process has been reaped.
  std::optional<int> wait_status() const { return wait_status_; }

  // Waits up to `timeout` for the process to exit by itself. Returns its exit code (128+N
  // for death by signal N); Unavailable on timeout (the process keeps running).
  Result<int> Wait(std::chrono::milliseconds timeout);

  // SIGTERM, wait up to `grace`, then SIGKILL; reaps. Returns the exit code as Wait does.
  // No-op (returning the recorded code) if it already exited.
  int Stop(std::chrono::milliseconds grace = std::chrono::seconds(5));

  // The last `max_bytes` of the log file ("" when there is none), for failure messages.
  std::string LogTail(size_t max_bytes = 4096) const;

 private:
  bool Reap(bool block);

  pid_t pid_ = -1;
  std::optional<int> wait_status_;
  std::filesystem::path log_path_;
  std::string program_;
};

// Exit code of a wait status: the code for a normal exit, 128+N for signal N.
int ExitCodeOf(int wait_status);

// Runs a command to completion (stdout+stderr captured into `output` if given) and returns
// its exit code. For short helper commands (tar, getfattr) in tests.
Result<int> RunCommand(const std::vector<std::string>& argv, std::string* output = nullptr,
                       std::chrono::milliseconds timeout = std::chrono::seconds(60));

}  // namespace strata::test_support
