#include "oci/descriptor.h"

#include "oci/json_parsers.h"

namespace strata::oci {

const Digest& EmptyBlobDigest() {
  static const Digest kEmpty = Digest::Of("");
  return kEmpty;
}

Result<Descriptor> Descriptor::FromJson(const nlohmann::json& value, std::string_view where) {
  return internal::DescriptorFromJson(value, internal::JsonPath(std::string(where)));
}

Result<Descriptor> internal::DescriptorFromJson(const nlohmann::json& value, const JsonPath& path) {
  STRATA_ASSIGN_OR_RETURN(JsonObjectReader reader, JsonObjectReader::Open(value, path));
  STRATA_ASSIGN_OR_RETURN(std::string media_type, reader.RequiredString("mediaType"));
  STRATA_ASSIGN_OR_RETURN(Digest digest, reader.RequiredDigest("digest"));
  STRATA_ASSIGN_OR_RETURN(int64_t size, reader.RequiredInt("size"));
  if (size < 0) return Fail(reader.path().Field("size").Invalid(fmt::format("negative size {}", size)));
  Descriptor descriptor;
  descriptor.media_type = std::move(media_type);
  descriptor.digest = std::move(digest);
  descriptor.size = size;
  STRATA_ASSIGN_OR_RETURN(descriptor.urls, reader.StringList("urls"));
  STRATA_ASSIGN_OR_RETURN(descriptor.annotations, reader.StringMap("annotations"));
  if (const nlohmann::json* platform = reader.Take("platform")) {
    STRATA_ASSIGN_OR_RETURN(descriptor.platform,
                            PlatformFromJson(*platform, path.Field("platform")));
  }
  STRATA_ASSIGN_OR_RETURN(descriptor.artifact_type, reader.OptionalString("artifactType"));
  descriptor.unknown_fields = reader.UnknownFields();
  return descriptor;
}

Result<Descriptor> Descriptor::Parse(std::string_view json) {
  STRATA_ASSIGN_OR_RETURN(nlohmann::json value, internal::ParseJson(json, "descriptor"));
  return FromJson(value);
}

nlohmann::json Descriptor::ToJson() const {
  nlohmann::json json = nlohmann::json::object();
  json["mediaType"] = media_type;
  json["digest"] = digest.ToString();
  json["size"] = size;
  if (!urls.empty()) json["urls"] = urls;
  if (!annotations.empty()) json["annotations"] = annotations;
  if (platform) json["platform"] = platform->ToJson();
  if (artifact_type) json["artifactType"] = *artifact_type;
  internal::MergeUnknownFields(unknown_fields, json);
  return json;
}

std::string Descriptor::Serialize() const { return internal::DumpJson(ToJson()); }

Result<std::vector<Descriptor>> internal::DescriptorListFromJson(const nlohmann::json* value, const JsonPath& path) {
  if (value == nullptr) return Fail(path.Invalid("missing"));
  if (!value->is_array()) return Fail(path.Invalid(fmt::format("expected an array, got {}", value->type_name())));
  std::vector<Descriptor> list;
  list.reserve(value->size());
  for (size_t i = 0; i < value->size(); ++i) {
    STRATA_ASSIGN_OR_RETURN(Descriptor entry, DescriptorFromJson((*value)[i], path.Element(i)));
    list.push_back(std::move(entry));
  }
  return list;
}

}  // namespace strata::oci
