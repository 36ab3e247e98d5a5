// strata-bench-registry: pulling from and pushing to a loopback registry, strata against
// skopeo, side by side in one run.
//
// pull: `strata --root FRESH pull --no-unpack -q REF` against
//   `skopeo copy docker://REF oci:FRESH:1` -- fetch and store only, no unpack.
// push: `strata --root STORE push -q REF DST` (the image pulled into STORE beforehand)
//   against `skopeo copy oci:LAYOUT:1 docker://DST` (LAYOUT: the generated layout, blob for
//   blob what skopeo would make from the registry), each run into a freshly started, empty
//   registry so neither tool can skip blobs the registry already has or mount them.
//
// The test images are generated here, deterministically: N MiB of gzip layers (5 layers up
// to 150 MiB, 8 above) whose files mix random bytes and text so gzip reaches ~2:1. They
// are written as an OCI layout and pushed with skopeo into one source registry, untimed.
// Rounds alternate strata / skopeo, and which of them goes first, so drift hits both
// alike. Before every run the source is made resident in the page cache and the last run's
// output is deleted and `sync`ed, outside the timed region; what a tool writes (and fsyncs,
// or not) inside its run is its own cost. Figures are wall-clock medians over the rounds.
//
//   strata-bench-registry [--rounds N] [--sizes 100,300] [--strata PATH] [--skip-push 1]
//                         [--work-dir DIR]
// Everything (images, registries, stores) lives in a fresh directory under --work-dir
// (default $TMPDIR or /tmp), removed at the end; only processes started here are stopped.
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "base/error.h"
#include "base/file.h"
#include "bench/bench_util.h"
#include "bench/registry_bench_util.h"

namespace strata {
namespace {

namespace fs = std::filesystem;
using bench::kMiB;

// The targets: skopeo time / strata time, medians.
constexpr double kPullTarget = 2.0;
constexpr double kPushTarget = 1.5;
constexpr std::string_view kOciManifestType = "application/vnd.oci.image.manifest.v1+json";

struct Options {
  int rounds = 5;
  std::vector<size_t> sizes_mib = {100, 300};
  fs::path strata;
  bool skip_push = false;
  fs::path work_dir;  // empty: $TMPDIR or /tmp
};

Options ParseOptions(int argc, char** argv) {
  const bench::CommandLine command_line(
      "strata-bench-registry", "[--rounds N] [--sizes 100,300] [--strata PATH] [--skip-push 1] [--work-dir DIR]");
  Options options;
  command_line.Parse(argc, argv, [&](std::string_view flag, std::string_view value) {
    if (flag == "--rounds") {
      options.rounds = command_line.Positive<int>(flag, value);
    } else if (flag == "--sizes") {
      options.sizes_mib.clear();
      for (const std::string_view size : bench::SplitCommaList(value)) {
        options.sizes_mib.push_back(command_line.Positive<size_t>(flag, size));
      }
    } else if (flag == "--strata") {
      options.strata = fs::path(value);
    } else if (flag == "--skip-push") {
      options.skip_push = value != "0" && value != "false";
    } else if (flag == "--work-dir") {
      options.work_dir = fs::path(value);
    } else {
      return false;
    }
    return true;
  });
  if (options.strata.empty()) options.strata = bench::StrataNextToSelf();
  return options;
}

enum class Tool { kStrata, kSkopeo };

// One image, one operation: both tools' samples, paired by round.
struct Contest {
  std::string operation;  // "pull" / "push"
  size_t size_mib = 0;
  bench::TestImage image;
  bench::Samples strata;
  bench::Samples skopeo;
  bench::Samples strata_rss_mb;  // peak RSS (ru_maxrss) of each run
  bench::Samples skopeo_rss_mb;
  std::optional<Error> error;  // set: a run failed; the contest stops
};

// What one timed run of a tool gives.
struct TimedRun {
  double seconds = 0;
  double peak_rss_mb = 0;
};

// Runs `rounds` rounds of `run(tool, round)` (untimed setup, one timed run, cleanup; returns
// the timed run), strata first in even rounds and skopeo first in odd ones.
void RunRounds(Contest& contest, int rounds, const std::function<Result<TimedRun>(Tool, int)>& run) {
  for (int round = 0; round < rounds && !contest.error; ++round) {
    const Tool first = round % 2 == 0 ? Tool::kStrata : Tool::kSkopeo;
    for (const Tool tool : {first, first == Tool::kStrata ? Tool::kSkopeo : Tool::kStrata}) {
      const char* name = tool == Tool::kStrata ? "strata" : "skopeo";
      std::fprintf(stderr, "%s %zuMB round %d/%d: %s...", contest.operation.c_str(), contest.size_mib, round + 1,
                   rounds, name);
      Result<TimedRun> timed = run(tool, round);
      if (!timed) {
        std::fprintf(stderr, " FAILED\n%s\n", timed.error().ToString().c_str());
        contest.error = timed.error().WithContext(fmt::format("{} {} {}MB", name, contest.operation, contest.size_mib));
        return;
      }
      std::fprintf(stderr, " %.2f s, %.0f MB peak RSS\n", timed->seconds, timed->peak_rss_mb);
      (tool == Tool::kStrata ? contest.strata : contest.skopeo).Add(timed->seconds);
      (tool == Tool::kStrata ? contest.strata_rss_mb : contest.skopeo_rss_mb).Add(timed->peak_rss_mb);
    }
  }
}

void RemoveAndSync(const fs::path& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  ::sync();
}

// Everything the runs share.
struct Bench {
  Options options;
  fs::path work;
  fs::path log;  // skopeo's and the setup commands' output
  std::unique_ptr<bench::LoopbackRegistry> source;

  std::string ImageName(size_t size_mib) const { return fmt::format("bench/img{}:1", size_mib); }
  std::string SourceRef(size_t size_mib) const { return source->host() + "/" + ImageName(size_mib); }
  fs::path Layout(size_t size_mib) const { return work / fmt::format("layout-{}", size_mib); }
  fs::path PushStore() const { return work / "push-store"; }
  std::string LogTail() const { return bench::FileTail(log); }
};

// Times one `strata ... -q` command; checks it printed the image's manifest digest.
Result<TimedRun> TimeStrata(const Bench& bench, const std::vector<std::string>& args, const Digest& expected) {
  const fs::path out = bench.work / "strata.out";
  STRATA_ASSIGN_OR_RETURN(const bench::MeasuredRun run, bench::RunMeasured(args, out, bench.log));
  if (!run.succeeded) {
    return Fail(ErrorCode::kInternal, "`{}` failed (status {:#x}): {}", fmt::join(args, " "), run.wait_status,
                bench.LogTail());
  }
  const std::string output = ReadFile(out).value_or("");
  if (output.find(expected.hex()) == std::string::npos) {
    return Fail(ErrorCode::kInternal, "`{}` printed {:?}, expected {}", fmt::join(args, " "), output,
                expected.ToString());
  }
  return TimedRun{.seconds = run.seconds, .peak_rss_mb = bench::KibToMb(run.peak_rss_kib)};
}

Result<TimedRun> TimeSkopeo(const Bench& bench, const std::vector<std::string>& args) {
  STRATA_ASSIGN_OR_RETURN(const bench::MeasuredRun run, bench::RunMeasured(args, bench.work / "skopeo.out", bench.log));
  if (!run.succeeded) return Fail(ErrorCode::kInternal, "`{}` failed: {}", fmt::join(args, " "), bench.LogTail());
  return TimedRun{.seconds = run.seconds, .peak_rss_mb = bench::KibToMb(run.peak_rss_kib)};
}

Result<TimedRun> RunPull(const Bench& bench, const Contest& contest, Tool tool, int round) {
  const fs::path dest = bench.work / fmt::format("pulled-{}-{}", contest.size_mib, round);
  bench::EnsureTreeCached(bench.source->storage_dir());
  RemoveAndSync(dest);
  const std::string ref = bench.SourceRef(contest.size_mib);
  Result<TimedRun> seconds =
      tool == Tool::kStrata
          ? TimeStrata(bench, {bench.options.strata.native(), "--root", dest.native(), "pull", "--no-unpack", "-q", ref},
                       contest.image.manifest_digest)
          : TimeSkopeo(bench, {"skopeo", "copy", "-q", "--src-tls-verify=false", "docker://" + ref,
                               "oci:" + dest.native() + ":1"});
  if (seconds && tool == Tool::kSkopeo) {
    Result<std::string> index = ReadFile(dest / "index.json");
    if (!index || index->find(contest.image.manifest_digest.hex()) == std::string::npos) {
      seconds = Fail(ErrorCode::kInternal, "skopeo's layout {} lacks manifest {}", dest.native(),
                     contest.image.manifest_digest.ToString());
    }
  }
  RemoveAndSync(dest);
  return seconds;
}

Result<TimedRun> RunPush(const Bench& bench, const Contest& contest, Tool tool, int round) {
  const fs::path source = tool == Tool::kStrata ? bench.PushStore() : bench.Layout(contest.size_mib);
  bench::EnsureTreeCached(source);
  // A new, empty registry per run: no blob is there already, no mount can help.
  STRATA_ASSIGN_OR_RETURN(
      std::unique_ptr<bench::LoopbackRegistry> target,
      bench::LoopbackRegistry::Start(bench.work / fmt::format("push-registry-{}-{}", contest.size_mib, round)));
  ::sync();
  const std::string dest = target->host() + "/bench/pushed:1";
  Result<TimedRun> seconds =
      tool == Tool::kStrata
          ? TimeStrata(bench, {bench.options.strata.native(), "--root", source.native(), "push", "-q",
                        bench.SourceRef(contest.size_mib), dest},
                       contest.image.manifest_digest)
          : TimeSkopeo(bench, {"skopeo", "copy", "-q", "--dest-tls-verify=false", "oci:" + source.native() + ":1",
                               "docker://" + dest});
  if (seconds) {
    Result<int> status = bench::HttpStatus(target->port(), "HEAD",
                                           "/v2/bench/pushed/manifests/" + contest.image.manifest_digest.ToString(),
                                           kOciManifestType);
    if (!status || *status != 200) {
      seconds = Fail(ErrorCode::kInternal, "after the push, HEAD of manifest {} answers {}",
                     contest.image.manifest_digest.ToString(), status ? fmt::format("{}", *status) : "nothing");
    }
  }
  target.reset();  // stops the registry, removes its storage
  ::sync();
  return seconds;
}

// `strata --help` lists a push subcommand.
bool StrataHasPush(const fs::path& strata) {
  const std::optional<std::string> help = bench::RunCapturingStdout({strata.native(), "--help"});
  return help && help->find("\n  push") != std::string::npos;
}

std::string MedianAndRange(const bench::Samples& samples) {
  return fmt::format("{:.2f} ({:.2f}-{:.2f})", samples.Median(), samples.Min(), samples.Max());
}

// Prints the table of one operation and the one-line summaries; false if a contest failed.
bool Report(std::string_view operation, const std::vector<Contest>& contests, double target) {
  using Align = bench::MarkdownTable::Align;
  bench::MarkdownTable table({{"image", Align::kLeft},
                              {"layers"},
                              {"blobs MB"},
                              {"strata s, median (min-max)"},
                              {"skopeo s, median (min-max)"},
                              {"speed-up skopeo/strata"},
                              {"per-round speed-up"},
                              {"strata MB/s"}});
  std::string lines;
  bool ok = true;
  for (const Contest& c : contests) {
    const std::string image = fmt::format("img{} (~{} MiB gzip, {:.1f}:1)", c.size_mib, c.size_mib,
                                          static_cast<double>(c.image.tar_bytes) / c.image.compressed_bytes);
    const double megabytes = static_cast<double>(c.image.compressed_bytes) / 1e6;
    if (c.error || c.strata.count() == 0 || c.skopeo.count() == 0) {
      table.AddRow({image, fmt::format("{}", c.image.layers), fmt::format("{:.0f}", megabytes), "FAILED", "FAILED",
                    "n/a", "n/a", "n/a"});
      lines += fmt::format("{} {}MB: FAILED: {}\n", operation, c.size_mib, c.error ? c.error->ToString() : "no runs");
      ok = false;
      continue;
    }
    const double speed_up = c.skopeo.Median() / c.strata.Median();
    bench::Samples paired;  // round i of each ran back to back
    for (size_t i = 0; i < std::min(c.strata.count(), c.skopeo.count()); ++i) {
      paired.Add(c.skopeo.values()[i] / c.strata.values()[i]);
    }
    table.AddRow({image, fmt::format("{}", c.image.layers), fmt::format("{:.0f}", megabytes),
                  MedianAndRange(c.strata), MedianAndRange(c.skopeo), fmt::format("{:.2f}x", speed_up),
                  fmt::format("{:.2f}-{:.2f}x", paired.Min(), paired.Max()),
                  fmt::format("{:.0f}", megabytes / c.strata.Median())});
    lines += fmt::format("{} {}MB: strata {:.2f}s, skopeo {:.2f}s, speed-up {:.2f}x (target >= {:.1f}x: {})\n",
                         operation, c.size_mib, c.strata.Median(), c.skopeo.Median(), speed_up, target,
                         speed_up >= target ? "met" : "NOT met");
  }
  fmt::print("{}\n{}\n", table.Render(), lines);
  return ok;
}

// Generates every image, starts the source registry and pushes the images into it.
Status SetUp(Bench& bench, std::vector<bench::TestImage>& images) {
  STRATA_ASSIGN_OR_RETURN(bench.source, bench::LoopbackRegistry::Start(bench.work / "source-registry"));
  for (const size_t size_mib : bench.options.sizes_mib) {
    std::fprintf(stderr, "generating a %zu MiB image...\n", size_mib);
    STRATA_ASSIGN_OR_RETURN(bench::TestImage image, bench::WriteTestImageLayout(bench.Layout(size_mib), size_mib,
                                                                                /*seed=*/size_mib));
    const std::vector<std::string> push = {"skopeo", "copy", "-q", "--dest-tls-verify=false",
                                           "oci:" + bench.Layout(size_mib).native() + ":1",
                                           "docker://" + bench.SourceRef(size_mib)};
    if (!bench::RunLogged(push, bench.log)) {
      return Fail(ErrorCode::kUnavailable, "`{}` failed: {}", fmt::join(push, " "), bench.LogTail());
    }
    images.push_back(image);
  }
  return {};
}

int Run(Options options) {
  const bench::MachineLoad load = bench::ReadMachineLoad();  // before we add to it
  if (!fs::exists(options.strata)) {
    std::fprintf(stderr, "strata binary %s not found; pass --strata PATH\n", options.strata.c_str());
    return 2;
  }
  std::optional<TempDir> work = bench::CreateWorkDir("strata-bench-registry", options.work_dir);
  if (!work) return 1;
  Bench bench{.options = std::move(options), .work = work->path(), .log = work->path() / "commands.log", .source = {}};
  std::vector<bench::TestImage> images;
  if (Status set_up = SetUp(bench, images); !set_up) {
    std::fprintf(stderr, "setup failed: %s\n", set_up.error().ToString().c_str());
    return 1;
  }

  std::vector<Contest> pulls;
  for (size_t i = 0; i < images.size(); ++i) {
    Contest& contest = pulls.emplace_back(Contest{.operation = "pull", .size_mib = bench.options.sizes_mib[i],
                                                  .image = images[i]});
    RunRounds(contest, bench.options.rounds,
              [&](Tool tool, int round) { return RunPull(bench, contest, tool, round); });
  }

  const bool has_push = StrataHasPush(bench.options.strata);
  std::vector<Contest> pushes;
  if (!bench.options.skip_push && has_push) {
    for (size_t i = 0; i < images.size(); ++i) {
      Contest& contest = pushes.emplace_back(Contest{.operation = "push", .size_mib = bench.options.sizes_mib[i],
                                                     .image = images[i]});
      // Untimed: the image into the store strata pushes from.
      const std::vector<std::string> pull = {bench.options.strata.native(), "--root", bench.PushStore().native(),
                                             "pull", "--no-unpack", "-q", bench.SourceRef(contest.size_mib)};
      if (!bench::RunLogged(pull, bench.log)) {
        contest.error = Error(ErrorCode::kInternal, fmt::format("`{}` failed: {}", fmt::join(pull, " "), bench.LogTail()));
        continue;
      }
      RunRounds(contest, bench.options.rounds,
                [&](Tool tool, int round) { return RunPush(bench, contest, tool, round); });
    }
  }

  fmt::print("strata ({}) vs skopeo on one loopback docker-registry (distribution 2.8, plain HTTP); {} rounds, "
             "alternating tools and who goes first; wall-clock seconds, medians\n",
             bench.options.strata.native(), bench.options.rounds);
  fmt::print("{}; after the runs: load average {:.2f}\n", load.Describe(), bench::ReadMachineLoad().one_minute);
  fmt::print("work dir {} (removed at exit)\n\n", bench.work.native());
  fmt::print("## pull (fetch + store, no unpack): `strata pull --no-unpack -q` vs `skopeo copy docker:// oci:`\n\n");
  bool ok = Report("pull", pulls, kPullTarget);
  fmt::print("## push into a fresh empty registry per run: `strata push -q` vs `skopeo copy oci: docker://`\n\n");
  if (bench.options.skip_push) {
    fmt::print("push skipped (--skip-push)\n");
  } else if (!has_push) {
    fmt::print("strata push not available (`{} --help` lists no push command)\n", bench.options.strata.native());
  } else {
    ok = Report("push", pushes, kPushTarget) && ok;
  }
  bench::PeakRssTable memory;
  for (const std::vector<Contest>* contests : {&pulls, &pushes}) {
    for (const Contest& c : *contests) {
      const std::string operation =
          fmt::format("{} img{}", c.operation == "pull" ? "fetch (pull --no-unpack)" : "push", c.size_mib);
      memory.Add(operation, c.operation == "pull" ? "strata pull --no-unpack" : "strata push", c.strata_rss_mb,
                 "ru_maxrss of the command");
      memory.Add(operation, "skopeo copy", c.skopeo_rss_mb, "ru_maxrss of the command");
    }
  }
  fmt::print("\n{}", memory.Render());
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace strata

int main(int argc, char** argv) { return strata::Run(strata::ParseOptions(argc, argv)); }
