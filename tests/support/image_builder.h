// In-process test images: layers written with archive::TarWriter, compressed, and
// assembled into OCI or Docker schema 2 manifests (and indexes), then pushed to a registry.
//
// The builder writes its JSON itself, independently of oci/, so tests of oci/ and of the
// registry client check against a second implementation. Output is deterministic: the same
// calls give the same digests (fixed mtimes, no timestamps from the clock).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "archive/tar_writer.h"
#include "base/digest.h"
#include "base/error.h"
#include "tests/support/compression.h"
#include "tests/support/http_client.h"

namespace strata::test_support {

class RegistryFixture;

namespace media_types {
inline constexpr std::string_view kOciIndex = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view kOciManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view kOciConfig = "application/vnd.oci.image.config.v1+json";
inline constexpr std::string_view kOciLayer = "application/vnd.oci.image.layer.v1.tar";
inline constexpr std::string_view kOciLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip";
inline constexpr std::string_view kOciLayerZstd = "application/vnd.oci.image.layer.v1.tar+zstd";
inline constexpr std::string_view kDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr std::string_view kDockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr std::string_view kDockerConfig = "application/vnd.docker.container.image.v1+json";
inline constexpr std::string_view kDockerLayer = "application/vnd.docker.image.rootfs.diff.tar";
inline constexpr std::string_view kDockerLayerGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip";
inline constexpr std::string_view kDockerForeignLayerGzip = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
}  // namespace media_types

// The Accept header value listing all four manifest types.
std::string ManifestAcceptHeader();

// mtime of every entry unless given: 2023-11-14T22:13:20Z.
inline constexpr int64_t kDefaultEntryMtime = 1'700'000'000;

struct EntryAttrs {
  // Permission bits; default 0644 for files, 0755 for dirs, 0777 for symlinks, 0644 else.
  std::optional<uint32_t> mode;
  uint64_t uid = 0;
  uint64_t gid = 0;
  archive::TarTime mtime{kDefaultEntryMtime, 0};
  std::map<std::string, std::string> xattrs;
};

// A finished layer: the tar, its compressed blob, and both digests.
struct Layer {
  Compression compression;
  std::string tar;   // uncompressed
  std::string blob;  // as pushed
  Digest digest;     // sha256 of blob
  Digest diff_id;    // sha256 of tar
};

// Entries are written in call order. Paths may start with "/" (stripped). Errors in
// entries (e.g. an invalid PAX key) surface from Tar()/Build().
class LayerBuilder {
 public:
  LayerBuilder& File(std::string path, std::string content, EntryAttrs attrs = {});
  LayerBuilder& Dir(std::string path, EntryAttrs attrs = {});
  LayerBuilder& Symlink(std::string path, std::string target, EntryAttrs attrs = {});
  // `target` is the archive path of an earlier entry.
  LayerBuilder& Hardlink(std::string path, std::string target, EntryAttrs attrs = {});
  // OCI whiteout of `path`: an empty file "<dir>/.wh.<name>".
  LayerBuilder& Whiteout(std::string path);
  // OCI opaque marker for `dir`: an empty file "<dir>/.wh..wh..opq".
  LayerBuilder& OpaqueDir(std::string dir);
  LayerBuilder& Fifo(std::string path, EntryAttrs attrs = {});
  LayerBuilder& CharDevice(std::string path, uint32_t major, uint32_t minor, EntryAttrs attrs = {});
  LayerBuilder& BlockDevice(std::string path, uint32_t major, uint32_t minor, EntryAttrs attrs = {});
  // Any entry exactly as given (hostile names, PAX records such as MSWINDOWS.*, ...).
  // entry.size is set from content.
  LayerBuilder& Entry(archive::TarEntry entry, std::string content = {});

  size_t entry_count() const { return entries_.size(); }
  // The tar stream (ends with the two zero blocks).
  Result<std::string> Tar() const;
  Result<Layer> Build(Compression compression = Compression::kGzip) const;

 private:
  LayerBuilder& Add(archive::TarEntryType type, std::string path, EntryAttrs attrs, uint32_t default_mode,
                    std::string content = {}, std::string linkname = {});
  std::vector<std::pair<archive::TarEntry, std::string>> entries_;
};

// A layer runc can start: bin/busybox (copied from `busybox`, a static build) with applet
// symlinks bin/{sh,ls,cat,echo,...} -> busybox, and the dirs a container rootfs needs
// (proc, sys, dev, etc, tmp, root, ...), plus a minimal etc/passwd and etc/group.
Result<LayerBuilder> BusyboxLayer(const std::filesystem::path& busybox = "/bin/busybox");

enum class ManifestFormat { kOci, kDocker };

struct Platform {
  std::string os = "linux";
  std::string architecture;  // empty = this machine's (amd64, arm64, ...)
  std::string variant;
  std::string os_version;    // Windows "10.0.20348.2113"
  std::vector<std::string> os_features;
};
// GOARCH name of this machine.
std::string HostArchitecture();

// `size` incompressible bytes, the same for the same seed: big layers and blobs whose
// transfers can be cut, resumed and counted.
std::string RandomBytes(size_t size, uint32_t seed);

// A content-addressed blob ready to push, with its descriptor fields.
struct Blob {
  std::string media_type;
  std::string data;
  Digest digest;

  static Blob Of(std::string media_type, std::string data);
  // {"mediaType","digest","size"}.
  nlohmann::ordered_json Descriptor() const;
};

struct LayerOptions {
  std::string created_by;  // history entry text
  // Overrides the media type derived from format and compression (e.g. foreign layers).
  std::string media_type;
  // Descriptor "urls" (foreign / non-distributable layers).
  std::vector<std::string> urls;
  // False: the blob is not uploaded (it lives at `urls`).
  bool push_blob = true;
  std::map<std::string, std::string> annotations;
};

struct BuiltImage {
  ManifestFormat format;
  Platform platform;
  Blob manifest;
  Blob config;
  std::vector<Blob> layers;
  std::vector<Digest> diff_ids;
  std::vector<bool> push_layer;  // parallel to layers
};

// What a push stored, as the registry knows it.
struct PushedImage {
  std::string repository;
  std::string tag;  // "" when pushed by digest only (index children)
  Digest manifest_digest;
  std::string manifest_media_type;
  uint64_t manifest_size = 0;
  Digest config_digest;
  std::vector<Digest> layer_digests;
  std::vector<Digest> diff_ids;
};

struct PushedIndex {
  std::string repository;
  std::string tag;
  Digest index_digest;
  std::string index_media_type;
  uint64_t index_size = 0;
  std::vector<PushedImage> images;
};

class ImageBuilder {
 public:
  explicit ImageBuilder(ManifestFormat format = ManifestFormat::kOci) : format_(format) {}

  ImageBuilder& SetPlatform(Platform platform);
  ImageBuilder& AddLayer(Layer layer, LayerOptions options = {});
  // A history entry with empty_layer: true (ENV, CMD... steps).
  ImageBuilder& AddEmptyLayerHistory(std::string created_by);
  ImageBuilder& Cmd(std::vector<std::string> cmd);
  ImageBuilder& Entrypoint(std::vector<std::string> entrypoint);
  ImageBuilder& Env(std::string key_equals_value);
  ImageBuilder& WorkingDir(std::string dir);
  ImageBuilder& User(std::string user);
  ImageBuilder& Label(std::string key, std::string value);
  // Manifest annotations.
  ImageBuilder& Annotation(std::string key, std::string value);
  // RFC 3339 "created" of the config and history (default fixed: 2023-11-14T22:13:20Z).
  ImageBuilder& Created(std::string rfc3339);
  // Last edit of the config JSON before it is serialised (Windows fields, odd values...).
  ImageBuilder& EditConfig(std::function<void(nlohmann::ordered_json&)> edit);

  Result<BuiltImage> Build() const;
  // Build() then PushImage with the fixture's client.
  Result<PushedImage> PushTo(RegistryFixture& registry, std::string_view repository,
                                    std::string_view tag) const;

 private:
  struct PendingLayer {
    Layer layer;
    LayerOptions options;
  };
  ManifestFormat format_;
  Platform platform_;
  std::vector<PendingLayer> layers_;
  std::vector<std::pair<size_t, std::string>> empty_history_;  // (position among layers, text)
  nlohmann::ordered_json container_config_ = nlohmann::ordered_json::object();
  std::map<std::string, std::string> annotations_;
  std::string created_ = "2023-11-14T22:13:20Z";
  std::vector<std::function<void(nlohmann::ordered_json&)>> config_edits_;
};

struct BuiltIndex {
  ManifestFormat format;
  Blob index;
  std::vector<BuiltImage> images;
};

// Registry operations on built content. `registry_url` is "http(s)://host:port"; any
// registry works (the fixture, later a strata mirror). Each fails with the HTTP status and
// body of an unexpected answer.
//
// Uploads one blob unless HEAD says it exists: POST /blobs/uploads/, then a monolithic
// PUT <location>?digest=.
Status PushBlob(TestHttpClient& client, std::string_view registry_url, std::string_view repository, const Blob& blob);
// PUT /manifests/<reference> with Content-Type = blob.media_type; checks that the
// registry's Docker-Content-Digest (when given) equals blob.digest.
Status PushManifest(TestHttpClient& client, std::string_view registry_url, std::string_view repository,
                    std::string_view reference, const Blob& manifest);
// Config, pushable layers, then the manifest (by tag, or by digest when tag is "").
Result<PushedImage> PushImage(TestHttpClient& client, std::string_view registry_url, std::string_view repository,
                              std::string_view tag, const BuiltImage& image);
// Every image by digest, then the index by tag.
Result<PushedIndex> PushIndex(TestHttpClient& client, std::string_view registry_url, std::string_view repository,
                              std::string_view tag, const BuiltIndex& index);
// GET /manifests/<reference> with Accept listing all manifest types (any status returned).
Result<HttpResponse> FetchManifest(TestHttpClient& client, std::string_view registry_url,
                                   std::string_view repository, std::string_view reference);

// A multi-platform index (OCI) or manifest list (Docker) over built images.
class IndexBuilder {
 public:
  explicit IndexBuilder(ManifestFormat format = ManifestFormat::kOci) : format_(format) {}
  IndexBuilder& Add(BuiltImage image);
  IndexBuilder& Annotation(std::string key, std::string value);
  Result<BuiltIndex> Build() const;
  Result<PushedIndex> PushTo(RegistryFixture& registry, std::string_view repository,
                                    std::string_view tag) const;

 private:
  ManifestFormat format_;
  std::vector<BuiltImage> images_;
  std::map<std::string, std::string> annotations_;
};

}  // namespace strata::test_support
