#include "fsfilter/layer_chain.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

#include "fsfilter/overlay_markers.h"

namespace strata::fsfilter {

namespace {

Result<UniqueFd> OpenLayerDir(const std::filesystem::path& path, std::string_view option) {
  if (path.empty()) return Fail(ErrorCode::kInvalidArgument, "{}: empty path", option);
  const int fd = ::open(path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    return Fail(err == ENOENT ? ErrorCode::kNotFound : ErrorCode::kInvalidArgument, "{} \"{}\": {}", option,
                path.string(), std::strerror(err));
  }
  return UniqueFd(fd);
}

Result<dev_t> DevOf(int fd, const std::filesystem::path& path) {
  struct stat st{};
  if (::fstat(fd, &st) != 0) return ErrnoFail(errno, "fstat", path);
  return st.st_dev;
}

}  // namespace

SysResult<UniqueFd> OpenBeneath(int dir_fd, const std::string& relative, int flags, mode_t mode) {
  struct open_how how{};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC | O_NOFOLLOW);
  how.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  long fd;
  do {
    fd = ::syscall(SYS_openat2, dir_fd, relative.c_str(), &how, sizeof(how));
  } while (fd < 0 && (errno == EINTR || errno == EAGAIN));
  if (fd < 0) return LastErrno();
  return UniqueFd(static_cast<int>(fd));
}

std::string ProcFdPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

Result<LayerChain> LayerChain::Open(const LayerChainConfig& config) {
  if (config.lower_dirs.empty()) return Fail(ErrorCode::kInvalidArgument, "lowerdir: at least one directory is required");
  if (!config.upper_dir.empty() && config.work_dir.empty())
    return Fail(ErrorCode::kInvalidArgument, "upperdir \"{}\" needs a workdir", config.upper_dir.string());
  if (config.upper_dir.empty() && !config.work_dir.empty())
    return Fail(ErrorCode::kInvalidArgument, "workdir \"{}\" given without an upperdir", config.work_dir.string());

  LayerChain chain;
  auto add = [&](const std::filesystem::path& path, std::string_view option) -> Status {
    STRATA_ASSIGN_OR_RETURN(UniqueFd fd, OpenLayerDir(path, option));
    STRATA_ASSIGN_OR_RETURN(dev_t dev, DevOf(fd.get(), path));
    chain.layers_.push_back(Layer{path, std::move(fd), dev});
    return {};
  };
  if (!config.upper_dir.empty()) {
    STRATA_RETURN_IF_ERROR(add(config.upper_dir, "upperdir"));
    chain.has_upper_ = true;
  }
  for (const auto& lower : config.lower_dirs) STRATA_RETURN_IF_ERROR(add(lower, "lowerdir"));

  if (chain.has_upper_) {
    STRATA_ASSIGN_OR_RETURN(UniqueFd work_parent, OpenLayerDir(config.work_dir, "workdir"));
    STRATA_ASSIGN_OR_RETURN(dev_t work_dev, DevOf(work_parent.get(), config.work_dir));
    if (work_dev != chain.layers_[0].dev)
      return Fail(ErrorCode::kInvalidArgument, "workdir \"{}\" and upperdir \"{}\" must be on the same filesystem",
                  config.work_dir.string(), config.upper_dir.string());
    // Leftovers of an interrupted copy-up are garbage: start from an empty staging dir.
    if (::mkdirat(work_parent.get(), "work", 0700) != 0 && errno != EEXIST)
      return ErrnoFail(errno, "mkdir", config.work_dir / "work");
    SysResult<UniqueFd> work = OpenBeneath(work_parent.get(), "work", O_PATH | O_DIRECTORY);
    if (!work) return ErrnoFail(work.error(), "open", config.work_dir / "work");
    if (SysStatus emptied = RemoveChildrenAt(work->get()); !emptied)
      return ErrnoFail(emptied.error(), "empty", config.work_dir / "work");
    chain.work_ = std::move(*work);
  }
  return chain;
}

LayerChain::LayerChain(LayerChain&& other) noexcept
    : layers_(std::move(other.layers_)), has_upper_(other.has_upper_), work_(std::move(other.work_)) {
  std::lock_guard lock(other.dev_mutex_);
  dev_index_ = std::move(other.dev_index_);
}

LayerChain& LayerChain::operator=(LayerChain&& other) noexcept {
  if (this != &other) {
    layers_ = std::move(other.layers_);
    has_upper_ = other.has_upper_;
    work_ = std::move(other.work_);
    std::scoped_lock lock(dev_mutex_, other.dev_mutex_);
    dev_index_ = std::move(other.dev_index_);
  }
  return *this;
}

LayerChain::~LayerChain() = default;

uint64_t LayerChain::UniqueIno(dev_t dev, ino_t ino) const {
  if (!layers_.empty() && dev == layers_[0].dev) return ino;
  uint64_t index;
  {
    std::lock_guard lock(dev_mutex_);
    auto [it, inserted] = dev_index_.try_emplace(dev, dev_index_.size() + 1);
    index = it->second;
  }
  return (index << 48) | (static_cast<uint64_t>(ino) & ((uint64_t{1} << 48) - 1));
}

}  // namespace strata::fsfilter
