// Output helpers shared by the subcommands: aligned tables, sizes, ages.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "store/types.h"

namespace strata::cli {

// "0 B", "512 B", "1.5 KiB", "3.2 GiB".
std::string HumanSize(int64_t bytes);
// "4096", "512M", "20G", "1T" (powers of 1024; "GiB"/"GB"/"g" spellings too) as bytes;
// InvalidArgument naming `flag` and the text otherwise.
Result<uint64_t> ParseByteSize(std::string_view flag, std::string_view text);
// "12 seconds", "3 minutes", "2 days" since `t`.
std::string Age(store::Timestamp t);
// "k=v,k2=v2" ("-" when empty), as ctr prints labels.
std::string FormatLabels(const store::Labels& labels);

// Prints rows with columns padded to the widest cell; the first row is the header.
void PrintTable(const std::vector<std::vector<std::string>>& rows);

// The text of a --json document. File names (from layers) and keys, refs and labels (from
// clients) need not be UTF-8: invalid bytes print as U+FFFD rather than aborting the command.
template <typename Json>
std::string JsonText(const Json& value, int indent = -1) {
  return value.dump(indent, ' ', false, Json::error_handler_t::replace);
}

}  // namespace strata::cli
