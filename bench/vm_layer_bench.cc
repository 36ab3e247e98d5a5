// strata-bench-vm-layer: what making a layer's block image (snapshots/<id>/layer.erofs,
// snapshotter::EnsureLayerImage: our EROFS encoder + fsync + rename) costs next to unpacking
// that layer (gzip blob -> archive::ApplyLayer into an overlay-form dir -> syncfs), per layer
// of the unpack bench's generated "3layer" image, with mkfs.erofs (erofs-utils) making the
// same image from the same dir as the peer. The target: conversion adds at most
// 30% to a pull. Measured on the product path: a cold `strata pull` from a loopback
// docker-registry, then `strata mount --isolation vm` twice; the first builds every
// layer.erofs, so conversion = first - second, and the target is conversion / pull <= 0.30.
// The per-layer convert / unpack table is the stricter view (an unpack is only part of a
// pull: no fetch, no blob write).
//
// Each round: a fresh loop-mounted ext4 (bench::ScratchFilesystem), then per layer
// `sync; drop_caches`, the timed unpack, then the timed conversion of the dir just written
// (warm, as when the vm driver converts right after an unpack's commit), then mkfs.erofs of
// the same dir (uncompressed, mtimes and xattrs kept, fsynced), the two orders alternating by
// round.
//
//   strata-bench-vm-layer [--rounds N] [--size-mib N] [--cache-dir DIR] [--work-dir DIR]
// Needs root (drop_caches, loop mounts), docker-registry, skopeo and mkfs.erofs (the peer).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "archive/apply.h"
#include "archive/decompress.h"
#include "base/file.h"
#include "base/io.h"
#include "base/subprocess.h"
#include "bench/bench_util.h"
#include "bench/registry_bench_util.h"
#include "bench/unpack_bench_util.h"
#include "snapshotter/erofs_layer.h"

namespace strata {
namespace {

namespace fs = std::filesystem;

constexpr double kTargetRatio = 0.30;
constexpr uint64_t kThreeLayerSeed = 3;

struct Options {
  int rounds = 3;
  size_t size_mib = 190;  // the unpack bench's 3layer size
  fs::path cache_dir = "/var/tmp/strata-bench-cache";
  fs::path work_dir;
};

// A fatal error. Thrown, not exit()ed, so the rounds' loop-mounted scratch filesystems (and
// the vm mounts in them), the registry and the work dir are cleaned up on the way out.
struct BenchFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};
[[noreturn]] void Die(const std::string& what) { throw BenchFailure(what); }

template <typename T>
T OrDie(Result<T> result, std::string_view what) {
  if (!result) Die(fmt::format("{}: {}", what, result.error().ToString()));
  return std::move(*result);
}
void OrDie(Status status, std::string_view what) {
  if (!status) Die(fmt::format("{}: {}", what, status.error().ToString()));
}

// The layer blobs of the layout's image tagged "1", bottom first.
std::vector<fs::path> LayerBlobs(const fs::path& layout) {
  auto blob = [&](const std::string& digest) { return layout / "blobs" / "sha256" / digest.substr(7); };
  const auto index = nlohmann::json::parse(OrDie(ReadFile(layout / "index.json"), "read index.json"));
  const auto manifest =
      nlohmann::json::parse(OrDie(ReadFile(blob(index["manifests"][0]["digest"].get<std::string>())), "read manifest"));
  std::vector<fs::path> layers;
  for (const auto& layer : manifest["layers"]) layers.push_back(blob(layer["digest"].get<std::string>()));
  return layers;
}

// gzip blob -> overlay-form dir -> syncfs; returns the tar's regular-file bytes.
uint64_t Unpack(const fs::path& blob, const fs::path& fs_dir) {
  UniqueFd fd = OrDie(OpenFile(blob, O_RDONLY), "open blob");
  FdReader raw(fd.get());
  auto reader = OrDie(archive::NewAutoDecompressingReader(raw), "decompress");
  auto stats = OrDie(archive::ApplyLayer(*reader, fs_dir), "apply " + blob.string());
  OrDie(SyncFilesystemOf(fs_dir), "syncfs");
  return stats.bytes;
}

// The peer: mkfs.erofs 1.5 making the same uncompressed image of `dir`, fsynced.
void MkfsErofs(const fs::path& dir, const fs::path& image) {
  static const auto mkfs = FindInPath("mkfs.erofs");
  if (!mkfs) Die("mkfs.erofs not found (install erofs-utils)");
  auto ran = OrDie(RunProgram(*mkfs, {"mkfs.erofs", "--quiet", "--preserve-mtime", "-x1", image.string(), dir.string()},
                              {.timeout = std::chrono::hours(1)}),
                   "run mkfs.erofs");
  if (!ran.Succeeded()) Die("mkfs.erofs " + ran.HowItEnded() + ": " + ran.err);
  UniqueFd fd = OrDie(OpenFile(image, O_RDONLY), "open mkfs.erofs image");
  if (::fsync(fd.get()) != 0) Die("fsync the mkfs.erofs image");
}

// The issue's own measure, on the product path: a cold `strata pull` of the image from a
// loopback registry (fetch, store, unpack), then what the first `strata mount --isolation vm`
// (which builds every layer's layer.erofs) takes over a second one (images already built).
struct PullRound {
  double pull = 0, first_mount = 0, second_mount = 0;
};

PullRound PullAndMountVm(const fs::path& strata, const std::string& ref, const fs::path& root, const fs::path& log) {
  const fs::path out = root.parent_path() / "strata.out";
  auto run = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {strata.string(), "--root", root.string()});
    const bench::MeasuredRun ran = OrDie(bench::RunMeasured(args, out, log), "run strata");
    if (!ran.succeeded) {
      Die(fmt::format("`strata {}` failed (wait status {:#x}): {}", args[3], ran.wait_status, bench::FileTail(log)));
    }
    return ran.seconds;
  };
  const fs::path target = root.parent_path() / "vm-mount";
  fs::create_directories(target);
  PullRound round;
  OrDie(bench::DropCaches(), "drop caches");
  round.pull = run({"pull", "--plain-http", "-q", ref});
  round.first_mount = run({"mount", "--isolation", "vm", ref, target.string()});
  run({"umount", target.string()});
  round.second_mount = run({"mount", "--isolation", "vm", ref, target.string()});
  run({"umount", target.string()});
  return round;
}

}  // namespace
}  // namespace strata

int Run(int argc, char** argv) {
  using namespace strata;
  const bench::CommandLine command_line("strata-bench-vm-layer",
                                        "[--rounds N] [--size-mib N] [--cache-dir DIR] [--work-dir DIR]");
  Options options;
  command_line.Parse(argc, argv, [&](std::string_view flag, std::string_view value) {
    if (flag == "--rounds") {
      options.rounds = command_line.Positive<int>(flag, value);
    } else if (flag == "--size-mib") {
      options.size_mib = command_line.Positive<size_t>(flag, value);
    } else if (flag == "--cache-dir") {
      options.cache_dir = fs::path(value);
    } else if (flag == "--work-dir") {
      options.work_dir = fs::path(value);
    } else {
      return false;
    }
    return true;
  });
  auto work = bench::CreateWorkDir("strata-bench-vm-layer", options.work_dir);
  if (!work) Die("cannot create a work dir");
  const fs::path layout = options.cache_dir / fmt::format("3layer-{}mib-seed{}", options.size_mib, kThreeLayerSeed);
  if (!fs::exists(layout / "index.json")) {
    std::error_code ec;
    fs::remove_all(layout, ec);
    fs::create_directories(options.cache_dir);
    fmt::print(stderr, "building the 3layer image ({} MiB) at {} ...\n", options.size_mib, layout.string());
    auto image = OrDie(bench::WriteThreeLayerLayout(layout, options.size_mib, kThreeLayerSeed), "build 3layer");
    OrDie(bench::WriteLayoutSummary(layout, image), "save summary");
  }
  const std::vector<fs::path> blobs = LayerBlobs(layout);
  const fs::path log = work->path() / "log";
  auto registry = OrDie(bench::LoopbackRegistry::Start(work->path() / "registry"), "start docker-registry");
  const std::string ref = fmt::format("{}/bench/3layer:1", registry->host());
  if (!bench::RunLogged({"skopeo", "copy", "-q", "--dest-tls-verify=false", "oci:" + layout.string() + ":1",
                         "docker://" + ref},
                        log)) {
    Die("skopeo copy to the registry failed: " + bench::FileTail(log));
  }
  const fs::path strata = bench::StrataNextToSelf();
  bench::Samples pull, first_mount, second_mount, conversion;
  std::vector<bench::Samples> unpack(blobs.size()), convert(blobs.size()), mkfs(blobs.size());
  std::vector<uint64_t> file_bytes(blobs.size()), image_bytes(blobs.size());
  for (int round = 0; round < options.rounds; ++round) {
    const fs::path round_dir = work->path() / fmt::format("round-{}", round);
    auto scratch = OrDie(bench::ScratchFilesystem::Create(round_dir, uint64_t{8} << 30, log), "scratch filesystem");
    const PullRound pulled = PullAndMountVm(strata, ref, scratch->mountpoint() / "strata-root", log);
    pull.Add(pulled.pull);
    first_mount.Add(pulled.first_mount);
    second_mount.Add(pulled.second_mount);
    conversion.Add(pulled.first_mount - pulled.second_mount);
    for (size_t i = 0; i < blobs.size(); ++i) {
      const fs::path snapshot = scratch->mountpoint() / std::to_string(i + 1);
      fs::create_directories(snapshot / "fs");
      OrDie(bench::DropCaches(), "drop caches");
      unpack[i].Add(bench::TimeSeconds([&] { file_bytes[i] = Unpack(blobs[i], snapshot / "fs"); }));
      auto ours = [&] {
        convert[i].Add(bench::TimeSeconds([&] {
          OrDie(snapshotter::EnsureLayerImage(snapshot, fmt::format("layer-{}", i)), "layer image");
        }));
      };
      auto peer = [&] { mkfs[i].Add(bench::TimeSeconds([&] { MkfsErofs(snapshot / "fs", snapshot / "mkfs.erofs"); })); };
      if (round % 2 == 0) {
        ours(), peer();
      } else {
        peer(), ours();
      }
      image_bytes[i] = fs::file_size(snapshotter::LayerImagePath(snapshot));
    }
  }
  bench::MarkdownTable table({{"layer", bench::MarkdownTable::Align::kLeft},
                              {"file data MiB"},
                              {"layer.erofs MiB"},
                              {"unpack s (median)"},
                              {"layer.erofs s (median)"},
                              {"mkfs.erofs s (median)"},
                              {"convert / unpack"},
                              {"mkfs.erofs / unpack"}});
  double unpack_total = 0, convert_total = 0, mkfs_total = 0;
  for (size_t i = 0; i < blobs.size(); ++i) {
    const double u = unpack[i].Median(), c = convert[i].Median(), m = mkfs[i].Median();
    unpack_total += u;
    convert_total += c;
    mkfs_total += m;
    table.AddRow({fmt::format("{}", i + 1), fmt::format("{:.1f}", file_bytes[i] / 1048576.0),
                  fmt::format("{:.1f}", image_bytes[i] / 1048576.0), fmt::format("{:.3f}", u),
                  fmt::format("{:.3f}", c), fmt::format("{:.3f}", m), fmt::format("{:.2f}", c / u),
                  fmt::format("{:.2f}", m / u)});
  }
  table.AddRow({"all", "", "", fmt::format("{:.3f}", unpack_total), fmt::format("{:.3f}", convert_total),
                fmt::format("{:.3f}", mkfs_total), fmt::format("{:.2f}", convert_total / unpack_total),
                fmt::format("{:.2f}", mkfs_total / unpack_total)});
  fmt::print("strata-bench-vm-layer: 3layer ({} MiB gzip), {} rounds, medians\n\n{}\n", options.size_mib,
             options.rounds, table.Render());
  bench::MarkdownTable pulls({{"image", bench::MarkdownTable::Align::kLeft},
                              {"strata pull s (median)"},
                              {"first vm mount s (median)"},
                              {"second vm mount s (median)"},
                              {"conversion s (median)"},
                              {"conversion / pull"}});
  const double ratio = conversion.Median() / pull.Median();
  pulls.AddRow({"3layer", fmt::format("{:.3f}", pull.Median()), fmt::format("{:.3f}", first_mount.Median()),
                fmt::format("{:.3f}", second_mount.Median()), fmt::format("{:.3f}", conversion.Median()),
                fmt::format("{:.2f}", ratio)});
  fmt::print("\nA cold `strata pull` from a loopback registry, then `strata mount --isolation vm` twice (the first\n"
             "builds the layer images; conversion = first - second), medians:\n\n{}\n",
             pulls.Render());
  fmt::print("conversion adds {:.0f}% to a pull (target <= {:.0f}%): {}; to the unpack alone (above): {:.0f}%\n",
             ratio * 100, kTargetRatio * 100, ratio <= kTargetRatio ? "met" : "NOT met",
             convert_total / unpack_total * 100);
  return 0;
}

int main(int argc, char** argv) {
  try {
    return Run(argc, argv);
  } catch (const strata::BenchFailure& failure) {
    fmt::print(stderr, "strata-bench-vm-layer: {}\n", failure.what());
    return 1;
  }
}
