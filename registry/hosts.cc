#include "registry/hosts.h"

#include <fmt/format.h>

#include <spdlog/spdlog.h>

#include "registry/url.h"

namespace strata::registry {

std::string RegistryHost::ApiUrl() const { return fmt::format("{}://{}{}/", scheme, host, api_root); }

std::string RegistryHost::RepositoryUrl(std::string_view repository) const {
  return fmt::format("{}://{}{}/{}/", scheme, host, api_root, repository);
}

RegistryHost HostsConfig::Upstream(const oci::Reference& reference) const {
  RegistryHost host;
  host.host = reference.ApiHost();
  bool plain = options_.plain_http_hosts.contains(host.host) || DefaultsToPlainHttp(host.host);
  host.scheme = plain ? "http" : "https";
  return host;
}

// TODO(hosts.toml): read mirrors from options_.config_dir.
Result<std::vector<RegistryHost>> HostsConfig::HostsFor(const oci::Reference& reference) const {
  return std::vector<RegistryHost>{Upstream(reference)};
}

}  // namespace strata::registry

namespace strata::registry {

std::vector<RegistryHost> HostsWith(const std::vector<RegistryHost>& hosts, Capability capability) {
  std::vector<RegistryHost> chosen;
  for (const RegistryHost& host : hosts) {
    if (host.Can(capability)) chosen.push_back(host);
  }
  return chosen;
}

namespace internal {

void LogHostFallback(const RegistryHost& host, std::string_view what, const Error& error) {
  spdlog::info("{}: {} failed ({}); trying the next host", what, host.host, error.message());
}

Error AllHostsFailed(std::string_view what, const std::vector<std::pair<std::string, Error>>& failures) {
  if (failures.empty()) {
    return Error(ErrorCode::kFailedPrecondition, fmt::format("{}: no configured host can serve it", what));
  }
  // The upstream's (last) error decides the code; the mirrors' errors follow as context.
  const Error& last = failures.back().second;
  std::string message = last.message();
  for (size_t i = 0; i + 1 < failures.size(); ++i) {
    message += fmt::format("; mirror {}: {}", failures[i].first, failures[i].second.message());
  }
  return Error(last.code(), message);
}

}  // namespace internal
}  // namespace strata::registry
