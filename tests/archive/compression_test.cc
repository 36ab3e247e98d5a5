#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "archive/compress.h"
#include "archive/decompress.h"
#include "base/file.h"
#include "base/io.h"
#include "tests/support/compression.h"
#include "tests/support/process.h"

namespace strata::archive {
namespace {

using oci::Compression;

std::string RandomBytes(size_t size, uint32_t seed = 1) {
  std::mt19937_64 rng(seed);
  std::string out(size, '\0');
  for (size_t i = 0; i < size; i += 8) {
    const uint64_t v = rng();
    std::memcpy(out.data() + i, &v, std::min<size_t>(8, size - i));
  }
  return out;
}

// Text-like data that compresses ~3-5x: words from a small vocabulary in random order.
std::string CompressibleBytes(size_t size, uint32_t seed = 2) {
  static const char* kWords[] = {"layer ", "image ", "sha256:", "usr/lib/", "\n", "0000 ",
                                 "strata ", "{\"key\": ", "tar ", "overlay "};
  std::mt19937 rng(seed);
  std::string out;
  out.reserve(size + 16);
  while (out.size() < size) {
    out += kWords[rng() % 10];
    if (rng() % 7 == 0) out += static_cast<char>('a' + rng() % 26);
  }
  out.resize(size);
  return out;
}

test_support::Compression ToSupport(Compression c) {
  switch (c) {
    case Compression::kGzip: return test_support::Compression::kGzip;
    case Compression::kZstd: return test_support::Compression::kZstd;
    default: return test_support::Compression::kNone;
  }
}

// zlib/libzstd reference compression (independent of the code under test).
std::string ReferenceCompress(std::string_view data, Compression c) {
  if (c == Compression::kNone) return std::string(data);
  auto out = test_support::Compress(data, ToSupport(c));
  EXPECT_TRUE(out.has_value()) << out.error().ToString();
  return out.value_or("");
}

Result<std::string> OurCompress(std::string_view data, Compression c, int level = -1,
                                size_t write_size = 100000) {
  std::string out;
  STRATA_ASSIGN_OR_RETURN(auto compressor,
                          Compressor::Create(c, [&](std::string_view b) -> Status {
                            out.append(b);
                            return {};
                          }, level));
  while (!data.empty()) {
    const size_t n = std::min(write_size, data.size());
    STRATA_RETURN_IF_ERROR(compressor->Write(data.substr(0, n)));
    data.remove_prefix(n);
  }
  STRATA_RETURN_IF_ERROR(compressor->Finish());
  EXPECT_EQ(compressor->bytes_written(), out.size());
  return out;
}

// Drains `reader` with reads of exactly `chunk` bytes of room.
Result<std::string> DrainInChunks(ByteReader& reader, size_t chunk) {
  std::string out;
  std::vector<char> buffer(chunk);
  for (;;) {
    STRATA_ASSIGN_OR_RETURN(size_t n, reader.Read(buffer));
    if (n == 0) return out;
    if (n > chunk) return Fail(ErrorCode::kInternal, "read returned {} > {}", n, chunk);
    out.append(buffer.data(), n);
  }
}

Result<std::string> Decompress(std::string_view compressed, Compression c,
                               DecompressOptions options = {}, size_t chunk = 1 << 20) {
  StringViewReader input(compressed);
  STRATA_ASSIGN_OR_RETURN(auto reader, NewDecompressingReader(input, c, options));
  return DrainInChunks(*reader, chunk);
}

// Gives its input out at most one byte per Read, to exercise partial headers and trailers.
class TrickleReader : public ByteReader {
 public:
  explicit TrickleReader(std::string_view data) : inner_(data) {}
  Result<size_t> Read(std::span<char> buffer) override {
    return inner_.Read(buffer.subspan(0, std::min<size_t>(1, buffer.size())));
  }

 private:
  StringViewReader inner_;
};

// ---- Round trips -------------------------------------------------------------------------

enum class Data { kEmpty, kOneByte, kRandom, kCompressible };

std::string MakeData(Data kind, size_t big_size) {
  switch (kind) {
    case Data::kEmpty: return "";
    case Data::kOneByte: return "x";
    case Data::kRandom: return RandomBytes(big_size);
    case Data::kCompressible: return CompressibleBytes(big_size);
  }
  return "";
}

class RoundTripTest
    : public ::testing::TestWithParam<std::tuple<Compression, Data, size_t>> {};

TEST_P(RoundTripTest, ReferenceAndOwnCompressorDecodeToOriginal) {
  const auto [compression, kind, chunk] = GetParam();
  // One-byte reads of 10 MB would take tens of millions of calls; 1 MB shows the same.
  const std::string data = MakeData(kind, chunk == 1 ? (1 << 20) : (10 << 20));

  auto reference = Decompress(ReferenceCompress(data, compression), compression, {}, chunk);
  ASSERT_TRUE(reference.has_value()) << reference.error().ToString();
  EXPECT_TRUE(*reference == data) << "reference-compressed: sizes " << reference->size()
                                  << " vs " << data.size();

  auto ours = OurCompress(data, compression);
  ASSERT_TRUE(ours.has_value()) << ours.error().ToString();
  auto decoded = Decompress(*ours, compression, {}, chunk);
  ASSERT_TRUE(decoded.has_value()) << decoded.error().ToString();
  EXPECT_TRUE(*decoded == data) << "own-compressed: sizes " << decoded->size() << " vs "
                                << data.size();
}

INSTANTIATE_TEST_SUITE_P(
    AllKinds, RoundTripTest,
    ::testing::Combine(::testing::Values(Compression::kNone, Compression::kGzip,
                                         Compression::kZstd),
                       ::testing::Values(Data::kEmpty, Data::kOneByte, Data::kRandom,
                                         Data::kCompressible),
                       ::testing::Values(size_t{1}, size_t{7}, size_t{4096}, size_t{1} << 20)));

TEST(DecompressTest, OneByteInputReadsDecode) {
  const std::string data = CompressibleBytes(200000);
  for (Compression c : {Compression::kGzip, Compression::kZstd}) {
    const std::string compressed = ReferenceCompress(data, c);
    TrickleReader input(compressed);
    auto reader = NewDecompressingReader(input, c);
    ASSERT_TRUE(reader.has_value());
    auto out = DrainInChunks(**reader, 4096);
    ASSERT_TRUE(out.has_value()) << out.error().ToString();
    EXPECT_TRUE(*out == data);
  }
}

// ---- Multi-member / multi-frame ------------------------------------------------------------

TEST(DecompressTest, GzipMembersConcatenateLikeGzipDc) {
  const std::string a = CompressibleBytes(300000, 7), b = RandomBytes(100000, 8);
  const std::string joined = ReferenceCompress(a, Compression::kGzip) +
                             ReferenceCompress("", Compression::kGzip) +
                             *OurCompress(b, Compression::kGzip);
  auto out = Decompress(joined, Compression::kGzip, {}, 7777);
  ASSERT_TRUE(out.has_value()) << out.error().ToString();
  EXPECT_TRUE(*out == a + b);
}

TEST(DecompressTest, GzipTrailingZerosIgnoredButGarbageRejected) {
  const std::string data = CompressibleBytes(50000);
  const std::string member = ReferenceCompress(data, Compression::kGzip);
  auto padded = Decompress(member + std::string(1000, '\0'), Compression::kGzip);
  ASSERT_TRUE(padded.has_value()) << padded.error().ToString();
  EXPECT_TRUE(*padded == data);

  auto garbage = Decompress(member + std::string(10, '\0') + "junk", Compression::kGzip);
  ASSERT_FALSE(garbage.has_value());
  EXPECT_EQ(garbage.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(garbage.error().message().find("gzip: trailing garbage"), std::string::npos)
      << garbage.error().message();
}

TEST(DecompressTest, ZstdFramesAndSkippableFramesConcatenate) {
  const std::string a = CompressibleBytes(300000, 3), b = RandomBytes(50000, 4);
  // A skippable frame: magic 0x184D2A53, 4-byte little-endian length, payload.
  const std::string skippable = std::string("\x53\x2a\x4d\x18\x03\x00\x00\x00xyz", 11);
  const std::string joined = skippable + ReferenceCompress(a, Compression::kZstd) + skippable +
                             *OurCompress(b, Compression::kZstd);
  auto out = Decompress(joined, Compression::kZstd, {}, 4096);
  ASSERT_TRUE(out.has_value()) << out.error().ToString();
  EXPECT_TRUE(*out == a + b);
}

// ---- Corruption and truncation --------------------------------------------------------------

void ExpectInvalid(const Result<std::string>& result, std::string_view needle) {
  ASSERT_FALSE(result.has_value()) << "decoded " << result->size() << " bytes without error";
  EXPECT_EQ(result.error().code(), ErrorCode::kInvalidArgument) << result.error().ToString();
  EXPECT_NE(result.error().message().find(needle), std::string::npos)
      << result.error().message() << " lacks " << needle;
}

TEST(DecompressTest, CorruptMiddleByteIsAnError) {
  const std::string data = CompressibleBytes(1 << 20);
  for (auto [c, name] : {std::pair{Compression::kGzip, "gzip: "},
                         std::pair{Compression::kZstd, "zstd: "}}) {
    for (bool ours : {false, true}) {
      if (c == Compression::kZstd && !ours) continue;  // reference frames carry no checksum
      std::string compressed = ours ? *OurCompress(data, c) : ReferenceCompress(data, c);
      compressed[compressed.size() / 2] ^= 0x55;
      ExpectInvalid(Decompress(compressed, c), name);
    }
  }
}

TEST(DecompressTest, TruncatedStreamIsUnexpectedEnd) {
  const std::string data = CompressibleBytes(1 << 20);
  for (Compression c : {Compression::kGzip, Compression::kZstd}) {
    const std::string compressed = ReferenceCompress(data, c);
    const std::string name = c == Compression::kGzip ? "gzip" : "zstd";
    for (size_t keep : {size_t{0}, size_t{5}, compressed.size() / 2, compressed.size() - 1}) {
      SCOPED_TRACE(name + " keeping " + std::to_string(keep));
      ExpectInvalid(Decompress(std::string_view(compressed).substr(0, keep), c),
                    name + ": unexpected end of " + name + " stream");
    }
  }
}

TEST(DecompressTest, GzipTrailerMismatchIsAnError) {
  const std::string data = CompressibleBytes(100000);
  const std::string member = ReferenceCompress(data, Compression::kGzip);
  std::string bad_crc = member;
  bad_crc[bad_crc.size() - 8] ^= 1;  // first CRC32 byte
  ExpectInvalid(Decompress(bad_crc, Compression::kGzip), "gzip: CRC32 or length mismatch");
  std::string bad_size = member;
  bad_size[bad_size.size() - 4] ^= 1;  // first ISIZE byte
  ExpectInvalid(Decompress(bad_size, Compression::kGzip), "gzip: CRC32 or length mismatch");
  // The bad member is the second one: the first's output must not hide the error.
  ExpectInvalid(Decompress(member + bad_crc, Compression::kGzip), "gzip: CRC32");
}

TEST(DecompressTest, NotGzipAtAllIsAnError) {
  ExpectInvalid(Decompress("plain text, not a gzip header", Compression::kGzip), "gzip: ");
  ExpectInvalid(Decompress("plain text, not a zstd frame", Compression::kZstd), "zstd: ");
}

// ---- Bomb guards ----------------------------------------------------------------------------

TEST(DecompressTest, RatioGuardStopsZeroBomb) {
  const std::string zeros(100 << 20, '\0');
  for (Compression c : {Compression::kGzip, Compression::kZstd}) {
    auto bomb = OurCompress(zeros, c, -1, 1 << 20);
    ASSERT_TRUE(bomb.has_value());
    ASSERT_LT(bomb->size(), 1u << 20);
    auto guarded = Decompress(*bomb, c, {.max_ratio = 10});
    ASSERT_FALSE(guarded.has_value());
    EXPECT_EQ(guarded.error().code(), ErrorCode::kFailedPrecondition);
    EXPECT_NE(guarded.error().message().find("decompression ratio above 10"), std::string::npos)
        << guarded.error().message();
    // Without the guard the same stream is fine: the guard is what failed above.
    auto unguarded = Decompress(*bomb, c);
    ASSERT_TRUE(unguarded.has_value());
    EXPECT_EQ(unguarded->size(), zeros.size());
  }
}

TEST(DecompressTest, OutputCapAppliesToEveryCompression) {
  const std::string data = CompressibleBytes(100000);
  for (Compression c : {Compression::kNone, Compression::kGzip, Compression::kZstd}) {
    const std::string compressed = ReferenceCompress(data, c);
    auto capped = Decompress(compressed, c, {.max_output_bytes = 99999}, 4096);
    ASSERT_FALSE(capped.has_value());
    EXPECT_EQ(capped.error().code(), ErrorCode::kFailedPrecondition);
    auto exact = Decompress(compressed, c, {.max_output_bytes = 100000}, 4096);
    EXPECT_TRUE(exact.has_value());
  }
}

// ---- Detection and auto reader --------------------------------------------------------------

TEST(DetectCompressionTest, Magics) {
  EXPECT_EQ(DetectCompression("\x1f\x8b\x08\x00"), Compression::kGzip);
  EXPECT_EQ(DetectCompression("\x1f\x8b"), Compression::kGzip);
  EXPECT_EQ(DetectCompression("\x1f"), Compression::kNone);
  EXPECT_EQ(DetectCompression("\x28\xb5\x2f\xfd\x00"), Compression::kZstd);
  EXPECT_EQ(DetectCompression("\x28\xb5\x2f"), Compression::kNone);
  EXPECT_EQ(DetectCompression("\x50\x2a\x4d\x18"), Compression::kZstd);
  EXPECT_EQ(DetectCompression("\x5f\x2a\x4d\x18"), Compression::kZstd);
  EXPECT_EQ(DetectCompression("\x60\x2a\x4d\x18"), Compression::kNone);
  EXPECT_EQ(DetectCompression(""), Compression::kNone);
  EXPECT_EQ(DetectCompression("usr/\0\0\0\0"), Compression::kNone);
  EXPECT_EQ(DetectCompression(ReferenceCompress("abc", Compression::kGzip)), Compression::kGzip);
  EXPECT_EQ(DetectCompression(ReferenceCompress("abc", Compression::kZstd)), Compression::kZstd);
}

TEST(AutoDecompressTest, DetectsAndDecodesFromTheFirstByte) {
  const std::string data = CompressibleBytes(500000);
  for (Compression c : {Compression::kNone, Compression::kGzip, Compression::kZstd}) {
    const std::string compressed = ReferenceCompress(data, c);
    TrickleReader input(compressed);  // the magic arrives one byte at a time
    auto reader = NewAutoDecompressingReader(input);
    ASSERT_TRUE(reader.has_value());
    auto out = DrainInChunks(**reader, 65536);
    ASSERT_TRUE(out.has_value()) << out.error().ToString();
    EXPECT_TRUE(*out == data) << "compression " << static_cast<int>(c);
  }
  for (std::string_view tiny : {"", "a", "ab\x1f"}) {
    StringViewReader input(tiny);
    auto reader = NewAutoDecompressingReader(input);
    ASSERT_TRUE(reader.has_value());
    auto out = DrainInChunks(**reader, 7);
    ASSERT_TRUE(out.has_value());
    EXPECT_EQ(*out, tiny);
  }
}

// ---- Compressor against the system tools ----------------------------------------------------

std::string WriteFile(const std::filesystem::path& path, std::string_view bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), bytes.size());
  return path.string();
}

TEST(CompressorTest, SystemToolsAcceptOutput) {
  auto dir = TempDir::Create("strata-compress");
  ASSERT_TRUE(dir.has_value());
  const std::string data = CompressibleBytes(3 << 20) + RandomBytes(1 << 20);
  for (int level : {0, 1, 2, 3}) {
    auto gz = OurCompress(data, Compression::kGzip, level, 65537);
    ASSERT_TRUE(gz.has_value()) << gz.error().ToString();
    const std::string file = WriteFile(dir->path() / "out.gz", *gz);
    std::string output;
    auto rc = test_support::RunCommand({"gzip", "-t", file}, &output);
    ASSERT_TRUE(rc.has_value());
    EXPECT_EQ(*rc, 0) << "level " << level << ": " << output;
    output.clear();
    rc = test_support::RunCommand({"gzip", "-dc", file}, &output);
    ASSERT_TRUE(rc.has_value());
    EXPECT_EQ(*rc, 0);
    EXPECT_TRUE(output == data) << "gzip -dc level " << level;
  }
  auto zst = OurCompress(data, Compression::kZstd, 3, 65537);
  ASSERT_TRUE(zst.has_value());
  const std::string file = WriteFile(dir->path() / "out.zst", *zst);
  std::string output;
  auto rc = test_support::RunCommand({"zstd", "-q", "-dc", file}, &output);
  ASSERT_TRUE(rc.has_value());
  EXPECT_EQ(*rc, 0);
  EXPECT_TRUE(output == data) << "zstd -dc";
}

TEST(CompressorTest, RejectsBadLevelsAndUseAfterFinish) {
  ByteSink sink = [](std::string_view) -> Status { return {}; };
  EXPECT_FALSE(Compressor::Create(Compression::kGzip, sink, 4).has_value());
  EXPECT_FALSE(Compressor::Create(Compression::kZstd, sink, 0).has_value());
  auto compressor = Compressor::Create(Compression::kGzip, sink);
  ASSERT_TRUE(compressor.has_value());
  ASSERT_TRUE((*compressor)->Finish().has_value());
  EXPECT_FALSE((*compressor)->Write("x").has_value());
}

TEST(CompressorTest, SinkErrorStopsCompressor) {
  ByteSink failing = [](std::string_view) -> Status {
    return Fail(ErrorCode::kUnavailable, "disk full");
  };
  for (Compression c : {Compression::kNone, Compression::kGzip, Compression::kZstd}) {
    auto compressor = Compressor::Create(c, failing);
    ASSERT_TRUE(compressor.has_value());
    Status status = (*compressor)->Write(RandomBytes(2 << 20));
    if (status) status = (*compressor)->Finish();
    ASSERT_FALSE(status.has_value());
    EXPECT_EQ(status.error().code(), ErrorCode::kUnavailable);
    EXPECT_FALSE((*compressor)->Write("more").has_value());
  }
}

// ---- Chaining with real file descriptors ----------------------------------------------------

TEST(ChainTest, DecompressFromPipeAndFile) {
  const std::string data = CompressibleBytes(4 << 20);
  for (Compression c : {Compression::kGzip, Compression::kZstd}) {
    const std::string compressed = *OurCompress(data, c);
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    std::thread writer([&] {
      std::string_view rest = compressed;
      while (!rest.empty()) {
        ssize_t n = ::write(fds[1], rest.data(), std::min<size_t>(rest.size(), 12345));
        if (n <= 0) break;
        rest.remove_prefix(static_cast<size_t>(n));
      }
      ::close(fds[1]);
    });
    FdReader pipe_reader(fds[0]);
    auto reader = NewAutoDecompressingReader(pipe_reader);
    ASSERT_TRUE(reader.has_value());
    auto out = DrainInChunks(**reader, 1 << 18);
    writer.join();
    ::close(fds[0]);
    ASSERT_TRUE(out.has_value()) << out.error().ToString();
    EXPECT_TRUE(*out == data);

    auto dir = TempDir::Create("strata-chain");
    ASSERT_TRUE(dir.has_value());
    const std::string path = WriteFile(dir->path() / "blob", compressed);
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    FdReader file_reader(fd);
    auto file_decoder = NewDecompressingReader(file_reader, c);
    ASSERT_TRUE(file_decoder.has_value());
    auto file_out = ReadAll(**file_decoder);
    ::close(fd);
    ASSERT_TRUE(file_out.has_value());
    EXPECT_TRUE(*file_out == data);
  }
}

}  // namespace
}  // namespace strata::archive
