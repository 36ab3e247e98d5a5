#include "base/background_digester.h"

#include <gtest/gtest.h>

#include <string>

namespace strata {
namespace {

std::string Pattern(size_t size) {
  std::string data(size, '\0');
  for (size_t i = 0; i < size; ++i) data[i] = static_cast<char>((i * 131) ^ (i >> 9));
  return data;
}

// Feeds `data` in pieces of `piece` bytes and compares with the one-shot digest.
void ExpectSameAsOneShot(const std::string& data, size_t piece, DigestAlgorithm algorithm,
                         size_t buffer_size = 64 << 10, size_t max_buffered = 256 << 10) {
  BackgroundDigester digester(algorithm, buffer_size, max_buffered);
  for (size_t off = 0; off < data.size(); off += piece) {
    digester.Update(std::string_view(data).substr(off, piece));
  }
  EXPECT_EQ(digester.bytes(), data.size());
  EXPECT_EQ(digester.Finish(), Digest::Of(data, algorithm)) << "size " << data.size() << " piece " << piece;
}

TEST(BackgroundDigester, MatchesDigesterForAnyChunking) {
  for (size_t size : {size_t{0}, size_t{1}, size_t{65535}, size_t{65536}, size_t{65537}, size_t{3 << 20}}) {
    std::string data = Pattern(size);
    for (size_t piece : {size_t{1} << 20, size_t{65536}, size_t{4097}, size_t{7}}) {
      if (piece == 7 && size > (1 << 20)) continue;  // keeps the test quick
      ExpectSameAsOneShot(data, piece, DigestAlgorithm::kSha256);
    }
  }
}

TEST(BackgroundDigester, Sha512) { ExpectSameAsOneShot(Pattern(1 << 20), 100000, DigestAlgorithm::kSha512); }

TEST(BackgroundDigester, QueueSmallerThanOneBufferStillWorks) {
  // max_buffered below buffer_size: one buffer in flight at a time, the producer waits.
  ExpectSameAsOneShot(Pattern(2 << 20), 300000, DigestAlgorithm::kSha256, 64 << 10, 1);
}

TEST(BackgroundDigester, DestroyedWithoutFinishJoinsItsWorker) {
  auto digester = std::make_unique<BackgroundDigester>(DigestAlgorithm::kSha256, 4096, 16384);
  digester->Update(Pattern(1 << 20));
  digester.reset();  // must not hang or leak a thread (ASan/TSan builds check the latter)
  SUCCEED();
}

}  // namespace
}  // namespace strata
