#include "fsfilter/copy_on_write.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <mutex>

#include "fsfilter/copy_up.h"
#include "fsfilter/overlay_markers.h"

namespace strata::fsfilter {

namespace {

bool ValidNewName(std::string_view name) {
  return !name.empty() && name.size() <= NAME_MAX && name.find('/') == std::string_view::npos && name != "." &&
         name != ".." && !IsReservedName(name);
}

// Moves `name` out of `upper_parent` into the work dir and deletes it there (with anything
// inside: a directory being removed holds only whiteouts). With `leave_whiteout`, a whiteout
// takes its place atomically (RENAME_WHITEOUT), or right after when the fs lacks it.
SysStatus RemoveFromUpper(int upper_parent, const std::string& name, int work_fd, bool leave_whiteout) {
  const std::string stage = StagingName();
  bool whiteout_done = false;
  if (leave_whiteout &&
      ::renameat2(upper_parent, name.c_str(), work_fd, stage.c_str(), RENAME_WHITEOUT) == 0) {
    whiteout_done = true;
  } else if (::renameat(upper_parent, name.c_str(), work_fd, stage.c_str()) != 0) {
    return LastErrno();
  }
  if (leave_whiteout && !whiteout_done) FS_RETURN_IF_ERROR(CreateWhiteout(upper_parent, name));
  return RemoveTreeAt(work_fd, stage);
}

}  // namespace

SysStatus CopyOnWriteFilter::CopyUp(Node* node, bool with_data) {
  if (!union_.writable()) return SysFail(EROFS);
  std::unique_lock lock(union_.tree_mutex());
  return fsfilter::CopyUp(union_, node, with_data);
}

SysResult<std::pair<UniqueFd, std::string>> CopyOnWriteFilter::UpperLocation(const Node* node) {
  if (node->parent == nullptr) {
    FS_ASSIGN_OR_RETURN(UniqueFd root, OpenBeneath(union_.chain().fd(0), ".", O_PATH | O_DIRECTORY));
    return std::pair{std::move(root), std::string(".")};
  }
  FS_ASSIGN_OR_RETURN(UniqueFd parent, union_.OpenParentIn(0, node));
  return std::pair{std::move(parent), node->name};
}

SysResult<struct stat> CopyOnWriteFilter::SetAttr(Node* node, const AttrChanges& changes) {
  if (!union_.writable()) return SysFail(EROFS);
  std::unique_lock lock(union_.tree_mutex());
  if (!node->attached) return SysFail(ENOENT);
  const bool truncating_to_zero = changes.size && *changes.size == 0;
  FS_RETURN_IF_ERROR(fsfilter::CopyUp(union_, node, !truncating_to_zero));
  FS_ASSIGN_OR_RETURN(auto location, UpperLocation(node));
  auto& [dir, name] = location;
  if (changes.uid || changes.gid) {
    if (::fchownat(dir.get(), name.c_str(), changes.uid.value_or(static_cast<uid_t>(-1)),
                   changes.gid.value_or(static_cast<gid_t>(-1)), AT_SYMLINK_NOFOLLOW) != 0)
      return LastErrno();
  }
  if (changes.mode && S_ISLNK(node->type)) return SysFail(EOPNOTSUPP);
  if (changes.mode) {
    // chmod through an O_PATH|O_NOFOLLOW fd: never follows a symlink in the upper dir.
    FS_ASSIGN_OR_RETURN(UniqueFd entry, OpenBeneath(dir.get(), name, O_PATH));
    if (::fchmodat(AT_FDCWD, ProcFdPath(entry.get()).c_str(), *changes.mode & 07777, 0) != 0) return LastErrno();
  }
  if (changes.size) {
    if (!S_ISREG(node->type)) return SysFail(S_ISDIR(node->type) ? EISDIR : EINVAL);
    UniqueFd file(::openat(dir.get(), name.c_str(), O_WRONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!file || ::ftruncate(file.get(), *changes.size) != 0) return LastErrno();
  }
  if (changes.atime || changes.mtime) {
    struct timespec times[2];
    times[0] = changes.atime.value_or(timespec{0, UTIME_OMIT});
    times[1] = changes.mtime.value_or(timespec{0, UTIME_OMIT});
    if (::utimensat(dir.get(), name.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) return LastErrno();
  }
  FS_ASSIGN_OR_RETURN(struct stat st, union_.StatLocked(node));
  return union_.Present(node, st);
}

SysResult<UniqueFd> CopyOnWriteFilter::OpenForWrite(Node* node, int flags) {
  if (!union_.writable()) return SysFail(EROFS);
  std::unique_lock lock(union_.tree_mutex());
  if (S_ISDIR(node->type)) return SysFail(EISDIR);
  FS_RETURN_IF_ERROR(fsfilter::CopyUp(union_, node, !(flags & O_TRUNC)));
  return union_.OpenTopmostLocked(node, flags & ~(O_CREAT | O_EXCL | O_NOCTTY));
}

SysResult<Node*> CopyOnWriteFilter::AcquireChild(Node* parent, std::string_view name) {
  if (Node* child = union_.AcquireChild(parent, name)) return child;
  FS_ASSIGN_OR_RETURN(std::optional<LayerHit> hit, union_.FindInLayers(parent, name, 0));
  if (!hit) return static_cast<Node*>(nullptr);
  return union_.AttachChild(parent, *hit, 1);
}

void CopyOnWriteFilter::ReleaseChild(Node* node) {
  if (node != nullptr) union_.DropReferences(node, 1);
}

SysResult<bool> CopyOnWriteFilter::NameInLowers(const Node* parent, std::string_view name) {
  if (parent->last_layer < 1) return false;
  FS_ASSIGN_OR_RETURN(std::optional<LayerHit> hit, union_.FindInLayers(parent, name, 1));
  return hit.has_value();
}

SysResult<CopyOnWriteFilter::NewName> CopyOnWriteFilter::PrepareNewName(Node* parent, std::string_view name) {
  if (!parent->is_dir()) return SysFail(ENOTDIR);
  if (!parent->attached) return SysFail(ENOENT);
  if (!ValidNewName(name)) return SysFail(name.size() > NAME_MAX ? ENAMETOOLONG : EINVAL);
  if (union_.FindChild(parent, name) != nullptr) return SysFail(EEXIST);
  FS_ASSIGN_OR_RETURN(std::optional<LayerHit> existing, union_.FindInLayers(parent, name, 0));
  if (existing) return SysFail(EEXIST);
  FS_RETURN_IF_ERROR(fsfilter::CopyUp(union_, parent, true));
  NewName target;
  FS_ASSIGN_OR_RETURN(target.upper_parent, union_.OpenDirIn(0, parent));
  if (::fstat(target.upper_parent.get(), &target.parent_st) != 0) return LastErrno();
  FS_ASSIGN_OR_RETURN(target.over_whiteout, RemoveWhiteout(target.upper_parent.get(), name));
  return target;
}

SysStatus CopyOnWriteFilter::SetNewOwner(const NewName& target, const std::string& name, const Caller& caller,
                                         mode_t mode, bool is_symlink) {
  const int dir = target.upper_parent.get();
  const bool setgid_parent = (target.parent_st.st_mode & S_ISGID) != 0;
  const gid_t gid = setgid_parent ? target.parent_st.st_gid : caller.gid;
  if (::geteuid() == 0 || caller.uid != ::geteuid()) {
    if (::fchownat(dir, name.c_str(), caller.uid, gid, AT_SYMLINK_NOFOLLOW) != 0 && errno != EPERM)
      return LastErrno();
  }
  if (!is_symlink) {
    // The kernel applied the caller's umask already; our own umask must not apply twice.
    if (S_ISDIR(mode) && setgid_parent) mode |= S_ISGID;
    if (::fchmodat(dir, name.c_str(), mode & 07777, 0) != 0) return LastErrno();
  }
  return {};
}

SysResult<Entry> CopyOnWriteFilter::AttachNew(Node* parent, const NewName& target, const std::string& name) {
  LayerHit hit{0, 0, name, {}};
  if (::fstatat(target.upper_parent.get(), name.c_str(), &hit.st, AT_SYMLINK_NOFOLLOW) != 0) return LastErrno();
  Node* node = union_.AttachChild(parent, hit, 1);
  return Entry{node, union_.Present(node, hit.st)};
}

SysResult<std::pair<Entry, UniqueFd>> CopyOnWriteFilter::Create(Node* parent, std::string_view name, mode_t mode,
                                                                 int flags, const Caller& caller) {
  if (!union_.writable()) return SysFail(EROFS);
  std::unique_lock lock(union_.tree_mutex());
  FS_ASSIGN_OR_RETURN(NewName target, PrepareNewName(parent, name));
  const std::string n(name);
  const int open_flags = (flags & ~(O_NOCTTY | O_CREAT | O_EXCL)) | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
  UniqueFd fd(::openat(target.upper_parent.get(), n.c_str(), open_flags, 0600));
  if (!fd) return LastErrno();
  FS_RETURN_IF_ERROR(SetNewOwner(target, n, caller, S_IFREG | (mode & 07777), false));
  FS_ASSIGN_OR_RETURN(Entry entry, AttachNew(parent, target, n));
  return std::pair{entry, std::move(fd)};
}

SysResult<Entry> CopyOnWriteFilter::MakeNode(Node* parent, std::string_view name, mode_t mode, dev_t rdev,
                                             const Caller& caller) {
  if (!union_.writable()) return SysFail(EROFS);
  if (S_ISCHR(mode) && rdev == 0) return SysFail(EPERM);
  if (S_ISDIR(mode)) return SysFail(EINVAL);
  std::unique_lock lock(union_.tree_mutex());
  FS_ASSIGN_OR_RETURN(NewName target, PrepareNewName(parent, name));
  const std::string n(name);
  if (::mknodat(target.upper_parent.get(), n.c_str(), (mode & S_IFMT) | 0600, rdev) != 0) return LastErrno();
  FS_RETURN_IF_ERROR(SetNewOwner(target, n, caller, mode, false));
  return AttachNew(parent, target, n);
}

SysResult<Entry> CopyOnWriteFilter::MakeDir(Node* parent, std::string_view name, mode_t mode, const Caller& caller) {
  if (!union_.writable()) return SysFail(EROFS);
  std::unique_lock lock(union_.tree_mutex());
  FS_ASSIGN_OR_RETURN(NewName target, PrepareNewName(parent, name));
  const std::string n(name);
  if (::mkdirat(target.upper_parent.get(), n.c_str(), 0700) != 0) return LastErrno();
  // Over a deleted lower entry the new directory must not show the old one's children.
  if (target.over_whiteout) FS_RETURN_IF_ERROR(MarkOpaque(target.upper_parent.get(), n));
  FS_RETURN_IF_ERROR(SetNewOwner(target, n, caller, S_IFDIR | (mode & 07777), false));
  return AttachNew(parent, target, n);
}

SysResult<Entry> CopyOnWriteFilter::MakeSymlink(Node* parent, std::string_view name, const std::string& target_path,
                                                const Caller& caller) {
  if (!union_.writable()) return SysFail(EROFS);
  std::unique_lock lock(union_.tree_mutex());
  FS_ASSIGN_OR_RETURN(NewName target, PrepareNewName(parent, name));
  const std::string n(name);
  if (::symlinkat(target_path.c_str(), target.upper_parent.get(), n.c_str()) != 0) return LastErrno();
  FS_RETURN_IF_ERROR(SetNewOwner(target, n, caller, S_IFLNK, true));
  return AttachNew(parent, target, n);
}

SysResult<Entry> CopyOnWriteFilter::Link(Node* node, Node* new_parent, std::string_view new_name) {
  if (!union_.writable()) return SysFail(EROFS);
  if (S_ISDIR(node->type)) return SysFail(EPERM);
  std::unique_lock lock(union_.tree_mutex());
  if (!node->attached) return SysFail(ENOENT);
  FS_ASSIGN_OR_RETURN(NewName target, PrepareNewName(new_parent, new_name));
  FS_RETURN_IF_ERROR(fsfilter::CopyUp(union_, node, true));
  FS_ASSIGN_OR_RETURN(UniqueFd source_parent, union_.OpenParentIn(0, node));
  const std::string n(new_name);
  if (::linkat(source_parent.get(), node->name.c_str(), target.upper_parent.get(), n.c_str(), 0) != 0)
    return LastErrno();
  LayerHit hit{0, 0, n, {}};
  if (::fstatat(target.upper_parent.get(), n.c_str(), &hit.st, AT_SYMLINK_NOFOLLOW) != 0) return LastErrno();
  union_.RememberUpperIno(hit.st.st_ino, node->ino);
  Node* link = union_.AttachChild(new_parent, hit, 1, node->ino);
  return Entry{link, union_.Present(link, hit.st)};
}

SysStatus CopyOnWriteFilter::RemoveChild(Node* parent, std::string_view name, bool want_dir) {
  if (!union_.writable()) return SysFail(EROFS);
  std::unique_lock lock(union_.tree_mutex());
  if (!parent->is_dir()) return SysFail(ENOTDIR);
  if (IsReservedName(name)) return SysFail(ENOENT);
  FS_ASSIGN_OR_RETURN(Node* child, AcquireChild(parent, name));
  if (child == nullptr) return SysFail(ENOENT);
  SysStatus result = [&]() -> SysStatus {
    if (want_dir && !child->is_dir()) return SysFail(ENOTDIR);
    if (!want_dir && child->is_dir()) return SysFail(EISDIR);
    if (want_dir) {
      FS_ASSIGN_OR_RETURN(std::vector<DirEntry> listing, union_.ListDirLocked(child));
      if (listing.size() > 2) return SysFail(ENOTEMPTY);
    }
    FS_ASSIGN_OR_RETURN(bool in_lowers, NameInLowers(parent, child->name));
    FS_RETURN_IF_ERROR(fsfilter::CopyUp(union_, parent, true));
    FS_ASSIGN_OR_RETURN(UniqueFd upper_parent, union_.OpenDirIn(0, parent));
    if (child->layer == 0) {
      struct stat st{};
      if (::fstatat(upper_parent.get(), child->name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_nlink <= 1 &&
          !want_dir)
        union_.ForgetUpperIno(st.st_ino);
      if (want_dir || in_lowers) {
        FS_RETURN_IF_ERROR(RemoveFromUpper(upper_parent.get(), child->name, union_.chain().work_fd(), in_lowers));
      } else if (::unlinkat(upper_parent.get(), child->name.c_str(), 0) != 0) {
        return LastErrno();
      }
    } else {
      FS_RETURN_IF_ERROR(CreateWhiteout(upper_parent.get(), child->name));
    }
    union_.Detach(child);
    return {};
  }();
  ReleaseChild(child);
  return result;
}

SysStatus CopyOnWriteFilter::Unlink(Node* parent, std::string_view name) { return RemoveChild(parent, name, false); }
SysStatus CopyOnWriteFilter::Rmdir(Node* parent, std::string_view name) { return RemoveChild(parent, name, true); }

SysStatus CopyOnWriteFilter::Rename(Node* parent, std::string_view name, Node* new_parent, std::string_view new_name,
                                    unsigned flags) {
  if (!union_.writable()) return SysFail(EROFS);
  if ((flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) != 0 || flags == (RENAME_NOREPLACE | RENAME_EXCHANGE))
    return SysFail(EINVAL);
  if (flags & RENAME_EXCHANGE) return Exchange(parent, name, new_parent, new_name);
  if (!ValidNewName(new_name)) return SysFail(new_name.size() > NAME_MAX ? ENAMETOOLONG : EINVAL);
  if (IsReservedName(name)) return SysFail(ENOENT);
  std::unique_lock lock(union_.tree_mutex());
  if (!parent->is_dir() || !new_parent->is_dir()) return SysFail(ENOTDIR);
  FS_ASSIGN_OR_RETURN(Node* source, AcquireChild(parent, name));
  if (source == nullptr) return SysFail(ENOENT);
  SysResult<Node*> acquired_target = AcquireChild(new_parent, new_name);
  if (!acquired_target) {
    ReleaseChild(source);
    return SysFail(acquired_target.error());
  }
  Node* target = *acquired_target;
  SysStatus result = [&]() -> SysStatus {
    if (target == source) return {};
    if (target != nullptr && (flags & RENAME_NOREPLACE)) return SysFail(EEXIST);
    const bool is_dir = source->is_dir();
    if (is_dir) {
      if (target != nullptr && !target->is_dir()) return SysFail(ENOTDIR);
      // Moving a directory into itself or below itself.
      for (const Node* n = new_parent; n != nullptr; n = n->parent)
        if (n == source) return SysFail(EINVAL);
      // Without redirect_dir, overlayfs cannot move a directory that has lower parts.
      if (source->layer != 0 || source->is_merged_dir()) return SysFail(EXDEV);
    } else if (target != nullptr && target->is_dir()) {
      return SysFail(EISDIR);
    }
    if (target != nullptr && target->is_dir()) {
      FS_ASSIGN_OR_RETURN(std::vector<DirEntry> listing, union_.ListDirLocked(target));
      if (listing.size() > 2) return SysFail(ENOTEMPTY);
    }
    FS_ASSIGN_OR_RETURN(bool source_in_lowers, NameInLowers(parent, source->name));
    FS_RETURN_IF_ERROR(fsfilter::CopyUp(union_, source, true));
    FS_RETURN_IF_ERROR(fsfilter::CopyUp(union_, new_parent, true));
    FS_ASSIGN_OR_RETURN(UniqueFd from_dir, union_.OpenDirIn(0, parent));
    FS_ASSIGN_OR_RETURN(UniqueFd to_dir, union_.OpenDirIn(0, new_parent));
    const std::string to_name(new_name);
    const int work_fd = union_.chain().work_fd();
    if (target != nullptr && target->layer == 0 && target->is_dir()) {
      // An empty merged/upper directory may still hold whiteouts: clear it out of the way.
      FS_RETURN_IF_ERROR(RemoveFromUpper(to_dir.get(), target->name, work_fd, false));
    }
    FS_RETURN_IF_ERROR(RemoveWhiteout(to_dir.get(), to_name));
    // A directory moved into a merged directory must not pick up lower entries of its new
    // name (overlayfs marks it opaque for the same reason).
    if (is_dir && new_parent->last_layer > 0) FS_RETURN_IF_ERROR(MarkOpaque(from_dir.get(), source->name));
    bool whiteout_left = false;
    if (source_in_lowers && ::renameat2(from_dir.get(), source->name.c_str(), to_dir.get(), to_name.c_str(),
                                        RENAME_WHITEOUT) == 0) {
      whiteout_left = true;
    } else if (::renameat(from_dir.get(), source->name.c_str(), to_dir.get(), to_name.c_str()) != 0) {
      return LastErrno();
    }
    if (source_in_lowers && !whiteout_left) FS_RETURN_IF_ERROR(CreateWhiteout(from_dir.get(), source->name));
    if (target != nullptr) union_.Detach(target);
    union_.Move(source, new_parent, to_name);
    return {};
  }();
  ReleaseChild(target);
  ReleaseChild(source);
  return result;
}

SysStatus CopyOnWriteFilter::Exchange(Node* parent, std::string_view name, Node* new_parent,
                                      std::string_view new_name) {
  if (IsReservedName(name) || IsReservedName(new_name)) return SysFail(ENOENT);
  std::unique_lock lock(union_.tree_mutex());
  if (!parent->is_dir() || !new_parent->is_dir()) return SysFail(ENOTDIR);
  FS_ASSIGN_OR_RETURN(Node* first, AcquireChild(parent, name));
  if (first == nullptr) return SysFail(ENOENT);
  SysResult<Node*> acquired_second = AcquireChild(new_parent, new_name);
  if (!acquired_second || *acquired_second == nullptr) {
    ReleaseChild(first);
    return SysFail(acquired_second ? ENOENT : acquired_second.error());
  }
  Node* second = *acquired_second;
  SysStatus result = [&]() -> SysStatus {
    if (first == second) return {};
    for (Node* node : {first, second}) {
      // As with rename: a directory with lower parts cannot move without redirect_dir.
      if (node->is_dir() && (node->layer != 0 || node->is_merged_dir())) return SysFail(EXDEV);
      if (node->is_dir()) {
        for (const Node* n = node == first ? new_parent : parent; n != nullptr; n = n->parent)
          if (n == node) return SysFail(EINVAL);
      }
    }
    FS_RETURN_IF_ERROR(fsfilter::CopyUp(union_, first, true));
    FS_RETURN_IF_ERROR(fsfilter::CopyUp(union_, second, true));
    FS_ASSIGN_OR_RETURN(UniqueFd first_dir, union_.OpenDirIn(0, parent));
    FS_ASSIGN_OR_RETURN(UniqueFd second_dir, union_.OpenDirIn(0, new_parent));
    if (first->is_dir() && new_parent->last_layer > 0) FS_RETURN_IF_ERROR(MarkOpaque(first_dir.get(), first->name));
    if (second->is_dir() && parent->last_layer > 0) FS_RETURN_IF_ERROR(MarkOpaque(second_dir.get(), second->name));
    if (::renameat2(first_dir.get(), first->name.c_str(), second_dir.get(), second->name.c_str(), RENAME_EXCHANGE) != 0)
      return LastErrno();
    const std::string first_name = first->name;
    const std::string second_name = second->name;
    union_.Move(first, new_parent, second_name);
    union_.Move(second, parent, first_name);
    return {};
  }();
  ReleaseChild(second);
  ReleaseChild(first);
  return result;
}

SysStatus CopyOnWriteFilter::SetXattr(Node* node, const std::string& name, std::string_view value, int flags) {
  if (IsOverlayXattr(name)) return SysFail(EPERM);
  if (!union_.writable()) return SysFail(EROFS);
  std::unique_lock lock(union_.tree_mutex());
  FS_RETURN_IF_ERROR(fsfilter::CopyUp(union_, node, true));
  FS_ASSIGN_OR_RETURN(UniqueFd fd, union_.OpenTopmostLocked(node, O_PATH));
  if (::setxattr(ProcFdPath(fd.get()).c_str(), name.c_str(), value.data(), value.size(), flags) != 0)
    return LastErrno();
  return {};
}

SysStatus CopyOnWriteFilter::RemoveXattr(Node* node, const std::string& name) {
  if (IsOverlayXattr(name)) return SysFail(EPERM);
  if (!union_.writable()) return SysFail(EROFS);
  std::unique_lock lock(union_.tree_mutex());
  if (node->layer != 0) {
    // Removing what is not there must not copy up (the kernel checks the lower entry first).
    FS_ASSIGN_OR_RETURN(UniqueFd lower, union_.OpenTopmostLocked(node, O_PATH));
    if (::getxattr(ProcFdPath(lower.get()).c_str(), name.c_str(), nullptr, 0) < 0) return LastErrno();
  }
  FS_RETURN_IF_ERROR(fsfilter::CopyUp(union_, node, true));
  FS_ASSIGN_OR_RETURN(UniqueFd fd, union_.OpenTopmostLocked(node, O_PATH));
  if (::removexattr(ProcFdPath(fd.get()).c_str(), name.c_str()) != 0) return LastErrno();
  return {};
}

}  // namespace strata::fsfilter
