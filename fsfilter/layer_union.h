// The layer-union filter: the read side of the merged view over a LayerChain. Lookup walks
// the layers top-down (whiteouts hide lower names, opaque directories stop the descent),
// readdir merges names, and attributes/xattrs/targets come from the topmost entry. It owns
// the node table and the tree lock the copy-on-write filter (copy_on_write.h) builds on.
//
// Contracts kept for kernel overlayfs parity:
//  - names starting ".wh." never appear and cannot be looked up;
//  - trusted.overlay.* / user.overlay.* xattrs are hidden;
//  - st_ino is stable for the life of the mount (a node keeps the first number reported for
//    it, also across copy-up; copied-up files are remembered by their upper inode), except
//    that copying up one name of a lower hard-link group gives it the upper copy's number;
//  - directory st_nlink: a merged directory reports 1 (as overlayfs and btrfs-style "unknown"),
//    any other directory the nlink of its one layer directory. No layer scan is needed.
// With a non-identity NameFilter (case folding) a directory may be spelled differently in
// each layer: paths are matched component by component in each layer, and names are merged,
// whited out and remembered by the filter's MergeKey.
#pragma once

#include <pthread.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/file.h"
#include "fsfilter/layer_chain.h"
#include "fsfilter/name_filter.h"
#include "fsfilter/node.h"
#include "fsfilter/sys_result.h"
#include "fsfilter/xattr_source.h"

namespace strata::fsfilter {

// A node handed to the caller together with its attributes; the caller owns one lookup
// reference on `node` (release it with Forget).
struct Entry {
  Node* node = nullptr;
  struct stat attr{};
};

// One name of a merged directory listing.
struct DirEntry {
  std::string name;
  uint64_t ino = 0;
  mode_t type = 0;  // S_IFMT bits
};

// Where lookup found a name.
struct LayerHit {
  int layer = -1;       // topmost layer holding it
  int last_layer = -1;  // directories: lowest layer merged in
  std::string name;     // on-disk name in `layer`
  struct stat st{};     // lstat in `layer`
};

// A reader-writer lock that prefers writers (glibc's default rwlock lets a steady stream
// of readers starve writers forever). Meets SharedMutex for std::shared_lock/unique_lock.
// Not recursive: a thread must not take it shared twice.
class TreeMutex {
 public:
  TreeMutex();
  ~TreeMutex();
  TreeMutex(const TreeMutex&) = delete;
  TreeMutex& operator=(const TreeMutex&) = delete;
  void lock();
  void unlock();
  void lock_shared();
  void unlock_shared();
  // A thread holds the lock exclusively or waits for it (a copy-up, a rename, ...): taking
  // it shared would wait. A hint, stale as soon as read.
  bool writer_active() const { return writers_.load(std::memory_order_relaxed) > 0; }

 private:
  pthread_rwlock_t lock_;
  std::atomic<int> writers_{0};  // holding or waiting for the exclusive lock
};

class LayerUnion {
 public:
  // `names` null = ExactNameFilter; `xattrs` null = the layer files' own xattrs.
  LayerUnion(LayerChain chain, std::unique_ptr<NameFilter> names, std::unique_ptr<XattrSource> xattrs = nullptr);
  ~LayerUnion();
  LayerUnion(const LayerUnion&) = delete;
  LayerUnion& operator=(const LayerUnion&) = delete;

  Node* root() { return root_.get(); }
  const LayerChain& chain() const { return chain_; }
  const NameFilter& names() const { return *names_; }
  bool writable() const { return chain_.has_upper(); }

  // ---- Read operations; each takes the tree lock shared. Thread-safe. ----

  // The child `name` of `parent`, adding one lookup reference. ENOENT when absent or
  // whited out (and for reserved ".wh." names), ENOTDIR when `parent` is not a directory.
  SysResult<Entry> Lookup(Node* parent, std::string_view name);
  // Drops `count` lookup references; frees the node once nothing refers to it.
  void Forget(Node* node, uint64_t count);
  SysResult<struct stat> GetAttr(Node* node);
  SysResult<std::string> ReadLink(Node* node);
  // The merged listing of a directory, "." and ".." first, then every visible name once
  // (topmost layer wins), in layer order then directory order.
  SysResult<std::vector<DirEntry>> ListDir(Node* dir);
  // getxattr semantics: with size 0 only the returned string's size counts;
  // ERANGE when the value is longer than `size`. Overlay xattrs: ENODATA. With an
  // XattrSource, values come from it (for the node's topmost layer and path in that layer).
  SysResult<std::string> GetXattr(Node* node, const std::string& name, size_t size);
  // NUL-separated names without overlay xattrs; size semantics as GetXattr.
  SysResult<std::string> ListXattr(Node* node, size_t size);
  // Opens the topmost entry with `flags` (which must not ask for writing).
  SysResult<UniqueFd> OpenTopmost(Node* node, int flags);
  SysResult<struct statvfs> StatFs();
  // The layer currently holding `node` (changes to 0 on copy-up).
  int LayerOf(Node* node);
  // Live nodes, the root included (for leak checks).
  size_t NodeCount();

  // ---- For the copy-on-write filter. REQUIRES: tree_mutex() held (shared or exclusive). ----

  TreeMutex& tree_mutex() { return tree_mutex_; }
  // "." for the root, else "a/b/c" built from on-disk names.
  std::string PathOf(const Node* node) const;
  // O_PATH fd of directory `dir` in `layer`; ENOENT/ENOTDIR when it is not a dir there.
  // With a non-identity NameFilter, components spelled differently in `layer` are matched.
  SysResult<UniqueFd> OpenDirIn(int layer, const Node* dir) const;
  // O_PATH fd of the directory containing `node` in `layer`.
  SysResult<UniqueFd> OpenParentIn(int layer, const Node* node) const;
  // Looks `name` up in layers [max(from_layer, dir->layer), dir->last_layer] of `dir`;
  // nullopt when absent or whited out within that range.
  SysResult<std::optional<LayerHit>> FindInLayers(const Node* dir, std::string_view name, int from_layer) const;
  // The attached child node for `name`, or null. Does not add a reference: only for
  // callers holding the tree lock exclusively (no Forget can run).
  Node* FindChild(Node* parent, std::string_view name);
  // The attached child node for `name` with one lookup reference added, or null.
  Node* AcquireChild(Node* parent, std::string_view name);
  // Creates (or refreshes, if one is attached) the child node for a hit, adding
  // `add_lookups` references. `ino` 0 derives it from the hit.
  Node* AttachChild(Node* parent, const LayerHit& hit, uint64_t add_lookups, uint64_t ino = 0);
  // Drops `count` lookup references (Forget without taking the tree lock).
  void DropReferences(Node* node, uint64_t count);
  // Makes `node` unreachable by name (after unlink/rmdir or being replaced).
  void Detach(Node* node);
  // Moves an attached node under a new parent/name (after rename).
  void Move(Node* node, Node* new_parent, const std::string& new_name);
  // The attributes reported for `node` given an lstat of its topmost entry.
  struct stat Present(const Node* node, struct stat st) const;
  // The reported st_ino for an entry first seen at `hit`.
  uint64_t InoForHit(const LayerHit& hit) const;
  // Remembers that the upper inode `upper_ino` reports `ino` (copy-up, hard link), or forgets it.
  void RememberUpperIno(ino_t upper_ino, uint64_t ino);
  void ForgetUpperIno(ino_t upper_ino);
  // lstat of the node's topmost entry.
  SysResult<struct stat> StatLocked(const Node* node) const;
  // openat of the node's topmost entry with `flags` | O_NOFOLLOW.
  SysResult<UniqueFd> OpenTopmostLocked(const Node* node, int flags) const;
  // ListDir without taking the lock.
  SysResult<std::vector<DirEntry>> ListDirLocked(Node* dir);

 private:
  SysResult<Entry> LookupLocked(Node* parent, std::string_view name);
  // FindInLayers for identity names: stats by path from each layer's root.
  SysResult<std::optional<LayerHit>> FindByPath(const Node* dir, const std::string& dir_path, std::string_view name,
                                                int from_layer) const;
  // Opens directory `dir` (whose view path is `view_path`) in `layer` with `flags` (which
  // include O_DIRECTORY); stores its path inside that layer in `layer_path` when given.
  SysResult<UniqueFd> OpenDirAt(int layer, const Node* dir, const std::string& view_path, int flags,
                                std::string* layer_path) const;
  // The node's path inside its topmost layer ("." for the root).
  SysResult<std::string> LayerPathOf(const Node* node) const;
  void ReleaseLocked(Node* node);  // REQUIRES: table_mutex_ held

  LayerChain chain_;
  std::unique_ptr<NameFilter> names_;
  std::unique_ptr<XattrSource> xattrs_;
  TreeMutex tree_mutex_;
  std::mutex table_mutex_;
  std::unique_ptr<Node> root_;
  std::unordered_map<Node*, std::unique_ptr<Node>> nodes_;  // every node but the root
  std::unordered_map<ino_t, uint64_t> upper_inos_;
};

}  // namespace strata::fsfilter
