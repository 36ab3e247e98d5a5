// Reference: an image name as users type it ("alpine", "host:5000/a/b:1@sha256:..."),
// parsed and normalised the way Docker does.
//
// Grammar (distribution/reference):
//   reference := name [":" tag] ["@" digest]
//   name      := [domain "/"] path
//   domain    := host [":" port]       host: DNS labels joined by '.', or "[" IPv6 "]"
//   path      := component ("/" component)*
//   component := [a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)*
//   tag       := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
//
// Normalisation:
//   - The first path segment is a domain when it contains '.' or ':', is "localhost", or has
//     an upper-case letter; otherwise the domain is docker.io. "index.docker.io" -> "docker.io".
//   - On docker.io a one-segment path gets "library/": "alpine" and "docker.io/alpine" are
//     both docker.io/library/alpine. "docker.io/foo/bar" stays as it is.
//   - Without tag and digest the tag is "latest". A tag given with a digest is kept (the
//     digest decides what is fetched; the tag is informative).
//   - The domain keeps its case (lower-casing it would turn "Foo/bar" into docker.io's foo/bar).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "base/digest.h"
#include "base/error.h"

namespace strata::oci {

class Reference {
 public:
  // Parses and normalises `text`. InvalidArgument 'invalid reference "<text>": <reason>' for:
  // empty input, characters outside the grammar, an upper-case repository path, an empty or
  // malformed tag, a bad digest, empty path segments ("a//b", trailing '/'), malformed
  // separators ("a..b", "a-"), a bad domain or port, a 64-hex-digit repository (ambiguous with
  // an image ID), or a name (domain/path) longer than 255 characters after normalisation.
  static Result<Reference> Parse(std::string_view text);

  // "docker.io", "localhost:5000", "[::1]:5000".
  const std::string& domain() const { return domain_; }
  // Repository path without the domain: "library/alpine".
  const std::string& path() const { return path_; }
  // domain/path: "docker.io/library/alpine". This is the repository the registry API uses
  // together with ApiHost().
  std::string name() const;
  // At least one of tag and digest is always set.
  const std::optional<std::string>& tag() const { return tag_; }
  const std::optional<Digest>& digest() const { return digest_; }

  // Full normalised form: "docker.io/library/alpine:latest", "h:5000/a@sha256:...".
  std::string String() const;
  // The short name Docker shows: docker.io/ and a lone library/ dropped ("alpine",
  // "user/app"); other domains kept, and docker.io kept when the path's first segment would
  // read as a domain ("docker.io/foo.io/bar", not "foo.io/bar").
  std::string FamiliarName() const;
  // FamiliarName plus tag and digest: "alpine:latest", "user/app:1".
  std::string FamiliarString() const;

  // Host (with port) to talk to for the registry API: docker.io -> registry-1.docker.io;
  // every other domain as is.
  std::string ApiHost() const;
  // What goes after /v2/<name>/manifests/: the digest if there is one, else the tag.
  std::string ManifestReference() const;

  // Copies with a different tag / digest. WithTag checks the tag grammar.
  Result<Reference> WithTag(std::string_view tag) const;
  Reference WithDigest(const Digest& digest) const;

  bool operator==(const Reference&) const = default;

 private:
  Reference() = default;

  std::string domain_;
  std::string path_;
  std::optional<std::string> tag_;
  std::optional<Digest> digest_;
};

inline constexpr std::string_view kDockerHubDomain = "docker.io";
inline constexpr std::string_view kDockerHubApiHost = "registry-1.docker.io";
// Longest domain/path the registry accepts.
inline constexpr size_t kMaxReferenceNameLength = 255;

}  // namespace strata::oci

template <>
struct fmt::formatter<strata::oci::Reference> : fmt::formatter<std::string_view> {
  template <typename FormatContext>
  auto format(const strata::oci::Reference& reference, FormatContext& ctx) const {
    return fmt::formatter<std::string_view>::format(reference.String(), ctx);
  }
};
