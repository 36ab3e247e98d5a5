#include "snapshotter/erofs_layer.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <system_error>

#include <fmt/format.h>

#include "base/digest.h"
#include "base/file.h"
#include "base/subprocess.h"

namespace strata::snapshotter {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kTempPrefix = ".layer.erofs.tmp-";

// A UUID (8-4-4-4-12 hex) from the seed's sha256, so rebuilding a layer anywhere gives it
// the same identity.
std::string UuidFrom(std::string_view seed) {
  const std::string hex = Digest::Of(seed).hex();
  return fmt::format("{}-{}-{}-{}-{}", hex.substr(0, 8), hex.substr(8, 4), hex.substr(12, 4), hex.substr(16, 4),
                     hex.substr(20, 12));
}

// Removes temp images a crashed build left. REQUIRES: the snapshot's lock held.
void RemoveStaleTemps(const fs::path& snapshot_dir) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(snapshot_dir, ec)) {
    if (entry.path().filename().string().starts_with(kTempPrefix)) fs::remove(entry.path(), ec);
  }
}

Status BuildImage(const fs::path& snapshot_dir, const fs::path& image, std::string_view uuid_seed) {
  const auto mkfs = FindInPath("mkfs.erofs");
  if (!mkfs) {
    return Fail(ErrorCode::kFailedPrecondition, "layer image of {}: mkfs.erofs not found in PATH (install erofs-utils)",
                snapshot_dir.string());
  }
  RemoveStaleTemps(snapshot_dir);
  const fs::path temp = snapshot_dir / fmt::format("{}{}", kTempPrefix, ::getpid());
  // -x1: xattrs kept, an unreadable one is an error rather than silently dropped
  // (-x-1 would drop the overlay opaque markers). No compression: the guest pages layers in
  // directly, and the pull already paid for decompression once.
  const std::vector<std::string> argv = {"mkfs.erofs", "--quiet", "--preserve-mtime", "-x1",
                                         "-U" + UuidFrom(uuid_seed), temp.string(), (snapshot_dir / "fs").string()};
  auto ran = RunProgram(*mkfs, argv, {.timeout = std::chrono::hours(1)});
  auto failed = [&](Error error) {
    std::error_code ec;
    fs::remove(temp, ec);
    return Fail(std::move(error));
  };
  if (!ran) return failed(ran.error().WithContext(fmt::format("layer image of {}", snapshot_dir.string())));
  if (!ran->Succeeded()) {
    std::string detail = ran->err.empty() ? ran->out : ran->err;
    while (!detail.empty() && (detail.back() == '\n' || detail.back() == ' ')) detail.pop_back();
    return failed(Error(ErrorCode::kInternal, fmt::format("layer image of {}: mkfs.erofs failed ({}): {}",
                                                          snapshot_dir.string(), ran->HowItEnded(),
                                                          detail.substr(0, 1024))));
  }
  auto file = OpenFile(temp, O_RDONLY);
  if (!file) return failed(file.error());
  if (::fchmod(file->get(), 0444) != 0 || ::fsync(file->get()) != 0) {
    return failed(ErrnoFail(errno, "fsync", temp).error());
  }
  if (::rename(temp.c_str(), image.c_str()) != 0) return failed(ErrnoFail(errno, "rename to", image).error());
  return FsyncDir(snapshot_dir);
}

}  // namespace

fs::path LayerImagePath(const fs::path& snapshot_dir) { return snapshot_dir / kLayerImageName; }

Result<fs::path> EnsureLayerImage(const fs::path& snapshot_dir, std::string_view uuid_seed) {
  const fs::path image = LayerImagePath(snapshot_dir);
  struct stat st {};
  if (::stat(image.c_str(), &st) == 0) return image;  // the final name only holds complete images
  // One open file description per call, so the flock excludes other threads as well as
  // other processes.
  STRATA_ASSIGN_OR_RETURN(UniqueFd dir, OpenFile(snapshot_dir, O_RDONLY | O_DIRECTORY));
  while (::flock(dir.get(), LOCK_EX) != 0) {
    if (errno != EINTR) return ErrnoFail(errno, "lock", snapshot_dir);
  }
  Status built = ::stat(image.c_str(), &st) == 0 ? Status{} : BuildImage(snapshot_dir, image, uuid_seed);
  ::flock(dir.get(), LOCK_UN);
  if (!built) return Fail(built.error());
  return image;
}

}  // namespace strata::snapshotter
