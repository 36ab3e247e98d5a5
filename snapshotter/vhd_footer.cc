#include "snapshotter/vhd_footer.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/file.h"

namespace strata::snapshotter {
namespace {

constexpr char kCookie[8] = {'c', 'o', 'n', 'e', 'c', 't', 'i', 'x'};
constexpr uint32_t kFeatures = 0x00000002;  // "reserved" bit, always set
constexpr uint32_t kFormatVersion = 0x00010000;
constexpr uint64_t kNoDataOffset = ~uint64_t{0};  // fixed disks have no dynamic header
constexpr uint32_t kCreatorVersion = 0x000A0000;
constexpr uint32_t kDiskTypeFixed = 2;
constexpr size_t kChecksumOffset = 64;

void PutBig(uint8_t* out, uint64_t value, int bytes) {
  for (int i = bytes - 1; i >= 0; --i, value >>= 8) out[i] = static_cast<uint8_t>(value & 0xff);
}
uint64_t GetBig(const uint8_t* in, int bytes) {
  uint64_t value = 0;
  for (int i = 0; i < bytes; ++i) value = (value << 8) | in[i];
  return value;
}

// One's complement of the byte sum, the checksum field counted as zero.
uint32_t Checksum(const std::array<uint8_t, kVhdFooterSize>& bytes) {
  uint32_t sum = 0;
  for (size_t i = 0; i < bytes.size(); ++i) {
    if (i >= kChecksumOffset && i < kChecksumOffset + 4) continue;
    sum += bytes[i];
  }
  return ~sum;
}

Result<std::array<uint8_t, 16>> RandomId() {
  std::array<uint8_t, 16> id{};
  size_t done = 0;
  while (done < id.size()) {
    const ssize_t n = ::getrandom(id.data() + done, id.size() - done, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoFail(errno, "getrandom");
    }
    done += static_cast<size_t>(n);
  }
  return id;
}

Status WriteFooterAt(int fd, uint64_t data_size, const std::filesystem::path& path) {
  STRATA_ASSIGN_OR_RETURN(auto id, RandomId());
  const auto bytes = EncodeVhdFooter({.data_size = data_size, .timestamp = 0, .unique_id = id});
  if (::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(data_size)) != static_cast<ssize_t>(bytes.size())) {
    return ErrnoFail(errno, "write VHD footer", path);
  }
  if (::fsync(fd) != 0) return ErrnoFail(errno, "fsync", path);
  return {};
}

}  // namespace

// The VHD specification's CHS algorithm (its appendix "CHS calculation").
VhdGeometry VhdGeometryFor(uint64_t data_size) {
  constexpr uint64_t kMaxSectors = uint64_t{65535} * 16 * 255;
  const uint64_t total = std::min(data_size / 512, kMaxSectors);
  uint64_t sectors_per_track, heads, cylinder_times_heads;
  if (total >= uint64_t{65535} * 16 * 63) {
    sectors_per_track = 255;
    heads = 16;
    cylinder_times_heads = total / sectors_per_track;
  } else {
    sectors_per_track = 17;
    cylinder_times_heads = total / sectors_per_track;
    heads = std::max<uint64_t>((cylinder_times_heads + 1023) / 1024, 4);
    if (cylinder_times_heads >= heads * 1024 || heads > 16) {
      sectors_per_track = 31;
      heads = 16;
      cylinder_times_heads = total / sectors_per_track;
    }
    if (cylinder_times_heads >= heads * 1024) {
      sectors_per_track = 63;
      heads = 16;
      cylinder_times_heads = total / sectors_per_track;
    }
  }
  return {.cylinders = static_cast<uint16_t>(cylinder_times_heads / heads),
          .heads = static_cast<uint8_t>(heads),
          .sectors_per_track = static_cast<uint8_t>(sectors_per_track)};
}

std::array<uint8_t, kVhdFooterSize> EncodeVhdFooter(const VhdFooter& footer) {
  std::array<uint8_t, kVhdFooterSize> out{};
  std::memcpy(out.data(), kCookie, sizeof kCookie);
  PutBig(out.data() + 8, kFeatures, 4);
  PutBig(out.data() + 12, kFormatVersion, 4);
  PutBig(out.data() + 16, kNoDataOffset, 8);
  PutBig(out.data() + 24, footer.timestamp, 4);
  std::memcpy(out.data() + 28, "strt", 4);  // creator application
  PutBig(out.data() + 32, kCreatorVersion, 4);
  std::memcpy(out.data() + 36, "Wi2k", 4);  // creator host OS, as Windows tools write it
  PutBig(out.data() + 40, footer.data_size, 8);
  PutBig(out.data() + 48, footer.data_size, 8);
  const VhdGeometry chs = VhdGeometryFor(footer.data_size);
  PutBig(out.data() + 56, chs.cylinders, 2);
  out[58] = chs.heads;
  out[59] = chs.sectors_per_track;
  PutBig(out.data() + 60, kDiskTypeFixed, 4);
  std::memcpy(out.data() + 68, footer.unique_id.data(), footer.unique_id.size());
  PutBig(out.data() + kChecksumOffset, Checksum(out), 4);
  return out;
}

Result<VhdFooter> DecodeVhdFooter(const std::array<uint8_t, kVhdFooterSize>& bytes) {
  auto bad = [](std::string_view what) { return Fail(ErrorCode::kInvalidArgument, "VHD footer: {}", what); };
  if (std::memcmp(bytes.data(), kCookie, sizeof kCookie) != 0) return bad("no \"conectix\" cookie");
  if (GetBig(bytes.data() + 12, 4) != kFormatVersion) return bad("file format version is not 1.0");
  if (GetBig(bytes.data() + 60, 4) != kDiskTypeFixed) {
    return Fail(ErrorCode::kInvalidArgument, "VHD footer: disk type {} is not fixed (2)", GetBig(bytes.data() + 60, 4));
  }
  if (GetBig(bytes.data() + 16, 8) != kNoDataOffset) return bad("a fixed disk's data offset must be -1");
  const uint32_t stored = static_cast<uint32_t>(GetBig(bytes.data() + kChecksumOffset, 4));
  if (stored != Checksum(bytes)) {
    return Fail(ErrorCode::kInvalidArgument, "VHD footer: checksum {:#010x} does not match the bytes ({:#010x})",
                stored, Checksum(bytes));
  }
  VhdFooter footer;
  footer.data_size = GetBig(bytes.data() + 48, 8);
  footer.timestamp = static_cast<uint32_t>(GetBig(bytes.data() + 24, 4));
  std::memcpy(footer.unique_id.data(), bytes.data() + 68, footer.unique_id.size());
  return footer;
}

Result<VhdFooter> ReadVhdFooter(const std::filesystem::path& path) {
  STRATA_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_RDONLY));
  struct stat st{};
  if (::fstat(fd.get(), &st) != 0) return ErrnoFail(errno, "stat", path);
  if (st.st_size < static_cast<off_t>(kVhdFooterSize)) {
    return Fail(ErrorCode::kInvalidArgument, "{}: {} bytes is too short for a VHD footer", path.string(), st.st_size);
  }
  std::array<uint8_t, kVhdFooterSize> bytes{};
  const off_t at = st.st_size - static_cast<off_t>(kVhdFooterSize);
  if (::pread(fd.get(), bytes.data(), bytes.size(), at) != static_cast<ssize_t>(bytes.size())) {
    return ErrnoFail(errno, "read VHD footer", path);
  }
  auto footer = DecodeVhdFooter(bytes);
  if (!footer) return Fail(footer.error().WithContext(path.string()));
  if (footer->data_size != static_cast<uint64_t>(at)) {
    return Fail(ErrorCode::kInvalidArgument, "{}: VHD footer says {} data bytes, the file holds {}", path.string(),
                footer->data_size, at);
  }
  return footer;
}

Status AppendVhdFooter(const std::filesystem::path& path) {
  if (ReadVhdFooter(path)) {
    return Fail(ErrorCode::kAlreadyExists, "{} already ends with a fixed VHD footer", path.string());
  }
  STRATA_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_WRONLY));
  struct stat st{};
  if (::fstat(fd.get(), &st) != 0) return ErrnoFail(errno, "stat", path);
  if (!S_ISREG(st.st_mode) || st.st_size % 512 != 0) {
    return Fail(ErrorCode::kInvalidArgument, "{}: a VHD's data must be a regular file of whole 512-byte sectors ({} bytes)",
                path.string(), st.st_size);
  }
  return WriteFooterAt(fd.get(), static_cast<uint64_t>(st.st_size), path);
}

Status CreateSparseFixedVhd(const std::filesystem::path& path, uint64_t data_size) {
  if (data_size == 0 || data_size % 512 != 0) {
    return Fail(ErrorCode::kInvalidArgument, "{}: VHD size {} is not a positive multiple of 512", path.string(), data_size);
  }
  std::error_code ec;
  if (std::filesystem::symlink_status(path, ec).type() != std::filesystem::file_type::not_found) {
    return Fail(ErrorCode::kAlreadyExists, "{} already exists", path.string());
  }
  const std::filesystem::path temp = path.parent_path() / ("." + path.filename().string() + ".tmp");
  STRATA_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(temp, O_WRONLY | O_CREAT | O_TRUNC, 0644));
  Status written = [&]() -> Status {
    if (::ftruncate(fd.get(), static_cast<off_t>(data_size)) != 0) return ErrnoFail(errno, "truncate", temp);
    return WriteFooterAt(fd.get(), data_size, temp);
  }();
  if (written && ::rename(temp.c_str(), path.c_str()) != 0) written = ErrnoFail(errno, "rename", path);
  if (!written) {
    ::unlink(temp.c_str());
    return written;
  }
  return FsyncDir(path.parent_path().empty() ? "." : path.parent_path());
}

}  // namespace strata::snapshotter
