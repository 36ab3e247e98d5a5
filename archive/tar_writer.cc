#include "archive/tar_writer.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>
#include <utility>

#include "archive/tar_format.h"

namespace strata::archive {
namespace {

using namespace tar_format;

using Block = std::array<char, kBlockSize>;

// Largest value an octal field of `width` bytes holds (width-1 digits plus a NUL).
constexpr uint64_t MaxOctal(size_t width) { return (uint64_t{1} << (3 * (width - 1))) - 1; }

bool IsPortableAscii(std::string_view text) {
  return std::all_of(text.begin(), text.end(),
                     [](char c) { return c > 0 && static_cast<unsigned char>(c) < 0x80; });
}

void PutString(Block& block, Field field, std::string_view value) {
  if (value.empty()) return;  // an empty view may have a null data()
  std::memcpy(block.data() + field.offset, value.data(), std::min(value.size(), field.width));
}

// REQUIRES: value <= MaxOctal(field.width).
void PutOctal(Block& block, Field field, uint64_t value) {
  std::string digits = fmt::format("{:0{}o}", value, field.width - 1);
  std::memcpy(block.data() + field.offset, digits.data(), field.width - 1);
  block[field.offset + field.width - 1] = '\0';
}

// Splits a name into ustar prefix and name fields; nullopt when it cannot be split.
std::optional<std::pair<std::string_view, std::string_view>> SplitUstarName(std::string_view name) {
  if (name.size() <= kName.width) return std::pair{std::string_view{}, name};
  if (name.size() > kPrefix.width + 1 + kName.width) return std::nullopt;
  // The first '/' that leaves a suffix short enough gives the shortest valid prefix.
  for (size_t slash = name.find('/'); slash != std::string_view::npos; slash = name.find('/', slash + 1)) {
    std::string_view prefix = name.substr(0, slash);
    std::string_view rest = name.substr(slash + 1);
    if (prefix.size() > kPrefix.width) break;
    if (!rest.empty() && rest.size() <= kName.width) return std::pair{prefix, rest};
  }
  return std::nullopt;
}

// Text of a PAX time value: "<sec>[.<frac>]" with trailing zeros of the fraction removed.
std::string PaxTime(TarTime time) {
  int64_t seconds = time.seconds;
  uint32_t nanos = time.nanoseconds;
  std::string sign;
  if (seconds < 0 && nanos > 0) {
    // -2 s + 0.5 s is written "-1.5".
    sign = "-";
    seconds = -(seconds + 1);
    nanos = 1'000'000'000 - nanos;
  }
  std::string text = sign + std::to_string(seconds);
  if (nanos == 0) return text;
  std::string fraction = fmt::format("{:09}", nanos);
  while (!fraction.empty() && fraction.back() == '0') fraction.pop_back();
  return text + "." + fraction;
}

void SetChecksum(Block& block) {
  std::memset(block.data() + kChecksum.offset, ' ', kChecksum.width);
  uint64_t sum = 0;
  for (char c : block) sum += static_cast<unsigned char>(c);
  // Six octal digits, NUL, space: the form every tar writes.
  std::string digits = fmt::format("{:06o}", sum);
  std::memcpy(block.data() + kChecksum.offset, digits.data(), 6);
  block[kChecksum.offset + 6] = '\0';
  block[kChecksum.offset + 7] = ' ';
}

// Replaces bytes ustar cannot carry, for the fallback names of PAX-described entries.
std::string AsciiFallback(std::string_view text, size_t width) {
  std::string out(text.substr(0, width));
  for (char& c : out) {
    if (c <= 0 || static_cast<unsigned char>(c) >= 0x80) c = '_';
  }
  return out;
}

Status ValidatePaxKey(std::string_view key) {
  if (key.empty() || key.find('=') != std::string_view::npos || key.find('\n') != std::string_view::npos ||
      key.find('\0') != std::string_view::npos) {
    return Fail(ErrorCode::kInvalidArgument, "tar: invalid PAX record key '{}'", key);
  }
  return {};
}

}  // namespace

std::string PaxRecord(std::string_view key, std::string_view value) {
  // " " + key + "=" + value + "\n", then the decimal length of the whole record in front.
  size_t body = key.size() + value.size() + 3;
  size_t length = body + std::to_string(body).size();
  if (std::to_string(length).size() != std::to_string(body).size()) length = body + std::to_string(length).size();
  return fmt::format("{} {}={}\n", length, key, value);
}

TarWriter::TarWriter(ByteSink sink) : sink_(std::move(sink)) {}

Status TarWriter::CheckUsable() const {
  if (failed_) return Fail(ErrorCode::kFailedPrecondition, "tar writer is unusable after an earlier error");
  if (finished_) return Fail(ErrorCode::kFailedPrecondition, "tar writer already finished");
  return {};
}

Status TarWriter::Emit(std::string_view bytes) {
  if (bytes.empty()) return {};
  Status status = sink_(bytes);
  if (!status) {
    failed_ = true;
    return status;
  }
  bytes_written_ += bytes.size();
  return {};
}

Status TarWriter::CloseCurrentEntry() {
  if (entry_remaining_ != 0) {
    return Fail(ErrorCode::kFailedPrecondition, "tar: previous entry is missing {} of its {} data bytes",
                entry_remaining_, entry_size_);
  }
  size_t tail = entry_size_ % kBlockSize;
  entry_size_ = 0;
  if (tail == 0) return {};
  static const Block kZeros{};
  return Emit(std::string_view(kZeros.data(), kBlockSize - tail));
}

Status TarWriter::WriteHeader(const TarEntry& input) {
  STRATA_RETURN_IF_ERROR(CheckUsable());
  STRATA_RETURN_IF_ERROR(CloseCurrentEntry());

  TarEntry entry = input;
  if (entry.name.empty()) return Fail(ErrorCode::kInvalidArgument, "tar: entry with an empty name");
  if (entry.type == TarEntryType::kDirectory && entry.name.back() != '/') entry.name += '/';
  if (entry.type != TarEntryType::kRegular && entry.size != 0) {
    return Fail(ErrorCode::kInvalidArgument, "tar: entry '{}' of type '{}' cannot have size {}", entry.name,
                static_cast<char>(entry.type), entry.size);
  }
  bool is_link = entry.type == TarEntryType::kSymlink || entry.type == TarEntryType::kHardLink;
  if (is_link && entry.linkname.empty()) {
    return Fail(ErrorCode::kInvalidArgument, "tar: link entry '{}' has no target", entry.name);
  }
  if (entry.mtime.nanoseconds >= 1'000'000'000) {
    return Fail(ErrorCode::kInvalidArgument, "tar: entry '{}' mtime nanoseconds {} out of range", entry.name,
                entry.mtime.nanoseconds);
  }
  bool is_device = entry.type == TarEntryType::kCharDevice || entry.type == TarEntryType::kBlockDevice;
  if (entry.devmajor > MaxOctal(kDevmajor.width) || entry.devminor > MaxOctal(kDevminor.width)) {
    return Fail(ErrorCode::kInvalidArgument, "tar: device numbers {}:{} of '{}' exceed ustar's range",
                entry.devmajor, entry.devminor, entry.name);
  }

  // Everything ustar cannot represent goes into PAX records, in a fixed order.
  std::string pax;
  Block header{};

  std::optional<std::pair<std::string_view, std::string_view>> split;
  if (IsPortableAscii(entry.name)) split = SplitUstarName(entry.name);
  if (split) {
    PutString(header, kPrefix, split->first);
    PutString(header, kName, split->second);
  } else {
    pax += PaxRecord("path", entry.name);
    PutString(header, kName, AsciiFallback(entry.name, kName.width));
  }

  if (entry.linkname.size() <= kLinkname.width && IsPortableAscii(entry.linkname)) {
    PutString(header, kLinkname, entry.linkname);
  } else {
    pax += PaxRecord("linkpath", entry.linkname);
    PutString(header, kLinkname, AsciiFallback(entry.linkname, kLinkname.width));
  }

  if (entry.size <= MaxOctal(kSize.width)) {
    PutOctal(header, kSize, entry.size);
  } else {
    pax += PaxRecord("size", std::to_string(entry.size));
    PutOctal(header, kSize, 0);
  }

  for (auto [field, value, key] : {std::tuple{kUid, entry.uid, "uid"}, std::tuple{kGid, entry.gid, "gid"}}) {
    if (value <= MaxOctal(field.width)) {
      PutOctal(header, field, value);
    } else {
      pax += PaxRecord(key, std::to_string(value));
      PutOctal(header, field, 0);
    }
  }

  for (auto [field, value, key] :
       {std::tuple{kUname, &entry.uname, "uname"}, std::tuple{kGname, &entry.gname, "gname"}}) {
    if (value->size() <= field.width && IsPortableAscii(*value)) {
      PutString(header, field, *value);
    } else {
      pax += PaxRecord(key, *value);
    }
  }

  bool mtime_fits = entry.mtime.seconds >= 0 && static_cast<uint64_t>(entry.mtime.seconds) <= MaxOctal(kMtime.width);
  PutOctal(header, kMtime, mtime_fits ? static_cast<uint64_t>(entry.mtime.seconds) : 0);
  if (!mtime_fits || entry.mtime.nanoseconds != 0) pax += PaxRecord("mtime", PaxTime(entry.mtime));

  for (const auto& [name, value] : entry.xattrs) {
    std::string key = "SCHILY.xattr." + name;
    STRATA_RETURN_IF_ERROR(ValidatePaxKey(key));
    pax += PaxRecord(key, value);
  }
  for (const auto& [key, value] : entry.pax_records) {
    STRATA_RETURN_IF_ERROR(ValidatePaxKey(key));
    pax += PaxRecord(key, value);
  }

  PutOctal(header, kMode, entry.mode & 07777);
  header[kTypeflag.offset] = static_cast<char>(entry.type);
  PutString(header, kMagic, std::string_view("ustar\0", 6));
  PutString(header, kVersion, "00");
  PutOctal(header, kDevmajor, is_device ? entry.devmajor : 0);
  PutOctal(header, kDevminor, is_device ? entry.devminor : 0);
  SetChecksum(header);

  if (!pax.empty()) {
    // The extended header is an entry of its own, named after the entry it describes.
    std::string_view base = entry.name;
    while (base.size() > 1 && base.back() == '/') base.remove_suffix(1);
    if (size_t slash = base.rfind('/'); slash != std::string_view::npos) base = base.substr(slash + 1);
    Block pax_header{};
    PutString(pax_header, kName, AsciiFallback("PaxHeaders/" + std::string(base), kName.width));
    PutOctal(pax_header, kMode, 0644);
    PutOctal(pax_header, kUid, 0);
    PutOctal(pax_header, kGid, 0);
    PutOctal(pax_header, kSize, pax.size());
    PutOctal(pax_header, kMtime, mtime_fits ? static_cast<uint64_t>(entry.mtime.seconds) : 0);
    pax_header[kTypeflag.offset] = 'x';
    PutString(pax_header, kMagic, std::string_view("ustar\0", 6));
    PutString(pax_header, kVersion, "00");
    PutOctal(pax_header, kDevmajor, 0);
    PutOctal(pax_header, kDevminor, 0);
    SetChecksum(pax_header);
    STRATA_RETURN_IF_ERROR(Emit(std::string_view(pax_header.data(), kBlockSize)));
    pax.resize((pax.size() + kBlockSize - 1) / kBlockSize * kBlockSize, '\0');
    STRATA_RETURN_IF_ERROR(Emit(pax));
  }

  STRATA_RETURN_IF_ERROR(Emit(std::string_view(header.data(), kBlockSize)));
  entry_size_ = entry.size;
  entry_remaining_ = entry.size;
  return {};
}

Status TarWriter::WriteData(std::string_view data) {
  STRATA_RETURN_IF_ERROR(CheckUsable());
  if (data.size() > entry_remaining_) {
    return Fail(ErrorCode::kInvalidArgument, "tar: {} data bytes given but the entry has only {} left",
                data.size(), entry_remaining_);
  }
  entry_remaining_ -= data.size();
  return Emit(data);
}

Status TarWriter::WriteEntry(TarEntry entry, std::string_view content) {
  entry.size = content.size();
  STRATA_RETURN_IF_ERROR(WriteHeader(entry));
  return WriteData(content);
}

Status TarWriter::Finish() {
  STRATA_RETURN_IF_ERROR(CheckUsable());
  STRATA_RETURN_IF_ERROR(CloseCurrentEntry());
  static const std::array<char, 2 * kBlockSize> kEnd{};
  STRATA_RETURN_IF_ERROR(Emit(std::string_view(kEnd.data(), kEnd.size())));
  finished_ = true;
  return {};
}

}  // namespace strata::archive
