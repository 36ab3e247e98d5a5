#include "bench/unpack_bench_util.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstring>
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

constexpr std::string_view kManifestType = "application/vnd.oci.image.manifest.v1+json";
constexpr std::string_view kConfigType = "application/vnd.oci.image.config.v1+json";
constexpr std::string_view kLayerType = "application/vnd.oci.image.layer.v1.tar+gzip";
// gzip's and Go's compress/gzip default: what registries mostly hold.
constexpr int kGzipLevel = 6;
constexpr int64_t kMtime = 1'700'000'000;

// splitmix64, seedable.
class SeededRandom {
 public:
  explicit SeededRandom(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  uint64_t Below(uint64_t bound) { return Next() % bound; }
  double Unit() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  // Log-uniform in [low, high): file sizes spread like real trees'.
  uint64_t LogUniform(uint64_t low, uint64_t high) {
    return static_cast<uint64_t>(static_cast<double>(low) *
                                 std::exp(Unit() * std::log(static_cast<double>(high) / static_cast<double>(low))));
  }
  void Fill(char* out, size_t size) {
    for (size_t i = 0; i < size; i += 8) {
      const uint64_t word = Next();
      std::memcpy(out + i, &word, std::min<size_t>(8, size - i));
    }
  }

 private:
  uint64_t state_;
};

// Lines like those images are full of; a small vocabulary compresses well but not absurdly.
constexpr std::array<std::string_view, 20> kTextLines = {
    "#include <stdio.h>\n", "    return EXIT_SUCCESS;\n", "export PATH=/usr/local/sbin:/usr/local/bin:$PATH\n",
    "Permission is hereby granted, free of charge, to any person obtaining a copy\n",
    "  if (result != 0) { perror(\"open\"); goto fail; }\n", "[Unit]\nDescription=Example service\n",
    "msgid \"Could not open file\"\nmsgstr \"\"\n", "def main(argv):\n    parser = argparse.ArgumentParser()\n",
    "ENV LANG=C.UTF-8 LC_ALL=C.UTF-8\n", "    \"version\": \"1.2.3\",\n", "</div>\n<div class=\"row\">\n",
    "WARNING: THIS SOFTWARE IS PROVIDED \"AS IS\" WITHOUT WARRANTY OF ANY KIND\n",
    "ldconfig -p | grep libssl\n", "    for (i = 0; i < n; ++i) sum += a[i];\n",
    "Package: libc6\nStatus: install ok installed\n", "}\n\n", "import os, sys, json\n",
    "  <key>CFBundleVersion</key>\n", "static const char *const names[] = {\n", "\tmovq %rsp, %rbp\n"};
constexpr std::array<std::string_view, 8> kExtensions = {".so", ".py", ".txt", ".h", ".json", ".mo", ".conf", ".pyc"};
// Files alternate blocks: a random part, then text. The random share sets the gzip ratio.
constexpr size_t kMixBlock = 16 * 1024;
constexpr double kRandomShare = 0.45;

// A gzip stream into a file, hashing both sides: the blob digest and the diffID.
class GzipBlobWriter {
 public:
  static Result<std::unique_ptr<GzipBlobWriter>> Open(const fs::path& path) {
    STRATA_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_WRONLY | O_CREAT | O_TRUNC));
    std::unique_ptr<GzipBlobWriter> writer(new GzipBlobWriter(std::move(fd)));
    if (deflateInit2(&writer->stream_, kGzipLevel, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
      return Fail(ErrorCode::kInternal, "deflateInit2 failed");
    }
    writer->initialised_ = true;
    return writer;
  }
  ~GzipBlobWriter() {
    if (initialised_) deflateEnd(&stream_);
  }
  Status Write(std::string_view data) {
    uncompressed_.Update(data);
    return Deflate(data, Z_NO_FLUSH);
  }
  uint64_t compressed_bytes() const { return compressed_.bytes(); }
  struct Finished {
    Digest digest = Digest::Of("");
    uint64_t size = 0;
    Digest diff_id = Digest::Of("");
    uint64_t tar_bytes = 0;
  };
  // REQUIRES: called once, no Write after it.
  Result<Finished> Finish() {
    STRATA_RETURN_IF_ERROR(Deflate({}, Z_FINISH));
    Finished done;
    done.size = compressed_.bytes();
    done.tar_bytes = uncompressed_.bytes();
    done.digest = compressed_.Finish();
    done.diff_id = uncompressed_.Finish();
    return done;
  }

 private:
  explicit GzipBlobWriter(UniqueFd fd) : fd_(std::move(fd)), out_(256 * 1024) {}
  Status Deflate(std::string_view data, int flush) {
    stream_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    stream_.avail_in = static_cast<uInt>(data.size());
    int rc = Z_OK;
    do {
      stream_.next_out = reinterpret_cast<Bytef*>(out_.data());
      stream_.avail_out = static_cast<uInt>(out_.size());
      rc = deflate(&stream_, flush);
      if (rc == Z_STREAM_ERROR) return Fail(ErrorCode::kInternal, "deflate failed");
      const std::string_view produced(out_.data(), out_.size() - stream_.avail_out);
      compressed_.Update(produced);
      STRATA_RETURN_IF_ERROR(WriteAll(fd_.get(), produced));
    } while (stream_.avail_out == 0 || (flush == Z_FINISH && rc != Z_STREAM_END));
    return {};
  }

  UniqueFd fd_;
  std::vector<char> out_;
  z_stream stream_{};
  bool initialised_ = false;
  Digester compressed_;
  Digester uncompressed_;
};

struct BlobRef {
  Digest digest = Digest::Of("");
  uint64_t size = 0;
};

std::string DescriptorJson(std::string_view media_type, const BlobRef& blob) {
  return fmt::format(R"({{"mediaType":"{}","digest":"{}","size":{}}})", media_type, blob.digest.ToString(), blob.size);
}

Result<BlobRef> WriteJsonBlob(const fs::path& blobs, std::string_view json) {
  BlobRef ref{Digest::Of(json), json.size()};
  STRATA_RETURN_IF_ERROR(AtomicWriteFile(blobs / ref.digest.hex(), json));
  return ref;
}

Status MakeDirs(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Fail(ErrorCode::kInternal, "mkdir {}: {}", dir.native(), ec.message());
  return {};
}

// Moves the finished blob `partial` to its digest name.
Status CommitBlob(const fs::path& blobs, const fs::path& partial, const Digest& digest) {
  std::error_code ec;
  fs::rename(partial, blobs / digest.hex(), ec);
  if (ec) return Fail(ErrorCode::kInternal, "rename {}: {}", partial.native(), ec.message());
  return {};
}

// Config, manifest, index.json and oci-layout for gzip layers already in `blobs`.
Status FinishLayout(const fs::path& layout, const std::vector<GzipBlobWriter::Finished>& layers,
                    LayoutImage& image) {
  const fs::path blobs = layout / "blobs" / "sha256";
  std::string descriptors;
  std::string diff_ids;
  for (size_t i = 0; i < layers.size(); ++i) {
    descriptors += fmt::format("{}{}", i ? "," : "", DescriptorJson(kLayerType, {layers[i].digest, layers[i].size}));
    diff_ids += fmt::format(R"({}"{}")", i ? "," : "", layers[i].diff_id.ToString());
    image.compressed_bytes += layers[i].size;
    image.tar_bytes += layers[i].tar_bytes;
  }
  image.layers = static_cast<int>(layers.size());
  STRATA_ASSIGN_OR_RETURN(
      const BlobRef config,
      WriteJsonBlob(blobs, fmt::format(R"({{"architecture":"amd64","os":"linux","config":{{"Env":)"
                                       R"(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],)"
                                       R"("Cmd":["bash"]}},"rootfs":{{"type":"layers","diff_ids":[{}]}}}})",
                                       diff_ids)));
  STRATA_ASSIGN_OR_RETURN(
      const BlobRef manifest,
      WriteJsonBlob(blobs, fmt::format(R"({{"schemaVersion":2,"mediaType":"{}","config":{},"layers":[{}]}})",
                                       kManifestType, DescriptorJson(kConfigType, config), descriptors)));
  image.manifest_digest = manifest.digest;
  STRATA_RETURN_IF_ERROR(AtomicWriteFile(layout / "oci-layout", R"({"imageLayoutVersion":"1.0.0"})"));
  return AtomicWriteFile(
      layout / "index.json",
      fmt::format(R"({{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{}","size":{},)"
                  R"("annotations":{{"org.opencontainers.image.ref.name":"1"}}}}]}})",
                  kManifestType, manifest.digest.ToString(), manifest.size));
}

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

Status WriteMixedContent(SeededRandom& random, uint64_t size, archive::TarWriter& tar, std::string& block) {
  block.resize(kMixBlock);
  for (uint64_t done = 0; done < size;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kMixBlock, size - done));
    const size_t random_n = static_cast<size_t>(static_cast<double>(n) * kRandomShare) & ~size_t{7};
    random.Fill(block.data(), random_n);
    for (size_t at = random_n; at < n;) {
      const std::string_view line = kTextLines[random.Below(kTextLines.size())];
      const size_t take = std::min(line.size(), n - at);
      std::memcpy(block.data() + at, line.data(), take);
      at += take;
    }
    STRATA_RETURN_IF_ERROR(tar.WriteData(std::string_view(block.data(), n)));
    done += n;
  }
  return {};
}

// One generated layer; `base_files` collects (layer 0) or uses (layer 2) paths of base files.
Result<GzipBlobWriter::Finished> WriteGeneratedLayer(const fs::path& blobs, int index, const LayerPlan& plan,
                                                     uint64_t target_bytes, SeededRandom& random,
                                                     std::vector<std::string>& base_files, LayoutImage& image) {
  const fs::path partial = blobs / fmt::format("partial-{}", index);
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<GzipBlobWriter> gzip, GzipBlobWriter::Open(partial));
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
    STRATA_RETURN_IF_ERROR(WriteMixedContent(random, size, tar, block));
    image.file_bytes += size;
    ++image.entries;
    if (index == 0 && file % 97 == 0) base_files.push_back(name);
  }
  if (index == 2) {
    // Like an app layer on a base: delete some base files, link to others.
    for (size_t i = 0; i < base_files.size(); ++i) {
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
  STRATA_ASSIGN_OR_RETURN(GzipBlobWriter::Finished finished, gzip->Finish());
  STRATA_RETURN_IF_ERROR(CommitBlob(blobs, partial, finished.digest));
  return finished;
}

}  // namespace

Result<MeasuredRun> RunMeasured(const std::vector<std::string>& args, const fs::path& stdout_path,
                                const fs::path& stderr_log) {
  STRATA_ASSIGN_OR_RETURN(UniqueFd out, OpenFile(stdout_path, O_WRONLY | O_CREAT | O_TRUNC));
  STRATA_ASSIGN_OR_RETURN(UniqueFd err, OpenFile(stderr_log, O_WRONLY | O_CREAT | O_APPEND));
  const auto start = Clock::now();
  const std::optional<pid_t> pid = SpawnWithOutput(args, out.get(), err.get());
  if (!pid) return Fail(ErrorCode::kInternal, "cannot start {}", args.empty() ? "nothing" : args[0]);
  MeasuredRun run;
  rusage usage{};
  while (::wait4(*pid, &run.wait_status, 0, &usage) < 0) {
    if (errno != EINTR) return ErrnoFail(errno, "wait4");
  }
  run.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  run.peak_rss_kib = static_cast<uint64_t>(usage.ru_maxrss);
  run.succeeded = WIFEXITED(run.wait_status) && WEXITSTATUS(run.wait_status) == 0;
  return run;
}

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

Result<LayoutImage> WriteSingleLayerLayout(const fs::path& layout, const fs::path& rootfs_tar) {
  const fs::path blobs = layout / "blobs" / "sha256";
  STRATA_RETURN_IF_ERROR(MakeDirs(blobs));
  LayoutImage image;
  const fs::path partial = blobs / "partial-0";
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<GzipBlobWriter> gzip, GzipBlobWriter::Open(partial));
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
  STRATA_ASSIGN_OR_RETURN(GzipBlobWriter::Finished layer, gzip->Finish());
  STRATA_RETURN_IF_ERROR(CommitBlob(blobs, partial, layer.digest));
  STRATA_RETURN_IF_ERROR(FinishLayout(layout, {layer}, image));
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
  std::vector<GzipBlobWriter::Finished> layers;
  for (size_t i = 0; i < plans.size(); ++i) {
    const auto target = static_cast<uint64_t>(plans[i].share * static_cast<double>(compressed_mib * kMiB));
    STRATA_ASSIGN_OR_RETURN(GzipBlobWriter::Finished layer,
                            WriteGeneratedLayer(blobs, static_cast<int>(i), plans[i], target, random, base_files, image));
    layers.push_back(layer);
  }
  STRATA_RETURN_IF_ERROR(FinishLayout(layout, layers, image));
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
  const pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ < 0) return ErrnoFail(errno, "fork");
  if (pid_ == 0) {
    // Only async-signal-safe calls until exec.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::dup2(log.get(), STDOUT_FILENO);
    ::dup2(log.get(), STDERR_FILENO);
    const char* argv[] = {"containerd", "--config", config.c_str(), nullptr};
    ::execvp(argv[0], const_cast<char**>(argv));
    ::_exit(127);
  }
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

uint64_t ScratchContainerd::PeakRssKib() const {
  if (pid_ <= 0) return 0;
  Result<std::string> status = ReadFile(fmt::format("/proc/{}/status", pid_));
  if (!status) return 0;
  const size_t at = status->find("VmHWM:");
  if (at == std::string::npos) return 0;
  return std::strtoull(status->c_str() + at + 6, nullptr, 10);
}

void ScratchContainerd::Stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  int status = 0;
  while (::waitpid(pid_, &status, WNOHANG) == 0) {
    if (Clock::now() >= deadline) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  pid_ = -1;
}

ScratchContainerd::~ScratchContainerd() {
  Stop();
  (void)RemoveTree(dir_);
}

std::string ScratchContainerd::LogTail() const { return FileTail(dir_ / "containerd.log"); }

}  // namespace strata::bench
