// RegistryServer: a read-only OCI distribution endpoint over a store, for HttpServer — what
// `strata serve --registry ADDR` runs, so other hosts (containerd, docker, skopeo, strata)
// can use a strata root as their registry mirror.
//
// Repository mapping: an image recorded as "<domain>/<path>:<tag>" is served as repository
// <path> ("docker.io/library/alpine:3" -> library/alpine:3), and also under its full name
// ("docker.io/library/alpine"). When several domains hold the same path, a request with
// containerd's ?ns=<domain> picks one; otherwise the upstream's domain wins, then docker.io,
// then the first name in order. Manifests and blobs asked for by digest are served from the
// content store whatever repository is named (content addressing makes that safe).
//
// Endpoints: GET /v2/ (Docker-Distribution-API-Version); GET|HEAD manifests by tag or digest
// (Accept negotiation: a stored type the Accept header does not list is 404 MANIFEST_UNKNOWN,
// as distribution does; no Accept = any type); GET|HEAD blobs with single Range requests (206
// + Content-Range; 416 when unsatisfiable), streamed with sendfile; tags/list and _catalog
// with n/last pagination and Link headers. Errors carry distribution's JSON body
// (MANIFEST_UNKNOWN, BLOB_UNKNOWN, NAME_UNKNOWN, NAME_INVALID, DIGEST_INVALID, UNSUPPORTED).
// Any other method: 405 UNSUPPORTED.
//
// Pull-through (with an upstream): a tag the store does not have is resolved on the upstream,
// its manifest stored and the tag recorded as "<upstream domain>/<path>:<tag>"; a manifest
// missing by digest is fetched; a blob missing from the store is fetched through the shared
// Fetcher (one download per blob however many clients ask) when its descriptor is known
// from a manifest of that repository, then served. Tags already in the store are served
// without asking the upstream (so the mirror keeps working offline); `strata pull` on the
// cache node refreshes one.
#pragma once

#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "mirror/http_server.h"
#include "oci/descriptor.h"
#include "registry/fetcher.h"
#include "registry/resolver.h"
#include "store/store.h"

namespace strata::mirror {

struct Upstream {
  // The upstream's domain as references name it ("docker.io", "127.0.0.1:5000"): requests
  // for repository <path> go to <domain>/<path>. REQUIRES: resolver and fetcher outlive the
  // server; the fetcher is built on the served store's content store.
  std::string domain;
  registry::Resolver* resolver = nullptr;
  registry::Fetcher* fetcher = nullptr;
};

struct RegistryServerOptions {
  std::optional<Upstream> upstream;
  // Largest manifest served or pulled through.
  int64_t max_manifest_bytes = 16 << 20;
};

// Thread-safe: Handle runs concurrently on HttpServer's workers.
class RegistryServer {
 public:
  RegistryServer(store::Store& store, RegistryServerOptions options) : store_(store), options_(std::move(options)) {}

  void Handle(const HttpServerRequest& request, HttpResponseWriter& response);

 private:
  struct Match;
  void HandleManifest(const HttpServerRequest& request, HttpResponseWriter& response, const std::string& name,
                      const std::string& reference);
  void HandleBlob(const HttpServerRequest& request, HttpResponseWriter& response, const std::string& name,
                  const std::string& digest_text);
  void HandleTags(const HttpServerRequest& request, HttpResponseWriter& response, const std::string& name);
  void HandleCatalog(const HttpServerRequest& request, HttpResponseWriter& response);

  // The stored image `name`:`tag` stands for (see the mapping above).
  std::optional<oci::Descriptor> FindTag(const std::string& name, const std::string& tag, const std::string& ns);
  bool RepositoryKnown(const std::string& name);
  // Remembers the config and layer descriptors of a manifest served for `name`.
  void RememberBlobs(const std::string& name, std::string_view manifest_bytes);
  // The descriptor of blob `digest` in repository `name`, from manifests served or stored.
  std::optional<oci::Descriptor> KnownBlob(const std::string& name, const Digest& digest);
  Result<oci::Descriptor> PullManifestThrough(const std::string& name, const std::string& reference);

  store::Store& store_;
  RegistryServerOptions options_;
  std::mutex mutex_;
  std::map<Digest, oci::Descriptor> known_blobs_;  // guarded by mutex_
};

}  // namespace strata::mirror
