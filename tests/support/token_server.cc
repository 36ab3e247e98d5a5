#include "tests/support/token_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <optional>

#include <nlohmann/json.hpp>

#include "tests/support/http_client.h"
#include "tests/support/loopback_server.h"

namespace strata::test_support {
namespace {

using Clock = std::chrono::system_clock;

constexpr int kIoTimeoutMs = 5000;
constexpr size_t kMaxRequestHead = 64 * 1024;

std::string UrlDecode(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out += ' ';
    } else if (text[i] == '%' && i + 2 < text.size() && std::isxdigit(static_cast<unsigned char>(text[i + 1])) &&
               std::isxdigit(static_cast<unsigned char>(text[i + 2]))) {
      out += static_cast<char>(std::stoi(std::string(text.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

std::string Base64Decode(std::string_view text) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
  };
  std::string out;
  uint32_t buffer = 0;
  int bits = 0;
  for (char c : text) {
    int v = value(c);
    if (v < 0) continue;  // padding, whitespace
    buffer = (buffer << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      out += static_cast<char>((buffer >> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return out;
}

std::string Rfc3339(Clock::time_point when) {
  std::time_t seconds = Clock::to_time_t(when);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

bool SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    pollfd ready{.fd = fd, .events = POLLOUT, .revents = 0};
    if (::poll(&ready, 1, kIoTimeoutMs) <= 0) return false;
    ssize_t sent = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (sent < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return false;
    }
    data.remove_prefix(static_cast<size_t>(sent));
  }
  return true;
}

std::string ErrorBody(std::string_view code, std::string_view message) {
  return nlohmann::json{{"errors", {{{"code", code}, {"message", message}}}}}.dump();
}

}  // namespace

Result<TokenScope> ParseTokenScope(std::string_view text) {
  size_t first = text.find(':');
  size_t last = text.rfind(':');
  if (first == std::string_view::npos || first == last) {
    return Fail(ErrorCode::kInvalidArgument, "token scope '{}' is not type:name:actions", text);
  }
  TokenScope scope{.type = std::string(text.substr(0, first)), .name = std::string(text.substr(first + 1, last - first - 1))};
  std::string_view actions = text.substr(last + 1);
  while (!actions.empty()) {
    size_t comma = actions.find(',');
    if (comma != 0) scope.actions.emplace_back(actions.substr(0, comma));
    actions.remove_prefix(comma == std::string_view::npos ? actions.size() : comma + 1);
  }
  if (scope.type.empty() || scope.name.empty()) {
    return Fail(ErrorCode::kInvalidArgument, "token scope '{}' has an empty type or name", text);
  }
  return scope;
}

Result<std::unique_ptr<TokenServer>> TokenServer::Start(TokenServerOptions options) {
  STRATA_ASSIGN_OR_RETURN(PemCertificate signer, CreateSelfSignedRsaCertificate("strata test token signer"));
  STRATA_ASSIGN_OR_RETURN(std::string der, CertificateDer(signer.cert_pem));
  STRATA_ASSIGN_OR_RETURN(std::string key_id, LibtrustKeyId(signer.cert_pem));

  STRATA_ASSIGN_OR_RETURN(LoopbackListener listener, ListenOnLoopback("token server"));
  int wake[2];
  if (::pipe2(wake, O_CLOEXEC | O_NONBLOCK) != 0) {
    return Fail(ErrorCode::kInternal, "token server pipe: {}", std::strerror(errno));
  }
  std::unique_ptr<TokenServer> server(new TokenServer(std::move(options), std::move(signer), Base64Encode(der),
                                                      std::move(key_id), std::move(listener.fd), UniqueFd(wake[0]),
                                                      UniqueFd(wake[1]), listener.port));
  server->thread_ = std::thread([raw = server.get()] { raw->Serve(); });
  return server;
}

TokenServer::TokenServer(TokenServerOptions options, PemCertificate signer, std::string x5c, std::string key_id,
                         UniqueFd listener, UniqueFd wake_read, UniqueFd wake_write, int port)
    : options_(std::move(options)),
      signer_(std::move(signer)),
      x5c_(std::move(x5c)),
      key_id_(std::move(key_id)),
      listener_(std::move(listener)),
      wake_read_(std::move(wake_read)),
      wake_write_(std::move(wake_write)),
      port_(port) {}

TokenServer::~TokenServer() {
  if (thread_.joinable()) {
    char stop = 1;
    (void)!::write(wake_write_.get(), &stop, 1);
    thread_.join();
  }
}

std::string TokenServer::realm() const { return fmt::format("http://127.0.0.1:{}/token", port_); }

std::vector<TokenRequestRecord> TokenServer::requests() const {
  std::lock_guard lock(mutex_);
  return records_;
}

void TokenServer::Serve() {
  while (std::optional<UniqueFd> connection = AcceptUnlessWoken(listener_.get(), wake_read_.get())) {
    if (*connection) HandleConnection(connection->get());
  }
}

void TokenServer::HandleConnection(int fd) {
  std::string head;
  char buffer[4096];
  while (head.find("\r\n\r\n") == std::string::npos && head.size() < kMaxRequestHead) {
    pollfd ready{.fd = fd, .events = POLLIN, .revents = 0};
    if (::poll(&ready, 1, kIoTimeoutMs) <= 0) return;
    ssize_t got = ::recv(fd, buffer, sizeof(buffer), 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return;
    head.append(buffer, static_cast<size_t>(got));
  }
  auto [status, extra_headers, body] = Answer(head);
  std::string response = fmt::format(
      "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n{}",
      status, HttpReasonPhrase(status), body.size(), extra_headers, body);
  SendAll(fd, response);
}

std::tuple<int, std::string, std::string> TokenServer::Answer(std::string_view head) {
  ++token_requests_;
  TokenRequestRecord record;
  auto finish = [&](int status, std::string headers, std::string body) {
    record.status = status;
    std::lock_guard lock(mutex_);
    records_.push_back(record);
    return std::tuple{status, std::move(headers), std::move(body)};
  };

  std::string_view request_line = head.substr(0, head.find("\r\n"));
  size_t first_space = request_line.find(' ');
  size_t second_space = request_line.find(' ', first_space + 1);
  if (first_space == std::string_view::npos || second_space == std::string_view::npos) {
    return finish(400, "", ErrorBody("UNSUPPORTED", "malformed request line"));
  }
  std::string_view method = request_line.substr(0, first_space);
  std::string_view target = request_line.substr(first_space + 1, second_space - first_space - 1);
  std::string_view path = target.substr(0, target.find('?'));
  if (path != "/token") return finish(404, "", ErrorBody("NOT_FOUND", "only /token is served here"));
  if (method != "GET") return finish(405, "Allow: GET\r\n", ErrorBody("UNSUPPORTED", "use GET"));

  // Query: service and any number of scope parameters, each possibly space-separated.
  std::string service;
  std::vector<TokenScope> requested;
  std::string_view query = target.size() > path.size() ? target.substr(path.size() + 1) : std::string_view{};
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query.remove_prefix(amp == std::string_view::npos ? query.size() : amp + 1);
    size_t equals = pair.find('=');
    std::string key = UrlDecode(pair.substr(0, equals));
    std::string value = equals == std::string_view::npos ? "" : UrlDecode(pair.substr(equals + 1));
    if (key == "service") service = value;
    if (key != "scope") continue;
    std::string_view scopes = value;
    while (!scopes.empty()) {
      size_t space = scopes.find(' ');
      std::string_view one = scopes.substr(0, space);
      scopes.remove_prefix(space == std::string_view::npos ? scopes.size() : space + 1);
      if (one.empty()) continue;
      record.scopes.emplace_back(one);
      Result<TokenScope> scope = ParseTokenScope(one);
      if (!scope) return finish(400, "", ErrorBody("INVALID_SCOPE", scope.error().message()));
      requested.push_back(std::move(*scope));
    }
  }

  // Authentication: Basic credentials, if any, must be right.
  std::optional<std::string> user;
  for (size_t pos = head.find("\r\n"); pos != std::string_view::npos && pos + 2 < head.size();) {
    size_t end = head.find("\r\n", pos + 2);
    std::string_view line = head.substr(pos + 2, end - pos - 2);
    pos = end;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string name(line.substr(0, colon));
    std::transform(name.begin(), name.end(), name.begin(), ::tolower);
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    if (name != "authorization" || !value.starts_with("Basic ")) continue;
    std::string credentials = Base64Decode(value.substr(6));
    size_t split = credentials.find(':');
    std::string name_part = credentials.substr(0, split);
    std::string password = split == std::string::npos ? "" : credentials.substr(split + 1);
    auto account = options_.users.find(name_part);
    if (account == options_.users.end() || account->second != password) {
      record.user = name_part;
      return finish(401, "WWW-Authenticate: Basic realm=\"strata-test-token\"\r\n",
                    ErrorBody("UNAUTHORIZED", "wrong user name or password"));
    }
    user = name_part;
  }
  if (!user && options_.require_credentials) {
    return finish(401, "WWW-Authenticate: Basic realm=\"strata-test-token\"\r\n",
                  ErrorBody("UNAUTHORIZED", "credentials required"));
  }
  record.user = user.value_or("");

  std::vector<TokenScope> granted;
  for (const TokenScope& scope : requested) {
    std::vector<std::string> actions = Grant(record.user, scope);
    if (!actions.empty()) granted.push_back({scope.type, scope.name, std::move(actions)});
  }
  Result<std::string> token =
      IssueToken(record.user, granted, options_.lifetime, service.empty() ? options_.service : service);
  if (!token) return finish(500, "", ErrorBody("UNKNOWN", token.error().ToString()));
  nlohmann::json body = {{"token", *token},
                         {"access_token", *token},
                         {"expires_in", options_.lifetime.count()},
                         {"issued_at", Rfc3339(Clock::now())}};
  return finish(200, "", body.dump());
}

std::vector<std::string> TokenServer::Grant(const std::string& user, const TokenScope& requested) const {
  if (options_.grant) return options_.grant(user, requested);
  auto allowed = options_.allowed_actions.find(user);
  if (allowed == options_.allowed_actions.end() || allowed->second.contains("*")) return requested.actions;
  std::vector<std::string> actions;
  for (const std::string& action : requested.actions) {
    if (allowed->second.contains(action)) actions.push_back(action);
  }
  return actions;
}

Result<std::string> TokenServer::IssueToken(const std::string& subject, const std::vector<TokenScope>& access,
                                            std::chrono::seconds lifetime, const std::string& audience) const {
  int64_t now = std::chrono::duration_cast<std::chrono::seconds>(Clock::now().time_since_epoch()).count();
  nlohmann::json header = {{"typ", "JWT"}, {"alg", "RS256"}};
  if (options_.header_kid) header["kid"] = key_id_;
  if (options_.header_x5c) header["x5c"] = nlohmann::json::array({x5c_});
  nlohmann::json access_claim = nlohmann::json::array();
  for (const TokenScope& scope : access) {
    access_claim.push_back({{"type", scope.type}, {"name", scope.name}, {"actions", scope.actions}});
  }
  int64_t expires = now + lifetime.count();
  nlohmann::json claims = {
      {"iss", options_.issuer},
      {"sub", subject},
      {"aud", audience},
      {"exp", expires},
      // Slightly in the past: the registry's clock reads the same second boundary later.
      {"nbf", std::min(now - 10, expires)},
      {"iat", now},
      {"jti", fmt::format("strata-test-{}-{}", now, next_token_id_.fetch_add(1) + 1)},
      {"access", access_claim},
  };
  std::string signing_input = Base64UrlEncode(header.dump()) + "." + Base64UrlEncode(claims.dump());
  STRATA_ASSIGN_OR_RETURN(std::string signature, SignRs256(signer_.key_pem, signing_input));
  return signing_input + "." + Base64UrlEncode(signature);
}

}  // namespace strata::test_support
