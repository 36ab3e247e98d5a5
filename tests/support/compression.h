// Whole-buffer compression for test layers: gzip (zlib) and zstd.
#pragma once

#include <string>
#include <string_view>

#include "base/error.h"

namespace strata::test_support {

enum class Compression { kNone, kGzip, kZstd };

// "none", "gzip", "zstd".
std::string_view CompressionName(Compression compression);

// Compresses `data` as one gzip member (zlib, default level, no name, mtime 0: the
// output is deterministic) or one zstd frame (level 3, with content size).
Result<std::string> Compress(std::string_view data, Compression compression);

// Reverses Compress for any gzip (multi-member too) or zstd (multi-frame too) input.
Result<std::string> Decompress(std::string_view data, Compression compression);

}  // namespace strata::test_support
