#include "snapshotter/erofs_builder.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string_view>

#include <fmt/format.h>

#include "base/file.h"
#include "base/file_copy.h"

namespace strata::snapshotter {

namespace {

// The kernel's fs/erofs/erofs_fs.h, as far as an uncompressed image needs it.
constexpr uint32_t kMagic = 0xE0F5E1E2;
constexpr uint64_t kSuperblockOffset = 1024;
constexpr uint32_t kBlockBits = 12;
constexpr uint64_t kInodeSize = 64;  // erofs_inode_extended
constexpr uint64_t kSlotSize = 32;   // nid = byte offset in the metadata area / 32
constexpr uint64_t kXattrHeaderSize = 12;
constexpr uint64_t kDirentSize = 12;
constexpr size_t kMaxNameLength = 255;
constexpr uint16_t kFormatExtended = 1;
constexpr uint16_t kLayoutFlatPlain = 0;
constexpr uint16_t kLayoutFlatInline = 2;
enum FileType : uint8_t { kUnknown, kRegular, kDirectory, kCharDevice, kBlockDevice, kFifo, kSocket, kSymlink };
constexpr uint64_t kBlock = ErofsBuilder::kBlockSize;
// File tails (the last partial block) held in memory until Finish writes them inline next
// to their inodes; beyond this they get a block of their own.
constexpr uint64_t kInlineBudget = uint64_t{256} << 20;
constexpr size_t kCopiesInFlight = 256;

uint64_t RoundUp(uint64_t value, uint64_t unit) { return (value + unit - 1) / unit * unit; }

void Put16(std::string& out, size_t at, uint16_t v) {
  for (int i = 0; i < 2; ++i) out[at + i] = static_cast<char>(v >> (8 * i));
}
void Put32(std::string& out, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) out[at + i] = static_cast<char>(v >> (8 * i));
}
void Put64(std::string& out, size_t at, uint64_t v) {
  for (int i = 0; i < 8; ++i) out[at + i] = static_cast<char>(v >> (8 * i));
}

FileType TypeOf(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG: return kRegular;
    case S_IFDIR: return kDirectory;
    case S_IFCHR: return kCharDevice;
    case S_IFBLK: return kBlockDevice;
    case S_IFIFO: return kFifo;
    case S_IFSOCK: return kSocket;
    case S_IFLNK: return kSymlink;
    default: return kUnknown;
  }
}

// Linux's new_encode_dev: what erofs keeps in i_u for device inodes.
uint32_t EncodeDevice(dev_t dev) {
  const uint32_t major = ::major(dev), minor = ::minor(dev);
  return (minor & 0xff) | (major << 8) | ((minor & ~0xffu) << 12);
}

// Inline xattr entries: {name length, name index, value size, name suffix, value}, each
// padded to 4 bytes.
Result<std::string> EncodeXattrs(const std::vector<std::pair<std::string, std::string>>& xattrs) {
  struct Prefix {
    std::string_view text;
    uint8_t index;
    bool exact;
  };
  static constexpr Prefix kPrefixes[] = {{"user.", 1, false},
                                         {"system.posix_acl_access", 2, true},
                                         {"system.posix_acl_default", 3, true},
                                         {"trusted.", 4, false},
                                         {"security.", 6, false}};
  std::string body;
  for (const auto& [name, value] : xattrs) {
    const Prefix* prefix = nullptr;
    for (const auto& candidate : kPrefixes) {
      if (candidate.exact ? name == candidate.text : name.starts_with(candidate.text)) prefix = &candidate;
    }
    if (prefix == nullptr) return Fail(ErrorCode::kInvalidArgument, "xattr {:?} has no EROFS name prefix", name);
    const std::string_view suffix = std::string_view(name).substr(prefix->text.size());
    if (suffix.size() > kMaxNameLength || value.size() > UINT16_MAX) {
      return Fail(ErrorCode::kInvalidArgument, "xattr {:?} is too long for EROFS ({} byte value)", name, value.size());
    }
    std::string entry(4, '\0');
    entry[0] = static_cast<char>(suffix.size());
    entry[1] = static_cast<char>(prefix->index);
    Put16(entry, 2, static_cast<uint16_t>(value.size()));
    entry.append(suffix).append(value);
    entry.resize(RoundUp(entry.size(), 4), '\0');
    body += entry;
  }
  if (body.size() / 4 + 1 > UINT16_MAX) return Fail(ErrorCode::kInvalidArgument, "xattrs too large for EROFS");
  return body;
}

uint64_t XattrIbodySize(const std::string& body) { return body.empty() ? 0 : kXattrHeaderSize + body.size(); }

Status CheckName(std::string_view name) {
  if (name.empty() || name == "." || name == ".." || name.size() > kMaxNameLength ||
      name.find_first_of(std::string_view("/\0", 2)) != std::string_view::npos) {
    return Fail(ErrorCode::kInvalidArgument, "{:?} is not a valid EROFS file name", name);
  }
  return {};
}

}  // namespace

ErofsBuilder::ErofsBuilder(int out_fd) : out_fd_(out_fd), inline_budget_(kInlineBudget) {
  Node root;
  root.attributes.mode = S_IFDIR | 0755;
  root.links = 2;
  nodes_.push_back(std::move(root));
}

Status ErofsBuilder::SetRootAttributes(Attributes attributes) {
  if (!S_ISDIR(attributes.mode)) return Fail(ErrorCode::kInvalidArgument, "the EROFS root must be a directory");
  STRATA_ASSIGN_OR_RETURN(nodes_[kRoot].xattr_body, EncodeXattrs(attributes.xattrs));
  nodes_[kRoot].attributes = std::move(attributes);
  return {};
}

Result<ErofsBuilder::NodeId> ErofsBuilder::NewChild(NodeId parent, std::string name) {
  STRATA_RETURN_IF_ERROR(CheckName(name));
  if (parent >= nodes_.size() || !S_ISDIR(nodes_[parent].attributes.mode)) {
    return Fail(ErrorCode::kInvalidArgument, "EROFS node {} is not a directory (adding {:?})", parent, name);
  }
  auto& children = nodes_[parent].children;
  if (std::any_of(children.begin(), children.end(), [&](const auto& child) { return child.first == name; })) {
    return Fail(ErrorCode::kAlreadyExists, "{:?} added twice to one EROFS directory", name);
  }
  if (nodes_.size() >= UINT32_MAX) return Fail(ErrorCode::kFailedPrecondition, "too many EROFS inodes");
  const auto id = static_cast<NodeId>(nodes_.size());
  children.emplace_back(std::move(name), id);
  return id;
}

Result<ErofsBuilder::NodeId> ErofsBuilder::Add(NodeId parent, std::string name, Attributes attributes) {
  STRATA_ASSIGN_OR_RETURN(std::string xattr_body, EncodeXattrs(attributes.xattrs));
  if (TypeOf(attributes.mode) == kUnknown) {
    return Fail(ErrorCode::kInvalidArgument, "{:?} has an unknown file type (mode {:o})", name, attributes.mode);
  }
  const bool is_dir = S_ISDIR(attributes.mode);
  STRATA_ASSIGN_OR_RETURN(NodeId id, NewChild(parent, std::move(name)));
  Node node;
  node.attributes = std::move(attributes);
  node.xattr_body = std::move(xattr_body);
  node.parent = parent;
  if (is_dir) {
    node.links = 2;
    ++nodes_[parent].links;  // the child's ".."
  }
  nodes_.push_back(std::move(node));
  return id;
}

Status ErofsBuilder::Link(NodeId parent, std::string name, NodeId target) {
  if (target >= nodes_.size() || S_ISDIR(nodes_[target].attributes.mode)) {
    return Fail(ErrorCode::kInvalidArgument, "cannot hard-link {:?} to EROFS node {}", name, target);
  }
  STRATA_RETURN_IF_ERROR(NewChild(parent, std::move(name)));
  // NewChild recorded the next free id; point the entry at the target instead.
  nodes_[parent].children.back().second = target;
  ++nodes_[target].links;
  return {};
}

uint32_t ErofsBuilder::ReserveBlocks(uint64_t size) {
  const uint32_t first = next_block_;
  next_block_ += static_cast<uint32_t>(RoundUp(size, kBlock) / kBlock);
  return first;
}

Status ErofsBuilder::StoreData(Node& node, uint64_t size, const WriteBlocks& write_blocks, const ReadTail& read_tail) {
  if (node.size != 0 || node.is_inline) return Fail(ErrorCode::kFailedPrecondition, "EROFS node data set twice");
  if (size > (uint64_t{UINT32_MAX} - next_block_ - 1) * kBlock) {
    return Fail(ErrorCode::kFailedPrecondition, "EROFS image would exceed 2^32 blocks");
  }
  node.size = size;
  if (size == 0) return {};
  // The last partial block goes next to the inode (FLAT_INLINE) when it fits in the inode's
  // block: no block is wasted on it, and small files need no data block at all.
  const uint64_t tail = size % kBlock, full = size - tail;
  const bool inline_tail =
      tail > 0 && kInodeSize + XattrIbodySize(node.xattr_body) + tail <= kBlock && tail <= inline_budget_;
  const uint64_t in_blocks = inline_tail ? full : size;
  if (in_blocks > 0) {
    node.blkaddr = ReserveBlocks(in_blocks);
    STRATA_RETURN_IF_ERROR(write_blocks(uint64_t{node.blkaddr} * kBlock, in_blocks));
  }
  if (inline_tail) {
    STRATA_ASSIGN_OR_RETURN(node.inline_bytes, read_tail(full, tail));
    inline_budget_ -= tail;
    node.is_inline = true;
  }
  return {};
}

Status ErofsBuilder::DrainCopies(size_t keep) {
  Status first_error;
  while (copies_.size() > keep) {
    Status copied = copies_.front().get();
    copies_.pop_front();
    if (!copied && first_error) first_error = std::move(copied);
  }
  return first_error;
}

Status ErofsBuilder::SetFileData(NodeId file, UniqueFd source, uint64_t size, std::string display) {
  if (file >= nodes_.size() || !S_ISREG(nodes_[file].attributes.mode)) {
    return Fail(ErrorCode::kInvalidArgument, "EROFS node {} is not a regular file", file);
  }
  // Bounds the open files and the copies queued behind the walk.
  STRATA_RETURN_IF_ERROR(DrainCopies(kCopiesInFlight));
  auto fd = std::make_shared<UniqueFd>(std::move(source));
  STRATA_RETURN_IF_ERROR(StoreData(
      nodes_[file], size,
      [&](uint64_t image_offset, uint64_t length) -> Status {
        copies_.push_back(copier_.Submit([fd, out = out_fd_, image_offset, length, display]() -> Status {
          if (auto copied = CopyFileBytes(fd->get(), 0, out, image_offset, length); !copied) {
            return Fail(copied.error().WithContext(display));
          }
          return {};
        }));
        return {};
      },
      [&](uint64_t offset, uint64_t length) -> Result<std::string> {
        std::string bytes(length, '\0');
        for (size_t done = 0; done < length;) {
          const ssize_t n = ::pread(fd->get(), bytes.data() + done, length - done, static_cast<off_t>(offset + done));
          if (n < 0 && errno == EINTR) continue;
          if (n < 0) return ErrnoFail(errno, "read", display);
          if (n == 0) return Fail(ErrorCode::kInternal, "{} ended at {} of {} bytes", display, offset + done, size);
          done += static_cast<size_t>(n);
        }
        return bytes;
      }));
  file_bytes_ += size;
  return {};
}

Status ErofsBuilder::SetFileData(NodeId file, ByteReader& reader, uint64_t size) {
  if (file >= nodes_.size() || !S_ISREG(nodes_[file].attributes.mode)) {
    return Fail(ErrorCode::kInvalidArgument, "EROFS node {} is not a regular file", file);
  }
  auto read_exactly = [&](std::span<char> into) -> Status {
    STRATA_ASSIGN_OR_RETURN(size_t got, ReadFull(reader, into));
    if (got != into.size()) return Fail(ErrorCode::kInvalidArgument, "file data ended {} bytes early", into.size() - got);
    return {};
  };
  // The reader is sequential: blocks first, then the tail.
  STRATA_RETURN_IF_ERROR(StoreData(
      nodes_[file], size,
      [&](uint64_t image_offset, uint64_t length) -> Status {
        std::string buffer(std::min<uint64_t>(length, uint64_t{1} << 20), '\0');
        for (uint64_t done = 0; done < length;) {
          const size_t chunk = static_cast<size_t>(std::min<uint64_t>(length - done, buffer.size()));
          STRATA_RETURN_IF_ERROR(read_exactly(std::span(buffer.data(), chunk)));
          STRATA_RETURN_IF_ERROR(PwriteAll(out_fd_, std::string_view(buffer.data(), chunk), image_offset + done));
          done += chunk;
        }
        return {};
      },
      [&](uint64_t, uint64_t length) -> Result<std::string> {
        std::string bytes(length, '\0');
        STRATA_RETURN_IF_ERROR(read_exactly(std::span(bytes.data(), bytes.size())));
        return bytes;
      }));
  file_bytes_ += size;
  return {};
}

Status ErofsBuilder::SetSymlinkTarget(NodeId symlink, std::string target) {
  if (symlink >= nodes_.size() || !S_ISLNK(nodes_[symlink].attributes.mode)) {
    return Fail(ErrorCode::kInvalidArgument, "EROFS node {} is not a symlink", symlink);
  }
  if (target.empty() || target.size() >= kBlock) {
    return Fail(ErrorCode::kInvalidArgument, "symlink target of {} bytes (1..4095 allowed)", target.size());
  }
  return StoreData(
      nodes_[symlink], target.size(),
      [&](uint64_t image_offset, uint64_t length) {
        return PwriteAll(out_fd_, std::string_view(target).substr(0, length), image_offset);
      },
      [&](uint64_t offset, uint64_t length) -> Result<std::string> { return target.substr(offset, length); });
}

Result<ErofsBuilder::Stats> ErofsBuilder::Finish(const std::array<uint8_t, 16>& uuid) {
  STRATA_RETURN_IF_ERROR(DrainCopies(0));
  // Inode order: depth first from the root, children by name; a hard-linked inode sits
  // where its first name is.
  for (auto& node : nodes_) {
    std::sort(node.children.begin(), node.children.end());
  }
  std::vector<NodeId> order;
  order.reserve(nodes_.size());
  std::vector<bool> placed(nodes_.size(), false);
  std::vector<NodeId> stack = {kRoot};
  while (!stack.empty()) {
    const NodeId id = stack.back();
    stack.pop_back();
    if (placed[id]) continue;
    placed[id] = true;
    order.push_back(id);
    const auto& children = nodes_[id].children;
    for (auto it = children.rbegin(); it != children.rend(); ++it) stack.push_back(it->second);
  }

  // Directory contents: "." and ".." with the children, sorted by name bytes (the kernel
  // binary-searches them), packed into blocks of dirents followed by their names; a name
  // never spans two blocks. A directory's last block goes inline when it has room, so most
  // directories need no block of their own.
  struct DirectoryBlock {
    size_t first, last, used;
  };
  struct Directory {
    NodeId id;
    std::vector<std::pair<std::string_view, NodeId>> entries;
    std::vector<DirectoryBlock> blocks;
  };
  std::vector<Directory> directories;
  for (NodeId id : order) {
    Node& node = nodes_[id];
    if (!S_ISDIR(node.attributes.mode)) continue;
    Directory directory{.id = id, .entries = {{".", id}, {"..", node.parent}}, .blocks = {}};
    for (const auto& [name, child] : node.children) directory.entries.emplace_back(name, child);
    std::sort(directory.entries.begin(), directory.entries.end());
    for (size_t first = 0; first < directory.entries.size();) {
      size_t last = first, used = 0;
      while (last < directory.entries.size() && used + kDirentSize + directory.entries[last].first.size() <= kBlock) {
        used += kDirentSize + directory.entries[last].first.size();
        ++last;
      }
      directory.blocks.push_back({first, last, used});
      first = last;
    }
    node.size = (directory.blocks.size() - 1) * kBlock + directory.blocks.back().used;
    const uint64_t tail = node.size % kBlock;
    node.is_inline = tail > 0 && kInodeSize + XattrIbodySize(node.xattr_body) + tail <= kBlock;
    if (node.is_inline) node.inline_bytes.assign(tail, '\0');  // rendered once the nids are known
    directories.push_back(std::move(directory));
  }

  // Metadata positions. An inode never straddles a block when it fits in one: the kernel
  // reads inline bytes from the inode's own block.
  uint64_t position = 0;
  for (NodeId id : order) {
    Node& node = nodes_[id];
    const uint64_t size = kInodeSize + XattrIbodySize(node.xattr_body) + node.inline_bytes.size();
    if (position % kBlock + size > kBlock && size <= kBlock) position = RoundUp(position, kBlock);
    node.nid = position / kSlotSize;
    position += RoundUp(size, kSlotSize);
  }
  if (nodes_[kRoot].nid != 0) return Fail(ErrorCode::kInternal, "EROFS root not at nid 0");
  const uint32_t meta_blkaddr = next_block_;
  const uint64_t meta_blocks = std::max<uint64_t>(1, RoundUp(position, kBlock) / kBlock);

  auto render = [&](const Directory& directory, const DirectoryBlock& range) {
    std::string block(kBlock, '\0');
    size_t name_offset = (range.last - range.first) * kDirentSize;
    for (size_t i = range.first; i < range.last; ++i) {
      const auto& [name, target_id] = directory.entries[i];
      const Node& target = nodes_[target_id];
      const size_t at = (i - range.first) * kDirentSize;
      Put64(block, at, target.nid);
      Put16(block, at + 8, static_cast<uint16_t>(name_offset));
      block[at + 10] = static_cast<char>(TypeOf(target.attributes.mode));
      std::memcpy(block.data() + name_offset, name.data(), name.size());
      name_offset += name.size();
    }
    return block;
  };
  uint64_t dir_block = meta_blkaddr + meta_blocks;
  std::string dir_area;
  for (const Directory& directory : directories) {
    Node& node = nodes_[directory.id];
    node.blkaddr = static_cast<uint32_t>(dir_block);
    for (size_t i = 0; i < directory.blocks.size(); ++i) {
      std::string block = render(directory, directory.blocks[i]);
      if (node.is_inline && i + 1 == directory.blocks.size()) {
        node.inline_bytes = block.substr(0, node.inline_bytes.size());
      } else {
        dir_area += block;
        ++dir_block;
      }
    }
  }
  if (dir_block > UINT32_MAX) return Fail(ErrorCode::kFailedPrecondition, "EROFS image would exceed 2^32 blocks");

  std::string meta(meta_blocks * kBlock, '\0');
  for (size_t index = 0; index < order.size(); ++index) {
    const Node& node = nodes_[order[index]];
    const Attributes& a = node.attributes;
    const size_t at = node.nid * kSlotSize;
    const uint16_t layout = node.is_inline ? kLayoutFlatInline : kLayoutFlatPlain;
    Put16(meta, at + 0, static_cast<uint16_t>(kFormatExtended | (layout << 1)));
    Put16(meta, at + 2, node.xattr_body.empty() ? 0 : static_cast<uint16_t>(node.xattr_body.size() / 4 + 1));
    Put16(meta, at + 4, static_cast<uint16_t>(a.mode));
    Put64(meta, at + 8, node.size);
    const bool device = S_ISCHR(a.mode) || S_ISBLK(a.mode);
    Put32(meta, at + 16, device ? EncodeDevice(a.rdev) : node.blkaddr);
    Put32(meta, at + 20, static_cast<uint32_t>(index + 1));
    Put32(meta, at + 24, a.uid);
    Put32(meta, at + 28, a.gid);
    Put64(meta, at + 32, static_cast<uint64_t>(a.mtime_sec));
    Put32(meta, at + 40, a.mtime_nsec);
    Put32(meta, at + 44, node.links);
    size_t tail = at + kInodeSize;
    if (!node.xattr_body.empty()) {
      std::memcpy(meta.data() + tail + kXattrHeaderSize, node.xattr_body.data(), node.xattr_body.size());
      tail += XattrIbodySize(node.xattr_body);
    }
    std::memcpy(meta.data() + tail, node.inline_bytes.data(), node.inline_bytes.size());
  }

  std::string superblock(128, '\0');
  Put32(superblock, 0, kMagic);
  superblock[12] = static_cast<char>(kBlockBits);
  Put16(superblock, 14, static_cast<uint16_t>(nodes_[kRoot].nid));
  Put64(superblock, 16, order.size());
  Put32(superblock, 36, static_cast<uint32_t>(dir_block));
  Put32(superblock, 40, meta_blkaddr);
  std::memcpy(superblock.data() + 48, uuid.data(), uuid.size());

  STRATA_RETURN_IF_ERROR(PwriteAll(out_fd_, meta, uint64_t{meta_blkaddr} * kBlock));
  STRATA_RETURN_IF_ERROR(PwriteAll(out_fd_, dir_area, (meta_blkaddr + meta_blocks) * kBlock));
  STRATA_RETURN_IF_ERROR(PwriteAll(out_fd_, superblock, kSuperblockOffset));
  const uint64_t image_bytes = dir_block * kBlock;
  if (::ftruncate(out_fd_, static_cast<off_t>(image_bytes)) != 0) return ErrnoFail(errno, "size the EROFS image");
  return Stats{.inodes = order.size(), .file_bytes = file_bytes_, .image_bytes = image_bytes};
}

}  // namespace strata::snapshotter
