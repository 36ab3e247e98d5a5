// Descriptor: a typed, sized, content-addressed reference to a blob (OCI image-spec
// descriptor; Docker schema 2 uses the same shape).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/digest.h"
#include "base/error.h"
#include "oci/platform.h"

namespace strata::oci {

// sha256 of zero bytes: the digest of a default-constructed Descriptor.
const Digest& EmptyBlobDigest();

// A default-constructed Descriptor describes the empty blob (no media type, size 0).
struct Descriptor {
  std::string media_type;
  Digest digest = EmptyBlobDigest();
  int64_t size = 0;
  std::vector<std::string> urls;  // foreign / non-distributable layers: where else to fetch
  std::map<std::string, std::string> annotations;
  std::optional<Platform> platform;  // index entries
  std::optional<std::string> artifact_type;
  // Keys this struct does not model (e.g. "data"), kept for re-serialising.
  nlohmann::json unknown_fields = nlohmann::json::object();

  // Requires mediaType, digest (a valid Digest) and size (an integer >= 0); the rest is
  // optional. Errors are InvalidArgument "<where>: <field>: <reason>".
  static Result<Descriptor> FromJson(const nlohmann::json& value, std::string_view where = "descriptor");
  // Parses a descriptor document (e.g. application/vnd.oci.descriptor.v1+json).
  static Result<Descriptor> Parse(std::string_view json);

  // Empty urls/annotations and unset optionals are omitted.
  nlohmann::json ToJson() const;
  std::string Serialize() const;

  bool operator==(const Descriptor&) const = default;
};

}  // namespace strata::oci
