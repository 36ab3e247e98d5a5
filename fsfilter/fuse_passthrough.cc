#include "fsfilter/fuse_passthrough.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "base/log.h"

namespace strata::fsfilter {

namespace {

// The kernel's FUSE ABI (include/uapi/linux/fuse.h, 7.40), spelled out here because
// Debian 12's headers predate passthrough.
constexpr uint32_t kOpcodeInit = 26;
constexpr uint32_t kInitExt = 1u << 30;              // FUSE_INIT_EXT: flags2 is valid
constexpr uint32_t kWritebackCache = 1u << 16;       // FUSE_WRITEBACK_CACHE
constexpr uint32_t kPassthroughFlags2 = 1u << (37 - 32);  // FUSE_PASSTHROUGH
constexpr uint32_t kOpenPassthrough = 1u << 7;       // FOPEN_PASSTHROUGH
// The open flags the kernel accepts beside FOPEN_PASSTHROUGH (FOPEN_PASSTHROUGH_MASK):
// DIRECT_IO, NOFLUSH, PARALLEL_DIRECT_WRITES. KEEP_CACHE and the rest make the open fail.
constexpr uint32_t kOpenPassthroughMask = 0x1u | 0x20u | 0x40u | kOpenPassthrough;
constexpr size_t kInHeaderSize = 40;                 // struct fuse_in_header
constexpr size_t kOutHeaderSize = 16;                // struct fuse_out_header
constexpr size_t kOpenOutSize = 16;                  // struct fuse_open_out
constexpr size_t kEntryOutSize = 128;                // struct fuse_entry_out

struct BackingMap {  // struct fuse_backing_map
  int32_t fd;
  uint32_t flags;
  uint64_t padding;
};
constexpr unsigned long kDevIocBackingOpen = _IOW(229, 1, BackingMap);
constexpr unsigned long kDevIocBackingClose = _IOW(229, 2, uint32_t);

// fuse_in_header: len, opcode, unique, ...; fuse_init_in: major, minor, max_readahead,
// flags, flags2. fuse_out_header: len, error, unique. fuse_init_out: major, minor,
// max_readahead, flags, max_background(16), congestion_threshold(16), max_write,
// time_gran, max_pages(16), map_alignment(16), flags2, max_stack_depth.
constexpr size_t kInitInFlags = 12, kInitInFlags2 = 16;
constexpr size_t kInitOutFlags = 12, kInitOutFlags2 = 32, kInitOutMaxStackDepth = 36;

uint32_t Load32(const void* base, size_t offset) {
  uint32_t value;
  std::memcpy(&value, static_cast<const char*>(base) + offset, sizeof value);
  return value;
}
void Store32(void* base, size_t offset, uint32_t value) {
  std::memcpy(static_cast<char*>(base) + offset, &value, sizeof value);
}

// The backing id the open/create reply this thread sends next carries (0: none).
thread_local int t_reply_backing_id = 0;

}  // namespace

long FusePassthrough::Read(int fd, void* buf, unsigned long size) {
  const ssize_t n = ::read(fd, buf, size);
  if (n >= static_cast<ssize_t>(kInHeaderSize) && !enabled_.load(std::memory_order_relaxed)) NoteRequest(fd, buf, n);
  return n;
}

void FusePassthrough::NoteRequest(int fd, const void* buf, long size) {
  if (Load32(buf, 4) != kOpcodeInit || size < static_cast<long>(kInHeaderSize + kInitInFlags2 + 4)) return;
  const char* init_in = static_cast<const char*>(buf) + kInHeaderSize;
  const bool ext = (Load32(init_in, kInitInFlags) & kInitExt) != 0;
  const bool offers = ext && (Load32(init_in, kInitInFlags2) & kPassthroughFlags2) != 0;
  uint64_t unique;
  std::memcpy(&unique, static_cast<const char*>(buf) + 8, sizeof unique);
  device_fd_.store(fd);
  init_unique_.store(unique);
  kernel_offers_.store(offers);
}

long FusePassthrough::Writev(int fd, struct iovec* iov, int count) {
  if (count >= 2 && iov[0].iov_len >= kOutHeaderSize) PatchReply(iov, count);
  return ::writev(fd, iov, count);
}

void FusePassthrough::PatchReply(struct iovec* iov, int count) {
  uint64_t unique;
  std::memcpy(&unique, static_cast<const char*>(iov[0].iov_base) + 8, sizeof unique);
  const int32_t error = static_cast<int32_t>(Load32(iov[0].iov_base, 4));
  if (unique == 0 || error != 0) return;  // a notification, or an error reply
  if (t_reply_backing_id > 0 && count == 2 &&
      (iov[1].iov_len == kOpenOutSize || iov[1].iov_len == kEntryOutSize + kOpenOutSize)) {
    char* open_out = static_cast<char*>(iov[1].iov_base) + iov[1].iov_len - kOpenOutSize;
    Store32(open_out, 8, (Load32(open_out, 8) | kOpenPassthrough) & kOpenPassthroughMask);
    Store32(open_out, 12, static_cast<uint32_t>(t_reply_backing_id));
    t_reply_backing_id = 0;
    return;
  }
  if (unique != init_unique_.load() || !kernel_offers_.load() || enabled_.load()) return;
  if (iov[1].iov_len < kInitOutMaxStackDepth + 4) return;  // an old-protocol reply: leave it
  void* init_out = iov[1].iov_base;
  Store32(init_out, kInitOutFlags, (Load32(init_out, kInitOutFlags) | kInitExt) & ~kWritebackCache);
  Store32(init_out, kInitOutFlags2, Load32(init_out, kInitOutFlags2) | kPassthroughFlags2);
  Store32(init_out, kInitOutMaxStackDepth, 1);  // backing files live on ordinary filesystems
  enabled_.store(true, std::memory_order_release);
}

int FusePassthrough::OpenBacking(int fd) {
  if (!enabled()) return 0;
  BackingMap map{.fd = fd, .flags = 0, .padding = 0};
  const int id = ::ioctl(device_fd_.load(), kDevIocBackingOpen, &map);
  if (id > 0) return id;
  if (!refused_.exchange(true)) {
    spdlog::warn("FUSE passthrough: the kernel refused a backing file ({}); files go through the server from now on",
                 std::strerror(errno));
  }
  return 0;
}

void FusePassthrough::CloseBacking(int backing_id) {
  uint32_t id = static_cast<uint32_t>(backing_id);
  (void)::ioctl(device_fd_.load(), kDevIocBackingClose, &id);
}

FusePassthrough::ReplyScope::ReplyScope(int backing_id) { t_reply_backing_id = backing_id; }

FusePassthrough::ReplyScope::~ReplyScope() { t_reply_backing_id = 0; }

}  // namespace strata::fsfilter
