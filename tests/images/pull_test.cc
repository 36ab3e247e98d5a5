// Pull into the content store against the real docker-registry: media types and
// compressions, platform choice in an index, gc labels and leases, faults through the
// FaultProxy (drop -> resume, 429, 503, stall, corrupt bytes), foreign layer URLs, and two
// concurrent pulls sharing layers.
#include "images/pull.h"

#include <atomic>
#include <chrono>
#include <random>
#include <thread>

#include <gtest/gtest.h>

#include "base/file.h"
#include "oci/media_types.h"
#include "registry/fetcher.h"
#include "store/store.h"
#include "tests/registry/registry_client_test_base.h"
#include "tests/support/assertions.h"
#include "tests/support/fault_proxy.h"
#include "tests/support/image_builder.h"
#include "tests/support/registry_fixture.h"

namespace strata::images {
namespace {

using namespace std::chrono_literals;
using registry::Authorizer;
using registry::Fetcher;
using registry::Resolver;
using registry::ResolverOptions;
using test_support::Compression;
using test_support::FaultAction;
using test_support::RandomBytes;
using test_support::FaultProxy;
using test_support::FaultRule;
using test_support::ManifestFormat;

class PullTest : public registry::RegistryClientTest {
 protected:
  void SetUp() override {
    RegistryClientTest::SetUp();
    registry_ = StartTrustedRegistry();
    ASSERT_TRUE(registry_);
    auto root = TempDir::Create("strata-pull");
    ASSERT_TRUE(root) << root.error().ToString();
    root_ = std::make_unique<TempDir>(std::move(*root));
    auto store = store::Store::Open(root_->path() / "store");
    ASSERT_TRUE(store) << store.error().ToString();
    store_ = std::move(*store);
    MakeClient();
  }

  // A resolver whose retries are fast and whose waits are recorded, not slept.
  void MakeClient(int max_attempts = 4) {
    fetcher_.reset();
    resolver_.reset();
    authorizer_ = std::make_unique<Authorizer>(*client_, Fixed(std::nullopt));
    ResolverOptions options;
    options.retry = {.max_attempts = max_attempts, .initial_backoff = 1ms, .jitter = 0};
    options.sleep = [this](std::chrono::milliseconds delay) {
      std::lock_guard lock(sleeps_mutex_);
      sleeps_.push_back(delay);
    };
    resolver_ = std::make_unique<Resolver>(*authorizer_, std::move(options));
    fetcher_ = std::make_unique<Fetcher>(*resolver_, store_->content(), &store_->leases());
  }

  Result<PullResult> PullRef(const std::string& text, PullOptions options = {}) {
    return Pull(*resolver_, *fetcher_, *store_, Ref(text), options);
  }

  // An image with a big random (incompressible) layer and a small one.
  Result<test_support::PushedImage> PushBig(std::string_view repository, size_t big_size, uint32_t seed = 1,
                                            Compression compression = Compression::kGzip) {
    auto big = test_support::LayerBuilder().File("big.bin", RandomBytes(big_size, seed)).Build(compression);
    if (!big) return std::unexpected(big.error());
    auto small = test_support::LayerBuilder().File("etc/hostname", "strata\n").Build(compression);
    if (!small) return std::unexpected(small.error());
    test_support::ImageBuilder builder;
    builder.AddLayer(std::move(*big)).AddLayer(std::move(*small));
    return builder.PushTo(*registry_, repository, "1");
  }

  void ExpectAllInStore(const test_support::PushedImage& pushed) {
    EXPECT_TRUE(store_->content().Info(pushed.manifest_digest)) << "manifest";
    EXPECT_TRUE(store_->content().Info(pushed.config_digest)) << "config";
    for (const Digest& layer : pushed.layer_digests) EXPECT_TRUE(store_->content().Info(layer)) << layer;
  }

  int BlobGets(const FaultProxy& proxy, const Digest& digest) {
    int count = 0;
    for (const auto& request : proxy.requests()) {
      if (request.method == "GET" && request.target.ends_with("/blobs/" + digest.ToString())) ++count;
    }
    return count;
  }

  std::unique_ptr<test_support::RegistryFixture> registry_;
  std::unique_ptr<TempDir> root_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<Fetcher> fetcher_;
  std::mutex sleeps_mutex_;
  std::vector<std::chrono::milliseconds> sleeps_;
};

TEST_F(PullTest, OciGzipImageLandsInStoreWithGcLabelsAndNoLeftovers) {
  ASSERT_OK_AND_ASSIGN(auto pushed, PushBig("team/app", 300'000));
  const std::string name = registry_->host() + "/team/app:1";
  std::vector<registry::ProgressEvent> events;
  std::mutex events_mutex;
  PullOptions options;
  options.progress = [&](const registry::ProgressEvent& event) {
    std::lock_guard lock(events_mutex);
    events.push_back(event);
  };
  ASSERT_OK_AND_ASSIGN(PullResult result, PullRef(name, options));
  EXPECT_EQ(result.image_name, name);
  EXPECT_EQ(result.target.digest, pushed.manifest_digest);
  EXPECT_EQ(result.blobs_fetched, 4);  // 2 layers, config, manifest
  EXPECT_GE(result.bytes_received, 300'000);
  ExpectAllInStore(pushed);

  ASSERT_OK_AND_ASSIGN(store::Image image, store_->images().Get(name));
  EXPECT_EQ(image.target.digest, pushed.manifest_digest);
  ASSERT_OK_AND_ASSIGN(store::ContentInfo manifest, store_->content().Info(pushed.manifest_digest));
  EXPECT_EQ(manifest.labels["containerd.io/gc.ref.content.config"], pushed.config_digest.ToString());
  EXPECT_EQ(manifest.labels["containerd.io/gc.ref.content.l.0"], pushed.layer_digests[0].ToString());
  EXPECT_EQ(manifest.labels["containerd.io/gc.ref.content.l.1"], pushed.layer_digests[1].ToString());

  // No lease or ingest is left behind, and GC keeps everything the image references.
  ASSERT_OK_AND_ASSIGN(auto leases, store_->leases().List({}));
  EXPECT_TRUE(leases.empty());
  ASSERT_OK_AND_ASSIGN(auto ingests, store_->content().ListStatuses({}));
  EXPECT_TRUE(ingests.empty());
  ASSERT_OK(store_->CollectGarbage());
  ExpectAllInStore(pushed);

  // Every layer went waiting -> downloading -> verifying -> done.
  for (const Digest& layer : pushed.layer_digests) {
    std::vector<registry::TransferState> states;
    for (const auto& event : events) {
      if (event.digest == layer && (states.empty() || states.back() != event.state)) states.push_back(event.state);
    }
    EXPECT_EQ(states, (std::vector<registry::TransferState>{
                          registry::TransferState::kWaiting, registry::TransferState::kDownloading,
                          registry::TransferState::kVerifying, registry::TransferState::kDone}))
        << layer;
  }

  // A second pull finds everything present and downloads nothing.
  ASSERT_OK_AND_ASSIGN(PullResult again, PullRef(name));
  EXPECT_EQ(again.blobs_fetched, 0);
  EXPECT_EQ(again.blobs_present, 4);
  EXPECT_EQ(again.bytes_received, 0);
}

TEST_F(PullTest, DockerZstdAndIndexChoosesHostPlatformOnly) {
  auto make = [](ManifestFormat format, test_support::Platform platform, std::string text) {
    auto layer = test_support::LayerBuilder().File("which", text).Build(Compression::kZstd);
    EXPECT_TRUE(layer);
    test_support::ImageBuilder builder(format);
    builder.SetPlatform(std::move(platform)).AddLayer(std::move(*layer));
    auto built = builder.Build();
    EXPECT_TRUE(built);
    return *built;
  };
  for (ManifestFormat format : {ManifestFormat::kDocker, ManifestFormat::kOci}) {
    test_support::IndexBuilder index(format);
    index.Add(make(format, {.architecture = ""}, "host"))
        .Add(make(format, {.architecture = "s390x"}, "s390x"))
        .Add(make(format, {.os = "windows", .architecture = "amd64", .os_version = "10.0.20348.2113"}, "windows"));
    const std::string repo = format == ManifestFormat::kOci ? "multi/oci" : "multi/docker";
    ASSERT_OK_AND_ASSIGN(auto pushed, index.PushTo(*registry_, repo, "1"));

    ASSERT_OK_AND_ASSIGN(PullResult result, PullRef(registry_->host() + "/" + repo + ":1"));
    EXPECT_EQ(result.target.digest, pushed.index_digest);
    EXPECT_EQ(result.manifest.digest, pushed.images[0].manifest_digest);
    ExpectAllInStore(pushed.images[0]);
    EXPECT_FALSE(store_->content().Info(pushed.images[1].layer_digests[0]));
    EXPECT_FALSE(store_->content().Info(pushed.images[2].layer_digests[0]));
    ASSERT_OK_AND_ASSIGN(store::ContentInfo index_info, store_->content().Info(pushed.index_digest));
    EXPECT_EQ(index_info.labels["containerd.io/gc.ref.content.m.0"], pushed.images[0].manifest_digest.ToString());
    // The index bytes are stored exactly as served.
    ASSERT_OK_AND_ASSIGN(auto reader, store_->content().Reader(pushed.index_digest));
    EXPECT_EQ(reader->size(), static_cast<int64_t>(pushed.index_size));
  }
}

TEST_F(PullTest, DroppedConnectionResumesWithRange) {
  constexpr size_t kSize = 3'000'000;
  ASSERT_OK_AND_ASSIGN(auto pushed, PushBig("drop/app", kSize));
  const Digest big = pushed.layer_digests[0];
  ASSERT_OK_AND_ASSIGN(auto proxy, FaultProxy::Start(registry_->url(),
                                                     {FaultRule{.method = "GET",
                                                                .path_regex = "/blobs/" + big.ToString(),
                                                                .action = FaultAction::kDropAfter,
                                                                .body_bytes = 1'000'000,
                                                                .first_n = 2}}));
  ASSERT_OK_AND_ASSIGN(PullResult result, PullRef(proxy->host() + "/drop/app:1"));
  ExpectAllInStore(pushed);
  EXPECT_EQ(BlobGets(*proxy, big), 3);
  // Resumed, not restarted: the proxy forwarded about one copy of the blob.
  const uint64_t forwarded = proxy->BodyBytesForwarded("/v2/drop/app/blobs/" + big.ToString());
  ASSERT_OK_AND_ASSIGN(auto info, store_->content().Info(big));
  EXPECT_EQ(forwarded, static_cast<uint64_t>(info.size));
  int ranged = 0;
  for (const auto& request : proxy->requests()) {
    if (request.Header("Range")) ++ranged;
  }
  EXPECT_EQ(ranged, 2);
}

TEST_F(PullTest, InterruptedPullResumesFromIngestNextTime) {
  constexpr size_t kSize = 2'000'000;
  ASSERT_OK_AND_ASSIGN(auto pushed, PushBig("again/app", kSize));
  const Digest big = pushed.layer_digests[0];
  ASSERT_OK_AND_ASSIGN(auto proxy, FaultProxy::Start(registry_->url(),
                                                     {FaultRule{.method = "GET",
                                                                .path_regex = "/blobs/" + big.ToString(),
                                                                .action = FaultAction::kDropAfter,
                                                                .body_bytes = 700'000,
                                                                .first_n = 1}}));
  MakeClient(/*max_attempts=*/1);
  auto failed = PullRef(proxy->host() + "/again/app:1");
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().code(), ErrorCode::kUnavailable) << failed.error().ToString();
  EXPECT_FALSE(store_->images().Get(proxy->host() + "/again/app:1"));
  ASSERT_OK_AND_ASSIGN(auto ingest, store_->content().StatusOf(registry::FetchIngestRef(big)));
  EXPECT_EQ(ingest.offset, 700'000);

  ASSERT_OK(PullRef(proxy->host() + "/again/app:1"));
  ExpectAllInStore(pushed);
  ASSERT_OK_AND_ASSIGN(auto info, store_->content().Info(big));
  EXPECT_EQ(proxy->BodyBytesForwarded("/v2/again/app/blobs/" + big.ToString()), static_cast<uint64_t>(info.size));
}

TEST_F(PullTest, TooManyRequestsWaitsRetryAfterAndServiceUnavailableBacksOff) {
  ASSERT_OK_AND_ASSIGN(auto pushed, PushBig("busy/app", 100'000));
  ASSERT_OK_AND_ASSIGN(auto proxy,
                       FaultProxy::Start(registry_->url(),
                                         {FaultRule{.method = "GET",
                                                    .path_regex = "/blobs/" + pushed.layer_digests[0].ToString(),
                                                    .action = FaultAction::kTooManyRequests,
                                                    .retry_after_seconds = 3,
                                                    .first_n = 1},
                                          FaultRule{.method = "GET",
                                                    .path_regex = "/blobs/" + pushed.layer_digests[1].ToString(),
                                                    .action = FaultAction::kServiceUnavailable,
                                                    .first_n = 3}}));
  ASSERT_OK(PullRef(proxy->host() + "/busy/app:1"));
  ExpectAllInStore(pushed);
  EXPECT_EQ(proxy->fired(0), 1);
  EXPECT_EQ(proxy->fired(1), 3);
  std::lock_guard lock(sleeps_mutex_);
  // One Retry-After wait of 3 s, and three doubling backoffs (1, 2, 4 ms).
  EXPECT_EQ(std::count(sleeps_.begin(), sleeps_.end(), 3000ms), 1);
  EXPECT_EQ(std::count(sleeps_.begin(), sleeps_.end(), 4ms), 1);
  EXPECT_EQ(sleeps_.size(), 4u);
}

TEST_F(PullTest, EndlessStallFailsWithClearMessage) {
  ASSERT_OK_AND_ASSIGN(auto pushed, PushBig("stall/app", 500'000));
  ASSERT_OK_AND_ASSIGN(auto proxy,
                       FaultProxy::Start(registry_->url(),
                                         {FaultRule{.method = "GET",
                                                    .path_regex = "/blobs/" + pushed.layer_digests[0].ToString(),
                                                    .action = FaultAction::kStallAfter,
                                                    .body_bytes = 10'000,
                                                    .first_n = 0}}));
  auto client = registry::HttpClient::Create({.certs_dir = certs_->path(), .stall_timeout = 1s});
  ASSERT_TRUE(client);
  client_ = std::move(*client);
  MakeClient(/*max_attempts=*/2);
  auto result = PullRef(proxy->host() + "/stall/app:1");
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kUnavailable);
  EXPECT_NE(result.error().message().find("no data from " + proxy->host() + " for 1 s"), std::string::npos)
      << result.error().message();
  EXPECT_NE(result.error().message().find("giving up after 2 attempts"), std::string::npos)
      << result.error().message();
  EXPECT_FALSE(store_->content().Info(pushed.layer_digests[0]));
}

TEST_F(PullTest, WrongDigestIsRejectedAndNothingCommitted) {
  ASSERT_OK_AND_ASSIGN(auto pushed, PushBig("corrupt/app", 200'000));
  const Digest big = pushed.layer_digests[0];
  ASSERT_OK_AND_ASSIGN(auto proxy, FaultProxy::Start(registry_->url(),
                                                     {FaultRule{.method = "GET",
                                                                .path_regex = "/blobs/" + big.ToString(),
                                                                .action = FaultAction::kCorruptByte,
                                                                .body_bytes = 12'345,
                                                                .first_n = 0}}));
  auto result = PullRef(proxy->host() + "/corrupt/app:1");
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kFailedPrecondition) << result.error().ToString();
  EXPECT_NE(result.error().message().find(big.ToString()), std::string::npos) << result.error().message();
  EXPECT_FALSE(store_->content().Info(big));
  EXPECT_FALSE(store_->content().Info(pushed.manifest_digest));
  EXPECT_FALSE(store_->images().Get(proxy->host() + "/corrupt/app:1"));
  ASSERT_OK_AND_ASSIGN(auto ingests, store_->content().ListStatuses({}));
  for (const auto& ingest : ingests) EXPECT_NE(ingest.ref, registry::FetchIngestRef(big));
}

TEST_F(PullTest, ConcurrentPullsSharingLayersFetchEachBlobOnce) {
  auto shared = test_support::LayerBuilder().File("shared.bin", RandomBytes(2'000'000, 7)).Build();
  ASSERT_TRUE(shared);
  std::vector<test_support::PushedImage> pushed;
  for (int i = 0; i < 2; ++i) {
    auto own = test_support::LayerBuilder().File("own", fmt::format("image {}\n", i)).Build();
    ASSERT_TRUE(own);
    test_support::ImageBuilder builder;
    builder.AddLayer(*shared).AddLayer(std::move(*own));
    ASSERT_OK_AND_ASSIGN(auto image, builder.PushTo(*registry_, fmt::format("share/app{}", i), "1"));
    pushed.push_back(image);
  }
  ASSERT_OK_AND_ASSIGN(auto proxy, FaultProxy::Start(registry_->url()));
  std::vector<Result<PullResult>> results(2, Fail(ErrorCode::kInternal, "not run"));
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] { results[i] = PullRef(fmt::format("{}/share/app{}:1", proxy->host(), i)); });
  }
  for (auto& thread : threads) thread.join();
  for (auto& result : results) ASSERT_TRUE(result) << result.error().ToString();
  EXPECT_EQ(BlobGets(*proxy, shared->digest), 1);
  EXPECT_EQ(results[0]->blobs_fetched + results[1]->blobs_fetched, 7);  // shared layer once
  for (const auto& image : pushed) ExpectAllInStore(image);
}

// The daemon gives every pull its own Fetcher, so the in-Fetcher sharing does not apply
// between pulls: a blob another Fetcher commits while this fetch waits for the ingest's lock
// is found there, not fetched again, and the pull succeeds (found by tests/load: concurrent
// pulls failed with "content sha256:... already exists").
TEST_F(PullTest, BlobCommittedByAnotherFetcherWhileWaitingForItsIngestIsNotFetchedAgain) {
  ASSERT_OK_AND_ASSIGN(auto pushed, PushBig("team/other-fetcher", 300'000));
  const Digest big = pushed.layer_digests[0];
  test_support::TestHttpClient client = registry_->Client();
  ASSERT_OK_AND_ASSIGN(auto blob, client.Get(registry_->V2Url("team/other-fetcher/blobs/" + big.ToString())));
  ASSERT_EQ(blob.status, 200);
  ASSERT_OK_AND_ASSIGN(auto proxy, FaultProxy::Start(registry_->url()));
  // The other Fetcher's download: it holds the ingest this pull's fetch of `big` must wait for.
  ASSERT_OK_AND_ASSIGN(auto writer, store_->content().Writer(registry::FetchIngestRef(big), {.expected = big}));
  std::atomic<bool> small_done{false};
  PullOptions options;
  options.progress = [&](const registry::ProgressEvent& event) {
    if (event.digest == pushed.layer_digests[1] && event.state == registry::TransferState::kDone) small_done = true;
  };
  Result<PullResult> result = Fail(ErrorCode::kInternal, "not run");
  std::thread pull([&] { result = PullRef(proxy->host() + "/team/other-fetcher:1", options); });
  // Layers are fetched in parallel: once the small one is in, the big one waits for the lock.
  for (int i = 0; i < 500 && !small_done; ++i) std::this_thread::sleep_for(10ms);
  std::this_thread::sleep_for(200ms);
  ASSERT_OK(writer->Write(blob.body));
  ASSERT_OK(writer->Commit(static_cast<int64_t>(blob.body.size()), big));
  writer.reset();
  pull.join();
  ASSERT_TRUE(result) << result.error().ToString();
  EXPECT_EQ(BlobGets(*proxy, big), 0);
  ExpectAllInStore(pushed);
}

TEST_F(PullTest, ForeignLayerComesFromItsUrlsWhenTheRegistryLacksIt) {
  // The foreign blob lives in a second registry; the image's registry has only its URL.
  auto elsewhere = StartTrustedRegistry();
  ASSERT_TRUE(elsewhere);
  ASSERT_OK_AND_ASSIGN(auto foreign, test_support::LayerBuilder().File("windows/base", "base\n").Build());
  test_support::TestHttpClient http;
  const auto blob = test_support::Blob::Of(std::string(test_support::media_types::kDockerForeignLayerGzip),
                                          foreign.blob);
  ASSERT_OK(test_support::PushBlob(http, elsewhere->url(), "bases/win", blob));
  const std::string url = fmt::format("{}/v2/bases/win/blobs/{}", elsewhere->url(), foreign.digest);

  test_support::RegistryOptions options;
  options.extra_config_yaml = "validation:\n  manifests:\n    urls:\n      allow: ['^http://127\\.0\\.0\\.1']\n";
  auto registry = StartTrustedRegistry(options);
  ASSERT_TRUE(registry);
  auto own = test_support::LayerBuilder().File("app", "app\n").Build();
  ASSERT_TRUE(own);
  test_support::ImageBuilder builder(ManifestFormat::kDocker);
  builder
      .AddLayer(foreign, {.media_type = std::string(test_support::media_types::kDockerForeignLayerGzip),
                          .urls = {url},
                          .push_blob = false})
      .AddLayer(std::move(*own));
  ASSERT_OK_AND_ASSIGN(auto pushed, builder.PushTo(*registry, "win/app", "1"));
  ASSERT_OK(PullRef(registry->host() + "/win/app:1"));
  ExpectAllInStore(pushed);
}

}  // namespace
}  // namespace strata::images
