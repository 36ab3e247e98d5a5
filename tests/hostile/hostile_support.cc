#include "tests/hostile/hostile_support.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "archive/compress.h"
#include "base/digest.h"
#include "base/file.h"

#ifndef FS_IOC_SHUTDOWN
#define FS_IOC_SHUTDOWN _IOR('X', 125, uint32_t)
#endif
#ifndef FS_SHUTDOWN_FLAGS_NOLOGFLUSH
#define FS_SHUTDOWN_FLAGS_NOLOGFLUSH 0x2
#endif

namespace strata::hostile {

namespace fs = std::filesystem;
using test_support::RunCommand;

namespace {

const test_support::TreeCompareOptions kSentinelCompare{.compare_mtimes = true, .compare_dir_mtimes = true};

Status Run(const std::vector<std::string>& argv) {
  std::string output;
  auto code = RunCommand(argv, &output);
  if (!code) return Fail(code.error());
  if (*code != 0) return Fail(ErrorCode::kInternal, "{} exited {}: {}", fmt::join(argv, " "), *code, output);
  return {};
}

}  // namespace

Result<std::unique_ptr<LoopFilesystem>> LoopFilesystem::Create(const fs::path& dir, int size_mib,
                                                                std::string mount_options) {
  const fs::path image = dir / "disk.img";
  {
    STRATA_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(image, O_WRONLY | O_CREAT | O_TRUNC, 0600));
    if (::ftruncate(fd.get(), static_cast<off_t>(size_mib) << 20) != 0) return ErrnoFail(errno, "size", image);
  }
  // No lazy init: the kernel thread zeroing inode tables would write behind the test's back.
  STRATA_RETURN_IF_ERROR(Run({"mkfs.ext4", "-q", "-F", "-m", "0", "-E", "lazy_itable_init=0,lazy_journal_init=0",
                              image.string()}));
  std::unique_ptr<LoopFilesystem> loop(new LoopFilesystem(image, dir / "mnt", std::move(mount_options)));
  fs::create_directories(loop->mount_point_);
  STRATA_RETURN_IF_ERROR(loop->Mount());
  return loop;
}

LoopFilesystem::~LoopFilesystem() {
  if (!mounted_) return;
  if (!Unmount()) ::umount2(mount_point_.c_str(), MNT_DETACH);  // autoclear frees the device
}

Status LoopFilesystem::Mount() {
  std::string options = "loop";
  if (!options_.empty()) options += "," + options_;
  STRATA_RETURN_IF_ERROR(Run({"mount", "-t", "ext4", "-o", options, image_.string(), mount_point_.string()}));
  mounted_ = true;
  return {};
}

Status LoopFilesystem::Unmount() {
  // A process that just exited may hold the mount for a moment (its fds close as it is reaped).
  for (int attempt = 0;; ++attempt) {
    if (::umount2(mount_point_.c_str(), 0) == 0) break;
    if (errno != EBUSY || attempt == 50) return ErrnoFail(errno, "umount", mount_point_);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  mounted_ = false;
  // mount -o loop detaches the device asynchronously on umount; wait for it so a remount
  // does not race the old device's last writes.
  for (int attempt = 0; attempt < 100; ++attempt) {
    std::string output;
    auto code = RunCommand({"losetup", "-j", image_.string()}, &output);
    if (code && *code == 0 && output.empty()) return {};
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return Fail(ErrorCode::kInternal, "loop device of {} did not detach after umount", image_.string());
}

Status LoopFilesystem::CutPower() {
  STRATA_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(mount_point_, O_RDONLY | O_DIRECTORY));
  uint32_t flags = FS_SHUTDOWN_FLAGS_NOLOGFLUSH;
  if (::ioctl(fd.get(), FS_IOC_SHUTDOWN, &flags) != 0) return ErrnoFail(errno, "FS_IOC_SHUTDOWN", mount_point_);
  return {};
}

Result<uint64_t> LoopFilesystem::FreeBytes() const {
  struct statvfs st {};
  if (::statvfs(mount_point_.c_str(), &st) != 0) return ErrnoFail(errno, "statvfs", mount_point_);
  return static_cast<uint64_t>(st.f_bfree) * st.f_frsize;
}

Status FillUntilFree(const fs::path& path, uint64_t leave_free) {
  STRATA_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_WRONLY | O_CREAT | O_TRUNC, 0600));
  const std::string chunk(1 << 20, '\0');
  for (;;) {
    struct statvfs st {};
    if (::fstatvfs(fd.get(), &st) != 0) return ErrnoFail(errno, "statvfs", path);
    const uint64_t free_bytes = static_cast<uint64_t>(st.f_bfree) * st.f_frsize;
    if (free_bytes <= leave_free) break;
    const size_t n = static_cast<size_t>(std::min<uint64_t>(chunk.size(), free_bytes - leave_free));
    if (n < 4096) break;
    STRATA_RETURN_IF_ERROR(WriteAll(fd.get(), std::string_view(chunk).substr(0, n)));
    if (::fsync(fd.get()) != 0) return ErrnoFail(errno, "fsync", path);  // f_bfree counts allocated blocks
  }
  return {};
}

std::vector<std::string> StrataArgv(const fs::path& home, const std::vector<std::string>& args) {
  // $STRATA_TEST_BIN: a copy of the binary, for long runs while the build tree is relinked.
  const char* override_bin = std::getenv("STRATA_TEST_BIN");
  std::vector<std::string> argv = {"/usr/bin/env",
                                   "HOME=" + home.string(),
                                   "XDG_CONFIG_HOME=" + (home / "config").string(),
                                   "DOCKER_CONFIG=" + (home / "docker").string(),
                                   "REGISTRY_AUTH_FILE=" + (home / "auth.json").string(),
                                   "STRATA_CERTS_DIR=" + (home / "certs.d").string(),
                                   override_bin != nullptr ? override_bin : STRATA_BIN,
                                   "--root",
                                   (home / "store").string()};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

MeasuredRun RunStrataMeasured(const fs::path& home, const std::vector<std::string>& args,
                              std::chrono::milliseconds timeout) {
  return RunMeasured(StrataArgv(home, args), timeout);
}

Result<test_support::Child> StartStrata(const fs::path& home, const std::vector<std::string>& args,
                                        const fs::path& log) {
  return test_support::Child::Start({.argv = StrataArgv(home, args), .log_path = log});
}

Result<Sentinel> Sentinel::Create(const fs::path& dir) {
  fs::create_directories(dir / "dir");
  STRATA_RETURN_IF_ERROR(AtomicWriteFile(dir / "keep", "original\n"));
  STRATA_RETURN_IF_ERROR(AtomicWriteFile(dir / "dir" / "inner", "inner\n"));
  Sentinel sentinel;
  sentinel.dir_ = dir;
  STRATA_ASSIGN_OR_RETURN(sentinel.before_, test_support::ScanTree(dir, kSentinelCompare));
  return sentinel;
}

std::string Sentinel::Changes() const {
  auto after = test_support::ScanTree(dir_, kSentinelCompare);
  if (!after) return after.error().ToString();
  return fmt::format("{}", fmt::join(test_support::CompareEntries(before_, *after, kSentinelCompare), "\n"));
}

Result<test_support::Layer> StreamedLayer(const std::function<Status(archive::TarWriter&)>& write) {
  test_support::Layer layer{.compression = test_support::Compression::kGzip, .digest = Digest::Of(""),
                            .diff_id = Digest::Of("")};
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<archive::Compressor> gzip,
                          archive::Compressor::Create(oci::Compression::kGzip, [&](std::string_view bytes) -> Status {
                            layer.blob.append(bytes);
                            return {};
                          }));
  Digester tar_digest;
  archive::TarWriter writer([&](std::string_view bytes) -> Status {
    tar_digest.Update(bytes);
    return gzip->Write(bytes);
  });
  STRATA_RETURN_IF_ERROR(write(writer));
  STRATA_RETURN_IF_ERROR(writer.Finish());
  STRATA_RETURN_IF_ERROR(gzip->Finish());
  layer.digest = Digest::Of(layer.blob);
  layer.diff_id = tar_digest.Finish();
  return layer;
}

Result<std::unique_ptr<HostileRegistry>> HostileRegistry::Start() {
  std::unique_ptr<HostileRegistry> registry(new HostileRegistry());
  HostileRegistry* self = registry.get();
  STRATA_ASSIGN_OR_RETURN(registry->server_, test_support::OneShotHttpServer::Start(
                                                 "hostile registry", [self](const std::string& head) { return self->Answer(head); }));
  return registry;
}

void HostileRegistry::Put(const std::string& path, Response response) {
  std::lock_guard lock(mutex_);
  responses_[path] = std::move(response);
}

std::string HostileRegistry::host() const { return fmt::format("127.0.0.1:{}", server_->port()); }

std::vector<std::string> HostileRegistry::requests() const {
  std::lock_guard lock(mutex_);
  return requests_;
}

std::string HostileRegistry::Answer(const std::string& head) {
  const size_t line_end = head.find("\r\n");
  const std::string line = head.substr(0, line_end);
  const size_t space = line.find(' ');
  const std::string method = line.substr(0, space);
  std::string path = line.substr(space + 1, line.find(' ', space + 1) - space - 1);
  path = path.substr(0, path.find('?'));
  std::lock_guard lock(mutex_);
  requests_.push_back(method + " " + path);
  auto reply = [&](int status, const std::string& type, const std::string& body, const std::string& digest) {
    std::string answer = fmt::format("HTTP/1.1 {} {}\r\nConnection: close\r\nContent-Length: {}\r\n", status,
                                     test_support::HttpReasonPhrase(status), body.size());
    if (!type.empty()) answer += "Content-Type: " + type + "\r\n";
    if (!digest.empty()) answer += "Docker-Content-Digest: " + digest + "\r\n";
    answer += "\r\n";
    if (method != "HEAD") answer += body;
    return answer;
  };
  if (path == "/v2/" || path == "/v2") return reply(200, "application/json", "{}", "");
  auto it = responses_.find(path);
  if (it == responses_.end()) {
    return reply(404, "application/json", R"({"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]})", "");
  }
  return reply(200, it->second.content_type, it->second.body, it->second.docker_content_digest);
}

}  // namespace strata::hostile
