// strata-bench-digest: sha256 throughput of base/Digester against `openssl dgst -sha256`
// and `sha256sum`.
//
// strata hashes an in-memory buffer in 1 MiB Updates (the pull path's chunk size) and,
// for a like-for-like figure, the same bytes read from a file. The peers hash that file
// while it sits in the page cache. Every figure is the best of --runs, wall-clock.
//
//   strata-bench-digest [--size-mib N] [--runs N] [--min-gbps X]
// --min-gbps makes the exit status 1 when strata's in-memory rate is below X GB/s.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "base/digest.h"
#include "base/file.h"

extern char** environ;

namespace strata {
namespace {

constexpr size_t kMiB = 1024 * 1024;
constexpr size_t kChunk = kMiB;

struct Options {
  size_t size_mib = 1024;
  int runs = 3;
  double min_gbps = 0;
};

[[noreturn]] void Usage(int status) {
  std::fprintf(status == 0 ? stdout : stderr,
               "usage: strata-bench-digest [--size-mib N] [--runs N] [--min-gbps X]\n");
  std::exit(status);
}

template <typename T>
T ParseNumber(std::string_view flag, std::string_view text) {
  T value{};
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value <= T{0}) {
    std::fprintf(stderr, "strata-bench-digest: %.*s wants a positive number, got \"%.*s\"\n",
                 static_cast<int>(flag.size()), flag.data(), static_cast<int>(text.size()), text.data());
    Usage(2);
  }
  return value;
}

Options ParseOptions(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") Usage(0);
    if (i + 1 >= argc) Usage(2);
    const std::string_view value = argv[++i];
    if (arg == "--size-mib") {
      options.size_mib = ParseNumber<size_t>(arg, value);
    } else if (arg == "--runs") {
      options.runs = ParseNumber<int>(arg, value);
    } else if (arg == "--min-gbps") {
      options.min_gbps = ParseNumber<double>(arg, value);
    } else {
      Usage(2);
    }
  }
  return options;
}

// Incompressible, deterministic bytes (xorshift64*), so no layer of the stack can cheat.
std::string MakeBuffer(size_t size) {
  std::string buffer(size, '\0');
  uint64_t state = 0x9E3779B97F4A7C15ull;
  size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    const uint64_t word = state * 0x2545F4914F6CDD1Dull;
    std::memcpy(buffer.data() + i, &word, 8);
  }
  for (; i < size; ++i) buffer[i] = static_cast<char>(i);
  return buffer;
}

struct Timing {
  double best_seconds = 0;
  std::string output;  // what the last run produced (a digest hex somewhere in it)
};

// Runs `body` `runs` times; keeps the fastest wall-clock time.
Timing BestOf(int runs, const std::function<std::string()>& body) {
  Timing timing;
  for (int run = 0; run < runs; ++run) {
    const auto start = std::chrono::steady_clock::now();
    timing.output = body();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (run == 0 || seconds < timing.best_seconds) timing.best_seconds = seconds;
  }
  return timing;
}

std::string HashMemory(std::string_view buffer) {
  Digester digester;
  for (size_t offset = 0; offset < buffer.size(); offset += kChunk) {
    digester.Update(buffer.substr(offset, kChunk));
  }
  return digester.Finish().hex();
}

std::string HashFile(const std::filesystem::path& path) {
  Result<UniqueFd> fd = OpenFile(path, O_RDONLY);
  if (!fd) return "error: " + fd.error().ToString();
  std::unique_ptr<char[]> chunk(new char[kChunk]);
  Digester digester;
  while (true) {
    const ssize_t got = ::read(fd->get(), chunk.get(), kChunk);
    if (got < 0) return "error: read failed";
    if (got == 0) break;
    digester.Update(chunk.get(), static_cast<size_t>(got));
  }
  return digester.Finish().hex();
}

// Runs argv with stdout captured; nullopt when the program cannot be run or fails.
std::optional<std::string> RunCapturingStdout(const std::vector<std::string>& args) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return std::nullopt;
  UniqueFd read_end(pipe_fds[0]);
  UniqueFd write_end(pipe_fds[1]);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), STDOUT_FILENO);
  std::vector<char*> argv;
  for (const std::string& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int spawned = posix_spawnp(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  write_end.reset();
  if (spawned != 0) return std::nullopt;

  std::string output;
  char buffer[4096];
  ssize_t got;
  while ((got = ::read(read_end.get(), buffer, sizeof buffer)) > 0) output.append(buffer, got);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return std::nullopt;
  return output;
}

// The 1-minute load average, or a negative number when unknown. Timings taken while other
// work competes for the CPU understate throughput, so the report says what the load was.
double LoadAverage() {
  Result<std::string> text = ReadFile("/proc/loadavg");
  if (!text) return -1;
  return std::strtod(text->c_str(), nullptr);
}

double GigabytesPerSecond(size_t bytes, double seconds) { return static_cast<double>(bytes) / seconds / 1e9; }

struct Row {
  std::string name;
  std::optional<Timing> timing;  // nullopt: peer unavailable
  bool digest_matches = true;
};

int Run(const Options& options) {
  const size_t size = options.size_mib * kMiB;
  const double load = LoadAverage();  // before we add to it
  std::fprintf(stderr, "preparing %zu MiB of data...\n", options.size_mib);
  const std::string buffer = MakeBuffer(size);

  Result<TempDir> dir = TempDir::Create("strata-bench-digest");
  if (!dir) {
    std::fprintf(stderr, "%s\n", dir.error().ToString().c_str());
    return 1;
  }
  const std::filesystem::path file = dir->path() / "data";
  {
    Result<UniqueFd> fd = OpenFile(file, O_WRONLY | O_CREAT | O_TRUNC);
    if (!fd || !WriteAll(fd->get(), buffer) || ::fdatasync(fd->get()) != 0) {
      std::fprintf(stderr, "cannot write %s\n", file.c_str());
      return 1;
    }
  }
  // Clean pages stay cached; one read makes sure of it before anything is timed.
  const std::string expected = HashFile(file);

  std::vector<Row> rows;
  std::fprintf(stderr, "strata (memory)...\n");
  rows.push_back({"strata Digester, in memory, 1 MiB updates",
                  BestOf(options.runs, [&] { return HashMemory(buffer); })});
  std::fprintf(stderr, "strata (file)...\n");
  rows.push_back({"strata Digester, file, 1 MiB reads", BestOf(options.runs, [&] { return HashFile(file); })});

  const std::vector<std::pair<std::string, std::vector<std::string>>> peers = {
      {"`openssl dgst -sha256 FILE`", {"openssl", "dgst", "-sha256", file.native()}},
      {"`sha256sum FILE`", {"sha256sum", file.native()}},
  };
  for (const auto& [name, args] : peers) {
    std::fprintf(stderr, "%s...\n", name.c_str());
    bool available = true;
    Timing timing = BestOf(options.runs, [&] {
      std::optional<std::string> output = RunCapturingStdout(args);
      if (!output) available = false;
      return output.value_or("");
    });
    rows.push_back({name, available ? std::optional<Timing>(timing) : std::nullopt});
  }
  for (Row& row : rows) {
    if (row.timing) row.digest_matches = row.timing->output.find(expected) != std::string::npos;
  }

  const double strata_memory = rows[0].timing->best_seconds;
  const double strata_file = rows[1].timing->best_seconds;
  fmt::print("sha256 over {} MiB, best of {} runs (GB/s = 1e9 bytes/s)\n", options.size_mib, options.runs);
  const unsigned cpus = std::thread::hardware_concurrency();
  fmt::print("load average {:.2f} on {} CPUs before the run{}\n\n", load, cpus,
             load > 0.5 * cpus ? " -- machine busy, figures understate throughput" : "");
  fmt::print("| implementation | seconds | GB/s | strata memory / this | strata file / this |\n");
  fmt::print("|---|---:|---:|---:|---:|\n");
  bool all_match = true;
  for (const Row& row : rows) {
    if (!row.timing) {
      fmt::print("| {} | n/a | n/a | n/a | n/a |\n", row.name);
      continue;
    }
    const double seconds = row.timing->best_seconds;
    fmt::print("| {}{} | {:.3f} | {:.2f} | {:.2f} | {:.2f} |\n", row.name,
               row.digest_matches ? "" : " (DIGEST MISMATCH)", seconds, GigabytesPerSecond(size, seconds),
               seconds / strata_memory, seconds / strata_file);
    all_match = all_match && row.digest_matches;
  }
  fmt::print("\nratio > 1 means strata is faster. sha256: {}\n", expected);

  const double strata_gbps = GigabytesPerSecond(size, strata_memory);
  if (!all_match) return 1;
  if (options.min_gbps > 0) {
    const bool ok = strata_gbps >= options.min_gbps;
    fmt::print("requirement strata >= {:.2f} GB/s: {} ({:.2f} GB/s)\n", options.min_gbps, ok ? "met" : "NOT met",
               strata_gbps);
    return ok ? 0 : 1;
  }
  return 0;
}

}  // namespace
}  // namespace strata

int main(int argc, char** argv) { return strata::Run(strata::ParseOptions(argc, argv)); }
