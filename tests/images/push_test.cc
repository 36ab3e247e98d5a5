// Push and copy against real docker-registry instances: uploads, existence checks,
// cross-repository mounts, chunked uploads, indexes copied byte-identically (Windows
// entries included), and non-distributable layers skipped unless allowed.
#include "images/push.h"

#include <gtest/gtest.h>

#include "images/pull.h"
#include "registry/fetcher.h"
#include "registry/pusher.h"
#include "store/store.h"
#include "tests/registry/registry_client_test_base.h"
#include "tests/support/assertions.h"
#include "tests/support/image_builder.h"
#include "tests/support/registry_fixture.h"

namespace strata::images {
namespace {

using namespace std::chrono_literals;
using test_support::Compression;
using test_support::ManifestFormat;

class PushTest : public registry::RegistryClientTest {
 protected:
  void SetUp() override {
    RegistryClientTest::SetUp();
    source_ = StartTrustedRegistry();
    ASSERT_TRUE(source_);
    target_ = StartTrustedRegistry();
    ASSERT_TRUE(target_);
    auto root = TempDir::Create("strata-push");
    ASSERT_TRUE(root) << root.error().ToString();
    root_ = std::make_unique<TempDir>(std::move(*root));
    auto store = store::Store::Open(root_->path() / "store");
    ASSERT_TRUE(store) << store.error().ToString();
    store_ = std::move(*store);
    authorizer_ = std::make_unique<registry::Authorizer>(*client_, Fixed(std::nullopt));
    registry::ResolverOptions options;
    options.retry = {.max_attempts = 3, .initial_backoff = 1ms, .jitter = 0};
    resolver_ = std::make_unique<registry::Resolver>(*authorizer_, std::move(options));
    fetcher_ = std::make_unique<registry::Fetcher>(*resolver_, store_->content(), &store_->leases());
    pusher_ = std::make_unique<registry::Pusher>(*resolver_);
  }

  static test_support::BuiltImage Build(ManifestFormat format, Compression compression,
                                        test_support::Platform platform, const std::string& text) {
    auto layer = test_support::LayerBuilder().File("which", text).Build(compression);
    EXPECT_TRUE(layer);
    auto base = test_support::LayerBuilder().File("base", std::string(50'000, 'b') + text).Build(compression);
    EXPECT_TRUE(base);
    test_support::ImageBuilder builder(format);
    builder.SetPlatform(std::move(platform)).AddLayer(std::move(*base)).AddLayer(std::move(*layer));
    auto built = builder.Build();
    EXPECT_TRUE(built);
    return *built;
  }

  // The manifest bytes `registry` serves for `reference` (GET with every Accept type).
  std::string ServedManifest(test_support::RegistryFixture& registry, const std::string& repository,
                             const std::string& reference) {
    test_support::TestHttpClient http;
    auto response = test_support::FetchManifest(http, registry.url(), repository, reference);
    EXPECT_TRUE(response) << response.error().ToString();
    EXPECT_EQ(response->status, 200) << response->body;
    return response->body;
  }

  std::unique_ptr<test_support::RegistryFixture> source_;
  std::unique_ptr<test_support::RegistryFixture> target_;
  std::unique_ptr<TempDir> root_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<registry::Fetcher> fetcher_;
  std::unique_ptr<registry::Pusher> pusher_;
};

TEST_F(PushTest, PullThenPushRoundTripsForEveryFormatAndCompression) {
  int n = 0;
  for (ManifestFormat format : {ManifestFormat::kOci, ManifestFormat::kDocker}) {
    for (Compression compression : {Compression::kGzip, Compression::kZstd}) {
      const std::string repo = fmt::format("round/trip{}", n++);
      test_support::ImageBuilder builder(format);
      auto built = Build(format, compression, {}, repo);
      test_support::TestHttpClient http;
      ASSERT_OK_AND_ASSIGN(auto pushed, test_support::PushImage(http, source_->url(), repo, "1", built));
      const std::string name = source_->host() + "/" + repo + ":1";
      ASSERT_OK(Pull(*resolver_, *fetcher_, *store_, Ref(name), {}));

      ASSERT_OK_AND_ASSIGN(PushImageResult result,
                           PushImage(*pusher_, *store_, name, Ref(target_->host() + "/" + repo + ":2"), {}));
      EXPECT_EQ(result.pushed.digest, pushed.manifest_digest);
      EXPECT_EQ(result.uploaded, 3);  // config + 2 layers
      EXPECT_EQ(ServedManifest(*target_, repo, "2"), built.manifest.data);

      // Again: everything is there already.
      ASSERT_OK_AND_ASSIGN(PushImageResult again,
                           PushImage(*pusher_, *store_, name, Ref(target_->host() + "/" + repo + ":2"), {}));
      EXPECT_EQ(again.uploaded, 0);
      EXPECT_EQ(again.existed, 3);
    }
  }
}

TEST_F(PushTest, SameRegistryPushMountsFromTheSourceRepositoryAndChunkedUploadWorks) {
  auto built = Build(ManifestFormat::kOci, Compression::kGzip, {}, "mount");
  test_support::TestHttpClient http;
  ASSERT_OK(test_support::PushImage(http, source_->url(), "team/base", "1", built));
  const std::string name = source_->host() + "/team/base:1";
  ASSERT_OK(Pull(*resolver_, *fetcher_, *store_, Ref(name), {}));

  ASSERT_OK_AND_ASSIGN(PushImageResult mounted,
                       PushImage(*pusher_, *store_, name, Ref(source_->host() + "/team/derived:1"), {}));
  EXPECT_EQ(mounted.mounted, 3);
  EXPECT_EQ(mounted.uploaded, 0);
  EXPECT_EQ(ServedManifest(*source_, "team/derived", "1"), built.manifest.data);

  ASSERT_OK_AND_ASSIGN(PushImageResult chunked,
                       PushImage(*pusher_, *store_, name, Ref(target_->host() + "/team/chunked:1"),
                                 {.chunk_size = 100}));
  EXPECT_EQ(chunked.uploaded, 3);
  EXPECT_GT(target_->CountRequests("PATCH", "/v2/team/chunked/blobs/uploads/"), 3);
  EXPECT_EQ(ServedManifest(*target_, "team/chunked", "1"), built.manifest.data);
}

TEST_F(PushTest, CopyAllKeepsTheIndexByteIdenticalAndCopyOneNarrowsToThePlatform) {
  test_support::IndexBuilder index(ManifestFormat::kOci);
  index.Add(Build(ManifestFormat::kOci, Compression::kGzip, {}, "host"))
      .Add(Build(ManifestFormat::kOci, Compression::kZstd, {.architecture = "arm64", .variant = "v8"}, "arm64"))
      .Add(Build(ManifestFormat::kOci, Compression::kGzip,
                 {.os = "windows", .architecture = "amd64", .os_version = "10.0.20348.2113"}, "windows"));
  ASSERT_OK_AND_ASSIGN(auto pushed, index.PushTo(*source_, "multi/app", "1"));
  const oci::Reference source = Ref(source_->host() + "/multi/app:1");

  ASSERT_OK_AND_ASSIGN(PushImageResult all, CopyImage(*resolver_, *fetcher_, *pusher_, *store_, source,
                                                      Ref(target_->host() + "/multi/app:1"), {.all_platforms = true}));
  EXPECT_EQ(all.pushed.digest, pushed.index_digest);
  ASSERT_OK_AND_ASSIGN(auto built_index, index.Build());
  EXPECT_EQ(ServedManifest(*target_, "multi/app", "1"), built_index.index.data);
  for (const auto& image : pushed.images) {
    EXPECT_EQ(ServedManifest(*target_, "multi/app", image.manifest_digest.ToString()),
              ServedManifest(*source_, "multi/app", image.manifest_digest.ToString()));
  }

  ASSERT_OK_AND_ASSIGN(PushImageResult one, CopyImage(*resolver_, *fetcher_, *pusher_, *store_, source,
                                                      Ref(target_->host() + "/multi/one:1"), {}));
  EXPECT_EQ(one.pushed.digest, pushed.images[0].manifest_digest);
  EXPECT_EQ(ServedManifest(*target_, "multi/one", "1"), built_index.images[0].manifest.data);

  // Copy records no image and leaves no lease: GC may reclaim the staged blobs.
  ASSERT_OK_AND_ASSIGN(auto images, store_->images().List({}));
  EXPECT_TRUE(images.empty());
  ASSERT_OK_AND_ASSIGN(auto leases, store_->leases().List({}));
  EXPECT_TRUE(leases.empty());
}

TEST_F(PushTest, IncompleteIndexPushesThePresentManifestWithANote) {
  test_support::IndexBuilder index(ManifestFormat::kDocker);
  index.Add(Build(ManifestFormat::kDocker, Compression::kGzip, {}, "host"))
      .Add(Build(ManifestFormat::kDocker, Compression::kGzip, {.architecture = "s390x"}, "s390x"));
  ASSERT_OK_AND_ASSIGN(auto pushed, index.PushTo(*source_, "partial/app", "1"));
  const std::string name = source_->host() + "/partial/app:1";
  ASSERT_OK(Pull(*resolver_, *fetcher_, *store_, Ref(name), {}));
  ASSERT_OK_AND_ASSIGN(PushImageResult result,
                       PushImage(*pusher_, *store_, name, Ref(target_->host() + "/partial/app:1"), {}));
  EXPECT_EQ(result.pushed.digest, pushed.images[0].manifest_digest);
  EXPECT_NE(result.note.find("2 manifests but 1 are in the store"), std::string::npos) << result.note;
}

TEST_F(PushTest, NondistributableLayersAreSkippedUnlessAllowed) {
  auto foreign = test_support::LayerBuilder().File("windows/base", "base\n").Build();
  ASSERT_TRUE(foreign);
  auto own = test_support::LayerBuilder().File("app", "app\n").Build();
  ASSERT_TRUE(own);
  // The image's registry holds the foreign blob too (as registries that allow it do).
  test_support::ImageBuilder builder(ManifestFormat::kDocker);
  builder
      .AddLayer(*foreign, {.media_type = std::string(test_support::media_types::kDockerForeignLayerGzip),
                           .urls = {"http://127.0.0.1:9/never-used"}})
      .AddLayer(std::move(*own));
  ASSERT_OK_AND_ASSIGN(auto built, builder.Build());
  test_support::TestHttpClient http;
  test_support::RegistryOptions options;
  options.extra_config_yaml = "validation:\n  manifests:\n    urls:\n      allow: ['^http://127\\.0\\.0\\.1']\n";
  auto permissive_source = StartTrustedRegistry(options);
  auto permissive_target = StartTrustedRegistry(options);
  ASSERT_TRUE(permissive_source && permissive_target);
  ASSERT_OK(test_support::PushImage(http, permissive_source->url(), "win/app", "1", built));
  const std::string name = permissive_source->host() + "/win/app:1";
  ASSERT_OK(Pull(*resolver_, *fetcher_, *store_, Ref(name), {}));

  ASSERT_OK_AND_ASSIGN(PushImageResult skipped,
                       PushImage(*pusher_, *store_, name, Ref(permissive_target->host() + "/win/skip:1"), {}));
  EXPECT_EQ(skipped.skipped, 1);
  EXPECT_EQ(skipped.uploaded, 2);
  ASSERT_OK_AND_ASSIGN(bool there, pusher_->BlobExists(Ref(permissive_target->host() + "/win/skip:1"),
                                                       oci::Descriptor{.digest = foreign->digest,
                                                                       .size = static_cast<int64_t>(foreign->blob.size())}));
  EXPECT_FALSE(there);

  ASSERT_OK_AND_ASSIGN(PushImageResult allowed,
                       PushImage(*pusher_, *store_, name, Ref(permissive_target->host() + "/win/all:1"),
                                 {.allow_nondistributable = true}));
  EXPECT_EQ(allowed.skipped, 0);
  EXPECT_EQ(allowed.uploaded + allowed.mounted + allowed.existed, 3);
}

TEST_F(PushTest, MissingImageIsNotFound) {
  auto result = PushImage(*pusher_, *store_, "nothing/here:1", Ref(target_->host() + "/x:1"), {});
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kNotFound);
}

}  // namespace
}  // namespace strata::images
