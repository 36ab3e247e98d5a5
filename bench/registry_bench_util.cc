#include "bench/registry_bench_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <span>
#include <thread>

#include <fmt/format.h>

#include "archive/tar_writer.h"
#include "base/file.h"
#include "bench/bench_util.h"
#include "bench/test_data.h"

namespace strata::bench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// Files alternate 64 KiB blocks: a random part, then text from the first 16 lines of the
// vocabulary; every block is generated in full. Gzip level 1, as `gzip -1`: generating the
// images should not dominate the benchmark.
constexpr size_t kMixBlock = 64 * 1024;
const MixedContent kMix{.block_size = kMixBlock,
                        .random_share = 0.45,
                        .lines = std::span(kTextLines).first<16>(),
                        .whole_blocks = true};
constexpr int kGzipLevel = 1;

// Layer sizes as shares of the image, largest first, like a base image under app layers.
std::vector<double> LayerShares(size_t compressed_mib) {
  if (compressed_mib <= 150) return {0.35, 0.25, 0.20, 0.12, 0.08};
  return {0.25, 0.20, 0.15, 0.12, 0.10, 0.08, 0.06, 0.04};
}

// One gzip layer of about `target_bytes` compressed: files of 64 KiB..8 MiB until the
// compressed stream reaches the target.
Result<GzipLayer> WriteLayer(const fs::path& blobs, int index, uint64_t target_bytes, SeededRandom& random) {
  const fs::path partial = blobs / fmt::format("partial-{}", index);
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<GzipBlobWriter> gzip, GzipBlobWriter::Open(partial, kGzipLevel));
  archive::TarWriter tar([&](std::string_view bytes) { return gzip->Write(bytes); });
  const std::string dir = fmt::format("opt/bench/layer{}", index);
  STRATA_RETURN_IF_ERROR(tar.WriteEntry({.name = dir, .type = archive::TarEntryType::kDirectory, .mode = 0755,
                                         .mtime = {1'700'000'000, 0}}));
  std::string block;
  for (int file = 0; gzip->compressed_bytes() < target_bytes; ++file) {
    // Capped near the end (~2 tar bytes per blob byte) so layers overshoot their target little.
    const uint64_t still_due = 2 * (target_bytes - gzip->compressed_bytes());
    const uint64_t size = std::min(256 * 1024 + random.Below(8 * kMiB - 256 * 1024), std::max(still_due, kMixBlock));
    STRATA_RETURN_IF_ERROR(tar.WriteHeader(
        {.name = fmt::format("{}/file{}.dat", dir, file), .size = size, .mtime = {1'700'000'000, 0}}));
    STRATA_RETURN_IF_ERROR(
        WriteMixedContent(random, size, kMix, block, [&](std::string_view data) { return tar.WriteData(data); }));
  }
  STRATA_RETURN_IF_ERROR(tar.Finish());
  STRATA_ASSIGN_OR_RETURN(GzipLayer finished, gzip->Finish());
  STRATA_RETURN_IF_ERROR(CommitBlob(blobs, partial, finished.blob.digest));
  return finished;
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
  STRATA_RETURN_IF_ERROR(MakeDirs(blobs));
  SeededRandom random(seed);
  const std::vector<double> shares = LayerShares(compressed_mib);
  std::vector<GzipLayer> layers;
  for (size_t i = 0; i < shares.size(); ++i) {
    const auto target = static_cast<uint64_t>(shares[i] * static_cast<double>(compressed_mib * kMiB));
    STRATA_ASSIGN_OR_RETURN(GzipLayer layer, WriteLayer(blobs, static_cast<int>(i), target, random));
    layers.push_back(layer);
  }
  TestImage image;
  STRATA_RETURN_IF_ERROR(FinishLayout(layout, layers, "{}", image));
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
  pid_ = SpawnTiedToThread({"docker-registry", "serve", config.native()}, log.get());
  if (pid_ < 0) return Fail(ErrorCode::kInternal, "fork: {}", std::strerror(errno));
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

void LoopbackRegistry::Stop() { StopChild(pid_, std::chrono::seconds(5)); }

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
