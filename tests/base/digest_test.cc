#include "base/digest.h"

#include <gtest/gtest.h>

#include <array>
#include <string>
#include <unordered_set>

namespace strata {
namespace {

struct KnownVector {
  std::string input;
  std::string sha256;
  std::string sha512;
};

// FIPS 180-2 / NIST example vectors.
std::vector<KnownVector> KnownVectors() {
  return {
      {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
       "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
       "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"},
      {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
       "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
       "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"},
      {std::string(1'000'000, 'a'), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
       "e718483d0ce769644e2e42c7bc15b4638e1f98b13b2044285632a803afa973eb"
       "de0ff244877ea60a4cb0432ce577c31beb009c5c2c49aa2e4eadb217ad8cc09b"},
  };
}

TEST(DigestTest, OfMatchesKnownVectors) {
  for (const KnownVector& v : KnownVectors()) {
    SCOPED_TRACE(v.input.substr(0, 8));
    EXPECT_EQ(Digest::Of(v.input).ToString(), "sha256:" + v.sha256);
    EXPECT_EQ(Digest::Of(v.input, DigestAlgorithm::kSha512).ToString(), "sha512:" + v.sha512);
  }
}

TEST(DigestTest, DigesterMatchesKnownVectors) {
  for (const KnownVector& v : KnownVectors()) {
    for (DigestAlgorithm algorithm : {DigestAlgorithm::kSha256, DigestAlgorithm::kSha512}) {
      Digester digester(algorithm);
      digester.Update(v.input);
      EXPECT_EQ(digester.bytes(), v.input.size());
      const Digest digest = digester.Finish();
      EXPECT_EQ(digest.algorithm(), algorithm);
      EXPECT_EQ(digest.hex(), algorithm == DigestAlgorithm::kSha256 ? v.sha256 : v.sha512);
    }
  }
}

TEST(DigestTest, StreamingInOddChunksEqualsOneShot) {
  std::string data(3 * 1024 * 1024 + 17, '\0');
  uint32_t state = 12345;
  for (char& c : data) {
    state = state * 1664525u + 1013904223u;
    c = static_cast<char>(state >> 24);
  }
  for (DigestAlgorithm algorithm : {DigestAlgorithm::kSha256, DigestAlgorithm::kSha512}) {
    const Digest expected = Digest::Of(data, algorithm);
    for (size_t chunk : {size_t{1}, size_t{3}, size_t{63}, size_t{64}, size_t{65}, size_t{127}, size_t{4097},
                         size_t{1'000'003}}) {
      SCOPED_TRACE(chunk);
      Digester digester(algorithm);
      // Feeding every byte one at a time is slow; limit chunk 1 to a prefix plus the rest.
      std::string_view rest = data;
      if (chunk == 1) {
        for (int i = 0; i < 1000; ++i) {
          digester.Update(rest.substr(0, 1));
          rest.remove_prefix(1);
        }
        chunk = 1'048'573;
      }
      while (!rest.empty()) {
        const size_t n = std::min(chunk, rest.size());
        digester.Update(rest.data(), n);
        rest.remove_prefix(n);
      }
      EXPECT_EQ(digester.bytes(), data.size());
      EXPECT_EQ(digester.Finish(), expected);
    }
  }
}

TEST(DigestTest, EmptyUpdatesChangeNothing) {
  Digester digester;
  digester.Update("");
  digester.Update(nullptr, 0);
  digester.Update("abc");
  digester.Update("");
  EXPECT_EQ(digester.Finish(), Digest::Of("abc"));
}

TEST(DigestTest, MovedDigesterKeepsState) {
  Digester first;
  first.Update("ab");
  Digester second = std::move(first);
  second.Update("c");
  EXPECT_EQ(second.bytes(), 3u);
  Digester third(DigestAlgorithm::kSha512);
  third = std::move(second);
  EXPECT_EQ(third.Finish(), Digest::Of("abc"));
}

TEST(DigestTest, ParseRoundTrips) {
  for (DigestAlgorithm algorithm : {DigestAlgorithm::kSha256, DigestAlgorithm::kSha512}) {
    const Digest digest = Digest::Of("hello", algorithm);
    Result<Digest> parsed = Digest::Parse(digest.ToString());
    ASSERT_TRUE(parsed.has_value()) << parsed.error().ToString();
    EXPECT_EQ(*parsed, digest);
    EXPECT_EQ(parsed->algorithm(), algorithm);
    EXPECT_EQ(parsed->algorithm_name(), DigestAlgorithmName(algorithm));
    EXPECT_EQ(parsed->hex().size(), DigestHexLength(algorithm));
  }
}

TEST(DigestTest, ParseRejectsBadInput) {
  const std::string sha256_hex = Digest::Of("x").hex();
  std::string upper = sha256_hex;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  std::string non_hex = sha256_hex;
  non_hex[10] = 'g';
  std::string with_nul = sha256_hex;
  with_nul[5] = '\0';

  const std::vector<std::pair<std::string, std::string>> cases = {
      {"sha256:" + upper, "upper-case"},
      {"sha256:" + sha256_hex.substr(1), "must be 64 characters, got 63"},
      {"sha256:" + sha256_hex + "0", "got 65"},
      {"md5:d41d8cd98f00b204e9800998ecf8427e", "unsupported algorithm"},
      {"SHA256:" + sha256_hex, "unsupported algorithm"},
      {sha256_hex, "missing ':'"},
      {"", "empty"},
      {"sha256:", "got 0"},
      {":" + sha256_hex, "unsupported algorithm"},
      {"sha256:" + non_hex, "non-hex character 'g'"},
      {"sha256:" + with_nul, "non-hex character"},
      {"sha256: " + sha256_hex.substr(1), "non-hex character ' '"},
      {"sha512:" + sha256_hex, "sha512 hex must be 128 characters, got 64"},
      {"sha256:" + Digest::Of("x", DigestAlgorithm::kSha512).hex(), "got 128"},
  };
  for (const auto& [input, reason] : cases) {
    SCOPED_TRACE(input);
    Result<Digest> parsed = Digest::Parse(input);
    ASSERT_FALSE(parsed.has_value());
    EXPECT_EQ(parsed.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(parsed.error().message().find("invalid digest \""), std::string::npos) << parsed.error().message();
    EXPECT_NE(parsed.error().message().find(reason), std::string::npos) << parsed.error().message();
  }
}

TEST(DigestTest, ParseErrorNamesTheInput) {
  Result<Digest> parsed = Digest::Parse("sha256:ABC");
  ASSERT_FALSE(parsed.has_value());
  EXPECT_EQ(parsed.error().message().rfind("invalid digest \"sha256:ABC\": ", 0), 0u) << parsed.error().message();
}

TEST(DigestTest, ParseErrorQuotesHostileInputSafely) {
  const std::string huge = "sha256:" + std::string(100'000, 'z');
  Result<Digest> parsed = Digest::Parse(huge);
  ASSERT_FALSE(parsed.has_value());
  EXPECT_LT(parsed.error().message().size(), 400u);

  Result<Digest> control = Digest::Parse(std::string("sha256:\n\x01", 9));
  ASSERT_FALSE(control.has_value());
  EXPECT_EQ(control.error().message().find('\n'), std::string::npos);
}

TEST(DigestTest, FromRawEncodesLowerHex) {
  std::array<uint8_t, 32> raw{};
  for (size_t i = 0; i < raw.size(); ++i) raw[i] = static_cast<uint8_t>(i * 8 + 7);
  const Digest digest = Digest::FromRaw(DigestAlgorithm::kSha256, raw);
  EXPECT_EQ(digest.hex(), "070f171f272f373f474f575f676f777f878f979fa7afb7bfc7cfd7dfe7eff7ff");
}

TEST(DigestTest, OrderingHashingAndFormatting) {
  const Digest a = Digest::Of("a");
  const Digest b = Digest::Of("b");
  EXPECT_NE(a, b);
  EXPECT_TRUE((a < b) != (b < a));
  std::unordered_set<Digest> set = {a, b, a};
  EXPECT_EQ(set.size(), 2u);
  EXPECT_EQ(fmt::format("{}", a), a.ToString());
  EXPECT_EQ(fmt::format("[{:>75}]", a), "[" + std::string(75 - 71, ' ') + a.ToString() + "]");
}

// xxhsum's sanity buffer: reproduces the reference implementation's self-test inputs, so
// the expected values below are the ones xxHash itself checks at start-up.
std::string XxhSanityBuffer(size_t size) {
  constexpr uint64_t kPrime32 = 2654435761u;
  constexpr uint64_t kPrime64 = 11400714785074694797ull;
  std::string buffer(size, '\0');
  uint64_t generator = kPrime32;
  for (char& c : buffer) {
    c = static_cast<char>(generator >> 56);
    generator *= kPrime64;
  }
  return buffer;
}

TEST(Xxh3Test, MatchesReferenceValues) {
  constexpr uint64_t kPrime64 = 11400714785074694797ull;
  const std::string buffer = XxhSanityBuffer(2367);
  struct Case {
    size_t length;
    uint64_t seed;
    uint64_t expected;
  };
  const Case cases[] = {
      {0, 0, 0x2D06800538D394C2ull},        {0, kPrime64, 0xA8A6B918B2F0364Aull},
      {1, 0, 0xC44BDFF4074EECDBull},        {6, 0, 0x27B56A84CD2D7325ull},
      {12, kPrime64, 0xE7303E1B2336DE0Eull}, {24, 0, 0xA3FE70BF9D3510EBull},
      {80, 0, 0xBCDEFBBB2C47C90Aull},       {195, kPrime64, 0xBA68003D370CB3D9ull},
      {403, 0, 0xCDEB804D65C6DEA4ull},      {2048, 0, 0xDD59E2C3A5F038E0ull},
      {2367, 0, 0xCB37AEB9E5D361EDull},     {2367, kPrime64, 0xD2DB3415B942B42Aull},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(fmt::format("length {} seed {:#x}", c.length, c.seed));
    EXPECT_EQ(Xxh3_64(std::string_view(buffer).substr(0, c.length), c.seed), c.expected);
  }
}

TEST(Xxh3Test, Hash128MatchesReferenceValues) {
  constexpr uint64_t kPrime32 = 2654435761u;
  const std::string buffer = XxhSanityBuffer(2367);
  struct Case {
    size_t length;
    uint64_t seed;
    Xxh3Hash128 expected;
  };
  const Case cases[] = {
      {0, 0, {.low = 0x6001C324468D497Full, .high = 0x99AA06D3014798D8ull}},
      {0, kPrime32, {.low = 0x5444F7869C671AB0ull, .high = 0x92220AE55E14AB50ull}},
      {1, 0, {.low = 0xC44BDFF4074EECDBull, .high = 0xA6CD5E9392000F6Aull}},
      {12, kPrime32, {.low = 0x9BE9F9A67F3C7DFBull, .high = 0xD7E09D518A3405D3ull}},
      {222, 0, {.low = 0xF1AEBD597CEC6B3Aull, .high = 0x337E09641B948717ull}},
      {2367, kPrime32, {.low = 0x6F5360AE69C2F406ull, .high = 0xD23AAE4B76C31ECBull}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(fmt::format("length {} seed {:#x}", c.length, c.seed));
    const Xxh3Hash128 got = Xxh3_128(std::string_view(buffer).substr(0, c.length), c.seed);
    EXPECT_EQ(got.low, c.expected.low);
    EXPECT_EQ(got.high, c.expected.high);
  }
}

TEST(Xxh3Test, SeedAndContentChangeTheHash) {
  EXPECT_EQ(Xxh3_64("strata"), Xxh3_64("strata", 0));
  EXPECT_NE(Xxh3_64("strata"), Xxh3_64("strata", 1));
  EXPECT_NE(Xxh3_64("strata"), Xxh3_64("stratb"));
  EXPECT_EQ(Xxh3_128("strata"), Xxh3_128("strata"));
  EXPECT_NE(Xxh3_128("strata"), Xxh3_128("strata", 1));
}

}  // namespace
}  // namespace strata
