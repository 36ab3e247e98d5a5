#include "tests/support/compression.h"

#include <zlib.h>
#include <zstd.h>

#include <memory>

namespace strata::test_support {
namespace {

constexpr size_t kChunk = 64 * 1024;

Result<std::string> Gzip(std::string_view data) {
  z_stream stream{};
  // 15 window bits + 16: a gzip wrapper instead of zlib's.
  if (deflateInit2(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    return Fail(ErrorCode::kInternal, "deflateInit2 failed");
  }
  std::string out;
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  stream.avail_in = static_cast<uInt>(data.size());
  int code;
  do {
    size_t used = out.size();
    out.resize(used + kChunk);
    stream.next_out = reinterpret_cast<Bytef*>(out.data() + used);
    stream.avail_out = kChunk;
    code = deflate(&stream, Z_FINISH);
    out.resize(used + kChunk - stream.avail_out);
  } while (code == Z_OK || code == Z_BUF_ERROR);
  deflateEnd(&stream);
  if (code != Z_STREAM_END) return Fail(ErrorCode::kInternal, "gzip compression failed ({})", code);
  return out;
}

Result<std::string> Gunzip(std::string_view data) {
  std::string out;
  size_t offset = 0;
  // One member after another, like gzip -d.
  while (offset < data.size()) {
    z_stream stream{};
    if (inflateInit2(&stream, 15 + 16) != Z_OK) return Fail(ErrorCode::kInternal, "inflateInit2 failed");
    stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data() + offset));
    stream.avail_in = static_cast<uInt>(data.size() - offset);
    int code;
    do {
      size_t used = out.size();
      out.resize(used + kChunk);
      stream.next_out = reinterpret_cast<Bytef*>(out.data() + used);
      stream.avail_out = kChunk;
      code = inflate(&stream, Z_NO_FLUSH);
      out.resize(used + kChunk - stream.avail_out);
    } while (code == Z_OK);
    size_t consumed = data.size() - offset - stream.avail_in;
    inflateEnd(&stream);
    if (code != Z_STREAM_END) {
      return Fail(ErrorCode::kInvalidArgument, "gzip data corrupt or truncated at byte {} (zlib {})",
                  offset + consumed, code);
    }
    offset += consumed;
  }
  return out;
}

Result<std::string> Zstd(std::string_view data) {
  std::string out(ZSTD_compressBound(data.size()), '\0');
  size_t size = ZSTD_compress(out.data(), out.size(), data.data(), data.size(), 3);
  if (ZSTD_isError(size)) return Fail(ErrorCode::kInternal, "zstd compression failed: {}", ZSTD_getErrorName(size));
  out.resize(size);
  return out;
}

Result<std::string> Unzstd(std::string_view data) {
  std::unique_ptr<ZSTD_DStream, decltype(&ZSTD_freeDStream)> stream(ZSTD_createDStream(), ZSTD_freeDStream);
  if (!stream) return Fail(ErrorCode::kInternal, "ZSTD_createDStream failed");
  std::string out;
  ZSTD_inBuffer input{data.data(), data.size(), 0};
  size_t last = 0;
  while (input.pos < input.size) {
    size_t used = out.size();
    out.resize(used + kChunk);
    ZSTD_outBuffer output{out.data() + used, kChunk, 0};
    last = ZSTD_decompressStream(stream.get(), &output, &input);
    out.resize(used + output.pos);
    if (ZSTD_isError(last)) return Fail(ErrorCode::kInvalidArgument, "zstd data corrupt: {}", ZSTD_getErrorName(last));
  }
  // Drain output still buffered in the decoder.
  while (last != 0) {
    size_t used = out.size();
    out.resize(used + kChunk);
    ZSTD_outBuffer output{out.data() + used, kChunk, 0};
    last = ZSTD_decompressStream(stream.get(), &output, &input);
    out.resize(used + output.pos);
    if (ZSTD_isError(last)) return Fail(ErrorCode::kInvalidArgument, "zstd data corrupt: {}", ZSTD_getErrorName(last));
    if (output.pos == 0 && last != 0) return Fail(ErrorCode::kInvalidArgument, "zstd data truncated");
  }
  return out;
}

}  // namespace

std::string_view CompressionName(Compression compression) {
  switch (compression) {
    case Compression::kNone: return "none";
    case Compression::kGzip: return "gzip";
    case Compression::kZstd: return "zstd";
  }
  return "unknown";
}

Result<std::string> Compress(std::string_view data, Compression compression) {
  switch (compression) {
    case Compression::kNone: return std::string(data);
    case Compression::kGzip: return Gzip(data);
    case Compression::kZstd: return Zstd(data);
  }
  return Fail(ErrorCode::kInvalidArgument, "unknown compression");
}

Result<std::string> Decompress(std::string_view data, Compression compression) {
  switch (compression) {
    case Compression::kNone: return std::string(data);
    case Compression::kGzip: return Gunzip(data);
    case Compression::kZstd: return Unzstd(data);
  }
  return Fail(ErrorCode::kInvalidArgument, "unknown compression");
}

}  // namespace strata::test_support
