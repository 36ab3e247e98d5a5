// Running a helper program to its end: credential helpers, FUSE mount programs. The
// program gets `input` on stdin, its stdout and stderr are captured (bounded), and it is
// killed when it overruns its deadline. No shell is involved.
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace strata {

// Searches $PATH (default /usr/local/bin:/usr/bin:/bin) like execvp: the first executable
// regular file named `program`.
std::optional<std::filesystem::path> FindInPath(std::string_view program);

struct RunOptions {
  std::chrono::milliseconds timeout{30000};
  // Written to the program's stdin, then EOF. At most PIPE_BUF bytes (one write never blocks).
  std::string_view input;
  // Per stream; more is an error.
  size_t max_output = 1 << 20;
  // The program runs in a process group of its own. When true, the group is killed once the
  // program has exited, so nothing it started outlives it (credential helpers). Programs
  // that leave a daemon behind (FUSE mount programs) set false; their daemon must detach
  // (setsid) and close our pipes. Either way the program is killed at the deadline.
  bool kill_group_on_exit = true;
};

struct ProgramOutput {
  int wait_status = 0;  // as waitpid gives it
  std::string out;
  std::string err;

  bool Succeeded() const;
  // "exit status 3" or "signal 9".
  std::string HowItEnded() const;
};

// Runs `binary` with `argv` (argv[0] included) and the caller's environment, to its exit.
// Output is collected until the program has exited and its pipes are drained; a daemon it
// leaves holding the pipes does not keep the call waiting. Errors: Unavailable "<name> timed
// out after N ms" (the program is killed), Internal for more than max_output bytes or a
// program that cannot be started (naming it and why). A non-zero exit is not an error:
// see ProgramOutput.
Result<ProgramOutput> RunProgram(const std::filesystem::path& binary, const std::vector<std::string>& argv,
                                 const RunOptions& options = {});

}  // namespace strata
