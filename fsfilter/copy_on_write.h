// The copy-on-write filter: every modifying operation of the merged view, on top of the
// layer-union filter. Lower layers are never written; changes land in the upper layer in
// overlay form, exactly as kernel overlayfs would leave them (0/0 char device whiteouts,
// trusted.overlay.opaque=y on a directory recreated over a deleted lower one), so the
// upper dir can be diffed (archive/diff.h) or mounted by the kernel afterwards.
//
// Every method takes the tree lock exclusively and returns EROFS on a view without upper.
// Entries returned carry one lookup reference for the caller.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>

#include "base/file.h"
#include "fsfilter/layer_union.h"
#include "fsfilter/sys_result.h"

namespace strata::fsfilter {

// Who creates an entry: new entries are owned by the caller (as with kernel overlayfs),
// with the group of a setgid parent directory.
struct Caller {
  uid_t uid = 0;
  gid_t gid = 0;
};

// A setattr request; unset fields are left alone. Times may use UTIME_NOW in tv_nsec.
struct AttrChanges {
  std::optional<mode_t> mode;
  std::optional<uid_t> uid;
  std::optional<gid_t> gid;
  std::optional<off_t> size;
  std::optional<struct timespec> atime;
  std::optional<struct timespec> mtime;
};

class CopyOnWriteFilter {
 public:
  explicit CopyOnWriteFilter(LayerUnion& union_view) : union_(union_view) {}

  // Copies `node` up now (for callers that will modify it by other means).
  SysStatus CopyUp(Node* node, bool with_data = true);

  // Applies `changes` after copy-up (truncation to 0 skips copying the data).
  SysResult<struct stat> SetAttr(Node* node, const AttrChanges& changes);
  // Opens for writing (O_WRONLY/O_RDWR/O_TRUNC in `flags`), copying up first.
  SysResult<UniqueFd> OpenForWrite(Node* node, int flags);

  // New entries. EEXIST when the name is visible; EINVAL for ".wh." names; EPERM for a 0/0
  // character device (that is a whiteout). A directory made where a lower entry was deleted
  // is opaque.
  SysResult<std::pair<Entry, UniqueFd>> Create(Node* parent, std::string_view name, mode_t mode, int flags,
                                               const Caller& caller);
  SysResult<Entry> MakeNode(Node* parent, std::string_view name, mode_t mode, dev_t rdev, const Caller& caller);
  SysResult<Entry> MakeDir(Node* parent, std::string_view name, mode_t mode, const Caller& caller);
  SysResult<Entry> MakeSymlink(Node* parent, std::string_view name, const std::string& target, const Caller& caller);
  // Hard link; a lower `node` is copied up first (which, as in overlayfs without index,
  // separates it from its other lower names).
  SysResult<Entry> Link(Node* node, Node* new_parent, std::string_view new_name);

  // Removal; names still present in a lower layer leave a whiteout.
  SysStatus Unlink(Node* parent, std::string_view name);
  SysStatus Rmdir(Node* parent, std::string_view name);
  // overlayfs rename: EXDEV for a directory that exists in a lower layer (callers like mv
  // then copy); RENAME_NOREPLACE and RENAME_EXCHANGE (both names copied up, swapped in
  // upper) honoured; other flags (RENAME_WHITEOUT): EINVAL.
  SysStatus Rename(Node* parent, std::string_view name, Node* new_parent, std::string_view new_name, unsigned flags);

  // Overlay bookkeeping xattrs: EPERM. Removing an xattr a lower entry lacks: ENODATA
  // without copy-up.
  SysStatus SetXattr(Node* node, const std::string& name, std::string_view value, int flags);
  SysStatus RemoveXattr(Node* node, const std::string& name);

 private:
  struct NewName {
    UniqueFd upper_parent;
    bool over_whiteout = false;  // a lower entry of this name is hidden
    struct stat parent_st{};
  };
  // Checks the name is free and valid, copies the parent up and clears whiteouts there.
  SysResult<NewName> PrepareNewName(Node* parent, std::string_view name);
  SysStatus SetNewOwner(const NewName& target, const std::string& name, const Caller& caller, mode_t mode,
                        bool is_symlink);
  SysResult<Entry> AttachNew(Node* parent, const NewName& target, const std::string& name);
  // True when a layer below upper still shows `name` inside `parent`.
  SysResult<bool> NameInLowers(const Node* parent, std::string_view name);
  // The attached node for `name` in `parent` with a temporary reference, or null if absent.
  SysResult<Node*> AcquireChild(Node* parent, std::string_view name);
  void ReleaseChild(Node* node);
  SysStatus RemoveChild(Node* parent, std::string_view name, bool want_dir);
  SysStatus Exchange(Node* parent, std::string_view name, Node* new_parent, std::string_view new_name);
  // Upper dir fd + name addressing `node` there (the root: layer dir and ".").
  SysResult<std::pair<UniqueFd, std::string>> UpperLocation(const Node* node);

  LayerUnion& union_;
};

}  // namespace strata::fsfilter
