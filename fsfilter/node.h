// The in-memory node of one merged-view entry (what FUSE calls an inode), and the kernel's
// lookup count on it.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>

namespace strata::fsfilter {

// A node is identified by its path in the merged view (parent + name). Fields are guarded
// by LayerUnion's locks: `parent`, `name`, `layer`, `last_layer`, `attached` change only
// under the exclusive tree lock; `lookups`, `child_refs`, `children` only under the node
// table mutex. A node lives while the kernel holds lookups on it or a child points at it.
struct Node {
  Node* parent = nullptr;  // null only for the root
  std::string name;        // on-disk name in its topmost layer
  uint64_t ino = 0;        // reported st_ino; kept across copy-up unless it splits a lower hard-link group
  mode_t type = 0;         // S_IFMT bits
  int layer = 0;           // topmost layer holding the entry (0 = upper when writable)
  int last_layer = 0;      // directories: lowest layer merged in (== layer when not merged)
  bool attached = true;    // false once unlinked or replaced: unreachable by name

  uint64_t lookups = 0;                                // kernel references
  uint64_t child_refs = 0;                             // nodes whose parent is this one
  std::map<std::string, Node*, std::less<>> children;  // attached children by merge key

  bool is_dir() const { return S_ISDIR(type); }
  // A directory whose contents come from more than one layer.
  bool is_merged_dir() const { return S_ISDIR(type) && last_layer > layer; }
};

}  // namespace strata::fsfilter
