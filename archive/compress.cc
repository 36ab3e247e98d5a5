#include "archive/compress.h"

#include <isa-l/igzip_lib.h>
#include <zstd.h>

#include <algorithm>
#include <vector>

namespace strata::archive {
namespace {

// Compressed output is handed to the sink in blocks this large.
constexpr size_t kOutputBlockSize = 256 * 1024;
// ISA-L counts in uint32_t; larger writes are fed in several pieces.
constexpr size_t kMaxChunk = static_cast<size_t>(1) << 30;

// Shared by the implementations: the sink, the sticky error state, the output block.
class CompressorBase : public Compressor {
 protected:
  explicit CompressorBase(ByteSink sink) : sink_(std::move(sink)), out_(kOutputBlockSize) {}

  Status CheckUsable() const {
    if (failed_) return Fail(ErrorCode::kFailedPrecondition, "compressor failed earlier");
    if (finished_) return Fail(ErrorCode::kFailedPrecondition, "compressor already finished");
    return {};
  }

  Status Emit(std::string_view bytes) {
    if (bytes.empty()) return {};
    auto status = sink_(bytes);
    if (!status) {
      failed_ = true;
      return status;
    }
    bytes_written_ += bytes.size();
    return {};
  }

  ByteSink sink_;
  std::vector<char> out_;
  bool failed_ = false;
  bool finished_ = false;
};

class GzipCompressor : public CompressorBase {
 public:
  GzipCompressor(ByteSink sink, int level) : CompressorBase(std::move(sink)) {
    stream_ = std::make_unique<isal_zstream>();
    isal_deflate_init(stream_.get());
    stream_->gzip_flag = IGZIP_GZIP;
    stream_->level = static_cast<uint32_t>(level);
    switch (level) {
      case 1: level_buffer_.resize(ISAL_DEF_LVL1_DEFAULT); break;
      case 2: level_buffer_.resize(ISAL_DEF_LVL2_DEFAULT); break;
      case 3: level_buffer_.resize(ISAL_DEF_LVL3_DEFAULT); break;
      default: break;  // level 0 needs no level buffer
    }
    stream_->level_buf = level_buffer_.empty() ? nullptr : level_buffer_.data();
    stream_->level_buf_size = static_cast<uint32_t>(level_buffer_.size());
  }

  Status Write(std::string_view data) override {
    STRATA_RETURN_IF_ERROR(CheckUsable());
    while (!data.empty()) {
      const size_t piece = std::min(data.size(), kMaxChunk);
      // isal_deflate only reads next_in; the API just lacks the const.
      stream_->next_in = reinterpret_cast<uint8_t*>(const_cast<char*>(data.data()));
      stream_->avail_in = static_cast<uint32_t>(piece);
      stream_->end_of_stream = 0;
      // Run until the input is taken and the last call did not stop for lack of output room.
      do {
        STRATA_RETURN_IF_ERROR(DeflateOnce());
      } while (stream_->avail_in > 0 || stream_->avail_out == 0);
      bytes_read_ += piece;
      data.remove_prefix(piece);
    }
    return {};
  }

  Status Finish() override {
    STRATA_RETURN_IF_ERROR(CheckUsable());
    stream_->next_in = nullptr;
    stream_->avail_in = 0;
    stream_->end_of_stream = 1;
    while (stream_->internal_state.state != ZSTATE_END) {
      STRATA_RETURN_IF_ERROR(DeflateOnce());
    }
    finished_ = true;
    return {};
  }

 private:
  // One isal_deflate call into the output block, which is then given to the sink.
  Status DeflateOnce() {
    stream_->next_out = reinterpret_cast<uint8_t*>(out_.data());
    stream_->avail_out = static_cast<uint32_t>(out_.size());
    const int rc = isal_deflate(stream_.get());
    if (rc != COMP_OK) {
      failed_ = true;
      return Fail(ErrorCode::kInternal, "gzip: isal_deflate failed with code {}", rc);
    }
    return Emit(std::string_view(out_.data(), out_.size() - stream_->avail_out));
  }

  std::unique_ptr<isal_zstream> stream_;  // large (~300 KiB): keep it off the stack
  std::vector<uint8_t> level_buffer_;
};

class ZstdCompressor : public CompressorBase {
 public:
  ZstdCompressor(ByteSink sink, ZSTD_CCtx* context)
      : CompressorBase(std::move(sink)), context_(context) {}
  ~ZstdCompressor() override { ZSTD_freeCCtx(context_); }

  Status Write(std::string_view data) override {
    STRATA_RETURN_IF_ERROR(CheckUsable());
    ZSTD_inBuffer in{data.data(), data.size(), 0};
    while (in.pos < in.size) {
      STRATA_RETURN_IF_ERROR(CompressOnce(in, ZSTD_e_continue));
    }
    bytes_read_ += data.size();
    return {};
  }

  Status Finish() override {
    STRATA_RETURN_IF_ERROR(CheckUsable());
    ZSTD_inBuffer in{nullptr, 0, 0};
    for (;;) {
      STRATA_ASSIGN_OR_RETURN(size_t remaining, CompressOnce(in, ZSTD_e_end));
      if (remaining == 0) break;
    }
    finished_ = true;
    return {};
  }

 private:
  // One ZSTD_compressStream2 call; returns zstd's hint (0 = frame complete for e_end).
  Result<size_t> CompressOnce(ZSTD_inBuffer& in, ZSTD_EndDirective directive) {
    ZSTD_outBuffer out{out_.data(), out_.size(), 0};
    const size_t rc = ZSTD_compressStream2(context_, &out, &in, directive);
    if (ZSTD_isError(rc)) {
      failed_ = true;
      return Fail(ErrorCode::kInternal, "zstd: compression failed: {}", ZSTD_getErrorName(rc));
    }
    STRATA_RETURN_IF_ERROR(Emit(std::string_view(out_.data(), out.pos)));
    return rc;
  }

  ZSTD_CCtx* context_;
};

class CopyCompressor : public CompressorBase {
 public:
  explicit CopyCompressor(ByteSink sink) : CompressorBase(std::move(sink)) { out_.clear(); }

  Status Write(std::string_view data) override {
    STRATA_RETURN_IF_ERROR(CheckUsable());
    STRATA_RETURN_IF_ERROR(Emit(data));
    bytes_read_ += data.size();
    return {};
  }

  Status Finish() override {
    STRATA_RETURN_IF_ERROR(CheckUsable());
    finished_ = true;
    return {};
  }
};

}  // namespace

Result<std::unique_ptr<Compressor>> Compressor::Create(oci::Compression compression,
                                                       ByteSink sink, int level) {
  switch (compression) {
    case oci::Compression::kNone:
      return std::make_unique<CopyCompressor>(std::move(sink));
    case oci::Compression::kGzip: {
      if (level == -1) level = 1;
      if (level < 0 || level > ISAL_DEF_MAX_LEVEL) {
        return Fail(ErrorCode::kInvalidArgument, "gzip level {} outside igzip's 0..{}", level,
                    ISAL_DEF_MAX_LEVEL);
      }
      return std::make_unique<GzipCompressor>(std::move(sink), level);
    }
    case oci::Compression::kZstd: {
      if (level == -1) level = 3;
      if (level < 1 || level > ZSTD_maxCLevel()) {
        return Fail(ErrorCode::kInvalidArgument, "zstd level {} outside 1..{}", level,
                    ZSTD_maxCLevel());
      }
      ZSTD_CCtx* context = ZSTD_createCCtx();
      if (context == nullptr) return Fail(ErrorCode::kInternal, "zstd: cannot create context");
      auto compressor = std::make_unique<ZstdCompressor>(std::move(sink), context);
      const size_t rc1 = ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, level);
      const size_t rc2 = ZSTD_CCtx_setParameter(context, ZSTD_c_checksumFlag, 1);
      if (ZSTD_isError(rc1) || ZSTD_isError(rc2)) {
        return Fail(ErrorCode::kInternal, "zstd: cannot set level {}", level);
      }
      return compressor;
    }
  }
  return Fail(ErrorCode::kInvalidArgument, "unknown compression {}",
              static_cast<int>(compression));
}

}  // namespace strata::archive
