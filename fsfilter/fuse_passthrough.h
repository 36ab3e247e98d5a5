// Kernel FUSE passthrough (Linux 6.9+, CONFIG_FUSE_PASSTHROUGH) from libfuse 3.14, which
// predates it: reads, writes and mmap of an open file go straight to a backing file in the
// kernel, with no round trip through this process.
//
// libfuse 3.14 can neither ask for FUSE_PASSTHROUGH in its INIT reply nor put a backing id
// in an open reply, so this layer sits under it as its custom I/O (the front end installs
// it with fuse_session_custom_io on the mounted session's fd): it reads requests as libfuse
// would, notes whether
// the kernel's INIT offers passthrough, and edits two replies on their way out —
//  - INIT: sets FUSE_PASSTHROUGH (flags2, with FUSE_INIT_EXT) and max_stack_depth 1, and
//    clears FUSE_WRITEBACK_CACHE, which the kernel does not combine with passthrough;
//  - an open/create reply sent inside a ReplyScope: FOPEN_PASSTHROUGH and a backing id
//    registered with OpenBacking (FUSE_DEV_IOC_BACKING_OPEN, which needs CAP_SYS_ADMIN).
// The kernel wants all concurrent opens of one inode in one mode and, for passthrough, on
// one backing file: the front end keeps that per node (fuse_frontend.cc).
// The wire layouts are the kernel's ABI (include/uapi/linux/fuse.h, protocol 7.40).
// Without kernel support or privilege everything goes through the server as before.
#pragma once

#include <atomic>

#include <sys/uio.h>

namespace strata::fsfilter {

class FusePassthrough {
 public:
  // What the session's custom I/O calls (fuse_custom_io gives the session's userdata, so the
  // front end forwards to its FusePassthrough): read(2) and writev(2) on a /dev/fuse fd,
  // with the INIT request noted and the replies above edited.
  long Read(int fd, void* buf, unsigned long size);
  long Writev(int fd, struct iovec* iov, int count);

  // True once the INIT reply went out with passthrough on, and no backing file has been
  // refused since (a refusal turns it off for good: the kernel wants every open of an inode
  // in one mode, so mixing modes after a failure would fail opens).
  bool enabled() const { return enabled_.load(std::memory_order_acquire) && !refused_.load(); }

  // Registers the file `fd` refers to as a backing file: its id, or 0 when passthrough is off
  // or the kernel refused it (logged once; passthrough is then off). The id stays valid
  // until CloseBacking; the kernel takes its own reference when an open reply names it, so
  // the id must outlive that reply's processing (close it at the file's RELEASE).
  int OpenBacking(int fd);
  void CloseBacking(int backing_id);

  // While alive on a thread, the next open/create reply that thread sends carries
  // FOPEN_PASSTHROUGH and `backing_id` (> 0; 0 = leave the reply alone).
  class ReplyScope {
   public:
    explicit ReplyScope(int backing_id);
    ~ReplyScope();
    ReplyScope(const ReplyScope&) = delete;
    ReplyScope& operator=(const ReplyScope&) = delete;
  };

 private:
  void NoteRequest(int fd, const void* buf, long size);
  void PatchReply(struct iovec* iov, int count);

  std::atomic<bool> kernel_offers_{false};
  std::atomic<bool> enabled_{false};
  std::atomic<unsigned long long> init_unique_{0};
  std::atomic<int> device_fd_{-1};
  std::atomic<bool> refused_{false};
};

}  // namespace strata::fsfilter
