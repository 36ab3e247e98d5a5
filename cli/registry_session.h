// What every command that talks to a registry shares: its flags (--plain-http,
// --certs-dir, --stall-timeout) and the client objects built from them (transport,
// credentials, authorizer, resolver).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "oci/reference.h"
#include "registry/auth.h"
#include "registry/credentials.h"
#include "registry/http_client.h"
#include "registry/resolver.h"

namespace strata::cli {

struct RegistryFlags {
  bool plain_http = false;
  // certs.d tree: per-host ca.crt/client.cert/client.key and hosts.toml (mirrors).
  std::string certs_dir;  // "" = $STRATA_CERTS_DIR, else /etc/strata/certs.d
  int stall_timeout_seconds = 30;
};

// Adds --plain-http, --certs-dir and --stall-timeout to `command`.
void AddRegistryFlags(CLI::App* command, RegistryFlags& flags);

// The registry client of one command run. Members reference each other: not movable.
class RegistrySession {
 public:
  // `references`: the registries this command talks to; --plain-http applies to their
  // upstream hosts. Die()s when the transport cannot be set up.
  static std::unique_ptr<RegistrySession> OpenOrDie(const RegistryFlags& flags,
                                                    const std::vector<oci::Reference>& references);

  registry::HttpClient& client() { return *client_; }
  registry::CredentialStore& credentials() { return *credentials_; }
  registry::Authorizer& authorizer() { return *authorizer_; }
  registry::Resolver& resolver() { return *resolver_; }

 private:
  RegistrySession() = default;
  std::unique_ptr<registry::HttpClient> client_;
  std::shared_ptr<registry::CredentialStore> credentials_;
  std::unique_ptr<registry::Authorizer> authorizer_;
  std::unique_ptr<registry::Resolver> resolver_;
};

}  // namespace strata::cli
