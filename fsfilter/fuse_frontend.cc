#define FUSE_USE_VERSION 312
#include "fsfilter/fuse_frontend.h"

#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <linux/fuse.h>
#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/log.h"
#include "fsfilter/fuse_passthrough.h"
#include "fsfilter/session_loop.h"

namespace strata::fsfilter {

namespace {

// Per-open-file state. `fd` may be swapped once: a read-only handle opened on a lower file
// switches to the upper copy after a copy-up, so it sees writes made through other handles.
// Replaced fds stay open until release (a concurrent read may still use them).
struct OpenFile {
  Node* node = nullptr;
  std::atomic<int> fd{-1};
  std::atomic<int> layer{0};
  std::mutex mutex;
  std::vector<UniqueFd> fds;
  bool counted = false;  // counted by PassthroughNodes (released there)
};

// The kernel wants all concurrent opens of an inode in one mode — passthrough, all on the
// same backing file, or through the server — so the mode is chosen per node and kept while
// any handle of the node is open: the first open picks it, later ones follow.
class PassthroughNodes {
 public:
  enum class Use { kPassthrough, kServer, kConflict };
  // For an open of `node` on `fd` (a file of `layer`): kPassthrough with the shared backing
  // id in *backing_id, kServer, or kConflict when the node's open handles pass through to
  // another layer's file (a lower file copied up since) so this open could go neither way.
  // `may_pass_through` false makes a first open choose the server.
  Use Acquire(FusePassthrough& passthrough, Node* node, int fd, int layer, bool may_pass_through, int* backing_id) {
    std::lock_guard lock(mutex_);
    auto it = nodes_.find(node);
    if (it != nodes_.end()) {
      if (it->second.backing_id > 0 && it->second.layer != layer) return Use::kConflict;
      ++it->second.opens;
      *backing_id = it->second.backing_id;
      return it->second.backing_id > 0 ? Use::kPassthrough : Use::kServer;
    }
    const int id = may_pass_through ? passthrough.OpenBacking(fd) : 0;
    nodes_.emplace(node, Entry{.backing_id = id, .layer = layer, .opens = 1});
    *backing_id = id;
    return id > 0 ? Use::kPassthrough : Use::kServer;
  }
  // One handle Acquire counted is gone (released, or its open reply failed).
  void Release(FusePassthrough& passthrough, Node* node) {
    std::lock_guard lock(mutex_);
    auto it = nodes_.find(node);
    if (it == nodes_.end() || --it->second.opens > 0) return;
    if (it->second.backing_id > 0) passthrough.CloseBacking(it->second.backing_id);
    nodes_.erase(it);
  }

 private:
  struct Entry {
    int backing_id;  // 0: through the server
    int layer;
    int opens;
  };
  std::mutex mutex_;
  std::unordered_map<Node*, Entry> nodes_;
};

// Per-open-directory state: the merged listing, built at offset 0; offsets are indices.
struct OpenDir {
  Node* dir = nullptr;
  std::mutex mutex;
  std::vector<DirEntry> entries;
  bool listed = false;
};

struct Context {
  UnionFilesystem* fs = nullptr;
  fuse_session* session = nullptr;
  double timeout = 86400;
  bool writeback = true;
  bool splice = true;
  FusePassthrough passthrough;
  PassthroughNodes passthrough_nodes;
  bool passthrough_lower = false;  // passthrough=all: lower files of a writable view too
};

// The session's custom I/O (installed for passthrough): libfuse hands it the session's
// userdata, our Context.
ssize_t PassthroughRead(int fd, void* buf, size_t size, void* userdata) {
  return static_cast<Context*>(userdata)->passthrough.Read(fd, buf, size);
}
ssize_t PassthroughWritev(int fd, struct iovec* iov, int count, void* userdata) {
  return static_cast<Context*>(userdata)->passthrough.Writev(fd, iov, count);
}
ssize_t PlainSplice(int fd_in, off_t* off_in, int fd_out, off_t* off_out, size_t len, unsigned int flags, void*) {
  return ::splice(fd_in, off_in, fd_out, off_out, len, flags);
}

Context& Ctx(fuse_req_t req) { return *static_cast<Context*>(fuse_req_userdata(req)); }

Node* NodeOf(Context& ctx, fuse_ino_t ino) {
  if (ino == FUSE_ROOT_ID) return ctx.fs->root();
  return reinterpret_cast<Node*>(static_cast<uintptr_t>(ino));
}

Node* ToNode(fuse_req_t req, fuse_ino_t ino) { return NodeOf(Ctx(req), ino); }

fuse_ino_t ToIno(Context& ctx, Node* node) {
  if (node == ctx.fs->root()) return FUSE_ROOT_ID;
  return static_cast<fuse_ino_t>(reinterpret_cast<uintptr_t>(node));
}

OpenFile* FileOf(fuse_file_info* fi) { return reinterpret_cast<OpenFile*>(static_cast<uintptr_t>(fi->fh)); }
OpenDir* DirOf(fuse_file_info* fi) { return reinterpret_cast<OpenDir*>(static_cast<uintptr_t>(fi->fh)); }

fuse_entry_param EntryParam(Context& ctx, const Entry& entry) {
  fuse_entry_param e{};
  e.ino = ToIno(ctx, entry.node);
  e.generation = 0;
  e.attr = entry.attr;
  e.attr_timeout = ctx.timeout;
  e.entry_timeout = ctx.timeout;
  return e;
}

void ReplyEntry(fuse_req_t req, const SysResult<Entry>& entry) {
  if (!entry) {
    fuse_reply_err(req, entry.error());
    return;
  }
  Context& ctx = Ctx(req);
  fuse_entry_param e = EntryParam(ctx, *entry);
  if (fuse_reply_entry(req, &e) != 0) ctx.fs->view().Forget(entry->node, 1);  // request was interrupted
}

// Drops the kernel's cached attributes of `node` after a change it cannot see in the reply:
// copy-up breaks a lower hard link (nlink 2 -> 1), link() raises the source's nlink.
// Offset -1 touches attributes only, so it is safe inside a request on the same inode.
void InvalidateAttrs(Context& ctx, Node* node) {
  if (ctx.session != nullptr) fuse_lowlevel_notify_inval_inode(ctx.session, ToIno(ctx, node), -1, 0);
}

Caller CallerOf(fuse_req_t req) {
  const fuse_ctx* c = fuse_req_ctx(req);
  return Caller{c->uid, c->gid};
}

// The fd to use for a read; re-opens from upper if the node was copied up meanwhile.
int ReadFd(Context& ctx, OpenFile* file) {
  if (file->layer.load(std::memory_order_relaxed) != 0 && ctx.fs->view().LayerOf(file->node) == 0) {
    std::lock_guard lock(file->mutex);
    if (file->layer.load() != 0) {
      SysResult<UniqueFd> fresh = ctx.fs->view().OpenTopmost(file->node, O_RDONLY);
      if (fresh) {
        file->fd.store(fresh->get());
        file->fds.push_back(std::move(*fresh));
        file->layer.store(0);
      }
    }
  }
  return file->fd.load();
}

// ---- Operations ----

void OnInit(void* userdata, fuse_conn_info* conn) {
  auto* ctx = static_cast<Context*>(userdata);
  if (ctx->writeback && (conn->capable & FUSE_CAP_WRITEBACK_CACHE)) conn->want |= FUSE_CAP_WRITEBACK_CACHE;
  if (ctx->splice) {
    for (unsigned cap : {FUSE_CAP_SPLICE_READ, FUSE_CAP_SPLICE_WRITE, FUSE_CAP_SPLICE_MOVE})
      if (conn->capable & cap) conn->want |= cap;
  } else {
    conn->want &= ~(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
  }
  for (unsigned cap : {FUSE_CAP_READDIRPLUS,
                       FUSE_CAP_READDIRPLUS_AUTO, FUSE_CAP_PARALLEL_DIROPS, FUSE_CAP_CACHE_SYMLINKS,
                       FUSE_CAP_ATOMIC_O_TRUNC, FUSE_CAP_ASYNC_READ}) {
    if (conn->capable & cap) conn->want |= cap;
  }
  // Nothing else changes the layers: cached pages stay valid even when mtime moves.
  conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
  conn->max_write = 1 << 20;
  conn->max_readahead = 1 << 20;
  conn->time_gran = 1;
}

void OnLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Context& ctx = Ctx(req);
  SysResult<Entry> entry = ctx.fs->view().Lookup(ToNode(req, parent), name);
  if (!entry && entry.error() == ENOENT) {
    fuse_entry_param e{};  // negative entry, cached like positive ones
    e.entry_timeout = ctx.timeout;
    fuse_reply_entry(req, &e);
    return;
  }
  ReplyEntry(req, entry);
}

void OnForget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  if (ino != FUSE_ROOT_ID) Ctx(req).fs->view().Forget(ToNode(req, ino), nlookup);
  fuse_reply_none(req);
}

void OnForgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  for (size_t i = 0; i < count; ++i)
    if (forgets[i].ino != FUSE_ROOT_ID) Ctx(req).fs->view().Forget(ToNode(req, forgets[i].ino), forgets[i].nlookup);
  fuse_reply_none(req);
}

void OnGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Context& ctx = Ctx(req);
  Node* node = ToNode(req, ino);
  SysResult<struct stat> st = ctx.fs->view().GetAttr(node);
  if (!st && fi != nullptr && st.error() == ENOENT && !S_ISDIR(node->type)) {
    // An unlinked but still open file: its fd still has attributes.
    struct stat fst{};
    if (::fstat(FileOf(fi)->fd.load(), &fst) == 0) st = ctx.fs->view().Present(node, fst);
  }
  if (!st) {
    fuse_reply_err(req, st.error());
    return;
  }
  fuse_reply_attr(req, &*st, ctx.timeout);
}

// Applies `changes` to the file open on `fd` (in overlay's order: owner, mode, size, times)
// and returns the node's attributes from it.
SysResult<struct stat> SetAttrThroughFd(Context& ctx, Node* node, int fd, const AttrChanges& changes) {
  const struct timespec times[2] = {changes.atime.value_or(timespec{0, UTIME_OMIT}),
                                    changes.mtime.value_or(timespec{0, UTIME_OMIT})};
  struct stat st{};
  if (((changes.uid || changes.gid) && ::fchown(fd, changes.uid.value_or(static_cast<uid_t>(-1)),
                                                changes.gid.value_or(static_cast<gid_t>(-1))) != 0) ||
      (changes.mode && ::fchmod(fd, *changes.mode & 07777) != 0) ||
      (changes.size && ::ftruncate(fd, *changes.size) != 0) ||
      ((changes.atime || changes.mtime) && ::futimens(fd, times) != 0) || ::fstat(fd, &st) != 0) {
    return SysFail(errno);
  }
  return ctx.fs->view().Present(node, st);
}

void OnSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info* fi) {
  Context& ctx = Ctx(req);
  AttrChanges changes;
  if (to_set & FUSE_SET_ATTR_MODE) changes.mode = attr->st_mode;
  if (to_set & FUSE_SET_ATTR_UID) changes.uid = attr->st_uid;
  if (to_set & FUSE_SET_ATTR_GID) changes.gid = attr->st_gid;
  if (to_set & FUSE_SET_ATTR_SIZE) changes.size = attr->st_size;
  if (to_set & FUSE_SET_ATTR_ATIME_NOW) changes.atime = timespec{0, UTIME_NOW};
  else if (to_set & FUSE_SET_ATTR_ATIME) changes.atime = attr->st_atim;
  if (to_set & FUSE_SET_ATTR_MTIME_NOW) changes.mtime = timespec{0, UTIME_NOW};
  else if (to_set & FUSE_SET_ATTR_MTIME) changes.mtime = attr->st_mtim;
  Node* node = ToNode(req, ino);
  OpenFile* file = fi != nullptr && S_ISREG(node->type) ? FileOf(fi) : nullptr;
  SysResult<struct stat> st;
  if (!changes.mode && !changes.uid && !changes.gid && !changes.size && !changes.atime && !changes.mtime) {
    st = ctx.fs->view().GetAttr(node);  // ctime-only updates: nothing to change
  } else {
    st = ctx.fs->writer().SetAttr(node, changes);
    if (!st && st.error() == ENOENT && file != nullptr) {
      // An unlinked but open file (ftruncate/futimens on its fd): change it through the fd.
      st = SetAttrThroughFd(ctx, node, file->fd.load(), changes);
    }
  }
  if (!st) {
    fuse_reply_err(req, st.error());
    return;
  }
  fuse_reply_attr(req, &*st, ctx.timeout);
}

void OnReadlink(fuse_req_t req, fuse_ino_t ino) {
  SysResult<std::string> target = Ctx(req).fs->view().ReadLink(ToNode(req, ino));
  if (!target) {
    fuse_reply_err(req, target.error());
    return;
  }
  fuse_reply_readlink(req, target->c_str());
}

void OnMknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  if (S_ISREG(mode) || S_ISFIFO(mode) || S_ISSOCK(mode) || S_ISCHR(mode) || S_ISBLK(mode)) {
    ReplyEntry(req, Ctx(req).fs->writer().MakeNode(ToNode(req, parent), name, mode, rdev, CallerOf(req)));
  } else {
    fuse_reply_err(req, EINVAL);
  }
}

void OnMkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  ReplyEntry(req, Ctx(req).fs->writer().MakeDir(ToNode(req, parent), name, mode, CallerOf(req)));
}

void OnSymlink(fuse_req_t req, const char* target, fuse_ino_t parent, const char* name) {
  ReplyEntry(req, Ctx(req).fs->writer().MakeSymlink(ToNode(req, parent), name, target, CallerOf(req)));
}

void OnLink(fuse_req_t req, fuse_ino_t ino, fuse_ino_t new_parent, const char* new_name) {
  Context& ctx = Ctx(req);
  Node* node = ToNode(req, ino);
  SysResult<Entry> link = ctx.fs->writer().Link(node, ToNode(req, new_parent), new_name);
  if (link) InvalidateAttrs(ctx, node);
  ReplyEntry(req, link);
}

void OnUnlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  SysStatus done = Ctx(req).fs->writer().Unlink(ToNode(req, parent), name);
  fuse_reply_err(req, done ? 0 : done.error());
}

void OnRmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  SysStatus done = Ctx(req).fs->writer().Rmdir(ToNode(req, parent), name);
  fuse_reply_err(req, done ? 0 : done.error());
}

void OnRename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t new_parent, const char* new_name,
              unsigned int flags) {
  SysStatus done =
      Ctx(req).fs->writer().Rename(ToNode(req, parent), name, ToNode(req, new_parent), new_name, flags);
  fuse_reply_err(req, done ? 0 : done.error());
}

int AdjustOpenFlags(const Context& ctx, int flags) {
  flags &= ~O_DIRECT;  // page cache is the point of writeback caching
  if (ctx.writeback) {
    // The kernel may read pages of a write-only file to fill partial writes, and it
    // handles O_APPEND itself (writes arrive with explicit offsets).
    if ((flags & O_ACCMODE) == O_WRONLY) flags = (flags & ~O_ACCMODE) | O_RDWR;
    flags &= ~O_APPEND;
  }
  return flags;
}

void ReplyOpen(fuse_req_t req, Node* node, UniqueFd fd, int layer, fuse_file_info* fi, const Entry* created) {
  auto file = std::make_unique<OpenFile>();
  file->node = node;
  file->fd.store(fd.get());
  file->layer.store(layer);
  file->fds.push_back(std::move(fd));
  fi->fh = reinterpret_cast<uintptr_t>(file.get());
  // The view is exclusive: cached pages of a file stay valid across opens (copy-up keeps
  // the content), except after truncation on open.
  fi->keep_cache = (fi->flags & O_TRUNC) ? 0 : 1;
  fi->direct_io = 0;
  Context& ctx = Ctx(req);
  // Reads and writes of this open go to the file in the kernel when passthrough is on.
  int backing_id = 0;
  if (ctx.passthrough.enabled()) {
    // A lower file of a writable view goes through the server unless passthrough=all: a
    // later copy-up must not find its readers pinned to the lower file.
    const bool may_pass_through = layer == 0 || !ctx.fs->writable() || ctx.passthrough_lower;
    switch (ctx.passthrough_nodes.Acquire(ctx.passthrough, node, file->fd.load(), layer, may_pass_through,
                                          &backing_id)) {
      case PassthroughNodes::Use::kPassthrough:
      case PassthroughNodes::Use::kServer: file->counted = true; break;
      case PassthroughNodes::Use::kConflict:
        // Handles opened before a copy-up still read the lower file; the kernel cannot give
        // this open the upper one beside them. Like writing a busy executable.
        if (created != nullptr) ctx.fs->view().Forget(node, 1);
        fuse_reply_err(req, ETXTBSY);
        return;
    }
  }
  int replied;
  {
    FusePassthrough::ReplyScope scope(backing_id);
    if (created != nullptr) {
      fuse_entry_param e = EntryParam(ctx, *created);
      replied = fuse_reply_create(req, &e, fi);
      if (replied != 0) ctx.fs->view().Forget(node, 1);
    } else {
      replied = fuse_reply_open(req, fi);
    }
  }
  if (replied == 0) {
    file.release();
  } else if (file->counted) {
    ctx.passthrough_nodes.Release(ctx.passthrough, node);  // no RELEASE will come
  }
}

void OnOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Context& ctx = Ctx(req);
  Node* node = ToNode(req, ino);
  const int flags = AdjustOpenFlags(ctx, fi->flags);
  const bool copies_up = UnionFilesystem::WantsWrite(flags) && ctx.fs->view().LayerOf(node) != 0;
  const uint64_t ino_before = node->ino;
  SysResult<UniqueFd> fd = ctx.fs->Open(node, flags);
  if (!fd) {
    fuse_reply_err(req, fd.error());
    return;
  }
  // A copy-up keeps the attributes the kernel has cached (data, mode, owner, times, inode
  // number) unless it split a lower hard-link group, which changes the inode number and
  // link count: only then is the kernel's copy dropped (saves a GETATTR per copy-up).
  if (copies_up && node->ino != ino_before) {
    InvalidateAttrs(ctx, node);
  }
  ReplyOpen(req, node, std::move(*fd), UnionFilesystem::WantsWrite(flags) ? 0 : ctx.fs->view().LayerOf(node), fi,
            nullptr);
}

void OnCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi) {
  Context& ctx = Ctx(req);
  const int flags = AdjustOpenFlags(ctx, fi->flags);
  auto created = ctx.fs->writer().Create(ToNode(req, parent), name, mode, flags, CallerOf(req));
  if (!created) {
    fuse_reply_err(req, created.error());
    return;
  }
  Entry entry = created->first;
  ReplyOpen(req, entry.node, std::move(created->second), 0, fi, &entry);
}

void OnRead(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
  buf.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
  buf.buf[0].fd = ReadFd(Ctx(req), FileOf(fi));
  buf.buf[0].pos = off;
  fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

void OnWriteBuf(fuse_req_t req, fuse_ino_t, fuse_bufvec* in, off_t off, fuse_file_info* fi) {
  fuse_bufvec out = FUSE_BUFVEC_INIT(fuse_buf_size(in));
  out.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
  out.buf[0].fd = FileOf(fi)->fd.load();
  out.buf[0].pos = off;
  const ssize_t written = fuse_buf_copy(&out, in, static_cast<fuse_buf_copy_flags>(0));
  if (written < 0) {
    fuse_reply_err(req, static_cast<int>(-written));
    return;
  }
  fuse_reply_write(req, static_cast<size_t>(written));
}

void OnRelease(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  OpenFile* file = FileOf(fi);
  if (file->counted) {
    Context& ctx = Ctx(req);
    ctx.passthrough_nodes.Release(ctx.passthrough, file->node);
  }
  delete file;
  fuse_reply_err(req, 0);
}

void OnFsync(fuse_req_t req, fuse_ino_t, int datasync, fuse_file_info* fi) {
  const int fd = FileOf(fi)->fd.load();
  const int rc = datasync ? ::fdatasync(fd) : ::fsync(fd);
  fuse_reply_err(req, rc == 0 ? 0 : errno);
}

void OnFallocate(fuse_req_t req, fuse_ino_t, int mode, off_t offset, off_t length, fuse_file_info* fi) {
  const int rc = ::fallocate(FileOf(fi)->fd.load(), mode, offset, length);
  fuse_reply_err(req, rc == 0 ? 0 : errno);
}

void OnFlock(fuse_req_t req, fuse_ino_t, fuse_file_info* fi, int op) {
  const int rc = ::flock(FileOf(fi)->fd.load(), op);
  fuse_reply_err(req, rc == 0 ? 0 : errno);
}

void OnOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Node* node = ToNode(req, ino);
  if (!node->is_dir()) {
    fuse_reply_err(req, ENOTDIR);
    return;
  }
  auto dir = std::make_unique<OpenDir>();
  dir->dir = node;
  fi->fh = reinterpret_cast<uintptr_t>(dir.get());
  // The kernel may keep the listing (FOPEN_CACHE_DIR + KEEP_CACHE): lower layers do not
  // change under a mount, and every change made through it bumps the directory's version in
  // the kernel (fuse_dir_changed), which drops the cached listing. A warm walk then costs no
  // READDIR round trips.
  fi->cache_readdir = 1;
  fi->keep_cache = 1;
  if (fuse_reply_open(req, fi) == 0) dir.release();
}

// Builds the reply under the handle's lock and sends it after unlocking: once the reply is
// out, the kernel may release the handle (RELEASEDIR on another thread) at any moment.
void ReadDir(fuse_req_t req, size_t size, off_t off, fuse_file_info* fi, bool plus) {
  Context& ctx = Ctx(req);
  OpenDir* dir = DirOf(fi);
  std::vector<char> buffer(size);
  size_t used = 0;
  int error = 0;
  {
    std::lock_guard lock(dir->mutex);
    if (off == 0 || !dir->listed) {
      SysResult<std::vector<DirEntry>> entries = ctx.fs->view().ListDir(dir->dir);
      if (entries) {
        dir->entries = std::move(*entries);
        dir->listed = true;
      } else {
        error = entries.error();
      }
    }
    for (size_t i = static_cast<size_t>(off); error == 0 && i < dir->entries.size(); ++i) {
      const DirEntry& entry = dir->entries[i];
      const off_t next = static_cast<off_t>(i + 1);
      size_t needed;
      if (!plus) {
        struct stat st{};
        st.st_ino = entry.ino;
        st.st_mode = entry.type;
        needed = fuse_add_direntry(req, buffer.data() + used, size - used, entry.name.c_str(), &st, next);
      } else if (entry.name == "." || entry.name == "..") {
        fuse_entry_param e{};  // no node reference is taken for these
        e.attr.st_ino = entry.ino;
        e.attr.st_mode = entry.type;
        needed = fuse_add_direntry_plus(req, buffer.data() + used, size - used, entry.name.c_str(), &e, next);
      } else {
        SysResult<Entry> child = ctx.fs->view().Lookup(dir->dir, entry.name);
        if (!child) continue;  // removed since the listing was made
        fuse_entry_param e = EntryParam(ctx, *child);
        needed = fuse_add_direntry_plus(req, buffer.data() + used, size - used, entry.name.c_str(), &e, next);
        if (needed > size - used) ctx.fs->view().Forget(child->node, 1);  // not sent: no reference
      }
      if (needed > size - used) break;
      used += needed;
    }
  }
  if (error != 0) {
    fuse_reply_err(req, error);
  } else {
    fuse_reply_buf(req, buffer.data(), used);
  }
}

void OnReaddir(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  ReadDir(req, size, off, fi, false);
}
void OnReaddirplus(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  ReadDir(req, size, off, fi, true);
}

void OnReleasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  delete DirOf(fi);
  fuse_reply_err(req, 0);
}

void OnFsyncdir(fuse_req_t req, fuse_ino_t, int, fuse_file_info*) { fuse_reply_err(req, 0); }

void OnStatfs(fuse_req_t req, fuse_ino_t) {
  SysResult<struct statvfs> st = Ctx(req).fs->view().StatFs();
  if (!st) {
    fuse_reply_err(req, st.error());
    return;
  }
  fuse_reply_statfs(req, &*st);
}

void OnSetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size, int flags) {
  Context& ctx = Ctx(req);
  Node* node = ToNode(req, ino);
  const bool was_lower = ctx.fs->view().LayerOf(node) != 0;
  SysStatus done = ctx.fs->writer().SetXattr(node, name, std::string_view(value, size), flags);
  if (done && was_lower) InvalidateAttrs(ctx, node);
  fuse_reply_err(req, done ? 0 : done.error());
}

void OnGetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  SysResult<std::string> value = Ctx(req).fs->view().GetXattr(ToNode(req, ino), name, size);
  if (!value) {
    fuse_reply_err(req, value.error());
  } else if (size == 0) {
    fuse_reply_xattr(req, value->size());
  } else {
    fuse_reply_buf(req, value->data(), value->size());
  }
}

void OnListxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  SysResult<std::string> names = Ctx(req).fs->view().ListXattr(ToNode(req, ino), size);
  if (!names) {
    fuse_reply_err(req, names.error());
  } else if (size == 0) {
    fuse_reply_xattr(req, names->size());
  } else {
    fuse_reply_buf(req, names->data(), names->size());
  }
}

void OnRemovexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  Context& ctx = Ctx(req);
  Node* node = ToNode(req, ino);
  const bool was_lower = ctx.fs->view().LayerOf(node) != 0;
  SysStatus done = ctx.fs->writer().RemoveXattr(node, name);
  if (done && was_lower) InvalidateAttrs(ctx, node);
  fuse_reply_err(req, done ? 0 : done.error());
}

fuse_lowlevel_ops MakeOperations() {
  fuse_lowlevel_ops ops{};
  ops.init = OnInit;
  ops.lookup = OnLookup;
  ops.forget = OnForget;
  ops.forget_multi = OnForgetMulti;
  ops.getattr = OnGetattr;
  ops.setattr = OnSetattr;
  ops.readlink = OnReadlink;
  ops.mknod = OnMknod;
  ops.mkdir = OnMkdir;
  ops.symlink = OnSymlink;
  ops.link = OnLink;
  ops.unlink = OnUnlink;
  ops.rmdir = OnRmdir;
  ops.rename = OnRename;
  ops.open = OnOpen;
  ops.create = OnCreate;
  ops.read = OnRead;
  ops.write_buf = OnWriteBuf;
  // No flush: libfuse answers ENOSYS once and the kernel stops sending FLUSH on every close
  // (it still writes back dirty pages first); there is nothing to do at close.
  ops.release = OnRelease;
  ops.fsync = OnFsync;
  ops.fallocate = OnFallocate;
  ops.flock = OnFlock;
  ops.opendir = OnOpendir;
  ops.readdir = OnReaddir;
  ops.readdirplus = OnReaddirplus;
  ops.releasedir = OnReleasedir;
  ops.fsyncdir = OnFsyncdir;
  ops.statfs = OnStatfs;
  ops.setxattr = OnSetxattr;
  ops.getxattr = OnGetxattr;
  ops.listxattr = OnListxattr;
  ops.removexattr = OnRemovexattr;
  return ops;
}

}  // namespace

struct FuseServer::State {
  Context context;
  FuseMountOptions options;
  fuse_session* session = nullptr;
  bool mounted = false;
};

FuseServer::FuseServer(std::unique_ptr<State> state) : state_(std::move(state)) {}

FuseServer::~FuseServer() {
  if (state_->session == nullptr) return;
  if (state_->mounted) fuse_session_unmount(state_->session);
  fuse_session_destroy(state_->session);
}

Result<std::unique_ptr<FuseServer>> FuseServer::Mount(UnionFilesystem& fs, const FuseMountOptions& options) {
  auto state = std::make_unique<State>();
  state->context.fs = &fs;
  state->context.timeout = options.timeout_seconds;
  state->context.writeback = options.writeback_cache;
  state->context.splice = options.splice;
  state->context.passthrough_lower = options.passthrough == FusePassthroughMode::kAll;
  state->options = options;

  std::string mount_options = "fsname=" + options.fsname + ",subtype=strata-fsfilter";
  if (options.allow_other) mount_options += ",allow_other";
  if (options.allow_other || options.default_permissions) mount_options += ",default_permissions";
  if (options.read_only || !fs.writable()) mount_options += ",ro";
  // A container root needs its device nodes and setuid binaries: like a kernel overlay
  // mount (and unlike libfuse's nodev,nosuid default) allow them when root mounts, unless
  // the command line says otherwise (later flags win).
  if (::geteuid() == 0) mount_options += ",dev,suid";
  for (const std::string& flag : options.mount_flags) mount_options += "," + flag;
  std::vector<std::string> arg_strings = {"strata-fsfilter", "-o", mount_options};
  if (options.debug) arg_strings.push_back("-d");
  std::vector<char*> argv;
  for (auto& arg : arg_strings) argv.push_back(arg.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());

  static const fuse_lowlevel_ops kOperations = MakeOperations();
  state->session = fuse_session_new(&args, &kOperations, sizeof(kOperations), &state->context);
  fuse_opt_free_args(&args);
  state->context.session = state->session;
  if (state->session == nullptr)
    return Fail(ErrorCode::kInvalidArgument, "cannot create a FUSE session with options \"{}\"", mount_options);
  auto server = std::unique_ptr<FuseServer>(new FuseServer(std::move(state)));
  if (fuse_session_mount(server->state_->session, options.mountpoint.c_str()) != 0)
    return Fail(ErrorCode::kFailedPrecondition, "cannot mount on \"{}\" (see the message above)",
                options.mountpoint.string());
  server->state_->mounted = true;
  if (options.passthrough != FusePassthroughMode::kOff && ::geteuid() == 0) {
    // Under libfuse, on the mounted session's fd: see fuse_passthrough.h.
    // Splice stays available to files that go through the server (libfuse uses splice
    // only when the custom I/O offers it). INIT always arrives through read.
    const fuse_custom_io io{.writev = PassthroughWritev, .read = PassthroughRead,
                            .splice_receive = PlainSplice, .splice_send = PlainSplice};
    if (fuse_session_custom_io(server->state_->session, &io, fuse_session_fd(server->state_->session)) != 0) {
      spdlog::debug("FUSE passthrough: libfuse refused the custom I/O; files go through the server");
    }
  }
  return server;
}

namespace {

// ---- Which requests the reading thread answers itself (session_loop.h) ----

constexpr uint32_t kQuickWriteBytes = 128 << 10;

template <typename T>
std::optional<T> ArgumentAs(std::string_view arg) {
  if (arg.size() < sizeof(T)) return std::nullopt;  // libfuse refuses it at once
  T value;
  std::memcpy(&value, arg.data(), sizeof(T));
  return value;
}

bool IsQuickRequest(Context& ctx, uint32_t opcode, uint64_t nodeid, std::string_view arg) {
  switch (opcode) {
    case FUSE_FORGET:
    case FUSE_BATCH_FORGET:
    case FUSE_RELEASE:
    case FUSE_RELEASEDIR:
    case FUSE_FLUSH:
    case FUSE_INTERRUPT:
    case FUSE_INIT:
    case FUSE_DESTROY:
      return true;  // they never take the tree lock
    default:
      break;
  }
  // A copy-up or rename holds the tree: the rest would wait for it, so a worker takes them.
  if (ctx.fs->view().tree_mutex().writer_active()) return false;
  switch (opcode) {
    case FUSE_GETATTR:
    case FUSE_OPENDIR:
    case FUSE_STATFS:
    case FUSE_ACCESS:
    case FUSE_GETXATTR:
    case FUSE_LISTXATTR:
    case FUSE_READLINK:
    // A new entry in the upper dir: an inode and a name (parent dirs are copied up, no files).
    case FUSE_CREATE:
    case FUSE_MKDIR:
    case FUSE_MKNOD:
    case FUSE_SYMLINK:
      return true;
    case FUSE_OPEN: {  // for reading: an open for writing may copy a whole file up
      const auto in = ArgumentAs<fuse_open_in>(arg);
      return !in || ((in->flags & O_ACCMODE) == O_RDONLY && (in->flags & O_TRUNC) == 0);
    }
    case FUSE_WRITE: {  // into the page cache of an upper file; a big one may wait for writeback
      const auto in = ArgumentAs<fuse_write_in>(arg);
      return !in || in->size <= kQuickWriteBytes;
    }
    case FUSE_SETATTR: {  // owner, mode, times of an upper entry (a lower one is copied up first)
      const auto in = ArgumentAs<fuse_setattr_in>(arg);
      if (!in || !ctx.fs->writable()) return true;  // refused at once
      if ((in->valid & FATTR_SIZE) != 0) return false;
      return ctx.fs->view().LayerOf(NodeOf(ctx, nodeid)) == 0;
    }
    default:
      return false;  // lookups and reads may wait on the disk; copy-ups, links, renames, fsync
  }
}

}  // namespace

Status FuseServer::Serve() {
  fuse_session* session = state_->session;
  if (fuse_set_signal_handlers(session) != 0) return Fail(ErrorCode::kInternal, "cannot install signal handlers");
  Context& ctx = state_->context;
  const int rc = ServeSession(session, state_->options.max_threads, [&ctx](uint32_t opcode, uint64_t nodeid,
                                                                           std::string_view arg) {
    return IsQuickRequest(ctx, opcode, nodeid, arg);
  });
  fuse_remove_signal_handlers(session);
  fuse_session_unmount(session);
  state_->mounted = false;
  if (rc < 0) return Fail(ErrorCode::kInternal, "FUSE loop on \"{}\" failed: {}", state_->options.mountpoint.string(), std::strerror(-rc));
  return {};
}

}  // namespace strata::fsfilter
