#include "registry/registry_errors.h"

#include <nlohmann/json.hpp>

#include "registry/retry.h"

namespace strata::registry {

RegistryErrors ParseRegistryErrors(std::string_view body) {
  RegistryErrors errors;
  auto doc = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object() || !doc.contains("errors") || !doc["errors"].is_array()) return errors;
  for (const auto& entry : doc["errors"]) {
    if (!entry.is_object()) continue;
    std::string code = entry.contains("code") && entry["code"].is_string() ? entry["code"].get<std::string>() : "";
    std::string message =
        entry.contains("message") && entry["message"].is_string() ? entry["message"].get<std::string>() : "";
    if (code == "MANIFEST_UNKNOWN" || code == "NAME_UNKNOWN" || code == "BLOB_UNKNOWN") errors.unknown = true;
    if (!errors.text.empty()) errors.text += "; ";
    errors.text += message.empty() ? code : fmt::format("{}: {}", code, message);
  }
  return errors;
}

Error StatusError(const HttpResponse& response, std::string_view what) {
  RegistryErrors errors = ParseRegistryErrors(response.body);
  std::string detail = errors.text.empty() ? fmt::format("status {}", response.status)
                                           : fmt::format("status {}: {}", response.status, errors.text);
  if (response.status == 404 || errors.unknown) {
    return Error(ErrorCode::kNotFound, fmt::format("{} not found ({})", what, detail));
  }
  if (response.status == 401 || response.status == 403) {
    return Error(ErrorCode::kFailedPrecondition, fmt::format("{}: access denied ({})", what, detail));
  }
  if (IsRetryableStatus(response.status)) {
    return Error(ErrorCode::kUnavailable, fmt::format("{}: registry unavailable ({})", what, detail));
  }
  return Error(ErrorCode::kFailedPrecondition, fmt::format("{}: unexpected answer ({})", what, detail));
}

}  // namespace strata::registry
