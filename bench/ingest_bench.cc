// strata-bench-ingest: the cost of committing a blob to the content store against copying
// the same file with `cp` and fsyncing the copy, and against hashing it with `sha256sum`.
//
// strata: a fresh Store in a fresh root (opened outside the timed region), then, timed,
//   content().Writer(ref, {.total}) + the input read in 1 MiB chunks and Write()n +
//   Commit(size, digest): hash + write + fsync + rename + record, as a pull commits a layer.
// cp + fsync: `cp FILE DEST`, then fsync(DEST) from here; both timed.
// sha256sum: `sha256sum FILE`, hash only.
//
// Rounds alternate strata / cp / sha256sum so drift (other load, disk state) hits all
// three alike. Before every run the input is made fully resident in the page cache and
// the previous run's output is deleted and `sync`ed, outside the timed region. Figures are
// wall-clock medians and ranges over the rounds; a last line splits strata's time into
// Writer(), the read + Write() loop and Commit().
//
//   strata-bench-ingest [--size-mib N] [--rounds N] [--max-ratio-vs-cp X]
// --max-ratio-vs-cp makes the exit status 1 when the median strata / cp+fsync time ratio
// exceeds X (for scripts).
#include <fcntl.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <fmt/format.h>

#include "base/digest.h"
#include "base/error.h"
#include "base/file.h"
#include "bench/bench_util.h"
#include "store/content_store.h"
#include "store/store.h"

namespace strata {
namespace {

namespace fs = std::filesystem;
using bench::kChunk;
using bench::kMiB;

// The target: an ingest costs at most this many times a cp + fsync of the same file.
constexpr double kTargetRatioVsCp = 1.3;

struct Options {
  size_t size_mib = 1024;
  int rounds = 5;
  double max_ratio_vs_cp = 0;  // 0 = report only
};

Options ParseOptions(int argc, char** argv) {
  const bench::CommandLine command_line("strata-bench-ingest",
                                        "[--size-mib N] [--rounds N] [--max-ratio-vs-cp X]");
  Options options;
  command_line.Parse(argc, argv, [&](std::string_view flag, std::string_view value) {
    if (flag == "--size-mib") {
      options.size_mib = command_line.Positive<size_t>(flag, value);
    } else if (flag == "--rounds") {
      options.rounds = command_line.Positive<int>(flag, value);
    } else if (flag == "--max-ratio-vs-cp") {
      options.max_ratio_vs_cp = command_line.Positive<double>(flag, value);
    } else {
      return false;
    }
    return true;
  });
  return options;
}

// Name of the filesystem holding `path`, for the report: fsync on tmpfs costs nothing, and
// cp reflinks (copies no data) on btrfs and xfs, so the figures mean little there.
std::string FilesystemName(const fs::path& path) {
  struct statfs st {};
  if (::statfs(path.c_str(), &st) != 0) return "unknown filesystem";
  switch (static_cast<unsigned long>(st.f_type)) {
    case 0xEF53: return "ext4";
    case 0x01021994: return "tmpfs";
    case 0x58465342: return "xfs";
    case 0x9123683E: return "btrfs";
    case 0x794C7630: return "overlayfs";
    case 0x2FC12FC1: return "zfs";
    case 0xF2F52010: return "f2fs";
    default: return fmt::format("filesystem type {:#x}", static_cast<unsigned long>(st.f_type));
  }
}

std::string FilesystemCaveat(std::string_view name) {
  if (name == "tmpfs") return " -- tmpfs: fsync is free, set TMPDIR to a disk-backed directory";
  if (name == "btrfs" || name == "xfs") return " -- cp may reflink here (no data copied); compare with care";
  return "";
}

// Where a strata ingest spends its time, in seconds.
struct StrataPhases {
  double writer = 0;  // Writer(): ingest dir, lock, record
  double writes = 0;  // read + Write() of every chunk: hash, write, writeback start
  double commit = 0;  // Commit(): digest check, fsync, chmod, rename, dir fsync, record
};

// Opens a store in `root` (untimed), then times one ingest of `input` through the public
// ContentStore API. The store is closed before returning, also untimed.
Result<double> TimeStrataIngest(const fs::path& input, const fs::path& root, size_t size, const Digest& expected,
                                int round, StrataPhases* phases) {
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<store::Store> store, store::Store::Open(root));
  Status status;
  const double seconds = bench::TimeSeconds([&] {
    status = [&]() -> Status {
      using Clock = std::chrono::steady_clock;
      const auto start = Clock::now();
      STRATA_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(input, O_RDONLY));
      STRATA_ASSIGN_OR_RETURN(
          std::unique_ptr<store::ContentWriter> writer,
          store->content().Writer(fmt::format("bench-ingest-{}", round), {.total = static_cast<int64_t>(size)}));
      const auto opened = Clock::now();
      std::unique_ptr<char[]> chunk(new char[kChunk]);
      while (true) {
        const ssize_t got = ::read(fd.get(), chunk.get(), kChunk);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return Fail(ErrorCode::kInternal, "read {}: {}", input.native(), std::strerror(errno));
        if (got == 0) break;
        STRATA_RETURN_IF_ERROR(writer->Write(std::string_view(chunk.get(), static_cast<size_t>(got))));
      }
      const auto written = Clock::now();
      STRATA_RETURN_IF_ERROR(writer->Commit(static_cast<int64_t>(size), expected));
      const auto committed = Clock::now();
      phases->writer = std::chrono::duration<double>(opened - start).count();
      phases->writes = std::chrono::duration<double>(written - opened).count();
      phases->commit = std::chrono::duration<double>(committed - written).count();
      return {};
    }();
  });
  if (!status) return Fail(status.error().WithContext("strata ingest"));
  return seconds;
}

// Times `cp input dest` plus an fsync of dest; checks the copy's size afterwards.
Result<double> TimeCpFsync(const fs::path& input, const fs::path& dest, size_t size) {
  bool ran = false;
  Status synced;
  const double seconds = bench::TimeSeconds([&] {
    ran = bench::RunCapturingStdout({"cp", input.native(), dest.native()}).has_value();
    if (!ran) return;
    synced = [&]() -> Status {
      STRATA_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(dest, O_RDONLY));
      if (::fsync(fd.get()) != 0) return Fail(ErrorCode::kInternal, "fsync {}: {}", dest.native(), std::strerror(errno));
      return {};
    }();
  });
  if (!ran) return Fail(ErrorCode::kUnavailable, "cp {} {} failed or is not installed", input.native(), dest.native());
  STRATA_RETURN_IF_ERROR(synced);
  std::error_code ec;
  const uintmax_t copied = fs::file_size(dest, ec);
  if (ec || copied != size) {
    return Fail(ErrorCode::kInternal, "cp produced {} bytes, expected {}", ec ? 0 : copied, size);
  }
  return seconds;
}

// Times `sha256sum input`; checks it printed the expected digest.
Result<double> TimeSha256sum(const fs::path& input, const Digest& expected) {
  std::optional<std::string> output;
  const double seconds = bench::TimeSeconds([&] { output = bench::RunCapturingStdout({"sha256sum", input.native()}); });
  if (!output) return Fail(ErrorCode::kUnavailable, "sha256sum {} failed or is not installed", input.native());
  if (output->find(expected.hex()) == std::string::npos) {
    return Fail(ErrorCode::kInternal, "sha256sum printed {:?}, expected {}", *output, expected.hex());
  }
  return seconds;
}

struct Measurement {
  std::string name;
  bench::Samples samples;
  std::optional<Error> error;  // set: the run failed (a peer missing, a wrong result)
};

std::string Range(const bench::Samples& samples) {
  return fmt::format("{:.3f}-{:.3f}", samples.Min(), samples.Max());
}

int Run(const Options& options) {
  const size_t size = options.size_mib * kMiB;
  const bench::MachineLoad load = bench::ReadMachineLoad();  // before we add to it

  Result<TempDir> dir = TempDir::Create("strata-bench-ingest");
  if (!dir) {
    std::fprintf(stderr, "%s\n", dir.error().ToString().c_str());
    return 1;
  }
  const fs::path input = dir->path() / "input";
  std::fprintf(stderr, "writing %zu MiB of random bytes to %s...\n", options.size_mib, input.c_str());
  if (Status written = bench::WriteRandomFile(input, size); !written) {
    std::fprintf(stderr, "%s\n", written.error().ToString().c_str());
    return 1;
  }
  // Reading it once hashes it and leaves its clean pages cached.
  Result<Digest> expected = bench::HashFile(input);
  if (!expected) {
    std::fprintf(stderr, "%s\n", expected.error().ToString().c_str());
    return 1;
  }

  enum { kStrata, kCp, kSha256sum };
  std::vector<Measurement> measurements = {
      {"strata ingest: Writer + 1 MiB Writes + Commit (hash, write, fsync, rename, record)", {}, {}},
      {"`cp FILE DEST` + fsync(DEST)", {}, {}},
      {"`sha256sum FILE` (hash only)", {}, {}},
  };
  bench::Samples writer_phase, writes_phase, commit_phase;
  double min_resident = 1;
  for (int round = 0; round < options.rounds; ++round) {
    // Rotate the order every round: what ran just before matters here (a run straight
    // after sha256sum's full read of the input is markedly slower, whichever tool it is),
    // so every implementation takes every slot equally often.
    for (size_t slot = 0; slot < measurements.size(); ++slot) {
      const size_t which = (slot + static_cast<size_t>(round)) % measurements.size();
      Measurement& m = measurements[which];
      if (m.error) continue;
      // Outside the timed region: nothing of the last run left to write back, input cached.
      ::sync();
      const double resident = bench::EnsureCached(input);
      min_resident = std::min(min_resident, resident);
      std::fprintf(stderr, "round %d/%d: %s...\n", round + 1, options.rounds, m.name.c_str());

      const fs::path out = dir->path() / fmt::format("out-{}", round);
      Result<double> seconds = Fail(ErrorCode::kInternal, "not run");
      switch (which) {
        case kStrata: {
          StrataPhases phases;
          seconds = TimeStrataIngest(input, out, size, *expected, round, &phases);
          if (seconds) {
            writer_phase.Add(phases.writer);
            writes_phase.Add(phases.writes);
            commit_phase.Add(phases.commit);
          }
          break;
        }
        case kCp: seconds = TimeCpFsync(input, out, size); break;
        case kSha256sum: seconds = TimeSha256sum(input, *expected); break;
      }
      std::error_code ec;
      fs::remove_all(out, ec);
      if (seconds) {
        m.samples.Add(*seconds);
        std::fprintf(stderr, "  %.3f s\n", *seconds);
      } else {
        std::fprintf(stderr, "%s\n", seconds.error().ToString().c_str());
        m.error = seconds.error();
      }
    }
  }
  ::sync();

  fmt::print("ingest of {} MiB of random bytes, {} rounds alternating strata / cp / sha256sum; wall-clock seconds "
             "(GB/s = 1e9 bytes/s)\n",
             options.size_mib, options.rounds);
  const std::string filesystem = FilesystemName(dir->path());
  fmt::print("files on {} under {}{}\n", filesystem, dir->path().parent_path().native(),
             FilesystemCaveat(filesystem));
  if (min_resident < 0) {
    fmt::print("input page-cache residency unknown (mincore failed)\n");
  } else {
    fmt::print("input at least {:.0f}% in the page cache before every run; output deleted and synced between runs{}\n",
               min_resident * 100, min_resident < 1 ? " -- NOT fully cached, memory short" : "");
  }
  fmt::print("{}\n\n", load.Describe());

  const Measurement& strata = measurements[kStrata];
  if (strata.error) {
    fmt::print("strata ingest failed: {}\n", strata.error->ToString());
    return 1;
  }
  using Align = bench::MarkdownTable::Align;
  bench::MarkdownTable table({{"implementation", Align::kLeft},
                              {"median s"},
                              {"min-max s"},
                              {"median GB/s"},
                              {"strata / this, medians"},
                              {"strata / this, per round min-max"}});
  const double strata_median = strata.samples.Median();
  std::optional<double> ratio_vs_cp;
  bool failed = false;
  for (size_t which = 0; which < measurements.size(); ++which) {
    const Measurement& m = measurements[which];
    if (m.error) {
      table.AddRow({fmt::format("{} ({})", m.name, m.error->code() == ErrorCode::kUnavailable ? "unavailable" : "FAILED"),
                    "n/a", "n/a", "n/a", "n/a", "n/a"});
      failed = failed || m.error->code() != ErrorCode::kUnavailable;
      continue;
    }
    const double median = m.samples.Median();
    const double ratio = strata_median / median;
    if (which == kCp) ratio_vs_cp = ratio;
    // Rounds pair up: run i of each measurement ran back to back.
    bench::Samples paired;
    for (size_t i = 0; i < m.samples.count(); ++i) paired.Add(strata.samples.values()[i] / m.samples.values()[i]);
    table.AddRow({m.name, fmt::format("{:.3f}", median), Range(m.samples),
                  fmt::format("{:.2f}", bench::GigabytesPerSecond(size, median)), fmt::format("{:.2f}", ratio),
                  which == kStrata ? "-" : fmt::format("{:.2f}-{:.2f}", paired.Min(), paired.Max())});
  }
  fmt::print("{}", table.Render());
  fmt::print("\nstrata phases, median s (min-max): Writer() {:.3f} ({}), read + Write() loop {:.3f} ({}), Commit() {:.3f} ({})\n",
             writer_phase.Median(), Range(writer_phase), writes_phase.Median(), Range(writes_phase),
             commit_phase.Median(), Range(commit_phase));
  fmt::print("ratio = strata time / peer time: < 1 means strata is faster. sha256: {}\n", expected->hex());

  if (ratio_vs_cp) {
    fmt::print("target: strata ingest within {:.2f}x of cp + fsync: {} (median ratio {:.2f})\n", kTargetRatioVsCp,
               *ratio_vs_cp <= kTargetRatioVsCp ? "met" : "NOT met", *ratio_vs_cp);
  } else {
    fmt::print("target: strata ingest within {:.2f}x of cp + fsync: cannot tell, cp + fsync did not run\n",
               kTargetRatioVsCp);
  }
  if (failed) return 1;
  if (options.max_ratio_vs_cp > 0) {
    const bool ok = ratio_vs_cp && *ratio_vs_cp <= options.max_ratio_vs_cp;
    fmt::print("requirement strata / cp+fsync <= {:.2f}: {}\n", options.max_ratio_vs_cp, ok ? "met" : "NOT met");
    return ok ? 0 : 1;
  }
  return 0;
}

}  // namespace
}  // namespace strata

int main(int argc, char** argv) { return strata::Run(strata::ParseOptions(argc, argv)); }
