#include "archive/tar_reader.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include "archive/tar_format.h"
#include "archive/tar_reader_records.h"

namespace strata::archive {
namespace {

using tar_internal::ApplyPaxRecords;
using tar_internal::ParseDecimal;
using tar_internal::ParseNumber;
using tar_internal::ParsePaxRecords;
using tar_internal::PaxSparse;
using tar_internal::Quote;

// Large enough that a pull copies in big chunks; callers asking for at least
// kDirectReadThreshold bytes bypass the buffer altogether.
constexpr size_t kBufferSize = 256 * 1024;
constexpr size_t kDirectReadThreshold = 32 * 1024;

using namespace tar_format;

constexpr Field kStarPrefix{345, 131};  // star keeps atime/ctime after a shorter prefix
constexpr Field kStarTrailer{508, 4};
// Old GNU sparse header: 4 (offset, numbytes) pairs, an "extended" flag and the real size;
// extension blocks hold 21 pairs and the flag at 504.
constexpr size_t kGnuSparseOffset = 386;
constexpr size_t kGnuSparseEntries = 4;
constexpr size_t kGnuIsExtended = 482;
constexpr Field kGnuRealSize{483, 12};
constexpr size_t kGnuExtEntries = 21;
constexpr size_t kGnuExtIsExtended = 504;

using Block = std::array<char, kBlockSize>;

std::string_view FieldBytes(std::span<const char> block, Field field) {
  return std::string_view(block.data() + field.offset, field.width);
}

// A NUL-terminated string field (not necessarily terminated when full).
std::string CString(std::span<const char> block, Field field) {
  std::string_view bytes = FieldBytes(block, field);
  return std::string(bytes.substr(0, bytes.find('\0')));
}

bool IsZero(std::span<const char> bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](char c) { return c == '\0'; });
}

uint64_t Padding(uint64_t size) { return (kBlockSize - size % kBlockSize) % kBlockSize; }

// What the header checksum should be: unsigned (POSIX) and signed (old Sun/GNU) sums.
std::pair<int64_t, int64_t> Checksums(std::span<const char> block) {
  int64_t unsigned_sum = 0;
  int64_t signed_sum = 0;
  for (size_t i = 0; i < kBlockSize; ++i) {
    bool in_field = i >= kChecksum.offset && i < kChecksum.offset + kChecksum.width;
    char c = in_field ? ' ' : block[i];
    unsigned_sum += static_cast<unsigned char>(c);
    signed_sum += static_cast<signed char>(c);
  }
  return {unsigned_sum, signed_sum};
}

}  // namespace

TarReader::TarReader(ByteReader& input, TarReaderOptions options)
    : input_(input), options_(options), buffer_(kBufferSize) {}

// ---- Buffered input ----

Result<size_t> TarReader::ReadInput(std::span<char> out) {
  if (out.empty()) return 0;
  if (buffer_pos_ == buffer_end_) {
    if (input_eof_) return 0;
    // Big reads go straight into the caller's buffer: content is copied once.
    std::span<char> target = out.size() >= kDirectReadThreshold ? out : std::span<char>(buffer_);
    Result<size_t> got = input_.Read(target);
    if (!got) return Fail(got.error().WithContext(fmt::format("tar: reading input at byte {}", offset_)));
    if (*got == 0) {
      input_eof_ = true;
      return 0;
    }
    if (target.data() == out.data()) {
      offset_ += *got;
      return *got;
    }
    buffer_pos_ = 0;
    buffer_end_ = *got;
  }
  size_t count = std::min(out.size(), buffer_end_ - buffer_pos_);
  std::memcpy(out.data(), buffer_.data() + buffer_pos_, count);
  buffer_pos_ += count;
  offset_ += count;
  return count;
}

Result<size_t> TarReader::ReadInputFull(std::span<char> out) {
  size_t total = 0;
  while (total < out.size()) {
    STRATA_ASSIGN_OR_RETURN(size_t got, ReadInput(out.subspan(total)));
    if (got == 0) break;
    total += got;
  }
  return total;
}

Result<uint64_t> TarReader::SkipInput(uint64_t count) {
  uint64_t skipped = 0;
  while (skipped < count) {
    if (buffer_pos_ == buffer_end_) {
      if (input_eof_) break;
      Result<size_t> got = input_.Read(buffer_);
      if (!got) return Fail(got.error().WithContext(fmt::format("tar: reading input at byte {}", offset_)));
      if (*got == 0) {
        input_eof_ = true;
        break;
      }
      buffer_pos_ = 0;
      buffer_end_ = *got;
    }
    size_t step = static_cast<size_t>(std::min<uint64_t>(count - skipped, buffer_end_ - buffer_pos_));
    buffer_pos_ += step;
    offset_ += step;
    skipped += step;
  }
  return skipped;
}

// ---- Entry data ----

Status TarReader::TruncatedError(uint64_t missing) const {
  return Fail(ErrorCode::kInvalidArgument, "truncated tar: entry {} ends at byte {} ({} of its {} data bytes missing)",
              Quote(entry_name_), offset_, missing, data_size_);
}

Result<size_t> TarReader::ReadEntryData(std::span<char> out) {
  size_t want = static_cast<size_t>(std::min<uint64_t>(out.size(), data_remaining_));
  if (want == 0) return 0;
  STRATA_ASSIGN_OR_RETURN(size_t got, ReadInput(out.first(want)));
  if (got == 0) return Fail(TruncatedError(data_remaining_).error());
  data_remaining_ -= got;
  return got;
}

Status TarReader::ReadEntryDataFull(std::span<char> out) {
  if (out.size() > data_remaining_) return TruncatedError(out.size() - data_remaining_);
  size_t total = 0;
  while (total < out.size()) {
    STRATA_ASSIGN_OR_RETURN(size_t got, ReadEntryData(out.subspan(total)));
    total += got;
  }
  return {};
}

Status TarReader::SkipRestOfEntry() {
  STRATA_ASSIGN_OR_RETURN(uint64_t skipped, SkipInput(data_remaining_));
  if (skipped < data_remaining_) return TruncatedError(data_remaining_ - skipped);
  data_remaining_ = 0;
  STRATA_ASSIGN_OR_RETURN(skipped, SkipInput(padding_));
  if (skipped < padding_) {
    return Fail(ErrorCode::kInvalidArgument, "truncated tar: entry {} ends at byte {} (block padding missing)",
                Quote(entry_name_), offset_);
  }
  padding_ = 0;
  has_content_ = false;
  sparse_ = false;
  sparse_map_.clear();
  return {};
}

// The data of a metadata entry (PAX header, GNU long name), bounded by the option limit.
Result<std::string> TarReader::ReadMetaEntry(std::string_view what, uint64_t size, uint64_t header_offset) {
  if (size > options_.max_pax_header_bytes) {
    return Fail(ErrorCode::kInvalidArgument, "tar: {} at byte {} has size {}, over the limit of {}", what,
                header_offset, size, options_.max_pax_header_bytes);
  }
  entry_name_ = fmt::format("{} at byte {}", what, header_offset);
  data_size_ = data_remaining_ = size;
  padding_ = Padding(size);
  std::string data(static_cast<size_t>(size), '\0');
  STRATA_RETURN_IF_ERROR(ReadEntryDataFull(data));
  STRATA_RETURN_IF_ERROR(SkipRestOfEntry());
  return data;
}

// ---- Public calls: errors are sticky ----

Result<std::optional<TarEntry>> TarReader::Next() {
  if (error_) return Fail(*error_);
  Result<std::optional<TarEntry>> result = NextImpl();
  if (!result) error_ = result.error();
  return result;
}

Result<size_t> TarReader::ReadContent(std::span<char> buffer) {
  if (error_) return Fail(*error_);
  Result<size_t> result = ReadContentImpl(buffer);
  if (!result) error_ = result.error();
  return result;
}

Result<size_t> TarReader::ReadContentImpl(std::span<char> buffer) {
  if (!has_content_ || buffer.empty()) return 0;
  if (!sparse_) return ReadEntryData(buffer);
  if (logical_pos_ >= logical_size_) return 0;
  while (sparse_index_ < sparse_map_.size() &&
         logical_pos_ >= sparse_map_[sparse_index_].offset + sparse_map_[sparse_index_].length) {
    ++sparse_index_;
  }
  if (sparse_index_ < sparse_map_.size() && logical_pos_ >= sparse_map_[sparse_index_].offset) {
    const SparseSegment& segment = sparse_map_[sparse_index_];
    uint64_t left = segment.offset + segment.length - logical_pos_;
    STRATA_ASSIGN_OR_RETURN(size_t got, ReadEntryData(buffer.first(std::min<uint64_t>(buffer.size(), left))));
    logical_pos_ += got;
    return got;
  }
  uint64_t hole_end = sparse_index_ < sparse_map_.size() ? sparse_map_[sparse_index_].offset : logical_size_;
  size_t count = static_cast<size_t>(std::min<uint64_t>(buffer.size(), hole_end - logical_pos_));
  std::memset(buffer.data(), 0, count);
  logical_pos_ += count;
  return count;
}

// ---- Headers ----

Result<std::optional<TarEntry>> TarReader::NextImpl() {
  if (at_end_) return std::optional<TarEntry>();
  STRATA_RETURN_IF_ERROR(SkipRestOfEntry());

  // Metadata entries seen so far for the entry to come.
  std::vector<std::pair<std::string, std::string>> local_records;
  std::optional<std::string> long_name;
  std::optional<std::string> long_link;
  bool pending = false;

  Block header;
  while (true) {
    uint64_t header_offset = offset_;
    STRATA_ASSIGN_OR_RETURN(size_t got, ReadInputFull(header));
    if (got == 0 && !pending) {
      at_end_ = true;
      return std::optional<TarEntry>();
    }
    if (got < kBlockSize) {
      return Fail(ErrorCode::kInvalidArgument, "truncated tar: header at byte {} has {} of {} bytes{}", header_offset,
                  got, kBlockSize, pending ? " (after an extended header)" : "");
    }
    if (IsZero(header)) {
      Block next;
      STRATA_ASSIGN_OR_RETURN(size_t next_got, ReadInputFull(next));
      if (!IsZero(std::span<const char>(next.data(), next_got))) {
        return Fail(ErrorCode::kInvalidArgument, "tar: zero block at byte {} is followed by data", header_offset);
      }
      if (pending) {
        return Fail(ErrorCode::kInvalidArgument, "tar: archive ends at byte {} right after an extended header",
                    header_offset);
      }
      at_end_ = true;
      return std::optional<TarEntry>();
    }

    std::string raw_name = CString(header, kName);
    std::optional<int64_t> stored_sum = ParseNumber(FieldBytes(header, kChecksum));
    auto [unsigned_sum, signed_sum] = Checksums(header);
    if (!stored_sum || (*stored_sum != unsigned_sum && *stored_sum != signed_sum)) {
      return Fail(ErrorCode::kInvalidArgument, "tar: bad header checksum at byte {} (name {}): stored {}, computed {}",
                  header_offset, Quote(raw_name), Quote(CString(header, kChecksum)), unsigned_sum);
    }
    char flag = header[kTypeflag.offset];
    std::optional<int64_t> header_size = ParseNumber(FieldBytes(header, kSize));
    if (!header_size || *header_size < 0) {
      return Fail(ErrorCode::kInvalidArgument, "tar: entry {} at byte {} has a bad size field {}", Quote(raw_name),
                  header_offset, Quote(FieldBytes(header, kSize)));
    }
    auto size = static_cast<uint64_t>(*header_size);

    if (flag == 'x' || flag == 'g') {
      STRATA_ASSIGN_OR_RETURN(std::string data, ReadMetaEntry("PAX header", size, header_offset));
      Result<std::vector<std::pair<std::string, std::string>>> records = ParsePaxRecords(data);
      if (!records) {
        return Fail(records.error().WithContext(fmt::format("tar: PAX header at byte {}", header_offset)));
      }
      if (flag == 'g') {
        for (auto& [key, value] : *records) {
          if (value.empty()) global_records_.erase(key);
          else global_records_[key] = std::move(value);
        }
      } else {
        for (auto& record : *records) local_records.push_back(std::move(record));
        pending = true;
      }
      continue;
    }
    if (flag == 'L' || flag == 'K') {
      STRATA_ASSIGN_OR_RETURN(std::string data, ReadMetaEntry("GNU long name", size, header_offset));
      data.resize(std::min(data.size(), data.find('\0')));
      (flag == 'L' ? long_name : long_link) = std::move(data);
      pending = true;
      continue;
    }

    // A real entry: the ustar fields, then GNU long names, then PAX records over them.
    TarEntry entry;
    std::string_view magic = FieldBytes(header, kMagic);
    bool is_ustar = magic == std::string_view("ustar\0", 6) && FieldBytes(header, kVersion) == "00";
    entry.name = raw_name;
    if (is_ustar) {
      bool is_star = FieldBytes(header, kStarTrailer) == std::string_view("tar\0", 4);
      std::string prefix = CString(header, is_star ? kStarPrefix : kPrefix);
      if (!prefix.empty()) entry.name = prefix + "/" + entry.name;
    }
    entry.linkname = CString(header, kLinkname);
    bool has_owner_names = is_ustar || magic == "ustar ";
    if (has_owner_names) {
      entry.uname = CString(header, kUname);
      entry.gname = CString(header, kGname);
    }
    if (long_name) entry.name = *long_name;
    if (long_link) entry.linkname = *long_link;
    entry_name_ = entry.name;

    auto number = [&](Field field, std::string_view what) -> Result<int64_t> {
      std::optional<int64_t> value = ParseNumber(FieldBytes(header, field));
      if (!value) {
        return Fail(ErrorCode::kInvalidArgument, "tar: entry {} at byte {} has a bad {} field {}", Quote(entry.name),
                    header_offset, what, Quote(FieldBytes(header, field)));
      }
      return *value;
    };
    STRATA_ASSIGN_OR_RETURN(int64_t mode, number(kMode, "mode"));
    STRATA_ASSIGN_OR_RETURN(int64_t uid, number(kUid, "uid"));
    STRATA_ASSIGN_OR_RETURN(int64_t gid, number(kGid, "gid"));
    STRATA_ASSIGN_OR_RETURN(int64_t mtime, number(kMtime, "mtime"));
    if (uid < 0 || gid < 0) {
      return Fail(ErrorCode::kInvalidArgument, "tar: entry {} at byte {} has a negative uid or gid", Quote(entry.name),
                  header_offset);
    }
    entry.mode = static_cast<uint32_t>(mode) & 07777;
    entry.uid = static_cast<uint64_t>(uid);
    entry.gid = static_cast<uint64_t>(gid);
    entry.mtime.seconds = mtime;
    bool is_device = flag == '3' || flag == '4';
    if (is_device && has_owner_names) {
      STRATA_ASSIGN_OR_RETURN(int64_t major, number(kDevmajor, "devmajor"));
      STRATA_ASSIGN_OR_RETURN(int64_t minor, number(kDevminor, "devminor"));
      if (major < 0 || minor < 0 || major > UINT32_MAX || minor > UINT32_MAX) {
        return Fail(ErrorCode::kInvalidArgument, "tar: entry {} has out-of-range device numbers", Quote(entry.name));
      }
      entry.devmajor = static_cast<uint32_t>(major);
      entry.devminor = static_cast<uint32_t>(minor);
    }

    // Global records first, then this entry's (later wins; empty cancels).
    std::map<std::string, std::string> records = global_records_;
    for (const auto& [key, value] : local_records) {
      if (value.empty()) records.erase(key);
      else records[key] = value;
    }
    PaxSparse pax_sparse;
    if (Status applied = ApplyPaxRecords(records, local_records, entry, size, pax_sparse); !applied) {
      return Fail(applied.error().WithContext(
          fmt::format("tar: entry {} at byte {}", Quote(entry.name), header_offset)));
    }
    entry_name_ = entry.name;
    if (size > options_.max_entry_size) {
      return Fail(ErrorCode::kInvalidArgument, "tar: entry {} at byte {} has size {}, over the limit of {}",
                  Quote(entry.name), header_offset, size, options_.max_entry_size);
    }
    data_size_ = data_remaining_ = size;
    padding_ = Padding(size);
    logical_pos_ = 0;
    sparse_index_ = 0;

    switch (flag) {
      case '0': case '\0': case '7': case 'S':
        entry.type = TarEntryType::kRegular;
        if (flag == '\0' && entry.name.ends_with('/')) entry.type = TarEntryType::kDirectory;
        break;
      case 'D': entry.type = TarEntryType::kDirectory; break;
      case '1': case '2': case '3': case '4': case '5': case '6':
        entry.type = static_cast<TarEntryType>(flag);
        break;
      default:
        if (size != 0) {
          return Fail(ErrorCode::kInvalidArgument, "tar: entry {} at byte {} has unsupported type '{}' with {} data bytes",
                      Quote(entry.name), header_offset, Quote(std::string_view(&flag, 1)), size);
        }
        entry.type = static_cast<TarEntryType>(flag);
    }
    if (entry.type == TarEntryType::kDirectory && !entry.name.ends_with('/')) entry.name += '/';
    if (entry.type != TarEntryType::kRegular) {
      entry.size = 0;  // data stored with links, dumpdirs etc. is skipped
      return entry;
    }

    has_content_ = true;
    if (flag == 'S') {
      sparse_ = true;
      STRATA_RETURN_IF_ERROR(ReadOldGnuSparseMap(header));
      STRATA_ASSIGN_OR_RETURN(int64_t real_size, number(kGnuRealSize, "realsize"));
      if (real_size < 0) return Fail(ErrorCode::kInvalidArgument, "tar: entry {} has a negative real size", Quote(entry.name));
      logical_size_ = static_cast<uint64_t>(real_size);
      if (pax_sparse.real_size) logical_size_ = *pax_sparse.real_size;
    } else if (pax_sparse.present) {
      sparse_ = true;
      if (!pax_sparse.real_size) {
        return Fail(ErrorCode::kInvalidArgument, "tar: sparse entry {} has no GNU.sparse real size", Quote(entry.name));
      }
      logical_size_ = *pax_sparse.real_size;
      if (pax_sparse.map_in_data) {
        STRATA_RETURN_IF_ERROR(ReadPaxSparseMapFromData());
      } else {
        for (auto [offset, length] : pax_sparse.map) sparse_map_.push_back({offset, length});
      }
    }
    if (sparse_) {
      if (logical_size_ > options_.max_entry_size) {
        return Fail(ErrorCode::kInvalidArgument, "tar: sparse entry {} has size {}, over the limit of {}",
                    Quote(entry.name), logical_size_, options_.max_entry_size);
      }
      STRATA_RETURN_IF_ERROR(ValidateSparseMap(data_remaining_));
      entry.size = logical_size_;
    } else {
      entry.size = size;
    }
    return entry;
  }
}

// ---- Sparse maps ----

// Old GNU 'S': up to 4 segments in the header, then 21 per extension block while the
// "extended" flag is set. Extension blocks sit between the header and the data.
Status TarReader::ReadOldGnuSparseMap(std::span<const char> header) {
  auto add_segments = [&](std::span<const char> block, size_t first, size_t count) -> Status {
    for (size_t i = 0; i < count; ++i) {
      size_t at = first + i * 24;
      if (block[at] == '\0') break;
      std::optional<int64_t> offset = ParseNumber(std::string_view(block.data() + at, 12));
      std::optional<int64_t> length = ParseNumber(std::string_view(block.data() + at + 12, 12));
      if (!offset || !length || *offset < 0 || *length < 0) {
        return Fail(ErrorCode::kInvalidArgument, "tar: sparse entry {} has a bad sparse map entry",
                    Quote(entry_name_));
      }
      sparse_map_.push_back({static_cast<uint64_t>(*offset), static_cast<uint64_t>(*length)});
    }
    return {};
  };
  STRATA_RETURN_IF_ERROR(add_segments(header, kGnuSparseOffset, kGnuSparseEntries));
  bool extended = header[kGnuIsExtended] != '\0';
  uint64_t extension_bytes = 0;
  while (extended) {
    extension_bytes += kBlockSize;
    if (extension_bytes > options_.max_pax_header_bytes) {
      return Fail(ErrorCode::kInvalidArgument, "tar: sparse map of {} is over the limit of {} bytes",
                  Quote(entry_name_), options_.max_pax_header_bytes);
    }
    Block block;
    uint64_t block_offset = offset_;
    STRATA_ASSIGN_OR_RETURN(size_t got, ReadInputFull(block));
    if (got < kBlockSize) {
      return Fail(ErrorCode::kInvalidArgument, "truncated tar: sparse header of {} at byte {} has {} of {} bytes",
                  Quote(entry_name_), block_offset, got, kBlockSize);
    }
    STRATA_RETURN_IF_ERROR(add_segments(block, 0, kGnuExtEntries));
    extended = block[kGnuExtIsExtended] != '\0';
  }
  return {};
}

// Sparse 1.0: the data starts with "<count>\n" then "<offset>\n<length>\n" per segment,
// padded to a block boundary; the file's bytes follow.
Status TarReader::ReadPaxSparseMapFromData() {
  std::string text;
  std::vector<uint64_t> numbers;
  std::optional<uint64_t> count;
  size_t parsed = 0;
  while (!count || numbers.size() < 2 * *count) {
    size_t newline = text.find('\n', parsed);
    if (newline == std::string::npos) {
      if (text.size() + kBlockSize > options_.max_pax_header_bytes) {
        return Fail(ErrorCode::kInvalidArgument, "tar: sparse map of {} is over the limit of {} bytes",
                    Quote(entry_name_), options_.max_pax_header_bytes);
      }
      size_t old_size = text.size();
      text.resize(old_size + kBlockSize);
      STRATA_RETURN_IF_ERROR(ReadEntryDataFull(std::span<char>(text).subspan(old_size)));
      continue;
    }
    std::optional<uint64_t> value = ParseDecimal(std::string_view(text).substr(parsed, newline - parsed));
    if (!value) return Fail(ErrorCode::kInvalidArgument, "tar: sparse entry {} has a bad sparse map", Quote(entry_name_));
    parsed = newline + 1;
    if (!count) {
      if (*value > options_.max_pax_header_bytes / 4) {
        return Fail(ErrorCode::kInvalidArgument, "tar: sparse entry {} claims {} segments", Quote(entry_name_), *value);
      }
      count = *value;
    } else {
      numbers.push_back(*value);
    }
  }
  for (size_t i = 0; i < numbers.size(); i += 2) sparse_map_.push_back({numbers[i], numbers[i + 1]});
  return {};
}

// Segments must be in order, disjoint, inside the logical size, and account for exactly
// the stored data: otherwise the expansion would be ambiguous.
Status TarReader::ValidateSparseMap(uint64_t physical_size) {
  uint64_t previous_end = 0;
  uint64_t total = 0;
  for (const SparseSegment& segment : sparse_map_) {
    if (segment.offset < previous_end || segment.length > logical_size_ || segment.offset > logical_size_ - segment.length) {
      return Fail(ErrorCode::kInvalidArgument,
                  "tar: sparse entry {} has a segment {}+{} out of order or past its size {}", Quote(entry_name_),
                  segment.offset, segment.length, logical_size_);
    }
    previous_end = segment.offset + segment.length;
    total += segment.length;
  }
  if (total != physical_size) {
    return Fail(ErrorCode::kInvalidArgument, "tar: sparse entry {} maps {} bytes but stores {}", Quote(entry_name_),
                total, physical_size);
  }
  return {};
}

}  // namespace strata::archive
