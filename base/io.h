// Pull-style byte streams: the one interface the layer pipeline is built from
// (network body -> decompressor -> tar reader -> apply), so each stage can be tested with
// a string or a file and composed without knowing its neighbours.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

#include "base/background_digester.h"
#include "base/digest.h"
#include "base/error.h"

namespace strata {

// A source of bytes read front to back. Not thread-safe.
class ByteReader {
 public:
  virtual ~ByteReader() = default;
  // Reads up to buffer.size() bytes; returns how many (0 only at the end of the stream,
  // and only when buffer is non-empty). After an error the reader is unusable.
  virtual Result<size_t> Read(std::span<char> buffer) = 0;
};

// Reads a string held elsewhere. REQUIRES: the viewed bytes outlive the reader.
class StringViewReader : public ByteReader {
 public:
  explicit StringViewReader(std::string_view data) : data_(data) {}
  Result<size_t> Read(std::span<char> buffer) override;
  size_t remaining() const { return data_.size(); }

 private:
  std::string_view data_;
};

// Reads a file descriptor (not owned) with read(2), retrying EINTR.
class FdReader : public ByteReader {
 public:
  explicit FdReader(int fd) : fd_(fd) {}
  Result<size_t> Read(std::span<char> buffer) override;

 private:
  int fd_;
};

// Passes another reader's bytes through, hashing them on the way (a layer's diffID is the
// digest of the tar its decompressor yields). The hash runs on a thread of its own
// (BackgroundDigester), so the reader's caller keeps its core. REQUIRES: `inner` outlives
// this reader.
class DigestingReader : public ByteReader {
 public:
  // Small buffers: the hash outruns any decompressor, so a short queue keeps up, and a pull
  // runs one of these per layer at once.
  explicit DigestingReader(ByteReader& inner, DigestAlgorithm algorithm = DigestAlgorithm::kSha256)
      : inner_(inner), digester_(algorithm, /*buffer_size=*/256 << 10, /*max_buffered=*/1 << 20) {}
  Result<size_t> Read(std::span<char> buffer) override;
  uint64_t bytes() const { return digester_.bytes(); }
  // The digest of every byte read so far. REQUIRES: called once, after the last Read.
  Digest Finish() { return digester_.Finish(); }

 private:
  ByteReader& inner_;
  BackgroundDigester digester_;
};

// Reads until `buffer` is full or the stream ends; returns the count (< size only at the end).
Result<size_t> ReadFull(ByteReader& reader, std::span<char> buffer);

// The rest of the stream as a string; FailedPrecondition when it exceeds `limit` bytes.
Result<std::string> ReadAll(ByteReader& reader, size_t limit = static_cast<size_t>(1) << 30);

}  // namespace strata
