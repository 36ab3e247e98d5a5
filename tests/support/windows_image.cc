#include "tests/support/windows_image.h"

#include <fmt/format.h>

#include "tests/support/windows_layer_builder.h"

namespace strata::test_support {
namespace {

std::string ForeignMediaType(ManifestFormat format, Compression compression) {
  if (format == ManifestFormat::kDocker && compression == Compression::kGzip) {
    return std::string(media_types::kDockerForeignLayerGzip);
  }
  if (format == ManifestFormat::kDocker && compression == Compression::kNone) {
    return "application/vnd.docker.image.rootfs.foreign.diff.tar";
  }
  switch (compression) {
    case Compression::kNone: return "application/vnd.oci.image.layer.nondistributable.v1.tar";
    case Compression::kGzip: return std::string(kOciNondistributableLayerGzip);
    case Compression::kZstd: return "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
  }
  return std::string(kOciNondistributableLayerGzip);
}

// The path part of the request line of `head` ("GET /x HTTP/1.1" -> "GET", "/x").
std::pair<std::string, std::string> RequestLine(const std::string& head) {
  const size_t method_end = head.find(' ');
  if (method_end == std::string::npos) return {};
  const size_t target_end = head.find(' ', method_end + 1);
  if (target_end == std::string::npos) return {};
  return {head.substr(0, method_end), head.substr(method_end + 1, target_end - method_end - 1)};
}

}  // namespace

std::string WindowsOsVersion(uint32_t build, uint32_t ubr) { return fmt::format("10.0.{}.{}", build, ubr); }
std::string WindowsOsVersion(uint32_t build) { return fmt::format("10.0.{}", build); }

Result<Layer> BuildWindowsBaseLayer(Compression compression) { return WindowsBaseLayer().Build(compression); }
Result<Layer> BuildWindowsDeltaLayer(Compression compression) { return WindowsDeltaLayer().Build(compression); }

Result<BuiltImage> BuildWindowsImage(const WindowsImageSpec& spec) {
  STRATA_ASSIGN_OR_RETURN(Layer base, BuildWindowsBaseLayer(spec.compression));
  STRATA_ASSIGN_OR_RETURN(Layer delta, BuildWindowsDeltaLayer(spec.compression));
  LayerOptions base_options{.created_by = "Apply image " + spec.os_version()};
  if (!spec.foreign_base_urls.empty()) {
    base_options.media_type = ForeignMediaType(spec.format, spec.compression);
    base_options.urls = spec.foreign_base_urls;
    base_options.push_blob = spec.push_foreign_blob;
  }
  ImageBuilder builder(spec.format);
  builder
      .SetPlatform({.os = "windows",
                    .architecture = "amd64",
                    .os_version = spec.os_version(),
                    .os_features = spec.os_features})
      .AddLayer(std::move(base), std::move(base_options))
      .AddLayer(std::move(delta), {.created_by = "Install update " + spec.os_version()})
      .Cmd({"c:\\windows\\system32\\cmd.exe"});
  return builder.Build();
}

std::vector<WindowsImageSpec> StandardWindowsImageSpecs(ManifestFormat format) {
  return {
      {.build = kWindowsServer2019Build, .ubr = kWindowsServer2019Ubr, .format = format},
      {.build = kWindowsServer2022Build, .ubr = kWindowsServer2022Ubr, .os_features = {"win32k"}, .format = format},
      {.build = kWindowsServer2025Build, .ubr = kWindowsServer2025Ubr, .format = format},
  };
}

Result<BuiltImage> BuildLinuxAmd64Image(ManifestFormat format) {
  STRATA_ASSIGN_OR_RETURN(Layer layer, LayerBuilder().Dir("etc").File("etc/os-release", "ID=strata-test\n").Build());
  ImageBuilder builder(format);
  builder.SetPlatform({.os = "linux", .architecture = "amd64"}).AddLayer(std::move(layer)).Cmd({"/bin/sh"});
  return builder.Build();
}

Result<BuiltIndex> BuildWindowsIndex(const std::vector<WindowsImageSpec>& specs, ManifestFormat format,
                                     bool with_linux) {
  IndexBuilder index(format);
  for (const WindowsImageSpec& spec : specs) {
    STRATA_ASSIGN_OR_RETURN(BuiltImage image, BuildWindowsImage(spec));
    index.Add(std::move(image));
  }
  if (with_linux) {
    STRATA_ASSIGN_OR_RETURN(BuiltImage linux_image, BuildLinuxAmd64Image(format));
    index.Add(std::move(linux_image));
  }
  return index.Build();
}

Result<PushedIndex> PushStandardWindowsIndex(RegistryFixture& registry, std::string_view repository,
                                             std::string_view tag, ManifestFormat format) {
  STRATA_ASSIGN_OR_RETURN(BuiltIndex built, BuildWindowsIndex(StandardWindowsImageSpecs(format), format));
  TestHttpClient client = registry.Client();
  return PushIndex(client, registry.url(), repository, tag, built);
}

RegistryOptions AllowLoopbackForeignUrls(RegistryOptions options) {
  options.extra_config_yaml +=
      "validation:\n  manifests:\n    urls:\n      allow: ['^http://127\\.0\\.0\\.1']\n";
  return options;
}

// ---- ForeignBlobServer ----

Result<std::unique_ptr<ForeignBlobServer>> ForeignBlobServer::Start(std::string blob) {
  std::unique_ptr<ForeignBlobServer> server(new ForeignBlobServer(std::move(blob)));
  ForeignBlobServer* self = server.get();
  STRATA_ASSIGN_OR_RETURN(server->server_,
                          OneShotHttpServer::Start("foreign blob server", [self](const std::string& head) {
                            return self->Answer(head);
                          }));
  return server;
}

std::string ForeignBlobServer::url() const {
  return fmt::format("http://127.0.0.1:{}/foreign/{}", server_->port(), digest_.ToString());
}

std::string ForeignBlobServer::Answer(const std::string& request_head) {
  requests_.fetch_add(1);
  auto [method, target] = RequestLine(request_head);
  const bool ours = target == "/foreign/" + digest_.ToString();
  if (!ours || (method != "GET" && method != "HEAD")) {
    return fmt::format("HTTP/1.1 404 {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", HttpReasonPhrase(404));
  }
  std::string answer = fmt::format(
      "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
      blob_.size());
  if (method == "GET") {
    blob_gets_.fetch_add(1);
    answer += blob_;
  }
  return answer;
}

Result<ForeignWindowsIndex> PushForeignWindowsIndex(RegistryFixture& registry, std::string_view repository,
                                                    std::string_view tag, bool registry_has_blob,
                                                    ManifestFormat format) {
  STRATA_ASSIGN_OR_RETURN(Layer base_layer, BuildWindowsBaseLayer());
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<ForeignBlobServer> server, ForeignBlobServer::Start(base_layer.blob));
  std::vector<WindowsImageSpec> specs = StandardWindowsImageSpecs(format);
  for (WindowsImageSpec& spec : specs) {
    spec.foreign_base_urls = {server->url()};
    spec.push_foreign_blob = registry_has_blob;
  }
  STRATA_ASSIGN_OR_RETURN(BuiltIndex built, BuildWindowsIndex(specs, format));
  TestHttpClient client = registry.Client();
  STRATA_ASSIGN_OR_RETURN(PushedIndex pushed, PushIndex(client, registry.url(), repository, tag, built));
  return ForeignWindowsIndex{.server = std::move(server),
                             .base_layer = std::move(base_layer),
                             .built = std::move(built),
                             .pushed = std::move(pushed)};
}

}  // namespace strata::test_support
