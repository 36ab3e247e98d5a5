// The ordered directories a union view is built from, opened once, and the safe ways to
// reach entries inside them.
//
// Layer indices: when a writable upper dir is configured it is layer 0, followed by the
// lower dirs in the order given (first = topmost, as overlay's lowerdir=A:B); without an
// upper dir layer 0 is the topmost lower. Every path below a layer is resolved relative
// to the layer's directory fd with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), so a
// symlink inside a layer can never lead outside it.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "base/file.h"
#include "fsfilter/sys_result.h"

namespace strata::fsfilter {

struct LayerChainConfig {
  std::vector<std::filesystem::path> lower_dirs;  // topmost first; at least one
  std::filesystem::path upper_dir;                // empty: read-only view
  std::filesystem::path work_dir;                 // required with upper_dir, same filesystem
};

class LayerChain {
 public:
  // Opens every directory. InvalidArgument naming the option when the combination is wrong
  // (no lower dir, upper without work dir, work dir on another filesystem than upper);
  // NotFound naming the path when a directory is missing or not a directory.
  // Creates (and empties) the staging directory <work_dir>/work, as kernel overlayfs does.
  static Result<LayerChain> Open(const LayerChainConfig& config);

  LayerChain(LayerChain&&) noexcept;
  LayerChain& operator=(LayerChain&&) noexcept;
  ~LayerChain();

  int size() const { return static_cast<int>(layers_.size()); }
  bool has_upper() const { return has_upper_; }
  // The directory fd (O_PATH) of `layer`. REQUIRES: 0 <= layer < size().
  int fd(int layer) const { return layers_[layer].fd.get(); }
  const std::filesystem::path& path(int layer) const { return layers_[layer].path; }
  // The staging dir for copy-up (<work_dir>/work), O_PATH. REQUIRES: has_upper().
  int work_fd() const { return work_.get(); }
  dev_t upper_dev() const { return layers_[0].dev; }

  // An st_ino unique across layers: the raw inode number for the device of layer 0's
  // directory; for any other device, the inode number with a small per-device index in
  // bits 48..63 (like overlay's xino). Thread-safe.
  uint64_t UniqueIno(dev_t dev, ino_t ino) const;

 private:
  struct Layer {
    std::filesystem::path path;
    UniqueFd fd;
    dev_t dev = 0;
  };
  LayerChain() = default;

  std::vector<Layer> layers_;
  bool has_upper_ = false;
  UniqueFd work_;
  mutable std::mutex dev_mutex_;
  mutable std::map<dev_t, uint64_t> dev_index_;
};

// openat2(dir_fd, relative, flags | O_CLOEXEC | O_NOFOLLOW) confined beneath dir_fd with no
// symlink resolution at all. `relative` is "." for dir_fd itself.
SysResult<UniqueFd> OpenBeneath(int dir_fd, const std::string& relative, int flags, mode_t mode = 0);

// True for errors that mean "this path does not exist as asked in this layer" (ENOENT,
// ENOTDIR, ELOOP from a symlink or non-directory in the way).
inline bool IsAbsent(int errnum) { return errnum == ENOENT || errnum == ENOTDIR || errnum == ELOOP; }

// "/proc/self/fd/<fd>": lets the path-based *xattr calls act on an O_PATH fd (of any file
// type, symlinks included) without following anything inside the layer.
std::string ProcFdPath(int fd);

}  // namespace strata::fsfilter
