// Resolver against the real docker-registry: by tag and by digest for OCI and Docker
// manifests, platform choice in an index, corrupted bytes (through a FaultProxy), 404s,
// HEAD 405 fallback, token auth; and `strata inspect` as a user runs it.
#include "registry/resolver.h"

#include <chrono>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "base/file.h"
#include "oci/media_types.h"
#include "tests/registry/registry_client_test_base.h"
#include "tests/support/assertions.h"
#include "tests/support/fault_proxy.h"
#include "tests/support/image_builder.h"
#include "tests/support/process.h"
#include "tests/support/registry_fixture.h"

namespace strata::registry {
namespace {

using namespace std::chrono_literals;
using test_support::FaultAction;
using test_support::FaultProxy;
using test_support::ManifestFormat;
using test_support::RegistryAuth;
using test_support::RegistryFixture;
using test_support::RegistryOptions;

class ResolverTest : public RegistryClientTest {
 protected:
  void StartRegistry(RegistryOptions options = {}) {
    registry_ = StartTrustedRegistry(std::move(options));
    ASSERT_TRUE(registry_);
  }

  static Result<test_support::BuiltImage> SmallImage(ManifestFormat format, test_support::Platform platform,
                                                     std::string content) {
    auto layer = test_support::LayerBuilder().File("hello.txt", std::move(content)).Build();
    if (!layer) return std::unexpected(layer.error());
    test_support::ImageBuilder builder(format);
    builder.SetPlatform(std::move(platform)).AddLayer(std::move(*layer));
    return builder.Build();
  }

  Result<test_support::PushedImage> PushSmall(ManifestFormat format, std::string_view repository,
                                              std::string_view tag) {
    auto layer = test_support::LayerBuilder().File("hello.txt", "hello\n").Build();
    if (!layer) return std::unexpected(layer.error());
    test_support::ImageBuilder builder(format);
    builder.AddLayer(std::move(*layer));
    return builder.PushTo(*registry_, repository, tag);
  }

  std::unique_ptr<RegistryFixture> registry_;
};

void CheckTagAndDigest(ResolverTest* test, Resolver& resolver, const test_support::PushedImage& pushed,
                       const oci::Reference& by_tag, std::string_view media_type) {
  ASSERT_OK_AND_ASSIGN(Resolved resolved, resolver.Resolve(by_tag));
  EXPECT_EQ(resolved.descriptor.media_type, media_type);
  EXPECT_EQ(resolved.descriptor.digest, pushed.manifest_digest);
  EXPECT_EQ(resolved.descriptor.size, static_cast<int64_t>(pushed.manifest_size));
  EXPECT_EQ(Digest::Of(resolved.manifest), pushed.manifest_digest);

  ASSERT_OK_AND_ASSIGN(Resolved by_digest, resolver.Resolve(by_tag.WithDigest(pushed.manifest_digest)));
  EXPECT_EQ(by_digest.descriptor, resolved.descriptor);
  EXPECT_EQ(by_digest.manifest, resolved.manifest);

  ASSERT_OK_AND_ASSIGN(std::string fetched, resolver.FetchManifest(by_tag, resolved.descriptor));
  EXPECT_EQ(fetched, resolved.manifest);

  ASSERT_OK_AND_ASSIGN(ResolvedImage image, resolver.ResolvePlatform(by_tag, oci::Platform::Host()));
  EXPECT_FALSE(image.index.has_value());
  EXPECT_EQ(image.manifest_descriptor.digest, pushed.manifest_digest);
  EXPECT_EQ(image.manifest.config.digest, pushed.config_digest);
  EXPECT_EQ(Digest::Of(image.config_bytes), pushed.config_digest);
  ASSERT_EQ(image.manifest.layers.size(), pushed.layer_digests.size());
  EXPECT_EQ(image.config.rootfs.diff_ids, pushed.diff_ids);
  (void)test;
}

TEST_F(ResolverTest, OciByTagAndDigest) {
  StartRegistry();
  ASSERT_OK_AND_ASSIGN(auto pushed, PushSmall(ManifestFormat::kOci, "team/app", "1"));
  Resolver& resolver = MakeResolver();
  CheckTagAndDigest(this, resolver, pushed, Ref(registry_->host() + "/team/app:1"), oci::media_type::kOciManifest);
  ASSERT_OK_AND_ASSIGN(auto hosts, resolver.Hosts(Ref(registry_->host() + "/team/app:1"), kCapabilityResolve));
  ASSERT_EQ(hosts.size(), 1u);
  EXPECT_EQ(hosts[0].RepositoryUrl("team/app"), fmt::format("http://{}/v2/team/app/", registry_->host()));
}

TEST_F(ResolverTest, DockerByTagAndDigest) {
  StartRegistry();
  ASSERT_OK_AND_ASSIGN(auto pushed, PushSmall(ManifestFormat::kDocker, "team/docker", "v2"));
  Resolver& resolver = MakeResolver();
  CheckTagAndDigest(this, resolver, pushed, Ref(registry_->host() + "/team/docker:v2"),
                    oci::media_type::kDockerManifest);
}

TEST_F(ResolverTest, IndexChoosesEachPlatform) {
  StartRegistry();
  for (ManifestFormat format : {ManifestFormat::kOci, ManifestFormat::kDocker}) {
    ASSERT_OK_AND_ASSIGN(auto amd64, SmallImage(format, {.os = "linux", .architecture = "amd64"}, "amd64\n"));
    ASSERT_OK_AND_ASSIGN(auto arm64,
                         SmallImage(format, {.os = "linux", .architecture = "arm64", .variant = "v8"}, "arm64\n"));
    ASSERT_OK_AND_ASSIGN(auto windows, SmallImage(format,
                                                  {.os = "windows", .architecture = "amd64",
                                                   .os_version = "10.0.20348.2113"},
                                                  "windows\n"));
    test_support::IndexBuilder index_builder(format);
    index_builder.Add(amd64).Add(arm64).Add(windows);
    ASSERT_OK_AND_ASSIGN(auto pushed, index_builder.PushTo(*registry_, "team/multi", "1"));
    ASSERT_EQ(pushed.images.size(), 3u);

    Resolver& resolver = MakeResolver();
    oci::Reference reference = Ref(registry_->host() + "/team/multi:1");
    ASSERT_OK_AND_ASSIGN(Resolved top, resolver.Resolve(reference));
    EXPECT_TRUE(oci::IsIndex(top.descriptor.media_type)) << top.descriptor.media_type;
    EXPECT_EQ(top.descriptor.digest, pushed.index_digest);

    const std::vector<std::pair<std::string, size_t>> cases = {
        {"linux/amd64", 0}, {"linux/arm64/v8", 1}, {"linux/arm64", 1}, {"windows/amd64:10.0.20348.2113", 2}};
    for (const auto& [platform_text, expected] : cases) {
      ASSERT_OK_AND_ASSIGN(oci::Platform platform, oci::Platform::Parse(platform_text));
      ASSERT_OK_AND_ASSIGN(ResolvedImage image, resolver.ResolvePlatform(reference, platform));
      ASSERT_TRUE(image.index.has_value());
      EXPECT_EQ(image.index->manifests.size(), 3u);
      EXPECT_EQ(image.manifest_descriptor.digest, pushed.images[expected].manifest_digest) << platform_text;
      EXPECT_EQ(Digest::Of(image.manifest_bytes), pushed.images[expected].manifest_digest);
      EXPECT_EQ(image.manifest.config.digest, pushed.images[expected].config_digest) << platform_text;
      EXPECT_EQ(image.config.platform().Normalized().os, platform.Normalized().os);
      EXPECT_EQ(image.config.architecture, platform.Normalized().architecture);
    }

    ASSERT_OK_AND_ASSIGN(oci::Platform riscv, oci::Platform::Parse("linux/riscv64"));
    auto missing = resolver.ResolvePlatform(reference, riscv);
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
    EXPECT_NE(missing.error().message().find("linux/riscv64"), std::string::npos) << missing.error().message();
  }
}

TEST_F(ResolverTest, CorruptedManifestRejectedNamingBothDigests) {
  StartRegistry();
  ASSERT_OK_AND_ASSIGN(auto pushed, PushSmall(ManifestFormat::kOci, "team/app", "1"));
  ASSERT_OK_AND_ASSIGN(auto proxy, FaultProxy::Start(registry_->url(), {{.method = "GET",
                                                                         .path_regex = "/manifests/",
                                                                         .action = FaultAction::kCorruptByte,
                                                                         .body_bytes = 10,
                                                                         .first_n = 0}}));
  Resolver& resolver = MakeResolver();
  for (const std::string& text : {proxy->host() + "/team/app:1",
                                  proxy->host() + "/team/app@" + pushed.manifest_digest.ToString()}) {
    auto result = resolver.Resolve(Ref(text));
    ASSERT_FALSE(result) << text;
    EXPECT_EQ(result.error().code(), ErrorCode::kFailedPrecondition);
    const std::string& message = result.error().message();
    EXPECT_NE(message.find(pushed.manifest_digest.ToString()), std::string::npos) << message;
    size_t first = message.find("sha256:");
    ASSERT_NE(first, std::string::npos) << message;
    EXPECT_NE(message.find("sha256:", first + 1), std::string::npos) << message;
    EXPECT_NE(message.find("does not match"), std::string::npos) << message;
  }
  EXPECT_GE(proxy->fired(0), 2);
}

TEST_F(ResolverTest, HeadNotAllowedFallsBackToGet) {
  StartRegistry();
  ASSERT_OK_AND_ASSIGN(auto pushed, PushSmall(ManifestFormat::kOci, "team/app", "1"));
  ASSERT_OK_AND_ASSIGN(auto proxy, FaultProxy::Start(registry_->url(), {{.method = "HEAD",
                                                                         .path_regex = "/manifests/",
                                                                         .action = FaultAction::kRedirect,
                                                                         .location = "/nowhere",
                                                                         .redirect_status = 405,
                                                                         .first_n = 0}}));
  Resolver& resolver = MakeResolver();
  ASSERT_OK_AND_ASSIGN(Resolved resolved, resolver.Resolve(Ref(proxy->host() + "/team/app:1")));
  EXPECT_EQ(resolved.descriptor.digest, pushed.manifest_digest);
  EXPECT_EQ(proxy->fired(0), 1);
}

TEST_F(ResolverTest, UnknownManifestIsNotFoundNamingTheReference) {
  StartRegistry();
  ASSERT_OK(PushSmall(ManifestFormat::kOci, "team/app", "1"));
  Resolver& resolver = MakeResolver();
  for (const std::string& text : {registry_->host() + "/team/app:nope", registry_->host() + "/team/absent:1"}) {
    oci::Reference reference = Ref(text);
    auto result = resolver.Resolve(reference);
    ASSERT_FALSE(result) << text;
    EXPECT_EQ(result.error().code(), ErrorCode::kNotFound) << result.error().ToString();
    EXPECT_NE(result.error().message().find(reference.String()), std::string::npos) << result.error().message();
  }
  oci::Reference by_digest = Ref(registry_->host() + "/team/app@" + Digest::Of("nothing").ToString());
  auto result = resolver.Resolve(by_digest);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kNotFound);
}

TEST_F(ResolverTest, TokenAuth) {
  StartRegistry({.auth = RegistryAuth::kToken, .token = {.require_credentials = true}});
  ASSERT_OK_AND_ASSIGN(auto pushed, PushSmall(ManifestFormat::kOci, "team/secure", "1"));
  Resolver& resolver = MakeResolver(Credentials{.username = "strata", .password = "strata-password"});
  ASSERT_OK_AND_ASSIGN(ResolvedImage image,
                       resolver.ResolvePlatform(Ref(registry_->host() + "/team/secure:1"), oci::Platform::Host()));
  EXPECT_EQ(image.top.descriptor.digest, pushed.manifest_digest);
  EXPECT_EQ(image.manifest.config.digest, pushed.config_digest);
  EXPECT_GE(registry_->token_requests(), 1);

  Resolver& anonymous = MakeResolver();
  auto denied = anonymous.Resolve(Ref(registry_->host() + "/team/secure:1"));
  ASSERT_FALSE(denied);
  EXPECT_EQ(denied.error().code(), ErrorCode::kFailedPrecondition) << denied.error().ToString();
}

// ---- strata inspect ----

struct CommandRun {
  int code = -1;
  std::string output;
};

CommandRun Strata(const TempDir& home, std::vector<std::string> args) {
  std::vector<std::string> argv = {"env", "HOME=" + home.path().string(),
                                   "XDG_CONFIG_HOME=" + (home.path() / "config").string(),
                                   "DOCKER_CONFIG=" + (home.path() / "docker").string(),
                                   "REGISTRY_AUTH_FILE=" + (home.path() / "auth.json").string(),
                                   STRATA_BIN, "--root", (home.path() / "store").string(), "inspect"};
  argv.insert(argv.end(), args.begin(), args.end());
  CommandRun run;
  auto code = test_support::RunCommand(argv, &run.output);
  EXPECT_TRUE(code.has_value()) << code.error().ToString();
  run.code = code.value_or(-1);
  return run;
}

TEST_F(ResolverTest, InspectCommand) {
  StartRegistry();
  ASSERT_OK_AND_ASSIGN(auto pushed, PushSmall(ManifestFormat::kOci, "team/app", "1"));
  ASSERT_OK_AND_ASSIGN(auto home, TempDir::Create("strata-inspect"));
  const std::string reference = registry_->host() + "/team/app:1";

  CommandRun run = Strata(home, {reference});
  ASSERT_EQ(run.code, 0) << run.output;
  EXPECT_NE(run.output.find(pushed.manifest_digest.ToString()), std::string::npos) << run.output;
  auto summary = nlohmann::json::parse(run.output, nullptr, false);
  ASSERT_TRUE(summary.is_object()) << run.output;
  EXPECT_EQ(summary["digest"], pushed.manifest_digest.ToString());
  EXPECT_EQ(summary["mediaType"], std::string(oci::media_type::kOciManifest));
  EXPECT_EQ(summary["config"]["digest"], pushed.config_digest.ToString());
  ASSERT_EQ(summary["layers"].size(), 1u);
  EXPECT_EQ(summary["layers"][0]["digest"], pushed.layer_digests[0].ToString());

  CommandRun raw = Strata(home, {"--raw", reference});
  ASSERT_EQ(raw.code, 0) << raw.output;
  EXPECT_EQ(Digest::Of(raw.output), pushed.manifest_digest);

  // An index: the platforms it offers and the chosen one's manifest.
  ASSERT_OK_AND_ASSIGN(auto amd64, SmallImage(ManifestFormat::kOci, {.os = "linux", .architecture = "amd64"}, "a\n"));
  ASSERT_OK_AND_ASSIGN(auto arm64, SmallImage(ManifestFormat::kOci,
                                              {.os = "linux", .architecture = "arm64", .variant = "v8"}, "b\n"));
  test_support::IndexBuilder index_builder;
  index_builder.Add(amd64).Add(arm64);
  ASSERT_OK_AND_ASSIGN(auto index, index_builder.PushTo(*registry_, "team/multi", "1"));
  CommandRun multi = Strata(home, {"--platform", "linux/arm64/v8", registry_->host() + "/team/multi:1"});
  ASSERT_EQ(multi.code, 0) << multi.output;
  auto multi_summary = nlohmann::json::parse(multi.output, nullptr, false);
  ASSERT_TRUE(multi_summary.is_object()) << multi.output;
  EXPECT_EQ(multi_summary["digest"], index.index_digest.ToString());
  EXPECT_EQ(multi_summary["platforms"], nlohmann::json::array({"linux/amd64", "linux/arm64/v8"}));
  EXPECT_EQ(multi_summary["manifest"]["digest"], index.images[1].manifest_digest.ToString());
  EXPECT_EQ(multi_summary["architecture"], "arm64");
  CommandRun multi_raw = Strata(home, {"--raw", "--platform", "linux/amd64", registry_->host() + "/team/multi:1"});
  ASSERT_EQ(multi_raw.code, 0) << multi_raw.output;
  EXPECT_EQ(Digest::Of(multi_raw.output), index.images[0].manifest_digest);

  CommandRun missing = Strata(home, {registry_->host() + "/team/app:nope"});
  EXPECT_EQ(missing.code, 1);
  EXPECT_NE(missing.output.find("not found"), std::string::npos) << missing.output;
}

}  // namespace
}  // namespace strata::registry
