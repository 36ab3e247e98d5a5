// ErofsBuilder: writes an uncompressed EROFS filesystem image (the Linux kernel's read-only
// "erofs"), our own encoder instead of mkfs.erofs, so a layer's block image is made in one
// pass with in-kernel copies of its file data.
//
// On-disk layout of what it writes (4 KiB blocks, little endian):
//   block 0            superblock at byte 1024 (magic 0xE0F5E1E2)
//   blocks 1..D-1      file data, each file's full blocks contiguous (FLAT_PLAIN when its
//                      tail has no room inline), written as the files are added
//   blocks D..M-1      metadata (meta_blkaddr = D): 64-byte extended inodes, each followed
//                      by its inline xattrs and, when they fit in the inode's block, the
//                      last partial block of its data (FLAT_INLINE: small files and
//                      symlinks live there whole); an inode that fits in a block never
//                      crosses one; the root is nid 0
//   blocks M..         directory blocks: dirents (nid, name offset, type) then names,
//                      sorted by name bytes across each directory's blocks, "." and ".."
//                      included; a directory's last block sits inline after its inode
//                      when it fits there
// Every inode is the extended form: 32-bit uid/gid, 64-bit mtime with nanoseconds, 32-bit
// link counts. Xattrs are all inline (no shared xattr area), with the kernel's name indexes
// (user., trusted., security., the POSIX ACLs); a name with another prefix is refused.
//
// Use: add nodes top down (a parent before its children), then Finish once. Not thread-safe.
#pragma once

#include <sys/types.h>

#include <array>
#include <functional>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "base/error.h"
#include "base/file.h"
#include "base/io.h"
#include "base/thread_pool.h"

namespace strata::snapshotter {

class ErofsBuilder {
 public:
  using NodeId = uint32_t;
  static constexpr NodeId kRoot = 0;
  static constexpr uint32_t kBlockSize = 4096;

  struct Attributes {
    mode_t mode = 0;  // type and permission bits, as st_mode
    uint32_t uid = 0, gid = 0;
    int64_t mtime_sec = 0;
    uint32_t mtime_nsec = 0;
    dev_t rdev = 0;  // character and block devices
    std::vector<std::pair<std::string, std::string>> xattrs;  // full names ("trusted.overlay.opaque")
  };

  struct Stats {
    uint64_t inodes = 0;
    uint64_t file_bytes = 0;   // regular-file bytes stored
    uint64_t image_bytes = 0;  // the image's size
  };

  // Writes into `out_fd` (not owned): an empty regular file opened for writing. Unwritten
  // gaps (block tails) stay holes.
  explicit ErofsBuilder(int out_fd);

  // Sets the root directory's attributes (a directory's by default: 0755, root, time 0).
  Status SetRootAttributes(Attributes attributes);

  // Adds `name` (one path component, no '/', not "." or "..") to directory `parent` and
  // returns the new node. Regular files start empty; give them bytes with one Set*Data call.
  // Errors: InvalidArgument for a bad name, an xattr without an EROFS prefix or a parent
  // that is not a directory; AlreadyExists when the name is taken.
  Result<NodeId> Add(NodeId parent, std::string name, Attributes attributes);

  // A second name for `target` (a hard link); directories cannot be linked.
  Status Link(NodeId parent, std::string name, NodeId target);

  // A regular file's bytes: `size` bytes from `source` at its offset 0, or read from
  // `reader`. From a file, the full blocks are copied in the kernel on a copier thread while
  // the caller goes on (the file is closed when its copy is done); their errors (the source
  // ending early, I/O), which name the file as `display`, come from a later call or Finish.
  Status SetFileData(NodeId file, UniqueFd source, uint64_t size, std::string display);
  Status SetFileData(NodeId file, ByteReader& reader, uint64_t size);

  // A symlink's target.
  Status SetSymlinkTarget(NodeId symlink, std::string target);

  // Waits for the file copies, lays out and writes the metadata, directories and
  // superblock, and sizes the file. Does not fsync. REQUIRES: called once, last.
  Result<Stats> Finish(const std::array<uint8_t, 16>& uuid);

 private:
  struct Node {
    Attributes attributes;
    std::vector<std::pair<std::string, NodeId>> children;  // directories only
    NodeId parent = kRoot;
    uint32_t links = 1;          // names in the tree (directories: 2 + subdirectories)
    uint64_t size = 0;           // i_size (directories: set by Finish)
    uint32_t blkaddr = 0;        // first data block (FLAT_PLAIN)
    std::string inline_bytes;    // FLAT_INLINE: the last partial block, stored after the inode
    bool is_inline = false;
    std::string xattr_body;      // encoded inline xattr entries (without the 12-byte header)
    uint64_t nid = 0;
  };

  Result<NodeId> NewChild(NodeId parent, std::string name);
  // Copies the source's first `length` bytes to the image at `image_offset`.
  using WriteBlocks = std::function<Status(uint64_t image_offset, uint64_t length)>;
  // The source's `length` bytes from `offset` (called after WriteBlocks, for the tail).
  using ReadTail = std::function<Result<std::string>(uint64_t offset, uint64_t length)>;
  Status StoreData(Node& node, uint64_t size, const WriteBlocks& write_blocks, const ReadTail& read_tail);
  uint32_t ReserveBlocks(uint64_t size);

  // Waits for copies until at most `keep` are in flight; the first error of those.
  Status DrainCopies(size_t keep);

  int out_fd_;
  ThreadPool copier_{1};
  std::deque<std::future<Status>> copies_;  // in submission order
  std::vector<Node> nodes_;
  uint32_t next_block_ = 1;  // block 0 holds the superblock
  uint64_t file_bytes_ = 0;
  uint64_t inline_budget_;  // bytes of small files still allowed to sit in memory until Finish
};

}  // namespace strata::snapshotter
