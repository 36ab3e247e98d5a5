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
#include <unistd.h>

#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "base/digest.h"
#include "base/file.h"
#include "bench/bench_util.h"

namespace strata {
namespace {

using bench::kChunk;
using bench::kMiB;
using bench::Timing;

struct Options {
  size_t size_mib = 1024;
  int runs = 3;
  double min_gbps = 0;
};

Options ParseOptions(int argc, char** argv) {
  const bench::CommandLine command_line("strata-bench-digest", "[--size-mib N] [--runs N] [--min-gbps X]");
  Options options;
  command_line.Parse(argc, argv, [&](std::string_view flag, std::string_view value) {
    if (flag == "--size-mib") {
      options.size_mib = command_line.Positive<size_t>(flag, value);
    } else if (flag == "--runs") {
      options.runs = command_line.Positive<int>(flag, value);
    } else if (flag == "--min-gbps") {
      options.min_gbps = command_line.Positive<double>(flag, value);
    } else {
      return false;
    }
    return true;
  });
  return options;
}

std::string HashMemory(std::string_view buffer) {
  Digester digester;
  for (size_t offset = 0; offset < buffer.size(); offset += kChunk) {
    digester.Update(buffer.substr(offset, kChunk));
  }
  return digester.Finish().hex();
}

std::string HashFile(const std::filesystem::path& path) {
  Result<Digest> digest = bench::HashFile(path);
  return digest ? digest->hex() : "error: " + digest.error().ToString();
}

struct Row {
  std::string name;
  std::optional<Timing> timing;  // nullopt: peer unavailable
  bool digest_matches = true;
};

int Run(const Options& options) {
  const size_t size = options.size_mib * kMiB;
  const bench::MachineLoad load = bench::ReadMachineLoad();  // before we add to it
  std::fprintf(stderr, "preparing %zu MiB of data...\n", options.size_mib);
  const std::string buffer = bench::MakeRandomBuffer(size);

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
                  bench::BestOf(options.runs, [&] { return HashMemory(buffer); })});
  std::fprintf(stderr, "strata (file)...\n");
  rows.push_back({"strata Digester, file, 1 MiB reads", bench::BestOf(options.runs, [&] { return HashFile(file); })});

  const std::vector<std::pair<std::string, std::vector<std::string>>> peers = {
      {"`openssl dgst -sha256 FILE`", {"openssl", "dgst", "-sha256", file.native()}},
      {"`sha256sum FILE`", {"sha256sum", file.native()}},
  };
  for (const auto& [name, args] : peers) {
    std::fprintf(stderr, "%s...\n", name.c_str());
    bool available = true;
    Timing timing = bench::BestOf(options.runs, [&] {
      std::optional<std::string> output = bench::RunCapturingStdout(args);
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
  fmt::print("{}\n\n", load.Describe());
  using Align = bench::MarkdownTable::Align;
  bench::MarkdownTable table({{"implementation", Align::kLeft},
                              {"seconds"},
                              {"GB/s"},
                              {"strata memory / this"},
                              {"strata file / this"}});
  bool all_match = true;
  for (const Row& row : rows) {
    if (!row.timing) {
      table.AddRow({row.name, "n/a", "n/a", "n/a", "n/a"});
      continue;
    }
    const double seconds = row.timing->best_seconds;
    table.AddRow({row.name + (row.digest_matches ? "" : " (DIGEST MISMATCH)"), fmt::format("{:.3f}", seconds),
                  fmt::format("{:.2f}", bench::GigabytesPerSecond(size, seconds)),
                  fmt::format("{:.2f}", seconds / strata_memory), fmt::format("{:.2f}", seconds / strata_file)});
    all_match = all_match && row.digest_matches;
  }
  fmt::print("{}", table.Render());
  fmt::print("\nratio > 1 means strata is faster. sha256: {}\n", expected);

  const double strata_gbps = bench::GigabytesPerSecond(size, strata_memory);
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
