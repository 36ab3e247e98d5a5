// RegistryFixture in each mode against the real docker-registry: plain, TLS, Basic, token.
#include "tests/support/registry_fixture.h"

#include <signal.h>

#include <cerrno>
#include <filesystem>
#include <thread>

#include <gtest/gtest.h>

#include "tests/support/image_builder.h"

namespace strata::test_support {
namespace {

namespace fs = std::filesystem;

// Starts a fixture or fails the test with the reason (which carries the registry log).
#define START_REGISTRY(var, ...)                                                             \
  Result<std::unique_ptr<RegistryFixture>> var##_result = RegistryFixture::Start(__VA_ARGS__); \
  ASSERT_TRUE(var##_result) << var##_result.error().ToString();                              \
  RegistryFixture& var = **var##_result

bool ProcessExists(pid_t pid) { return ::kill(pid, 0) == 0 || errno != ESRCH; }

// A small image to push (no busybox: keeps these tests fast).
ImageBuilder SmallImage() {
  Result<Layer> layer = LayerBuilder().File("hello.txt", "hello\n").Build(Compression::kGzip);
  EXPECT_TRUE(layer) << layer.error().ToString();
  ImageBuilder image;
  image.AddLayer(std::move(*layer)).Cmd({"/hello.txt"});
  return image;
}

TEST(RegistryFixtureTest, PlainHttp) {
  START_REGISTRY(registry, {});
  EXPECT_EQ(registry.host(), fmt::format("127.0.0.1:{}", registry.port()));
  EXPECT_EQ(registry.url(), "http://" + registry.host());
  EXPECT_TRUE(registry.ca_cert_path().empty());
  EXPECT_EQ(registry.token_server(), nullptr);

  TestHttpClient client = registry.Client();
  Result<HttpResponse> v2 = client.Get(registry.V2Url(""));
  ASSERT_TRUE(v2) << v2.error().ToString();
  EXPECT_EQ(v2->status, 200);
  EXPECT_EQ(v2->Header("Docker-Distribution-API-Version").value_or(""), "registry/2.0");

  Result<HttpResponse> missing = client.Get(registry.V2Url("no/such/manifests/latest"));
  ASSERT_TRUE(missing) << missing.error().ToString();
  EXPECT_EQ(missing->status, 404);
  // The access log trails the responses by a moment.
  for (int i = 0; i < 100 && registry.CountRequests("GET", "/v2/no/such/") == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(registry.CountRequests("GET", "/v2/no/such/manifests/latest"), 1);
  std::vector<RegistryRequest> requests = registry.Requests();
  ASSERT_FALSE(requests.empty());
  EXPECT_EQ(requests.back().status, 404);
}

TEST(RegistryFixtureTest, TlsWithGeneratedCa) {
  START_REGISTRY(registry, {.tls = true});
  EXPECT_TRUE(registry.url().starts_with("https://127.0.0.1:"));
  ASSERT_TRUE(fs::exists(registry.ca_cert_path()));

  TestHttpClient client = registry.Client();
  Result<HttpResponse> v2 = client.Get(registry.V2Url(""));
  ASSERT_TRUE(v2) << v2.error().ToString();
  EXPECT_EQ(v2->status, 200);
  // The certificate also names localhost.
  Result<HttpResponse> by_name = client.Get(fmt::format("https://localhost:{}/v2/", registry.port()));
  ASSERT_TRUE(by_name) << by_name.error().ToString();
  EXPECT_EQ(by_name->status, 200);

  // Without the CA the handshake must fail: the certificate is not from a public CA.
  TestHttpClient untrusting(TestHttpClientOptions{.ca_file = "/etc/ssl/certs/ca-certificates.crt"});
  EXPECT_FALSE(untrusting.Get(registry.V2Url("")));
}

TEST(RegistryFixtureTest, BasicAuth) {
  START_REGISTRY(registry, {.auth = RegistryAuth::kBasic});

  TestHttpClient anonymous = registry.AnonymousClient();
  Result<HttpResponse> denied = anonymous.Get(registry.V2Url(""));
  ASSERT_TRUE(denied) << denied.error().ToString();
  EXPECT_EQ(denied->status, 401);
  std::optional<AuthChallenge> challenge = ParseAuthChallenge(denied->Header("www-authenticate").value_or(""));
  ASSERT_TRUE(challenge);
  EXPECT_EQ(challenge->scheme, "basic");

  TestHttpClient client = registry.Client();
  Result<HttpResponse> v2 = client.Get(registry.V2Url(""));
  ASSERT_TRUE(v2) << v2.error().ToString();
  EXPECT_EQ(v2->status, 200);

  TestHttpClient wrong(TestHttpClientOptions{.username = "strata", .password = "wrong"});
  Result<HttpResponse> rejected = wrong.Get(registry.V2Url(""));
  ASSERT_TRUE(rejected) << rejected.error().ToString();
  EXPECT_EQ(rejected->status, 401);

  Result<PushedImage> pushed = SmallImage().PushTo(registry, "basic/image", "v1");
  ASSERT_TRUE(pushed) << pushed.error().ToString();
}

TEST(RegistryFixtureTest, TokenAuth) {
  START_REGISTRY(registry, {.tls = true, .auth = RegistryAuth::kToken});
  TokenServer* tokens = registry.token_server();
  ASSERT_NE(tokens, nullptr);

  // Without a token: 401 with a Bearer challenge naming our realm and service.
  TestHttpClient raw(registry.AnonymousClientOptions());
  Result<HttpResponse> denied = raw.SendOnce({.url = registry.V2Url("")});
  ASSERT_TRUE(denied) << denied.error().ToString();
  EXPECT_EQ(denied->status, 401);
  std::optional<AuthChallenge> challenge = ParseAuthChallenge(denied->Header("www-authenticate").value_or(""));
  ASSERT_TRUE(challenge);
  EXPECT_EQ(challenge->scheme, "bearer");
  EXPECT_EQ(challenge->params["realm"], tokens->realm());
  EXPECT_EQ(challenge->params["service"], tokens->options().service);

  // With a token (fetched with the fixture's credentials): 200.
  TestHttpClient client = registry.Client();
  Result<HttpResponse> v2 = client.Get(registry.V2Url(""));
  ASSERT_TRUE(v2) << v2.error().ToString();
  EXPECT_EQ(v2->status, 200) << v2->body << "\n" << registry.LogTail();
  EXPECT_EQ(registry.token_requests(), 1);
  ASSERT_EQ(tokens->requests().size(), 1u);
  EXPECT_EQ(tokens->requests()[0].user, registry.options().username);

  // Push and pull through bearer challenges with repository scopes.
  Result<PushedImage> pushed = SmallImage().PushTo(registry, "token/image", "v1");
  ASSERT_TRUE(pushed) << pushed.error().ToString() << "\n" << registry.LogTail();
  Result<HttpResponse> manifest = FetchManifest(client, registry.url(), "token/image", "v1");
  ASSERT_TRUE(manifest) << manifest.error().ToString();
  EXPECT_EQ(manifest->status, 200);
  bool saw_push_scope = false;
  for (const TokenRequestRecord& record : tokens->requests()) {
    for (const std::string& scope : record.scopes) saw_push_scope |= scope == "repository:token/image:pull,push";
  }
  EXPECT_TRUE(saw_push_scope);
}

TEST(RegistryFixtureTest, TokenAuthRejectsBadTokens) {
  START_REGISTRY(registry, {.auth = RegistryAuth::kToken});
  TokenServer& tokens = *registry.token_server();
  TestHttpClient raw(registry.AnonymousClientOptions());
  auto status_with = [&](const std::string& token) {
    Result<HttpResponse> response =
        raw.SendOnce({.url = registry.V2Url(""), .headers = {{"Authorization", "Bearer " + token}}});
    return response ? response->status : -1;
  };
  std::string service = tokens.options().service;
  EXPECT_EQ(status_with(*tokens.IssueToken("strata", {}, std::chrono::seconds(60), service)), 200);
  // Expired beyond distribution's leeway, wrong audience, tampered signature.
  EXPECT_EQ(status_with(*tokens.IssueToken("strata", {}, std::chrono::seconds(-600), service)), 401);
  EXPECT_EQ(status_with(*tokens.IssueToken("strata", {}, std::chrono::seconds(60), "another-service")), 401);
  std::string tampered = *tokens.IssueToken("strata", {}, std::chrono::seconds(60), service);
  tampered[tampered.size() - 5] = tampered[tampered.size() - 5] == 'A' ? 'B' : 'A';
  EXPECT_EQ(status_with(tampered), 401);
}

TEST(RegistryFixtureTest, TokenHeaderMayNameTheKeyByKidAlone) {
  // distribution 2.8 looks the key up among the rootcertbundle's keys by libtrust key id
  // when the JWT header has no x5c.
  RegistryOptions options{.auth = RegistryAuth::kToken};
  options.token.header_x5c = false;
  START_REGISTRY(registry, options);
  Result<HttpResponse> v2 = registry.Client().Get(registry.V2Url(""));
  ASSERT_TRUE(v2) << v2.error().ToString();
  EXPECT_EQ(v2->status, 200) << registry.LogTail();
}

TEST(RegistryFixtureTest, TokenScopeDenial) {
  RegistryOptions options{.auth = RegistryAuth::kToken};
  options.token.users = {{"reader", "reader-password"}};
  options.token.allowed_actions = {{"reader", {"pull"}}};
  options.token.require_credentials = true;
  START_REGISTRY(registry, options);

  // The fixture's own user may push.
  Result<PushedImage> pushed = SmallImage().PushTo(registry, "team/app", "v1");
  ASSERT_TRUE(pushed) << pushed.error().ToString() << "\n" << registry.LogTail();

  TestHttpClient reader(TestHttpClientOptions{.username = "reader", .password = "reader-password"});
  Result<HttpResponse> pulled = FetchManifest(reader, registry.url(), "team/app", "v1");
  ASSERT_TRUE(pulled) << pulled.error().ToString();
  EXPECT_EQ(pulled->status, 200);

  Result<HttpResponse> upload = reader.Post(registry.V2Url("team/app/blobs/uploads/"));
  ASSERT_TRUE(upload) << upload.error().ToString();
  EXPECT_TRUE(upload->status == 401 || upload->status == 403) << upload->status;
  std::optional<AuthChallenge> challenge = ParseAuthChallenge(upload->Header("www-authenticate").value_or(""));
  ASSERT_TRUE(challenge);
  EXPECT_EQ(challenge->params["error"], "insufficient_scope");

  Result<BuiltImage> image = SmallImage().Build();
  ASSERT_TRUE(image);
  EXPECT_FALSE(PushImage(reader, registry.url(), "team/app", "v2", *image));

  // No or wrong credentials: the token server itself refuses.
  TestHttpClient anonymous = registry.AnonymousClient();
  EXPECT_FALSE(anonymous.Get(registry.V2Url("")));
  TestHttpClient wrong(TestHttpClientOptions{.username = "reader", .password = "nope"});
  EXPECT_FALSE(wrong.Get(registry.V2Url("")));
}

TEST(RegistryFixtureTest, ExtraConfigAndEnvironment) {
  RegistryOptions options;
  options.extra_config_yaml =
      "validation:\n"
      "  manifests:\n"
      "    urls:\n"
      "      allow:\n"
      "        - ^http://127\\.0\\.0\\.1\n";
  options.env = {{"REGISTRY_STORAGE_DELETE_ENABLED", "false"}};
  START_REGISTRY(registry, options);

  Result<PushedImage> pushed = SmallImage().PushTo(registry, "config/image", "v1");
  ASSERT_TRUE(pushed) << pushed.error().ToString();
  TestHttpClient client = registry.Client();
  Result<HttpResponse> deleted =
      client.Delete(registry.V2Url("config/image/manifests/" + pushed->manifest_digest.ToString()));
  ASSERT_TRUE(deleted) << deleted.error().ToString();
  EXPECT_EQ(deleted->status, 405) << "REGISTRY_STORAGE_DELETE_ENABLED=false should disable deletes";
}

TEST(RegistryFixtureTest, StartFailureReportsTheLog) {
  RegistryOptions options;
  options.extra_config_yaml = "notifications: [this is: not valid yaml\n";
  options.start_timeout = std::chrono::seconds(10);
  Result<std::unique_ptr<RegistryFixture>> registry = RegistryFixture::Start(options);
  ASSERT_FALSE(registry);
  EXPECT_EQ(registry.error().code(), ErrorCode::kUnavailable);
  EXPECT_NE(registry.error().message().find("exited"), std::string::npos) << registry.error().message();
  EXPECT_NE(registry.error().message().find("registry.log"), std::string::npos) << registry.error().message();
}

TEST(RegistryFixtureTest, RestartKeepsContent) {
  START_REGISTRY(registry, {});
  Result<PushedImage> pushed = SmallImage().PushTo(registry, "restart/image", "v1");
  ASSERT_TRUE(pushed) << pushed.error().ToString();
  pid_t before = registry.pid();
  ASSERT_TRUE(registry.Restart()) << registry.LogTail();
  EXPECT_NE(registry.pid(), before);
  EXPECT_FALSE(ProcessExists(before));
  TestHttpClient client = registry.Client();
  Result<HttpResponse> manifest = FetchManifest(client, registry.url(), "restart/image", "v1");
  ASSERT_TRUE(manifest) << manifest.error().ToString();
  EXPECT_EQ(manifest->status, 200);
}

TEST(RegistryFixtureTest, TeardownStopsEverything) {
  pid_t pid;
  fs::path dir;
  std::string realm;
  {
    START_REGISTRY(registry, {.auth = RegistryAuth::kToken});
    pid = registry.pid();
    dir = registry.dir();
    realm = registry.token_server()->realm();
    EXPECT_TRUE(ProcessExists(pid));
  }
  EXPECT_FALSE(ProcessExists(pid));
  EXPECT_FALSE(fs::exists(dir));
  TestHttpClient client(TestHttpClientOptions{.timeout_seconds = 5});
  EXPECT_FALSE(client.Get(realm)) << "token server still answering after teardown";
}

TEST(RegistryFixtureTest, SeveralRegistriesAtOnce) {
  START_REGISTRY(first, {});
  START_REGISTRY(second, {.auth = RegistryAuth::kBasic});
  EXPECT_NE(first.port(), second.port());
  EXPECT_EQ(first.Client().Get(first.V2Url(""))->status, 200);
  EXPECT_EQ(second.Client().Get(second.V2Url(""))->status, 200);
}

}  // namespace
}  // namespace strata::test_support
