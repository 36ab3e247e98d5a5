// Pushing built images and indexes over the distribution API (monolithic uploads).
#include "tests/support/image_builder.h"
#include "tests/support/registry_fixture.h"

namespace strata::test_support {
namespace {

std::string Trimmed(std::string_view url) {
  while (!url.empty() && url.back() == '/') url.remove_suffix(1);
  return std::string(url);
}

// Locations may be absolute or relative to the registry (and carry query parameters).
std::string ResolveLocation(std::string_view registry_url, std::string_view location) {
  if (location.starts_with("http://") || location.starts_with("https://")) return std::string(location);
  if (location.starts_with("/")) return Trimmed(registry_url) + std::string(location);
  return Trimmed(registry_url) + "/" + std::string(location);
}

std::unexpected<Error> Unexpected(std::string_view what, const HttpResponse& response) {
  return Fail(ErrorCode::kFailedPrecondition, "{}: HTTP {}: {}", what, response.status, response.body);
}

}  // namespace

Status PushBlob(TestHttpClient& client, std::string_view registry_url, std::string_view repository, const Blob& blob) {
  std::string base = Trimmed(registry_url);
  std::string digest = blob.digest.ToString();
  STRATA_ASSIGN_OR_RETURN(HttpResponse head, client.Head(fmt::format("{}/v2/{}/blobs/{}", base, repository, digest)));
  if (head.status == 200) return {};

  std::string what = fmt::format("push blob {} to {}", digest, repository);
  STRATA_ASSIGN_OR_RETURN(HttpResponse started, client.Post(fmt::format("{}/v2/{}/blobs/uploads/", base, repository)));
  if (started.status != 202) return Unexpected(what + ": POST uploads", started);
  std::optional<std::string> location = started.Header("location");
  if (!location) return Fail(ErrorCode::kFailedPrecondition, "{}: 202 without Location", what);

  std::string put_url = ResolveLocation(base, *location);
  put_url += fmt::format("{}digest={}", put_url.find('?') == std::string::npos ? '?' : '&', UrlEncode(digest));
  STRATA_ASSIGN_OR_RETURN(HttpResponse finished,
                          client.Put(put_url, blob.data, {{"Content-Type", "application/octet-stream"}}));
  if (finished.status != 201) return Unexpected(what + ": PUT", finished);
  if (auto stored = finished.Header("docker-content-digest"); stored && *stored != digest) {
    return Fail(ErrorCode::kInternal, "{}: registry stored it as {}", what, *stored);
  }
  return {};
}

Status PushManifest(TestHttpClient& client, std::string_view registry_url, std::string_view repository,
                    std::string_view reference, const Blob& manifest) {
  std::string url = fmt::format("{}/v2/{}/manifests/{}", Trimmed(registry_url), repository, reference);
  STRATA_ASSIGN_OR_RETURN(HttpResponse response, client.Put(url, manifest.data, {{"Content-Type", manifest.media_type}}));
  std::string what = fmt::format("push manifest {} ({}) to {}:{}", manifest.digest, manifest.media_type, repository,
                                 reference);
  if (response.status != 201) return Unexpected(what, response);
  if (auto stored = response.Header("docker-content-digest"); stored && *stored != manifest.digest.ToString()) {
    return Fail(ErrorCode::kInternal, "{}: registry computed digest {}", what, *stored);
  }
  return {};
}

Result<PushedImage> PushImage(TestHttpClient& client, std::string_view registry_url, std::string_view repository,
                              std::string_view tag, const BuiltImage& image) {
  STRATA_RETURN_IF_ERROR(PushBlob(client, registry_url, repository, image.config));
  for (size_t i = 0; i < image.layers.size(); ++i) {
    if (image.push_layer[i]) STRATA_RETURN_IF_ERROR(PushBlob(client, registry_url, repository, image.layers[i]));
  }
  std::string reference = tag.empty() ? image.manifest.digest.ToString() : std::string(tag);
  STRATA_RETURN_IF_ERROR(PushManifest(client, registry_url, repository, reference, image.manifest));
  PushedImage pushed{
      .repository = std::string(repository),
      .tag = std::string(tag),
      .manifest_digest = image.manifest.digest,
      .manifest_media_type = image.manifest.media_type,
      .manifest_size = image.manifest.data.size(),
      .config_digest = image.config.digest,
      .diff_ids = image.diff_ids,
  };
  for (const Blob& layer : image.layers) pushed.layer_digests.push_back(layer.digest);
  return pushed;
}

Result<PushedIndex> PushIndex(TestHttpClient& client, std::string_view registry_url, std::string_view repository,
                              std::string_view tag, const BuiltIndex& index) {
  PushedIndex pushed{
      .repository = std::string(repository),
      .tag = std::string(tag),
      .index_digest = index.index.digest,
      .index_media_type = index.index.media_type,
      .index_size = index.index.data.size(),
  };
  for (const BuiltImage& image : index.images) {
    STRATA_ASSIGN_OR_RETURN(PushedImage child, PushImage(client, registry_url, repository, "", image));
    pushed.images.push_back(std::move(child));
  }
  std::string reference = tag.empty() ? index.index.digest.ToString() : std::string(tag);
  STRATA_RETURN_IF_ERROR(PushManifest(client, registry_url, repository, reference, index.index));
  return pushed;
}

Result<HttpResponse> FetchManifest(TestHttpClient& client, std::string_view registry_url, std::string_view repository,
                                   std::string_view reference) {
  return client.Get(fmt::format("{}/v2/{}/manifests/{}", Trimmed(registry_url), repository, reference),
                    {{"Accept", ManifestAcceptHeader()}});
}

Result<PushedImage> ImageBuilder::PushTo(RegistryFixture& registry, std::string_view repository,
                                         std::string_view tag) const {
  STRATA_ASSIGN_OR_RETURN(BuiltImage image, Build());
  TestHttpClient client = registry.Client();
  return PushImage(client, registry.url(), repository, tag, image);
}

Result<PushedIndex> IndexBuilder::PushTo(RegistryFixture& registry, std::string_view repository,
                                         std::string_view tag) const {
  STRATA_ASSIGN_OR_RETURN(BuiltIndex index, Build());
  TestHttpClient client = registry.Client();
  return PushIndex(client, registry.url(), repository, tag, index);
}

}  // namespace strata::test_support
