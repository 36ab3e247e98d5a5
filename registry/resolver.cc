#include "registry/resolver.h"

#include <algorithm>
#include <charconv>

#include <nlohmann/json.hpp>

#include "oci/media_types.h"
#include "registry/registry_errors.h"
#include "registry/url.h"

namespace strata::registry {

namespace media_type = oci::media_type;

std::string ManifestAcceptHeader() {
  return fmt::format("{}, {}, {}, {}", media_type::kOciManifest, media_type::kOciIndex, media_type::kDockerManifest,
                     media_type::kDockerManifestList);
}

namespace {

// Digest of `bytes` with the algorithm of `like`.
Digest DigestLike(std::string_view bytes, const Digest& like) { return Digest::Of(bytes, like.algorithm()); }

// Makes `request` collect a 2xx body into `*out`, refusing it (FailedPrecondition, not
// retried) once it passes `limit` bytes or announces more: a hostile registry cannot make
// us hold an endless "manifest" in memory. A retried request starts `*out` over.
void LimitBody(HttpRequest& request, std::string* out, uint64_t limit, const std::string& what) {
  auto too_big = [what, limit](std::string_view size) {
    return Fail(ErrorCode::kFailedPrecondition, "{}: the registry sends {} bytes, more than the {} allowed", what, size,
                limit);
  };
  request.on_headers = [out, limit, too_big](const HttpResponse& response) -> Status {
    out->clear();
    if (auto length = response.headers.Get("Content-Length")) {
      uint64_t value = 0;
      auto [ptr, ec] = std::from_chars(length->data(), length->data() + length->size(), value);
      if (ec == std::errc() && value > limit) return too_big(*length);
    }
    return {};
  };
  request.body_sink = [out, limit, too_big](std::string_view chunk) -> Status {
    if (out->size() + chunk.size() > limit) return too_big(fmt::format("over {}", out->size() + chunk.size() - 1));
    out->append(chunk);
    return {};
  };
}

}  // namespace

Resolver::Resolver(Authorizer& authorizer, ResolverOptions options)
    : authorizer_(authorizer), options_(std::move(options)) {}

Result<std::vector<RegistryHost>> Resolver::Hosts(const oci::Reference& reference, Capability capability) const {
  STRATA_ASSIGN_OR_RETURN(std::vector<RegistryHost> hosts, options_.hosts.HostsFor(reference));
  std::vector<RegistryHost> chosen;
  for (RegistryHost& host : hosts) {
    if (!host.Can(capability)) continue;
    if (capability == kCapabilityPush && host.mirror) continue;
    chosen.push_back(std::move(host));
  }
  return chosen;
}

RetryPolicy Resolver::PolicyFor(const RegistryHost& host) const {
  RetryPolicy policy = options_.retry;
  if (host.mirror) policy.max_attempts = std::min(policy.max_attempts, options_.mirror_max_attempts);
  return policy;
}

Result<HttpResponse> Resolver::Send(const RegistryHost& host, const oci::Reference& reference,
                                    const HttpRequest& request, const std::vector<std::string>& scopes) {
  const std::vector<std::string> pull_scope = {fmt::format("repository:{}:pull", reference.path())};
  return SendFresh([&]() { return request; }, fmt::format("{} {}", request.method, request.url),
                   scopes.empty() ? pull_scope : scopes, PolicyFor(host));
}

Result<HttpResponse> Resolver::SendFresh(const std::function<HttpRequest()>& make_request, std::string_view what,
                                         const std::vector<std::string>& scopes, const RetryPolicy& policy) {
  return SendWithRetry([&]() { return authorizer_.Send(make_request(), scopes); }, policy, options_.sleep, what);
}

Result<Resolved> Resolver::GetManifest(const RegistryHost& host, const oci::Reference& reference,
                                       const std::string& ref_text, const std::optional<Digest>& expected_digest,
                                       int64_t expected_size) {
  const std::string what = fmt::format("manifest {}", reference.String());
  HttpRequest request{.method = "GET",
                      .url = host.RepositoryUrl(reference.path()) + "manifests/" + ref_text,
                      .headers = {{"Accept", ManifestAcceptHeader()}}};
  std::string body;
  LimitBody(request, &body, kMaxManifestBytes, what);
  STRATA_ASSIGN_OR_RETURN(HttpResponse response, Send(host, reference, request));
  if (response.status != 200) return Fail(StatusError(response, what));

  // Digests: the one we asked for wins; by tag, the registry's Docker-Content-Digest.
  std::optional<Digest> header_digest;
  if (auto header = response.headers.Get("Docker-Content-Digest")) {
    auto parsed = Digest::Parse(*header);
    if (!parsed) {
      return Fail(ErrorCode::kFailedPrecondition, "{}: registry sent an invalid Docker-Content-Digest: {}", what,
                  parsed.error().message());
    }
    header_digest = *parsed;
  }
  Digest digest = Digest::Of(body);
  if (expected_digest) {
    Digest actual = DigestLike(body, *expected_digest);
    if (actual != *expected_digest) {
      return Fail(ErrorCode::kFailedPrecondition,
                  "{}: content digest {} does not match expected digest {} ({} bytes received)", what, actual,
                  *expected_digest, body.size());
    }
    digest = *expected_digest;
  } else if (header_digest) {
    Digest actual = DigestLike(body, *header_digest);
    if (actual != *header_digest) {
      return Fail(ErrorCode::kFailedPrecondition,
                  "{}: content digest {} does not match Docker-Content-Digest {} ({} bytes received)", what, actual,
                  *header_digest, body.size());
    }
    digest = *header_digest;
  }
  if (expected_size >= 0 && static_cast<int64_t>(body.size()) != expected_size) {
    return Fail(ErrorCode::kFailedPrecondition, "{}: {} bytes received, expected {}", what, body.size(),
                expected_size);
  }

  // Media type: Content-Type, which the body's mediaType (when it has one) must agree with.
  std::string content_type(oci::BaseMediaType(response.headers.Get("Content-Type").value_or("")));
  auto doc = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) return Fail(ErrorCode::kInvalidArgument, "{}: body is not a JSON object", what);
  std::string body_type;
  if (auto it = doc.find("mediaType"); it != doc.end() && it->is_string()) body_type = it->get<std::string>();
  if (!body_type.empty() && !content_type.empty() && !oci::SameMediaType(body_type, content_type)) {
    return Fail(ErrorCode::kFailedPrecondition, "{}: mediaType {} in the body differs from Content-Type {}", what,
                body_type, content_type);
  }
  std::string media = body_type.empty() ? content_type : body_type;
  if (oci::IsSchema1Manifest(media) || (media.empty() && doc.contains("fsLayers"))) {
    return Fail(ErrorCode::kUnimplemented, "{}: Docker schema 1 manifests are not supported", what);
  }
  if (!oci::IsIndex(media) && !oci::IsManifest(media)) {
    // OCI allows documents without mediaType; a registry may then answer a generic type.
    if (body_type.empty() && doc.contains("manifests")) {
      media = media_type::kOciIndex;
    } else if (body_type.empty() && doc.contains("config")) {
      media = media_type::kOciManifest;
    } else {
      return Fail(ErrorCode::kInvalidArgument, "{}: unsupported media type \"{}\"", what, media);
    }
  }

  Resolved resolved;
  resolved.descriptor.media_type = std::string(oci::BaseMediaType(media));
  resolved.descriptor.digest = digest;
  resolved.descriptor.size = static_cast<int64_t>(body.size());
  resolved.manifest = std::move(body);
  return resolved;
}

Result<Resolved> Resolver::Resolve(const oci::Reference& reference) {
  STRATA_ASSIGN_OR_RETURN(std::vector<RegistryHost> hosts,
                          Hosts(reference, reference.digest() ? kCapabilityPull : kCapabilityResolve));
  return TryEachHost<Resolved>(hosts, fmt::format("manifest {}", reference.String()),
                               [&](const RegistryHost& host) { return ResolveOn(host, reference); });
}

Result<Resolved> Resolver::ResolveOn(const RegistryHost& host, const oci::Reference& reference) {
  const std::string what = fmt::format("manifest {}", reference.String());
  const std::string ref_text = reference.ManifestReference();
  HttpRequest head{.method = "HEAD",
                   .url = host.RepositoryUrl(reference.path()) + "manifests/" + ref_text,
                   .headers = {{"Accept", ManifestAcceptHeader()}}};
  STRATA_ASSIGN_OR_RETURN(HttpResponse response, Send(host, reference, head));
  if (response.status == 200) {
    std::optional<Digest> head_digest;
    if (auto header = response.headers.Get("Docker-Content-Digest")) {
      if (auto parsed = Digest::Parse(*header)) head_digest = *parsed;
    }
    if (head_digest) {
      if (reference.digest() && *reference.digest() != *head_digest) {
        // The registry names the content differently (another algorithm?): trust the
        // reference; GetManifest checks the bytes against it.
        head_digest = reference.digest();
      }
      int64_t size = -1;
      if (auto length = response.headers.Get("Content-Length")) {
        int64_t value = 0;
        auto [ptr, ec] = std::from_chars(length->data(), length->data() + length->size(), value);
        if (ec == std::errc() && ptr == length->data() + length->size()) size = value;
      }
      // Fetch by digest: the tag may move between HEAD and GET; the digest cannot.
      return GetManifest(host, reference, head_digest->ToString(), head_digest, size);
    }
  } else if (response.status != 405) {
    return Fail(StatusError(response, what));
  }
  return GetManifest(host, reference, ref_text, reference.digest(), -1);
}

Result<std::string> Resolver::FetchManifest(const oci::Reference& reference, const oci::Descriptor& descriptor) {
  STRATA_ASSIGN_OR_RETURN(std::vector<RegistryHost> hosts, Hosts(reference, kCapabilityPull));
  STRATA_ASSIGN_OR_RETURN(
      Resolved resolved,
      TryEachHost<Resolved>(hosts, fmt::format("manifest {}@{}", reference.name(), descriptor.digest),
                            [&](const RegistryHost& host) {
                              return GetManifest(host, reference, descriptor.digest.ToString(), descriptor.digest,
                                                 descriptor.size);
                            }));
  if (!descriptor.media_type.empty() && !oci::SameMediaType(descriptor.media_type, resolved.descriptor.media_type)) {
    return Fail(ErrorCode::kFailedPrecondition, "manifest {}@{}: media type {} differs from the descriptor's {}",
                reference.name(), descriptor.digest, resolved.descriptor.media_type, descriptor.media_type);
  }
  return std::move(resolved.manifest);
}

Result<std::string> Resolver::FetchBlob(const oci::Reference& reference, const oci::Descriptor& descriptor) {
  const std::string what = fmt::format("blob {}@{}", reference.name(), descriptor.digest);
  STRATA_ASSIGN_OR_RETURN(std::vector<RegistryHost> hosts, Hosts(reference, kCapabilityPull));
  return TryEachHost<std::string>(
      hosts, what, [&](const RegistryHost& host) { return FetchBlobFrom(host, reference, descriptor); });
}

Result<std::string> Resolver::FetchBlobFrom(const RegistryHost& host, const oci::Reference& reference,
                                            const oci::Descriptor& descriptor) {
  const std::string what = fmt::format("blob {}@{}", reference.name(), descriptor.digest);
  if (descriptor.size > static_cast<int64_t>(kMaxInMemoryBlobBytes)) {
    return Fail(ErrorCode::kFailedPrecondition, "{}: size {} is more than the {} bytes read into memory", what,
                descriptor.size, kMaxInMemoryBlobBytes);
  }
  HttpRequest request{.method = "GET",
                      .url = host.RepositoryUrl(reference.path()) + "blobs/" + descriptor.digest.ToString()};
  std::string body;
  LimitBody(request, &body, static_cast<uint64_t>(std::max<int64_t>(descriptor.size, 0)), what);
  STRATA_ASSIGN_OR_RETURN(HttpResponse response, Send(host, reference, request));
  if (response.status != 200) return Fail(StatusError(response, what));
  if (static_cast<int64_t>(body.size()) != descriptor.size) {
    return Fail(ErrorCode::kFailedPrecondition, "{}: size {} does not match descriptor size {}", what,
                body.size(), descriptor.size);
  }
  Digest actual = DigestLike(body, descriptor.digest);
  if (actual != descriptor.digest) {
    return Fail(ErrorCode::kFailedPrecondition, "{}: content digest {} does not match expected digest {}", what,
                actual, descriptor.digest);
  }
  return body;
}

Result<ResolvedImage> Resolver::ResolvePlatform(const oci::Reference& reference, const oci::Platform& platform) {
  ResolvedImage image;
  STRATA_ASSIGN_OR_RETURN(image.top, Resolve(reference));
  if (oci::IsIndex(image.top.descriptor.media_type)) {
    STRATA_ASSIGN_OR_RETURN(oci::Index index, oci::Index::Parse(image.top.manifest));
    auto chosen = oci::SelectManifestForPlatform(index, oci::PlatformMatcher(platform));
    if (!chosen) return Fail(chosen.error().WithContext(reference.String()));
    if (!oci::IsManifest(chosen->media_type)) {
      return Fail(ErrorCode::kUnimplemented, "{}: entry {} for platform {} is a {}, not an image manifest",
                  reference.String(), chosen->digest, platform.String(), chosen->media_type);
    }
    image.manifest_descriptor = *chosen;
    STRATA_ASSIGN_OR_RETURN(image.manifest_bytes, FetchManifest(reference, *chosen));
    image.index = std::move(index);
  } else {
    image.manifest_descriptor = image.top.descriptor;
    image.manifest_bytes = image.top.manifest;
  }
  STRATA_ASSIGN_OR_RETURN(image.manifest, oci::Manifest::Parse(image.manifest_bytes));
  STRATA_ASSIGN_OR_RETURN(image.config_bytes, FetchBlob(reference, image.manifest.config));
  STRATA_ASSIGN_OR_RETURN(image.config, oci::ImageConfig::Parse(image.config_bytes));
  return image;
}

}  // namespace strata::registry
