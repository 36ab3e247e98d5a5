// strata-bench-windows-unpack: what the Windows layer format costs at unpack time.
//
// One synthetic Windows base layer (~--size-mib of files under Files/: many small files and a
// few large ones, mixed ~2:1 compressible content, MSWINDOWS.fileattr, MSWINDOWS.rawsd and
// LIBARCHIVE.creationtime records on every entry, an alternate data stream on some files,
// the five config hives) and a Linux layer of the very same entries, names, sizes and data
// without those records. Both tars are built in memory, untimed; then, alternating who goes
// first each round, archive::ApplyWindowsLayer (is_base) and archive::ApplyLayer each unpack
// their tar into a fresh empty directory on the work dir's filesystem (after a syncfs, so
// neither pays for the other's writeback). With --gzip 1 (default) the same again from gzip
// blobs (igzip level 1) through archive's decompressing reader. Reports medians, ranges and
// the Windows/Linux ratio (target <= 1.3x).
//
//   strata-bench-windows-unpack [--size-mib 300] [--rounds 5] [--gzip 1|0] [--work-dir DIR]
// Run as root (ApplyLayer chowns to the tar's owners as a pull does). Everything lives in a
// fresh directory under --work-dir (default $TMPDIR or /tmp; use a disk, not tmpfs),
// removed at the end.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "archive/apply.h"
#include "archive/compress.h"
#include "archive/decompress.h"
#include "archive/tar_writer.h"
#include "archive/windows_layer.h"
#include "base/error.h"
#include "base/file.h"
#include "base/io.h"
#include "bench/bench_util.h"
#include "bench/test_data.h"

namespace strata {
namespace {

namespace fs = std::filesystem;
using bench::kMiB;

constexpr double kTargetRatio = 1.3;  // Windows apply time / Linux apply time
constexpr uint64_t kSeed = 0x57696e646f7773ull;
constexpr size_t kDirs = 240;
constexpr size_t kStreamEvery = 40;  // one file in this many carries an ADS
constexpr uint64_t kHiveBytes = 512 * 1024;
// O:BUG:BU as a self-relative security descriptor, base64 (what MSWINDOWS.rawsd holds).
constexpr std::string_view kRawSd = "AQAAgBQAAAAkAAAAAAAAAAAAAAABAgAAAAAABSAAAAAhAgAAAQIAAAAAAAUgAAAAIQIAAA==";
constexpr uint32_t kAttrDirectory = 0x10;
constexpr uint32_t kAttrArchive = 0x20;
constexpr archive::TarTime kMtime{1'700'000'000, 500'000'000};

struct Options {
  size_t size_mib = 300;
  int rounds = 5;
  bool gzip = true;
  fs::path work_dir;
};

Options ParseOptions(int argc, char** argv) {
  const bench::CommandLine command_line("strata-bench-windows-unpack",
                                        "[--size-mib 300] [--rounds 5] [--gzip 1|0] [--work-dir DIR]");
  Options options;
  command_line.Parse(argc, argv, [&](std::string_view flag, std::string_view value) {
    if (flag == "--size-mib") {
      options.size_mib = command_line.Positive<size_t>(flag, value);
    } else if (flag == "--rounds") {
      options.rounds = command_line.Positive<int>(flag, value);
    } else if (flag == "--gzip") {
      if (value != "0" && value != "1") command_line.Usage(2);
      options.gzip = value == "1";
    } else if (flag == "--work-dir") {
      options.work_dir = value;
    } else {
      return false;
    }
    return true;
  });
  return options;
}

// One entry of the layer, in archive order: a directory, a file, or a file's stream.
struct PlannedEntry {
  std::string name;  // "Files/..." (a stream: "<file>:<stream>")
  bool dir = false;
  bool stream = false;
  uint64_t size = 0;
  uint64_t content_seed = 0;
};

// The tree: Files/Windows/System32/config with the five hives, then kDirs directories of
// files whose sizes are mostly small (log-uniform 512 B..32 KiB) with one in twenty large
// (32 KiB..8 MiB), until `total_bytes` of file data.
std::vector<PlannedEntry> PlanLayer(uint64_t total_bytes) {
  bench::SeededRandom random(kSeed);
  std::vector<PlannedEntry> plan;
  uint64_t bytes = 0;
  for (const char* dir : {"Files", "Files/Windows", "Files/Windows/System32", "Files/Windows/System32/config"}) {
    plan.push_back({.name = dir, .dir = true});
  }
  for (const char* hive : {"DEFAULT", "SAM", "SECURITY", "SOFTWARE", "SYSTEM"}) {
    plan.push_back({.name = fmt::format("Files/Windows/System32/config/{}", hive), .size = kHiveBytes,
                    .content_seed = random.Next()});
    bytes += kHiveBytes;
  }
  std::vector<std::string> dirs;
  for (size_t i = 0; i < kDirs; ++i) {
    dirs.push_back(i % 3 == 0   ? fmt::format("Files/Windows/WinSxS/amd64_component-{:03}", i)
                   : i % 3 == 1 ? fmt::format("Files/Program Files/Vendor {:03}", i)
                                : fmt::format("Files/Windows/System32/DriverStore/pkg{:03}", i));
  }
  for (const char* parent : {"Files/Windows/WinSxS", "Files/Program Files", "Files/Windows/System32/DriverStore"}) {
    plan.push_back({.name = parent, .dir = true});
  }
  std::sort(dirs.begin(), dirs.end());
  const uint64_t per_dir = (total_bytes - std::min(total_bytes, bytes)) / kDirs + 1;
  size_t files = 0;
  for (const std::string& dir : dirs) {
    plan.push_back({.name = dir, .dir = true});
    for (uint64_t in_dir = 0; in_dir < per_dir && bytes < total_bytes; ++files) {
      const uint64_t size = random.Below(20) == 0 ? random.LogUniform(32 * 1024, 8 * kMiB) : random.LogUniform(512, 32 * 1024);
      const std::string name = fmt::format("{}/file{:05}.dll", dir, files);
      plan.push_back({.name = name, .size = size, .content_seed = random.Next()});
      in_dir += size;
      bytes += size;
      if (files % kStreamEvery == 0) {
        plan.push_back({.name = name + ":Zone.Identifier", .stream = true, .size = 64 + random.Below(512),
                        .content_seed = random.Next()});
      }
    }
  }
  return plan;
}

// The tar of `plan`: Windows form (mode = type bits only, MSWINDOWS.* / LIBARCHIVE.* records
// on every entry but streams) or Linux form (0755/0644, no records). Same data either way.
Result<std::string> WriteLayerTar(const std::vector<PlannedEntry>& plan, bool windows, uint64_t size_hint) {
  std::string tar;
  tar.reserve(size_hint + size_hint / 8);
  archive::TarWriter writer([&](std::string_view bytes) -> Status {
    tar.append(bytes);
    return {};
  });
  const bench::MixedContent mix{.block_size = 64 * 1024, .random_share = 0.45, .lines = bench::kTextLines,
                                .whole_blocks = false};
  std::string block;
  for (const PlannedEntry& planned : plan) {
    archive::TarEntry entry;
    entry.name = planned.name;
    entry.type = planned.dir ? archive::TarEntryType::kDirectory : archive::TarEntryType::kRegular;
    entry.mtime = kMtime;
    entry.size = planned.size;
    if (windows) {
      entry.mode = 0;
      if (!planned.stream) {
        entry.pax_records["MSWINDOWS.fileattr"] = std::to_string(planned.dir ? kAttrDirectory : kAttrArchive);
        entry.pax_records["MSWINDOWS.rawsd"] = std::string(kRawSd);
        entry.pax_records["LIBARCHIVE.creationtime"] = "1690000000.1234567";
      }
    } else {
      entry.mode = planned.dir ? 0755 : 0644;
    }
    STRATA_RETURN_IF_ERROR(writer.WriteHeader(entry));
    if (planned.size > 0) {
      bench::SeededRandom random(planned.content_seed);
      STRATA_RETURN_IF_ERROR(bench::WriteMixedContent(random, planned.size, mix, block,
                                                      [&](std::string_view data) { return writer.WriteData(data); }));
    }
  }
  STRATA_RETURN_IF_ERROR(writer.Finish());
  return tar;
}

Result<std::string> Gzip(std::string_view tar) {
  std::string blob;
  STRATA_ASSIGN_OR_RETURN(auto compressor, archive::Compressor::Create(oci::Compression::kGzip,
                                                                        [&](std::string_view bytes) -> Status {
                                                                          blob.append(bytes);
                                                                          return {};
                                                                        }));
  for (size_t at = 0; at < tar.size(); at += kMiB) STRATA_RETURN_IF_ERROR(compressor->Write(tar.substr(at, kMiB)));
  STRATA_RETURN_IF_ERROR(compressor->Finish());
  return blob;
}

// One layer to unpack: its bytes and how.
struct Subject {
  std::string label;
  bool windows = false;
  bool gzip = false;
  const std::string* data = nullptr;
  bench::Samples samples;
};

// Unpacks `subject` into the fresh dir `out`; seconds taken.
Result<double> UnpackOnce(const Subject& subject, const fs::path& out) {
  STRATA_RETURN_IF_ERROR(bench::MakeDirs(out));
  STRATA_RETURN_IF_ERROR(SyncFilesystemOf(out));
  Status status;
  const double seconds = bench::TimeSeconds([&] {
    StringViewReader raw(*subject.data);
    std::unique_ptr<ByteReader> decompressed;
    ByteReader* tar = &raw;
    if (subject.gzip) {
      auto reader = archive::NewDecompressingReader(raw, oci::Compression::kGzip);
      if (!reader) {
        status = std::unexpected(reader.error());
        return;
      }
      decompressed = std::move(*reader);
      tar = decompressed.get();
    }
    if (subject.windows) {
      auto applied = archive::ApplyWindowsLayer(*tar, out, {.is_base = true});
      if (!applied) status = std::unexpected(applied.error());
    } else {
      auto applied = archive::ApplyLayer(*tar, out);
      if (!applied) status = std::unexpected(applied.error());
    }
  });
  if (!status) return std::unexpected(status.error().WithContext(subject.label));
  return seconds;
}

std::string Seconds(double value) { return fmt::format("{:.3f}", value); }

int Run(const Options& options) {
  const bench::MachineLoad load = bench::ReadMachineLoad();
  std::optional<TempDir> work = bench::CreateWorkDir("strata-bench-windows-unpack", options.work_dir);
  if (!work) return 1;

  const uint64_t total_bytes = static_cast<uint64_t>(options.size_mib) * kMiB;
  const std::vector<PlannedEntry> plan = PlanLayer(total_bytes);
  size_t files = 0, dirs = 0, streams = 0;
  for (const PlannedEntry& entry : plan) (entry.dir ? dirs : entry.stream ? streams : files)++;
  fmt::print(stderr, "building layers: {} files, {} dirs, {} streams...\n", files, dirs, streams);
  auto windows_tar = WriteLayerTar(plan, /*windows=*/true, total_bytes);
  auto linux_tar = WriteLayerTar(plan, /*windows=*/false, total_bytes);
  if (!windows_tar || !linux_tar) {
    fmt::print(stderr, "building the layers failed: {}\n",
               (!windows_tar ? windows_tar.error() : linux_tar.error()).ToString());
    return 1;
  }
  std::string windows_gz, linux_gz;
  std::vector<Subject> subjects = {{.label = "windows tar", .windows = true, .data = &*windows_tar},
                                   {.label = "linux tar", .windows = false, .data = &*linux_tar}};
  if (options.gzip) {
    auto w = Gzip(*windows_tar);
    auto l = Gzip(*linux_tar);
    if (!w || !l) {
      fmt::print(stderr, "gzip failed: {}\n", (!w ? w.error() : l.error()).ToString());
      return 1;
    }
    windows_gz = std::move(*w);
    linux_gz = std::move(*l);
    subjects.push_back({.label = "windows tar.gz", .windows = true, .gzip = true, .data = &windows_gz});
    subjects.push_back({.label = "linux tar.gz", .windows = false, .gzip = true, .data = &linux_gz});
  }

  int run = 0;
  for (int round = 0; round < options.rounds; ++round) {
    // Pairs (windows, linux) of one encoding back to back; who goes first alternates.
    for (size_t pair = 0; pair < subjects.size(); pair += 2) {
      const size_t first = pair + (round % 2), second = pair + 1 - (round % 2);
      for (size_t index : {first, second}) {
        Subject& subject = subjects[index];
        const fs::path out = work->path() / fmt::format("run{}", run++);
        auto seconds = UnpackOnce(subject, out);
        if (!seconds) {
          fmt::print(stderr, "{}\n", seconds.error().ToString());
          return 1;
        }
        subject.samples.Add(*seconds);
        fmt::print(stderr, "round {} {}: {:.3f} s\n", round + 1, subject.label, *seconds);
        std::error_code error;
        fs::remove_all(out, error);
      }
    }
  }

  fmt::print("## Windows vs Linux layer unpack ({} MiB of file data, {} files, {} dirs, {} streams)\n\n",
             options.size_mib, files, dirs, streams);
  fmt::print("{}; {} rounds, alternating order\n\n", load.Describe(), options.rounds);
  bench::MarkdownTable table({{"layer", bench::MarkdownTable::Align::kLeft},
                              {"input MB"},
                              {"median s"},
                              {"min s"},
                              {"max s"},
                              {"tar GB/s"}});
  for (const Subject& subject : subjects) {
    const size_t tar_bytes = subject.windows ? windows_tar->size() : linux_tar->size();
    table.AddRow({subject.label, fmt::format("{:.1f}", subject.data->size() / 1e6), Seconds(subject.samples.Median()),
                  Seconds(subject.samples.Min()), Seconds(subject.samples.Max()),
                  fmt::format("{:.2f}", bench::GigabytesPerSecond(tar_bytes, subject.samples.Median()))});
  }
  fmt::print("{}\n", table.Render());
  // The ratio of medians, and the median of the per-round ratios (each round's pair ran
  // back to back, so it is less sensitive to load that drifts between rounds).
  for (size_t pair = 0; pair < subjects.size(); pair += 2) {
    const bench::Samples& windows = subjects[pair].samples;
    const bench::Samples& linux_ = subjects[pair + 1].samples;
    const double ratio = windows.Median() / linux_.Median();
    bench::Samples per_round;
    for (size_t i = 0; i < windows.count(); ++i) per_round.Add(windows.values()[i] / linux_.values()[i]);
    fmt::print("{} / {}: {:.2f}x (median of per-round ratios {:.2f}x; target <= {:.1f}x: {})\n",
               subjects[pair].label, subjects[pair + 1].label, ratio, per_round.Median(), kTargetRatio,
               ratio <= kTargetRatio ? "met" : "NOT met");
  }
  return 0;
}

}  // namespace
}  // namespace strata

int main(int argc, char** argv) { return strata::Run(strata::ParseOptions(argc, argv)); }
