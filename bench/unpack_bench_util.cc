#include "bench/unpack_bench_util.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <span>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "archive/tar_reader.h"
#include "archive/tar_writer.h"
#include "base/file.h"
#include "base/io.h"
#include "bench/bench_util.h"
#include "bench/registry_bench_util.h"

namespace strata::bench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// gzip's and Go's compress/gzip default: what registries mostly hold.
constexpr int kGzipLevel = 6;
constexpr int64_t kMtime = 1'700'000'000;

constexpr std::array<std::string_view, 8> kExtensions = {".so", ".py", ".txt", ".h", ".json", ".mo", ".conf", ".pyc"};
// Files alternate 16 KiB blocks: a random part, then text from the whole vocabulary; a short
// last block is split in the same proportion.
const MixedContent kMix{.block_size = 16 * 1024, .random_share = 0.45, .lines = kTextLines, .whole_blocks = false};
// The image config's "config" object.
constexpr std::string_view kContainerConfig =
    R"({"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["bash"]})";

// Reads a file and hands every byte read to `tee` as well: lets TarReader count entries
// while the same bytes go into the gzip stream.
class TeeFileReader : public ByteReader {
 public:
  TeeFileReader(int fd, std::function<Status(std::string_view)> tee) : fd_(fd), tee_(std::move(tee)) {}
  Result<size_t> Read(std::span<char> buffer) override {
    while (true) {
      const ssize_t n = ::read(fd_, buffer.data(), buffer.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoFail(errno, "read");
      STRATA_RETURN_IF_ERROR(tee_(std::string_view(buffer.data(), static_cast<size_t>(n))));
      return static_cast<size_t>(n);
    }
  }

 private:
  int fd_;
  std::function<Status(std::string_view)> tee_;
};

// What each generated layer looks like.
struct LayerPlan {
  std::string prefix;  // directory the layer's files live under
  double share;        // of the image's compressed size
  // Probabilities and log-uniform ranges of small, medium and large files.
  double small_share, medium_share;
  uint64_t small_low, small_high, medium_high, large_high;
};

// Writes the directory entries of `dir` and its parents not written yet ("a/b/c").
Status WriteDirs(archive::TarWriter& tar, std::vector<std::string>& written, const std::string& dir) {
  for (size_t slash = dir.find('/'); ; slash = dir.find('/', slash + 1)) {
    const std::string part = dir.substr(0, slash);
    if (std::find(written.begin(), written.end(), part) == written.end()) {
      STRATA_RETURN_IF_ERROR(tar.WriteEntry(
          {.name = part, .type = archive::TarEntryType::kDirectory, .mode = 0755, .mtime = {kMtime, 0}}));
      written.push_back(part);
    }
    if (slash == std::string::npos) break;
  }
  return {};
}

// What a generated layer does to the base layer's files besides adding its own.
struct BaseEdits {
  bool collect = false;  // this is the base: remember every 97th file in `base_files`
  // Whiteouts (every third) and symlinks (the others) for base_files[begin, end).
  size_t begin = 0;
  size_t end = 0;
};

// One generated layer; `base_files` collects or is edited as `edits` says.
Result<GzipLayer> WriteGeneratedLayer(const fs::path& blobs, int index, const LayerPlan& plan,
                                                     uint64_t target_bytes, SeededRandom& random,
                                                     std::vector<std::string>& base_files, const BaseEdits& edits,
                                                     LayoutImage& image) {
  const fs::path partial = blobs / fmt::format("partial-{}", index);
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<GzipBlobWriter> gzip, GzipBlobWriter::Open(partial, kGzipLevel));
  archive::TarWriter tar([&](std::string_view bytes) { return gzip->Write(bytes); });
  std::vector<std::string> dirs;
  std::string block;
  constexpr int kFilesPerDir = 24;
  for (int file = 0; gzip->compressed_bytes() < target_bytes; ++file) {
    const int dir_index = file / kFilesPerDir;
    const std::string dir = fmt::format("{}/g{:02}/d{:04}", plan.prefix, dir_index / 16, dir_index);
    STRATA_RETURN_IF_ERROR(WriteDirs(tar, dirs, dir));
    const double pick = random.Unit();
    uint64_t size = pick < plan.small_share ? random.LogUniform(plan.small_low, plan.small_high)
                    : pick < plan.small_share + plan.medium_share ? random.LogUniform(plan.small_high, plan.medium_high)
                                                                 : random.LogUniform(plan.medium_high, plan.large_high);
    // Near the end (~2 tar bytes per blob byte), so the layer overshoots its target little.
    size = std::min(size, std::max<uint64_t>(2 * (target_bytes - gzip->compressed_bytes()), 4096));
    const std::string name =
        fmt::format("{}/f{:06}{}", dir, file, kExtensions[random.Below(kExtensions.size())]);
    const uint32_t mode = random.Below(10) == 0 ? 0755 : 0644;
    STRATA_RETURN_IF_ERROR(tar.WriteHeader({.name = name, .mode = mode, .size = size, .mtime = {kMtime, 0}}));
    STRATA_RETURN_IF_ERROR(
        WriteMixedContent(random, size, kMix, block, [&](std::string_view data) { return tar.WriteData(data); }));
    image.file_bytes += size;
    ++image.entries;
    if (edits.collect && file % 97 == 0) base_files.push_back(name);
  }
  {
    // Like an app layer on a base: delete some base files, link to others.
    for (size_t i = edits.begin; i < std::min(edits.end, base_files.size()); ++i) {
      const fs::path victim(base_files[i]);
      if (i % 3 == 0) {
        STRATA_RETURN_IF_ERROR(WriteDirs(tar, dirs, victim.parent_path().native()));
        STRATA_RETURN_IF_ERROR(tar.WriteEntry({.name = (victim.parent_path() / (".wh." + victim.filename().native())).native(),
                                               .mtime = {kMtime, 0}}));
      } else {
        STRATA_RETURN_IF_ERROR(WriteDirs(tar, dirs, plan.prefix + "/links"));
        STRATA_RETURN_IF_ERROR(tar.WriteEntry({.name = fmt::format("{}/links/l{:04}", plan.prefix, i),
                                               .type = archive::TarEntryType::kSymlink,
                                               .mode = 0777,
                                               .mtime = {kMtime, 0},
                                               .linkname = "/" + base_files[i]}));
      }
      ++image.entries;
    }
  }
  image.entries += dirs.size();
  STRATA_RETURN_IF_ERROR(tar.Finish());
  STRATA_ASSIGN_OR_RETURN(GzipLayer finished, gzip->Finish());
  STRATA_RETURN_IF_ERROR(CommitBlob(blobs, partial, finished.blob.digest));
  return finished;
}

}  // namespace

Status DropCaches() {
  ::sync();
  const int fd = ::open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    return Fail(ErrorCode::kFailedPrecondition, "cannot open /proc/sys/vm/drop_caches: {} (run as root)",
                std::strerror(errno));
  }
  UniqueFd owned(fd);
  if (Status written = WriteAll(fd, "3\n"); !written) {
    return Fail(ErrorCode::kFailedPrecondition, "drop_caches: {}", written.error().ToString());
  }
  return {};
}

Result<int> UnmountUnder(const fs::path& dir) {
  STRATA_ASSIGN_OR_RETURN(const std::string mountinfo, ReadFile("/proc/self/mountinfo"));
  const std::string prefix = fs::weakly_canonical(dir).native();
  std::vector<std::string> points;
  std::istringstream lines(mountinfo);
  for (std::string line; std::getline(lines, line);) {
    // "id parent major:minor root mount-point ...": field 5. Octal escapes (\040) only for
    // odd names, which our own dirs never have.
    std::istringstream fields(line);
    std::string id, parent, device, root, point;
    fields >> id >> parent >> device >> root >> point;
    if (point == prefix || point.starts_with(prefix + "/")) points.push_back(point);
  }
  std::sort(points.begin(), points.end(), [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  int unmounted = 0;
  for (const std::string& point : points) {
    if (::umount2(point.c_str(), MNT_DETACH) == 0) ++unmounted;
  }
  return unmounted;
}

Status RemoveTree(const fs::path& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) return {};
  STRATA_RETURN_IF_ERROR(UnmountUnder(dir));
  fs::remove_all(dir, ec);
  if (ec) return Fail(ErrorCode::kInternal, "remove {}: {}", dir.native(), ec.message());
  return {};
}

Result<std::unique_ptr<ScratchFilesystem>> ScratchFilesystem::Create(const fs::path& dir, uint64_t size_bytes,
                                                                      const fs::path& log) {
  STRATA_RETURN_IF_ERROR(RemoveTree(dir));
  std::unique_ptr<ScratchFilesystem> scratch(new ScratchFilesystem(dir));
  STRATA_RETURN_IF_ERROR(MakeDirs(scratch->mountpoint_));
  const fs::path image = dir / "fs.img";
  std::error_code ec;
  { std::ofstream(image).flush(); }
  fs::resize_file(image, size_bytes, ec);
  if (ec) return Fail(ErrorCode::kInternal, "size {}: {}", image.native(), ec.message());
  if (!RunLogged({"mkfs.ext4", "-q", "-F", image.native()}, log)) {
    return Fail(ErrorCode::kInternal, "mkfs.ext4 {} failed: {}", image.native(), FileTail(log));
  }
  if (!RunLogged({"mount", "-o", "loop", image.native(), scratch->mountpoint_.native()}, log)) {
    return Fail(ErrorCode::kInternal, "mount -o loop {} failed: {}", image.native(), FileTail(log));
  }
  scratch->mounted_ = true;
  return scratch;
}

ScratchFilesystem::~ScratchFilesystem() {
  if (mounted_) (void)UnmountUnder(mountpoint_);  // the loop device goes with the last unmount
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

Result<LayoutImage> WriteSingleLayerLayout(const fs::path& layout, const fs::path& rootfs_tar) {
  const fs::path blobs = layout / "blobs" / "sha256";
  STRATA_RETURN_IF_ERROR(MakeDirs(blobs));
  LayoutImage image;
  const fs::path partial = blobs / "partial-0";
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<GzipBlobWriter> gzip, GzipBlobWriter::Open(partial, kGzipLevel));
  STRATA_ASSIGN_OR_RETURN(UniqueFd input, OpenFile(rootfs_tar, O_RDONLY));
  TeeFileReader reader(input.get(), [&](std::string_view bytes) { return gzip->Write(bytes); });
  archive::TarReader tar(reader);
  while (true) {
    STRATA_ASSIGN_OR_RETURN(std::optional<archive::TarEntry> entry, tar.Next());
    if (!entry) break;
    ++image.entries;
    image.file_bytes += entry->size;
  }
  // Whatever follows the end-of-archive blocks belongs to the layer too (tar pads to 10 KiB).
  std::vector<char> rest(kMiB);
  while (true) {
    STRATA_ASSIGN_OR_RETURN(const size_t n, reader.Read(rest));
    if (n == 0) break;
  }
  STRATA_ASSIGN_OR_RETURN(GzipLayer layer, gzip->Finish());
  STRATA_RETURN_IF_ERROR(CommitBlob(blobs, partial, layer.blob.digest));
  STRATA_RETURN_IF_ERROR(FinishLayout(layout, std::span(&layer, 1), kContainerConfig, image));
  return image;
}

Result<LayoutImage> WriteThreeLayerLayout(const fs::path& layout, size_t compressed_mib, uint64_t seed) {
  const fs::path blobs = layout / "blobs" / "sha256";
  STRATA_RETURN_IF_ERROR(MakeDirs(blobs));
  // base: 90% small files (128 B-16 KiB), like /usr/share; runtime: libraries and modules,
  // mostly small and medium; app: medium files and a few bundles up to 8 MiB.
  const std::array<LayerPlan, 3> plans = {
      LayerPlan{"usr/share/base", 0.40, 0.90, 0.095, 128, 16 * 1024, 256 * 1024, 2 * kMiB},
      LayerPlan{"usr/lib/runtime", 0.35, 0.65, 0.33, 256, 16 * 1024, 512 * 1024, 4 * kMiB},
      LayerPlan{"opt/app", 0.25, 0.40, 0.55, 512, 32 * 1024, kMiB, 8 * kMiB},
  };
  SeededRandom random(seed);
  LayoutImage image;
  std::vector<std::string> base_files;
  std::vector<GzipLayer> layers;
  for (size_t i = 0; i < plans.size(); ++i) {
    const auto target = static_cast<uint64_t>(plans[i].share * static_cast<double>(compressed_mib * kMiB));
    const BaseEdits edits{.collect = i == 0, .begin = 0, .end = i == 2 ? base_files.size() : 0};
    STRATA_ASSIGN_OR_RETURN(GzipLayer layer, WriteGeneratedLayer(blobs, static_cast<int>(i), plans[i], target, random,
                                                                 base_files, edits, image));
    layers.push_back(layer);
  }
  STRATA_RETURN_IF_ERROR(FinishLayout(layout, layers, kContainerConfig, image));
  return image;
}

Result<LayoutImage> WriteManyLayerLayout(const fs::path& layout, int layers, size_t compressed_mib, uint64_t seed) {
  const fs::path blobs = layout / "blobs" / "sha256";
  STRATA_RETURN_IF_ERROR(MakeDirs(blobs));
  SeededRandom random(seed);
  // The base takes a third; the others share the rest by log-uniform weights (1-200), so
  // most are small and a few are large, as the RUN/COPY steps of a long Dockerfile are.
  constexpr double kBaseShare = 0.35;
  std::vector<double> weights(static_cast<size_t>(layers), 0);
  double weight_sum = 0;
  for (size_t i = 1; i < weights.size(); ++i) weight_sum += weights[i] = static_cast<double>(random.LogUniform(1, 200));
  const double budget = static_cast<double>(compressed_mib * kMiB);
  LayoutImage image;
  std::vector<std::string> base_files;
  std::vector<GzipLayer> written;
  for (int i = 0; i < layers; ++i) {
    const double share = i == 0 ? kBaseShare : (1 - kBaseShare) * weights[static_cast<size_t>(i)] / weight_sum;
    // Small layers: config and scripts; larger ones: libraries, modules and app bundles.
    LayerPlan plan = i == 0 ? LayerPlan{"usr/share/base", share, 0.90, 0.095, 128, 16 * 1024, 256 * 1024, 2 * kMiB}
                            : LayerPlan{fmt::format("opt/step{:02}", i), share, 0.60, 0.36, 128, 16 * 1024,
                                        512 * 1024, 4 * kMiB};
    // Every fifth layer deletes or links a slice of the base's files.
    BaseEdits edits{.collect = i == 0};
    if (i > 0 && i % 5 == 0) {
      const size_t slices = static_cast<size_t>(layers / 5);
      const size_t slice = static_cast<size_t>(i / 5 - 1);
      edits.begin = base_files.size() * slice / slices;
      edits.end = base_files.size() * (slice + 1) / slices;
    }
    const auto target = std::max<uint64_t>(static_cast<uint64_t>(share * budget), 4096);
    STRATA_ASSIGN_OR_RETURN(GzipLayer layer,
                            WriteGeneratedLayer(blobs, i, plan, target, random, base_files, edits, image));
    written.push_back(layer);
  }
  STRATA_RETURN_IF_ERROR(FinishLayout(layout, written, kContainerConfig, image));
  return image;
}

namespace {
fs::path SummaryPath(const fs::path& layout) { return layout.native() + ".summary"; }
}  // namespace

Status WriteLayoutSummary(const fs::path& layout, const LayoutImage& image) {
  return AtomicWriteFile(SummaryPath(layout),
                         fmt::format("manifest {}\nlayers {}\ncompressed {}\ntar {}\nfiles {}\nentries {}\n",
                                     image.manifest_digest.ToString(), image.layers, image.compressed_bytes,
                                     image.tar_bytes, image.file_bytes, image.entries));
}

Result<LayoutImage> ReadLayoutSummary(const fs::path& layout) {
  STRATA_ASSIGN_OR_RETURN(const std::string text, ReadFile(SummaryPath(layout)));
  LayoutImage image;
  std::istringstream lines(text);
  std::string key, value;
  bool have_manifest = false;
  while (lines >> key >> value) {
    uint64_t number = 0;
    std::from_chars(value.data(), value.data() + value.size(), number);
    if (key == "manifest") {
      Result<Digest> digest = Digest::Parse(value);
      if (!digest) return Fail(digest.error());
      image.manifest_digest = *digest;
      have_manifest = true;
    } else if (key == "layers") {
      image.layers = static_cast<int>(number);
    } else if (key == "compressed") {
      image.compressed_bytes = number;
    } else if (key == "tar") {
      image.tar_bytes = number;
    } else if (key == "files") {
      image.file_bytes = number;
    } else if (key == "entries") {
      image.entries = number;
    }
  }
  if (!have_manifest || !fs::exists(layout / "index.json")) {
    return Fail(ErrorCode::kNotFound, "no complete cached layout at {}", layout.native());
  }
  return image;
}

// ---- ScratchContainerd ----

ScratchContainerd::ScratchContainerd(fs::path dir)
    : dir_(std::move(dir)), root_(dir_ / "root"), state_(dir_ / "state"), socket_(dir_ / "containerd.sock") {}

std::string ScratchContainerd::ConfigText(const fs::path& dir) {
  // Only what a pull needs: content, metadata, overlayfs snapshots, diff/apply, images,
  // leases, GC. No CRI; no btrfs/zfs/devmapper/aufs probing; "opt" would install into
  // /opt/containerd; no debug or metrics listeners; own socket, root and state.
  return fmt::format(
      "version = 2\n"
      "root = \"{0}/root\"\n"
      "state = \"{0}/state\"\n"
      "disabled_plugins = [\"io.containerd.grpc.v1.cri\", \"io.containerd.snapshotter.v1.btrfs\",\n"
      "  \"io.containerd.snapshotter.v1.zfs\", \"io.containerd.snapshotter.v1.devmapper\",\n"
      "  \"io.containerd.snapshotter.v1.aufs\", \"io.containerd.internal.v1.opt\",\n"
      "  \"io.containerd.tracing.processor.v1.otlp\", \"io.containerd.internal.v1.tracing\"]\n"
      "[grpc]\n  address = \"{0}/containerd.sock\"\n"
      "[ttrpc]\n  address = \"{0}/containerd.sock.ttrpc\"\n"
      "[debug]\n  address = \"\"\n  level = \"warn\"\n"
      "[metrics]\n  address = \"\"\n",
      dir.native());
}

Result<std::unique_ptr<ScratchContainerd>> ScratchContainerd::Start(const fs::path& dir) {
  std::unique_ptr<ScratchContainerd> daemon(new ScratchContainerd(dir));
  STRATA_RETURN_IF_ERROR(MakeDirs(daemon->root_));
  STRATA_RETURN_IF_ERROR(MakeDirs(daemon->state_));
  STRATA_RETURN_IF_ERROR(daemon->Launch());
  return daemon;
}

Status ScratchContainerd::Launch() {
  const fs::path config = dir_ / "config.toml";
  STRATA_RETURN_IF_ERROR(AtomicWriteFile(config, ConfigText(dir_)));
  STRATA_ASSIGN_OR_RETURN(UniqueFd log, OpenFile(dir_ / "containerd.log", O_WRONLY | O_CREAT | O_APPEND));
  pid_ = SpawnTiedToThread({"containerd", "--config", config.native()}, log.get());
  if (pid_ < 0) return ErrnoFail(errno, "fork");
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (Clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return Fail(ErrorCode::kUnavailable, "containerd exited at start: {}", LogTail());
    }
    if (fs::exists(socket_)) {
      Result<UniqueFd> devnull = OpenFile("/dev/null", O_WRONLY);
      if (!devnull) return Fail(devnull.error());
      const std::optional<pid_t> probe =
          SpawnWithOutput({"ctr", "--address", socket_.native(), "version"}, devnull->get(), devnull->get());
      if (probe && WaitSucceeded(*probe)) return {};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  Stop();
  return Fail(ErrorCode::kUnavailable, "containerd did not answer on {} within 30 s: {}", socket_.native(), LogTail());
}

uint64_t ScratchContainerd::PeakRssKib() const { return pid_ > 0 ? VmHwmKib(pid_) : 0; }

void ScratchContainerd::Stop() { StopChild(pid_, std::chrono::seconds(10)); }

ScratchContainerd::~ScratchContainerd() {
  Stop();
  (void)RemoveTree(dir_);
}

std::string ScratchContainerd::LogTail() const { return FileTail(dir_ / "containerd.log"); }

}  // namespace strata::bench
