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

std::vector<std::string> ParseRegistryWarnings(const std::vector<std::string_view>& header_values) {
  std::vector<std::string> warnings;
  for (std::string_view value : header_values) {
    // warning = warn-code SP warn-agent SP quoted-text [SP warn-date], comma-separated.
    size_t pos = 0;
    while (pos < value.size()) {
      while (pos < value.size() && (value[pos] == ' ' || value[pos] == ',')) ++pos;
      const bool is_299 = value.substr(pos, 4) == "299 ";
      const size_t open = value.find('"', pos);
      if (open == std::string_view::npos) break;
      std::string text;
      size_t i = open + 1;
      for (; i < value.size() && value[i] != '"'; ++i) {
        if (value[i] == '\\' && i + 1 < value.size()) ++i;
        text += value[i];
      }
      if (i >= value.size()) break;  // unterminated: ignore the rest
      if (is_299 && !text.empty()) warnings.push_back(std::move(text));
      pos = value.find(',', i + 1);
      if (pos == std::string_view::npos) break;
      // A warn-date is quoted too and may contain a comma ("Tue, 15 Nov ..."): skip it.
      const size_t next_quote = value.find('"', i + 1);
      if (next_quote != std::string_view::npos && next_quote < pos) {
        const size_t close = value.find('"', next_quote + 1);
        if (close == std::string_view::npos) break;
        pos = value.find(',', close + 1);
        if (pos == std::string_view::npos) break;
      }
    }
  }
  return warnings;
}

}  // namespace strata::registry
