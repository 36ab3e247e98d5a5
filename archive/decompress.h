// Streaming decompression of layer blobs (gzip, zstd, or none) as a ByteReader, so the pull
// pipeline can read network body -> decompressor -> tar reader without staging to disk.
//
// gzip uses ISA-L's igzip inflate (several times faster than zlib; containerd prefers igzip
// for the same reason) and zstd uses libzstd's streaming API. Both decode straight into the
// caller's buffer: give Read() large buffers (>= 256 KiB) for throughput.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

#include "base/error.h"
#include "base/io.h"
#include "oci/media_types.h"

namespace strata::archive {

// Sniffs the magic bytes at the start of a blob: gzip "1f 8b", zstd "28 b5 2f fd" or a zstd
// skippable frame (magic 0x184D2A50..5F, little-endian); anything else (including fewer
// bytes than a magic) is kNone. Four bytes suffice.
oci::Compression DetectCompression(std::string_view first_bytes);

struct DecompressOptions {
  // Guard against decompression bombs: fail once the output exceeds
  // max_ratio * compressed bytes consumed + ratio_slack_bytes. 0 = no guard.
  double max_ratio = 0;
  uint64_t ratio_slack_bytes = static_cast<uint64_t>(64) << 20;
  // Fail once the output exceeds this many bytes. 0 = unlimited.
  uint64_t max_output_bytes = 0;
};

// A ByteReader yielding the decompressed bytes of `input`. REQUIRES: `input` outlives the
// returned reader, and nobody else reads `input` meanwhile (the reader reads ahead).
//
// gzip: every member is decoded and its CRC32 and ISIZE checked; members are concatenated
// as `gzip -dc` does; zero bytes after the last member are ignored (tape padding), other
// trailing bytes are an error. zstd: concatenated and skippable frames are handled.
// An empty input is an error for gzip and zstd (as for gzip -d and zstd -d).
//
// Read errors: InvalidArgument "gzip: <reason> at compressed byte N" (corrupt data, checksum
// mismatch, "unexpected end of gzip stream"), likewise "zstd: ..."; FailedPrecondition for
// the guards in `options`; errors of `input` are passed on unchanged.
Result<std::unique_ptr<ByteReader>> NewDecompressingReader(ByteReader& input,
                                                           oci::Compression compression,
                                                           DecompressOptions options = {});

// As NewDecompressingReader, with the compression detected from the first bytes of `input`
// (which are read here, so errors of `input` may surface from this call).
Result<std::unique_ptr<ByteReader>> NewAutoDecompressingReader(ByteReader& input,
                                                               DecompressOptions options = {});

}  // namespace strata::archive
