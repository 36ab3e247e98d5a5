#include "mirror/registry_server.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "base/file.h"
#include "images/pull.h"
#include "oci/index.h"
#include "oci/manifest.h"
#include "oci/media_types.h"
#include "oci/reference.h"

namespace strata::mirror {
namespace {

using Headers = HttpResponseWriter::Headers;
constexpr std::string_view kApiVersionHeader = "Docker-Distribution-API-Version";
constexpr std::string_view kApiVersion = "registry/2.0";

void SendError(HttpResponseWriter& response, int status, std::string_view code, std::string_view message,
               const nlohmann::json& detail = nullptr) {
  nlohmann::ordered_json error{{"code", code}, {"message", message}};
  if (!detail.is_null()) error["detail"] = detail;
  nlohmann::ordered_json body{{"errors", nlohmann::ordered_json::array({error})}};
  Headers headers = {{"Content-Type", "application/json; charset=utf-8"},
                     {std::string(kApiVersionHeader), std::string(kApiVersion)}};
  if (status == 405) headers.emplace_back("Allow", "GET, HEAD");
  (void)response.Send(status, headers, body.dump() + "\n");
}

bool ValidRepositoryName(std::string_view name) {
  if (name.empty() || name.size() > 255 || name.front() == '/' || name.back() == '/') return false;
  for (char c : name) {
    if (!(std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) || c == '.' ||
          c == '_' || c == '-' || c == '/' || c == ':')) {
      return false;
    }
  }
  return name.find("//") == std::string_view::npos;
}

// The media type a stored manifest document declares, or the one its shape implies.
std::string DocumentMediaType(std::string_view bytes) {
  auto json = nlohmann::json::parse(bytes, nullptr, false);
  if (json.is_object() && json.contains("mediaType") && json["mediaType"].is_string()) {
    return json["mediaType"].get<std::string>();
  }
  if (json.is_object() && json.contains("manifests")) return std::string(oci::media_type::kOciIndex);
  return std::string(oci::media_type::kOciManifest);
}

// Whether the Accept header admits `media_type` (no header: anything).
bool Accepts(const std::string& accept, const std::string& media_type) {
  if (accept.empty()) return true;
  size_t start = 0;
  while (start <= accept.size()) {
    size_t comma = accept.find(',', start);
    std::string_view item = std::string_view(accept).substr(start, comma == std::string::npos ? std::string::npos
                                                                                                : comma - start);
    item = oci::BaseMediaType(item);
    if (item == "*/*" || item == "application/*" || oci::SameMediaType(item, media_type)) return true;
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return false;
}

// Single "bytes=a-b" / "bytes=a-" / "bytes=-n" range over `size` bytes. nullopt = serve the
// whole blob (no or unsupported Range); {-1,-1} = unsatisfiable.
std::optional<std::pair<int64_t, int64_t>> ParseRange(const std::string& header, int64_t size) {
  if (!header.starts_with("bytes=") || header.find(',') != std::string::npos) return std::nullopt;
  std::string_view spec = std::string_view(header).substr(6);
  const size_t dash = spec.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  auto number = [](std::string_view text) -> std::optional<int64_t> {
    int64_t value = 0;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || ptr != text.data() + text.size() || value < 0) return std::nullopt;
    return value;
  };
  std::string_view first = spec.substr(0, dash), last = spec.substr(dash + 1);
  if (first.empty()) {  // suffix: the last n bytes
    auto n = number(last);
    if (!n) return std::nullopt;
    if (*n == 0 || size == 0) return std::make_pair(int64_t{-1}, int64_t{-1});
    return std::make_pair(std::max<int64_t>(0, size - *n), size - 1);
  }
  auto start = number(first);
  if (!start) return std::nullopt;
  int64_t end = size - 1;
  if (!last.empty()) {
    auto parsed = number(last);
    if (!parsed || *parsed < *start) return std::nullopt;
    end = std::min(*parsed, size - 1);
  }
  if (*start >= size) return std::make_pair(int64_t{-1}, int64_t{-1});
  return std::make_pair(*start, end);
}

struct Paged {
  std::vector<std::string> items;
  std::optional<std::string> next_last;  // set when more follow
};

// distribution's n/last paging over sorted `all`; n absent = everything, n=0 = nothing.
Result<Paged> Page(const std::vector<std::string>& all, const HttpServerRequest& request) {
  Paged paged;
  auto begin = all.begin();
  if (auto last = request.query.find("last"); last != request.query.end()) {
    begin = std::upper_bound(all.begin(), all.end(), last->second);
  }
  size_t limit = std::numeric_limits<size_t>::max();
  if (auto n = request.query.find("n"); n != request.query.end()) {
    size_t value = 0;
    auto [ptr, ec] = std::from_chars(n->second.data(), n->second.data() + n->second.size(), value);
    if (ec != std::errc() || ptr != n->second.data() + n->second.size()) {
      return Fail(ErrorCode::kInvalidArgument, "n={:?} is not a count", n->second);
    }
    limit = value;
  }
  for (auto it = begin; it != all.end() && paged.items.size() < limit; ++it) paged.items.push_back(*it);
  if (!paged.items.empty() && begin + static_cast<ptrdiff_t>(paged.items.size()) != all.end()) {
    paged.next_last = paged.items.back();
  }
  return paged;
}

std::string QueryEscape(std::string_view text) {
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

}  // namespace

struct RegistryServer::Match {
  std::string domain;
  oci::Descriptor target;
};

void RegistryServer::Handle(const HttpServerRequest& request, HttpResponseWriter& response) {
  const std::string& path = request.path;
  spdlog::debug("registry: {} {} from {}", request.method, request.target, request.peer);
  if (path == "/v2" || path == "/v2/") {
    if (request.method != "GET" && request.method != "HEAD") return SendError(response, 405, "UNSUPPORTED", "read-only");
    (void)response.Send(200, {{"Content-Type", "application/json"}, {std::string(kApiVersionHeader), std::string(kApiVersion)}},
                        "{}");
    return;
  }
  if (!path.starts_with("/v2/")) return SendError(response, 404, "NOT_FOUND", "not a registry API path");
  if (request.method != "GET" && request.method != "HEAD") {
    return SendError(response, 405, "UNSUPPORTED", "this registry mirror is read-only");
  }
  const std::string rest = path.substr(4);
  if (rest == "_catalog") return HandleCatalog(request, response);
  struct Route {
    std::string_view marker;
    int kind;
  };
  for (const Route& route : {Route{"/manifests/", 0}, Route{"/blobs/", 1}}) {
    const size_t at = rest.rfind(route.marker);
    if (at == std::string::npos) continue;
    const std::string name = rest.substr(0, at);
    const std::string reference = rest.substr(at + route.marker.size());
    if (!ValidRepositoryName(name)) return SendError(response, 404, "NAME_INVALID", "invalid repository name");
    if (reference.empty() || reference.find('/') != std::string::npos) break;
    if (route.kind == 0) return HandleManifest(request, response, name, reference);
    return HandleBlob(request, response, name, reference);
  }
  if (rest.ends_with("/tags/list")) {
    const std::string name = rest.substr(0, rest.size() - 10);
    if (!ValidRepositoryName(name)) return SendError(response, 404, "NAME_INVALID", "invalid repository name");
    return HandleTags(request, response, name);
  }
  SendError(response, 404, "NOT_FOUND", "unknown registry API path");
}

std::optional<oci::Descriptor> RegistryServer::FindTag(const std::string& name, const std::string& tag,
                                                       const std::string& ns) {
  auto images = store_.images().List({});
  if (!images) return std::nullopt;
  std::vector<Match> matches;
  for (const store::Image& image : *images) {
    auto reference = oci::Reference::Parse(image.name);
    if (!reference || reference->tag() != tag || reference->digest()) continue;
    if (reference->name() == name) return image.target;  // the full name: exactly this one
    if (reference->path() != name || (!ns.empty() && reference->domain() != ns)) continue;
    matches.push_back({reference->domain(), image.target});
  }
  if (matches.empty()) return std::nullopt;
  for (std::string_view preferred :
       {options_.upstream ? std::string_view(options_.upstream->domain) : std::string_view(), oci::kDockerHubDomain}) {
    for (const Match& match : matches) {
      if (!preferred.empty() && match.domain == preferred) return match.target;
    }
  }
  return matches.front().target;
}

bool RegistryServer::RepositoryKnown(const std::string& name) {
  auto images = store_.images().List({});
  if (!images) return false;
  for (const store::Image& image : *images) {
    auto reference = oci::Reference::Parse(image.name);
    if (reference && (reference->path() == name || reference->name() == name)) return true;
  }
  return false;
}

void RegistryServer::RememberBlobs(const std::string& name, std::string_view manifest_bytes) {
  (void)name;
  auto manifest = oci::Manifest::Parse(manifest_bytes);
  if (!manifest) return;
  std::lock_guard lock(mutex_);
  known_blobs_.emplace(manifest->config.digest, manifest->config);
  for (const oci::Descriptor& layer : manifest->layers) known_blobs_.emplace(layer.digest, layer);
}

std::optional<oci::Descriptor> RegistryServer::KnownBlob(const std::string& name, const Digest& digest) {
  {
    std::lock_guard lock(mutex_);
    if (auto it = known_blobs_.find(digest); it != known_blobs_.end()) return it->second;
  }
  // After a restart: the manifests of this repository's stored images.
  auto images = store_.images().List({});
  if (!images) return std::nullopt;
  store::ContentStore& content = store_.content();
  for (const store::Image& image : *images) {
    auto reference = oci::Reference::Parse(image.name);
    if (!reference || (reference->path() != name && reference->name() != name)) continue;
    std::vector<oci::Descriptor> manifests = {image.target};
    if (oci::IsIndex(image.target.media_type)) {
      auto bytes = store::ReadBlob(content, image.target.digest, options_.max_manifest_bytes);
      auto index = bytes ? oci::Index::Parse(*bytes) : Result<oci::Index>(std::unexpected(bytes.error()));
      if (!index) continue;
      manifests = index->manifests;
    }
    for (const oci::Descriptor& descriptor : manifests) {
      auto bytes = store::ReadBlob(content, descriptor.digest, options_.max_manifest_bytes);
      if (bytes) RememberBlobs(name, *bytes);
    }
  }
  std::lock_guard lock(mutex_);
  if (auto it = known_blobs_.find(digest); it != known_blobs_.end()) return it->second;
  return std::nullopt;
}

Result<oci::Descriptor> RegistryServer::PullManifestThrough(const std::string& name, const std::string& reference_text) {
  const Upstream& upstream = *options_.upstream;
  const bool by_digest = reference_text.find(':') != std::string::npos;
  const std::string text = fmt::format("{}/{}{}{}", upstream.domain, name, by_digest ? "@" : ":", reference_text);
  STRATA_ASSIGN_OR_RETURN(oci::Reference reference, oci::Reference::Parse(text));
  STRATA_ASSIGN_OR_RETURN(registry::Resolved resolved, upstream.resolver->Resolve(reference));
  store::Labels labels;
  if (oci::IsIndex(resolved.descriptor.media_type)) {
    STRATA_ASSIGN_OR_RETURN(oci::Index index, oci::Index::Parse(resolved.manifest));
    labels = images::IndexGcLabels(index.manifests);
  } else if (oci::IsManifest(resolved.descriptor.media_type)) {
    STRATA_ASSIGN_OR_RETURN(oci::Manifest manifest, oci::Manifest::Parse(resolved.manifest));
    labels = images::ManifestGcLabels(manifest.config, manifest.layers);
  }
  STRATA_RETURN_IF_ERROR(store::WriteBlob(store_.content(), &store_.leases(), resolved.descriptor.digest,
                                          resolved.manifest, labels));
  if (!by_digest) {
    oci::Descriptor target{.media_type = resolved.descriptor.media_type, .digest = resolved.descriptor.digest,
                           .size = resolved.descriptor.size};
    STRATA_RETURN_IF_ERROR(store_.images().Put(store::Image{.name = reference.String(), .target = target}));
  }
  spdlog::info("registry: pulled {} through from the upstream ({})", text, resolved.descriptor.digest);
  return resolved.descriptor;
}

void RegistryServer::HandleManifest(const HttpServerRequest& request, HttpResponseWriter& response,
                                    const std::string& name, const std::string& reference) {
  std::optional<Digest> digest;
  std::string media_type;
  if (reference.find(':') != std::string::npos) {
    auto parsed = Digest::Parse(reference);
    if (!parsed) return SendError(response, 400, "DIGEST_INVALID", parsed.error().message());
    digest = *parsed;
  } else if (auto found = FindTag(name, reference,
                                  request.query.contains("ns") ? request.query.at("ns") : std::string())) {
    digest = found->digest;
    media_type = found->media_type;
  }
  if (!digest || !store_.content().Info(*digest)) {
    if (!options_.upstream) {
      if (!RepositoryKnown(name) && !digest) {
        return SendError(response, 404, "NAME_UNKNOWN", "repository name not known to registry",
                         {{"name", name}});
      }
      return SendError(response, 404, "MANIFEST_UNKNOWN", "manifest unknown", {{"Tag", reference}});
    }
    auto pulled = PullManifestThrough(name, reference);
    if (!pulled) {
      const bool not_found = pulled.error().code() == ErrorCode::kNotFound;
      spdlog::warn("registry: pull-through of {}:{} failed: {}", name, reference, pulled.error().message());
      return SendError(response, not_found ? 404 : 502, not_found ? "MANIFEST_UNKNOWN" : "UNAVAILABLE",
                       not_found ? "manifest unknown" : pulled.error().message());
    }
    digest = pulled->digest;
    media_type = pulled->media_type;
  }
  auto bytes = store::ReadBlob(store_.content(), *digest, options_.max_manifest_bytes);
  if (!bytes) return SendError(response, 404, "MANIFEST_UNKNOWN", bytes.error().message());
  if (media_type.empty()) media_type = DocumentMediaType(*bytes);
  if (!oci::IsIndex(media_type) && !oci::IsManifest(media_type)) {
    return SendError(response, 404, "MANIFEST_UNKNOWN", fmt::format("{} is not a manifest", *digest));
  }
  if (!Accepts(request.Header("accept"), media_type)) {
    return SendError(response, 404, "MANIFEST_UNKNOWN",
                     fmt::format("manifest is {}, which the Accept header does not list", media_type));
  }
  if (oci::IsManifest(media_type)) RememberBlobs(name, *bytes);
  Headers headers = {{"Content-Type", media_type},
                     {"Docker-Content-Digest", digest->ToString()},
                     {"ETag", fmt::format("\"{}\"", digest->ToString())},
                     {std::string(kApiVersionHeader), std::string(kApiVersion)}};
  (void)response.Send(200, headers, *bytes);
}

void RegistryServer::HandleBlob(const HttpServerRequest& request, HttpResponseWriter& response,
                                const std::string& name, const std::string& digest_text) {
  auto digest = Digest::Parse(digest_text);
  if (!digest) return SendError(response, 400, "DIGEST_INVALID", digest.error().message());
  store::ContentStore& content = store_.content();
  if (!content.Info(*digest) && options_.upstream) {
    std::optional<oci::Descriptor> descriptor = KnownBlob(name, *digest);
    if (descriptor) {
      auto reference = oci::Reference::Parse(fmt::format("{}/{}@{}", options_.upstream->domain, name, *digest));
      auto fetched = reference ? options_.upstream->fetcher->Fetch(*reference, *descriptor, {})
                               : Result<registry::FetchOutcome>(std::unexpected(reference.error()));
      if (!fetched) {
        spdlog::warn("registry: pull-through of blob {} in {} failed: {}", *digest, name, fetched.error().message());
        if (fetched.error().code() != ErrorCode::kNotFound) {
          return SendError(response, 502, "UNAVAILABLE", fetched.error().message());
        }
      }
    }
  }
  auto reader = content.Reader(*digest);
  if (!reader) return SendError(response, 404, "BLOB_UNKNOWN", "blob unknown to registry", {{"digest", digest_text}});
  const int64_t size = (*reader)->size();
  Headers headers = {{"Content-Type", "application/octet-stream"},
                     {"Docker-Content-Digest", digest->ToString()},
                     {"ETag", fmt::format("\"{}\"", digest->ToString())},
                     {"Accept-Ranges", "bytes"},
                     {"Cache-Control", "max-age=31536000"},
                     {std::string(kApiVersionHeader), std::string(kApiVersion)}};
  auto range = ParseRange(request.Header("range"), size);
  if (range && range->first < 0) {
    headers.emplace_back("Content-Range", fmt::format("bytes */{}", size));
    (void)response.Send(416, headers, "");
    return;
  }
  if (range) {
    headers.emplace_back("Content-Range", fmt::format("bytes {}-{}/{}", range->first, range->second, size));
    (void)response.SendFile(206, headers, (*reader)->fd(), range->first, range->second - range->first + 1);
    return;
  }
  (void)response.SendFile(200, headers, (*reader)->fd(), 0, size);
}

void RegistryServer::HandleTags(const HttpServerRequest& request, HttpResponseWriter& response,
                                const std::string& name) {
  auto images = store_.images().List({});
  if (!images) return SendError(response, 500, "UNKNOWN", images.error().message());
  std::set<std::string> tags;
  bool known = false;
  for (const store::Image& image : *images) {
    auto reference = oci::Reference::Parse(image.name);
    if (!reference || (reference->path() != name && reference->name() != name)) continue;
    known = true;
    if (reference->tag() && !reference->digest()) tags.insert(*reference->tag());
  }
  if (!known) return SendError(response, 404, "NAME_UNKNOWN", "repository name not known to registry", {{"name", name}});
  auto paged = Page(std::vector<std::string>(tags.begin(), tags.end()), request);
  if (!paged) return SendError(response, 400, "PAGINATION_NUMBER_INVALID", paged.error().message());
  Headers headers = {{"Content-Type", "application/json; charset=utf-8"},
                     {std::string(kApiVersionHeader), std::string(kApiVersion)}};
  if (paged->next_last) {
    headers.emplace_back("Link", fmt::format("</v2/{}/tags/list?last={}&n={}>; rel=\"next\"", name,
                                             QueryEscape(*paged->next_last), paged->items.size()));
  }
  nlohmann::ordered_json body{{"name", name}, {"tags", paged->items}};
  (void)response.Send(200, headers, body.dump());
}

void RegistryServer::HandleCatalog(const HttpServerRequest& request, HttpResponseWriter& response) {
  auto images = store_.images().List({});
  if (!images) return SendError(response, 500, "UNKNOWN", images.error().message());
  std::set<std::string> repositories;
  for (const store::Image& image : *images) {
    if (auto reference = oci::Reference::Parse(image.name)) repositories.insert(reference->path());
  }
  auto paged = Page(std::vector<std::string>(repositories.begin(), repositories.end()), request);
  if (!paged) return SendError(response, 400, "PAGINATION_NUMBER_INVALID", paged.error().message());
  Headers headers = {{"Content-Type", "application/json; charset=utf-8"},
                     {std::string(kApiVersionHeader), std::string(kApiVersion)}};
  if (paged->next_last) {
    headers.emplace_back("Link", fmt::format("</v2/_catalog?last={}&n={}>; rel=\"next\"",
                                             QueryEscape(*paged->next_last), paged->items.size()));
  }
  nlohmann::ordered_json body{{"repositories", paged->items}};
  (void)response.Send(200, headers, body.dump());
}

}  // namespace strata::mirror
