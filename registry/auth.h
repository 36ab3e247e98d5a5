// Registry authorization: WWW-Authenticate parsing, Basic auth, and bearer tokens from a
// token service (distribution's token auth, Docker Hub, OAuth2 refresh tokens).
//
// The Authorizer wraps an HttpClient: it adds the Authorization a registry is known to
// want, answers a 401 challenge once (fetching a token when the challenge is Bearer), and
// caches tokens per (host, service, scopes) until shortly before they expire, so that a
// pull of many blobs asks the token service once.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "registry/credentials.h"
#include "registry/http_client.h"

namespace strata::registry {

// One challenge of a WWW-Authenticate header.
struct Challenge {
  std::string scheme;                         // lower-case: "basic", "bearer", ...
  std::map<std::string, std::string> params;  // names lower-case, values unquoted/unescaped
  std::string token68;                        // the rare token68 form ("Negotiate abc=="), else ""

  bool operator==(const Challenge&) const = default;
};

// Parses every challenge in `header_values` (each value may hold several challenges,
// separated by commas, RFC 9110 §11.6.1). Quoted strings may contain commas and
// backslash-escaped characters. Malformed parts are skipped, never an error: a registry's
// odd header must not hide the challenges we can use.
std::vector<Challenge> ParseChallenges(const std::vector<std::string_view>& header_values);

// Credentials for a registry host ("host" or "host:port", as written in the URL);
// std::nullopt when there are none (requests then go anonymously). Production passes
// CredentialStore::Lookup; tests pass fixed credentials. Must be thread-safe.
using CredentialsLookup = std::function<Result<std::optional<Credentials>>(std::string_view host)>;

struct AuthorizerOptions {
  // OAuth2 client_id sent with refresh-token requests.
  std::string client_id = "strata";
  // expires_in when the token service gives none (or a non-positive one).
  std::chrono::seconds default_token_lifetime{60};
  // A cached token is used until `expiry - min(refresh_margin, lifetime / 4)`.
  std::chrono::seconds refresh_margin{10};
};

// Thread-safe: Send and AuthorizationFor may run concurrently from many threads. Two
// threads that miss the cache at once may both fetch a token (the later one wins the
// cache); that is harmless. REQUIRES: `client` outlives the Authorizer.
class Authorizer {
 public:
  Authorizer(HttpClient& client, CredentialsLookup lookup, AuthorizerOptions options = {});
  ~Authorizer();
  Authorizer(const Authorizer&) = delete;
  Authorizer& operator=(const Authorizer&) = delete;

  // Sends `request` with the Authorization the registry wants for `scopes` (e.g.
  // {"repository:team/app:pull"}, {"repository:a/b:pull,push", "repository:c/d:pull"} for a
  // cross-repo mount; empty for /v2/). Any Authorization header in `request` is replaced.
  // On a 401 it follows the challenge (Basic: credentials; Bearer: a token for `scopes` plus
  // the challenge's scope) and resends once; a 401 with error="insufficient_scope" naming a
  // scope not yet asked for gets one more token fetch and resend.
  // A request with `body_reader` is resent only if it has `body_rewind`.
  // Returns any final status other than 401 as the HttpClient does. Errors:
  //   FailedPrecondition "unauthorized: <host>: <why>" when the registry or token service
  //     rejects us, no credentials exist for a Basic challenge, or the body cannot be
  //     replayed after a 401;
  //   a token fetch failure naming the realm URL and the HTTP status (Unavailable for
  //     408/429/5xx, FailedPrecondition otherwise); credential lookup and transport errors.
  Result<HttpResponse> Send(HttpRequest request, const std::vector<std::string>& scopes);

  // The Authorization header value for requests to `host` (as in the URL: "host[:port]")
  // under `scopes`: a cached token, or a freshly fetched one when the cached one is near
  // expiry (expired tokens are never returned), or Basic credentials. "" when `host` has not
  // challenged this Authorizer yet (requests go anonymously). Callers of long transfers call
  // this before each chunk. Errors as for a token fetch in Send.
  Result<std::string> AuthorizationFor(std::string_view host, const std::vector<std::string>& scopes);

 private:
  struct HostChallenge;
  struct CachedToken;
  struct State;

  // `force_fetch` bypasses the token cache (after a rejection).
  Result<std::string> Authorization(const std::string& host, const HostChallenge& challenge,
                                    const std::vector<std::string>& scopes, bool force_fetch);
  Result<CachedToken> FetchToken(const std::string& host, const HostChallenge& challenge,
                                 const std::vector<std::string>& scopes);
  std::optional<HostChallenge> KnownChallenge(const std::string& host);
  // Logs (at warn level) each registry "Warning: 299" text once per host.
  void ShowWarnings(const std::string& host, const HttpResponse& response);

  HttpClient& client_;
  CredentialsLookup lookup_;
  AuthorizerOptions options_;
  std::unique_ptr<State> state_;
};

}  // namespace strata::registry
