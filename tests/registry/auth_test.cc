// Authorizer against the real docker-registry: anonymous, htpasswd Basic over TLS, and
// token auth with the fixture's TokenServer (caching, expiry, insufficient scope, refresh
// tokens). ParseChallenges as a table.
#include "registry/auth.h"

#include <chrono>
#include <filesystem>
#include <thread>

#include <gtest/gtest.h>

#include "base/file.h"
#include "tests/registry/registry_client_test_base.h"
#include "tests/support/assertions.h"
#include "tests/support/image_builder.h"
#include "tests/support/registry_fixture.h"

namespace strata::registry {
namespace {

namespace fs = std::filesystem;
using test_support::RegistryAuth;
using test_support::RegistryFixture;
using test_support::RegistryOptions;

// ---- ParseChallenges ----

struct ChallengeCase {
  std::string name;
  std::vector<std::string_view> headers;
  std::vector<Challenge> expected;
};

TEST(ParseChallengesTest, Table) {
  const std::vector<ChallengeCase> cases = {
      {"basic", {R"(Basic realm="Registry Realm")"}, {{"basic", {{"realm", "Registry Realm"}}}}},
      {"bearer full",
       {R"(Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push")"},
       {{"bearer",
         {{"realm", "https://auth.example/token"},
          {"service", "registry.example"},
          {"scope", "repository:a/b:pull,push"}}}}},
      {"case-insensitive scheme and names",
       {R"(BEARER Realm="r", SERVICE="s")"},
       {{"bearer", {{"realm", "r"}, {"service", "s"}}}}},
      {"escaped quotes and backslashes",
       {R"(Basic realm="say \"hi\" \\ there")"},
       {{"basic", {{"realm", R"(say "hi" \ there)"}}}}},
      {"two challenges in one value, comma in quotes",
       {R"(Basic realm="a, b", Bearer realm="https://t/x",scope="repository:x:pull,push")"},
       {{"basic", {{"realm", "a, b"}}}, {"bearer", {{"realm", "https://t/x"}, {"scope", "repository:x:pull,push"}}}}},
      {"two header values", {"Basic realm=x", "Bearer realm=y"}, {{"basic", {{"realm", "x"}}}, {"bearer", {{"realm", "y"}}}}},
      {"unquoted values and spaces around '='",
       {"Bearer realm = https://t/token , service=svc,error=insufficient_scope"},
       {{"bearer", {{"realm", "https://t/token"}, {"service", "svc"}, {"error", "insufficient_scope"}}}}},
      {"scheme without params, then another", {"Negotiate, Basic realm=r"}, {{"negotiate", {}}, {"basic", {{"realm", "r"}}}}},
      {"token68", {"Negotiate abc/+def=="}, {{"negotiate", {}, "abc/+def=="}}},
      {"empty and comma-only values", {"", " , ,"}, {}},
      {"scope with a port and spaces",
       {R"(Bearer realm="r",scope="repository:host:5000/a:pull repository:b:push",error="insufficient_scope")"},
       {{"bearer",
         {{"realm", "r"}, {"scope", "repository:host:5000/a:pull repository:b:push"}, {"error", "insufficient_scope"}}}}},
      {"unterminated quote keeps the rest", {R"(Basic realm="abc)"}, {{"basic", {{"realm", "abc"}}}}},
      {"empty quoted value", {R"(Bearer realm="",service="s")"}, {{"bearer", {{"realm", ""}, {"service", "s"}}}}},
  };
  for (const ChallengeCase& c : cases) {
    EXPECT_EQ(ParseChallenges(c.headers), c.expected) << c.name;
  }
}

// ---- Authorizer against a real registry ----

class AuthorizerTest : public RegistryClientTest {
 protected:
  std::unique_ptr<RegistryFixture> StartRegistry(RegistryOptions options = {}) {
    return StartTrustedRegistry(std::move(options));
  }
};

// A pushed one-layer image; returns the manifest's URL path under /v2/.
std::string PushSmallImage(RegistryFixture& registry, std::string_view repository) {
  auto layer = test_support::LayerBuilder().File("hello.txt", "hello\n").Build();
  EXPECT_TRUE(layer) << layer.error().ToString();
  if (!layer) return "";
  test_support::ImageBuilder builder;
  builder.AddLayer(std::move(*layer));
  auto pushed = builder.PushTo(registry, repository, "v1");
  EXPECT_TRUE(pushed) << pushed.error().ToString();
  return fmt::format("{}/manifests/v1", repository);
}

HttpRequest ManifestRequest(const RegistryFixture& registry, std::string_view path) {
  return {.url = registry.V2Url(path), .headers = {{"Accept", test_support::ManifestAcceptHeader()}}};
}

TEST_F(AuthorizerTest, AnonymousPlainHttp) {
  auto registry = StartRegistry();
  ASSERT_TRUE(registry);
  Authorizer authorizer(*client_, Fixed(std::nullopt));
  ASSERT_OK_AND_ASSIGN(HttpResponse response, authorizer.Send({.url = registry->V2Url("")}, {}));
  EXPECT_EQ(response.status, 200);
  ASSERT_OK_AND_ASSIGN(std::string header, authorizer.AuthorizationFor(registry->host(), {}));
  EXPECT_EQ(header, "");
}

TEST_F(AuthorizerTest, BasicOverTls) {
  auto registry = StartRegistry({.tls = true, .auth = RegistryAuth::kBasic, .username = "alice", .password = "s3cret"});
  ASSERT_TRUE(registry);

  Authorizer good(*client_, Fixed(Credentials{.username = "alice", .password = "s3cret"}));
  ASSERT_OK_AND_ASSIGN(HttpResponse response, good.Send({.url = registry->V2Url("")}, {}));
  EXPECT_EQ(response.status, 200);
  // Once challenged, later requests carry Basic up front: no second 401.
  ASSERT_OK_AND_ASSIGN(HttpResponse again, good.Send({.url = registry->V2Url("")}, {}));
  EXPECT_EQ(again.status, 200);
  ASSERT_OK_AND_ASSIGN(std::string header, good.AuthorizationFor(registry->host(), {}));
  EXPECT_TRUE(header.starts_with("Basic ")) << header;

  Authorizer wrong(*client_, Fixed(Credentials{.username = "alice", .password = "wrong"}));
  Result<HttpResponse> rejected = wrong.Send({.url = registry->V2Url("")}, {});
  ASSERT_FALSE(rejected);
  EXPECT_EQ(rejected.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(rejected.error().message().find("unauthorized"), std::string::npos) << rejected.error().message();
  EXPECT_NE(rejected.error().message().find(registry->host()), std::string::npos) << rejected.error().message();

  Authorizer none(*client_, Fixed(std::nullopt));
  Result<HttpResponse> anonymous = none.Send({.url = registry->V2Url("")}, {});
  ASSERT_FALSE(anonymous);
  EXPECT_NE(anonymous.error().message().find("unauthorized"), std::string::npos) << anonymous.error().message();
  EXPECT_NE(anonymous.error().message().find(registry->host()), std::string::npos) << anonymous.error().message();
}

TEST_F(AuthorizerTest, BearerPullIsCachedAcrossRequests) {
  auto registry = StartRegistry({.auth = RegistryAuth::kToken});
  ASSERT_TRUE(registry);
  std::string manifest = PushSmallImage(*registry, "team/app");
  ASSERT_FALSE(manifest.empty());
  const int before = registry->token_requests();

  Authorizer authorizer(*client_, Fixed(Credentials{.username = "strata", .password = "strata-password"}));
  const std::vector<std::string> scopes = {"repository:team/app:pull"};
  for (int i = 0; i < 5; ++i) {
    ASSERT_OK_AND_ASSIGN(HttpResponse response, authorizer.Send(ManifestRequest(*registry, manifest), scopes));
    EXPECT_EQ(response.status, 200) << response.body;
  }
  EXPECT_EQ(registry->token_requests() - before, 1);
  ASSERT_OK_AND_ASSIGN(std::string header, authorizer.AuthorizationFor(registry->host(), scopes));
  EXPECT_TRUE(header.starts_with("Bearer ")) << header;
  EXPECT_EQ(registry->token_requests() - before, 1);

  std::vector<test_support::TokenRequestRecord> records = registry->token_server()->requests();
  ASSERT_FALSE(records.empty());
  EXPECT_EQ(records.back().user, "strata");
  EXPECT_EQ(records.back().scopes, scopes);
}

TEST_F(AuthorizerTest, ExpiredTokenIsReplacedBeforeUse) {
  test_support::TokenServerOptions token;
  token.lifetime = std::chrono::seconds(2);
  auto registry = StartRegistry({.auth = RegistryAuth::kToken, .token = token});
  ASSERT_TRUE(registry);
  std::string manifest = PushSmallImage(*registry, "team/app");
  ASSERT_FALSE(manifest.empty());
  const int before = registry->token_requests();

  Authorizer authorizer(*client_, Fixed(Credentials{.username = "strata", .password = "strata-password"}));
  const std::vector<std::string> scopes = {"repository:team/app:pull"};
  ASSERT_OK_AND_ASSIGN(HttpResponse first, authorizer.Send(ManifestRequest(*registry, manifest), scopes));
  EXPECT_EQ(first.status, 200);
  ASSERT_OK_AND_ASSIGN(std::string old_header, authorizer.AuthorizationFor(registry->host(), scopes));
  EXPECT_EQ(registry->token_requests() - before, 1);

  std::this_thread::sleep_for(std::chrono::milliseconds(2200));
  ASSERT_OK_AND_ASSIGN(HttpResponse second, authorizer.Send(ManifestRequest(*registry, manifest), scopes));
  EXPECT_EQ(second.status, 200);
  EXPECT_EQ(registry->token_requests() - before, 2);
  ASSERT_OK_AND_ASSIGN(std::string new_header, authorizer.AuthorizationFor(registry->host(), scopes));
  EXPECT_NE(new_header, old_header);

  // Only the very first (anonymous) manifest request was answered 401: the expired token
  // was replaced before it could be sent.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  int unauthorized = 0;
  for (const test_support::RegistryRequest& request : registry->Requests()) {
    if (request.method == "GET" && request.uri.find("/team/app/manifests/") != std::string::npos &&
        request.status == 401) {
      ++unauthorized;
    }
  }
  EXPECT_EQ(unauthorized, 1);
}

TEST_F(AuthorizerTest, InsufficientScopeIsAnError) {
  test_support::TokenServerOptions token;
  token.users["reader"] = "reader-password";
  token.allowed_actions["reader"] = {"pull"};
  auto registry = StartRegistry({.auth = RegistryAuth::kToken, .token = token});
  ASSERT_TRUE(registry);
  std::string manifest = PushSmallImage(*registry, "team/app");
  ASSERT_FALSE(manifest.empty());

  const std::vector<std::string> push_scopes = {"repository:team/app:pull,push"};
  Authorizer reader(*client_, Fixed(Credentials{.username = "reader", .password = "reader-password"}));
  // The reader may pull...
  ASSERT_OK_AND_ASSIGN(HttpResponse pulled,
                       reader.Send(ManifestRequest(*registry, manifest), {"repository:team/app:pull"}));
  EXPECT_EQ(pulled.status, 200);
  // ...but not start an upload.
  Result<HttpResponse> upload =
      reader.Send({.method = "POST", .url = registry->V2Url("team/app/blobs/uploads/")}, push_scopes);
  ASSERT_FALSE(upload);
  EXPECT_EQ(upload.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(upload.error().message().find("unauthorized"), std::string::npos) << upload.error().message();
  EXPECT_NE(upload.error().message().find(registry->host()), std::string::npos) << upload.error().message();

  Authorizer writer(*client_, Fixed(Credentials{.username = "strata", .password = "strata-password"}));
  ASSERT_OK_AND_ASSIGN(HttpResponse started,
                       writer.Send({.method = "POST", .url = registry->V2Url("team/app/blobs/uploads/")}, push_scopes));
  EXPECT_EQ(started.status, 202) << started.body;
}

TEST_F(AuthorizerTest, InsufficientScopeFetchesTheChallengedScope) {
  auto registry = StartRegistry({.auth = RegistryAuth::kToken});
  ASSERT_TRUE(registry);
  std::string manifest = PushSmallImage(*registry, "team/app");
  ASSERT_FALSE(manifest.empty());
  Authorizer authorizer(*client_, Fixed(Credentials{.username = "strata", .password = "strata-password"}));
  // Learn the challenge, then ask with a scope that does not cover the request: the token
  // sent up front is insufficient, the registry names the scope it wants, one retry wins.
  ASSERT_OK_AND_ASSIGN(HttpResponse ping, authorizer.Send({.url = registry->V2Url("")}, {}));
  EXPECT_EQ(ping.status, 200);
  ASSERT_OK_AND_ASSIGN(HttpResponse response,
                       authorizer.Send(ManifestRequest(*registry, manifest), {"repository:team/other:pull"}));
  EXPECT_EQ(response.status, 200) << response.body;
  std::vector<test_support::TokenRequestRecord> records = registry->token_server()->requests();
  ASSERT_GE(records.size(), 2u);
  EXPECT_EQ(records.back().scopes,
            (std::vector<std::string>{"repository:team/app:pull", "repository:team/other:pull"}));
}

TEST_F(AuthorizerTest, WrongTokenCredentialsNameHost) {
  auto registry = StartRegistry({.auth = RegistryAuth::kToken});
  ASSERT_TRUE(registry);
  Authorizer authorizer(*client_, Fixed(Credentials{.username = "strata", .password = "nope"}));
  Result<HttpResponse> response = authorizer.Send({.url = registry->V2Url("")}, {});
  ASSERT_FALSE(response);
  const std::string& message = response.error().message();
  EXPECT_NE(message.find("unauthorized"), std::string::npos) << message;
  EXPECT_NE(message.find(registry->host()), std::string::npos) << message;
  EXPECT_NE(message.find(registry->token_server()->realm()), std::string::npos) << message;
  EXPECT_NE(message.find("401"), std::string::npos) << message;
}

TEST_F(AuthorizerTest, RefreshTokenFallsBackToGet) {
  auto registry = StartRegistry({.auth = RegistryAuth::kToken});
  ASSERT_TRUE(registry);
  std::string manifest = PushSmallImage(*registry, "team/app");
  ASSERT_FALSE(manifest.empty());
  // The test token service has no OAuth2 POST endpoint (405): the authorizer falls back to
  // GET, anonymously here, which this token server grants.
  Authorizer authorizer(*client_, Fixed(Credentials{.identity_token = "refresh-me"}));
  ASSERT_OK_AND_ASSIGN(HttpResponse response,
                       authorizer.Send(ManifestRequest(*registry, manifest), {"repository:team/app:pull"}));
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(registry->token_server()->requests().back().user, "");
}

TEST_F(AuthorizerTest, StreamedBodyWithoutRewindIsNotReplayed) {
  auto registry = StartRegistry({.auth = RegistryAuth::kToken});
  ASSERT_TRUE(registry);
  Authorizer authorizer(*client_, Fixed(Credentials{.username = "strata", .password = "strata-password"}));
  std::string data = "payload";
  size_t offset = 0;
  HttpRequest request{.method = "POST", .url = registry->V2Url("team/app/blobs/uploads/")};
  request.body_size = data.size();
  request.body_reader = [&](std::span<char> buffer) -> Result<size_t> {
    size_t n = std::min(buffer.size(), data.size() - offset);
    std::copy_n(data.data() + offset, n, buffer.data());
    offset += n;
    return n;
  };
  Result<HttpResponse> response = authorizer.Send(request, {"repository:team/app:pull,push"});
  ASSERT_FALSE(response);
  EXPECT_NE(response.error().message().find("unauthorized"), std::string::npos) << response.error().message();

  // With a rewind it is replayed (and the challenge is now known, so no 401 at all).
  request.body_rewind = [&]() -> Status {
    offset = 0;
    return {};
  };
  offset = 0;
  ASSERT_OK_AND_ASSIGN(HttpResponse replayed, authorizer.Send(request, {"repository:team/app:pull,push"}));
  EXPECT_EQ(replayed.status, 202) << replayed.body;
}

}  // namespace
}  // namespace strata::registry
