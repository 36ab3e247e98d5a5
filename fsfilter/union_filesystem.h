// The union view as one object: the layer-union filter (reads) with the copy-on-write
// filter (writes) stacked on it. The FUSE front end (fuse_frontend.h) and in-process users
// (tests, a future snapshotter driver) talk to this.
#pragma once

#include <fcntl.h>

#include <memory>

#include "base/error.h"
#include "base/file.h"
#include "fsfilter/copy_on_write.h"
#include "fsfilter/layer_chain.h"
#include "fsfilter/layer_union.h"
#include "fsfilter/name_filter.h"
#include "fsfilter/xattr_source.h"

namespace strata::fsfilter {

class UnionFilesystem {
 public:
  // Opens the layer dirs (errors name the option and path). `names` null = ExactNameFilter;
  // `xattrs` null = the layer files' own xattrs (see xattr_source.h).
  static Result<std::unique_ptr<UnionFilesystem>> Open(const LayerChainConfig& config,
                                                       std::unique_ptr<NameFilter> names = nullptr,
                                                       std::unique_ptr<XattrSource> xattrs = nullptr);

  LayerUnion& view() { return view_; }
  CopyOnWriteFilter& writer() { return writer_; }
  bool writable() const { return view_.writable(); }
  Node* root() { return view_.root(); }

  // Opens `node` for I/O with open(2) `flags`: a write mode or O_TRUNC copies it up first
  // (EROFS without upper); otherwise the topmost entry is opened read-only.
  SysResult<UniqueFd> Open(Node* node, int flags);

  // True when `flags` need the upper copy.
  static bool WantsWrite(int flags) { return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC) != 0; }

 private:
  UnionFilesystem(LayerChain chain, std::unique_ptr<NameFilter> names, std::unique_ptr<XattrSource> xattrs)
      : view_(std::move(chain), std::move(names), std::move(xattrs)), writer_(view_) {}

  LayerUnion view_;
  CopyOnWriteFilter writer_;
};

}  // namespace strata::fsfilter
