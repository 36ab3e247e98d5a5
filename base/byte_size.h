// Sizes people write: "4096", "512M", "20G" — whole numbers with binary units (K, M, G, T =
// powers of 1024), an optional "i" and "B", in either case ("20GiB", "64m", "10gb").
#pragma once

#include <cstdint>
#include <string_view>

#include "base/error.h"

namespace strata {

// The byte count `text` names. InvalidArgument "<text> is not a size (e.g. 4096, 512M, 20G)"
// for anything else, a value that overflows 64 bits included; callers add what it was for.
Result<uint64_t> ParseByteSize(std::string_view text);

}  // namespace strata
