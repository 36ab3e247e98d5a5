// hosts.toml: parsing (mirrors, capabilities, server, override_path, _default, errors with
// line numbers), and fallback through mirrors that are down, empty or lying to the real
// upstream docker-registry.
#include "registry/hosts.h"

#include <atomic>
#include <chrono>
#include <filesystem>

#include <gtest/gtest.h>

#include "base/file.h"
#include "registry/resolver.h"
#include "tests/registry/registry_client_test_base.h"
#include "tests/support/assertions.h"
#include "tests/support/image_builder.h"
#include "tests/support/loopback_server.h"
#include "tests/support/registry_fixture.h"

namespace strata::registry {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr auto Ref = &RegistryClientTest::Ref;

class HostsConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = TempDir::Create("strata-hosts");
    ASSERT_TRUE(dir) << dir.error().ToString();
    dir_ = std::make_unique<TempDir>(std::move(*dir));
  }

  void WriteHosts(const std::string& registry, const std::string& toml) {
    fs::create_directories(dir_->path() / registry);
    ASSERT_OK(AtomicWriteFile(dir_->path() / registry / "hosts.toml", toml));
  }

  Result<std::vector<RegistryHost>> HostsFor(const std::string& reference) const {
    return HostsConfig({.config_dir = dir_->path()}).HostsFor(Ref(reference));
  }

  // The error for `toml` as docker.io's hosts.toml; expects InvalidArgument.
  std::string ErrorFor(const std::string& toml) {
    WriteHosts("docker.io", toml);
    auto hosts = HostsFor("alpine");
    EXPECT_FALSE(hosts) << toml;
    if (hosts) return "";
    EXPECT_EQ(hosts.error().code(), ErrorCode::kInvalidArgument) << hosts.error().ToString();
    return hosts.error().message();
  }

  std::unique_ptr<TempDir> dir_;
};

TEST_F(HostsConfigTest, NoFileIsTheUpstreamAlone) {
  ASSERT_OK_AND_ASSIGN(auto hosts, HostsFor("alpine"));
  ASSERT_EQ(hosts.size(), 1u);
  EXPECT_EQ(hosts[0], (RegistryHost{.scheme = "https", .host = "registry-1.docker.io"}));
  ASSERT_OK_AND_ASSIGN(auto local, HostsFor("127.0.0.1:5000/team/app:1"));
  ASSERT_EQ(local.size(), 1u);
  EXPECT_EQ(local[0].ApiUrl(), "http://127.0.0.1:5000/v2/");
  EXPECT_FALSE(local[0].mirror);
}

TEST_F(HostsConfigTest, MirrorsInFileOrderThenUpstream) {
  WriteHosts("docker.io", R"(# Docker Hub through two mirrors
[host."https://mirror-b.example:5000"]
  capabilities = ["pull", "resolve"]   # no push
  skip_verify = true

[host.'http://mirror-a.example']
  capabilities = [
    "pull",   # blobs only
  ]
[host."https://mirror-b.example:5000".header]
  x-custom = ["a", "b"]
)");
  ASSERT_OK_AND_ASSIGN(auto hosts, HostsFor("alpine:3.19"));
  ASSERT_EQ(hosts.size(), 3u);
  EXPECT_EQ(hosts[0], (RegistryHost{.scheme = "https",
                                    .host = "mirror-b.example:5000",
                                    .api_root = "/v2",
                                    .capabilities = kCapabilityPull | kCapabilityResolve,
                                    .skip_verify = true,
                                    .mirror = true}));
  EXPECT_EQ(hosts[1], (RegistryHost{.scheme = "http",
                                    .host = "mirror-a.example",
                                    .api_root = "/v2",
                                    .capabilities = kCapabilityPull,
                                    .mirror = true}));
  EXPECT_EQ(hosts[2], (RegistryHost{.scheme = "https", .host = "registry-1.docker.io"}));
  EXPECT_EQ(hosts[1].RepositoryUrl("library/alpine"), "http://mirror-a.example/v2/library/alpine/");

  // Capability filters: resolve skips the pull-only mirror.
  auto resolvers = HostsWith(hosts, kCapabilityResolve);
  ASSERT_EQ(resolvers.size(), 2u);
  EXPECT_EQ(resolvers[0].host, "mirror-b.example:5000");
  EXPECT_EQ(resolvers[1].host, "registry-1.docker.io");
  auto pushers = HostsWith(hosts, kCapabilityPush);
  ASSERT_EQ(pushers.size(), 1u);
  EXPECT_EQ(pushers[0].host, "registry-1.docker.io");
}

TEST_F(HostsConfigTest, ServerReplacesTheUpstream) {
  WriteHosts("registry.example", R"(server = "https://registry-mirror.example:8443"
capabilities = ["pull", "resolve"]
[host."https://cache.example/v2/proxy"]
  override_path = true
[host."https://prefixed.example/registry/"]
[host."https://plain.example/"]
)");
  ASSERT_OK_AND_ASSIGN(auto hosts, HostsFor("registry.example/team/app:1"));
  ASSERT_EQ(hosts.size(), 4u);
  EXPECT_EQ(hosts[0].ApiUrl(), "https://cache.example/v2/proxy/");
  EXPECT_EQ(hosts[0].RepositoryUrl("team/app"), "https://cache.example/v2/proxy/team/app/");
  EXPECT_EQ(hosts[1].api_root, "/registry/v2");  // containerd appends /v2 without override_path
  EXPECT_EQ(hosts[2].api_root, "/v2");
  EXPECT_TRUE(hosts[2].mirror);
  EXPECT_EQ(hosts[3], (RegistryHost{.scheme = "https",
                                    .host = "registry-mirror.example:8443",
                                    .capabilities = kCapabilityPull | kCapabilityResolve}));

  // Other registries are unaffected.
  ASSERT_OK_AND_ASSIGN(auto other, HostsFor("other.example/app:1"));
  ASSERT_EQ(other.size(), 1u);
  EXPECT_EQ(other[0].host, "other.example");
}

TEST_F(HostsConfigTest, DefaultFileAppliesWhenTheRegistryHasNone) {
  WriteHosts("_default", "[host.\"http://127.0.0.1:6000\"]\ncapabilities = ['pull', 'resolve']\n");
  WriteHosts("quay.io", "[host.\"https://quay-mirror.example\"]\n");
  ASSERT_OK_AND_ASSIGN(auto hosts, HostsFor("ghcr.io/team/app:1"));
  ASSERT_EQ(hosts.size(), 2u);
  EXPECT_EQ(hosts[0].ApiUrl(), "http://127.0.0.1:6000/v2/");
  EXPECT_EQ(hosts[1], (RegistryHost{.scheme = "https", .host = "ghcr.io"}));
  ASSERT_OK_AND_ASSIGN(auto quay, HostsFor("quay.io/team/app:1"));
  ASSERT_EQ(quay.size(), 2u);
  EXPECT_EQ(quay[0].host, "quay-mirror.example");
}

TEST_F(HostsConfigTest, PlainHttpOptionAppliesToTheDefaultUpstreamOnly) {
  WriteHosts("registry.example:5000", "[host.\"https://m.example\"]\n");
  HostsConfig config({.config_dir = dir_->path(), .plain_http_hosts = {"registry.example:5000"}});
  ASSERT_OK_AND_ASSIGN(auto hosts, config.HostsFor(Ref("registry.example:5000/app:1")));
  ASSERT_EQ(hosts.size(), 2u);
  EXPECT_EQ(hosts[0].scheme, "https");
  EXPECT_EQ(hosts[1].ApiUrl(), "http://registry.example:5000/v2/");
}

TEST_F(HostsConfigTest, StringsEscapesAndComments) {
  WriteHosts("docker.io", "server = \"https://hub\\u002eexample\"  # unicode escape\n"
                          "ca = ['/etc/ca.pem']\n"
                          "client = [[\"/c.cert\", \"/c.key\"]]\r\n"
                          "\n\t# tabbed comment\n"
                          "[host.\"https://m\\u002dq.example\"]\n"
                          "ca = 'C:\\certs\\ca.pem'  # literal string: backslashes stay\n");
  ASSERT_OK_AND_ASSIGN(auto hosts, HostsFor("alpine"));
  ASSERT_EQ(hosts.size(), 2u);
  EXPECT_EQ(hosts[0].host, "m-q.example");
  EXPECT_EQ(hosts[1].host, "hub.example");
}

TEST_F(HostsConfigTest, MalformedFilesNameFileAndLine) {
  const std::string file = (dir_->path() / "docker.io" / "hosts.toml").string();
  struct Case {
    std::string toml;
    std::string line;      // "<file>:<line>:" expected in the message
    std::string mentions;  // and this
  };
  const std::vector<Case> cases = {
      {"server = \"https://x\"\nserver 'y'\n", ":2:", "expected '='"},
      {"\n\n[host.\"https://m\"]\ncapabilities = [\"pull\", \"fly\"]\n", ":4:", "fly"},
      {"[host.\"https://m\"]\nskip_verify = \"yes\"\n", ":2:", "skip_verify"},
      {"[host.\"mirror.example\"]\n", ":1:", "no scheme"},
      {"[host.\"ftp://mirror.example\"]\n", ":1:", "http or https"},
      {"server = \"unterminated\n", ":1:", "unterminated string"},
      {"# ok\ncapabilities = [\"pull\",\n\"resolve\"\n", ":2:", "unterminated array"},
      {"[host.\"https://m\"]\ncapabilites = [\"pull\"]\n", ":2:", "unknown key \"capabilites\""},
      {"[[host]]\n", ":1:", "arrays of tables"},
      {"server = 5000\n", ":1:", "unsupported value"},
      {"server = \"https://a\" junk\n", ":1:", "expected the end of the line"},
      {"[host.\"https://m\"]\n[host.\"https://m\"]\n", ":2:", "defined twice"},
      {"x = \"bad \\q escape\"\n", ":1:", "invalid escape"},
      {"[host.\"https://m\"\n", ":1:", "expected ']'"},
      {"[mirrors]\n", ":1:", "unknown key mirrors"},
      {"server = '''multi'''\n", ":1:", "multi-line"},
      {"host.\"https://m\" = true\n", ":1:", "[host."},
      // Each nesting level was a stack frame: a deep enough file overflowed the stack.
      {"ca = " + std::string(100000, '[') + std::string(100000, ']') + "\n", ":1:", "nested too deeply"},
  };
  for (const Case& c : cases) {
    std::string message = ErrorFor(c.toml);
    EXPECT_NE(message.find(file + c.line), std::string::npos) << c.toml << " -> " << message;
    EXPECT_NE(message.find(c.mentions), std::string::npos) << c.toml << " -> " << message;
  }
}

// ---- fallback against real registries ----

// Answers every request with an empty 200 (containerd #4531/#9552: a broken mirror that
// says "OK" and sends nothing). One thread; connections are closed after each answer.
class EmptyOkServer {
 public:
  static std::unique_ptr<EmptyOkServer> Start() {
    std::unique_ptr<EmptyOkServer> server(new EmptyOkServer);
    auto http = test_support::OneShotHttpServer::Start("empty-200 server", [self = server.get()](const std::string&) {
      ++self->requests_;
      return std::string(
          "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    });
    EXPECT_TRUE(http) << http.error().ToString();
    if (!http) return nullptr;
    server->http_ = std::move(*http);
    return server;
  }
  std::string url() const { return fmt::format("http://127.0.0.1:{}", http_->port()); }
  int requests() const { return requests_.load(); }

 private:
  EmptyOkServer() = default;

  std::atomic<int> requests_{0};
  std::unique_ptr<test_support::OneShotHttpServer> http_;  // last: stopped before what its handler uses
};

class HostsFallbackTest : public RegistryClientTest {};

TEST_F(HostsFallbackTest, BrokenMirrorsFallBackToTheUpstream) {
  auto upstream = StartTrustedRegistry();
  ASSERT_TRUE(upstream);
  auto empty_registry = StartTrustedRegistry();
  ASSERT_TRUE(empty_registry);
  auto empty_ok = EmptyOkServer::Start();
  ASSERT_TRUE(empty_ok);
  ASSERT_OK_AND_ASSIGN(int closed_port, test_support::PickFreeLoopbackPort());

  auto layer = test_support::LayerBuilder().File("hello.txt", "hello\n").Build();
  ASSERT_OK(layer);
  test_support::ImageBuilder builder(test_support::ManifestFormat::kOci);
  builder.AddLayer(std::move(*layer));
  ASSERT_OK_AND_ASSIGN(auto pushed, builder.PushTo(*upstream, "team/app", "1"));

  // The mirrors live in this test's certs.d, keyed by the upstream's host:port.
  fs::create_directories(certs_->path() / upstream->host());
  ASSERT_OK(AtomicWriteFile(certs_->path() / upstream->host() / "hosts.toml",
                            fmt::format("[host.\"http://127.0.0.1:{}\"]\n"
                                        "[host.\"{}\"]\n"
                                        "[host.\"{}\"]\n",
                                        closed_port, empty_registry->url(), empty_ok->url())));
  Authorizer authorizer(*client_, Fixed(std::nullopt));
  Resolver resolver(authorizer, ResolverOptions{.hosts = HostsConfig({.config_dir = certs_->path()}),
                                                .retry = {.max_attempts = 3, .initial_backoff = 5ms, .jitter = 0}});
  oci::Reference reference = Ref(upstream->host() + "/team/app:1");
  ASSERT_OK_AND_ASSIGN(auto hosts, resolver.Hosts(reference, kCapabilityResolve));
  ASSERT_EQ(hosts.size(), 4u);
  EXPECT_FALSE(hosts[3].mirror);

  ASSERT_OK_AND_ASSIGN(ResolvedImage image, resolver.ResolvePlatform(reference, oci::Platform::Host()));
  EXPECT_EQ(image.top.descriptor.digest, pushed.manifest_digest);
  EXPECT_EQ(Digest::Of(image.config_bytes), pushed.config_digest);
  ASSERT_OK_AND_ASSIGN(std::string blob, resolver.FetchBlob(reference, image.manifest.layers[0]));
  EXPECT_EQ(Digest::Of(blob), pushed.layer_digests[0]);
  ASSERT_OK_AND_ASSIGN(Resolved by_digest, resolver.Resolve(reference.WithDigest(pushed.manifest_digest)));
  EXPECT_EQ(by_digest.descriptor.digest, pushed.manifest_digest);

  // Every mirror was asked before the upstream answered.
  EXPECT_GE(empty_registry->CountRequests("HEAD", "/v2/team/app/manifests/"), 1);
  EXPECT_GE(empty_registry->CountRequests("GET", "/v2/team/app/blobs/"), 1);
  EXPECT_GE(empty_ok->requests(), 4);  // HEAD + GET manifest, config, layer

  // When the upstream has nothing either, the error is the upstream's, mirrors as context.
  auto missing = resolver.Resolve(Ref(upstream->host() + "/team/app:absent"));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound) << missing.error().ToString();
  EXPECT_NE(missing.error().message().find("mirror 127.0.0.1:" + std::to_string(closed_port)), std::string::npos)
      << missing.error().message();
}

}  // namespace
}  // namespace strata::registry
