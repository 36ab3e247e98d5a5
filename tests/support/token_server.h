// A minimal registry token service (the "realm" of distribution's token auth) on loopback.
//
// Answers GET /token?service=..&scope=..[&scope=..] with
// {"token","access_token","expires_in","issued_at"}, where the token is an RS256 JWT whose
// header carries `x5c` (the signing certificate) and `kid` (its libtrust key id), and whose
// claims are iss, sub, aud (= service), exp, nbf, iat, jti and `access` (the granted
// subset of the requested scopes). The signing certificate is self-signed; the registry
// trusts it through `auth.token.rootcertbundle`.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/error.h"
#include "base/file.h"
#include "tests/support/test_crypto.h"

namespace strata::test_support {

// One resource of a token request or grant: "repository:library/alpine:pull,push".
struct TokenScope {
  std::string type;
  std::string name;
  std::vector<std::string> actions;
};
// Parses "type:name:a,b"; the name may itself contain ':' (a registry host with a port).
Result<TokenScope> ParseTokenScope(std::string_view text);

// Decides which of the requested actions `user` ("" = anonymous) gets on a resource.
using TokenGrantFunction = std::function<std::vector<std::string>(const std::string& user, const TokenScope& requested)>;

struct TokenServerOptions {
  std::string issuer = "strata-test-token-issuer";
  std::string service = "strata-test-registry";
  // Accounts (user -> password). Wrong credentials always get 401. A request without
  // credentials gets 401 when `require_credentials`, else it is served as the anonymous
  // user "".
  std::map<std::string, std::string> users;
  bool require_credentials = false;
  // Grants: user -> actions allowed on every resource ("*" = all). A user absent from the
  // map is granted everything requested. Ignored when `grant` is set.
  std::map<std::string, std::set<std::string>> allowed_actions;
  TokenGrantFunction grant;
  // expires_in of issued tokens (and exp - iat).
  std::chrono::seconds lifetime{300};
  // How the JWT header names its signing key: the certificate chain (`x5c`) and/or the
  // libtrust key id (`kid`). distribution 2.8 tries x5c first, then kid (looked up among
  // the rootcertbundle's keys); both on by default.
  bool header_x5c = true;
  bool header_kid = true;
};

// What the server saw, for tests that check the scopes a client asks for.
struct TokenRequestRecord {
  std::string user;                 // "" = anonymous
  std::vector<std::string> scopes;  // as requested
  int status = 0;                   // HTTP status answered
};

// Serves on 127.0.0.1:<ephemeral port> from one thread, one connection at a time
// (Connection: close). The destructor stops and joins the thread. Counters and records
// are thread-safe.
class TokenServer {
 public:
  static Result<std::unique_ptr<TokenServer>> Start(TokenServerOptions options);
  ~TokenServer();
  TokenServer(const TokenServer&) = delete;
  TokenServer& operator=(const TokenServer&) = delete;

  // "http://127.0.0.1:<port>/token".
  std::string realm() const;
  int port() const { return port_; }
  const TokenServerOptions& options() const { return options_; }
  // The signing certificate: what the registry's rootcertbundle must contain.
  const std::string& signing_cert_pem() const { return signer_.cert_pem; }

  // Token requests answered so far (any status).
  int token_requests() const { return token_requests_.load(); }
  std::vector<TokenRequestRecord> requests() const;

  // Signs a token directly, e.g. an expired one (negative lifetime) or one for another
  // audience, for tests of rejection paths.
  Result<std::string> IssueToken(const std::string& subject, const std::vector<TokenScope>& access,
                                 std::chrono::seconds lifetime, const std::string& audience) const;

 private:
  TokenServer(TokenServerOptions options, PemCertificate signer, std::string x5c, std::string key_id,
              UniqueFd listener, UniqueFd wake_read, UniqueFd wake_write, int port);
  void Serve();
  void HandleConnection(int fd);
  // Returns (status, extra headers, body) for one request.
  std::tuple<int, std::string, std::string> Answer(std::string_view request_head);
  std::vector<std::string> Grant(const std::string& user, const TokenScope& requested) const;

  TokenServerOptions options_;
  PemCertificate signer_;
  std::string x5c_;     // base64 DER of the signing certificate
  std::string key_id_;  // libtrust key id of its public key
  UniqueFd listener_;
  UniqueFd wake_read_;   // the destructor writes to wake_write_ to stop Serve()
  UniqueFd wake_write_;
  int port_ = 0;
  std::atomic<int> token_requests_{0};
  mutable std::mutex mutex_;
  std::vector<TokenRequestRecord> records_;
  mutable std::atomic<uint64_t> next_token_id_{0};
  std::thread thread_;
};

}  // namespace strata::test_support
