#include "snapshotter/scratch_disk.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <system_error>

#include <fmt/format.h>

#include "base/byte_size.h"
#include "base/file.h"
#include "base/subprocess.h"

namespace strata::snapshotter {

namespace fs = std::filesystem;

Result<uint64_t> ScratchBytesFromLabels(const store::Labels& labels, uint64_t fallback) {
  auto it = labels.find(std::string(kLabelScratchSize));
  if (it == labels.end() || it->second.empty()) return fallback;
  auto bytes = ParseByteSize(it->second);
  if (!bytes) return Fail(bytes.error().WithContext(fmt::format("label {}", kLabelScratchSize)));
  return bytes;
}

Status CreateScratchDisk(const fs::path& image, uint64_t bytes) {
  if (bytes < kMinScratchDiskBytes || bytes % 4096 != 0) {
    return Fail(ErrorCode::kInvalidArgument, "scratch disk {}: size {} is not a multiple of 4096 of at least {}",
                image.string(), bytes, kMinScratchDiskBytes);
  }
  const auto mke2fs = FindInPath("mke2fs");
  if (!mke2fs) {
    return Fail(ErrorCode::kFailedPrecondition, "scratch disk {}: mke2fs not found in PATH (install e2fsprogs)",
                image.string());
  }
  const fs::path temp = image.parent_path() / fmt::format(".{}.tmp-{}", image.filename().string(), ::getpid());
  const fs::path skeleton = image.parent_path() / fmt::format(".scratch-skeleton-{}", ::getpid());
  auto cleanup = [&] {
    std::error_code ec;
    fs::remove(temp, ec);
    fs::remove_all(skeleton, ec);
  };
  auto made = [&]() -> Status {
    cleanup();
    for (const fs::path& dir : {skeleton, skeleton / "upper", skeleton / "work"}) {
      if (::mkdir(dir.c_str(), 0755) != 0 || ::chmod(dir.c_str(), 0755) != 0) return ErrnoFail(errno, "mkdir", dir);
    }
    {
      STRATA_ASSIGN_OR_RETURN(UniqueFd file, OpenFile(temp, O_WRONLY | O_CREAT | O_EXCL, 0600));
      if (::ftruncate(file.get(), static_cast<off_t>(bytes)) != 0) return ErrnoFail(errno, "truncate", temp);
    }
    const std::vector<std::string> argv = {
        "mke2fs", "-t", "ext4", "-F", "-q", "-E", "root_owner=0:0,lazy_itable_init=0,lazy_journal_init=1",
        "-d", skeleton.string(), temp.string()};
    STRATA_ASSIGN_OR_RETURN(ProgramOutput ran, RunProgram(*mke2fs, argv, {.timeout = std::chrono::minutes(10)}));
    if (!ran.Succeeded()) {
      std::string detail = ran.err.empty() ? ran.out : ran.err;
      while (!detail.empty() && (detail.back() == '\n' || detail.back() == ' ')) detail.pop_back();
      return Fail(ErrorCode::kInternal, "scratch disk {}: mke2fs failed ({}): {}", image.string(), ran.HowItEnded(),
                  detail.substr(0, 1024));
    }
    STRATA_ASSIGN_OR_RETURN(UniqueFd file, OpenFile(temp, O_RDWR));
    if (::fsync(file.get()) != 0) return ErrnoFail(errno, "fsync", temp);
    if (::rename(temp.c_str(), image.c_str()) != 0) return ErrnoFail(errno, "rename to", image);
    return FsyncDir(image.parent_path());
  }();
  cleanup();
  return made;
}

}  // namespace strata::snapshotter
