#include "cli/registry_session.h"

#include <cstdlib>

#include "cli/app.h"

namespace strata::cli {

void AddRegistryFlags(CLI::App* command, RegistryFlags& flags) {
  command->add_flag("--plain-http", flags.plain_http,
                    "Talk to the registry over plain HTTP (loopback registries always may)");
  command->add_option("--certs-dir", flags.certs_dir,
                      "Per-registry TLS files and hosts.toml mirrors (default: $STRATA_CERTS_DIR or "
                      "/etc/strata/certs.d)");
  command->add_option("--stall-timeout", flags.stall_timeout_seconds,
                      "Fail a transfer after this many seconds without data")
      ->capture_default_str();
}

std::unique_ptr<RegistrySession> RegistrySession::OpenOrDie(const RegistryFlags& flags,
                                                            const std::vector<oci::Reference>& references) {
  std::filesystem::path certs_dir = flags.certs_dir;
  if (certs_dir.empty()) {
    const char* env = std::getenv("STRATA_CERTS_DIR");
    certs_dir = env != nullptr && *env != '\0' ? env : "/etc/strata/certs.d";
  }
  registry::HostsOptions hosts_options{.config_dir = certs_dir};
  if (flags.plain_http) {
    for (const oci::Reference& reference : references) hosts_options.plain_http_hosts.insert(reference.ApiHost());
  }
  registry::HostsConfig hosts(std::move(hosts_options));

  registry::HttpClientOptions client_options;
  client_options.certs_dir = certs_dir;
  client_options.stall_timeout = std::chrono::seconds(std::max(1, flags.stall_timeout_seconds));
  // hosts.toml's skip_verify: the transport learns these hosts once, up front.
  for (const oci::Reference& reference : references) {
    for (const registry::RegistryHost& host : OrDie(hosts.HostsFor(reference))) {
      if (host.skip_verify) client_options.insecure_skip_verify_hosts.insert(host.host);
    }
  }

  std::unique_ptr<RegistrySession> session(new RegistrySession());
  session->client_ = OrDie(registry::HttpClient::Create(client_options));
  session->credentials_ =
      std::make_shared<registry::CredentialStore>(registry::CredentialStoreOptions::FromEnvironment());
  session->authorizer_ = std::make_unique<registry::Authorizer>(
      *session->client_, [credentials = session->credentials_](std::string_view host) {
        return credentials->Lookup(host);
      });
  registry::ResolverOptions resolver_options;
  resolver_options.hosts = std::move(hosts);
  session->resolver_ = std::make_unique<registry::Resolver>(*session->authorizer_, std::move(resolver_options));
  return session;
}

}  // namespace strata::cli
