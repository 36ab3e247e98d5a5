// LayerBuilder / ImageBuilder / IndexBuilder: layers read back by GNU tar, images pushed to
// a real registry and fetched back by tag and by digest.
#include "tests/support/image_builder.h"

#include <unistd.h>

#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "base/file.h"
#include "tests/support/process.h"
#include "tests/support/registry_fixture.h"
#include "tests/support/root.h"

namespace strata::test_support {

// Readable parameter values in test names and failure messages.
void PrintTo(ManifestFormat format, std::ostream* out) { *out << (format == ManifestFormat::kOci ? "OCI" : "Docker"); }

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// The layer with every kind of entry the unpacker will have to handle.
LayerBuilder TrickyLayer() {
  LayerBuilder layer;
  layer.Dir("etc")
      .File("etc/config", "key=value\n", {.mode = 0600, .uid = 1000, .gid = 1000})
      .File("etc/attributed", "xattrs\n", {.xattrs = {{"user.strata.origin", "builder"}}})
      .Hardlink("etc/config-link", "etc/config")
      .Symlink("etc/alias", "config")
      .Symlink("etc/absolute", "/etc/config")
      .Whiteout("etc/removed")
      .Dir("var/cache")
      .OpaqueDir("var/cache")
      .File("var/cache/fresh", "new\n")
      .Fifo("run-fifo")
      .CharDevice("dev-null", 1, 3);
  return layer;
}

Result<Layer> BuildOrFail(const LayerBuilder& builder, Compression compression) {
  Result<Layer> layer = builder.Build(compression);
  EXPECT_TRUE(layer) << layer.error().ToString();
  return layer;
}

std::string TarListing(const std::string& tar, const fs::path& dir) {
  fs::path path = dir / "layer.tar";
  EXPECT_TRUE(AtomicWriteFile(path, tar));
  std::string output;
  Result<int> code = RunCommand({"tar", "-tvf", path.native()}, &output);
  EXPECT_TRUE(code && *code == 0) << output;
  return output;
}

TEST(LayerBuilderTest, DigestsAreDeterministicAndMatchTheBytes) {
  for (Compression compression : {Compression::kNone, Compression::kGzip, Compression::kZstd}) {
    SCOPED_TRACE(std::string(CompressionName(compression)));
    Result<Layer> first = BuildOrFail(TrickyLayer(), compression);
    Result<Layer> second = BuildOrFail(TrickyLayer(), compression);
    ASSERT_TRUE(first && second);
    EXPECT_EQ(first->digest, second->digest);
    EXPECT_EQ(first->digest, Digest::Of(first->blob));
    EXPECT_EQ(first->diff_id, Digest::Of(first->tar));
    Result<std::string> tar = Decompress(first->blob, compression);
    ASSERT_TRUE(tar) << tar.error().ToString();
    EXPECT_EQ(*tar, first->tar);
    if (compression == Compression::kNone) {
      EXPECT_EQ(first->digest, first->diff_id);
    } else {
      EXPECT_NE(first->digest, first->diff_id);
    }
  }
}

TEST(LayerBuilderTest, SystemTarReadsTheLayer) {
  Result<TempDir> dir = TempDir::Create("strata-layer-test");
  ASSERT_TRUE(dir);
  Result<Layer> layer = BuildOrFail(TrickyLayer(), Compression::kZstd);
  ASSERT_TRUE(layer);
  std::string listing = TarListing(layer->tar, dir->path());
  for (const char* expected : {"etc/config", "etc/.wh.removed", "var/cache/.wh..wh..opq", "etc/alias -> config",
                               "etc/absolute -> /etc/config", "etc/config-link link to etc/config", "1000/1000",
                               "prw-r--r--", "crw-rw-rw-"}) {
    EXPECT_NE(listing.find(expected), std::string::npos) << "missing '" << expected << "' in\n" << listing;
  }
}

TEST(LayerBuilderTest, BusyboxLayerRunsItsShell) {
  Result<LayerBuilder> busybox = BusyboxLayer();
  ASSERT_TRUE(busybox) << busybox.error().ToString();
  Result<Layer> layer = BuildOrFail(*busybox, Compression::kGzip);
  ASSERT_TRUE(layer);
  Result<TempDir> dir = TempDir::Create("strata-busybox-test");
  ASSERT_TRUE(dir);
  std::string listing = TarListing(layer->tar, dir->path());
  for (const char* expected : {"bin/busybox", "bin/sh -> busybox", "bin/ls -> busybox", "bin/cat -> busybox",
                               "bin/echo -> busybox", "proc/", "sys/", "dev/", "etc/passwd", "drwxrwxrwt"}) {
    EXPECT_NE(listing.find(expected), std::string::npos) << "missing '" << expected << "' in\n" << listing;
  }
  fs::path rootfs = dir->path() / "rootfs";
  fs::create_directories(rootfs);
  std::string output;
  Result<int> code = RunCommand({"tar", "-xf", (dir->path() / "layer.tar").native(), "-C", rootfs.native()}, &output);
  ASSERT_TRUE(code && *code == 0) << output;
  code = RunCommand({(rootfs / "bin/sh").native(), "-c", "echo from busybox sh"}, &output);
  ASSERT_TRUE(code) << code.error().ToString();
  EXPECT_EQ(*code, 0);
  EXPECT_EQ(output, "from busybox sh\n");
}

// Checks everything about a pushed image against what was built, fetching it back.
void ExpectFetchable(RegistryFixture& registry, const BuiltImage& built, const PushedImage& pushed) {
  TestHttpClient client = registry.Client();
  std::string manifest_body;
  for (std::string reference : {pushed.tag, pushed.manifest_digest.ToString()}) {
    if (reference.empty()) continue;
    SCOPED_TRACE("manifest reference " + reference);
    Result<HttpResponse> response = FetchManifest(client, registry.url(), pushed.repository, reference);
    ASSERT_TRUE(response) << response.error().ToString();
    ASSERT_EQ(response->status, 200) << response->body;
    EXPECT_EQ(response->Header("content-type").value_or(""), pushed.manifest_media_type);
    EXPECT_EQ(Digest::Of(response->body), pushed.manifest_digest);
    EXPECT_EQ(response->Header("docker-content-digest").value_or(""), pushed.manifest_digest.ToString());
    EXPECT_EQ(response->body, built.manifest.data);  // the registry keeps the exact bytes
    manifest_body = response->body;
  }
  json manifest = json::parse(manifest_body);
  EXPECT_EQ(manifest["config"]["digest"], pushed.config_digest.ToString());
  ASSERT_EQ(manifest["layers"].size(), pushed.layer_digests.size());

  Result<HttpResponse> config =
      client.Get(registry.V2Url(pushed.repository + "/blobs/" + pushed.config_digest.ToString()));
  ASSERT_TRUE(config && config->status == 200);
  EXPECT_EQ(Digest::Of(config->body), pushed.config_digest);
  json config_json = json::parse(config->body);
  ASSERT_EQ(config_json["rootfs"]["diff_ids"].size(), pushed.diff_ids.size());

  for (size_t i = 0; i < pushed.layer_digests.size(); ++i) {
    SCOPED_TRACE(fmt::format("layer {}", i));
    EXPECT_EQ(manifest["layers"][i]["digest"], pushed.layer_digests[i].ToString());
    EXPECT_EQ(config_json["rootfs"]["diff_ids"][i], pushed.diff_ids[i].ToString());
    Result<HttpResponse> blob =
        client.Get(registry.V2Url(pushed.repository + "/blobs/" + pushed.layer_digests[i].ToString()));
    ASSERT_TRUE(blob && blob->status == 200);
    EXPECT_EQ(Digest::Of(blob->body), pushed.layer_digests[i]);
    std::string media_type = manifest["layers"][i]["mediaType"];
    Compression compression = media_type.ends_with("zstd")   ? Compression::kZstd
                              : media_type.ends_with("gzip") ? Compression::kGzip
                                                             : Compression::kNone;
    Result<std::string> tar = Decompress(blob->body, compression);
    ASSERT_TRUE(tar) << tar.error().ToString();
    EXPECT_EQ(Digest::Of(*tar), pushed.diff_ids[i]);
  }
}

struct PushCase {
  const char* name;
  RegistryOptions registry;
  ManifestFormat format;
};

void PrintTo(const PushCase& push_case, std::ostream* out) { *out << push_case.name; }

class ImagePushTest : public ::testing::TestWithParam<PushCase> {};

TEST_P(ImagePushTest, PushAndFetchBack) {
  Result<std::unique_ptr<RegistryFixture>> started = RegistryFixture::Start(GetParam().registry);
  ASSERT_TRUE(started) << started.error().ToString();
  RegistryFixture& registry = **started;

  Result<LayerBuilder> busybox = BusyboxLayer();
  ASSERT_TRUE(busybox) << busybox.error().ToString();
  Result<Layer> base = BuildOrFail(*busybox, Compression::kGzip);
  Result<Layer> tricky = BuildOrFail(TrickyLayer(), Compression::kGzip);
  Result<Layer> zstd = BuildOrFail(LayerBuilder().File("zstd.txt", "zstd layer\n").Whiteout("etc/config"),
                                   Compression::kZstd);
  ASSERT_TRUE(base && tricky && zstd);

  ImageBuilder builder(GetParam().format);
  builder.AddLayer(*base, {.created_by = "busybox"})
      .AddEmptyLayerHistory("ENV A=b")
      .AddLayer(*tricky)
      .AddLayer(*zstd)
      .Env("PATH=/bin")
      .Cmd({"/bin/sh"});
  Result<BuiltImage> built = builder.Build();
  ASSERT_TRUE(built) << built.error().ToString();
  Result<PushedImage> pushed = builder.PushTo(registry, "strata/test-image", "latest");
  ASSERT_TRUE(pushed) << pushed.error().ToString() << "\n" << registry.LogTail();

  EXPECT_EQ(pushed->manifest_digest, built->manifest.digest);
  EXPECT_EQ(pushed->layer_digests, (std::vector<Digest>{base->digest, tricky->digest, zstd->digest}));
  EXPECT_EQ(pushed->diff_ids, (std::vector<Digest>{base->diff_id, tricky->diff_id, zstd->diff_id}));
  bool oci = GetParam().format == ManifestFormat::kOci;
  EXPECT_EQ(pushed->manifest_media_type, oci ? media_types::kOciManifest : media_types::kDockerManifest);
  ExpectFetchable(registry, *built, *pushed);

  json config = json::parse(built->config.data);
  EXPECT_EQ(config["os"], "linux");
  EXPECT_EQ(config["architecture"], HostArchitecture());
  EXPECT_EQ(config["history"].size(), 4u);
  EXPECT_EQ(config["history"][1]["empty_layer"], true);
  EXPECT_EQ(config["config"]["Cmd"], json::array({"/bin/sh"}));

  // Pushing again finds every blob present and changes nothing.
  Result<PushedImage> again = builder.PushTo(registry, "strata/test-image", "latest");
  ASSERT_TRUE(again) << again.error().ToString();
  EXPECT_EQ(again->manifest_digest, pushed->manifest_digest);
}

INSTANTIATE_TEST_SUITE_P(
    Modes, ImagePushTest,
    ::testing::Values(PushCase{"PlainOci", {}, ManifestFormat::kOci},
                      PushCase{"PlainDocker", {}, ManifestFormat::kDocker},
                      PushCase{"TlsTokenOci", {.tls = true, .auth = RegistryAuth::kToken}, ManifestFormat::kOci},
                      PushCase{"BasicDocker", {.auth = RegistryAuth::kBasic}, ManifestFormat::kDocker}),
    [](const ::testing::TestParamInfo<PushCase>& info) { return std::string(info.param.name); });

class IndexPushTest : public ::testing::TestWithParam<ManifestFormat> {};

TEST_P(IndexPushTest, MultiPlatformIndex) {
  Result<std::unique_ptr<RegistryFixture>> started = RegistryFixture::Start();
  ASSERT_TRUE(started) << started.error().ToString();
  RegistryFixture& registry = **started;
  ManifestFormat format = GetParam();

  IndexBuilder index(format);
  std::vector<Platform> platforms = {{.os = "linux", .architecture = "amd64"},
                                     {.os = "linux", .architecture = "arm64", .variant = "v8"},
                                     {.os = "windows", .architecture = "amd64", .os_version = "10.0.20348.2113"}};
  for (const Platform& platform : platforms) {
    Result<Layer> layer = BuildOrFail(LayerBuilder().File("platform", platform.os + "/" + platform.architecture),
                                      Compression::kGzip);
    ASSERT_TRUE(layer);
    Result<BuiltImage> image = ImageBuilder(format).SetPlatform(platform).AddLayer(*layer).Build();
    ASSERT_TRUE(image) << image.error().ToString();
    index.Add(std::move(*image));
  }
  Result<BuiltIndex> built = index.Build();
  ASSERT_TRUE(built) << built.error().ToString();
  Result<PushedIndex> pushed = index.PushTo(registry, "strata/multi", "v1");
  ASSERT_TRUE(pushed) << pushed.error().ToString() << "\n" << registry.LogTail();
  EXPECT_EQ(pushed->index_digest, built->index.digest);
  ASSERT_EQ(pushed->images.size(), platforms.size());

  TestHttpClient client = registry.Client();
  Result<HttpResponse> response = FetchManifest(client, registry.url(), "strata/multi", "v1");
  ASSERT_TRUE(response && response->status == 200);
  EXPECT_EQ(Digest::Of(response->body), pushed->index_digest);
  std::string expected_type(format == ManifestFormat::kOci ? media_types::kOciIndex : media_types::kDockerManifestList);
  EXPECT_EQ(response->Header("content-type").value_or(""), expected_type);
  json index_json = json::parse(response->body);
  ASSERT_EQ(index_json["manifests"].size(), platforms.size());
  EXPECT_EQ(index_json["manifests"][1]["platform"]["variant"], "v8");
  EXPECT_EQ(index_json["manifests"][2]["platform"]["os.version"], "10.0.20348.2113");
  for (size_t i = 0; i < platforms.size(); ++i) {
    ExpectFetchable(registry, built->images[i], pushed->images[i]);
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, IndexPushTest, ::testing::Values(ManifestFormat::kOci, ManifestFormat::kDocker),
                         [](const ::testing::TestParamInfo<ManifestFormat>& info) {
                           return std::string(info.param == ManifestFormat::kOci ? "Oci" : "Docker");
                         });

}  // namespace
}  // namespace strata::test_support
