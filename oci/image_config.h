// ImageConfig: the image configuration blob (OCI application/vnd.oci.image.config.v1+json,
// Docker application/vnd.docker.container.image.v1+json): platform, the container defaults,
// the uncompressed layer digests (rootfs.diff_ids) and the build history.
//
// Every object keeps the keys it does not model (Healthcheck, container_config, ...) in
// unknown_fields, so parse + Serialize() drops nothing. Callers keep the original bytes for
// anything content-addressed.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/digest.h"
#include "base/error.h"
#include "oci/platform.h"

namespace strata::oci {

// The "config" object: defaults for containers started from the image (Docker's spelling of
// keys: Env, Cmd, Entrypoint, WorkingDir, User, Labels, ExposedPorts, Volumes, StopSignal).
struct ContainerConfig {
  std::vector<std::string> env;  // "KEY=value"
  // nullopt when absent or null; an empty list is a different, explicit value.
  std::optional<std::vector<std::string>> cmd;
  std::optional<std::vector<std::string>> entrypoint;
  std::string working_dir;
  std::string user;
  std::map<std::string, std::string> labels;
  std::set<std::string> exposed_ports;  // "80/tcp"; JSON {"80/tcp": {}}
  std::set<std::string> volumes;        // "/data"; JSON {"/data": {}}
  std::string stop_signal;
  nlohmann::json unknown_fields = nlohmann::json::object();

  // True when nothing is set (then ImageConfig::ToJson omits "config").
  bool empty() const;
  bool operator==(const ContainerConfig&) const = default;
};

struct RootFs {
  std::string type = "layers";
  std::vector<Digest> diff_ids;  // sha256 of each uncompressed layer tar, base first
  nlohmann::json unknown_fields = nlohmann::json::object();

  bool operator==(const RootFs&) const = default;
};

struct HistoryEntry {
  std::optional<std::string> created;  // RFC 3339, as written
  std::string created_by;
  std::string author;
  std::string comment;
  bool empty_layer = false;  // true: this step added no entry to rootfs.diff_ids
  nlohmann::json unknown_fields = nlohmann::json::object();

  bool operator==(const HistoryEntry&) const = default;
};

struct ImageConfig {
  std::string architecture;
  std::string os;
  std::string os_version;                // Windows "10.0.20348.2762"
  std::vector<std::string> os_features;  // Windows "win32k"
  std::string variant;
  std::optional<std::string> created;  // RFC 3339, as written
  std::string author;
  ContainerConfig config;
  RootFs rootfs;
  std::vector<HistoryEntry> history;
  nlohmann::json unknown_fields = nlohmann::json::object();

  // Never throws. Requires architecture, os and rootfs {type "layers", diff_ids of valid
  // digests}; InvalidArgument naming the field ("image config: rootfs.diff_ids[1]: ...")
  // otherwise, or for a field of the wrong JSON type.
  static Result<ImageConfig> Parse(std::string_view json);
  static Result<ImageConfig> FromJson(const nlohmann::json& value);

  nlohmann::json ToJson() const;
  std::string Serialize() const;

  // The platform fields as a Platform (not normalised).
  Platform platform() const;

  bool operator==(const ImageConfig&) const = default;
};

}  // namespace strata::oci
