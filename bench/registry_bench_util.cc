#include "bench/registry_bench_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <thread>

#include <fmt/format.h>

#include "archive/tar_writer.h"
#include "base/file.h"
#include "bench/bench_util.h"

namespace strata::bench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr std::string_view kManifestType = "application/vnd.oci.image.manifest.v1+json";
constexpr std::string_view kConfigType = "application/vnd.oci.image.config.v1+json";
constexpr std::string_view kLayerType = "application/vnd.oci.image.layer.v1.tar+gzip";

// Files alternate blocks of this size: a random part, then text. The random share sets the
// gzip ratio: random bytes do not compress, the text compresses ~10:1 at level 1.
constexpr size_t kMixBlock = 64 * 1024;
constexpr double kRandomShare = 0.45;

// splitmix64: seedable, so every layer gets its own stream (bench_util's RandomBytes has one
// fixed seed).
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
  void Fill(char* out, size_t size) {
    for (size_t i = 0; i < size; i += 8) {
      const uint64_t word = Next();
      std::memcpy(out + i, &word, std::min<size_t>(8, size - i));
    }
  }

 private:
  uint64_t state_;
};

// Lines that look like what images are full of (config, scripts, licences): a small
// vocabulary picked at random compresses well but not absurdly.
constexpr std::array<std::string_view, 16> kTextLines = {
    "#include <stdio.h>\n", "    return EXIT_SUCCESS;\n", "export PATH=/usr/local/sbin:/usr/local/bin:$PATH\n",
    "Permission is hereby granted, free of charge, to any person obtaining a copy\n",
    "  if (result != 0) { perror(\"open\"); goto fail; }\n", "[Unit]\nDescription=Example service\n",
    "msgid \"Could not open file\"\nmsgstr \"\"\n", "def main(argv):\n    parser = argparse.ArgumentParser()\n",
    "ENV LANG=C.UTF-8 LC_ALL=C.UTF-8\n", "    \"version\": \"1.2.3\",\n", "</div>\n<div class=\"row\">\n",
    "WARNING: THIS SOFTWARE IS PROVIDED \"AS IS\" WITHOUT WARRANTY OF ANY KIND\n",
    "ldconfig -p | grep libssl\n", "    for (i = 0; i < n; ++i) sum += a[i];\n",
    "Package: libc6\nStatus: install ok installed\n", "}\n\n"};

// Writes `size` bytes of file content through `write` in kMixBlock pieces.
Status WriteMixedContent(SeededRandom& random, uint64_t size, const std::function<Status(std::string_view)>& write) {
  std::string block(kMixBlock, '\0');
  const size_t random_part = static_cast<size_t>(kMixBlock * kRandomShare) & ~size_t{7};
  for (uint64_t done = 0; done < size;) {
    random.Fill(block.data(), random_part);
    for (size_t at = random_part; at < kMixBlock;) {
      const std::string_view line = kTextLines[random.Below(kTextLines.size())];
      const size_t n = std::min(line.size(), kMixBlock - at);
      std::memcpy(block.data() + at, line.data(), n);
      at += n;
    }
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kMixBlock, size - done));
    STRATA_RETURN_IF_ERROR(write(std::string_view(block.data(), n)));
    done += n;
  }
  return {};
}

struct BlobInfo {
  Digest digest = Digest::Of("");
  uint64_t size = 0;
};

struct LayerInfo {
  BlobInfo blob;
  Digest diff_id = Digest::Of("");
  uint64_t tar_bytes = 0;
};

// A gzip stream into a file, hashing both sides: the blob digest and the diffID.
class GzipBlobWriter {
 public:
  static Result<std::unique_ptr<GzipBlobWriter>> Open(const fs::path& path) {
    STRATA_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_WRONLY | O_CREAT | O_TRUNC));
    std::unique_ptr<GzipBlobWriter> writer(new GzipBlobWriter(std::move(fd)));
    // Level 1, as `gzip -1`: generating the images should not dominate the benchmark.
    if (deflateInit2(&writer->stream_, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
      return Fail(ErrorCode::kInternal, "deflateInit2 failed");
    }
    writer->initialised_ = true;
    return writer;
  }
  ~GzipBlobWriter() {
    if (initialised_) deflateEnd(&stream_);
  }
  Status Write(std::string_view data) {
    uncompressed_digester_.Update(data);
    return Deflate(data, Z_NO_FLUSH);
  }
  uint64_t compressed_bytes() const { return compressed_digester_.bytes(); }
  // Ends the stream. REQUIRES: called once, no Write after it.
  Result<LayerInfo> Finish() {
    STRATA_RETURN_IF_ERROR(Deflate({}, Z_FINISH));
    const uint64_t size = compressed_digester_.bytes();
    const uint64_t tar_bytes = uncompressed_digester_.bytes();
    return LayerInfo{{compressed_digester_.Finish(), size}, uncompressed_digester_.Finish(), tar_bytes};
  }

 private:
  explicit GzipBlobWriter(UniqueFd fd) : fd_(std::move(fd)) {}
  Status Deflate(std::string_view data, int flush) {
    stream_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    stream_.avail_in = static_cast<uInt>(data.size());
    char out[256 * 1024];
    int rc = Z_OK;
    do {
      stream_.next_out = reinterpret_cast<Bytef*>(out);
      stream_.avail_out = sizeof out;
      rc = deflate(&stream_, flush);
      if (rc == Z_STREAM_ERROR) return Fail(ErrorCode::kInternal, "deflate failed");
      const std::string_view produced(out, sizeof out - stream_.avail_out);
      compressed_digester_.Update(produced);
      STRATA_RETURN_IF_ERROR(WriteAll(fd_.get(), produced));
    } while (stream_.avail_out == 0 || (flush == Z_FINISH && rc != Z_STREAM_END));
    return {};
  }

  UniqueFd fd_;
  z_stream stream_{};
  bool initialised_ = false;
  Digester compressed_digester_;
  Digester uncompressed_digester_;
};

// Layer sizes as shares of the image, largest first, like a base image under app layers.
std::vector<double> LayerShares(size_t compressed_mib) {
  if (compressed_mib <= 150) return {0.35, 0.25, 0.20, 0.12, 0.08};
  return {0.25, 0.20, 0.15, 0.12, 0.10, 0.08, 0.06, 0.04};
}

Result<BlobInfo> WriteJsonBlob(const fs::path& blobs, std::string_view json) {
  BlobInfo info{Digest::Of(json), json.size()};
  STRATA_RETURN_IF_ERROR(AtomicWriteFile(blobs / info.digest.hex(), json));
  return info;
}

// One gzip layer of about `target_bytes` compressed: files of 64 KiB..8 MiB until the
// compressed stream reaches the target.
Result<LayerInfo> WriteLayer(const fs::path& blobs, int index, uint64_t target_bytes,
                                               SeededRandom& random) {
  const fs::path partial = blobs / fmt::format("partial-{}", index);
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<GzipBlobWriter> gzip, GzipBlobWriter::Open(partial));
  archive::TarWriter tar([&](std::string_view bytes) { return gzip->Write(bytes); });
  const std::string dir = fmt::format("opt/bench/layer{}", index);
  STRATA_RETURN_IF_ERROR(tar.WriteEntry({.name = dir, .type = archive::TarEntryType::kDirectory, .mode = 0755,
                                         .mtime = {1'700'000'000, 0}}));
  for (int file = 0; gzip->compressed_bytes() < target_bytes; ++file) {
    // Capped near the end (~2 tar bytes per blob byte) so layers overshoot their target little.
    const uint64_t still_due = 2 * (target_bytes - gzip->compressed_bytes());
    const uint64_t size = std::min(256 * 1024 + random.Below(8 * kMiB - 256 * 1024), std::max(still_due, kMixBlock));
    STRATA_RETURN_IF_ERROR(tar.WriteHeader(
        {.name = fmt::format("{}/file{}.dat", dir, file), .size = size, .mtime = {1'700'000'000, 0}}));
    STRATA_RETURN_IF_ERROR(WriteMixedContent(random, size, [&](std::string_view data) { return tar.WriteData(data); }));
  }
  STRATA_RETURN_IF_ERROR(tar.Finish());
  STRATA_ASSIGN_OR_RETURN(LayerInfo finished, gzip->Finish());
  std::error_code ec;
  fs::rename(partial, blobs / finished.blob.digest.hex(), ec);
  if (ec) return Fail(ErrorCode::kInternal, "rename {}: {}", partial.native(), ec.message());
  return finished;
}

std::string DescriptorJson(std::string_view media_type, const BlobInfo& blob) {
  return fmt::format(R"({{"mediaType":"{}","digest":"{}","size":{}}})", media_type, blob.digest.ToString(), blob.size);
}

int PickFreeLoopbackPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  int port = -1;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

}  // namespace

Result<TestImage> WriteTestImageLayout(const fs::path& layout, size_t compressed_mib, uint64_t seed) {
  const fs::path blobs = layout / "blobs" / "sha256";
  std::error_code ec;
  fs::create_directories(blobs, ec);
  if (ec) return Fail(ErrorCode::kInternal, "mkdir {}: {}", blobs.native(), ec.message());

  TestImage image;
  std::string layer_descriptors;
  std::string diff_ids;
  SeededRandom random(seed);
  const std::vector<double> shares = LayerShares(compressed_mib);
  for (size_t i = 0; i < shares.size(); ++i) {
    const auto target = static_cast<uint64_t>(shares[i] * static_cast<double>(compressed_mib * kMiB));
    STRATA_ASSIGN_OR_RETURN(const LayerInfo layer, WriteLayer(blobs, static_cast<int>(i), target, random));
    layer_descriptors += fmt::format("{}{}", i ? "," : "", DescriptorJson(kLayerType, layer.blob));
    diff_ids += fmt::format(R"({}"{}")", i ? "," : "", layer.diff_id.ToString());
    image.compressed_bytes += layer.blob.size;
    image.tar_bytes += layer.tar_bytes;
  }
  image.layers = static_cast<int>(shares.size());
  STRATA_ASSIGN_OR_RETURN(
      const BlobInfo config,
      WriteJsonBlob(blobs, fmt::format(R"({{"architecture":"amd64","os":"linux","config":{{}},)"
                                       R"("rootfs":{{"type":"layers","diff_ids":[{}]}}}})",
                                       diff_ids)));
  STRATA_ASSIGN_OR_RETURN(
      const BlobInfo manifest,
      WriteJsonBlob(blobs, fmt::format(R"({{"schemaVersion":2,"mediaType":"{}","config":{},"layers":[{}]}})",
                                       kManifestType, DescriptorJson(kConfigType, config), layer_descriptors)));
  image.manifest_digest = manifest.digest;
  STRATA_RETURN_IF_ERROR(AtomicWriteFile(layout / "oci-layout", R"({"imageLayoutVersion":"1.0.0"})"));
  STRATA_RETURN_IF_ERROR(AtomicWriteFile(
      layout / "index.json",
      fmt::format(R"({{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{}","size":{},)"
                  R"("annotations":{{"org.opencontainers.image.ref.name":"1"}}}}]}})",
                  kManifestType, manifest.digest.ToString(), manifest.size)));
  return image;
}

Result<std::unique_ptr<LoopbackRegistry>> LoopbackRegistry::Start(const fs::path& dir) {
  std::unique_ptr<LoopbackRegistry> registry(new LoopbackRegistry(dir));
  registry->storage_dir_ = dir / "storage";
  std::error_code ec;
  fs::create_directories(registry->storage_dir_, ec);
  if (ec) return Fail(ErrorCode::kInternal, "mkdir {}: {}", registry->storage_dir_.native(), ec.message());
  Status launched;
  for (int attempt = 0; attempt < 3; ++attempt) {
    launched = registry->Launch();
    if (launched) return registry;
  }
  return Fail(launched.error());
}

Status LoopbackRegistry::Launch() {
  port_ = PickFreeLoopbackPort();
  if (port_ <= 0) return Fail(ErrorCode::kUnavailable, "no free loopback port");
  const fs::path config = dir_ / "config.yml";
  // Access logs off: both tools pay for them alike, but they only add noise here.
  STRATA_RETURN_IF_ERROR(AtomicWriteFile(
      config, fmt::format("version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n"
                          "storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n"
                          "http:\n  addr: 127.0.0.1:{}\n",
                          storage_dir_.native(), port_)));
  STRATA_ASSIGN_OR_RETURN(UniqueFd log, OpenFile(dir_ / "registry.log", O_WRONLY | O_CREAT | O_APPEND));
  const pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ < 0) return Fail(ErrorCode::kInternal, "fork: {}", std::strerror(errno));
  if (pid_ == 0) {
    // Only async-signal-safe calls until exec.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::dup2(log.get(), STDOUT_FILENO);
    ::dup2(log.get(), STDERR_FILENO);
    const char* argv[] = {"docker-registry", "serve", config.c_str(), nullptr};
    ::execvp(argv[0], const_cast<char**>(argv));
    ::_exit(127);
  }
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (Clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return Fail(ErrorCode::kUnavailable, "docker-registry exited at start: {}", LogTail());
    }
    if (Result<int> code = HttpStatus(port_, "GET", "/v2/"); code && *code == 200) return {};
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  Stop();
  return Fail(ErrorCode::kUnavailable, "docker-registry on port {} did not answer /v2/ within 30 s: {}", port_,
              LogTail());
}

void LoopbackRegistry::Stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  const auto deadline = Clock::now() + std::chrono::seconds(5);
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

LoopbackRegistry::~LoopbackRegistry() {
  Stop();
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

std::string LoopbackRegistry::host() const { return fmt::format("127.0.0.1:{}", port_); }

std::string LoopbackRegistry::LogTail() const { return FileTail(dir_ / "registry.log"); }

Result<int> HttpStatus(int port, std::string_view method, std::string_view path, std::string_view accept) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return Fail(ErrorCode::kUnavailable, "socket: {}", std::strerror(errno));
  const timeval timeout{5, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return Fail(ErrorCode::kUnavailable, "connect 127.0.0.1:{}: {}", port, std::strerror(errno));
  }
  const std::string request =
      fmt::format("{} {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{}Connection: close\r\n\r\n", method, path, port,
                  accept.empty() ? "" : fmt::format("Accept: {}\r\n", accept));
  STRATA_RETURN_IF_ERROR(WriteAll(fd.get(), request));
  char head[64];
  size_t got = 0;
  while (got < 12) {
    const ssize_t n = ::read(fd.get(), head + got, sizeof head - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Fail(ErrorCode::kUnavailable, "no HTTP answer from 127.0.0.1:{}", port);
    got += static_cast<size_t>(n);
  }
  // "HTTP/1.1 200 OK"
  if (std::strncmp(head, "HTTP/1.", 7) != 0) return Fail(ErrorCode::kUnavailable, "not HTTP on port {}", port);
  return std::atoi(std::string(head + 9, 3).c_str());
}

bool RunLogged(const std::vector<std::string>& args, const fs::path& log) {
  Result<UniqueFd> log_fd = OpenFile(log, O_WRONLY | O_CREAT | O_APPEND);
  if (!log_fd) return false;
  std::optional<pid_t> pid = SpawnWithOutput(args, log_fd->get(), log_fd->get());
  return pid && WaitSucceeded(*pid);
}

double EnsureTreeCached(const fs::path& dir) {
  double lowest = 1;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (it->is_regular_file(ec)) lowest = std::min(lowest, EnsureCached(it->path()));
  }
  return ec ? -1 : lowest;
}

std::string FileTail(const fs::path& path, size_t max_bytes) {
  Result<std::string> text = ReadFile(path);
  if (!text) return "";
  return text->size() <= max_bytes ? *text : text->substr(text->size() - max_bytes);
}

}  // namespace strata::bench
