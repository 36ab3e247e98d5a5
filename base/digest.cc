#include "base/digest.h"

#include <openssl/evp.h>
#include <xxhash.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <optional>

namespace strata {
namespace {

constexpr std::string_view kHexDigits = "0123456789abcdef";
// Inputs longer than this are cut in error messages so a hostile manifest cannot make us
// log megabytes.
constexpr size_t kMaxQuotedInput = 200;

// OpenSSL only fails here on allocation failure or a broken installation; neither is
// something a caller can handle, so we stop rather than return a wrong digest.
[[noreturn]] void DieOpenSsl(const char* what) {
  std::fprintf(stderr, "strata: fatal: OpenSSL %s failed\n", what);
  std::abort();
}

const EVP_MD* EvpDigest(DigestAlgorithm algorithm) {
  switch (algorithm) {
    case DigestAlgorithm::kSha256: return EVP_sha256();
    case DigestAlgorithm::kSha512: return EVP_sha512();
  }
  DieOpenSsl("digest selection");
}

size_t RawLength(DigestAlgorithm algorithm) { return DigestHexLength(algorithm) / 2; }

std::string HexEncode(std::span<const uint8_t> raw) {
  std::string hex(raw.size() * 2, '\0');
  for (size_t i = 0; i < raw.size(); ++i) {
    hex[2 * i] = kHexDigits[raw[i] >> 4];
    hex[2 * i + 1] = kHexDigits[raw[i] & 0x0f];
  }
  return hex;
}

std::optional<DigestAlgorithm> AlgorithmFromName(std::string_view name) {
  if (name == "sha256") return DigestAlgorithm::kSha256;
  if (name == "sha512") return DigestAlgorithm::kSha512;
  return std::nullopt;
}

// `"text"` with escapes, shortened if very long.
std::string QuoteInput(std::string_view text) {
  if (text.size() <= kMaxQuotedInput) return fmt::format("{:?}", text);
  return fmt::format("{:?}...", text.substr(0, kMaxQuotedInput));
}

}  // namespace

std::string_view DigestAlgorithmName(DigestAlgorithm algorithm) {
  switch (algorithm) {
    case DigestAlgorithm::kSha256: return "sha256";
    case DigestAlgorithm::kSha512: return "sha512";
  }
  return "unknown";
}

size_t DigestHexLength(DigestAlgorithm algorithm) {
  switch (algorithm) {
    case DigestAlgorithm::kSha256: return 64;
    case DigestAlgorithm::kSha512: return 128;
  }
  return 0;
}

Result<Digest> Digest::Parse(std::string_view text) {
  auto invalid = [text](std::string_view reason) {
    return Fail(ErrorCode::kInvalidArgument, "invalid digest {}: {}", QuoteInput(text), reason);
  };
  if (text.empty()) return invalid("empty");
  const size_t colon = text.find(':');
  if (colon == std::string_view::npos) return invalid("missing ':' between algorithm and hex");
  const std::string_view name = text.substr(0, colon);
  const std::string_view hex = text.substr(colon + 1);
  const std::optional<DigestAlgorithm> algorithm = AlgorithmFromName(name);
  if (!algorithm) {
    return invalid(fmt::format("unsupported algorithm {} (want sha256 or sha512)", QuoteInput(name)));
  }
  const size_t want = DigestHexLength(*algorithm);
  if (hex.size() != want) {
    return invalid(fmt::format("{} hex must be {} characters, got {}", name, want, hex.size()));
  }
  for (size_t i = 0; i < hex.size(); ++i) {
    const char c = hex[i];
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) continue;
    if (c >= 'A' && c <= 'F') {
      return invalid(fmt::format("upper-case hex character '{}' at offset {}", c, colon + 1 + i));
    }
    return invalid(fmt::format("non-hex character {:?} at offset {}", c, colon + 1 + i));
  }
  return Digest(*algorithm, std::string(hex));
}

Digest Digest::Of(std::string_view data, DigestAlgorithm algorithm) {
  std::array<uint8_t, EVP_MAX_MD_SIZE> raw;
  unsigned int length = 0;
  if (EVP_Digest(data.data(), data.size(), raw.data(), &length, EvpDigest(algorithm), nullptr) != 1) {
    DieOpenSsl("EVP_Digest");
  }
  return FromRaw(algorithm, std::span<const uint8_t>(raw.data(), length));
}

Digest Digest::FromRaw(DigestAlgorithm algorithm, std::span<const uint8_t> raw) {
  if (raw.size() != RawLength(algorithm)) {
    // A wrong length is a programming error in the caller, not bad input.
    std::fprintf(stderr, "strata: fatal: Digest::FromRaw: %zu bytes for %s\n", raw.size(),
                 DigestAlgorithmName(algorithm).data());
    std::abort();
  }
  return Digest(algorithm, HexEncode(raw));
}

std::string Digest::ToString() const { return fmt::format("{}:{}", algorithm_name(), hex_); }

struct Digester::Impl {
  struct CtxFree {
    void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
  };
  std::unique_ptr<EVP_MD_CTX, CtxFree> ctx;
};

Digester::Digester(DigestAlgorithm algorithm) : algorithm_(algorithm), impl_(std::make_unique<Impl>()) {
  impl_->ctx.reset(EVP_MD_CTX_new());
  if (!impl_->ctx) throw std::bad_alloc();
  if (EVP_DigestInit_ex(impl_->ctx.get(), EvpDigest(algorithm), nullptr) != 1) DieOpenSsl("EVP_DigestInit_ex");
}

Digester::~Digester() = default;
Digester::Digester(Digester&&) noexcept = default;
Digester& Digester::operator=(Digester&&) noexcept = default;

void Digester::Update(const void* data, size_t size) {
  if (size == 0) return;
  if (EVP_DigestUpdate(impl_->ctx.get(), data, size) != 1) DieOpenSsl("EVP_DigestUpdate");
  bytes_ += size;
}

Digest Digester::Finish() {
  std::array<uint8_t, EVP_MAX_MD_SIZE> raw;
  unsigned int length = 0;
  if (EVP_DigestFinal_ex(impl_->ctx.get(), raw.data(), &length) != 1) DieOpenSsl("EVP_DigestFinal_ex");
  return Digest::FromRaw(algorithm_, std::span<const uint8_t>(raw.data(), length));
}

uint64_t Xxh3_64(std::string_view data, uint64_t seed) {
  return XXH3_64bits_withSeed(data.data(), data.size(), seed);
}

Xxh3Hash128 Xxh3_128(std::string_view data, uint64_t seed) {
  const XXH128_hash_t hash = XXH3_128bits_withSeed(data.data(), data.size(), seed);
  return Xxh3Hash128{.low = hash.low64, .high = hash.high64};
}

}  // namespace strata
