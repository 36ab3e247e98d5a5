// Manifest, Index, ImageConfig and Descriptor: parsing realistic documents, round trips that
// keep unknown fields, and error messages that name the bad field.
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "oci/descriptor.h"
#include "oci/image_config.h"
#include "oci/index.h"
#include "oci/manifest.h"
#include "oci/media_types.h"

namespace strata::oci {
namespace {

using Json = nlohmann::json;

// ---- Fixtures, shaped after what Docker Hub, MCR and BuildKit serve ----

constexpr std::string_view kDockerManifestList = R"({
  "manifests": [
    {"digest": "sha256:1826d639a0bff87532d2f2128088e1b2333a0f15e914bb163a3d4a4e9a07f83c",
     "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
     "platform": {"architecture": "amd64", "os": "linux"}, "size": 528},
    {"digest": "sha256:4432320f12b90bf2005c4340a6b90cefbfb1f5803ef930b21c82bcc4c5d5a7f0",
     "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
     "platform": {"architecture": "arm", "os": "linux", "variant": "v6"}, "size": 528},
    {"digest": "sha256:f41305da8997aa55af2dea57112c044520c423c836457b57fd4153c33f1dc42f",
     "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
     "platform": {"architecture": "arm", "os": "linux", "variant": "v7"}, "size": 528},
    {"digest": "sha256:b40a0febb9719c28bdba23c3250c12ee3ba24fe14656f1ceacf56e9ab0872b31",
     "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
     "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}, "size": 528},
    {"digest": "sha256:3737c49d9d158c46ed33251fff79b18dfab07138492d683aed77532db2b32f85",
     "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
     "platform": {"architecture": "amd64", "os": "windows", "os.version": "10.0.17763.6414"}, "size": 1161},
    {"digest": "sha256:1a875cf470c6ef585513b3167e040d9fcd83d488835f2a628c8f5d6f49288a94",
     "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
     "platform": {"architecture": "amd64", "os": "windows", "os.version": "10.0.20348.2762"}, "size": 1161}
  ],
  "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
  "schemaVersion": 2
})";

constexpr std::string_view kOciIndex = R"({
  "schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.index.v1+json",
  "manifests": [
    {"mediaType": "application/vnd.oci.image.manifest.v1+json",
     "digest": "sha256:1826d639a0bff87532d2f2128088e1b2333a0f15e914bb163a3d4a4e9a07f83c", "size": 1022,
     "platform": {"architecture": "amd64", "os": "linux"}},
    {"mediaType": "application/vnd.oci.image.manifest.v1+json",
     "digest": "sha256:b40a0febb9719c28bdba23c3250c12ee3ba24fe14656f1ceacf56e9ab0872b31", "size": 1022,
     "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
    {"mediaType": "application/vnd.oci.image.manifest.v1+json",
     "digest": "sha256:bcc7930764b9b7a8b9bbd0161b568e869466d0c4efaee8006a56f3e8e6d82b69", "size": 839,
     "annotations": {
       "vnd.docker.reference.digest": "sha256:1826d639a0bff87532d2f2128088e1b2333a0f15e914bb163a3d4a4e9a07f83c",
       "vnd.docker.reference.type": "attestation-manifest"},
     "platform": {"architecture": "unknown", "os": "unknown"}}
  ],
  "annotations": {"org.opencontainers.image.ref.name": "1.0", "org.opencontainers.image.created": "2024-10-01T00:00:00Z"},
  "x-vendor-extension": {"signed": true, "levels": [1, 2, 3]}
})";

constexpr std::string_view kDockerManifest = R"({
  "schemaVersion": 2,
  "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
  "config": {
    "mediaType": "application/vnd.docker.container.image.v1+json",
    "size": 7023,
    "digest": "sha256:e67d23e7820c49a8051dac2831f38290f5e72f66c8db5079eeb60d82f14894c0"
  },
  "layers": [
    {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 32654,
     "digest": "sha256:2804bad6fe94a55f18b2b37e300919a5fd517b95aa81e95db574c0ba069a3740"},
    {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 16724,
     "digest": "sha256:8a1cee436cbac1489a1883c9d886fcfc46f302c55ed4106ae31729e4f4eb9041"},
    {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 73109,
     "digest": "sha256:10dacdccfe877dc064d57442e6fa7a4e3085dc94e11a29819c2290fc3d788724"}
  ]
})";

// An OCI manifest of a Windows image whose base layers are non-distributable.
constexpr std::string_view kOciManifestWithForeignLayers = R"({
  "schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.manifest.v1+json",
  "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 1523,
             "digest": "sha256:33634beb9f46b8028d5ff627b565b0f87a36a0dcd0f03f95706432ef373643d9"},
  "layers": [
    {"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", "size": 1596867212,
     "digest": "sha256:3019fb7149c2850bb53c7e9f0dc10280ad06b5fc7e8b2ad0bed00bd697c5a9e6",
     "urls": ["https://mcr.microsoft.com/v2/windows/servercore/blobs/sha256:3019fb7149c2850bb53c7e9f0dc10280ad06b5fc7e8b2ad0bed00bd697c5a9e6"]},
    {"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", "size": 899321765,
     "digest": "sha256:9e08c5e94eca9ab5caf8ac00f1cae4ffbf91dcbf8163d5a5ff572bea1972aa9c",
     "urls": ["https://mcr.microsoft.com/v2/windows/servercore/blobs/sha256:9e08c5e94eca9ab5caf8ac00f1cae4ffbf91dcbf8163d5a5ff572bea1972aa9c",
              "https://mirror.example.com/blobs/sha256:9e08c5e94eca9ab5caf8ac00f1cae4ffbf91dcbf8163d5a5ff572bea1972aa9c"]},
    {"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "size": 1234,
     "digest": "sha256:10dacdccfe877dc064d57442e6fa7a4e3085dc94e11a29819c2290fc3d788724",
     "annotations": {"org.opencontainers.image.title": "app.tar.zst"}}
  ],
  "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 512,
              "digest": "sha256:ddc6e2b224d0fd821669202258386936fc9ce2899e215eec6322b95f8dd96d6a"},
  "annotations": {"org.opencontainers.image.base.name": "mcr.microsoft.com/windows/servercore:ltsc2019"}
})";

constexpr std::string_view kWindowsConfig = R"({
  "architecture": "amd64",
  "config": {
    "Env": ["PATH=C:\\Windows\\system32;C:\\Windows"],
    "Cmd": ["c:\\windows\\system32\\cmd.exe"],
    "WorkingDir": "",
    "Entrypoint": null,
    "OnBuild": null,
    "Labels": null,
    "Shell": ["cmd", "/S", "/C"]
  },
  "created": "2024-10-04T21:38:11.2345678Z",
  "history": [
    {"created": "2024-09-27T05:46:08.0964219Z", "created_by": "Apply image 10.0.17763.1"},
    {"created": "2024-10-04T21:38:11.2345678Z", "created_by": "Install update 10.0.17763.6414"}
  ],
  "os": "windows",
  "os.version": "10.0.17763.6414",
  "os.features": ["win32k"],
  "rootfs": {
    "type": "layers",
    "diff_ids": ["sha256:2804bad6fe94a55f18b2b37e300919a5fd517b95aa81e95db574c0ba069a3740",
                 "sha256:8a1cee436cbac1489a1883c9d886fcfc46f302c55ed4106ae31729e4f4eb9041"]
  },
  "docker_version": "20.10.24",
  "container_config": {"Hostname": "", "Cmd": ["cmd"]}
})";

constexpr std::string_view kLinuxConfig = R"({
  "architecture": "arm64",
  "variant": "v8",
  "os": "linux",
  "author": "ops@example.com",
  "created": "2024-10-01T12:00:00Z",
  "config": {
    "User": "1000:1000",
    "ExposedPorts": {"8080/tcp": {}, "53/udp": {}},
    "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "APP_MODE=prod"],
    "Entrypoint": ["/entrypoint.sh"],
    "Cmd": [],
    "Volumes": {"/data": {}},
    "WorkingDir": "/srv",
    "Labels": {"org.opencontainers.image.source": "https://example.com/app", "maintainer": "ops"},
    "StopSignal": "SIGQUIT",
    "Healthcheck": {"Test": ["CMD", "/health"], "Interval": 30000000000},
    "ArgsEscaped": true
  },
  "rootfs": {"type": "layers",
             "diff_ids": ["sha256:2804bad6fe94a55f18b2b37e300919a5fd517b95aa81e95db574c0ba069a3740",
                          "sha256:10dacdccfe877dc064d57442e6fa7a4e3085dc94e11a29819c2290fc3d788724"],
             "x-rootfs-note": "kept"},
  "history": [
    {"created": "2024-09-30T00:00:00Z", "created_by": "/bin/sh -c #(nop) ADD file:abc in / ", "comment": "base"},
    {"created": "2024-10-01T12:00:00Z", "created_by": "ENV APP_MODE=prod", "empty_layer": true,
     "author": "ops", "x-history-note": 7},
    {"created": "2024-10-01T12:00:00Z", "created_by": "COPY app /srv # buildkit", "comment": "buildkit.dockerfile.v0"}
  ],
  "moby.buildkit.buildinfo.v1": "eyJmcm9udGVuZCI6ImRvY2tlcmZpbGUudjAifQ=="
})";

template <typename T>
T MustParse(std::string_view json) {
  Result<T> parsed = T::Parse(json);
  EXPECT_TRUE(parsed.has_value()) << parsed.error().ToString();
  return parsed.value_or(T());
}

// Serialize, parse again: the same value. Returns the serialised JSON for further checks.
template <typename T>
Json ExpectRoundTrip(const T& value) {
  std::string bytes = value.Serialize();
  Result<T> again = T::Parse(bytes);
  EXPECT_TRUE(again.has_value()) << again.error().ToString() << "\n" << bytes;
  if (again) {
    EXPECT_EQ(*again, value) << bytes;
  }
  return Json::parse(bytes);
}

template <typename T>
std::string ErrorOf(std::string_view json) {
  Result<T> parsed = T::Parse(json);
  if (parsed) return "(parsed)";
  EXPECT_EQ(parsed.error().code(), ErrorCode::kInvalidArgument) << parsed.error().ToString();
  return parsed.error().message();
}

// Replaces the first occurrence of `from` in `text` (fixture surgery for error cases).
std::string Replace(std::string_view text, std::string_view from, std::string_view to) {
  std::string out(text);
  size_t at = out.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) out.replace(at, from.size(), to);
  return out;
}

// ---- Index ----

TEST(IndexTest, ParsesDockerManifestList) {
  Index index = MustParse<Index>(kDockerManifestList);
  EXPECT_EQ(index.schema_version, 2);
  EXPECT_EQ(index.media_type, media_type::kDockerManifestList);
  ASSERT_EQ(index.manifests.size(), 6u);
  EXPECT_EQ(index.manifests[1].platform->variant, "v6");
  EXPECT_EQ(index.manifests[4].platform->os_version, "10.0.17763.6414");
  EXPECT_EQ(index.manifests[4].size, 1161);
  EXPECT_EQ(index.manifests[3].digest.ToString(),
            "sha256:b40a0febb9719c28bdba23c3250c12ee3ba24fe14656f1ceacf56e9ab0872b31");
}

TEST(IndexTest, DockerManifestListRoundTripsToTheSameJson) {
  Index index = MustParse<Index>(kDockerManifestList);
  EXPECT_EQ(ExpectRoundTrip(index), Json::parse(kDockerManifestList));
}

TEST(IndexTest, SelectsFromDockerManifestList) {
  Index index = MustParse<Index>(kDockerManifestList);
  Result<Descriptor> arm64 = SelectManifestForPlatform(index, PlatformMatcher(*Platform::Parse("linux/arm64")));
  ASSERT_TRUE(arm64.has_value()) << arm64.error().ToString();
  EXPECT_EQ(arm64->digest.hex(), "b40a0febb9719c28bdba23c3250c12ee3ba24fe14656f1ceacf56e9ab0872b31");
  Result<Descriptor> ltsc2022 =
      SelectManifestForPlatform(index, PlatformMatcher(*Platform::Parse("windows/amd64:10.0.20348.3000")));
  ASSERT_TRUE(ltsc2022.has_value()) << ltsc2022.error().ToString();
  EXPECT_EQ(ltsc2022->digest.hex(), "1a875cf470c6ef585513b3167e040d9fcd83d488835f2a628c8f5d6f49288a94");
}

TEST(IndexTest, ParsesOciIndexWithAttestationAndAnnotations) {
  Index index = MustParse<Index>(kOciIndex);
  EXPECT_EQ(index.media_type, media_type::kOciIndex);
  ASSERT_EQ(index.manifests.size(), 3u);
  EXPECT_EQ(index.manifests[2].annotations.at("vnd.docker.reference.type"), "attestation-manifest");
  EXPECT_EQ(index.annotations.at("org.opencontainers.image.ref.name"), "1.0");
  EXPECT_EQ(index.unknown_fields, Json::parse(R"({"x-vendor-extension": {"signed": true, "levels": [1, 2, 3]}})"));
}

TEST(IndexTest, OciIndexRoundTripKeepsUnknownFields) {
  Index index = MustParse<Index>(kOciIndex);
  Json json = ExpectRoundTrip(index);
  EXPECT_EQ(json, Json::parse(kOciIndex));
  EXPECT_EQ(json["x-vendor-extension"]["levels"], Json::parse("[1, 2, 3]"));
}

TEST(IndexTest, MediaTypeMayBeAbsentInOci) {
  Index index = MustParse<Index>(R"({"schemaVersion": 2, "manifests": []})");
  EXPECT_EQ(index.media_type, "");
  EXPECT_TRUE(index.manifests.empty());
  EXPECT_EQ(ExpectRoundTrip(index), Json::parse(R"({"schemaVersion": 2, "manifests": []})"));
}

TEST(IndexTest, BuiltIndexSerialises) {
  Index index;
  index.media_type = media_type::kOciIndex;
  Descriptor entry;
  entry.media_type = media_type::kOciManifest;
  entry.digest = *Digest::Parse("sha256:1826d639a0bff87532d2f2128088e1b2333a0f15e914bb163a3d4a4e9a07f83c");
  entry.size = 10;
  entry.platform = *Platform::Parse("linux/arm/v7");
  index.manifests.push_back(entry);
  EXPECT_EQ(index.Serialize(),
            R"({"manifests":[{"digest":"sha256:1826d639a0bff87532d2f2128088e1b2333a0f15e914bb163a3d4a4e9a07f83c",)"
            R"("mediaType":"application/vnd.oci.image.manifest.v1+json","platform":{"architecture":"arm","os":"linux",)"
            R"("variant":"v7"},"size":10}],"mediaType":"application/vnd.oci.image.index.v1+json","schemaVersion":2})");
}

TEST(IndexTest, EntryPlatformErrorsNameThePath) {
  std::string json = Replace(kDockerManifestList, R"("platform": {"architecture": "arm", "os": "linux", "variant": "v6"})",
                             R"("platform": {"architecture": "arm", "variant": "v6"})");
  EXPECT_EQ(ErrorOf<Index>(json), "index: manifests[1].platform.os: missing");
}

TEST(IndexTest, RejectsManifestPosingAsIndex) {
  EXPECT_EQ(ErrorOf<Index>(kDockerManifest),
            "index: mediaType: \"application/vnd.docker.distribution.manifest.v2+json\" is not an index type");
  EXPECT_EQ(ErrorOf<Index>(R"({"schemaVersion": 2, "config": {}, "layers": []})"),
            "index: has \"layers\" and no mediaType: this is a manifest, not an index");
}

TEST(IndexTest, RejectsMissingOrMistypedManifests) {
  EXPECT_EQ(ErrorOf<Index>(R"({"schemaVersion": 2})"), "index: manifests: missing");
  EXPECT_EQ(ErrorOf<Index>(R"({"schemaVersion": 2, "manifests": {}})"),
            "index: manifests: expected an array, got object");
  EXPECT_EQ(ErrorOf<Index>(R"({"schemaVersion": 2, "manifests": [42]})"),
            "index: manifests[0]: expected a JSON object, got number");
}

// ---- Manifest ----

TEST(ManifestTest, ParsesDockerV2Manifest) {
  Manifest manifest = MustParse<Manifest>(kDockerManifest);
  EXPECT_EQ(manifest.media_type, media_type::kDockerManifest);
  EXPECT_EQ(manifest.config.media_type, media_type::kDockerConfig);
  EXPECT_EQ(manifest.config.size, 7023);
  ASSERT_EQ(manifest.layers.size(), 3u);
  EXPECT_EQ(manifest.layers[2].size, 73109);
  EXPECT_EQ(LayerCompression(manifest.layers[0].media_type), Compression::kGzip);
  EXPECT_FALSE(manifest.subject.has_value());
  EXPECT_TRUE(manifest.unknown_fields.empty());
}

TEST(ManifestTest, DockerV2ManifestRoundTripsToTheSameJson) {
  Manifest manifest = MustParse<Manifest>(kDockerManifest);
  EXPECT_EQ(ExpectRoundTrip(manifest), Json::parse(kDockerManifest));
}

TEST(ManifestTest, ParsesOciManifestWithForeignLayers) {
  Manifest manifest = MustParse<Manifest>(kOciManifestWithForeignLayers);
  ASSERT_EQ(manifest.layers.size(), 3u);
  EXPECT_TRUE(IsForeignLayer(manifest.layers[0].media_type));
  EXPECT_EQ(manifest.layers[0].size, 1596867212);
  ASSERT_EQ(manifest.layers[1].urls.size(), 2u);
  EXPECT_EQ(manifest.layers[1].urls[1],
            "https://mirror.example.com/blobs/sha256:9e08c5e94eca9ab5caf8ac00f1cae4ffbf91dcbf8163d5a5ff572bea1972aa9c");
  EXPECT_FALSE(IsForeignLayer(manifest.layers[2].media_type));
  EXPECT_EQ(LayerCompression(manifest.layers[2].media_type), Compression::kZstd);
  EXPECT_EQ(manifest.layers[2].annotations.at("org.opencontainers.image.title"), "app.tar.zst");
  ASSERT_TRUE(manifest.subject.has_value());
  EXPECT_EQ(manifest.subject->size, 512);
  EXPECT_EQ(ExpectRoundTrip(manifest), Json::parse(kOciManifestWithForeignLayers));
}

TEST(ManifestTest, DockerForeignLayer) {
  std::string json = Replace(kDockerManifest, R"({"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 32654,)",
                             R"({"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "size": 32654,
                                 "urls": ["https://go.microsoft.com/fwlink/?linkid=837858"],)");
  Manifest manifest = MustParse<Manifest>(json);
  EXPECT_TRUE(IsForeignLayer(manifest.layers[0].media_type));
  EXPECT_EQ(manifest.layers[0].urls, std::vector<std::string>{"https://go.microsoft.com/fwlink/?linkid=837858"});
  ExpectRoundTrip(manifest);
}

TEST(ManifestTest, ArtifactManifestWithEmptyConfigAndArtifactType) {
  constexpr std::string_view kArtifact = R"({
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "artifactType": "application/vnd.example.sbom.v1+json",
    "config": {"mediaType": "application/vnd.oci.empty.v1+json", "size": 2,
               "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", "data": "e30="},
    "layers": [],
    "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1022,
                "digest": "sha256:1826d639a0bff87532d2f2128088e1b2333a0f15e914bb163a3d4a4e9a07f83c"}
  })";
  Manifest manifest = MustParse<Manifest>(kArtifact);
  EXPECT_EQ(manifest.artifact_type, "application/vnd.example.sbom.v1+json");
  EXPECT_TRUE(manifest.layers.empty());
  EXPECT_EQ(manifest.config.unknown_fields, Json::parse(R"({"data": "e30="})"));
  EXPECT_EQ(ExpectRoundTrip(manifest), Json::parse(kArtifact));
}

TEST(ManifestTest, UnknownFieldsSurviveARoundTrip) {
  std::string json = Replace(kDockerManifest, R"("schemaVersion": 2,)",
                             R"("schemaVersion": 2, "x-top": {"a": [1, {"b": null}]},)");
  json = Replace(json, R"("size": 7023,)", R"("size": 7023, "x-in-config": "kept",)");
  Manifest manifest = MustParse<Manifest>(json);
  Json out = ExpectRoundTrip(manifest);
  EXPECT_EQ(out, Json::parse(json));
  EXPECT_EQ(out["x-top"]["a"][1]["b"], nullptr);
  EXPECT_EQ(out["config"]["x-in-config"], "kept");
}

TEST(ManifestTest, ModelledFieldsWinOverStaleUnknownCopies) {
  Manifest manifest = MustParse<Manifest>(kDockerManifest);
  manifest.unknown_fields["schemaVersion"] = 99;
  EXPECT_EQ(manifest.ToJson()["schemaVersion"], 2);
}

TEST(ManifestTest, BadLayerDigestNamesTheLayer) {
  std::string json = Replace(kDockerManifest, "sha256:10dacdccfe877dc064d57442e6fa7a4e3085dc94e11a29819c2290fc3d788724",
                             "sha256:xyz");
  std::string message = ErrorOf<Manifest>(json);
  EXPECT_TRUE(message.starts_with("manifest: layers[2].digest: invalid digest \"sha256:xyz\"")) << message;
}

TEST(ManifestTest, SizeMustBeANonNegativeInteger) {
  EXPECT_EQ(ErrorOf<Manifest>(Replace(kDockerManifest, R"("size": 7023)", R"("size": -1)")),
            "manifest: config.size: negative size -1");
  EXPECT_EQ(ErrorOf<Manifest>(Replace(kDockerManifest, R"("size": 7023)", R"("size": "7023")")),
            "manifest: config.size: expected an integer, got string \"7023\"");
  EXPECT_EQ(ErrorOf<Manifest>(Replace(kDockerManifest, R"("size": 7023)", R"("size": 70.5)")),
            "manifest: config.size: expected an integer, got number 70.5");
  EXPECT_EQ(ErrorOf<Manifest>(Replace(kDockerManifest, R"("size": 7023)", R"("size": 18446744073709551615)")),
            "manifest: config.size: 18446744073709551615 is out of range");
  EXPECT_EQ(ErrorOf<Manifest>(Replace(kDockerManifest, R"("size": 7023,)", "")), "manifest: config.size: missing");
}

TEST(ManifestTest, RequiresSchemaVersion2) {
  EXPECT_EQ(ErrorOf<Manifest>(Replace(kDockerManifest, R"("schemaVersion": 2)", R"("schemaVersion": 1)")),
            "manifest: schemaVersion: version 1 is not supported (want 2)");
  EXPECT_EQ(ErrorOf<Manifest>(Replace(kDockerManifest, R"("schemaVersion": 2,)", "")),
            "manifest: schemaVersion: missing");
}

TEST(ManifestTest, RequiresConfigAndLayers) {
  EXPECT_EQ(ErrorOf<Manifest>(R"({"schemaVersion": 2, "layers": []})"), "manifest: config: missing");
  EXPECT_EQ(ErrorOf<Manifest>(Replace(kDockerManifest, R"("layers": [)", R"("layerz": [)")),
            "manifest: layers: missing");
  EXPECT_EQ(ErrorOf<Manifest>(Replace(kDockerManifest, R"("mediaType": "application/vnd.docker.container.image.v1+json",)",
                                      "")),
            "manifest: config.mediaType: missing");
}

TEST(ManifestTest, RejectsIndexPosingAsManifest) {
  EXPECT_EQ(ErrorOf<Manifest>(kOciIndex),
            "manifest: mediaType: \"application/vnd.oci.image.index.v1+json\" is not an image manifest type");
  EXPECT_EQ(ErrorOf<Manifest>(R"({"schemaVersion": 2, "manifests": []})"),
            "manifest: has \"manifests\" and no mediaType: this is an index, not a manifest");
}

TEST(ManifestTest, MalformedJsonIsAnErrorNotAnException) {
  for (std::string_view json : {std::string_view(""), std::string_view("{"), std::string_view("nul"),
                                std::string_view("{\"schemaVersion\": 2,}"), std::string_view("\xff\xfe"),
                                std::string_view("{\"a\": \"\xc3\x28\"}"), kDockerManifest.substr(0, 100)}) {
    std::string message = ErrorOf<Manifest>(json);
    EXPECT_TRUE(message.starts_with("manifest: not valid JSON")) << message;
  }
  EXPECT_EQ(ErrorOf<Manifest>("[]"), "manifest: expected a JSON object, got array");
  EXPECT_EQ(ErrorOf<Manifest>("null"), "manifest: expected a JSON object, got null");
}

TEST(ManifestTest, RejectsAbsurdNesting) {
  std::string json = R"({"schemaVersion": 2, "x": )" + std::string(100000, '[') + std::string(100000, ']') + "}";
  EXPECT_EQ(ErrorOf<Manifest>(json), "manifest: JSON nested deeper than 128 levels");
}

// ---- ImageConfig ----

TEST(ImageConfigTest, ParsesWindowsConfig) {
  ImageConfig config = MustParse<ImageConfig>(kWindowsConfig);
  EXPECT_EQ(config.os, "windows");
  EXPECT_EQ(config.architecture, "amd64");
  EXPECT_EQ(config.os_version, "10.0.17763.6414");
  EXPECT_EQ(config.os_features, std::vector<std::string>{"win32k"});
  EXPECT_EQ(config.created, "2024-10-04T21:38:11.2345678Z");
  EXPECT_EQ(config.config.cmd, std::vector<std::string>{"c:\\windows\\system32\\cmd.exe"});
  EXPECT_FALSE(config.config.entrypoint.has_value());
  EXPECT_TRUE(config.config.labels.empty());
  ASSERT_EQ(config.rootfs.diff_ids.size(), 2u);
  EXPECT_EQ(config.rootfs.diff_ids[1].hex(), "8a1cee436cbac1489a1883c9d886fcfc46f302c55ed4106ae31729e4f4eb9041");
  ASSERT_EQ(config.history.size(), 2u);
  EXPECT_EQ(config.history[1].created_by, "Install update 10.0.17763.6414");
  EXPECT_EQ(config.platform().String(), "windows/amd64:10.0.17763.6414");
  EXPECT_TRUE(PlatformMatcher(*Platform::Parse("windows/amd64:10.0.17763.1")).Match(config.platform()));
}

TEST(ImageConfigTest, WindowsConfigRoundTripKeepsUnknownFields) {
  ImageConfig config = MustParse<ImageConfig>(kWindowsConfig);
  Json out = ExpectRoundTrip(config);
  EXPECT_EQ(out["docker_version"], "20.10.24");
  EXPECT_EQ(out["container_config"], Json::parse(R"({"Hostname": "", "Cmd": ["cmd"]})"));
  EXPECT_EQ(out["config"]["Shell"], Json::parse(R"(["cmd", "/S", "/C"])"));
  EXPECT_EQ(out["os.version"], "10.0.17763.6414");
  // Nulls of modelled fields read as "not set" and are not written back.
  EXPECT_FALSE(out["config"].contains("Entrypoint"));
  EXPECT_FALSE(out["config"].contains("Labels"));
  // An unmodelled null is kept verbatim.
  EXPECT_TRUE(out["config"].contains("OnBuild"));
}

TEST(ImageConfigTest, ParsesLinuxConfig) {
  ImageConfig config = MustParse<ImageConfig>(kLinuxConfig);
  EXPECT_EQ(config.variant, "v8");
  EXPECT_EQ(config.author, "ops@example.com");
  const ContainerConfig& c = config.config;
  EXPECT_EQ(c.user, "1000:1000");
  EXPECT_EQ(c.exposed_ports, (std::set<std::string>{"53/udp", "8080/tcp"}));
  EXPECT_EQ(c.volumes, std::set<std::string>{"/data"});
  EXPECT_EQ(c.env.size(), 2u);
  EXPECT_EQ(c.entrypoint, std::vector<std::string>{"/entrypoint.sh"});
  ASSERT_TRUE(c.cmd.has_value());  // [] is explicit, not absent
  EXPECT_TRUE(c.cmd->empty());
  EXPECT_EQ(c.working_dir, "/srv");
  EXPECT_EQ(c.labels.at("maintainer"), "ops");
  EXPECT_EQ(c.stop_signal, "SIGQUIT");
  EXPECT_TRUE(c.unknown_fields.contains("Healthcheck"));
  ASSERT_EQ(config.history.size(), 3u);
  EXPECT_FALSE(config.history[0].empty_layer);
  EXPECT_TRUE(config.history[1].empty_layer);
  EXPECT_EQ(config.history[1].author, "ops");
  EXPECT_EQ(config.history[2].comment, "buildkit.dockerfile.v0");
}

TEST(ImageConfigTest, LinuxConfigRoundTripsToTheSameJson) {
  ImageConfig config = MustParse<ImageConfig>(kLinuxConfig);
  Json out = ExpectRoundTrip(config);
  EXPECT_EQ(out, Json::parse(kLinuxConfig));
}

TEST(ImageConfigTest, BuiltConfigSerialises) {
  ImageConfig config;
  config.architecture = "amd64";
  config.os = "linux";
  config.rootfs.diff_ids.push_back(
      *Digest::Parse("sha256:2804bad6fe94a55f18b2b37e300919a5fd517b95aa81e95db574c0ba069a3740"));
  config.config.exposed_ports.insert("80/tcp");
  EXPECT_EQ(config.Serialize(),
            R"({"architecture":"amd64","config":{"ExposedPorts":{"80/tcp":{}}},"os":"linux","rootfs":{"diff_ids":)"
            R"(["sha256:2804bad6fe94a55f18b2b37e300919a5fd517b95aa81e95db574c0ba069a3740"],"type":"layers"}})");
}

TEST(ImageConfigTest, ErrorsNameTheField) {
  EXPECT_TRUE(ErrorOf<ImageConfig>(Replace(kLinuxConfig, "sha256:10dacdccfe877dc064d57442e6fa7a4e3085dc94e11a29819c2290fc3d788724",
                                           "sha256:10DACDCCFE877DC064D57442E6FA7A4E3085DC94E11A29819C2290FC3D788724"))
                  .starts_with("image config: rootfs.diff_ids[1]: invalid digest"));
  EXPECT_EQ(ErrorOf<ImageConfig>(Replace(kLinuxConfig, R"("Entrypoint": ["/entrypoint.sh"])", R"("Entrypoint": "/entrypoint.sh")")),
            "image config: config.Entrypoint: expected an array of strings, got string");
  EXPECT_EQ(ErrorOf<ImageConfig>(Replace(kLinuxConfig, R"("APP_MODE=prod")", "42")),
            "image config: config.Env[1]: expected a string, got number");
  EXPECT_EQ(ErrorOf<ImageConfig>(Replace(kLinuxConfig, R"("maintainer": "ops")", R"("maintainer": 1)")),
            "image config: config.Labels.maintainer: expected a string, got number");
  EXPECT_EQ(ErrorOf<ImageConfig>(Replace(kLinuxConfig, R"("empty_layer": true)", R"("empty_layer": "yes")")),
            "image config: history[1].empty_layer: expected true or false, got string");
  EXPECT_EQ(ErrorOf<ImageConfig>(Replace(kLinuxConfig, R"("type": "layers")", R"("type": "zfs")")),
            "image config: rootfs.type: \"zfs\" is not supported (want \"layers\")");
  EXPECT_EQ(ErrorOf<ImageConfig>(Replace(kLinuxConfig, R"("os": "linux",)", "")), "image config: os: missing");
  EXPECT_EQ(ErrorOf<ImageConfig>(R"({"architecture": "amd64", "os": "linux"})"), "image config: rootfs: missing");
  EXPECT_EQ(ErrorOf<ImageConfig>(R"({"architecture": "amd64", "os": "linux", "rootfs": [], "history": 1})"),
            "image config: rootfs: expected a JSON object, got array");
}

// ---- Descriptor ----

TEST(DescriptorTest, DefaultDescribesTheEmptyBlob) {
  Descriptor descriptor;
  EXPECT_EQ(descriptor.digest.ToString(), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(descriptor.size, 0);
}

TEST(DescriptorTest, ParsesDescriptorDocumentWithPlatformAndArtifactType) {
  constexpr std::string_view kDescriptor = R"({
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "digest": "sha256:1826d639a0bff87532d2f2128088e1b2333a0f15e914bb163a3d4a4e9a07f83c",
    "size": 1022,
    "artifactType": "application/vnd.example+json",
    "platform": {"architecture": "amd64", "os": "windows", "os.version": "10.0.20348.2762", "os.features": ["win32k"]},
    "data": "e30="
  })";
  Result<Descriptor> descriptor = Descriptor::Parse(kDescriptor);
  ASSERT_TRUE(descriptor.has_value()) << descriptor.error().ToString();
  EXPECT_EQ(descriptor->artifact_type, "application/vnd.example+json");
  ASSERT_TRUE(descriptor->platform.has_value());
  EXPECT_EQ(descriptor->platform->String(), "windows/amd64:10.0.20348.2762");
  EXPECT_EQ(ExpectRoundTrip(*descriptor), Json::parse(kDescriptor));
}

TEST(DescriptorTest, ErrorsNameTheField) {
  Result<Descriptor> descriptor = Descriptor::Parse(R"({"mediaType": "x", "digest": "sha256:1", "size": 1})");
  ASSERT_FALSE(descriptor.has_value());
  EXPECT_TRUE(descriptor.error().message().starts_with("descriptor: digest: invalid digest")) << descriptor.error().message();
  descriptor = Descriptor::Parse(
      R"({"mediaType": "x", "digest": "sha256:1826d639a0bff87532d2f2128088e1b2333a0f15e914bb163a3d4a4e9a07f83c",
          "size": 1, "urls": ["a", 2]})");
  ASSERT_FALSE(descriptor.has_value());
  EXPECT_EQ(descriptor.error().message(), "descriptor: urls[1]: expected a string, got number");
}

}  // namespace
}  // namespace strata::oci
