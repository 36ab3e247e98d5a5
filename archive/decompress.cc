#include "archive/decompress.h"

#include <isa-l/igzip_lib.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

namespace strata::archive {
namespace {

// Compressed input is read in blocks this large: few calls into the network/file reader and
// long runs for the SIMD decoders.
constexpr size_t kInputBlockSize = 256 * 1024;
// ISA-L counts in uint32_t; larger caller buffers are filled in several calls.
constexpr size_t kMaxChunk = static_cast<size_t>(1) << 30;

// Owns the compressed input block and the guards shared by the decoders.
class DecoderBase : public ByteReader {
 protected:
  DecoderBase(ByteReader& input, DecompressOptions options,
              size_t input_block_size = kInputBlockSize)
      : input_(input), options_(options), in_buffer_(input_block_size) {}

  // Reads the next compressed block into in_buffer_; returns its size (0 at the end).
  Result<size_t> RefillInput() {
    STRATA_ASSIGN_OR_RETURN(size_t n, input_.Read(std::span<char>(in_buffer_)));
    if (n == 0) input_ended_ = true;
    return n;
  }

  // Accounts for `produced` more output bytes against the guards in options_.
  Status CheckGuards(size_t produced) {
    total_out_ += produced;
    if (options_.max_output_bytes != 0 && total_out_ > options_.max_output_bytes) {
      return Fail(ErrorCode::kFailedPrecondition,
                  "decompressed output exceeds the {} byte limit", options_.max_output_bytes);
    }
    if (options_.max_ratio > 0) {
      const double allowed = options_.max_ratio * static_cast<double>(consumed_) +
                             static_cast<double>(options_.ratio_slack_bytes);
      if (static_cast<double>(total_out_) > allowed) {
        return Fail(ErrorCode::kFailedPrecondition,
                    "decompression ratio above {} ({} bytes from {} compressed) (bomb?)",
                    options_.max_ratio, total_out_, consumed_);
      }
    }
    return {};
  }

  ByteReader& input_;
  DecompressOptions options_;
  std::vector<char> in_buffer_;
  bool input_ended_ = false;
  uint64_t consumed_ = 0;  // compressed bytes fed to the decoder
  uint64_t total_out_ = 0;
};

const char* IsalErrorText(int code) {
  switch (code) {
    case ISAL_INVALID_BLOCK: return "invalid deflate block";
    case ISAL_INVALID_SYMBOL: return "invalid deflate symbol";
    case ISAL_INVALID_LOOKBACK: return "invalid back-reference distance";
    case ISAL_INVALID_WRAPPER: return "invalid gzip header";
    case ISAL_UNSUPPORTED_METHOD: return "unsupported compression method";
    case ISAL_INCORRECT_CHECKSUM: return "CRC32 or length mismatch in member trailer";
    case ISAL_NEED_DICT: return "preset dictionary required";
    default: return "decoder error";
  }
}

// gzip via ISA-L. isal_inflate_init cannot fail and ISA-L dispatches at run time to a plain
// C path on CPUs without SIMD, so there is no failure case that would need a zlib fallback.
class GzipReader : public DecoderBase {
 public:
  GzipReader(ByteReader& input, DecompressOptions options) : DecoderBase(input, options) {
    state_ = std::make_unique<inflate_state>();
  }

  Result<size_t> Read(std::span<char> buffer) override {
    if (buffer.empty() || done_) return 0;
    const size_t want = std::min(buffer.size(), kMaxChunk);
    for (;;) {
      if (between_members_) {
        STRATA_ASSIGN_OR_RETURN(bool more, StartNextMember());
        if (!more) {
          done_ = true;
          return 0;
        }
      }
      if (state_->avail_in == 0 && !input_ended_) {
        STRATA_ASSIGN_OR_RETURN(size_t n, RefillInput());
        state_->next_in = reinterpret_cast<uint8_t*>(in_buffer_.data());
        state_->avail_in = static_cast<uint32_t>(n);
      }
      const uint32_t in_before = state_->avail_in;
      state_->next_out = reinterpret_cast<uint8_t*>(buffer.data());
      state_->avail_out = static_cast<uint32_t>(want);
      const int rc = isal_inflate(state_.get());
      consumed_ += in_before - state_->avail_in;
      if (rc < 0 || rc == ISAL_NEED_DICT) {
        return Fail(ErrorCode::kInvalidArgument, "gzip: {} at compressed byte {}",
                    IsalErrorText(rc), consumed_);
      }
      const size_t produced = want - state_->avail_out;
      if (state_->block_state == ISAL_BLOCK_FINISH) {
        between_members_ = true;
        ++members_;
      }
      if (produced > 0) {
        STRATA_RETURN_IF_ERROR(CheckGuards(produced));
        return produced;
      }
      if (!between_members_ && state_->avail_in == 0 && input_ended_) {
        return Fail(ErrorCode::kInvalidArgument,
                    "gzip: unexpected end of gzip stream at compressed byte {}", consumed_);
      }
    }
  }

 private:
  // Positions the decoder at the next member. Returns false at a clean end: input exhausted
  // after at least one member, or only zero padding left.
  Result<bool> StartNextMember() {
    if (state_->avail_in == 0 && !input_ended_) {
      STRATA_ASSIGN_OR_RETURN(size_t n, RefillInput());
      state_->next_in = reinterpret_cast<uint8_t*>(in_buffer_.data());
      state_->avail_in = static_cast<uint32_t>(n);
    }
    if (state_->avail_in == 0) {
      if (members_ == 0) {
        return Fail(ErrorCode::kInvalidArgument,
                    "gzip: unexpected end of gzip stream at compressed byte 0");
      }
      return false;
    }
    if (members_ > 0 && state_->next_in[0] == 0) {
      STRATA_RETURN_IF_ERROR(SkipZeroPadding());
      return false;
    }
    // Re-initialising may clear the input pointers; carry the unread bytes over.
    uint8_t* next_in = state_->next_in;
    const uint32_t avail_in = state_->avail_in;
    isal_inflate_init(state_.get());
    state_->crc_flag = ISAL_GZIP;
    state_->next_in = next_in;
    state_->avail_in = avail_in;
    between_members_ = false;
    return true;
  }

  // Consumes the rest of the input, which must be all zero bytes.
  Status SkipZeroPadding() {
    for (;;) {
      const char* begin = reinterpret_cast<const char*>(state_->next_in);
      const char* end = begin + state_->avail_in;
      const char* nonzero = std::find_if(begin, end, [](char c) { return c != 0; });
      consumed_ += nonzero - begin;
      if (nonzero != end) {
        return Fail(ErrorCode::kInvalidArgument,
                    "gzip: trailing garbage after the last member at compressed byte {}",
                    consumed_);
      }
      state_->avail_in = 0;
      if (input_ended_) return {};
      STRATA_ASSIGN_OR_RETURN(size_t n, RefillInput());
      state_->next_in = reinterpret_cast<uint8_t*>(in_buffer_.data());
      state_->avail_in = static_cast<uint32_t>(n);
    }
  }

  std::unique_ptr<inflate_state> state_;  // large (~40 KiB): keep it off the stack
  bool between_members_ = true;
  bool done_ = false;
  uint64_t members_ = 0;
};

class ZstdReader : public DecoderBase {
 public:
  ZstdReader(ByteReader& input, DecompressOptions options, ZSTD_DCtx* context)
      : DecoderBase(input, options), context_(context) {}
  ~ZstdReader() override { ZSTD_freeDCtx(context_); }

  Result<size_t> Read(std::span<char> buffer) override {
    if (buffer.empty() || done_) return 0;
    ZSTD_outBuffer out{buffer.data(), std::min(buffer.size(), kMaxChunk), 0};
    for (;;) {
      if (in_.pos == in_.size && !input_ended_) {
        STRATA_ASSIGN_OR_RETURN(size_t n, RefillInput());
        in_ = ZSTD_inBuffer{in_buffer_.data(), n, 0};
      }
      const size_t in_before = in_.pos;
      const size_t hint = ZSTD_decompressStream(context_, &out, &in_);
      consumed_ += in_.pos - in_before;
      if (ZSTD_isError(hint)) {
        return Fail(ErrorCode::kInvalidArgument, "zstd: {} at compressed byte {}",
                    ZSTD_getErrorName(hint), consumed_);
      }
      if (in_.pos > in_before) saw_input_ = true;
      // A call without progress (empty input after a frame) answers about the next frame.
      if (in_.pos > in_before || out.pos > 0) frame_complete_ = hint == 0;
      if (out.pos > 0) {
        STRATA_RETURN_IF_ERROR(CheckGuards(out.pos));
        return out.pos;
      }
      // No output although there was room: zstd needs more input to make progress.
      if (in_.pos == in_.size && input_ended_) {
        if (frame_complete_ && saw_input_) {
          done_ = true;
          return 0;
        }
        return Fail(ErrorCode::kInvalidArgument,
                    "zstd: unexpected end of zstd stream at compressed byte {}", consumed_);
      }
    }
  }

 private:
  ZSTD_DCtx* context_;
  ZSTD_inBuffer in_{nullptr, 0, 0};
  bool saw_input_ = false;
  bool frame_complete_ = false;
  bool done_ = false;
};

// kNone: the input itself, with the output cap still enforced.
class PassThroughReader : public DecoderBase {
 public:
  PassThroughReader(ByteReader& input, DecompressOptions options)
      : DecoderBase(input, DecompressOptions{.max_output_bytes = options.max_output_bytes},
                    /*input_block_size=*/0) {}  // reads go straight into the caller's buffer

  Result<size_t> Read(std::span<char> buffer) override {
    STRATA_ASSIGN_OR_RETURN(size_t n, input_.Read(buffer));
    STRATA_RETURN_IF_ERROR(CheckGuards(n));
    return n;
  }
};

// Replays bytes already taken from `input` (for sniffing), then continues with `input`.
class PrefixedReader : public ByteReader {
 public:
  PrefixedReader(std::string prefix, ByteReader& input)
      : prefix_(std::move(prefix)), input_(input) {}

  Result<size_t> Read(std::span<char> buffer) override {
    if (offset_ < prefix_.size() && !buffer.empty()) {
      const size_t n = std::min(buffer.size(), prefix_.size() - offset_);
      std::memcpy(buffer.data(), prefix_.data() + offset_, n);
      offset_ += n;
      return n;
    }
    return input_.Read(buffer);
  }

 private:
  std::string prefix_;
  size_t offset_ = 0;
  ByteReader& input_;
};

// Owns the PrefixedReader that the decoder reads from; destroys the decoder first.
class AutoReader : public ByteReader {
 public:
  AutoReader(std::unique_ptr<PrefixedReader> source, std::unique_ptr<ByteReader> decoder)
      : source_(std::move(source)), decoder_(std::move(decoder)) {}
  Result<size_t> Read(std::span<char> buffer) override { return decoder_->Read(buffer); }

 private:
  std::unique_ptr<PrefixedReader> source_;
  std::unique_ptr<ByteReader> decoder_;
};

}  // namespace

oci::Compression DetectCompression(std::string_view first_bytes) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(first_bytes[i]); };
  if (first_bytes.size() >= 2 && byte(0) == 0x1f && byte(1) == 0x8b) {
    return oci::Compression::kGzip;
  }
  if (first_bytes.size() >= 4) {
    if (byte(0) == 0x28 && byte(1) == 0xb5 && byte(2) == 0x2f && byte(3) == 0xfd) {
      return oci::Compression::kZstd;
    }
    if ((byte(0) & 0xf0) == 0x50 && byte(1) == 0x2a && byte(2) == 0x4d && byte(3) == 0x18) {
      return oci::Compression::kZstd;  // skippable frame 0x184D2A5?
    }
  }
  return oci::Compression::kNone;
}

Result<std::unique_ptr<ByteReader>> NewDecompressingReader(ByteReader& input,
                                                           oci::Compression compression,
                                                           DecompressOptions options) {
  switch (compression) {
    case oci::Compression::kNone:
      return std::make_unique<PassThroughReader>(input, options);
    case oci::Compression::kGzip:
      return std::make_unique<GzipReader>(input, options);
    case oci::Compression::kZstd: {
      ZSTD_DCtx* context = ZSTD_createDCtx();
      if (context == nullptr) return Fail(ErrorCode::kInternal, "zstd: cannot create context");
      return std::make_unique<ZstdReader>(input, options, context);
    }
  }
  return Fail(ErrorCode::kInvalidArgument, "unknown compression {}",
              static_cast<int>(compression));
}

Result<std::unique_ptr<ByteReader>> NewAutoDecompressingReader(ByteReader& input,
                                                               DecompressOptions options) {
  std::string magic(4, '\0');
  STRATA_ASSIGN_OR_RETURN(size_t n, ReadFull(input, std::span<char>(magic)));
  magic.resize(n);
  const oci::Compression compression = DetectCompression(magic);
  auto source = std::make_unique<PrefixedReader>(std::move(magic), input);
  STRATA_ASSIGN_OR_RETURN(auto decoder, NewDecompressingReader(*source, compression, options));
  return std::make_unique<AutoReader>(std::move(source), std::move(decoder));
}

}  // namespace strata::archive
