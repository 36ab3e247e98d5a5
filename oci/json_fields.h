// Implementation helper of the oci module (not part of its public face): typed, non-throwing
// reads of JSON object fields that remember which keys were consumed, so every document type
// can keep the keys it does not model and write them back unchanged.
//
// Error messages name the document and the JSON path of the bad value:
//   manifest: layers[2].digest: invalid digest "sha256:zz"
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/digest.h"
#include "base/error.h"

namespace strata::oci::internal {

// Where a value sits: the document ("manifest") and the path inside it ("layers[2]").
class JsonPath {
 public:
  explicit JsonPath(std::string document) : document_(std::move(document)) {}

  JsonPath Field(std::string_view key) const;
  JsonPath Element(size_t index) const;
  // "manifest: layers[2]", or just "manifest" at the top.
  std::string ToString() const;

  // InvalidArgument "<path>: <reason>".
  Error Invalid(std::string_view reason) const;

 private:
  std::string document_;
  std::string path_;
};

// Deepest nesting ParseJson accepts; image documents use fewer than 10 levels.
inline constexpr size_t kMaxJsonDepth = 128;

// Parses `bytes` as JSON without throwing. InvalidArgument "<document>: <parser message>",
// also for nesting deeper than kMaxJsonDepth.
Result<nlohmann::json> ParseJson(std::string_view bytes, std::string_view document);

// Reads fields of one JSON object. An absent key and a JSON null read the same: as "not set".
class JsonObjectReader {
 public:
  // InvalidArgument unless `value` is an object. `value` must outlive the reader.
  static Result<JsonObjectReader> Open(const nlohmann::json& value, JsonPath path);

  const JsonPath& path() const { return path_; }

  // The raw value of `key` (nullptr when absent or null); marks the key as known.
  const nlohmann::json* Take(std::string_view key);

  Result<std::optional<std::string>> OptionalString(std::string_view key);
  Result<std::string> RequiredString(std::string_view key);
  // Absent -> "".
  Result<std::string> StringOrEmpty(std::string_view key);
  Result<std::optional<int64_t>> OptionalInt(std::string_view key);
  Result<int64_t> RequiredInt(std::string_view key);
  Result<std::optional<bool>> OptionalBool(std::string_view key);
  Result<std::optional<std::vector<std::string>>> OptionalStringList(std::string_view key);
  // Absent -> empty.
  Result<std::vector<std::string>> StringList(std::string_view key);
  // {"k": "v", ...}; absent -> empty.
  Result<std::map<std::string, std::string>> StringMap(std::string_view key);
  // {"80/tcp": {}, ...} (Docker's set-as-object); absent -> empty. Values are not kept.
  Result<std::set<std::string>> KeySet(std::string_view key);
  Result<std::optional<Digest>> OptionalDigest(std::string_view key);
  Result<Digest> RequiredDigest(std::string_view key);

  // The keys nobody took, as a JSON object (possibly empty).
  nlohmann::json UnknownFields() const;

 private:
  JsonObjectReader(const nlohmann::json& object, JsonPath path) : object_(&object), path_(std::move(path)) {}

  const nlohmann::json* object_;
  JsonPath path_;
  std::set<std::string, std::less<>> taken_;
};

// Copies every key of `unknown` (an object or null) into `out` that `out` does not have yet,
// so modelled fields win over stale copies.
void MergeUnknownFields(const nlohmann::json& unknown, nlohmann::json& out);

// Serialises without throwing: invalid UTF-8 in strings (only possible in values a caller
// built by hand) is replaced by U+FFFD.
std::string DumpJson(const nlohmann::json& value);

}  // namespace strata::oci::internal
