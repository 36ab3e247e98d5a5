// Internals of TarReader: header numbers and PAX records. Pure functions over bytes, kept
// apart from the streaming code so each stays small.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "archive/tar_writer.h"
#include "base/error.h"

namespace strata::archive::tar_internal {

// Printable, quoted form of raw archive text for error messages (non-printables as \xNN).
std::string Quote(std::string_view text);

// A numeric header field: octal (space/NUL padded; an empty field is 0) or base-256 (first
// byte 0x80 positive, 0xff negative). nullopt for anything else or on overflow.
std::optional<int64_t> ParseNumber(std::string_view field);

// Plain decimal digits that fit in uint64_t; nullopt otherwise.
std::optional<uint64_t> ParseDecimal(std::string_view text);

// The records of a PAX header in archive order; values are binary-safe. Trailing NUL
// padding ends the list. InvalidArgument for a malformed record.
Result<std::vector<std::pair<std::string, std::string>>> ParsePaxRecords(std::string_view data);

// Sparse layout described by GNU.sparse.* records.
struct PaxSparse {
  bool present = false;
  bool map_in_data = false;  // format 1.0: the map starts the entry's data
  std::optional<uint64_t> real_size;
  std::vector<std::pair<uint64_t, uint64_t>> map;  // (offset, length), formats 0.0 and 0.1
};

// Sets the entry fields `records` describe (see TarReader's contract) and `size` from a
// "size" record; GNU.sparse.* fill `sparse`; other records go to entry.pax_records.
// `ordered` is the entry's own records in archive order (sparse 0.0 repeats keys).
Status ApplyPaxRecords(const std::map<std::string, std::string>& records,
                       const std::vector<std::pair<std::string, std::string>>& ordered, TarEntry& entry,
                       uint64_t& size, PaxSparse& sparse);

}  // namespace strata::archive::tar_internal
