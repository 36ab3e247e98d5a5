// Helpers shared by the strata-bench-* programs: flag parsing, deterministic test data,
// wall-clock timing, running peer programs, page-cache residency, machine load and
// markdown tables. Benchmarks only: nothing here is part of the store.
//
// Not thread-safe unless said otherwise; each benchmark is a single-threaded driver.
#pragma once

#include <sys/types.h>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "base/digest.h"
#include "base/error.h"
#include "base/file.h"

namespace strata::bench {

constexpr size_t kMiB = 1024 * 1024;
// The pull path's chunk size; benchmarks read and hash in pieces of this size.
constexpr size_t kChunk = kMiB;

// "--flag value" command lines. Errors print to stderr and exit: 2 for a bad command line,
// 0 for --help / -h.
class CommandLine {
 public:
  // `synopsis` follows the program name in the usage line ("[--size-mib N] [--runs N]").
  CommandLine(std::string program, std::string synopsis)
      : program_(std::move(program)), synopsis_(std::move(synopsis)) {}

  [[noreturn]] void Usage(int status) const;

  // Calls on_flag(flag, value) for each pair in order. on_flag returns false for a flag it
  // does not know, which is a usage error; so is a flag without a value.
  void Parse(int argc, char** argv,
             const std::function<bool(std::string_view flag, std::string_view value)>& on_flag) const;

  // `text` as a positive T (integer or floating point); exits 2, naming flag and text, when
  // it is not one.
  // The comma-separated items of `text` (see SplitCommaList), each once, in first-seen order;
  // exits 2, naming the flag, the item and the `allowed` ones, for an item not allowed.
  std::vector<std::string> Choices(std::string_view flag, std::string_view text,
                                   const std::vector<std::string_view>& allowed) const;

  template <typename T>
  T Positive(std::string_view flag, std::string_view text) const {
    T value{};
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc() || end != text.data() + text.size() || value <= T{0}) BadNumber(flag, text);
    return value;
  }

 private:
  [[noreturn]] void BadNumber(std::string_view flag, std::string_view text) const;
  std::string program_;
  std::string synopsis_;
};

// The comma-separated items of a flag's value ("100,300"), empty ones included.
std::vector<std::string_view> SplitCommaList(std::string_view value);

// The strata binary built next to the running benchmark (the default of --strata).
std::filesystem::path StrataNextToSelf();

// The fresh work directory `prefix`-XXXXXX of a run, under `work_dir` when not empty (which
// also becomes $TMPDIR, so the children keep their temporary files there too), else under
// $TMPDIR or /tmp. nullopt, with the error printed to stderr, when it cannot be made.
std::optional<TempDir> CreateWorkDir(std::string_view prefix, const std::filesystem::path& work_dir);

// Incompressible, deterministic bytes (xorshift64*), so no layer of the stack can cheat
// (compression, dedup, zero-page tricks). The stream is the same however it is split
// into Fill calls, provided every call but the last asks for a multiple of 8 bytes.
class RandomBytes {
 public:
  void Fill(char* out, size_t size);

 private:
  uint64_t state_ = 0x9E3779B97F4A7C15ull;
  uint64_t position_ = 0;
};

// The first `size` bytes of a fresh RandomBytes stream.
std::string MakeRandomBuffer(size_t size);
// Creates (or truncates) `path` with the first `size` bytes of a fresh RandomBytes stream,
// written in kChunk pieces, and fdatasyncs it. The pages stay in the page cache, clean.
Status WriteRandomFile(const std::filesystem::path& path, size_t size);

// sha256 of a file read in kChunk reads through the page cache (which it leaves warm).
Result<Digest> HashFile(const std::filesystem::path& path);

// Fraction (0..1) of the file's pages resident in the page cache (mmap + mincore); negative
// when it cannot be told. An empty file counts as fully resident.
double ResidentFraction(const std::filesystem::path& path);
// Makes the file fully resident if it is not: reads it through once more. Returns the
// fraction resident afterwards (< 1 when memory is short), negative when unknown.
double EnsureCached(const std::filesystem::path& path);

// Wall-clock seconds `body` takes, once.
double TimeSeconds(const std::function<void()>& body);

struct Timing {
  double best_seconds = 0;
  std::string output;  // what the last run produced
};
// Runs `body` `runs` (>= 1) times; keeps the fastest wall-clock time and the last output.
Timing BestOf(int runs, const std::function<std::string()>& body);

// Wall-clock samples of one measurement, in seconds. REQUIRES: at least one sample before
// Median/Min/Max.
class Samples {
 public:
  void Add(double seconds) { seconds_.push_back(seconds); }
  size_t count() const { return seconds_.size(); }
  const std::vector<double>& values() const { return seconds_; }
  // The middle sample; the mean of the two middle ones for an even count.
  double Median() const;
  double Min() const;
  double Max() const;

 private:
  std::vector<double> seconds_;
};

double GigabytesPerSecond(size_t bytes, double seconds);

// Starts argv[0] (looked up in PATH) with stdout and stderr sent to the given descriptors
// (-1 = inherited) and stdin inherited. The child's pid, or nullopt when `args` is empty or
// the program cannot be started. The caller reaps it with WaitSucceeded.
std::optional<pid_t> SpawnWithOutput(const std::vector<std::string>& args, int stdout_fd, int stderr_fd);

// Waits for `pid` (retrying on EINTR); true when it exited with status 0.
bool WaitSucceeded(pid_t pid);

// Forks and execs args (argv[0] looked up in PATH, args not empty) with stdout and stderr
// sent to `log_fd`, for a daemon this process runs: the child gets SIGKILL if the calling
// thread exits first (PR_SET_PDEATHSIG). The child's pid, or -1 with errno set when fork
// fails. The caller stops it with StopChild.
pid_t SpawnTiedToThread(const std::vector<std::string>& args, int log_fd);

// Stops the child `pid` started here, if any (pid > 0): SIGTERM, SIGKILL once `grace` has
// passed, and reaps it; then sets `pid` to -1. No other process is ever signalled.
void StopChild(pid_t& pid, std::chrono::milliseconds grace);

// One finished child process.
struct MeasuredRun {
  double seconds = 0;        // wall clock, spawn to reap
  uint64_t peak_rss_kib = 0; // ru_maxrss from wait4: the child's own peak (not its children's)
  bool succeeded = false;    // exited with status 0
  int wait_status = 0;
};

// Runs args (argv[0] looked up in PATH) with stdout to `stdout_path` (truncated) and stderr
// appended to `stderr_log`; times it and reaps it with wait4. Internal only when it cannot
// be started; a non-zero exit is reported in the result, not as an error.
Result<MeasuredRun> RunMeasured(const std::vector<std::string>& args, const std::filesystem::path& stdout_path,
                                const std::filesystem::path& stderr_log);

// VmHWM of the live process `pid` (its peak RSS so far, from /proc/PID/status) in KiB; 0 when
// it cannot be read (gone, or not ours to see). For daemons, which are not reaped by wait4.
uint64_t VmHwmKib(pid_t pid);

// KiB to MB (10^6 bytes), as the reports print RSS.
inline double KibToMb(uint64_t kib) { return static_cast<double>(kib) * 1024.0 / 1e6; }

// Runs argv[0] (looked up in PATH) with stdout captured and stdin/stderr inherited;
// nullopt when the program cannot be started or does not exit with status 0.
std::optional<std::string> RunCapturingStdout(const std::vector<std::string>& args);

// The 1-minute load average at the time of the call. Timings taken while other work
// competes for the CPU understate throughput, so reports say what the load was.
struct MachineLoad {
  double one_minute = -1;  // negative when unknown
  unsigned cpus = 0;

  // More than half the CPUs' worth of runnable work.
  bool busy() const { return one_minute > 0.5 * cpus; }
  // "load average 0.12 on 8 CPUs before the run", plus a warning when busy.
  std::string Describe() const;
};
MachineLoad ReadMachineLoad();

// A GitHub-flavoured markdown table, rendered as
//   | a | b |
//   |---|---:|
//   | 1 | 2 |
class MarkdownTable {
 public:
  enum class Align { kLeft, kRight };
  struct Column {
    std::string title;
    Align align = Align::kRight;
  };
  explicit MarkdownTable(std::vector<Column> columns) : columns_(std::move(columns)) {}

  // REQUIRES: cells.size() == number of columns.
  void AddRow(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }
  std::string Render() const;

 private:
  std::vector<Column> columns_;
  std::vector<std::vector<std::string>> rows_;
};

// The peak RSS table every benchmark prints in the same shape, so scripts/bench_report.py can
// gather them all: a "### Peak RSS" heading, then
//   | operation | program | peak RSS MB, median (min-max) | measured as |
class PeakRssTable {
 public:
  // `megabytes`: one sample per run (MB = 10^6 bytes); rows without samples are skipped.
  // `measured_as` says whose and how ("ru_maxrss of the command", "VmHWM of the daemon").
  void Add(std::string operation, std::string program, const Samples& megabytes, std::string measured_as);
  // "" when no row has samples.
  std::string Render() const;

 private:
  struct Row {
    std::string operation, program, value, measured_as;
  };
  std::vector<Row> rows_;
};

}  // namespace strata::bench
