#include "oci/image_config.h"

#include "oci/json_fields.h"

namespace strata::oci {
namespace {

using internal::JsonObjectReader;
using internal::JsonPath;
using Json = nlohmann::json;

constexpr std::string_view kDocument = "image config";

Result<ContainerConfig> ParseContainerConfig(const Json& value, const JsonPath& path) {
  STRATA_ASSIGN_OR_RETURN(JsonObjectReader reader, JsonObjectReader::Open(value, path));
  ContainerConfig config;
  STRATA_ASSIGN_OR_RETURN(config.env, reader.StringList("Env"));
  STRATA_ASSIGN_OR_RETURN(config.cmd, reader.OptionalStringList("Cmd"));
  STRATA_ASSIGN_OR_RETURN(config.entrypoint, reader.OptionalStringList("Entrypoint"));
  STRATA_ASSIGN_OR_RETURN(config.working_dir, reader.StringOrEmpty("WorkingDir"));
  STRATA_ASSIGN_OR_RETURN(config.user, reader.StringOrEmpty("User"));
  STRATA_ASSIGN_OR_RETURN(config.labels, reader.StringMap("Labels"));
  STRATA_ASSIGN_OR_RETURN(config.exposed_ports, reader.KeySet("ExposedPorts"));
  STRATA_ASSIGN_OR_RETURN(config.volumes, reader.KeySet("Volumes"));
  STRATA_ASSIGN_OR_RETURN(config.stop_signal, reader.StringOrEmpty("StopSignal"));
  config.unknown_fields = reader.UnknownFields();
  return config;
}

Json KeySetToJson(const std::set<std::string>& keys) {
  Json json = Json::object();
  for (const std::string& key : keys) json[key] = Json::object();
  return json;
}

Json ContainerConfigToJson(const ContainerConfig& config) {
  Json json = Json::object();
  if (!config.env.empty()) json["Env"] = config.env;
  if (config.cmd) json["Cmd"] = *config.cmd;
  if (config.entrypoint) json["Entrypoint"] = *config.entrypoint;
  if (!config.working_dir.empty()) json["WorkingDir"] = config.working_dir;
  if (!config.user.empty()) json["User"] = config.user;
  if (!config.labels.empty()) json["Labels"] = config.labels;
  if (!config.exposed_ports.empty()) json["ExposedPorts"] = KeySetToJson(config.exposed_ports);
  if (!config.volumes.empty()) json["Volumes"] = KeySetToJson(config.volumes);
  if (!config.stop_signal.empty()) json["StopSignal"] = config.stop_signal;
  internal::MergeUnknownFields(config.unknown_fields, json);
  return json;
}

Result<RootFs> ParseRootFs(const Json& value, const JsonPath& path) {
  STRATA_ASSIGN_OR_RETURN(JsonObjectReader reader, JsonObjectReader::Open(value, path));
  RootFs rootfs;
  STRATA_ASSIGN_OR_RETURN(rootfs.type, reader.RequiredString("type"));
  if (rootfs.type != "layers") {
    return Fail(path.Field("type").Invalid(fmt::format("\"{}\" is not supported (want \"layers\")", rootfs.type)));
  }
  STRATA_ASSIGN_OR_RETURN(std::vector<std::string> diff_ids, reader.StringList("diff_ids"));
  rootfs.diff_ids.reserve(diff_ids.size());
  for (size_t i = 0; i < diff_ids.size(); ++i) {
    Result<Digest> digest = Digest::Parse(diff_ids[i]);
    if (!digest) return Fail(path.Field("diff_ids").Element(i).Invalid(digest.error().message()));
    rootfs.diff_ids.push_back(std::move(*digest));
  }
  rootfs.unknown_fields = reader.UnknownFields();
  return rootfs;
}

Result<HistoryEntry> ParseHistoryEntry(const Json& value, const JsonPath& path) {
  STRATA_ASSIGN_OR_RETURN(JsonObjectReader reader, JsonObjectReader::Open(value, path));
  HistoryEntry entry;
  STRATA_ASSIGN_OR_RETURN(entry.created, reader.OptionalString("created"));
  STRATA_ASSIGN_OR_RETURN(entry.created_by, reader.StringOrEmpty("created_by"));
  STRATA_ASSIGN_OR_RETURN(entry.author, reader.StringOrEmpty("author"));
  STRATA_ASSIGN_OR_RETURN(entry.comment, reader.StringOrEmpty("comment"));
  STRATA_ASSIGN_OR_RETURN(std::optional<bool> empty_layer, reader.OptionalBool("empty_layer"));
  entry.empty_layer = empty_layer.value_or(false);
  entry.unknown_fields = reader.UnknownFields();
  return entry;
}

Json HistoryEntryToJson(const HistoryEntry& entry) {
  Json json = Json::object();
  if (entry.created) json["created"] = *entry.created;
  if (!entry.created_by.empty()) json["created_by"] = entry.created_by;
  if (!entry.author.empty()) json["author"] = entry.author;
  if (!entry.comment.empty()) json["comment"] = entry.comment;
  if (entry.empty_layer) json["empty_layer"] = true;
  internal::MergeUnknownFields(entry.unknown_fields, json);
  return json;
}

}  // namespace

bool ContainerConfig::empty() const { return *this == ContainerConfig(); }

Result<ImageConfig> ImageConfig::FromJson(const Json& value) {
  STRATA_ASSIGN_OR_RETURN(JsonObjectReader reader, JsonObjectReader::Open(value, JsonPath(std::string(kDocument))));
  const JsonPath& path = reader.path();
  ImageConfig image;
  STRATA_ASSIGN_OR_RETURN(image.architecture, reader.RequiredString("architecture"));
  STRATA_ASSIGN_OR_RETURN(image.os, reader.RequiredString("os"));
  STRATA_ASSIGN_OR_RETURN(image.os_version, reader.StringOrEmpty("os.version"));
  STRATA_ASSIGN_OR_RETURN(image.os_features, reader.StringList("os.features"));
  STRATA_ASSIGN_OR_RETURN(image.variant, reader.StringOrEmpty("variant"));
  STRATA_ASSIGN_OR_RETURN(image.created, reader.OptionalString("created"));
  STRATA_ASSIGN_OR_RETURN(image.author, reader.StringOrEmpty("author"));

  if (const Json* config = reader.Take("config")) {
    STRATA_ASSIGN_OR_RETURN(image.config, ParseContainerConfig(*config, path.Field("config")));
  }
  const Json* rootfs = reader.Take("rootfs");
  if (rootfs == nullptr) return Fail(path.Field("rootfs").Invalid("missing"));
  STRATA_ASSIGN_OR_RETURN(image.rootfs, ParseRootFs(*rootfs, path.Field("rootfs")));

  if (const Json* history = reader.Take("history")) {
    if (!history->is_array()) {
      return Fail(path.Field("history").Invalid(fmt::format("expected an array, got {}", history->type_name())));
    }
    image.history.reserve(history->size());
    for (size_t i = 0; i < history->size(); ++i) {
      STRATA_ASSIGN_OR_RETURN(HistoryEntry entry, ParseHistoryEntry((*history)[i], path.Field("history").Element(i)));
      image.history.push_back(std::move(entry));
    }
  }
  image.unknown_fields = reader.UnknownFields();
  return image;
}

Result<ImageConfig> ImageConfig::Parse(std::string_view json) {
  STRATA_ASSIGN_OR_RETURN(Json value, internal::ParseJson(json, kDocument));
  return FromJson(value);
}

Json ImageConfig::ToJson() const {
  Json json = Json::object();
  json["architecture"] = architecture;
  json["os"] = os;
  if (!os_version.empty()) json["os.version"] = os_version;
  if (!os_features.empty()) json["os.features"] = os_features;
  if (!variant.empty()) json["variant"] = variant;
  if (created) json["created"] = *created;
  if (!author.empty()) json["author"] = author;
  if (!config.empty()) json["config"] = ContainerConfigToJson(config);

  Json rootfs_json = Json::object();
  rootfs_json["type"] = rootfs.type;
  rootfs_json["diff_ids"] = Json::array();
  for (const Digest& diff_id : rootfs.diff_ids) rootfs_json["diff_ids"].push_back(diff_id.ToString());
  internal::MergeUnknownFields(rootfs.unknown_fields, rootfs_json);
  json["rootfs"] = std::move(rootfs_json);

  if (!history.empty()) {
    json["history"] = Json::array();
    for (const HistoryEntry& entry : history) json["history"].push_back(HistoryEntryToJson(entry));
  }
  internal::MergeUnknownFields(unknown_fields, json);
  return json;
}

std::string ImageConfig::Serialize() const { return internal::DumpJson(ToJson()); }

Platform ImageConfig::platform() const {
  Platform platform;
  platform.os = os;
  platform.architecture = architecture;
  platform.variant = variant;
  platform.os_version = os_version;
  platform.os_features = os_features;
  return platform;
}

}  // namespace strata::oci
