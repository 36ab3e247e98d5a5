// Copy-up: materialising a lower entry in the upper layer before it is modified, the way
// kernel overlayfs does it: parents first (with their metadata), the entry staged in
// <workdir>/work and renamed into place, so a crash never leaves a half-copied file in upper.
#pragma once

#include <string>

#include "fsfilter/layer_union.h"
#include "fsfilter/sys_result.h"

namespace strata::fsfilter {

// Copies `node` (and every ancestor not yet in upper) up into layer 0. Data is cloned with
// FICLONE when the filesystem can, else copy_file_range, else read/write; owner, mode,
// times, symlink target, device number and xattrs (except overlay bookkeeping) are kept.
// `with_data` false creates an empty regular file (the caller truncates it anyway).
// After the rename the upper parent's times are restored. The node keeps its st_ino unless
// the lower file had several hard links (then it takes the upper copy's, as overlayfs does).
// No-op for a node already in upper. EROFS when the view has no upper layer.
// REQUIRES: union_view.tree_mutex() held exclusively; node attached.
SysStatus CopyUp(LayerUnion& union_view, Node* node, bool with_data = true);

// A fresh name for staging in the work dir ("#strata-<pid>-<n>").
std::string StagingName();

// Copies all xattrs except overlay bookkeeping from `src_fd` to `dst_fd` (O_PATH fds of any
// type). Values the destination refuses with EOPNOTSUPP/EPERM are skipped (an unprivileged
// daemon cannot write trusted.*).
SysStatus CopyXattrs(int src_fd, int dst_fd);

}  // namespace strata::fsfilter
