// Streaming compression of layer diffs for push: bytes in, a gzip member or zstd frame out
// to a ByteSink, with nothing buffered beyond one output block.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

#include "archive/tar_writer.h"  // ByteSink
#include "base/error.h"
#include "oci/media_types.h"

namespace strata::archive {

// Not thread-safe. After any error every later call fails.
class Compressor {
 public:
  // `level` -1 picks the default. gzip uses ISA-L's igzip deflate (levels 0..3, default 1:
  // fast, ratio close to gzip -6 on typical layers) and writes one standard gzip member
  // (fixed header with mtime 0, so output is deterministic; CRC32 + ISIZE trailer).
  // zstd uses libzstd (levels 1..22, default 3) and writes one frame with a content
  // checksum. kNone copies the input to the sink. InvalidArgument for a level out of range.
  static Result<std::unique_ptr<Compressor>> Create(oci::Compression compression, ByteSink sink,
                                                    int level = -1);

  virtual ~Compressor() = default;

  // Compresses `data`; output reaches the sink whenever an output block fills.
  // REQUIRES: Finish has not been called.
  virtual Status Write(std::string_view data) = 0;

  // Flushes the rest and writes the trailer. No calls are allowed afterwards.
  virtual Status Finish() = 0;

  // Compressed bytes given to the sink so far (the blob size once Finish returned).
  uint64_t bytes_written() const { return bytes_written_; }
  // Uncompressed bytes accepted by Write so far.
  uint64_t bytes_read() const { return bytes_read_; }

 protected:
  Compressor() = default;
  uint64_t bytes_written_ = 0;
  uint64_t bytes_read_ = 0;
};

}  // namespace strata::archive
