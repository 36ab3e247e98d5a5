#include "archive/tar_reader_records.h"

#include <charconv>
#include <cstdint>

namespace strata::archive::tar_internal {

std::string Quote(std::string_view text) {
  std::string out = "'";
  for (char c : text.substr(0, 256)) {
    auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte >= 0x7f || c == '\'' || c == '\\') {
      out += fmt::format("\\x{:02x}", byte);
    } else {
      out += c;
    }
  }
  if (text.size() > 256) out += "...";
  return out + "'";
}

// Octal (space/NUL padded; an empty field is 0) or base-256 (first byte 0x80 positive,
// 0xff negative); nullopt for anything else or on overflow.
std::optional<int64_t> ParseNumber(std::string_view field) {
  if (!field.empty() && (static_cast<unsigned char>(field[0]) & 0x80)) {
    bool negative = static_cast<unsigned char>(field[0]) == 0xff;
    if (!negative && static_cast<unsigned char>(field[0]) != 0x80) return std::nullopt;
    uint64_t value = 0;
    for (size_t i = 1; i < field.size(); ++i) {
      auto byte = static_cast<unsigned char>(negative ? ~field[i] : field[i]);
      if (value >> 55) return std::nullopt;
      value = (value << 8) | byte;
    }
    if (value > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
    // Two's complement: -(~x) - 1.
    return negative ? -static_cast<int64_t>(value) - 1 : static_cast<int64_t>(value);
  }
  size_t i = 0;
  while (i < field.size() && field[i] == ' ') ++i;
  uint64_t value = 0;
  for (; i < field.size() && field[i] >= '0' && field[i] <= '7'; ++i) {
    if (value >> 60) return std::nullopt;
    value = value * 8 + static_cast<uint64_t>(field[i] - '0');
  }
  for (; i < field.size(); ++i) {
    if (field[i] != ' ' && field[i] != '\0') return std::nullopt;
  }
  return static_cast<int64_t>(value);
}

std::optional<uint64_t> ParseDecimal(std::string_view text) {
  if (text.empty() || text.size() > 20) return std::nullopt;
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    uint64_t digit = static_cast<uint64_t>(c - '0');
    if (value > (UINT64_MAX - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  return value;
}

// "[-]<seconds>[.<fraction>]" as PAX writes times; digits past nanoseconds are dropped.
static std::optional<TarTime> ParsePaxTime(std::string_view text) {
  bool negative = !text.empty() && text[0] == '-';
  if (negative) text.remove_prefix(1);
  std::string_view fraction;
  if (size_t dot = text.find('.'); dot != std::string_view::npos) {
    fraction = text.substr(dot + 1);
    text = text.substr(0, dot);
    if (fraction.empty()) return std::nullopt;
  }
  std::optional<uint64_t> seconds = ParseDecimal(text);
  if (!seconds || *seconds > static_cast<uint64_t>(INT64_MAX) - 1) return std::nullopt;
  uint32_t nanos = 0;
  for (size_t i = 0; i < fraction.size(); ++i) {
    if (fraction[i] < '0' || fraction[i] > '9') return std::nullopt;
    if (i < 9) nanos = nanos * 10 + static_cast<uint32_t>(fraction[i] - '0');
  }
  for (size_t i = fraction.size(); i < 9; ++i) nanos *= 10;
  TarTime time{static_cast<int64_t>(*seconds), nanos};
  if (negative) {
    // -1.5 s is -2 s + 0.5 s.
    time.seconds = -time.seconds;
    if (nanos != 0) {
      time.seconds -= 1;
      time.nanoseconds = 1'000'000'000 - nanos;
    }
  }
  return time;
}

// The records of a PAX header in order: "<length> <key>=<value>\n", values binary-safe.
Result<std::vector<std::pair<std::string, std::string>>> ParsePaxRecords(std::string_view data) {
  std::vector<std::pair<std::string, std::string>> records;
  size_t pos = 0;
  while (pos < data.size()) {
    // Writers pad the header's data with NULs; a NUL where a record should start ends it.
    if (data[pos] == '\0') break;
    size_t space = data.find(' ', pos);
    if (space == std::string_view::npos || space - pos > 20) {
      return Fail(ErrorCode::kInvalidArgument, "PAX record at offset {} has no length", pos);
    }
    std::optional<uint64_t> length = ParseDecimal(data.substr(pos, space - pos));
    if (!length || *length <= space - pos + 1 || *length > data.size() - pos) {
      return Fail(ErrorCode::kInvalidArgument, "PAX record at offset {} has a bad length {}", pos,
                  Quote(data.substr(pos, space - pos)));
    }
    std::string_view record = data.substr(space + 1, pos + *length - space - 1);
    if (record.back() != '\n') {
      return Fail(ErrorCode::kInvalidArgument, "PAX record at offset {} does not end in a newline", pos);
    }
    record.remove_suffix(1);
    size_t equals = record.find('=');
    if (equals == std::string_view::npos || equals == 0) {
      return Fail(ErrorCode::kInvalidArgument, "PAX record {} at offset {} has no key", Quote(record), pos);
    }
    records.emplace_back(std::string(record.substr(0, equals)), std::string(record.substr(equals + 1)));
    pos += *length;
  }
  return records;
}

static std::optional<std::string> DecodeBase64(std::string_view text) {
  std::string out;
  uint32_t bits = 0;
  int count = 0;
  for (char c : text) {
    int value;
    if (c >= 'A' && c <= 'Z') value = c - 'A';
    else if (c >= 'a' && c <= 'z') value = c - 'a' + 26;
    else if (c >= '0' && c <= '9') value = c - '0' + 52;
    else if (c == '+') value = 62;
    else if (c == '/') value = 63;
    else if (c == '=') break;
    else return std::nullopt;
    bits = (bits << 6) | static_cast<uint32_t>(value);
    count += 6;
    if (count >= 8) {
      count -= 8;
      out += static_cast<char>((bits >> count) & 0xff);
    }
  }
  return out;
}

// libarchive %-encodes xattr names in LIBARCHIVE.xattr.<name>.
static std::string DecodePercent(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size()) {
      unsigned value = 0;
      auto [end, ec] = std::from_chars(text.data() + i + 1, text.data() + i + 3, value, 16);
      if (ec == std::errc() && end == text.data() + i + 3) {
        out += static_cast<char>(value);
        i += 2;
        continue;
      }
    }
    out += text[i];
  }
  return out;
}

// Parses "off,len,off,len,..." (sparse 0.1).
static Status ParseSparseMapList(std::string_view text, PaxSparse& sparse) {
  std::vector<uint64_t> numbers;
  while (!text.empty()) {
    size_t comma = text.find(',');
    std::optional<uint64_t> value = ParseDecimal(text.substr(0, comma));
    if (!value) return Fail(ErrorCode::kInvalidArgument, "bad GNU.sparse.map");
    numbers.push_back(*value);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  if (numbers.size() % 2 != 0) return Fail(ErrorCode::kInvalidArgument, "GNU.sparse.map has an odd count");
  for (size_t i = 0; i < numbers.size(); i += 2) sparse.map.emplace_back(numbers[i], numbers[i + 1]);
  return {};
}

// Sets the fields PAX records describe; other records go to pax_records. `ordered` is the
// entry's own records in archive order (sparse 0.0 repeats offset/numbytes keys).
Status ApplyPaxRecords(const std::map<std::string, std::string>& records,
                       const std::vector<std::pair<std::string, std::string>>& ordered, TarEntry& entry,
                       uint64_t& size, PaxSparse& sparse) {
  auto decimal = [](const std::string& key, const std::string& value) -> Result<uint64_t> {
    std::optional<uint64_t> number = ParseDecimal(value);
    if (!number || *number > static_cast<uint64_t>(INT64_MAX)) {
      return Fail(ErrorCode::kInvalidArgument, "bad PAX {} value {}", key, Quote(value));
    }
    return *number;
  };
  std::optional<uint64_t> major;
  std::optional<uint64_t> minor;
  for (const auto& [key, value] : records) {
    if (key == "path") {
      entry.name = value;
    } else if (key == "linkpath") {
      entry.linkname = value;
    } else if (key == "size") {
      STRATA_ASSIGN_OR_RETURN(size, decimal(key, value));
    } else if (key == "uid") {
      STRATA_ASSIGN_OR_RETURN(entry.uid, decimal(key, value));
    } else if (key == "gid") {
      STRATA_ASSIGN_OR_RETURN(entry.gid, decimal(key, value));
    } else if (key == "uname") {
      entry.uname = value;
    } else if (key == "gname") {
      entry.gname = value;
    } else if (key == "mtime") {
      std::optional<TarTime> time = ParsePaxTime(value);
      if (!time) return Fail(ErrorCode::kInvalidArgument, "bad PAX mtime value {}", Quote(value));
      entry.mtime = *time;
    } else if (key.starts_with("SCHILY.xattr.")) {
      entry.xattrs[key.substr(13)] = value;
    } else if (key.starts_with("LIBARCHIVE.xattr.")) {
      std::optional<std::string> decoded = DecodeBase64(value);
      if (!decoded) return Fail(ErrorCode::kInvalidArgument, "bad base64 in PAX record {}", Quote(key));
      entry.xattrs[DecodePercent(std::string_view(key).substr(17))] = std::move(*decoded);
    } else if (key.starts_with("GNU.sparse.")) {
      std::string_view field = std::string_view(key).substr(11);
      if (field == "name") {
        entry.name = value;
      } else if (field == "size" || field == "realsize") {
        STRATA_ASSIGN_OR_RETURN(sparse.real_size, decimal(key, value));
        sparse.present = true;
      } else if (field == "major") {
        STRATA_ASSIGN_OR_RETURN(major, decimal(key, value));
      } else if (field == "minor") {
        STRATA_ASSIGN_OR_RETURN(minor, decimal(key, value));
      } else if (field == "map") {
        STRATA_RETURN_IF_ERROR(ParseSparseMapList(value, sparse));
        sparse.present = true;
      }
      // numblocks, offset, numbytes: counted/ordered below.
    } else {
      entry.pax_records[key] = value;
    }
  }
  if (major || minor) {
    if (major != 1u || minor != 0u) {
      return Fail(ErrorCode::kInvalidArgument, "unsupported GNU sparse format {}.{}", major.value_or(0),
                  minor.value_or(0));
    }
    sparse.present = true;
    sparse.map_in_data = true;
  }
  // Sparse 0.0: GNU.sparse.offset and GNU.sparse.numbytes alternate.
  uint64_t pending_offset = 0;
  bool has_pending_offset = false;
  for (const auto& [key, value] : ordered) {
    if (key == "GNU.sparse.offset") {
      if (has_pending_offset) return Fail(ErrorCode::kInvalidArgument, "GNU.sparse.offset without numbytes");
      STRATA_ASSIGN_OR_RETURN(pending_offset, decimal(key, value));
      has_pending_offset = true;
    } else if (key == "GNU.sparse.numbytes") {
      if (!has_pending_offset) return Fail(ErrorCode::kInvalidArgument, "GNU.sparse.numbytes without offset");
      STRATA_ASSIGN_OR_RETURN(uint64_t length, decimal(key, value));
      sparse.map.emplace_back(pending_offset, length);
      has_pending_offset = false;
      sparse.present = true;
    }
  }
  if (has_pending_offset) return Fail(ErrorCode::kInvalidArgument, "GNU.sparse.offset without numbytes");
  return {};
}

}  // namespace strata::archive::tar_internal
