#include "registry/session.h"

#include <algorithm>
#include <cstdlib>

#include "registry/hosts.h"

namespace strata::registry {

std::filesystem::path DefaultCertsDir() {
  const char* env = std::getenv("STRATA_CERTS_DIR");
  return env != nullptr && *env != '\0' ? env : "/etc/strata/certs.d";
}

Result<std::unique_ptr<Session>> Session::Open(const SessionOptions& options,
                                               const std::vector<oci::Reference>& references) {
  const std::filesystem::path certs_dir = options.certs_dir.empty() ? DefaultCertsDir() : options.certs_dir;
  HostsOptions hosts_options{.config_dir = certs_dir};
  if (options.plain_http) {
    for (const oci::Reference& reference : references) hosts_options.plain_http_hosts.insert(reference.ApiHost());
  }
  HostsConfig hosts(std::move(hosts_options));

  HttpClientOptions client_options;
  client_options.certs_dir = certs_dir;
  client_options.stall_timeout = std::max(options.stall_timeout, std::chrono::seconds(1));
  // hosts.toml's skip_verify: the transport learns these hosts once, up front.
  for (const oci::Reference& reference : references) {
    STRATA_ASSIGN_OR_RETURN(std::vector<RegistryHost> registry_hosts, hosts.HostsFor(reference));
    for (const RegistryHost& host : registry_hosts) {
      if (host.skip_verify) client_options.insecure_skip_verify_hosts.insert(host.host);
    }
  }

  std::unique_ptr<Session> session(new Session());
  STRATA_ASSIGN_OR_RETURN(session->client_, HttpClient::Create(client_options));
  session->credentials_ = std::make_shared<CredentialStore>(options.credentials);
  session->authorizer_ = std::make_unique<Authorizer>(
      *session->client_, [credentials = session->credentials_](std::string_view host) {
        return credentials->Lookup(host);
      });
  ResolverOptions resolver_options;
  resolver_options.hosts = std::move(hosts);
  session->resolver_ = std::make_unique<Resolver>(*session->authorizer_, std::move(resolver_options));
  return session;
}

}  // namespace strata::registry
