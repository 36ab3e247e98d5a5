// What strata-bench-unpack needs besides bench_util, test_data and registry_bench_util: cold
// page cache, mount-safe removal, the test
// images (a Debian 12 minbase rootfs, generated 3-layer and 40-layer trees) as OCI layouts,
// and a throwaway containerd on its own socket and directories.
// Benchmarks only; single-threaded driver, nothing here is thread-safe.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "bench/test_data.h"  // TestImage

namespace strata::bench {

// sync(2), then `echo 3 > /proc/sys/vm/drop_caches`: page cache, dentries and inodes.
// FailedPrecondition when not allowed (not root, or /proc/sys read-only).
Status DropCaches();

// Unmounts (lazily, deepest first) every mount point at or below `dir`, as listed in
// /proc/self/mountinfo. Returns how many it unmounted.
Result<int> UnmountUnder(const std::filesystem::path& dir);

// UnmountUnder, then remove_all: never deletes through a mount left behind by a peer.
Status RemoveTree(const std::filesystem::path& dir);

// A fresh ext4 filesystem (a sparse image under `dir`, loop-mounted at dir/mnt) for one
// run's state, so every peer starts on the same clean disk. Without it, runs share a disk
// churned by the runs before: ext4 without a journal (this machine's root) then skips
// recently deleted inodes one by one when it allocates, which here cost more CPU than all
// of strata's own work. The destructor unmounts (lazily) and removes `dir`.
class ScratchFilesystem {
 public:
  static Result<std::unique_ptr<ScratchFilesystem>> Create(const std::filesystem::path& dir, uint64_t size_bytes,
                                                           const std::filesystem::path& log);
  ~ScratchFilesystem();
  ScratchFilesystem(const ScratchFilesystem&) = delete;
  ScratchFilesystem& operator=(const ScratchFilesystem&) = delete;
  const std::filesystem::path& mountpoint() const { return mountpoint_; }

 private:
  explicit ScratchFilesystem(std::filesystem::path dir) : dir_(std::move(dir)), mountpoint_(dir_ / "mnt") {}
  std::filesystem::path dir_;
  std::filesystem::path mountpoint_;
  bool mounted_ = false;
};

// An OCI image layout written by the builders below; blobs/sha256/... plus index.json with
// the image tagged "1".
struct LayoutImage : TestImage {
  uint64_t file_bytes = 0;  // sum of regular file sizes in the layer tars
  uint64_t entries = 0;     // tar entries (files, dirs, links, whiteouts)
};

// Packs the tar file `rootfs_tar` as the single gzip (zlib level 6, as `gzip`) layer of a
// linux/amd64 image at `layout`. REQUIRES: `layout` does not exist yet.
Result<LayoutImage> WriteSingleLayerLayout(const std::filesystem::path& layout,
                                           const std::filesystem::path& rootfs_tar);

// A deterministic 3-layer linux/amd64 image of about `compressed_mib` MiB of gzip (level 6)
// at `layout`: a "base" layer of many small files, a "runtime" layer of small and medium
// ones, an "app" layer of medium and large ones that also removes (whiteouts) and links
// (symlinks) a few files of the base. Contents mix seeded random bytes with text lines so
// gzip reaches about 2:1. REQUIRES: `layout` does not exist yet.
Result<LayoutImage> WriteThreeLayerLayout(const std::filesystem::path& layout, size_t compressed_mib,
                                          uint64_t seed);

// A deterministic linux/amd64 image of `layers` gzip layers adding up to about
// `compressed_mib` MiB at `layout`, as a long Dockerfile makes: a base of many small files
// (a third of the bytes), then layers of log-uniformly spread sizes (a few KiB to tens of
// MiB) under their own dirs, every fifth of which deletes (whiteouts) or links a slice of
// the base's files. Same content mix as WriteThreeLayerLayout. REQUIRES: `layout` does not
// exist yet; layers >= 2.
Result<LayoutImage> WriteManyLayerLayout(const std::filesystem::path& layout, int layers, size_t compressed_mib,
                                         uint64_t seed);

// Reads the summary a builder saved next to a cached layout ("image.txt"), or saves one.
Result<LayoutImage> ReadLayoutSummary(const std::filesystem::path& layout);
Status WriteLayoutSummary(const std::filesystem::path& layout, const LayoutImage& image);

// containerd 1.6 (`containerd --config`) with its own root, state, gRPC socket and config
// under `dir`, overlayfs snapshotter, CRI and the unneeded snapshotters disabled. It never
// talks to the system containerd. The destructor stops the process it started (SIGTERM,
// SIGKILL after 10 s), unmounts anything left under `dir` and removes `dir`. The child gets
// SIGKILL if this thread exits first (PR_SET_PDEATHSIG).
class ScratchContainerd {
 public:
  // Starts containerd and waits until `ctr --address SOCK version` answers; Unavailable (with
  // the tail of its log) when it does not within 30 s.
  static Result<std::unique_ptr<ScratchContainerd>> Start(const std::filesystem::path& dir);
  ~ScratchContainerd();
  ScratchContainerd(const ScratchContainerd&) = delete;
  ScratchContainerd& operator=(const ScratchContainerd&) = delete;

  const std::filesystem::path& socket() const { return socket_; }
  const std::filesystem::path& root() const { return root_; }
  pid_t pid() const { return pid_; }
  // VmHWM of the running daemon: its peak RSS since it started, 0 when unknown.
  uint64_t PeakRssKib() const;
  std::string LogTail() const;
  // The config file written for it (for the report).
  static std::string ConfigText(const std::filesystem::path& dir);
  // Stops the daemon now (SIGTERM, then SIGKILL); idempotent.
  void Stop();

 private:
  explicit ScratchContainerd(std::filesystem::path dir);
  Status Launch();

  std::filesystem::path dir_;
  std::filesystem::path root_;
  std::filesystem::path state_;
  std::filesystem::path socket_;
  pid_t pid_ = -1;
};

}  // namespace strata::bench
