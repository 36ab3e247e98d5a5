// The seam for extended attributes that do not live on the layer files: a LayerUnion given
// an XattrSource answers getxattr/listxattr from it (for every entry, the files' own xattrs
// are then not reported). The Windows layer view (windows_view.h) serves each entry's
// Windows metadata from the layer index this way. Views without a source (every Linux and
// kernel-overlay-compatible view) read the files' xattrs and never call into this.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "fsfilter/sys_result.h"

namespace strata::fsfilter {

class XattrSource {
 public:
  virtual ~XattrSource() = default;

  // Entries are named by `layer` (the LayerChain index of the topmost layer holding the
  // entry: the one whose file the view shows) and `path`, the entry's path inside that
  // layer from its on-disk names ("a/b/c"; "." for the layer's root directory).
  // Both calls are thread-safe.

  // The names of the entry's xattrs, each once, in a stable order.
  virtual std::vector<std::string> List(int layer, std::string_view path) const = 0;

  // The whole value of xattr `name`: ENODATA when the entry has none of that name; E2BIG
  // when the value cannot be returned as an xattr (longer than XATTR_SIZE_MAX); EIO when
  // its backing data cannot be read.
  virtual SysResult<std::string> Get(int layer, std::string_view path, std::string_view name) const = 0;
};

}  // namespace strata::fsfilter
