// A small blocking HTTP client for tests (libcurl): enough of the registry protocol's auth
// to talk to RegistryFixture in every mode, nothing clever. Not the product's client.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/error.h"

namespace strata::test_support {

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

struct HttpResponse {
  long status = 0;
  // Header names lower-cased, in arrival order (of the final response after redirects).
  HttpHeaders headers;
  std::string body;
  std::string effective_url;

  // First value of a header (name matched case-insensitively).
  std::optional<std::string> Header(std::string_view name) const;
};

struct HttpRequest {
  std::string method = "GET";
  std::string url;
  HttpHeaders headers;
  std::string body;
};

// A parsed WWW-Authenticate challenge: `Bearer realm="..",service="..",scope=".."`.
struct AuthChallenge {
  std::string scheme;  // lower-cased: "bearer", "basic"
  std::map<std::string, std::string> params;  // keys lower-cased
};
// Parses the first challenge of a WWW-Authenticate value; nullopt if it is malformed.
std::optional<AuthChallenge> ParseAuthChallenge(std::string_view header);

// Percent-encodes for a query component.
std::string UrlEncode(std::string_view text);
// Standard base64 with padding.
std::string Base64Encode(std::string_view data);

struct TestHttpClientOptions {
  // Sent as Basic credentials to a Basic challenge and to the token realm.
  std::string username;
  std::string password;
  // PEM bundle to verify https servers with; empty = system default.
  std::filesystem::path ca_file;
  // Client certificate and key (PEM) to present to https servers; empty = none.
  std::filesystem::path client_cert;
  std::filesystem::path client_key;
  bool follow_redirects = true;
  long timeout_seconds = 60;
  // Answer 401 challenges (Basic, and Bearer via the token realm) and retry once.
  bool handle_auth = true;
};

// Blocking client; one request at a time. Bearer tokens are cached per scope string for
// the life of the client. Not thread-safe: use one client per thread.
class TestHttpClient {
 public:
  explicit TestHttpClient(TestHttpClientOptions options = {});

  // Sends the request; on a 401 with a Basic or Bearer challenge (and handle_auth), obtains
  // credentials/token and retries once. Errors only for transport failures: any HTTP
  // status, 4xx/5xx included, is a successful response.
  Result<HttpResponse> Send(HttpRequest request);

  Result<HttpResponse> Get(std::string url, HttpHeaders headers = {});
  Result<HttpResponse> Head(std::string url, HttpHeaders headers = {});
  Result<HttpResponse> Delete(std::string url, HttpHeaders headers = {});
  Result<HttpResponse> Put(std::string url, std::string body, HttpHeaders headers = {});
  Result<HttpResponse> Post(std::string url, std::string body = {}, HttpHeaders headers = {});
  Result<HttpResponse> Patch(std::string url, std::string body, HttpHeaders headers = {});

  // One request exactly as given: no auth handling, no retries.
  Result<HttpResponse> SendOnce(const HttpRequest& request);

  // Number of token realm requests this client made.
  int token_fetches() const { return token_fetches_; }
  const TestHttpClientOptions& options() const { return options_; }

 private:
  Result<std::string> FetchToken(const AuthChallenge& challenge);

  TestHttpClientOptions options_;
  std::map<std::string, std::string> bearer_tokens_;  // challenge scope -> token
  bool basic_challenged_ = false;  // a server asked for Basic: send it up front from now on
  int token_fetches_ = 0;
};

}  // namespace strata::test_support
