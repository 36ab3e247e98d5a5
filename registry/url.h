// URL helpers of the registry client: resolving Location headers, comparing origins, and
// the loopback plain-HTTP rule. All built on libcurl's URL API (curl_url), so they agree
// with how the transfer itself parses URLs.
#pragma once

#include <string>
#include <string_view>

#include "base/error.h"

namespace strata::registry {

// The parts of an absolute URL that decide where a request goes (and whether credentials
// may follow it). `port` is explicit or the scheme's default (80/443).
struct UrlOrigin {
  std::string scheme;  // lower-case: "http", "https"
  std::string host;    // lower-case; IPv6 without brackets
  int port = 0;

  bool operator==(const UrlOrigin&) const = default;
  // "host:port" as used for certs.d directories and messages ("[::1]:5000" for IPv6).
  std::string HostPort() const;
};

// Parses an absolute http(s) URL. InvalidArgument when it is not one.
Result<UrlOrigin> ParseOrigin(std::string_view url);

// Resolves `location` (absolute, scheme-relative, absolute-path or relative reference, as
// a Location header may carry) against the absolute `base`, RFC 3986 style. The query of
// `location` is kept verbatim. InvalidArgument when either cannot be parsed.
Result<std::string> ResolveUrl(std::string_view base, std::string_view location);

// The host of an absolute URL as the user wrote it, with the port if one was given
// ("127.0.0.1:5000", "registry.example"); for messages. Returns `url` unchanged if it
// cannot be parsed.
std::string UrlHostForMessage(std::string_view url);

// True for hosts a registry client talks to in plain HTTP by default, as docker and
// containerd do: 127.0.0.0/8, "localhost", "::1" — each with or without ":port" (IPv6 in
// brackets when a port is given: "[::1]:5000").
bool DefaultsToPlainHttp(std::string_view host);

}  // namespace strata::registry
