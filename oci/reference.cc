#include "oci/reference.h"

#include <algorithm>

namespace strata::oci {
namespace {

constexpr size_t kMaxTagLength = 128;

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool IsAlnum(char c) { return IsLowerAlnum(c) || (c >= 'A' && c <= 'Z'); }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsUpper(char c) { return c >= 'A' && c <= 'Z'; }
bool IsHexDigit(char c) { return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// Printable for an error message: control and non-ASCII bytes as \xNN.
std::string Printable(char c) {
  auto byte = static_cast<unsigned char>(c);
  if (byte < 0x20 || byte >= 0x7f) return fmt::format("\\x{:02x}", byte);
  return std::string(1, c);
}

// nullopt when valid, else the reason.
std::optional<std::string> CheckTag(std::string_view tag) {
  if (tag.empty()) return "empty tag";
  if (tag.size() > kMaxTagLength) return fmt::format("tag longer than {} characters", kMaxTagLength);
  if (!(IsAlnum(tag[0]) || tag[0] == '_')) {
    return fmt::format("tag \"{}\" must start with a letter, digit or '_'", tag);
  }
  for (char c : tag) {
    if (!(IsAlnum(c) || c == '_' || c == '.' || c == '-')) {
      return fmt::format("invalid character '{}' in tag \"{}\"", Printable(c), tag);
    }
  }
  return std::nullopt;
}

// component := [a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)*
std::optional<std::string> CheckPathComponent(std::string_view component) {
  if (component.empty()) return "empty path segment";
  for (char c : component) {
    if (IsUpper(c)) return "repository name must be lowercase";
    if (!(IsLowerAlnum(c) || c == '.' || c == '_' || c == '-')) {
      return fmt::format("invalid character '{}' in repository name", Printable(c));
    }
  }
  auto bad_separator = [component] {
    return fmt::format("path segment \"{}\" must start and end with [a-z0-9] and separate them with '.', '_', "
                       "'__' or dashes",
                       component);
  };
  if (!IsLowerAlnum(component.front()) || !IsLowerAlnum(component.back())) return bad_separator();
  size_t i = 0;
  while (i < component.size()) {
    if (IsLowerAlnum(component[i])) {
      ++i;
      continue;
    }
    size_t start = i;
    while (i < component.size() && !IsLowerAlnum(component[i])) ++i;
    std::string_view separator = component.substr(start, i - start);
    bool valid = separator == "." || separator == "_" || separator == "__" ||
                 std::all_of(separator.begin(), separator.end(), [](char c) { return c == '-'; });
    if (!valid) return bad_separator();
  }
  return std::nullopt;
}

// A DNS label: [A-Za-z0-9] or [A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9].
bool IsDomainLabel(std::string_view label) {
  if (label.empty() || !IsAlnum(label.front()) || !IsAlnum(label.back())) return false;
  return std::all_of(label.begin(), label.end(), [](char c) { return IsAlnum(c) || c == '-'; });
}

// domain := (labels joined by '.' | "[" ipv6 "]") [":" port]
std::optional<std::string> CheckDomain(std::string_view domain) {
  std::string_view host = domain;
  std::string_view port;
  bool has_port = false;
  if (domain.starts_with('[')) {
    size_t close = domain.find(']');
    if (close == std::string_view::npos) return fmt::format("unterminated '[' in domain \"{}\"", domain);
    host = domain.substr(0, close + 1);
    std::string_view address = domain.substr(1, close - 1);
    if (address.empty() || !std::all_of(address.begin(), address.end(), [](char c) { return IsHexDigit(c) || c == ':'; })) {
      return fmt::format("invalid IPv6 address in domain \"{}\"", domain);
    }
    std::string_view after = domain.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return fmt::format("unexpected text after ']' in domain \"{}\"", domain);
      has_port = true;
      port = after.substr(1);
    }
  } else {
    if (size_t colon = domain.find(':'); colon != std::string_view::npos) {
      host = domain.substr(0, colon);
      port = domain.substr(colon + 1);
      has_port = true;
    }
    size_t start = 0;
    while (true) {
      size_t dot = host.find('.', start);
      std::string_view label = host.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
      if (!IsDomainLabel(label)) return fmt::format("invalid domain \"{}\"", domain);
      if (dot == std::string_view::npos) break;
      start = dot + 1;
    }
  }
  if (has_port && (port.empty() || !std::all_of(port.begin(), port.end(), IsDigit))) {
    return fmt::format("invalid port in domain \"{}\"", domain);
  }
  return std::nullopt;
}

bool LooksLikeDomain(std::string_view first_segment) {
  return first_segment.find_first_of(".:") != std::string_view::npos || first_segment == "localhost" ||
         std::any_of(first_segment.begin(), first_segment.end(), IsUpper);
}

bool IsImageIdLike(std::string_view path) {
  return path.size() == 64 && std::all_of(path.begin(), path.end(), [](char c) {
           return IsDigit(c) || (c >= 'a' && c <= 'f');
         });
}

}  // namespace

Result<Reference> Reference::Parse(std::string_view text) {
  auto invalid = [text](std::string_view reason) {
    return Fail(ErrorCode::kInvalidArgument, "invalid reference \"{}\": {}", text, reason);
  };
  if (text.empty()) return invalid("empty");
  for (char c : text) {
    auto byte = static_cast<unsigned char>(c);
    if (byte <= 0x20 || byte >= 0x7f) return invalid(fmt::format("invalid character '{}'", Printable(c)));
  }

  Reference reference;
  std::string_view name = text;
  if (size_t at = name.find('@'); at != std::string_view::npos) {
    std::string_view digest_text = name.substr(at + 1);
    name = name.substr(0, at);
    if (digest_text.empty()) return invalid("empty digest after '@'");
    Result<Digest> digest = Digest::Parse(digest_text);
    if (!digest) return invalid(digest.error().message());
    reference.digest_ = std::move(*digest);
  }
  // A ':' after the last '/' starts the tag; one before it belongs to the domain's port.
  if (size_t colon = name.rfind(':'); colon != std::string_view::npos) {
    size_t slash = name.rfind('/');
    if (slash == std::string_view::npos || colon > slash) {
      std::string_view tag = name.substr(colon + 1);
      if (std::optional<std::string> reason = CheckTag(tag)) return invalid(*reason);
      reference.tag_ = std::string(tag);
      name = name.substr(0, colon);
    }
  }
  if (name.empty()) return invalid("empty repository name");
  if (name.front() == '/') return invalid("leading '/'");
  if (name.back() == '/') return invalid("trailing '/'");

  std::string_view path = name;
  std::string_view domain = kDockerHubDomain;
  if (size_t slash = name.find('/'); slash != std::string_view::npos && LooksLikeDomain(name.substr(0, slash))) {
    domain = name.substr(0, slash);
    path = name.substr(slash + 1);
    if (std::optional<std::string> reason = CheckDomain(domain)) return invalid(*reason);
  }
  if (domain == "index.docker.io") domain = kDockerHubDomain;

  size_t start = 0;
  while (true) {
    size_t slash = path.find('/', start);
    std::string_view component =
        path.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (component.empty()) return invalid("empty path segment ('//')");
    if (std::optional<std::string> reason = CheckPathComponent(component)) return invalid(*reason);
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  if (IsImageIdLike(path)) return invalid("a 64-hex-digit repository name is ambiguous with an image ID");

  reference.domain_ = std::string(domain);
  reference.path_ = std::string(path);
  if (reference.domain_ == kDockerHubDomain && path.find('/') == std::string_view::npos) {
    reference.path_ = "library/" + reference.path_;
  }
  if (size_t length = reference.domain_.size() + 1 + reference.path_.size(); length > kMaxReferenceNameLength) {
    return invalid(fmt::format("name \"{}\" is {} characters long, more than {}", reference.name(), length,
                               kMaxReferenceNameLength));
  }
  if (!reference.tag_ && !reference.digest_) reference.tag_ = "latest";
  return reference;
}

std::string Reference::name() const { return domain_ + "/" + path_; }

std::string Reference::String() const {
  std::string text = name();
  if (tag_) text += ":" + *tag_;
  if (digest_) text += "@" + digest_->ToString();
  return text;
}

std::string Reference::FamiliarName() const {
  if (domain_ != kDockerHubDomain) return name();
  constexpr std::string_view kLibrary = "library/";
  std::string_view path = path_;
  // A lone library/ goes, unless what remains reads as an image ID (Parse refuses that).
  if (path.starts_with(kLibrary) && path.substr(kLibrary.size()).find('/') == std::string_view::npos &&
      !IsImageIdLike(path.substr(kLibrary.size()))) {
    path.remove_prefix(kLibrary.size());
  }
  // docker.io/foo.io/bar must keep its domain: "foo.io/bar" would parse as registry foo.io
  // (Docker drops it, so its saved RepoTags load into the wrong registry).
  if (size_t slash = path.find('/'); slash != std::string_view::npos && LooksLikeDomain(path.substr(0, slash))) {
    return name();
  }
  return std::string(path);
}

std::string Reference::FamiliarString() const {
  std::string text = FamiliarName();
  if (tag_) text += ":" + *tag_;
  if (digest_) text += "@" + digest_->ToString();
  return text;
}

std::string Reference::ApiHost() const {
  return domain_ == kDockerHubDomain ? std::string(kDockerHubApiHost) : domain_;
}

std::string Reference::ManifestReference() const { return digest_ ? digest_->ToString() : tag_.value_or("latest"); }

Result<Reference> Reference::WithTag(std::string_view tag) const {
  if (std::optional<std::string> reason = CheckTag(tag)) {
    return Fail(ErrorCode::kInvalidArgument, "invalid tag \"{}\" for {}: {}", tag, name(), *reason);
  }
  Reference copy = *this;
  copy.tag_ = std::string(tag);
  return copy;
}

Reference Reference::WithDigest(const Digest& digest) const {
  Reference copy = *this;
  copy.digest_ = digest;
  return copy;
}

}  // namespace strata::oci
