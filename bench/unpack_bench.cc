// strata-bench-unpack: a cold pull with unpack, from a loopback registry, strata against
// containerd and against skopeo, side by side in one run.
//
//   strata:     `strata --root FRESH pull --plain-http -q REF` (fetch + unpack into overlay
//               snapshots once `strata pull` unpacks; fetch only before that -- the report
//               says which it saw).
//   containerd: `ctr --address SOCK -n bench images pull --plain-http REF` against a
//               containerd started for this run alone (own config, socket, root and state;
//               overlayfs snapshotter); ctr pull fetches, then unpacks into snapshots.
//   skopeo:     `skopeo copy docker://REF oci:FRESH:1` -- fetch only, the floor a pull with
//               unpack should not fall behind.
//
// Images (built once, cached under --cache-dir): "minbase", a Debian 12 debootstrap
// --variant=minbase rootfs packed as one gzip layer; "3layer", ~190 MiB of generated,
// deterministic gzip layers of many small and medium files (~2:1); "40layer", ~120 MiB of
// the same kind of content in 40 layers of very different sizes (a long Dockerfile: per-layer
// costs count). Each is pushed with skopeo
// into one loopback docker-registry, untimed.
// Every run starts from fresh state (new store, new containerd, new directory; by default on a
// freshly made loop-mounted ext4 of its own, see ScratchFilesystem; --fresh-fs 0 keeps it
// in the work dir instead), then
// `sync; echo 3 > /proc/sys/vm/drop_caches` -- the registry's files are dropped too, alike
// for all -- then the one timed command. The order of the three rotates round by round.
// Peak RSS is the measured process's ru_maxrss (wait4); for containerd, the daemon's VmHWM
// is reported too, since it does the unpacking.
//
//   strata-bench-unpack [--rounds N] [--images minbase,3layer,40layer] [--strata PATH]
//                       [--cache-dir DIR] [--work-dir DIR] [--fresh-fs 1|0]
// Needs root (drop_caches, containerd, overlay mounts). Everything temporary lives in a fresh
// directory under --work-dir (default $TMPDIR or /tmp), removed at the end with any mount
// left under it; only processes started here are stopped, by pid.
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
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
#include "bench/unpack_bench_util.h"

namespace strata {
namespace {

namespace fs = std::filesystem;

// The targets.
constexpr double kContainerdTarget = 5.0;  // ctr pull time / strata time
constexpr double kSkopeoTarget = 1.0;      // skopeo fetch time / strata time
constexpr double kRssTargetMb = 100.0;     // strata peak RSS, MB

constexpr std::string_view kRootfsTarball = "debian12-minbase-rootfs.tar";
constexpr size_t kThreeLayerMib = 190;
constexpr uint64_t kThreeLayerSeed = 3;
constexpr int kManyLayers = 40;
constexpr size_t kManyLayerMib = 120;
constexpr uint64_t kManyLayerSeed = 40;

struct Options {
  int rounds = 5;
  std::vector<std::string> images = {"minbase", "3layer", "40layer"};
  fs::path strata;
  fs::path cache_dir = "/var/tmp/strata-bench-cache";
  fs::path work_dir;  // empty: $TMPDIR or /tmp
  bool fresh_fs = true;  // each run's state on a fresh loop-mounted ext4 (ScratchFilesystem)
};

Options ParseOptions(int argc, char** argv) {
  const bench::CommandLine command_line(
      "strata-bench-unpack",
      "[--rounds N] [--images minbase,3layer,40layer] [--strata PATH] [--cache-dir DIR] [--work-dir DIR] "
      "[--fresh-fs 1|0]");
  Options options;
  command_line.Parse(argc, argv, [&](std::string_view flag, std::string_view value) {
    if (flag == "--rounds") {
      options.rounds = command_line.Positive<int>(flag, value);
    } else if (flag == "--images") {
      options.images = command_line.Choices(flag, value, {"minbase", "3layer", "40layer"});
    } else if (flag == "--strata") {
      options.strata = fs::path(value);
    } else if (flag == "--cache-dir") {
      options.cache_dir = fs::path(value);
    } else if (flag == "--fresh-fs") {
      if (value != "0" && value != "1") command_line.Usage(2);
      options.fresh_fs = value == "1";
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

enum class Peer { kStrata = 0, kContainerd = 1, kSkopeo = 2 };
constexpr std::array<Peer, 3> kPeers = {Peer::kStrata, Peer::kContainerd, Peer::kSkopeo};

std::string_view PeerName(Peer peer) {
  switch (peer) {
    case Peer::kStrata: return "strata";
    case Peer::kContainerd: return "ctr pull";
    case Peer::kSkopeo: return "skopeo";
  }
  return "?";
}

using bench::KibToMb;

// One peer's results on one image.
struct PeerResults {
  bench::Samples seconds;
  bench::Samples rss_mb;         // the measured process's peak RSS
  bench::Samples daemon_rss_mb;  // containerd only: the daemon's VmHWM after the pull
  std::optional<Error> error;    // set: a run failed; this peer is skipped from then on
};

struct Contest {
  std::string image;  // "minbase" / "3layer"
  bench::LayoutImage layout;
  std::array<PeerResults, 3> peers;
  // What the sanity checks of round 1 saw.
  std::string strata_unpack;      // e.g. "unpacked: 3 snapshot dirs, 9123 entries" or "fetch only"
  std::string containerd_unpack;  // from `ctr snapshots ls`
};

struct Bench {
  Options options;
  fs::path work;
  fs::path log;  // every command's stderr (and setup output)
  std::unique_ptr<bench::LoopbackRegistry> registry;

  std::string Ref(std::string_view image) const { return fmt::format("{}/bench/{}:1", registry->host(), image); }
  std::string LogTail() const { return bench::FileTail(log); }
};

// Where one run keeps its state: "state" on a fresh filesystem of its own at fs-`name` (kept
// alive by the returned holder), or `name` in the work dir with --fresh-fs 0. (Short: the
// containerd's sockets live in it, and a unix socket path must stay under 108 bytes.)
struct RunState {
  std::unique_ptr<bench::ScratchFilesystem> filesystem;
  fs::path dir;
};
Result<RunState> PrepareRunState(const Bench& bench, const std::string& name) {
  RunState state;
  if (bench.options.fresh_fs) {
    STRATA_ASSIGN_OR_RETURN(state.filesystem,
                            bench::ScratchFilesystem::Create(bench.work / ("fs-" + name), 8ULL << 30, bench.log));
    state.dir = state.filesystem->mountpoint() / "state";
  } else {
    state.dir = bench.work / name;
    STRATA_RETURN_IF_ERROR(bench::RemoveTree(state.dir));
  }
  return state;
}

// Counts the directory entries under root/snapshots/*/fs (what strata unpacked).
std::string DescribeStrataSnapshots(const fs::path& root) {
  std::error_code ec;
  const fs::path snapshots = root / "snapshots";
  if (!fs::is_directory(snapshots, ec)) return "fetch only (no snapshots/ under its root)";
  int dirs = 0;
  uint64_t entries = 0;
  for (const fs::directory_entry& snapshot : fs::directory_iterator(snapshots, ec)) {
    const fs::path tree = snapshot.path() / "fs";
    if (!fs::is_directory(tree, ec)) continue;
    ++dirs;
    for (auto it = fs::recursive_directory_iterator(tree, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
      ++entries;
    }
  }
  if (entries == 0) return fmt::format("fetch only ({} empty snapshot dirs)", dirs);
  return fmt::format("unpacked: {} snapshot dirs, {} entries", dirs, entries);
}

Result<double> RunStrata(const Bench& bench, Contest& contest, int round) {
  STRATA_ASSIGN_OR_RETURN(const RunState state, PrepareRunState(bench, fmt::format("strata-{}-{}", contest.image, round)));
  const fs::path root = state.dir;
  const fs::path out = bench.work / "strata.out";
  STRATA_RETURN_IF_ERROR(bench::DropCaches());
  const std::vector<std::string> args = {bench.options.strata.native(), "--root", root.native(), "pull",
                                         "--plain-http", "-q", bench.Ref(contest.image)};
  STRATA_ASSIGN_OR_RETURN(const bench::MeasuredRun run, bench::RunMeasured(args, out, bench.log));
  const std::string printed = ReadFile(out).value_or("");
  Status checked;
  if (!run.succeeded) {
    checked = Fail(ErrorCode::kInternal, "`{}` failed (status {:#x}): {}", fmt::join(args, " "), run.wait_status,
                   bench.LogTail());
  } else if (printed.find(contest.layout.manifest_digest.hex()) == std::string::npos) {
    checked = Fail(ErrorCode::kInternal, "`{}` printed {:?}, expected {}", fmt::join(args, " "), printed,
                   contest.layout.manifest_digest.ToString());
  }
  if (checked && round == 0) contest.strata_unpack = DescribeStrataSnapshots(root);
  STRATA_RETURN_IF_ERROR(bench::RemoveTree(root));
  ::sync();
  if (!checked) return Fail(checked.error());
  PeerResults& results = contest.peers[static_cast<int>(Peer::kStrata)];
  results.rss_mb.Add(KibToMb(run.peak_rss_kib));
  return run.seconds;
}

Result<double> RunContainerd(const Bench& bench, Contest& contest, int round) {
  STRATA_ASSIGN_OR_RETURN(const RunState state,
                          PrepareRunState(bench, fmt::format("containerd-{}-{}", contest.image, round)));
  const fs::path dir = state.dir;
  Result<double> seconds;
  uint64_t client_rss = 0;
  uint64_t daemon_rss = 0;
  {
    STRATA_ASSIGN_OR_RETURN(std::unique_ptr<bench::ScratchContainerd> daemon, bench::ScratchContainerd::Start(dir));
    const std::string socket = daemon->socket().native();
    STRATA_RETURN_IF_ERROR(bench::DropCaches());
    const std::vector<std::string> args = {"ctr", "--address", socket, "-n", "bench", "images", "pull",
                                           "--plain-http", bench.Ref(contest.image)};
    STRATA_ASSIGN_OR_RETURN(const bench::MeasuredRun run, bench::RunMeasured(args, bench.work / "ctr.out", bench.log));
    daemon_rss = daemon->PeakRssKib();
    client_rss = run.peak_rss_kib;
    if (!run.succeeded) {
      seconds = Fail(ErrorCode::kInternal, "`{}` failed (status {:#x}): {}\ncontainerd: {}", fmt::join(args, " "),
                     run.wait_status, bench::FileTail(bench.work / "ctr.out"), daemon->LogTail());
    } else {
      seconds = run.seconds;
    }
    if (seconds && round == 0) {
      // ctr pull unpacks by default: one committed overlayfs snapshot per layer.
      const std::optional<std::string> snapshots =
          bench::RunCapturingStdout({"ctr", "--address", socket, "-n", "bench", "snapshots", "--snapshotter",
                                     "overlayfs", "ls"});
      const std::optional<std::string> images =
          bench::RunCapturingStdout({"ctr", "--address", socket, "-n", "bench", "images", "ls", "-q"});
      const long committed =
          snapshots ? std::count(snapshots->begin(), snapshots->end(), '\n') - 1 : -1;  // minus the header
      contest.containerd_unpack =
          fmt::format("`ctr snapshots ls`: {} overlayfs snapshots for {} layers{}", committed, contest.layout.layers,
                      images && images->find(bench.Ref(contest.image)) != std::string::npos ? "" : "; image NOT listed");
      if (committed < contest.layout.layers) {
        seconds = Fail(ErrorCode::kInternal, "ctr pull left {} snapshots for {} layers: {}", committed,
                       contest.layout.layers, snapshots.value_or("(ctr snapshots ls failed)"));
      }
    }
    daemon->Stop();
    // There should be nothing: ctr pull's apply mounts are temporary.
    if (Result<int> left = bench::UnmountUnder(dir); left && *left > 0) {
      std::fprintf(stderr, " (containerd left %d mounts under %s; unmounted) ", *left, dir.c_str());
    }
  }  // the destructor removes dir
  STRATA_RETURN_IF_ERROR(bench::RemoveTree(dir));
  ::sync();
  if (!seconds) return seconds;
  PeerResults& results = contest.peers[static_cast<int>(Peer::kContainerd)];
  results.rss_mb.Add(KibToMb(client_rss));
  results.daemon_rss_mb.Add(KibToMb(daemon_rss));
  return seconds;
}

Result<double> RunSkopeo(const Bench& bench, Contest& contest, int round) {
  STRATA_ASSIGN_OR_RETURN(const RunState state, PrepareRunState(bench, fmt::format("skopeo-{}-{}", contest.image, round)));
  const fs::path dest = state.dir;
  STRATA_RETURN_IF_ERROR(bench::DropCaches());
  const std::vector<std::string> args = {"skopeo", "copy", "-q", "--src-tls-verify=false",
                                         "docker://" + bench.Ref(contest.image), "oci:" + dest.native() + ":1"};
  STRATA_ASSIGN_OR_RETURN(const bench::MeasuredRun run, bench::RunMeasured(args, bench.work / "skopeo.out", bench.log));
  Result<double> seconds = run.seconds;
  if (!run.succeeded) {
    seconds = Fail(ErrorCode::kInternal, "`{}` failed: {}", fmt::join(args, " "), bench.LogTail());
  } else if (ReadFile(dest / "index.json").value_or("").find(contest.layout.manifest_digest.hex()) ==
             std::string::npos) {
    seconds = Fail(ErrorCode::kInternal, "skopeo's layout {} lacks manifest {}", dest.native(),
                   contest.layout.manifest_digest.ToString());
  }
  STRATA_RETURN_IF_ERROR(bench::RemoveTree(dest));
  ::sync();
  if (seconds) contest.peers[static_cast<int>(Peer::kSkopeo)].rss_mb.Add(KibToMb(run.peak_rss_kib));
  return seconds;
}

// Round r runs the peers in the order rotated by r, so each goes first, second and last alike.
void RunRounds(const Bench& bench, Contest& contest) {
  const int rounds = bench.options.rounds;
  for (int round = 0; round < rounds; ++round) {
    for (int k = 0; k < 3; ++k) {
      const Peer peer = kPeers[(round + k) % 3];
      PeerResults& results = contest.peers[static_cast<int>(peer)];
      if (results.error) continue;
      std::fprintf(stderr, "%s round %d/%d: %s...", contest.image.c_str(), round + 1, rounds,
                   std::string(PeerName(peer)).c_str());
      Result<double> seconds = peer == Peer::kStrata       ? RunStrata(bench, contest, round)
                               : peer == Peer::kContainerd ? RunContainerd(bench, contest, round)
                                                           : RunSkopeo(bench, contest, round);
      if (!seconds) {
        std::fprintf(stderr, " FAILED\n%s\n", seconds.error().ToString().c_str());
        results.error = seconds.error().WithContext(fmt::format("{} on {}", PeerName(peer), contest.image));
        continue;
      }
      std::fprintf(stderr, " %.2f s\n", *seconds);
      results.seconds.Add(*seconds);
    }
  }
}

// ---- images ----

// The debootstrap tarball in the cache, made (minutes, network) when missing.
Result<fs::path> EnsureRootfsTarball(const Bench& bench) {
  const fs::path tarball = bench.options.cache_dir / kRootfsTarball;
  std::error_code ec;
  if (fs::file_size(tarball, ec) > 0 && !ec) return tarball;
  std::fprintf(stderr, "debootstrap --variant=minbase bookworm (once; cached as %s)...\n", tarball.c_str());
  const fs::path build = bench.options.cache_dir / fmt::format(".debootstrap-{}", ::getpid());
  STRATA_RETURN_IF_ERROR(bench::RemoveTree(build));
  const std::vector<std::string> debootstrap = {"debootstrap", "--variant=minbase", "bookworm",
                                                (build / "rootfs").native(), "http://deb.debian.org/debian"};
  const std::vector<std::string> tar = {"tar", "--numeric-owner", "--xattrs", "-C", (build / "rootfs").native(),
                                        "-cf", (build / "rootfs.tar").native(), "."};
  Status made;
  if (!bench::RunLogged(debootstrap, bench.log)) {
    made = Fail(ErrorCode::kUnavailable, "`{}` failed: {}", fmt::join(debootstrap, " "), bench.LogTail());
  } else if (!bench::RunLogged(tar, bench.log)) {
    made = Fail(ErrorCode::kInternal, "`{}` failed: {}", fmt::join(tar, " "), bench.LogTail());
  } else {
    fs::rename(build / "rootfs.tar", tarball, ec);
    if (ec) made = Fail(ErrorCode::kInternal, "rename to {}: {}", tarball.native(), ec.message());
  }
  (void)bench::RemoveTree(build);  // debootstrap's proc/sys mounts, if it left any, go first
  if (!made) return Fail(made.error());
  return tarball;
}

fs::path CachedLayout(const Options& options, std::string_view image) {
  // The suffix names the generator version: bump it when the generated content changes.
  if (image == "minbase") return options.cache_dir / "layout-minbase-v1";
  if (image == "40layer") return options.cache_dir / fmt::format("layout-{}layer-{}-v1", kManyLayers, kManyLayerMib);
  return options.cache_dir / fmt::format("layout-3layer-{}-v2", kThreeLayerMib);
}

// The image's OCI layout in the cache, built when missing (into a temp dir, then renamed).
Result<bench::LayoutImage> EnsureLayout(const Bench& bench, std::string_view image) {
  const fs::path layout = CachedLayout(bench.options, image);
  if (Result<bench::LayoutImage> cached = bench::ReadLayoutSummary(layout); cached) return cached;
  std::fprintf(stderr, "building the %s image layout (once; cached as %s)...\n", std::string(image).c_str(),
               layout.c_str());
  const fs::path partial = layout.native() + fmt::format(".partial-{}", ::getpid());
  STRATA_RETURN_IF_ERROR(bench::RemoveTree(partial));
  STRATA_RETURN_IF_ERROR(bench::RemoveTree(layout));
  Result<bench::LayoutImage> built = Fail(ErrorCode::kInternal, "unbuilt");
  if (image == "minbase") {
    STRATA_ASSIGN_OR_RETURN(const fs::path tarball, EnsureRootfsTarball(bench));
    built = bench::WriteSingleLayerLayout(partial, tarball);
  } else if (image == "40layer") {
    built = bench::WriteManyLayerLayout(partial, kManyLayers, kManyLayerMib, kManyLayerSeed);
  } else {
    built = bench::WriteThreeLayerLayout(partial, kThreeLayerMib, kThreeLayerSeed);
  }
  if (!built) {
    (void)bench::RemoveTree(partial);
    return built;
  }
  std::error_code ec;
  fs::rename(partial, layout, ec);
  if (ec) return Fail(ErrorCode::kInternal, "rename {}: {}", partial.native(), ec.message());
  STRATA_RETURN_IF_ERROR(bench::WriteLayoutSummary(layout, *built));
  return built;
}

Status SetUp(Bench& bench, std::vector<Contest>& contests) {
  std::error_code ec;
  fs::create_directories(bench.options.cache_dir, ec);
  if (ec) return Fail(ErrorCode::kInternal, "mkdir {}: {}", bench.options.cache_dir.native(), ec.message());
  STRATA_ASSIGN_OR_RETURN(bench.registry, bench::LoopbackRegistry::Start(bench.work / "registry"));
  for (const std::string& image : bench.options.images) {
    STRATA_ASSIGN_OR_RETURN(const bench::LayoutImage layout, EnsureLayout(bench, image));
    const std::vector<std::string> push = {"skopeo", "copy", "-q", "--dest-tls-verify=false",
                                           "oci:" + CachedLayout(bench.options, image).native() + ":1",
                                           "docker://" + bench.Ref(image)};
    if (!bench::RunLogged(push, bench.log)) {
      return Fail(ErrorCode::kUnavailable, "`{}` failed: {}", fmt::join(push, " "), bench.LogTail());
    }
    contests.push_back(Contest{.image = image, .layout = layout, .peers = {}, .strata_unpack = {},
                               .containerd_unpack = {}});
  }
  return {};
}

// ---- report ----

std::string MedianAndRange(const bench::Samples& samples, int decimals = 2) {
  if (samples.count() == 0) return "n/a";
  return fmt::format("{:.{}f} ({:.{}f}-{:.{}f})", samples.Median(), decimals, samples.Min(), decimals,
                     samples.Max(), decimals);
}

std::string ImageLabel(const Contest& c) {
  return fmt::format("{} ({} layer{})", c.image, c.layout.layers, c.layout.layers == 1 ? "" : "s");
}

// other's median time / strata's median time.
std::string Ratio(const PeerResults& other, const PeerResults& strata) {
  if (other.seconds.count() == 0 || strata.seconds.count() == 0) return "n/a";
  return fmt::format("{:.2f}x", other.seconds.Median() / strata.seconds.Median());
}

bool Report(const std::vector<Contest>& contests) {
  using Align = bench::MarkdownTable::Align;
  bench::MarkdownTable sizes({{"image", Align::kLeft},
                              {"gzip MB"},
                              {"tar MB"},
                              {"file bytes MB"},
                              {"tar entries"},
                              {"manifest", Align::kLeft}});
  bench::MarkdownTable times({{"image", Align::kLeft},
                              {"strata s, median (min-max)"},
                              {"ctr pull s"},
                              {"skopeo fetch s"},
                              {"ctr/strata"},
                              {"skopeo/strata"},
                              {"strata MB/s (gzip)"}});
  bench::PeakRssTable memory;
  std::string lines;
  bool ok = true;
  for (const Contest& c : contests) {
    const PeerResults& strata = c.peers[static_cast<int>(Peer::kStrata)];
    const PeerResults& containerd = c.peers[static_cast<int>(Peer::kContainerd)];
    const PeerResults& skopeo = c.peers[static_cast<int>(Peer::kSkopeo)];
    const double gzip_mb = static_cast<double>(c.layout.compressed_bytes) / 1e6;
    sizes.AddRow({ImageLabel(c), fmt::format("{:.1f}", gzip_mb),
                  fmt::format("{:.1f}", static_cast<double>(c.layout.tar_bytes) / 1e6),
                  fmt::format("{:.1f}", static_cast<double>(c.layout.file_bytes) / 1e6),
                  fmt::format("{}", c.layout.entries), c.layout.manifest_digest.ToString().substr(0, 19)});
    times.AddRow({ImageLabel(c), MedianAndRange(strata.seconds), MedianAndRange(containerd.seconds),
                  MedianAndRange(skopeo.seconds), Ratio(containerd, strata), Ratio(skopeo, strata),
                  strata.seconds.count() ? fmt::format("{:.0f}", gzip_mb / strata.seconds.Median()) : "n/a"});
    const std::string operation = "pull + unpack " + ImageLabel(c);
    memory.Add(operation, "strata pull", strata.rss_mb, "ru_maxrss of the command");
    memory.Add(operation, "ctr images pull (client)", containerd.rss_mb, "ru_maxrss of the command");
    memory.Add(operation, "containerd (daemon, unpacks)", containerd.daemon_rss_mb,
               "VmHWM of the daemon after the pull");
    memory.Add(operation, "skopeo copy (fetch only)", skopeo.rss_mb, "ru_maxrss of the command");
    for (const Peer peer : kPeers) {
      const PeerResults& r = c.peers[static_cast<int>(peer)];
      if (r.error) {
        lines += fmt::format("{} {}: FAILED: {}\n", c.image, PeerName(peer), r.error->ToString());
        ok = false;
      }
    }
    lines += fmt::format("{}: strata {}; containerd {}\n", c.image,
                         c.strata_unpack.empty() ? "(not checked)" : c.strata_unpack,
                         c.containerd_unpack.empty() ? "(not checked)" : c.containerd_unpack);
    if (strata.seconds.count() && containerd.seconds.count()) {
      const double ratio = containerd.seconds.Median() / strata.seconds.Median();
      lines += fmt::format("{}: strata vs ctr pull: {:.2f}x faster (target >= {:.0f}x: {})\n", c.image, ratio,
                           kContainerdTarget, ratio >= kContainerdTarget ? "met" : "NOT met");
    }
    if (strata.seconds.count() && skopeo.seconds.count()) {
      const double ratio = skopeo.seconds.Median() / strata.seconds.Median();
      lines += fmt::format("{}: strata vs skopeo fetch-only: {:.2f}x (target >= {:.1f}x, no slower: {})\n", c.image,
                           ratio, kSkopeoTarget, ratio >= kSkopeoTarget ? "met" : "NOT met");
    }
    if (strata.rss_mb.count()) {
      lines += fmt::format("{}: strata peak RSS max {:.0f} MB (target < {:.0f} MB: {})\n", c.image,
                           strata.rss_mb.Max(), kRssTargetMb, strata.rss_mb.Max() < kRssTargetMb ? "met" : "NOT met");
    }
  }
  fmt::print("### Images\n\n{}\n### Cold pull + unpack, wall seconds\n\n{}\n{}\n{}", sizes.Render(), times.Render(),
             memory.Render(), lines);
  return ok;
}

// A note when `strata pull --help` does not suggest that pull unpacks.
std::string StrataUnpackNote(const fs::path& strata) {
  const std::optional<std::string> help = bench::RunCapturingStdout({strata.native(), "pull", "--help"});
  if (!help) return "note: `strata pull --help` failed";
  if (help->find("unpack") == std::string::npos) {
    return "note: `strata pull --help` does not mention unpacking: this strata build probably only fetches";
  }
  if (help->find("not built yet") != std::string::npos || help->find("not yet") != std::string::npos) {
    return "note: `strata pull --help` says unpacking is not built yet: this strata build only fetches, so the "
           "strata column is fetch-only";
  }
  return {};
}

int Run(Options options) {
  const bench::MachineLoad load = bench::ReadMachineLoad();  // before we add to it
  if (::geteuid() != 0) {
    std::fprintf(stderr, "strata-bench-unpack needs root (drop_caches, containerd, overlay mounts)\n");
    return 2;
  }
  if (!fs::exists(options.strata)) {
    std::fprintf(stderr, "strata binary %s not found; pass --strata PATH\n", options.strata.c_str());
    return 2;
  }
  for (const char* tool : {"containerd", "ctr", "skopeo", "docker-registry"}) {
    if (!bench::RunCapturingStdout({"sh", "-c", fmt::format("command -v {}", tool)})) {
      std::fprintf(stderr, "%s not found in PATH (scripts/setup installs it)\n", tool);
      return 2;
    }
  }
  const std::string note = StrataUnpackNote(options.strata);
  if (!note.empty()) std::fprintf(stderr, "%s\n", note.c_str());
  std::optional<TempDir> work = bench::CreateWorkDir("strata-bench-unpack", options.work_dir);
  if (!work) return 1;
  int status = 0;
  {
    Bench bench{.options = std::move(options), .work = work->path(), .log = work->path() / "commands.log",
                .registry = {}};
    std::vector<Contest> contests;
    if (Status set_up = SetUp(bench, contests); !set_up) {
      std::fprintf(stderr, "setup failed: %s\n", set_up.error().ToString().c_str());
      status = 1;
    } else {
      for (Contest& contest : contests) RunRounds(bench, contest);
      fmt::print("## strata-bench-unpack: cold pull + unpack from a loopback registry\n\n");
      fmt::print("{}; {} round(s), page cache dropped before every run; strata {}\n", load.Describe(),
                 bench.options.rounds, bench.options.strata.native());
      if (!note.empty()) fmt::print("{}\n", note);
      std::string version = bench::RunCapturingStdout({"containerd", "--version"}).value_or("containerd (version unknown)");
      while (!version.empty() && version.back() == '\n') version.pop_back();
      fmt::print("{}; overlayfs snapshotter; config:\n```toml\n{}```\n\n", version,
                 bench::ScratchContainerd::ConfigText("WORK/containerd-IMAGE-ROUND"));
      status = Report(contests) ? 0 : 1;
    }
  }  // the registry stops here
  if (Status removed = bench::RemoveTree(work->path()); !removed) {
    std::fprintf(stderr, "cleanup: %s\n", removed.error().ToString().c_str());
  }
  return status;
}

}  // namespace
}  // namespace strata

int main(int argc, char** argv) { return strata::Run(strata::ParseOptions(argc, argv)); }
