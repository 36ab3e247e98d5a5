#include "tests/support/http_client.h"

#include <curl/curl.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cctype>
#include <memory>
#include <mutex>

#include <nlohmann/json.hpp>

namespace strata::test_support {
namespace {

std::string Lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

std::string_view Trim(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
  return text;
}

bool HasHeader(const HttpHeaders& headers, std::string_view name) {
  return std::any_of(headers.begin(), headers.end(), [&](const auto& h) { return Lower(h.first) == Lower(name); });
}

struct CurlDeleter {
  void operator()(CURL* curl) const { curl_easy_cleanup(curl); }
};
struct CurlListDeleter {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};

size_t OnBody(char* data, size_t size, size_t count, void* user) {
  static_cast<std::string*>(user)->append(data, size * count);
  return size * count;
}

size_t OnHeader(char* data, size_t size, size_t count, void* user) {
  auto* response = static_cast<HttpResponse*>(user);
  std::string_view line(data, size * count);
  if (line.starts_with("HTTP/")) {
    response->headers.clear();  // a new response (redirect, 100 Continue) starts
  } else if (size_t colon = line.find(':'); colon != std::string_view::npos) {
    response->headers.emplace_back(Lower(Trim(line.substr(0, colon))), std::string(Trim(line.substr(colon + 1))));
  }
  return size * count;
}

void InitCurlOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

}  // namespace

std::optional<std::string> HttpResponse::Header(std::string_view name) const {
  std::string key = Lower(name);
  for (const auto& [header, value] : headers) {
    if (header == key) return value;
  }
  return std::nullopt;
}

std::optional<AuthChallenge> ParseAuthChallenge(std::string_view header) {
  header = Trim(header);
  size_t space = header.find(' ');
  AuthChallenge challenge;
  challenge.scheme = Lower(header.substr(0, space));
  if (challenge.scheme.empty()) return std::nullopt;
  if (space == std::string_view::npos) return challenge;
  std::string_view rest = header.substr(space + 1);
  while (true) {
    rest = Trim(rest);
    if (rest.empty()) break;
    size_t equals = rest.find('=');
    if (equals == std::string_view::npos) return std::nullopt;
    std::string key = Lower(Trim(rest.substr(0, equals)));
    rest = Trim(rest.substr(equals + 1));
    std::string value;
    if (!rest.empty() && rest.front() == '"') {
      size_t i = 1;
      for (; i < rest.size() && rest[i] != '"'; ++i) {
        if (rest[i] == '\\' && i + 1 < rest.size()) ++i;
        value += rest[i];
      }
      if (i >= rest.size()) return std::nullopt;  // unterminated quote
      rest.remove_prefix(i + 1);
    } else {
      size_t end = rest.find(',');
      value = std::string(Trim(rest.substr(0, end)));
      rest.remove_prefix(end == std::string_view::npos ? rest.size() : end);
    }
    challenge.params[key] = value;
    rest = Trim(rest);
    if (!rest.empty() && rest.front() == ',') rest.remove_prefix(1);
  }
  return challenge;
}

std::string UrlEncode(std::string_view text) {
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

std::string Base64Encode(std::string_view data) {
  std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
  int written = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(data.data()), static_cast<int>(data.size()));
  out.resize(static_cast<size_t>(written));
  return out;
}

TestHttpClient::TestHttpClient(TestHttpClientOptions options) : options_(std::move(options)) { InitCurlOnce(); }

Result<HttpResponse> TestHttpClient::SendOnce(const HttpRequest& request) {
  std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
  if (!curl) return Fail(ErrorCode::kInternal, "curl_easy_init failed");
  CURL* handle = curl.get();
  HttpResponse response;

  curl_slist* raw_list = nullptr;
  for (const auto& [name, value] : request.headers) {
    raw_list = curl_slist_append(raw_list, fmt::format("{}: {}", name, value).c_str());
  }
  // libcurl would otherwise add a form Content-Type to bodies and wait for 100-continue.
  if (!HasHeader(request.headers, "content-type")) raw_list = curl_slist_append(raw_list, "Content-Type:");
  raw_list = curl_slist_append(raw_list, "Expect:");
  std::unique_ptr<curl_slist, CurlListDeleter> header_list(raw_list);

  curl_easy_setopt(handle, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(handle, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(handle, CURLOPT_HTTPHEADER, header_list.get());
  curl_easy_setopt(handle, CURLOPT_TIMEOUT, options_.timeout_seconds);
  curl_easy_setopt(handle, CURLOPT_CONNECTTIMEOUT, 10L);
  curl_easy_setopt(handle, CURLOPT_FOLLOWLOCATION, options_.follow_redirects ? 1L : 0L);
  curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(handle, CURLOPT_WRITEDATA, &response.body);
  curl_easy_setopt(handle, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(handle, CURLOPT_HEADERDATA, &response);
  if (!options_.ca_file.empty()) curl_easy_setopt(handle, CURLOPT_CAINFO, options_.ca_file.c_str());
  if (!options_.client_cert.empty()) curl_easy_setopt(handle, CURLOPT_SSLCERT, options_.client_cert.c_str());
  if (!options_.client_key.empty()) curl_easy_setopt(handle, CURLOPT_SSLKEY, options_.client_key.c_str());

  if (request.method == "HEAD") {
    curl_easy_setopt(handle, CURLOPT_NOBODY, 1L);
  } else if (request.method != "GET") {
    if (!request.body.empty() || request.method == "PUT" || request.method == "POST" || request.method == "PATCH") {
      curl_easy_setopt(handle, CURLOPT_POSTFIELDS, request.body.data());
      curl_easy_setopt(handle, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
    }
    curl_easy_setopt(handle, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  }

  CURLcode code = curl_easy_perform(handle);
  if (code != CURLE_OK) {
    return Fail(ErrorCode::kUnavailable, "{} {}: {}", request.method, request.url, curl_easy_strerror(code));
  }
  curl_easy_getinfo(handle, CURLINFO_RESPONSE_CODE, &response.status);
  char* effective = nullptr;
  curl_easy_getinfo(handle, CURLINFO_EFFECTIVE_URL, &effective);
  if (effective != nullptr) response.effective_url = effective;
  return response;
}

Result<std::string> TestHttpClient::FetchToken(const AuthChallenge& challenge) {
  auto realm = challenge.params.find("realm");
  if (realm == challenge.params.end()) return Fail(ErrorCode::kInvalidArgument, "bearer challenge without realm");
  std::string url = realm->second;
  char separator = url.find('?') == std::string::npos ? '?' : '&';
  if (auto service = challenge.params.find("service"); service != challenge.params.end()) {
    url += fmt::format("{}service={}", separator, UrlEncode(service->second));
    separator = '&';
  }
  if (auto scope = challenge.params.find("scope"); scope != challenge.params.end()) {
    std::string_view scopes = scope->second;
    while (!scopes.empty()) {
      size_t space = scopes.find(' ');
      std::string_view one = scopes.substr(0, space);
      if (!one.empty()) {
        url += fmt::format("{}scope={}", separator, UrlEncode(one));
        separator = '&';
      }
      scopes.remove_prefix(space == std::string_view::npos ? scopes.size() : space + 1);
    }
  }
  HttpRequest request{.url = url};
  if (!options_.username.empty()) {
    request.headers.emplace_back("Authorization",
                                 "Basic " + Base64Encode(options_.username + ":" + options_.password));
  }
  ++token_fetches_;
  STRATA_ASSIGN_OR_RETURN(HttpResponse response, SendOnce(request));
  if (response.status != 200) {
    return Fail(ErrorCode::kFailedPrecondition, "token request {} answered {}: {}", url, response.status,
                response.body);
  }
  nlohmann::json body = nlohmann::json::parse(response.body, nullptr, /*allow_exceptions=*/false);
  for (const char* key : {"token", "access_token"}) {
    if (body.is_object() && body.contains(key) && body[key].is_string()) return body[key].get<std::string>();
  }
  return Fail(ErrorCode::kFailedPrecondition, "token response from {} has no token: {}", url, response.body);
}

Result<HttpResponse> TestHttpClient::Send(HttpRequest request) {
  bool caller_auth = HasHeader(request.headers, "authorization");
  bool have_basic = !options_.username.empty();
  if (!caller_auth && basic_challenged_ && have_basic) {
    request.headers.emplace_back("Authorization", "Basic " + Base64Encode(options_.username + ":" + options_.password));
    caller_auth = true;
  }
  STRATA_ASSIGN_OR_RETURN(HttpResponse response, SendOnce(request));
  if (response.status != 401 || !options_.handle_auth || caller_auth) return response;

  std::optional<AuthChallenge> challenge = ParseAuthChallenge(response.Header("www-authenticate").value_or(""));
  if (!challenge) return response;
  HttpRequest retry = request;
  if (challenge->scheme == "basic") {
    if (!have_basic) return response;
    basic_challenged_ = true;
    retry.headers.emplace_back("Authorization", "Basic " + Base64Encode(options_.username + ":" + options_.password));
    return SendOnce(retry);
  }
  if (challenge->scheme != "bearer") return response;

  std::string scope = challenge->params.contains("scope") ? challenge->params["scope"] : "";
  bool insufficient = challenge->params["error"] == "insufficient_scope";
  auto cached = bearer_tokens_.find(scope);
  if (cached != bearer_tokens_.end() && !insufficient) {
    retry.headers.emplace_back("Authorization", "Bearer " + cached->second);
    STRATA_ASSIGN_OR_RETURN(HttpResponse cached_response, SendOnce(retry));
    if (cached_response.status != 401) return cached_response;
    retry = request;  // the cached token expired or was revoked: fetch a fresh one
  }
  STRATA_ASSIGN_OR_RETURN(std::string token, FetchToken(*challenge));
  bearer_tokens_[scope] = token;
  retry.headers.emplace_back("Authorization", "Bearer " + token);
  return SendOnce(retry);
}

Result<HttpResponse> TestHttpClient::Get(std::string url, HttpHeaders headers) {
  return Send({.method = "GET", .url = std::move(url), .headers = std::move(headers)});
}
Result<HttpResponse> TestHttpClient::Head(std::string url, HttpHeaders headers) {
  return Send({.method = "HEAD", .url = std::move(url), .headers = std::move(headers)});
}
Result<HttpResponse> TestHttpClient::Delete(std::string url, HttpHeaders headers) {
  return Send({.method = "DELETE", .url = std::move(url), .headers = std::move(headers)});
}
Result<HttpResponse> TestHttpClient::Put(std::string url, std::string body, HttpHeaders headers) {
  return Send({.method = "PUT", .url = std::move(url), .headers = std::move(headers), .body = std::move(body)});
}
Result<HttpResponse> TestHttpClient::Post(std::string url, std::string body, HttpHeaders headers) {
  return Send({.method = "POST", .url = std::move(url), .headers = std::move(headers), .body = std::move(body)});
}
Result<HttpResponse> TestHttpClient::Patch(std::string url, std::string body, HttpHeaders headers) {
  return Send({.method = "PATCH", .url = std::move(url), .headers = std::move(headers), .body = std::move(body)});
}

}  // namespace strata::test_support
