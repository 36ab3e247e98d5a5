// Registry hosts: where requests for a registry go. A registry (as a reference names it:
// "docker.io", "127.0.0.1:5000") is served by an ordered list of hosts — its mirrors first,
// the upstream last — each with the operations it may serve.
//
// Configuration follows containerd's hosts.toml layout, read from
// <config_dir>/<registry>/hosts.toml (falling back to <config_dir>/_default/hosts.toml):
//
//   server = "https://registry-1.docker.io"        # the upstream (optional)
//   [host."https://mirror.example:5000"]
//     capabilities = ["pull", "resolve"]           # default: all three
//     skip_verify = false
//     override_path = false                        # true: the URL path is the API root
//
// Without a file the registry is its own only host, at Reference::ApiHost(), in https
// unless it is a loopback host (DefaultsToPlainHttp) or listed in plain_http_hosts.
#pragma once

#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "oci/reference.h"

namespace strata::registry {

enum Capability : unsigned {
  kCapabilityPull = 1u << 0,     // GET/HEAD blobs
  kCapabilityResolve = 1u << 1,  // GET/HEAD manifests by tag
  kCapabilityPush = 1u << 2,     // uploads and manifest PUT
  kCapabilityAll = kCapabilityPull | kCapabilityResolve | kCapabilityPush,
};

// One host that serves a registry's API.
struct RegistryHost {
  std::string scheme = "https";  // "http" or "https"
  std::string host;              // "host[:port]" as in the URL; also the key for credentials and certs.d
  std::string api_root = "/v2";  // path prefix of the API, no trailing slash
  unsigned capabilities = kCapabilityAll;
  bool skip_verify = false;
  bool mirror = false;           // false for the registry's own upstream

  bool Can(Capability capability) const { return (capabilities & capability) != 0; }
  // "<scheme>://<host><api_root>/<repository>/" — where blobs/, manifests/, tags/ hang.
  std::string RepositoryUrl(std::string_view repository) const;
  // "<scheme>://<host><api_root>/"
  std::string ApiUrl() const;
  bool operator==(const RegistryHost&) const = default;
};

struct HostsOptions {
  // Where <registry>/hosts.toml live; the same tree as certs.d (containerd does the same).
  std::filesystem::path config_dir = "/etc/strata/certs.d";
  // Hosts ("host[:port]") that the upstream is spoken to in plain HTTP (--plain-http).
  // Mirrors carry their scheme in their URL.
  std::set<std::string> plain_http_hosts;
};

// Thread-safe (immutable after Create; files are read on each HostsFor call, so edits
// apply to the next operation).
class HostsConfig {
 public:
  HostsConfig() = default;
  explicit HostsConfig(HostsOptions options) : options_(std::move(options)) {}

  // The hosts for `reference`'s registry: mirrors first in file order, the upstream last
  // (the file's `server` when it names one, else Upstream()).
  // InvalidArgument naming the file and line for a malformed hosts.toml.
  Result<std::vector<RegistryHost>> HostsFor(const oci::Reference& reference) const;

  // What HostsFor does with a hosts.toml's text once read; `file` names it in errors.
  // Public for the fuzz target (tests/fuzz/hosts_toml_fuzz.cc).
  Result<std::vector<RegistryHost>> ParseHostsFile(std::string_view text, const std::string& file,
                                                   const oci::Reference& reference) const;

  // The upstream alone, ignoring any configuration (also what HostsFor ends with when no
  // file names a server).
  RegistryHost Upstream(const oci::Reference& reference) const;

  const HostsOptions& options() const { return options_; }

 private:
  HostsOptions options_;
};

}  // namespace strata::registry

namespace strata::registry {

// The hosts of `hosts` that have `capability`, in order.
std::vector<RegistryHost> HostsWith(const std::vector<RegistryHost>& hosts, Capability capability);

// Runs `attempt` on each host in turn until one succeeds, logging each fallback. Returns the
// first success, or the last host's error (with the earlier hosts' errors appended) when
// every host failed; FailedPrecondition "no host of <what> can <verb>" for an empty list.
template <typename T, typename Attempt>
Result<T> TryEachHost(const std::vector<RegistryHost>& hosts, std::string_view what, Attempt&& attempt);

namespace internal {
void LogHostFallback(const RegistryHost& host, std::string_view what, const Error& error);
Error AllHostsFailed(std::string_view what, const std::vector<std::pair<std::string, Error>>& failures);
}  // namespace internal

template <typename T, typename Attempt>
Result<T> TryEachHost(const std::vector<RegistryHost>& hosts, std::string_view what, Attempt&& attempt) {
  std::vector<std::pair<std::string, Error>> failures;
  for (size_t i = 0; i < hosts.size(); ++i) {
    Result<T> result = attempt(hosts[i]);
    if (result) return result;
    if (i + 1 == hosts.size() && failures.empty()) return result;  // the common single-host case: unchanged
    if (i + 1 < hosts.size()) internal::LogHostFallback(hosts[i], what, result.error());
    failures.emplace_back(hosts[i].host, std::move(result).error());
  }
  return std::unexpected(internal::AllHostsFailed(what, failures));
}

}  // namespace strata::registry
