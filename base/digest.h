// Content digests ("sha256:<hex>", "sha512:<hex>") and streaming hashing.
//
// Digest is a validated value: once constructed, algorithm and hex are known good
// (lowercase hex of the algorithm's length). Digester hashes a stream through OpenSSL EVP,
// which picks the SHA-NI / AVX2 code paths on CPUs that have them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <ostream>
#include <span>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "base/error.h"

namespace strata {

enum class DigestAlgorithm { kSha256, kSha512 };

// "sha256" / "sha512".
std::string_view DigestAlgorithmName(DigestAlgorithm algorithm);
// Number of hex characters of a digest of this algorithm (64 / 128).
size_t DigestHexLength(DigestAlgorithm algorithm);

class Digest {
 public:
  // Parses "alg:hex". InvalidArgument (naming the input) for an unknown algorithm, missing
  // colon, wrong hex length, upper-case or non-hex characters.
  static Result<Digest> Parse(std::string_view text);
  // Hash of `data` in one call.
  static Digest Of(std::string_view data, DigestAlgorithm algorithm = DigestAlgorithm::kSha256);
  // Builds from a raw binary hash value (32 or 64 bytes for sha256 / sha512).
  static Digest FromRaw(DigestAlgorithm algorithm, std::span<const uint8_t> raw);

  DigestAlgorithm algorithm() const { return algorithm_; }
  std::string_view algorithm_name() const { return DigestAlgorithmName(algorithm_); }
  const std::string& hex() const { return hex_; }
  // "sha256:<hex>".
  std::string ToString() const;

  auto operator<=>(const Digest&) const = default;
  bool operator==(const Digest&) const = default;

 private:
  Digest(DigestAlgorithm algorithm, std::string hex) : algorithm_(algorithm), hex_(std::move(hex)) {}

  DigestAlgorithm algorithm_;
  std::string hex_;
};

inline std::ostream& operator<<(std::ostream& os, const Digest& digest) { return os << digest.ToString(); }

// Streaming hasher. Not thread-safe; move-only.
class Digester {
 public:
  explicit Digester(DigestAlgorithm algorithm = DigestAlgorithm::kSha256);
  ~Digester();
  Digester(Digester&&) noexcept;
  Digester& operator=(Digester&&) noexcept;
  Digester(const Digester&) = delete;
  Digester& operator=(const Digester&) = delete;

  void Update(const void* data, size_t size);
  void Update(std::string_view data) { Update(data.data(), data.size()); }
  // Bytes fed so far.
  uint64_t bytes() const { return bytes_; }
  // REQUIRES: called at most once; no Update after it.
  Digest Finish();

 private:
  struct Impl;
  DigestAlgorithm algorithm_;
  std::unique_ptr<Impl> impl_;
  uint64_t bytes_ = 0;
};

// xxHash XXH3: fast non-cryptographic hashes for caches and change detection, never for
// content addressing.
uint64_t Xxh3_64(std::string_view data, uint64_t seed = 0);
struct Xxh3Hash128 {
  uint64_t low = 0;
  uint64_t high = 0;
  bool operator==(const Xxh3Hash128&) const = default;
};
Xxh3Hash128 Xxh3_128(std::string_view data, uint64_t seed = 0);

}  // namespace strata

template <>
struct std::hash<strata::Digest> {
  size_t operator()(const strata::Digest& d) const noexcept { return std::hash<std::string>{}(d.hex()); }
};

template <>
struct fmt::formatter<strata::Digest> : fmt::formatter<std::string_view> {
  template <typename FormatContext>
  auto format(const strata::Digest& d, FormatContext& ctx) const {
    return fmt::formatter<std::string_view>::format(d.ToString(), ctx);
  }
};
