// Index: an OCI image index or a Docker manifest list (one entry per platform, or per
// artifact), and the choice of the entry for a platform.
//
// As with Manifest, callers keep the original bytes; Serialize() is for building new indexes.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "oci/descriptor.h"
#include "oci/platform.h"

namespace strata::oci {

struct Index {
  int schema_version = 2;
  // kOciIndex or kDockerManifestList; "" when the document has none (allowed for OCI).
  std::string media_type;
  std::optional<std::string> artifact_type;
  std::vector<Descriptor> manifests;
  std::optional<Descriptor> subject;
  std::map<std::string, std::string> annotations;
  nlohmann::json unknown_fields = nlohmann::json::object();

  // Never throws. InvalidArgument naming the field ("index: manifests[1].platform.os:
  // missing") for malformed JSON, a schemaVersion other than 2, a mediaType that is not an
  // index type, a manifest posing as an index ("layers" without mediaType), missing
  // manifests, or any bad descriptor. Unknown keys are kept in unknown_fields.
  static Result<Index> Parse(std::string_view json);
  static Result<Index> FromJson(const nlohmann::json& value);

  nlohmann::json ToJson() const;
  std::string Serialize() const;

  bool operator==(const Index&) const = default;
};

// The entry of `index` whose platform `matcher` ranks best (first of equals in index order).
// Entries without a platform are never chosen. NotFound when nothing matches; the message
// names the wanted platform and lists the platforms the index offers, e.g.
//   no manifest for platform linux/riscv64 in index (available: linux/amd64, linux/arm64/v8)
Result<Descriptor> SelectManifestForPlatform(const Index& index, const PlatformMatcher& matcher);

}  // namespace strata::oci
