#include "registry/auth.h"

#include <algorithm>
#include <cctype>
#include <ctime>
#include <set>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "registry/registry_errors.h"
#include "registry/url.h"

namespace strata::registry {
namespace {

using SteadyClock = std::chrono::steady_clock;

bool IsSpace(char c) { return c == ' ' || c == '\t'; }

std::string Lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) { return Lower(a) == Lower(b); }

// Challenge tokenizer over one header value.
class ChallengeScanner {
 public:
  explicit ChallengeScanner(std::string_view text) : text_(text) {}

  void Parse(std::vector<Challenge>& out) {
    while (true) {
      SkipSpacesAndCommas();
      if (AtEnd()) return;
      std::string scheme = ReadToken();
      if (scheme.empty()) {  // garbage (a stray '=' or quote): skip one character
        ++pos_;
        continue;
      }
      Challenge challenge{.scheme = Lower(scheme)};
      SkipSpaces();
      ParseParams(challenge);
      out.push_back(std::move(challenge));
    }
  }

 private:
  bool AtEnd() const { return pos_ >= text_.size(); }
  char Peek() const { return text_[pos_]; }
  void SkipSpaces() {
    while (!AtEnd() && IsSpace(Peek())) ++pos_;
  }
  void SkipSpacesAndCommas() {
    while (!AtEnd() && (IsSpace(Peek()) || Peek() == ',')) ++pos_;
  }
  std::string ReadToken() {
    size_t start = pos_;
    while (!AtEnd() && !IsSpace(Peek()) && Peek() != ',' && Peek() != '=' && Peek() != '"') ++pos_;
    return std::string(text_.substr(start, pos_ - start));
  }
  std::string ReadQuoted() {  // REQUIRES: Peek() == '"'
    ++pos_;
    std::string value;
    while (!AtEnd()) {
      char c = text_[pos_++];
      if (c == '"') return value;
      if (c == '\\' && !AtEnd()) c = text_[pos_++];
      value.push_back(c);
    }
    return value;  // unterminated: take what there is
  }

  // Reads auth-params (or one token68) after a scheme; stops before the next challenge's
  // scheme, which is a token after a comma that is not followed by '='.
  void ParseParams(Challenge& challenge) {
    bool first = true;
    while (true) {
      size_t item_start = pos_;
      SkipSpacesAndCommas();
      if (AtEnd()) return;
      std::string name = ReadToken();
      size_t after_name = pos_;
      SkipSpaces();
      if (name.empty() || AtEnd() || Peek() != '=') {
        if (name.empty()) {
          if (AtEnd()) return;
          ++pos_;  // stray character
          continue;
        }
        pos_ = item_start;  // a new challenge starts here
        return;
      }
      // A token followed by '=': a parameter, or a token68 such as "abc==".
      size_t equals = pos_;
      while (!AtEnd() && Peek() == '=') ++pos_;
      size_t equals_count = pos_ - equals;
      bool value_follows = false;
      {
        size_t probe = pos_;
        while (probe < text_.size() && IsSpace(text_[probe])) ++probe;
        value_follows = probe < text_.size() && text_[probe] != ',';
      }
      if (first && (equals_count > 1 || !value_follows) && after_name == equals) {
        challenge.token68 = name + std::string(equals_count, '=');
        return;
      }
      SkipSpaces();
      std::string value;
      if (!AtEnd() && Peek() == '"') {
        value = ReadQuoted();
      } else {
        value = ReadToken();
      }
      challenge.params[Lower(name)] = std::move(value);
      first = false;
      SkipSpaces();
    }
  }

  std::string_view text_;
  size_t pos_ = 0;
};

std::string PercentEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

// Sorted, de-duplicated scopes (scope strings are compared whole).
std::vector<std::string> NormalizeScopes(std::vector<std::string> scopes) {
  std::erase_if(scopes, [](const std::string& s) { return s.empty(); });
  std::sort(scopes.begin(), scopes.end());
  scopes.erase(std::unique(scopes.begin(), scopes.end()), scopes.end());
  return scopes;
}

std::string JoinScopes(const std::vector<std::string>& scopes) {
  std::string out;
  for (const std::string& scope : scopes) {
    if (!out.empty()) out.push_back(' ');
    out += scope;
  }
  return out;
}

// The messages of a distribution error document, "" when the body is not one.
std::string RegistryErrorMessage(std::string_view body) {
  nlohmann::json doc = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) return "";
  std::string out;
  auto append = [&](const nlohmann::json& error) {
    if (!error.is_object()) return;
    std::string part;
    if (error.contains("message") && error["message"].is_string()) part = error["message"].get<std::string>();
    if (part.empty() && error.contains("code") && error["code"].is_string()) part = error["code"].get<std::string>();
    if (part.empty()) return;
    if (!out.empty()) out += "; ";
    out += part;
  };
  if (doc.contains("errors") && doc["errors"].is_array()) {
    for (const auto& error : doc["errors"]) append(error);
  } else {
    append(doc);  // token services answer {"message": ...} or {"error": ...}
    if (out.empty() && doc.contains("error") && doc["error"].is_string()) out = doc["error"].get<std::string>();
  }
  return out;
}

std::unexpected<Error> Unauthorized(std::string_view host, std::string_view why) {
  return Fail(ErrorCode::kFailedPrecondition, "unauthorized: {}: {}", host, why);
}

// Seconds since the epoch of an RFC 3339 UTC time ("2023-11-14T22:13:20Z", fraction
// allowed); nullopt for anything else (offsets other than Z are not worth the code).
std::optional<std::time_t> ParseRfc3339Utc(std::string_view text) {
  std::tm tm{};
  int consumed = 0;
  std::string copy(text);
  if (std::sscanf(copy.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                  &tm.tm_min, &tm.tm_sec, &consumed) != 6) {
    return std::nullopt;
  }
  std::string_view rest = text.substr(consumed);
  if (!rest.empty() && rest.front() == '.') {
    rest.remove_prefix(1);
    while (!rest.empty() && std::isdigit(static_cast<unsigned char>(rest.front()))) rest.remove_prefix(1);
  }
  if (rest != "Z" && rest != "z" && rest != "+00:00") return std::nullopt;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return timegm(&tm);
}

void SetAuthorization(HttpRequest& request, const std::string& value) {
  std::erase_if(request.headers, [](const RequestHeader& h) { return EqualsIgnoreCase(h.name, "Authorization"); });
  if (!value.empty()) request.headers.push_back({"Authorization", value, true});
}

}  // namespace

std::vector<Challenge> ParseChallenges(const std::vector<std::string_view>& header_values) {
  std::vector<Challenge> out;
  for (std::string_view value : header_values) ChallengeScanner(value).Parse(out);
  return out;
}

// What a host asked for the last time it answered 401.
struct Authorizer::HostChallenge {
  std::string scheme;  // "basic" or "bearer"
  std::string realm;
  std::string service;
};

struct Authorizer::CachedToken {
  std::string token;
  SteadyClock::time_point use_until;
};

struct Authorizer::State {
  std::mutex mutex;
  std::map<std::string, HostChallenge> challenges;  // by host
  // Key: host, '\n', service, '\n', sorted scopes joined by ' '.
  std::map<std::string, CachedToken> tokens;
  std::set<std::string> warnings_shown;  // host + '\n' + text: each registry warning once
};

namespace {
std::string TokenKey(std::string_view host, std::string_view service, const std::vector<std::string>& scopes) {
  return fmt::format("{}\n{}\n{}", host, service, JoinScopes(scopes));
}
}  // namespace

Authorizer::Authorizer(HttpClient& client, CredentialsLookup lookup, AuthorizerOptions options)
    : client_(client), lookup_(std::move(lookup)), options_(std::move(options)), state_(std::make_unique<State>()) {}

Authorizer::~Authorizer() = default;

std::optional<Authorizer::HostChallenge> Authorizer::KnownChallenge(const std::string& host) {
  std::lock_guard lock(state_->mutex);
  auto it = state_->challenges.find(host);
  if (it == state_->challenges.end()) return std::nullopt;
  return it->second;
}

Result<std::string> Authorizer::AuthorizationFor(std::string_view host, const std::vector<std::string>& scopes) {
  std::string key(host);
  std::optional<HostChallenge> challenge = KnownChallenge(key);
  if (!challenge) return std::string();
  return Authorization(key, *challenge, NormalizeScopes(scopes), /*force_fetch=*/false);
}

Result<std::string> Authorizer::Authorization(const std::string& host, const HostChallenge& challenge,
                                              const std::vector<std::string>& scopes, bool force_fetch) {
  if (challenge.scheme == "basic") {
    STRATA_ASSIGN_OR_RETURN(std::optional<Credentials> credentials, lookup_(host));
    if (!credentials || (credentials->username.empty() && credentials->password.empty())) {
      return Unauthorized(host, "the registry requires Basic authentication and no credentials are configured");
    }
    return "Basic " + EncodeAuthField(credentials->username, credentials->password);
  }
  std::string key = TokenKey(host, challenge.service, scopes);
  if (!force_fetch) {
    std::lock_guard lock(state_->mutex);
    auto it = state_->tokens.find(key);
    if (it != state_->tokens.end()) {
      if (SteadyClock::now() < it->second.use_until) return "Bearer " + it->second.token;
      state_->tokens.erase(it);
    }
  }
  STRATA_ASSIGN_OR_RETURN(CachedToken fetched, FetchToken(host, challenge, scopes));
  std::string header = "Bearer " + fetched.token;
  {
    std::lock_guard lock(state_->mutex);
    state_->tokens[key] = std::move(fetched);
  }
  return header;
}

Result<Authorizer::CachedToken> Authorizer::FetchToken(const std::string& host, const HostChallenge& challenge,
                                                       const std::vector<std::string>& scopes) {
  if (challenge.realm.empty()) return Unauthorized(host, "Bearer challenge without a realm");
  STRATA_ASSIGN_OR_RETURN(std::optional<Credentials> credentials, lookup_(host));
  Credentials creds = credentials.value_or(Credentials{});

  auto failure = [&](std::string_view how, const HttpResponse& response) -> std::unexpected<Error> {
    std::string detail = RegistryErrorMessage(response.body);
    std::string what = fmt::format("token request ({}) to {} failed: HTTP {}{}{}", how, challenge.realm,
                                   response.status, detail.empty() ? "" : ": ", detail);
    if (response.status == 401 || response.status == 403) return Unauthorized(host, what);
    bool transient = response.status == 408 || response.status == 429 || response.status >= 500;
    return Fail(transient ? ErrorCode::kUnavailable : ErrorCode::kFailedPrecondition, "{}", what);
  };

  std::optional<HttpResponse> answer;
  if (!creds.identity_token.empty()) {
    // OAuth2 refresh-token grant; services without it answer 404 (405 here and there).
    std::string form = "grant_type=refresh_token&refresh_token=" + PercentEncode(creds.identity_token) +
                       "&service=" + PercentEncode(challenge.service) + "&client_id=" + PercentEncode(options_.client_id);
    if (!scopes.empty()) form += "&scope=" + PercentEncode(JoinScopes(scopes));
    HttpRequest post{.method = "POST",
                     .url = challenge.realm,
                     .headers = {{"Content-Type", "application/x-www-form-urlencoded"}},
                     .body = std::move(form)};
    STRATA_ASSIGN_OR_RETURN(HttpResponse response, client_.Send(std::move(post)));
    if (response.status == 200) {
      answer = std::move(response);
    } else if (response.status != 404 && response.status != 405) {
      return failure("POST", response);
    }
  }
  if (!answer) {
    std::string url = challenge.realm;
    url += url.find('?') == std::string::npos ? '?' : '&';
    url += "service=" + PercentEncode(challenge.service);
    for (const std::string& scope : scopes) url += "&scope=" + PercentEncode(scope);
    HttpRequest get{.url = std::move(url)};
    if (!creds.username.empty() || !creds.password.empty()) {
      get.headers.push_back({"Authorization", "Basic " + EncodeAuthField(creds.username, creds.password), true});
    }
    STRATA_ASSIGN_OR_RETURN(HttpResponse response, client_.Send(std::move(get)));
    if (response.status != 200) return failure("GET", response);
    answer = std::move(response);
  }

  nlohmann::json doc = nlohmann::json::parse(answer->body, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) {
    return Fail(ErrorCode::kFailedPrecondition, "token response from {} is not a JSON object", challenge.realm);
  }
  std::string token;
  for (const char* field : {"token", "access_token"}) {
    if (token.empty() && doc.contains(field) && doc[field].is_string()) token = doc[field].get<std::string>();
  }
  if (token.empty()) {
    return Fail(ErrorCode::kFailedPrecondition, "token response from {} has neither token nor access_token",
                challenge.realm);
  }
  std::chrono::seconds lifetime = options_.default_token_lifetime;
  if (doc.contains("expires_in") && doc["expires_in"].is_number() && doc["expires_in"].get<double>() > 0) {
    lifetime = std::chrono::seconds(static_cast<int64_t>(doc["expires_in"].get<double>()));
  }
  // Time already spent since issue (by the server's clock, trusted only when plausible).
  std::chrono::seconds age{0};
  if (doc.contains("issued_at") && doc["issued_at"].is_string()) {
    if (std::optional<std::time_t> issued = ParseRfc3339Utc(doc["issued_at"].get<std::string>())) {
      std::time_t now = std::time(nullptr);
      if (*issued <= now && now - *issued < lifetime.count()) age = std::chrono::seconds(now - *issued);
    }
  }
  std::chrono::seconds margin = std::min(options_.refresh_margin, lifetime / 4);
  return CachedToken{.token = std::move(token), .use_until = SteadyClock::now() + lifetime - age - margin};
}

void Authorizer::ShowWarnings(const std::string& host, const HttpResponse& response) {
  if (!response.headers.Has("Warning")) return;
  for (std::string& text : ParseRegistryWarnings(response.headers.GetAll("Warning"))) {
    {
      std::lock_guard lock(state_->mutex);
      if (!state_->warnings_shown.insert(host + "\n" + text).second) continue;
    }
    spdlog::warn("registry {} says: {}", host, text);
  }
}

Result<HttpResponse> Authorizer::Send(HttpRequest request, const std::vector<std::string>& scopes) {
  const std::string host = UrlHostForMessage(request.url);
  std::vector<std::string> current_scopes = NormalizeScopes(scopes);

  std::string authorization;
  if (std::optional<HostChallenge> known = KnownChallenge(host)) {
    STRATA_ASSIGN_OR_RETURN(authorization, Authorization(host, *known, current_scopes, /*force_fetch=*/false));
  }
  // Scope sets for which a fresh token was fetched during this call: asking again is futile.
  std::set<std::string> fetched;
  bool sent_basic = false;

  for (int attempt = 0;; ++attempt) {
    HttpRequest copy = request;
    SetAuthorization(copy, authorization);
    sent_basic = sent_basic || authorization.starts_with("Basic ");
    STRATA_ASSIGN_OR_RETURN(HttpResponse response, client_.Send(std::move(copy)));
    ShowWarnings(host, response);
    if (response.status != 401) return response;

    std::string registry_message = RegistryErrorMessage(response.body);
    std::vector<Challenge> challenges = ParseChallenges(response.headers.GetAll("WWW-Authenticate"));
    const Challenge* bearer = nullptr;
    const Challenge* basic = nullptr;
    for (const Challenge& challenge : challenges) {
      if (challenge.scheme == "bearer" && !bearer) bearer = &challenge;
      if (challenge.scheme == "basic" && !basic) basic = &challenge;
    }
    auto rejected = [&](std::string_view fallback) {
      return Unauthorized(host, registry_message.empty() ? fallback : std::string_view(registry_message));
    };
    if (!bearer && !basic) {
      return rejected(challenges.empty() ? "401 without a WWW-Authenticate challenge"
                                         : "no supported authentication scheme (Basic or Bearer) offered");
    }
    if (attempt >= 2) return rejected("credentials rejected");

    HostChallenge next;
    std::vector<std::string> next_scopes = current_scopes;
    if (bearer) {
      auto param = [&](const char* name) {
        auto it = bearer->params.find(name);
        return it == bearer->params.end() ? std::string() : it->second;
      };
      next = {.scheme = "bearer", .realm = param("realm"), .service = param("service")};
      std::string challenge_scope = param("scope");
      for (size_t start = 0; start < challenge_scope.size();) {
        size_t space = challenge_scope.find(' ', start);
        if (space == std::string::npos) space = challenge_scope.size();
        next_scopes.push_back(challenge_scope.substr(start, space - start));
        start = space + 1;
      }
      next_scopes = NormalizeScopes(std::move(next_scopes));
      std::string key = TokenKey(host, next.service, next_scopes);
      if (fetched.contains(key)) {
        std::string error = param("error");
        std::string why = registry_message.empty() ? std::string("token rejected")
                                                   : fmt::format("token rejected: {}", registry_message);
        if (!error.empty()) why += fmt::format(" ({}: {})", error, JoinScopes(next_scopes));
        return Unauthorized(host, why);
      }
      fetched.insert(key);
    } else {
      if (sent_basic) {
        return Unauthorized(host, registry_message.empty() ? std::string("credentials rejected")
                                                           : fmt::format("credentials rejected: {}", registry_message));
      }
      next = {.scheme = "basic", .realm = basic->params.contains("realm") ? basic->params.at("realm") : ""};
    }
    {
      std::lock_guard lock(state_->mutex);
      state_->challenges[host] = next;
    }

    if (request.body_reader) {
      if (!request.body_rewind) {
        return Unauthorized(host, fmt::format("{}; the streamed request body cannot be replayed with credentials",
                                              registry_message.empty() ? "authentication required" : registry_message));
      }
      STRATA_RETURN_IF_ERROR(request.body_rewind());
    }
    current_scopes = std::move(next_scopes);
    STRATA_ASSIGN_OR_RETURN(authorization, Authorization(host, next, current_scopes, /*force_fetch=*/true));
  }
}

}  // namespace strata::registry
