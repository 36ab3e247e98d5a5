// strata-bench-vm-layer: what making a layer's block image (snapshots/<id>/layer.erofs,
// snapshotter::EnsureLayerImage: mkfs.erofs + fsync + rename) costs next to unpacking that
// layer (gzip blob -> archive::ApplyLayer into an overlay-form dir -> syncfs), per layer of
// the unpack bench's generated "3layer" image. The target: conversion adds at most
// 30% to a pull, i.e. convert / unpack <= 0.30 (unpack alone is a lower bound of a pull,
// so the ratio is conservative).
//
// Each round: a fresh loop-mounted ext4 (bench::ScratchFilesystem), then per layer
// `sync; drop_caches`, the timed unpack, then the timed conversion of the dir just written
// (warm, as when the vm driver converts right after an unpack's commit).
//
//   strata-bench-vm-layer [--rounds N] [--size-mib N] [--cache-dir DIR] [--work-dir DIR]
// Needs root (drop_caches, loop mounts) and mkfs.erofs.
#include <fcntl.h>
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "archive/apply.h"
#include "archive/decompress.h"
#include "base/file.h"
#include "base/io.h"
#include "bench/bench_util.h"
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

[[noreturn]] void Die(const std::string& what) {
  fmt::print(stderr, "strata-bench-vm-layer: {}\n", what);
  std::exit(1);
}

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

}  // namespace
}  // namespace strata

int main(int argc, char** argv) {
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
  std::vector<bench::Samples> unpack(blobs.size()), convert(blobs.size());
  std::vector<uint64_t> file_bytes(blobs.size()), image_bytes(blobs.size());
  for (int round = 0; round < options.rounds; ++round) {
    const fs::path round_dir = work->path() / fmt::format("round-{}", round);
    auto scratch = OrDie(bench::ScratchFilesystem::Create(round_dir, uint64_t{8} << 30, work->path() / "log"),
                         "scratch filesystem");
    for (size_t i = 0; i < blobs.size(); ++i) {
      const fs::path snapshot = scratch->mountpoint() / std::to_string(i + 1);
      fs::create_directories(snapshot / "fs");
      OrDie(bench::DropCaches(), "drop caches");
      unpack[i].Add(bench::TimeSeconds([&] { file_bytes[i] = Unpack(blobs[i], snapshot / "fs"); }));
      convert[i].Add(bench::TimeSeconds([&] {
        OrDie(snapshotter::EnsureLayerImage(snapshot, fmt::format("layer-{}", i)), "layer image");
      }));
      image_bytes[i] = fs::file_size(snapshotter::LayerImagePath(snapshot));
    }
  }
  bench::MarkdownTable table({{"layer", bench::MarkdownTable::Align::kLeft},
                              {"file data MiB"},
                              {"layer.erofs MiB"},
                              {"unpack s (median)"},
                              {"layer.erofs s (median)"},
                              {"convert / unpack"}});
  double unpack_total = 0, convert_total = 0;
  for (size_t i = 0; i < blobs.size(); ++i) {
    const double u = unpack[i].Median(), c = convert[i].Median();
    unpack_total += u;
    convert_total += c;
    table.AddRow({fmt::format("{}", i + 1), fmt::format("{:.1f}", file_bytes[i] / 1048576.0),
                  fmt::format("{:.1f}", image_bytes[i] / 1048576.0), fmt::format("{:.3f}", u),
                  fmt::format("{:.3f}", c), fmt::format("{:.2f}", c / u)});
  }
  table.AddRow({"all", "", "", fmt::format("{:.3f}", unpack_total), fmt::format("{:.3f}", convert_total),
                fmt::format("{:.2f}", convert_total / unpack_total)});
  fmt::print("strata-bench-vm-layer: 3layer ({} MiB gzip), {} rounds, medians\n\n{}\n", options.size_mib,
             options.rounds, table.Render());
  const double ratio = convert_total / unpack_total;
  fmt::print("conversion adds {:.0f}% to the unpack (target <= {:.0f}%): {}\n", ratio * 100, kTargetRatio * 100,
             ratio <= kTargetRatio ? "met" : "NOT met");
  return 0;
}
