#include "registry/url.h"

#include <arpa/inet.h>
#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <memory>

namespace strata::registry {
namespace {

struct UrlDeleter {
  void operator()(CURLU* url) const { curl_url_cleanup(url); }
};
using UniqueUrl = std::unique_ptr<CURLU, UrlDeleter>;

struct CurlStringDeleter {
  void operator()(char* text) const { curl_free(text); }
};
using CurlString = std::unique_ptr<char, CurlStringDeleter>;

std::string Lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

// Parses an absolute URL with any scheme (callers check http/https).
Result<UniqueUrl> ParseAbsolute(std::string_view url) {
  UniqueUrl handle(curl_url());
  if (!handle) return Fail(ErrorCode::kInternal, "curl_url: out of memory");
  std::string text(url);
  CURLUcode code = curl_url_set(handle.get(), CURLUPART_URL, text.c_str(), 0);
  if (code != CURLUE_OK) {
    return Fail(ErrorCode::kInvalidArgument, "invalid URL '{}': {}", url, curl_url_strerror(code));
  }
  return handle;
}

Result<std::string> GetPart(CURLU* url, CURLUPart part, unsigned flags = 0) {
  char* raw = nullptr;
  CURLUcode code = curl_url_get(url, part, &raw, flags);
  CurlString value(raw);
  if (code != CURLUE_OK) return Fail(ErrorCode::kInvalidArgument, "URL part: {}", curl_url_strerror(code));
  return std::string(value.get());
}

}  // namespace

std::string UrlOrigin::HostPort() const {
  if (host.find(':') != std::string::npos) return fmt::format("[{}]:{}", host, port);
  return fmt::format("{}:{}", host, port);
}

Result<UrlOrigin> ParseOrigin(std::string_view url) {
  STRATA_ASSIGN_OR_RETURN(UniqueUrl handle, ParseAbsolute(url));
  UrlOrigin origin;
  STRATA_ASSIGN_OR_RETURN(origin.scheme, GetPart(handle.get(), CURLUPART_SCHEME));
  origin.scheme = Lower(origin.scheme);
  if (origin.scheme != "http" && origin.scheme != "https") {
    return Fail(ErrorCode::kInvalidArgument, "URL '{}': scheme must be http or https", url);
  }
  STRATA_ASSIGN_OR_RETURN(std::string host, GetPart(handle.get(), CURLUPART_HOST));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  origin.host = Lower(host);
  STRATA_ASSIGN_OR_RETURN(std::string port, GetPart(handle.get(), CURLUPART_PORT, CURLU_DEFAULT_PORT));
  origin.port = std::atoi(port.c_str());
  return origin;
}

Result<std::string> ResolveUrl(std::string_view base, std::string_view location) {
  STRATA_ASSIGN_OR_RETURN(UniqueUrl handle, ParseAbsolute(base));
  std::string text(location);
  // Setting CURLUPART_URL on a handle that holds a URL resolves a relative reference.
  CURLUcode code = curl_url_set(handle.get(), CURLUPART_URL, text.c_str(), CURLU_NON_SUPPORT_SCHEME);
  if (code != CURLUE_OK) {
    return Fail(ErrorCode::kInvalidArgument, "cannot resolve Location '{}' against {}: {}", location, base,
                curl_url_strerror(code));
  }
  return GetPart(handle.get(), CURLUPART_URL);
}

std::string UrlHostForMessage(std::string_view url) {
  auto handle = ParseAbsolute(url);
  if (!handle) return std::string(url);
  auto host = GetPart(handle->get(), CURLUPART_HOST);
  if (!host) return std::string(url);
  auto port = GetPart(handle->get(), CURLUPART_PORT);
  return port ? fmt::format("{}:{}", *host, *port) : *host;
}

bool DefaultsToPlainHttp(std::string_view host) {
  std::string name;
  if (!host.empty() && host.front() == '[') {
    size_t close = host.find(']');
    if (close == std::string_view::npos) return false;
    std::string_view rest = host.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') return false;
    name = std::string(host.substr(1, close - 1));
  } else if (std::count(host.begin(), host.end(), ':') == 1) {
    name = std::string(host.substr(0, host.find(':')));
  } else {
    name = std::string(host);  // no port, or a bare IPv6 address
  }
  name = Lower(name);
  if (name == "localhost") return true;
  in_addr v4{};
  if (::inet_pton(AF_INET, name.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (::inet_pton(AF_INET6, name.c_str(), &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6);
  return false;
}

}  // namespace strata::registry
