#include "oci/media_types.h"

#include <algorithm>
#include <initializer_list>

namespace strata::oci {
namespace {

char AsciiLower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool EqualsIgnoringCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return AsciiLower(x) == AsciiLower(y); });
}

bool IsOneOf(std::string_view media_type, std::initializer_list<std::string_view> candidates) {
  std::string_view base = BaseMediaType(media_type);
  return std::any_of(candidates.begin(), candidates.end(),
                     [base](std::string_view candidate) { return EqualsIgnoringCase(base, candidate); });
}

}  // namespace

std::string_view BaseMediaType(std::string_view media_type) {
  if (size_t semicolon = media_type.find(';'); semicolon != std::string_view::npos) {
    media_type = media_type.substr(0, semicolon);
  }
  constexpr std::string_view kBlanks = " \t";
  size_t first = media_type.find_first_not_of(kBlanks);
  if (first == std::string_view::npos) return {};
  size_t last = media_type.find_last_not_of(kBlanks);
  return media_type.substr(first, last - first + 1);
}

bool SameMediaType(std::string_view a, std::string_view b) {
  return EqualsIgnoringCase(BaseMediaType(a), BaseMediaType(b));
}

bool IsIndex(std::string_view media_type) {
  return IsOneOf(media_type, {media_type::kOciIndex, media_type::kDockerManifestList});
}

bool IsManifest(std::string_view media_type) {
  return IsOneOf(media_type, {media_type::kOciManifest, media_type::kDockerManifest});
}

bool IsConfig(std::string_view media_type) {
  return IsOneOf(media_type, {media_type::kOciConfig, media_type::kDockerConfig});
}

bool IsForeignLayer(std::string_view media_type) {
  return IsOneOf(media_type, {media_type::kOciLayerNondistributable, media_type::kOciLayerNondistributableGzip,
                              media_type::kOciLayerNondistributableZstd, media_type::kDockerForeignLayer,
                              media_type::kDockerForeignLayerGzip});
}

bool IsLayer(std::string_view media_type) {
  return IsForeignLayer(media_type) ||
         IsOneOf(media_type, {media_type::kOciLayer, media_type::kOciLayerGzip, media_type::kOciLayerZstd,
                              media_type::kDockerLayer, media_type::kDockerLayerGzip, media_type::kDockerLayerZstd});
}

bool IsSchema1Manifest(std::string_view media_type) {
  return IsOneOf(media_type, {media_type::kDockerSchema1Manifest, media_type::kDockerSchema1SignedManifest});
}

std::string_view CompressionName(Compression compression) {
  switch (compression) {
    case Compression::kNone: return "none";
    case Compression::kGzip: return "gzip";
    case Compression::kZstd: return "zstd";
  }
  return "unknown";
}

Result<Compression> LayerCompression(std::string_view media_type) {
  if (IsOneOf(media_type, {media_type::kOciLayer, media_type::kOciLayerNondistributable, media_type::kDockerLayer,
                           media_type::kDockerForeignLayer})) {
    return Compression::kNone;
  }
  if (IsOneOf(media_type, {media_type::kOciLayerGzip, media_type::kOciLayerNondistributableGzip,
                           media_type::kDockerLayerGzip, media_type::kDockerForeignLayerGzip})) {
    return Compression::kGzip;
  }
  if (IsOneOf(media_type, {media_type::kOciLayerZstd, media_type::kOciLayerNondistributableZstd,
                           media_type::kDockerLayerZstd})) {
    return Compression::kZstd;
  }
  std::string_view base = BaseMediaType(media_type);
  if (base.ends_with("+encrypted")) {
    return Fail(ErrorCode::kUnimplemented, "encrypted layer media type \"{}\" is not supported", media_type);
  }
  return Fail(ErrorCode::kInvalidArgument, "\"{}\" is not a layer media type", media_type);
}

}  // namespace strata::oci
