// What the hostile-condition tests share: a small ext4 filesystem on a loop device (disk
// full, power loss), the `strata` binary run as a child with its peak RSS measured, and a
// sentinel directory that must stay untouched.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "archive/tar_writer.h"
#include "base/error.h"
#include "tests/support/image_builder.h"
#include "tests/support/loopback_server.h"
#include "tests/support/measured_run.h"
#include "tests/support/process.h"
#include "tests/support/tree_compare.h"

namespace strata::hostile {

// An ext4 image file of `size_mib` MiB (mkfs.ext4 -m 0: root has no reserved blocks to
// fall back on) mounted through a loop device (`mount -o loop`, which sets autoclear: the
// device detaches when the mount goes). The destructor unmounts (lazily if busy).
// REQUIRES: root.
class LoopFilesystem {
 public:
  // Makes `dir`/disk.img and mounts it on `dir`/mnt with `mount_options` ("" = defaults).
  static Result<std::unique_ptr<LoopFilesystem>> Create(const std::filesystem::path& dir, int size_mib,
                                                        std::string mount_options = "");
  ~LoopFilesystem();
  LoopFilesystem(const LoopFilesystem&) = delete;
  LoopFilesystem& operator=(const LoopFilesystem&) = delete;

  const std::filesystem::path& mount_point() const { return mount_point_; }
  const std::filesystem::path& image() const { return image_; }
  bool mounted() const { return mounted_; }

  Status Mount();
  Status Unmount();
  // FS_IOC_SHUTDOWN with FS_SHUTDOWN_FLAGS_NOLOGFLUSH: the filesystem stops at once, and
  // neither dirty pages nor the uncommitted journal reach the device — what survives is
  // what a power cut at this instant would leave (xfstests' "godown"). Every later access
  // fails with EIO until Unmount + Mount, which replays the journal.
  Status CutPower();
  // Free bytes for root (statvfs f_bfree * f_frsize).
  Result<uint64_t> FreeBytes() const;

 private:
  LoopFilesystem(std::filesystem::path image, std::filesystem::path mount_point, std::string options)
      : image_(std::move(image)), mount_point_(std::move(mount_point)), options_(std::move(options)) {}
  std::filesystem::path image_;
  std::filesystem::path mount_point_;
  std::string options_;
  bool mounted_ = false;
};

// Fills `path` with zeros until the filesystem holding it has at most `leave_free` bytes
// free (written, not fallocated, and fsynced, so the space is really taken).
Status FillUntilFree(const std::filesystem::path& path, uint64_t leave_free);

using test_support::MeasuredRun;
using test_support::RunMeasured;

// The argv of `strata --root <home>/store <args>` as tests/support/strata_cli.h runs it
// (credentials and certs.d confined to `home`). The binary is the build's, or
// $STRATA_TEST_BIN when set.
std::vector<std::string> StrataArgv(const std::filesystem::path& home, const std::vector<std::string>& args);
// RunMeasured(StrataArgv(...)).
MeasuredRun RunStrataMeasured(const std::filesystem::path& home, const std::vector<std::string>& args,
                              std::chrono::milliseconds timeout = std::chrono::minutes(5));
// Starts `strata` in the background (output to `log`) for tests that interrupt it.
Result<test_support::Child> StartStrata(const std::filesystem::path& home, const std::vector<std::string>& args,
                                        const std::filesystem::path& log);

// A directory of known files next to a store, compared before and after hostile input.
class Sentinel {
 public:
  static Result<Sentinel> Create(const std::filesystem::path& dir);
  // Differences since Create ("" = none).
  std::string Changes() const;
  const std::filesystem::path& path() const { return dir_; }

 private:
  std::filesystem::path dir_;
  std::vector<test_support::TreeEntry> before_;
};

// A gzip layer written by `write` through a TarWriter straight into the compressor: the
// tar is never held (Layer::tar stays empty), so million-entry layers fit in memory.
Result<test_support::Layer> StreamedLayer(const std::function<Status(archive::TarWriter&)>& write);

// A hand-written registry for what docker-registry refuses to store (its own validation
// rejects invalid digests, negative sizes, index entries that are not manifests) or cannot
// serve (bytes that do not match their digest). GET and HEAD of the paths put here
// ("/v2/<repo>/manifests/<ref>", "/v2/<repo>/blobs/<digest>"); 404 otherwise; "/v2/" is 200.
class HostileRegistry {
 public:
  struct Response {
    std::string content_type;
    std::string body;
    std::string docker_content_digest;  // "" = no header
  };
  static Result<std::unique_ptr<HostileRegistry>> Start();
  void Put(const std::string& path, Response response);
  // "127.0.0.1:<port>".
  std::string host() const;
  // Requests seen, "GET /v2/..." each.
  std::vector<std::string> requests() const;

 private:
  std::string Answer(const std::string& head);
  mutable std::mutex mutex_;
  std::map<std::string, Response> responses_;
  std::vector<std::string> requests_;
  std::unique_ptr<test_support::OneShotHttpServer> server_;  // last: stops first
};

}  // namespace strata::hostile
