// Registry credentials: lookup in the files and helpers docker, podman and containerd
// users already have, and storage in strata's own auth file (`strata login/logout`).
//
// All three files share docker's config.json shape:
//   {"auths": {"<key>": {"auth": base64("user:pass"), "identitytoken": "..."}},
//    "credHelpers": {"<key>": "<suffix>"}, "credsStore": "<suffix>"}
// A helper is the program `docker-credential-<suffix>` found in PATH.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "base/error.h"

namespace strata::registry {

struct Credentials {
  std::string username;
  std::string password;
  // OAuth2 refresh token (docker's "identitytoken"). A helper that answers with Username
  // "<token>" yields this (Secret) with username and password left empty, as docker does.
  std::string identity_token;

  bool empty() const { return username.empty() && password.empty() && identity_token.empty(); }
  bool operator==(const Credentials&) const = default;
};

struct CredentialStoreOptions {
  // Each path may be empty: that source is skipped. A missing file is the same as an
  // empty one. Lookup reads them in this order; Store/Erase write only `strata_auth_file`.
  std::filesystem::path strata_auth_file;
  std::filesystem::path docker_config_file;
  std::filesystem::path podman_auth_file;
  // Longest a credential helper may run before it is killed (with its process group).
  std::chrono::milliseconds helper_timeout = std::chrono::seconds(30);

  // The defaults, computed from `getenv` (the real environment when not given):
  //   strata: $XDG_CONFIG_HOME/strata/auth.json, else $HOME/.config/strata/auth.json
  //   docker: $DOCKER_CONFIG/config.json, else $HOME/.docker/config.json
  //   podman: $REGISTRY_AUTH_FILE, else $XDG_RUNTIME_DIR/containers/auth.json, else
  //           /run/containers/<uid>/auth.json (containers-auth.json(5))
  // A path that needs $HOME when HOME is unset is left empty.
  using GetEnv = std::function<std::optional<std::string>(std::string_view name)>;
  static CredentialStoreOptions FromEnvironment(const GetEnv& getenv = {});
};

// Thread-safety: Lookup may run concurrently with itself; Store/Erase are atomic on disk
// (readers see the old or the new file) but two concurrent writers may lose an update.
class CredentialStore {
 public:
  explicit CredentialStore(CredentialStoreOptions options) : options_(std::move(options)) {}

  const CredentialStoreOptions& options() const { return options_; }

  // Credentials for `registry_host` ("host", "host:port"; a URL such as
  // "https://index.docker.io/v1/" is reduced to its host). Sources in order: strata's file,
  // docker's config (credHelpers[host], else credsStore, else auths), podman's file
  // (credHelpers[host], else auths; containers-auth.json(5) has no credsStore). The
  // first source with credentials wins; std::nullopt when none has any.
  // Errors: InvalidArgument naming the file when a file is not valid JSON or has the wrong
  // shape; an error naming the helper when a helper fails (its "credentials not found"
  // answer is not an error). When docker's config names a helper for the host, that helper
  // alone answers for docker's config (its `auths` entry is not consulted), as in docker.
  Result<std::optional<Credentials>> Lookup(std::string_view registry_host) const;

  // Saves credentials for `registry_host` in strata's file under the canonical key (the
  // bare host[:port], "docker.io" for Docker Hub), replacing other keys for the same host
  // and keeping every other entry and unknown key. The file is written atomically with
  // mode 0600; its directory is created with mode 0700 if missing.
  // REQUIRES: !credentials.empty().
  Status Store(std::string_view registry_host, const Credentials& credentials) const;

  // Removes every key for `registry_host` from strata's file. NotFound if there is none.
  Status Erase(std::string_view registry_host) const;

 private:
  CredentialStoreOptions options_;
};

// The host a config key or a lookup argument names, compared as docker's
// ConvertToHostname does: "http://" / "https://" and any path are dropped, case is folded,
// and Docker Hub's aliases (index.docker.io, registry-1.docker.io) become "docker.io".
// "host:5000" and "host" differ.
std::string CanonicalRegistryHost(std::string_view key_or_host);

// True when auths key `key` is an entry for `registry_host` (see CanonicalRegistryHost).
bool AuthKeyMatchesHost(std::string_view key, std::string_view registry_host);

// Decodes an `auth` field: base64("user:pass"), split at the first ':' (the password may
// contain ':'). InvalidArgument when it is not valid base64 or has no ':'.
Result<Credentials> DecodeAuthField(std::string_view auth);
// The inverse: base64("user:pass").
std::string EncodeAuthField(std::string_view username, std::string_view password);

// Runs `docker-credential-<suffix> get` (from PATH) with `server_url` on stdin, without a
// shell, and parses its {ServerURL, Username, Secret} answer. std::nullopt when the helper
// says "credentials not found". The helper runs in its own process group, which is killed
// and reaped when `timeout` passes (Unavailable). FailedPrecondition when the helper is not
// in PATH; Internal for any other failure; every message names the helper.
Result<std::optional<Credentials>> RunCredentialHelper(std::string_view suffix,
                                                       std::string_view server_url,
                                                       std::chrono::milliseconds timeout);

}  // namespace strata::registry
