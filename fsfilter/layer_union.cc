#include "fsfilter/layer_union.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/statfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <unordered_set>

#include "fsfilter/overlay_markers.h"

namespace strata::fsfilter {

namespace {

// Keeps only the non-overlay names of a NUL-separated xattr name list.
std::string FilterXattrNames(const std::string& names) {
  std::string kept;
  size_t start = 0;
  while (start < names.size()) {
    size_t end = names.find('\0', start);
    if (end == std::string::npos) end = names.size();
    std::string_view name(names.data() + start, end - start);
    if (!name.empty() && !IsOverlayXattr(name)) {
      kept.append(name);
      kept.push_back('\0');
    }
    start = end + 1;
  }
  return kept;
}

bool ValidName(std::string_view name) {
  return !name.empty() && name.size() <= NAME_MAX && name.find('/') == std::string_view::npos && name != "." &&
         name != "..";
}

}  // namespace

TreeMutex::TreeMutex() {
  pthread_rwlockattr_t attr;
  pthread_rwlockattr_init(&attr);
  pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init(&lock_, &attr);
  pthread_rwlockattr_destroy(&attr);
}
TreeMutex::~TreeMutex() { pthread_rwlock_destroy(&lock_); }
void TreeMutex::lock() {
  writers_.fetch_add(1, std::memory_order_relaxed);
  pthread_rwlock_wrlock(&lock_);
}
void TreeMutex::unlock() {
  pthread_rwlock_unlock(&lock_);
  writers_.fetch_sub(1, std::memory_order_relaxed);
}
void TreeMutex::lock_shared() { pthread_rwlock_rdlock(&lock_); }
void TreeMutex::unlock_shared() { pthread_rwlock_unlock(&lock_); }

LayerUnion::LayerUnion(LayerChain chain, std::unique_ptr<NameFilter> names, std::unique_ptr<XattrSource> xattrs)
    : chain_(std::move(chain)), names_(std::move(names)), xattrs_(std::move(xattrs)), root_(std::make_unique<Node>()) {
  if (!names_) names_ = std::make_unique<ExactNameFilter>();
  // The root merges every layer; kernel overlayfs ignores opaque markers on the root too.
  root_->type = S_IFDIR;
  root_->layer = 0;
  root_->last_layer = chain_.size() - 1;
  root_->lookups = 1;
  struct stat st{};
  if (::fstatat(chain_.fd(0), "", &st, AT_EMPTY_PATH) == 0) root_->ino = chain_.UniqueIno(st.st_dev, st.st_ino);
  if (root_->ino == 0) root_->ino = 1;
}

LayerUnion::~LayerUnion() = default;

std::string LayerUnion::PathOf(const Node* node) const {
  if (node->parent == nullptr) return ".";
  std::vector<const std::string*> parts;
  for (const Node* n = node; n->parent != nullptr; n = n->parent) parts.push_back(&n->name);
  std::string path;
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
    if (!path.empty()) path.push_back('/');
    path.append(**it);
  }
  return path;
}

SysResult<UniqueFd> LayerUnion::OpenDirIn(int layer, const Node* dir) const {
  return OpenDirAt(layer, dir, PathOf(dir), O_PATH | O_DIRECTORY, nullptr);
}

SysResult<UniqueFd> LayerUnion::OpenDirAt(int layer, const Node* dir, const std::string& view_path, int flags,
                                          std::string* layer_path) const {
  SysResult<UniqueFd> exact = OpenBeneath(chain_.fd(layer), view_path, flags);
  // The spelling of the view is found first whenever it exists (MatchInLayer prefers the
  // exact name), so only a miss needs the component walk.
  if (exact || names_->IsIdentity() || !IsAbsent(exact.error())) {
    if (exact && layer_path != nullptr) *layer_path = view_path;
    return exact;
  }
  std::vector<const Node*> lineage;  // dir and its ancestors below the root, deepest first
  for (const Node* n = dir; n->parent != nullptr; n = n->parent) lineage.push_back(n);
  if (lineage.empty()) return exact;
  UniqueFd current;
  std::string path;
  for (auto it = lineage.rbegin(); it != lineage.rend(); ++it) {
    const int at = current ? current.get() : chain_.fd(layer);
    std::optional<std::string> on_disk = names_->MatchInLayer(at, (*it)->name);
    if (!on_disk) return SysFail(ENOENT);
    const bool last = std::next(it) == lineage.rend();
    FS_ASSIGN_OR_RETURN(current, OpenBeneath(at, *on_disk, last ? flags : O_PATH | O_DIRECTORY));
    if (!path.empty()) path.push_back('/');
    path.append(*on_disk);
  }
  if (layer_path != nullptr) *layer_path = std::move(path);
  return current;
}

SysResult<std::string> LayerUnion::LayerPathOf(const Node* node) const {
  if (node->parent == nullptr) return std::string(".");
  if (!node->attached) return SysFail(ENOENT);
  if (node->parent->parent == nullptr) return node->name;
  std::string path;
  FS_RETURN_IF_ERROR(OpenDirAt(node->layer, node->parent, PathOf(node->parent), O_PATH | O_DIRECTORY, &path));
  return path + "/" + node->name;
}

SysResult<UniqueFd> LayerUnion::OpenParentIn(int layer, const Node* node) const {
  if (node->parent == nullptr) return SysFail(EINVAL);
  return OpenDirIn(layer, node->parent);
}

SysResult<struct stat> LayerUnion::StatLocked(const Node* node) const {
  struct stat st{};
  if (node->parent == nullptr) {
    if (::fstatat(chain_.fd(0), "", &st, AT_EMPTY_PATH) != 0) return LastErrno();
    return st;
  }
  if (!node->attached) return SysFail(ENOENT);
  if (names_->IsIdentity()) {
    // One syscall, not three (GETATTR follows every read): lookup found each directory on the
    // node's path in its layer as a directory (opened beneath, no symlinks), and the tree lock
    // holds renames off, so the path resolves as it did then. A stat reads attributes only.
    if (::fstatat(chain_.fd(node->layer), PathOf(node).c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return LastErrno();
    return st;
  }
  FS_ASSIGN_OR_RETURN(UniqueFd parent, OpenParentIn(node->layer, node));
  if (::fstatat(parent.get(), node->name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return LastErrno();
  return st;
}

struct stat LayerUnion::Present(const Node* node, struct stat st) const {
  st.st_ino = node->ino;
  if (node->is_merged_dir()) st.st_nlink = 1;
  return st;
}

uint64_t LayerUnion::InoForHit(const LayerHit& hit) const {
  if (hit.layer == 0 && chain_.has_upper()) {
    if (auto it = upper_inos_.find(hit.st.st_ino); it != upper_inos_.end()) return it->second;
  }
  return chain_.UniqueIno(hit.st.st_dev, hit.st.st_ino);
}

void LayerUnion::RememberUpperIno(ino_t upper_ino, uint64_t ino) { upper_inos_[upper_ino] = ino; }
void LayerUnion::ForgetUpperIno(ino_t upper_ino) { upper_inos_.erase(upper_ino); }

namespace {

// Folds one layer's entry for a name into `hit`: the topmost entry, its range extended down
// through directories. False when the entry ends the descent: a whiteout or a non-directory.
bool FoldLayerEntry(std::optional<LayerHit>& hit, int layer, const std::string& on_disk, const struct stat& st) {
  if (IsWhiteoutStat(st)) return false;
  if (!hit) {
    hit = LayerHit{layer, layer, on_disk, st};
    return S_ISDIR(st.st_mode);
  }
  if (!S_ISDIR(st.st_mode)) return false;  // a non-directory below a directory is hidden
  hit->last_layer = layer;
  return true;
}

}  // namespace

SysResult<std::optional<LayerHit>> LayerUnion::FindInLayers(const Node* dir, std::string_view name,
                                                            int from_layer) const {
  if (!dir->is_dir()) return SysFail(ENOTDIR);
  if (!ValidName(name)) return SysFail(name.size() > NAME_MAX ? ENAMETOOLONG : EINVAL);
  if (IsReservedName(name)) return std::optional<LayerHit>();
  const std::string dir_path = PathOf(dir);
  if (names_->IsIdentity()) return FindByPath(dir, dir_path, name, from_layer);
  std::optional<LayerHit> hit;
  for (int layer = std::max(from_layer, dir->layer); layer <= dir->last_layer; ++layer) {
    SysResult<UniqueFd> dir_fd = OpenDirAt(layer, dir, dir_path, O_PATH | O_DIRECTORY, nullptr);
    if (!dir_fd) {
      if (IsAbsent(dir_fd.error())) continue;
      return SysFail(dir_fd.error());
    }
    const std::optional<std::string> on_disk = names_->MatchInLayer(dir_fd->get(), name);
    struct stat st{};
    if (!on_disk || ::fstatat(dir_fd->get(), on_disk->c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (on_disk && errno != ENOENT) return LastErrno();
      if (HasWhiteoutFile(dir_fd->get(), name)) break;  // AUFS-form whiteout
      continue;
    }
    if (!FoldLayerEntry(hit, layer, *on_disk, st)) break;
    // Opaque directories stop the descent; so does the last layer of an unmerged range.
    SysResult<UniqueFd> child = OpenBeneath(dir_fd->get(), *on_disk, O_PATH | O_DIRECTORY);
    if (!child || IsOpaqueDir(child->get())) break;
  }
  return hit;
}

SysResult<std::optional<LayerHit>> LayerUnion::FindByPath(const Node* dir, const std::string& dir_path,
                                                          std::string_view name, int from_layer) const {
  // Each layer of a directory's range holds every component of its path as a directory or
  // not at all: a layer with anything else there ends the parent's range (by induction from
  // the root), and only this view changes the upper layer. So a path resolved from the layer
  // root meets no symlink, and two stats per layer replace opening the directory first
  // (what a negative lookup, one per file a `tar -x` creates, costs).
  const std::string prefix = dir->parent == nullptr ? std::string() : dir_path + "/";
  const std::string path = prefix + std::string(name);
  const std::string whiteout_file = prefix + WhiteoutFileName(name);
  std::optional<LayerHit> hit;
  for (int layer = std::max(from_layer, dir->layer); layer <= dir->last_layer; ++layer) {
    struct stat st{};
    if (::fstatat(chain_.fd(layer), path.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno != ENOENT && errno != ENOTDIR) return LastErrno();
      if (::fstatat(chain_.fd(layer), whiteout_file.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) break;  // AUFS form
      continue;
    }
    if (!FoldLayerEntry(hit, layer, std::string(name), st)) break;
    // Opaque directories stop the descent (opened beneath: the check reads its xattrs).
    SysResult<UniqueFd> child = OpenBeneath(chain_.fd(layer), path, O_PATH | O_DIRECTORY);
    if (!child || IsOpaqueDir(child->get())) break;
  }
  return hit;
}

Node* LayerUnion::FindChild(Node* parent, std::string_view name) {
  std::lock_guard lock(table_mutex_);
  auto it = parent->children.find(names_->MergeKey(name));
  return it == parent->children.end() ? nullptr : it->second;
}

Node* LayerUnion::AcquireChild(Node* parent, std::string_view name) {
  std::lock_guard lock(table_mutex_);
  auto it = parent->children.find(names_->MergeKey(name));
  if (it == parent->children.end()) return nullptr;
  ++it->second->lookups;
  return it->second;
}

Node* LayerUnion::AttachChild(Node* parent, const LayerHit& hit, uint64_t add_lookups, uint64_t ino) {
  const std::string key = names_->MergeKey(hit.name);
  std::lock_guard lock(table_mutex_);
  if (auto it = parent->children.find(key); it != parent->children.end()) {
    it->second->lookups += add_lookups;
    return it->second;
  }
  auto node = std::make_unique<Node>();
  node->parent = parent;
  node->name = hit.name;
  node->ino = ino != 0 ? ino : InoForHit(hit);
  node->type = hit.st.st_mode & S_IFMT;
  node->layer = hit.layer;
  node->last_layer = S_ISDIR(hit.st.st_mode) ? hit.last_layer : hit.layer;
  node->lookups = add_lookups;
  Node* raw = node.get();
  parent->children.emplace(key, raw);
  ++parent->child_refs;
  nodes_.emplace(raw, std::move(node));
  return raw;
}

void LayerUnion::Detach(Node* node) {
  std::lock_guard lock(table_mutex_);
  if (!node->attached || node->parent == nullptr) return;
  auto& siblings = node->parent->children;
  if (auto it = siblings.find(names_->MergeKey(node->name)); it != siblings.end() && it->second == node)
    siblings.erase(it);
  node->attached = false;
  // A detached directory's children can no longer be reached by name either.
  node->children.clear();
  ReleaseLocked(node);
}

void LayerUnion::Move(Node* node, Node* new_parent, const std::string& new_name) {
  std::lock_guard lock(table_mutex_);
  Node* old_parent = node->parent;
  if (auto it = old_parent->children.find(names_->MergeKey(node->name));
      it != old_parent->children.end() && it->second == node)
    old_parent->children.erase(it);
  node->name = new_name;
  if (new_parent != old_parent) {
    node->parent = new_parent;
    ++new_parent->child_refs;
  }
  new_parent->children[names_->MergeKey(new_name)] = node;
  node->attached = true;
  if (new_parent != old_parent) {
    --old_parent->child_refs;
    ReleaseLocked(old_parent);
  }
}

void LayerUnion::ReleaseLocked(Node* node) {
  while (node != nullptr && node->parent != nullptr && node->lookups == 0 && node->child_refs == 0) {
    Node* parent = node->parent;
    if (node->attached) {
      auto& siblings = parent->children;
      if (auto it = siblings.find(names_->MergeKey(node->name)); it != siblings.end() && it->second == node)
        siblings.erase(it);
    }
    --parent->child_refs;
    nodes_.erase(node);
    node = parent;
  }
}

SysResult<Entry> LayerUnion::LookupLocked(Node* parent, std::string_view name) {
  if (!parent->is_dir()) return SysFail(ENOTDIR);
  // The reference is taken while the table is locked: a concurrent Forget (which only
  // needs the tree lock shared) could otherwise free the node in between.
  if (Node* child = AcquireChild(parent, name)) {
    SysResult<struct stat> st = StatLocked(child);
    if (!st) {
      DropReferences(child, 1);
      return SysFail(st.error());
    }
    return Entry{child, Present(child, *st)};
  }
  FS_ASSIGN_OR_RETURN(std::optional<LayerHit> hit, FindInLayers(parent, name, 0));
  if (!hit) return SysFail(ENOENT);
  Node* node = AttachChild(parent, *hit, 1);
  return Entry{node, Present(node, hit->st)};
}

SysResult<Entry> LayerUnion::Lookup(Node* parent, std::string_view name) {
  std::shared_lock lock(tree_mutex_);
  return LookupLocked(parent, name);
}

void LayerUnion::Forget(Node* node, uint64_t count) {
  if (node == root_.get()) return;
  std::shared_lock tree(tree_mutex_);
  DropReferences(node, count);
}

void LayerUnion::DropReferences(Node* node, uint64_t count) {
  if (node == root_.get()) return;
  std::lock_guard lock(table_mutex_);
  node->lookups -= std::min(node->lookups, count);
  ReleaseLocked(node);
}

SysResult<struct stat> LayerUnion::GetAttr(Node* node) {
  std::shared_lock lock(tree_mutex_);
  FS_ASSIGN_OR_RETURN(struct stat st, StatLocked(node));
  return Present(node, st);
}

int LayerUnion::LayerOf(Node* node) {
  std::shared_lock lock(tree_mutex_);
  return node->layer;
}

size_t LayerUnion::NodeCount() {
  std::lock_guard lock(table_mutex_);
  return nodes_.size() + 1;
}

SysResult<std::string> LayerUnion::ReadLink(Node* node) {
  std::shared_lock lock(tree_mutex_);
  if (!S_ISLNK(node->type)) return SysFail(EINVAL);
  FS_ASSIGN_OR_RETURN(UniqueFd parent, OpenParentIn(node->layer, node));
  std::string target(PATH_MAX, '\0');
  const ssize_t n = ::readlinkat(parent.get(), node->name.c_str(), target.data(), target.size());
  if (n < 0) return LastErrno();
  target.resize(static_cast<size_t>(n));
  return target;
}

SysResult<std::vector<DirEntry>> LayerUnion::ListDir(Node* dir) {
  std::shared_lock lock(tree_mutex_);
  return ListDirLocked(dir);
}

SysResult<std::vector<DirEntry>> LayerUnion::ListDirLocked(Node* dir) {
  if (!dir->is_dir()) return SysFail(ENOTDIR);
  if (!dir->attached) return SysFail(ENOENT);
  std::vector<DirEntry> entries;
  entries.push_back({".", dir->ino, S_IFDIR});
  entries.push_back({"..", dir->parent != nullptr ? dir->parent->ino : dir->ino, S_IFDIR});
  std::unordered_set<std::string> seen;    // merge keys already listed
  std::unordered_set<std::string> hidden;  // merge keys whited out by a layer above
  const std::string path = PathOf(dir);
  for (int layer = dir->layer; layer <= dir->last_layer; ++layer) {
    SysResult<UniqueFd> fd = OpenDirAt(layer, dir, path, O_RDONLY | O_DIRECTORY, nullptr);
    if (!fd) {
      if (IsAbsent(fd.error())) continue;
      return SysFail(fd.error());
    }
    DIR* stream = ::fdopendir(fd->get());
    if (stream == nullptr) return LastErrno();
    const int dir_fd = fd->release();
    std::vector<std::string> whiteouts;  // apply to the layers below only
    struct stat layer_dir_st{};
    ::fstat(dir_fd, &layer_dir_st);
    errno = 0;
    while (struct dirent* d = ::readdir(stream)) {
      const std::string_view name = d->d_name;
      if (name == "." || name == "..") continue;
      if (IsReservedName(name)) {
        if (name != kOpaqueMarker) whiteouts.push_back(names_->MergeKey(name.substr(kWhiteoutPrefix.size())));
        continue;
      }
      std::string key = names_->MergeKey(name);
      if (seen.contains(key) || hidden.contains(key)) continue;
      mode_t type = DTTOIF(d->d_type);
      uint64_t ino = 0;
      if (d->d_type == DT_CHR || d->d_type == DT_UNKNOWN) {
        struct stat st{};
        if (::fstatat(dir_fd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
        if (IsWhiteoutStat(st)) {
          whiteouts.push_back(std::move(key));
          continue;
        }
        type = st.st_mode & S_IFMT;
      }
      {
        std::lock_guard table(table_mutex_);
        if (auto it = dir->children.find(key); it != dir->children.end()) ino = it->second->ino;
      }
      if (ino == 0) {
        LayerHit hit{layer, layer, {}, {}};
        hit.st.st_ino = d->d_ino;
        hit.st.st_dev = layer_dir_st.st_dev;
        ino = InoForHit(hit);
      }
      seen.insert(key);
      entries.push_back({std::string(name), ino, type});
    }
    const int read_errno = errno;
    ::closedir(stream);
    if (read_errno != 0) return SysFail(read_errno);
    for (auto& key : whiteouts) hidden.insert(std::move(key));
    // An opaque directory in this layer hides everything below; FindInLayers already
    // bounded last_layer by it, so nothing more to do here.
  }
  return entries;
}

SysResult<std::string> LayerUnion::GetXattr(Node* node, const std::string& name, size_t size) {
  if (IsOverlayXattr(name)) return SysFail(ENODATA);
  std::shared_lock lock(tree_mutex_);
  if (xattrs_) {
    FS_ASSIGN_OR_RETURN(const std::string path, LayerPathOf(node));
    FS_ASSIGN_OR_RETURN(std::string value, xattrs_->Get(node->layer, path, name));
    if (size != 0 && value.size() > size) return SysFail(ERANGE);
    return value;
  }
  FS_ASSIGN_OR_RETURN(UniqueFd fd, OpenTopmostLocked(node, O_PATH));
  const std::string proc = ProcFdPath(fd.get());
  std::string value(size, '\0');
  const ssize_t n = ::getxattr(proc.c_str(), name.c_str(), size == 0 ? nullptr : value.data(), size);
  if (n < 0) return LastErrno();
  if (size == 0) return std::string(static_cast<size_t>(n), '\0');  // the caller only needs the size
  value.resize(static_cast<size_t>(n));
  return value;
}

SysResult<std::string> LayerUnion::ListXattr(Node* node, size_t size) {
  std::shared_lock lock(tree_mutex_);
  if (xattrs_) {
    FS_ASSIGN_OR_RETURN(const std::string path, LayerPathOf(node));
    std::string names;
    for (const std::string& name : xattrs_->List(node->layer, path)) {
      names.append(name);
      names.push_back('\0');
    }
    if (size != 0 && names.size() > size) return SysFail(ERANGE);
    return names;
  }
  FS_ASSIGN_OR_RETURN(UniqueFd fd, OpenTopmostLocked(node, O_PATH));
  const std::string proc = ProcFdPath(fd.get());
  for (int attempt = 0; attempt < 4; ++attempt) {
    const ssize_t needed = ::listxattr(proc.c_str(), nullptr, 0);
    if (needed < 0) return LastErrno();
    std::string names(static_cast<size_t>(needed), '\0');
    const ssize_t n = ::listxattr(proc.c_str(), names.data(), names.size());
    if (n < 0) {
      if (errno == ERANGE) continue;  // grew in between
      return LastErrno();
    }
    names.resize(static_cast<size_t>(n));
    std::string kept = FilterXattrNames(names);
    if (size != 0 && kept.size() > size) return SysFail(ERANGE);
    return kept;
  }
  return SysFail(EIO);
}

SysResult<UniqueFd> LayerUnion::OpenTopmost(Node* node, int flags) {
  std::shared_lock lock(tree_mutex_);
  return OpenTopmostLocked(node, flags);
}

SysResult<UniqueFd> LayerUnion::OpenTopmostLocked(const Node* node, int flags) const {
  if (node->parent == nullptr) return OpenBeneath(chain_.fd(0), ".", flags);
  if (!node->attached) return SysFail(ENOENT);
  // Reading through the view must not touch lower layers, not even their atimes
  // (O_NOATIME needs ownership or CAP_FOWNER; without it, open normally).
  const bool lower_read = node->layer > 0 && (flags & O_PATH) == 0 && (flags & O_ACCMODE) == O_RDONLY;
  if (names_->IsIdentity()) {
    // The view's path is the layer's path: one walk in the kernel instead of opening the
    // parent first (an open per file is what a read of the whole view pays for).
    const std::string path = PathOf(node);
    if (lower_read) {
      SysResult<UniqueFd> fd = OpenBeneath(chain_.fd(node->layer), path, flags | O_NOATIME);
      if (fd || fd.error() != EPERM) return fd;
    }
    return OpenBeneath(chain_.fd(node->layer), path, flags);
  }
  FS_ASSIGN_OR_RETURN(UniqueFd parent, OpenParentIn(node->layer, node));
  flags |= O_CLOEXEC | O_NOFOLLOW;
  int fd = lower_read ? ::openat(parent.get(), node->name.c_str(), flags | O_NOATIME) : -1;
  if (fd < 0) fd = ::openat(parent.get(), node->name.c_str(), flags);
  if (fd < 0) return LastErrno();
  return UniqueFd(fd);
}

SysResult<struct statvfs> LayerUnion::StatFs() {
  struct statvfs st{};
  if (::fstatvfs(chain_.fd(0), &st) != 0) return LastErrno();
  return st;
}

}  // namespace strata::fsfilter
