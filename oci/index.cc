#include "oci/index.h"

#include <algorithm>

#include <fmt/ranges.h>

#include "oci/json_parsers.h"
#include "oci/media_types.h"

namespace strata::oci {
namespace {

constexpr std::string_view kDocument = "index";

}  // namespace

Result<Index> Index::FromJson(const nlohmann::json& value) {
  using internal::JsonObjectReader;
  STRATA_ASSIGN_OR_RETURN(JsonObjectReader reader,
                          JsonObjectReader::Open(value, internal::JsonPath(std::string(kDocument))));
  const internal::JsonPath& path = reader.path();

  STRATA_ASSIGN_OR_RETURN(int64_t schema_version, reader.RequiredInt("schemaVersion"));
  if (schema_version != 2) {
    return Fail(path.Field("schemaVersion").Invalid(fmt::format("version {} is not supported (want 2)", schema_version)));
  }
  Index index;
  STRATA_ASSIGN_OR_RETURN(index.media_type, reader.StringOrEmpty("mediaType"));
  if (!index.media_type.empty() && !IsIndex(index.media_type)) {
    return Fail(path.Field("mediaType").Invalid(fmt::format("\"{}\" is not an index type", index.media_type)));
  }
  if (index.media_type.empty() && value.contains("layers") && !value.contains("manifests")) {
    return Fail(path.Invalid("has \"layers\" and no mediaType: this is a manifest, not an index"));
  }
  STRATA_ASSIGN_OR_RETURN(index.artifact_type, reader.OptionalString("artifactType"));

  STRATA_ASSIGN_OR_RETURN(index.manifests,
                          internal::DescriptorListFromJson(reader.Take("manifests"), path.Field("manifests")));

  if (const nlohmann::json* subject = reader.Take("subject")) {
    STRATA_ASSIGN_OR_RETURN(index.subject, internal::DescriptorFromJson(*subject, path.Field("subject")));
  }
  STRATA_ASSIGN_OR_RETURN(index.annotations, reader.StringMap("annotations"));
  index.unknown_fields = reader.UnknownFields();
  return index;
}

Result<Index> Index::Parse(std::string_view json) {
  STRATA_ASSIGN_OR_RETURN(nlohmann::json value, internal::ParseJson(json, kDocument));
  return FromJson(value);
}

nlohmann::json Index::ToJson() const {
  nlohmann::json json = nlohmann::json::object();
  json["schemaVersion"] = schema_version;
  if (!media_type.empty()) json["mediaType"] = media_type;
  if (artifact_type) json["artifactType"] = *artifact_type;
  json["manifests"] = nlohmann::json::array();
  for (const Descriptor& entry : manifests) json["manifests"].push_back(entry.ToJson());
  if (subject) json["subject"] = subject->ToJson();
  if (!annotations.empty()) json["annotations"] = annotations;
  internal::MergeUnknownFields(unknown_fields, json);
  return json;
}

std::string Index::Serialize() const { return internal::DumpJson(ToJson()); }

Result<Descriptor> SelectManifestForPlatform(const Index& index, const PlatformMatcher& matcher) {
  const Descriptor* best = nullptr;
  std::vector<std::string> available;
  for (const Descriptor& entry : index.manifests) {
    if (!entry.platform) continue;
    std::string name = entry.platform->String();
    if (std::find(available.begin(), available.end(), name) == available.end()) available.push_back(std::move(name));
    if (!matcher.Match(*entry.platform)) continue;
    if (best == nullptr || matcher.Less(*entry.platform, *best->platform)) best = &entry;
  }
  if (best == nullptr) {
    return Fail(ErrorCode::kNotFound, "no manifest for platform {} in index (available: {})",
                matcher.wanted().String(), available.empty() ? "none" : fmt::format("{}", fmt::join(available, ", ")));
  }
  return *best;
}

}  // namespace strata::oci
