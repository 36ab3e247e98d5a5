#include "oci/manifest.h"

#include "oci/json_parsers.h"
#include "oci/media_types.h"

namespace strata::oci {
namespace {

constexpr std::string_view kDocument = "manifest";

}  // namespace

Result<Manifest> Manifest::FromJson(const nlohmann::json& value) {
  using internal::JsonObjectReader;
  STRATA_ASSIGN_OR_RETURN(JsonObjectReader reader,
                          JsonObjectReader::Open(value, internal::JsonPath(std::string(kDocument))));
  const internal::JsonPath& path = reader.path();

  STRATA_ASSIGN_OR_RETURN(int64_t schema_version, reader.RequiredInt("schemaVersion"));
  if (schema_version != 2) {
    return Fail(path.Field("schemaVersion").Invalid(fmt::format("version {} is not supported (want 2)", schema_version)));
  }
  STRATA_ASSIGN_OR_RETURN(std::string media_type, reader.StringOrEmpty("mediaType"));
  if (!media_type.empty() && !IsManifest(media_type)) {
    return Fail(path.Field("mediaType").Invalid(fmt::format("\"{}\" is not an image manifest type", media_type)));
  }
  if (media_type.empty() && value.contains("manifests")) {
    return Fail(path.Invalid("has \"manifests\" and no mediaType: this is an index, not a manifest"));
  }

  const nlohmann::json* config_json = reader.Take("config");
  if (config_json == nullptr) return Fail(path.Field("config").Invalid("missing"));
  STRATA_ASSIGN_OR_RETURN(Descriptor config, internal::DescriptorFromJson(*config_json, path.Field("config")));

  Manifest manifest;
  manifest.media_type = std::move(media_type);
  manifest.config = std::move(config);
  STRATA_ASSIGN_OR_RETURN(manifest.artifact_type, reader.OptionalString("artifactType"));

  const nlohmann::json* layers = reader.Take("layers");
  if (layers != nullptr && layers->is_array() && layers->size() > kMaxManifestLayers) {
    return Fail(path.Field("layers").Invalid(
        fmt::format("{} layers, over the limit of {} an image may have", layers->size(), kMaxManifestLayers)));
  }
  STRATA_ASSIGN_OR_RETURN(manifest.layers, internal::DescriptorListFromJson(layers, path.Field("layers")));

  if (const nlohmann::json* subject = reader.Take("subject")) {
    STRATA_ASSIGN_OR_RETURN(manifest.subject, internal::DescriptorFromJson(*subject, path.Field("subject")));
  }
  STRATA_ASSIGN_OR_RETURN(manifest.annotations, reader.StringMap("annotations"));
  manifest.unknown_fields = reader.UnknownFields();
  return manifest;
}

Result<Manifest> Manifest::Parse(std::string_view json) {
  STRATA_ASSIGN_OR_RETURN(nlohmann::json value, internal::ParseJson(json, kDocument));
  return FromJson(value);
}

nlohmann::json Manifest::ToJson() const {
  nlohmann::json json = nlohmann::json::object();
  json["schemaVersion"] = schema_version;
  if (!media_type.empty()) json["mediaType"] = media_type;
  if (artifact_type) json["artifactType"] = *artifact_type;
  json["config"] = config.ToJson();
  json["layers"] = nlohmann::json::array();
  for (const Descriptor& layer : layers) json["layers"].push_back(layer.ToJson());
  if (subject) json["subject"] = subject->ToJson();
  if (!annotations.empty()) json["annotations"] = annotations;
  internal::MergeUnknownFields(unknown_fields, json);
  return json;
}

std::string Manifest::Serialize() const { return internal::DumpJson(ToJson()); }

}  // namespace strata::oci
