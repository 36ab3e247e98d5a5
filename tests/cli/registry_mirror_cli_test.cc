// `strata serve --registry`: a strata root served as a read-only registry to skopeo, strata
// and plain HTTP (Range, tag pagination, catalog, error bodies, 405), and pull-through from
// a docker-registry upstream that then goes away.
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "base/file.h"
#include "tests/support/assertions.h"
#include "tests/support/http_client.h"
#include "tests/support/image_builder.h"
#include "tests/support/process.h"
#include "tests/support/registry_fixture.h"
#include "tests/support/strata_cli.h"

namespace strata::cli {
namespace {

namespace fs = std::filesystem;
using test_support::Child;
using test_support::CommandRun;
using test_support::RegistryFixture;
using test_support::TestHttpClient;

class RegistryMirrorCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto temp = TempDir::Create("strata-mirror");
    ASSERT_TRUE(temp) << temp.error().ToString();
    temp_ = std::make_unique<TempDir>(std::move(*temp));
    for (const char* home : {"cache", "b", "c"}) fs::create_directories(Home(home));
    auto registry = RegistryFixture::Start();
    ASSERT_TRUE(registry) << registry.error().ToString();
    registry_ = std::move(*registry);
    auto first = test_support::LayerBuilder().File("hello.txt", "hello through the mirror\n").Build();
    auto second = test_support::LayerBuilder().File("big.bin", test_support::RandomBytes(3 << 20, 7)).Build();
    ASSERT_TRUE(first && second);
    test_support::ImageBuilder builder;
    builder.AddLayer(std::move(*first)).AddLayer(std::move(*second));
    auto pushed = builder.PushTo(*registry_, "team/app", "1");
    ASSERT_TRUE(pushed) << pushed.error().ToString();
    pushed_ = std::make_unique<test_support::PushedImage>(*pushed);
  }

  fs::path Home(std::string_view which) const { return temp_->path() / which; }
  CommandRun Strata(std::string_view home, std::vector<std::string> args) {
    return test_support::RunStrata(STRATA_BIN, Home(home), args);
  }
  std::string MirrorUrl(std::string_view path) const { return fmt::format("http://{}{}", mirror_host_, path); }

  // `strata serve --no-socket --registry` on the cache home's root.
  void StartMirror(std::vector<std::string> extra = {}) {
    auto port = test_support::PickFreeLoopbackPort();
    ASSERT_TRUE(port);
    mirror_host_ = fmt::format("127.0.0.1:{}", *port);
    std::vector<std::string> argv = {STRATA_BIN, "--root", (Home("cache") / "store").string(), "--log-level", "info",
                                     "serve", "--no-socket", "--registry", mirror_host_};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto child = Child::Start({.argv = argv,
                               .env = {{"HOME", Home("cache").string()},
                                       {"STRATA_CERTS_DIR", (Home("cache") / "certs.d").string()}},
                               .log_path = temp_->path() / "mirror.log"});
    ASSERT_TRUE(child) << child.error().ToString();
    mirror_ = std::make_unique<Child>(std::move(*child));
    TestHttpClient client;
    for (int i = 0; i < 200; ++i) {
      auto response = client.Get(MirrorUrl("/v2/"));
      if (response && response->status == 200) return;
      ASSERT_TRUE(mirror_->Running()) << mirror_->LogTail();
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    FAIL() << "mirror did not answer: " << mirror_->LogTail();
  }

  static std::string Run(const std::vector<std::string>& argv, int* code) {
    std::string output;
    auto rc = test_support::RunCommand(argv, &output, std::chrono::seconds(120));
    *code = rc ? *rc : -1;
    return output;
  }

  std::unique_ptr<TempDir> temp_;
  std::unique_ptr<RegistryFixture> registry_;
  std::unique_ptr<test_support::PushedImage> pushed_;
  std::string mirror_host_;
  std::unique_ptr<Child> mirror_;
};

TEST_F(RegistryMirrorCliTest, SkopeoAndStrataPullWhatTheStoreHolds) {
  const std::string upstream_name = registry_->host() + "/team/app:1";
  ASSERT_EQ(Strata("cache", {"pull", "-q", upstream_name}).code, 0);
  ASSERT_EQ(Strata("cache", {"tag", upstream_name, registry_->host() + "/team/app:2"}).code, 0);
  ASSERT_EQ(Strata("cache", {"tag", upstream_name, registry_->host() + "/team/app:3"}).code, 0);
  ASSERT_NO_FATAL_FAILURE(StartMirror());

  int code = 0;
  std::string raw = Run({"skopeo", "inspect", "--raw", "--tls-verify=false", "docker://" + mirror_host_ + "/team/app:1"},
                        &code);
  ASSERT_EQ(code, 0) << raw;
  EXPECT_EQ(Digest::Of(raw), pushed_->manifest_digest);
  const fs::path copied = temp_->path() / "copied";
  std::string out = Run({"skopeo", "copy", "--quiet", "--src-tls-verify=false",
                         "docker://" + mirror_host_ + "/team/app:1", "dir:" + copied.string()},
                        &code);
  ASSERT_EQ(code, 0) << out;
  for (const Digest& layer : pushed_->layer_digests) EXPECT_TRUE(fs::exists(copied / layer.hex())) << layer;

  CommandRun pull = Strata("b", {"pull", "-q", mirror_host_ + "/team/app:1"});
  ASSERT_EQ(pull.code, 0) << pull.output;
  EXPECT_EQ(pull.output, pushed_->manifest_digest.ToString() + "\n");
  CommandRun cat = Strata("b", {"cat", mirror_host_ + "/team/app:1", "/hello.txt"});
  EXPECT_EQ(cat.output, "hello through the mirror\n");

  TestHttpClient client;
  // Manifest HEAD: the headers a client verifies.
  auto head = client.Head(MirrorUrl("/v2/team/app/manifests/1"),
                          {{"Accept", "application/vnd.oci.image.manifest.v1+json"}});
  ASSERT_TRUE(head);
  EXPECT_EQ(head->status, 200);
  EXPECT_EQ(head->Header("docker-content-digest"), pushed_->manifest_digest.ToString());
  EXPECT_EQ(head->Header("content-type"), "application/vnd.oci.image.manifest.v1+json");
  EXPECT_EQ(head->Header("content-length"), std::to_string(raw.size()));
  // Not acceptable: distribution's 404.
  auto refused = client.Get(MirrorUrl("/v2/team/app/manifests/1"),
                            {{"Accept", "application/vnd.docker.distribution.manifest.v2+json"}});
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 404);
  // Blob Range.
  const std::string layer_url = MirrorUrl("/v2/team/app/blobs/" + pushed_->layer_digests[1].ToString());
  auto whole = client.Get(layer_url);
  ASSERT_TRUE(whole);
  ASSERT_EQ(whole->status, 200);
  EXPECT_EQ(Digest::Of(whole->body), pushed_->layer_digests[1]);
  auto part = client.Get(layer_url, {{"Range", "bytes=10-19"}});
  ASSERT_TRUE(part);
  EXPECT_EQ(part->status, 206);
  EXPECT_EQ(part->body, whole->body.substr(10, 10));
  EXPECT_EQ(part->Header("content-range"), fmt::format("bytes 10-19/{}", whole->body.size()));
  auto tail = client.Get(layer_url, {{"Range", "bytes=-5"}});
  ASSERT_TRUE(tail);
  EXPECT_EQ(tail->body, whole->body.substr(whole->body.size() - 5));
  auto beyond = client.Get(layer_url, {{"Range", fmt::format("bytes={}-", whole->body.size())}});
  ASSERT_TRUE(beyond);
  EXPECT_EQ(beyond->status, 416);
  // Tags, paged.
  auto tags = client.Get(MirrorUrl("/v2/team/app/tags/list?n=2"));
  ASSERT_TRUE(tags);
  EXPECT_EQ(tags->status, 200);
  EXPECT_EQ(nlohmann::json::parse(tags->body)["tags"], nlohmann::json({"1", "2"}));
  EXPECT_EQ(tags->Header("link"), "</v2/team/app/tags/list?last=2&n=2>; rel=\"next\"");
  auto rest = client.Get(MirrorUrl("/v2/team/app/tags/list?last=2&n=2"));
  ASSERT_TRUE(rest);
  EXPECT_EQ(nlohmann::json::parse(rest->body)["tags"], nlohmann::json({"3"}));
  EXPECT_FALSE(rest->Header("link"));
  auto catalog = client.Get(MirrorUrl("/v2/_catalog"));
  ASSERT_TRUE(catalog);
  EXPECT_EQ(nlohmann::json::parse(catalog->body)["repositories"], nlohmann::json({"team/app"}));
  // Errors.
  auto unknown_blob = client.Get(MirrorUrl("/v2/team/app/blobs/" + Digest::Of("nothing").ToString()));
  ASSERT_TRUE(unknown_blob);
  EXPECT_EQ(unknown_blob->status, 404);
  EXPECT_EQ(nlohmann::json::parse(unknown_blob->body)["errors"][0]["code"], "BLOB_UNKNOWN");
  auto unknown_tag = client.Get(MirrorUrl("/v2/team/app/manifests/9"));
  ASSERT_TRUE(unknown_tag);
  EXPECT_EQ(nlohmann::json::parse(unknown_tag->body)["errors"][0]["code"], "MANIFEST_UNKNOWN");
  auto unknown_name = client.Get(MirrorUrl("/v2/no/such/manifests/1"));
  ASSERT_TRUE(unknown_name);
  EXPECT_EQ(nlohmann::json::parse(unknown_name->body)["errors"][0]["code"], "NAME_UNKNOWN");
  auto write = client.Put(MirrorUrl("/v2/team/app/manifests/4"), "{}");
  ASSERT_TRUE(write);
  EXPECT_EQ(write->status, 405);
}

TEST_F(RegistryMirrorCliTest, PullThroughKeepsServingAfterTheUpstreamIsGone) {
  ASSERT_NO_FATAL_FAILURE(StartMirror({"--upstream", registry_->url()}));
  const std::string via_mirror = mirror_host_ + "/team/app:1";
  // Two clients at once: each blob still comes from the upstream once.
  CommandRun first, second;
  std::thread other([&] { second = Strata("c", {"pull", "-q", via_mirror}); });
  first = Strata("b", {"pull", "-q", via_mirror});
  other.join();
  ASSERT_EQ(first.code, 0) << first.output << mirror_->LogTail();
  ASSERT_EQ(second.code, 0) << second.output;
  EXPECT_EQ(first.output, pushed_->manifest_digest.ToString() + "\n");
  for (const Digest& layer : pushed_->layer_digests) {
    EXPECT_EQ(registry_->CountRequests("GET", "/v2/team/app/blobs/" + layer.ToString()), 1) << layer;
  }

  registry_.reset();  // the upstream goes away
  fs::remove_all(Home("c") / "store");
  CommandRun again = Strata("c", {"pull", "-q", via_mirror});
  ASSERT_EQ(again.code, 0) << again.output << mirror_->LogTail();
  EXPECT_EQ(again.output, pushed_->manifest_digest.ToString() + "\n");
  CommandRun cat = Strata("c", {"cat", via_mirror, "/hello.txt"});
  EXPECT_EQ(cat.output, "hello through the mirror\n");
}

}  // namespace
}  // namespace strata::cli
