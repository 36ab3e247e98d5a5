// Manifest: an OCI image manifest or a Docker schema 2 manifest (one platform's image:
// config + ordered layers).
//
// Manifests are content-addressed: callers keep the original bytes for storing, pushing and
// digest checks. Serialize() is for building new manifests; its key order is stable
// (sorted) but will generally not reproduce someone else's bytes.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "oci/descriptor.h"

namespace strata::oci {

// The most layers a manifest may list: twice what kernel overlayfs can stack (500), so
// copies of any image a runtime can run pass, while a hostile manifest cannot make a pull
// plan (and record, each snapshot naming all its parents) tens of thousands of layers.
inline constexpr size_t kMaxManifestLayers = 1000;

struct Manifest {
  int schema_version = 2;
  // kOciManifest or kDockerManifest; "" when the document has none (allowed for OCI).
  std::string media_type;
  std::optional<std::string> artifact_type;
  Descriptor config;
  std::vector<Descriptor> layers;  // base layer first
  std::optional<Descriptor> subject;
  std::map<std::string, std::string> annotations;
  nlohmann::json unknown_fields = nlohmann::json::object();

  // Never throws. InvalidArgument naming the field ("manifest: layers[2].digest: ...") for
  // malformed JSON, a schemaVersion other than 2, a mediaType that is not a manifest type,
  // an index posing as a manifest ("manifests" without mediaType), a missing config or
  // layers, more than kMaxManifestLayers layers, or any bad descriptor. Unknown keys are kept in unknown_fields.
  static Result<Manifest> Parse(std::string_view json);
  static Result<Manifest> FromJson(const nlohmann::json& value);

  // The document; unknown_fields are written back (modelled fields take precedence).
  nlohmann::json ToJson() const;
  std::string Serialize() const;

  bool operator==(const Manifest&) const = default;
};

}  // namespace strata::oci
