// Session: the registry client objects one operation (a pull, a push, a copy) is built on —
// transport, credentials, authorizer, resolver — set up from the options `strata pull/push`
// take. The CLI and the daemon build theirs here, so both reach registries the same way.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <vector>

#include "base/error.h"
#include "oci/reference.h"
#include "registry/auth.h"
#include "registry/credentials.h"
#include "registry/http_client.h"
#include "registry/resolver.h"

namespace strata::registry {

struct SessionOptions {
  // Speak plain HTTP to the upstream registries of the session's references (--plain-http).
  bool plain_http = false;
  // certs.d tree: per-host ca.crt/client.cert/client.key and hosts.toml (mirrors,
  // skip_verify). Empty = DefaultCertsDir().
  std::filesystem::path certs_dir;
  std::chrono::seconds stall_timeout{30};
  // Where credentials are looked up (CredentialStoreOptions::FromEnvironment by default).
  CredentialStoreOptions credentials = CredentialStoreOptions::FromEnvironment();
};

// $STRATA_CERTS_DIR when set and not empty, else /etc/strata/certs.d.
std::filesystem::path DefaultCertsDir();

// The registry client of one operation. Members reference each other: not movable.
// Thread-safe as its parts are (a pull's parallel fetches share one session).
class Session {
 public:
  // `references`: the registries this session talks to; plain_http applies to their
  // upstream hosts, and hosts.toml's skip_verify for them is read now. Errors: a hosts.toml
  // that does not parse (naming it), a transport that cannot be set up.
  static Result<std::unique_ptr<Session>> Open(const SessionOptions& options,
                                               const std::vector<oci::Reference>& references);

  HttpClient& client() { return *client_; }
  CredentialStore& credentials() { return *credentials_; }
  Authorizer& authorizer() { return *authorizer_; }
  Resolver& resolver() { return *resolver_; }

 private:
  Session() = default;
  std::unique_ptr<HttpClient> client_;
  std::shared_ptr<CredentialStore> credentials_;
  std::unique_ptr<Authorizer> authorizer_;
  std::unique_ptr<Resolver> resolver_;
};

}  // namespace strata::registry
