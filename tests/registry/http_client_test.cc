// HttpClient against the real docker-registry (plain and TLS), with FaultProxy for
// redirects, stalls and connection counting.
#include "registry/http_client.h"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <thread>

#include <gtest/gtest.h>

#include "base/file.h"
#include "tests/registry/registry_client_test_base.h"
#include "tests/support/assertions.h"
#include "tests/support/fault_proxy.h"
#include "tests/support/image_builder.h"
#include "tests/support/registry_fixture.h"

namespace strata::registry {
namespace {

namespace fs = std::filesystem;
using test_support::FaultAction;
using test_support::FaultProxy;
using test_support::FaultRule;
using test_support::RegistryFixture;
using test_support::RegistryOptions;

// Tests here make their own clients (NewClient) and decide per test whether certs.d trusts
// a registry's CA, so they start registries untrusted.
class HttpClientTest : public RegistryClientTest {
 protected:
  // A client whose certs.d is an empty temp dir (never the host's /etc/strata).
  std::unique_ptr<HttpClient> NewClient(HttpClientOptions options = {}) {
    options.certs_dir = certs_->path();
    auto client = HttpClient::Create(std::move(options));
    EXPECT_TRUE(client) << client.error().ToString();
    return client ? std::move(*client) : nullptr;
  }

  std::unique_ptr<RegistryFixture> StartRegistry(RegistryOptions options = {}) {
    auto registry = RegistryFixture::Start(std::move(options));
    EXPECT_TRUE(registry) << registry.error().ToString();
    return registry ? std::move(*registry) : nullptr;
  }
};

TEST_F(HttpClientTest, PlainHttpV2) {
  auto registry = StartRegistry();
  ASSERT_TRUE(registry);
  auto client = NewClient();
  ASSERT_OK_AND_ASSIGN(HttpResponse response, client->Send({.url = registry->V2Url("")}));
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.headers.Get("docker-distribution-api-version").value_or(""), "registry/2.0");
  EXPECT_EQ(response.headers.Get("DOCKER-DISTRIBUTION-API-VERSION").value_or(""), "registry/2.0");
  EXPECT_EQ(response.effective_url, registry->V2Url(""));
  EXPECT_EQ(response.redirects, 0);

  ASSERT_OK_AND_ASSIGN(HttpResponse missing, client->Send({.url = registry->V2Url("no/such/manifests/latest")}));
  EXPECT_EQ(missing.status, 404);
  EXPECT_NE(missing.body.find("MANIFEST_UNKNOWN"), std::string::npos) << missing.body;
  // Error documents are truncated, not fatal.
  ASSERT_OK_AND_ASSIGN(HttpResponse truncated,
                       client->Send({.url = registry->V2Url("no/such/manifests/latest"), .max_error_body_bytes = 5}));
  EXPECT_EQ(truncated.status, 404);
  EXPECT_EQ(truncated.body, missing.body.substr(0, 5));

  Result<HttpResponse> injected =
      client->Send({.url = registry->V2Url(""), .headers = {{"X-Evil", "a\r\nAuthorization: x"}}});
  ASSERT_FALSE(injected);
  EXPECT_EQ(injected.error().code(), ErrorCode::kInvalidArgument);
}

TEST_F(HttpClientTest, TlsTrustsCaFromCertsDir) {
  auto registry = StartRegistry({.tls = true});
  ASSERT_TRUE(registry);
  auto client = NewClient();

  Result<HttpResponse> untrusted = client->Send({.url = registry->V2Url("")});
  ASSERT_FALSE(untrusted);
  EXPECT_EQ(untrusted.error().code(), ErrorCode::kUnavailable);
  EXPECT_NE(untrusted.error().message().find(registry->host()), std::string::npos) << untrusted.error().message();
  EXPECT_NE(untrusted.error().message().find("certificate"), std::string::npos) << untrusted.error().message();

  fs::path host_dir = certs_->path() / registry->host();
  fs::create_directories(host_dir);
  fs::copy_file(registry->ca_cert_path(), host_dir / "ca.crt");
  ASSERT_OK_AND_ASSIGN(HttpResponse trusted, client->Send({.url = registry->V2Url("")}));
  EXPECT_EQ(trusted.status, 200);
}

TEST_F(HttpClientTest, TlsInsecureSkipVerifyIsPerHost) {
  auto registry = StartRegistry({.tls = true});
  ASSERT_TRUE(registry);
  auto other = NewClient({.insecure_skip_verify_hosts = {"127.0.0.1:1"}});
  EXPECT_FALSE(other->Send({.url = registry->V2Url("")}));
  auto insecure = NewClient({.insecure_skip_verify_hosts = {registry->host()}});
  ASSERT_OK_AND_ASSIGN(HttpResponse response, insecure->Send({.url = registry->V2Url("")}));
  EXPECT_EQ(response.status, 200);
}

// mTLS: the registry demands a client certificate signed by its client CA; the client
// finds client.cert + client.key in certs.d. Certificates come from the openssl CLI.
// DISABLED: RegistryFixture's readiness probe has no client certificate, so a registry
// with http.tls.clientcas never counts as started. Enable once the fixture can probe with
// one (or takes a client-CA option and does so itself).
TEST_F(HttpClientTest, TlsClientCertificateFromCertsDir) {
  auto pki = TempDir::Create("strata-pki");
  ASSERT_TRUE(pki) << pki.error().ToString();
  const std::string d = pki->path().native();
  ASSERT_TRUE(AtomicWriteFile(pki->path() / "ext.cnf", "extendedKeyUsage=clientAuth\n"));
  std::string script = fmt::format(
      "set -e; cd '{}'; "
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem "
      "-days 2 -subj /CN=strata-client-ca; "
      "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout client.key -out client.csr "
      "-subj /CN=strata-client; "
      "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.cert -days 2 "
      "-extfile ext.cnf",
      d);
  ASSERT_EQ(std::system(fmt::format("sh -c \"{}\" >/dev/null 2>&1", script).c_str()), 0) << script;
  auto registry = StartRegistry({.tls = true,
                                 .client_ca_file = pki->path() / "ca.pem",
                                 .probe_client_cert = pki->path() / "client.cert",
                                 .probe_client_key = pki->path() / "client.key"});
  ASSERT_TRUE(registry);
  fs::path host_dir = certs_->path() / registry->host();
  fs::create_directories(host_dir);
  fs::copy_file(registry->ca_cert_path(), host_dir / "ca.crt");
  auto client = NewClient();

  Result<HttpResponse> refused = client->Send({.url = registry->V2Url("")});
  EXPECT_FALSE(refused) << "status " << refused->status;

  fs::copy_file(pki->path() / "client.cert", host_dir / "client.cert");
  fs::copy_file(pki->path() / "client.key", host_dir / "client.key");
  ASSERT_OK_AND_ASSIGN(HttpResponse accepted, client->Send({.url = registry->V2Url("")}));
  EXPECT_EQ(accepted.status, 200);
}

TEST_F(HttpClientTest, ConnectFailureNamesHost) {
  ASSERT_OK_AND_ASSIGN(int port, test_support::PickFreeLoopbackPort());
  auto client = NewClient();
  Result<HttpResponse> response = client->Send({.url = fmt::format("http://127.0.0.1:{}/v2/", port)});
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code(), ErrorCode::kUnavailable);
  EXPECT_NE(response.error().message().find(fmt::format("127.0.0.1:{}", port)), std::string::npos)
      << response.error().message();
}

TEST_F(HttpClientTest, RedirectToAnotherOriginDropsCredentials) {
  auto registry = StartRegistry();
  ASSERT_TRUE(registry);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<FaultProxy> storage, FaultProxy::Start(registry->url()));
  ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<FaultProxy> front,
      FaultProxy::Start(registry->url(), {{.path_regex = "^/elsewhere$", .action = FaultAction::kRedirect,
                                           .location = storage->url() + "/v2/", .first_n = 0},
                                          {.path_regex = "^/same$", .action = FaultAction::kRedirect,
                                           .location = "/v2/", .first_n = 0}}));
  auto client = NewClient();
  std::vector<RequestHeader> headers = {{"Authorization", "Bearer secret-token"},
                                        {"X-Signed", "also-secret", /*sensitive=*/true},
                                        {"X-Plain", "plain"}};

  ASSERT_OK_AND_ASSIGN(HttpResponse away, client->Send({.url = front->url() + "/elsewhere", .headers = headers}));
  EXPECT_EQ(away.status, 200);
  EXPECT_EQ(away.redirects, 1);
  EXPECT_EQ(away.effective_url, storage->url() + "/v2/");
  std::vector<test_support::ProxiedRequest> at_storage = storage->requests();
  ASSERT_EQ(at_storage.size(), 1u);
  EXPECT_FALSE(at_storage[0].Header("Authorization"));
  EXPECT_FALSE(at_storage[0].Header("X-Signed"));
  EXPECT_EQ(at_storage[0].Header("X-Plain").value_or(""), "plain");
  EXPECT_EQ(front->requests()[0].Header("Authorization").value_or(""), "Bearer secret-token");

  // Same origin: the credentials follow.
  ASSERT_OK_AND_ASSIGN(HttpResponse same, client->Send({.url = front->url() + "/same", .headers = headers}));
  EXPECT_EQ(same.status, 200);
  std::vector<test_support::ProxiedRequest> at_front = front->requests();
  ASSERT_EQ(at_front.size(), 3u);
  EXPECT_EQ(at_front[2].target, "/v2/");
  EXPECT_EQ(at_front[2].Header("Authorization").value_or(""), "Bearer secret-token");
  EXPECT_EQ(at_front[2].Header("X-Signed").value_or(""), "also-secret");
}

TEST_F(HttpClientTest, ResolvesRelativeLocationAndCapsHops) {
  auto registry = StartRegistry();
  ASSERT_TRUE(registry);
  ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<FaultProxy> proxy,
      FaultProxy::Start(registry->url(), {{.path_regex = "^/a/b/start$", .action = FaultAction::kRedirect,
                                           .location = "../../v2/", .redirect_status = 302, .first_n = 0},
                                          {.path_regex = "^/loop$", .action = FaultAction::kRedirect,
                                           .location = "loop", .first_n = 0}}));
  auto client = NewClient();
  ASSERT_OK_AND_ASSIGN(HttpResponse response, client->Send({.url = proxy->url() + "/a/b/start"}));
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.effective_url, proxy->url() + "/v2/");

  Result<HttpResponse> looping = client->Send({.url = proxy->url() + "/loop"});
  ASSERT_FALSE(looping);
  EXPECT_EQ(looping.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(looping.error().message().find("more than 10 redirects"), std::string::npos) << looping.error().message();
  EXPECT_EQ(proxy->matched(1), 11);
}

// A pushed layer big enough to arrive in many chunks.
struct PushedLayer {
  std::string data;
  std::string url;
};

PushedLayer PushLayer(RegistryFixture& registry) {
  std::mt19937 random(42);
  std::string content(512 * 1024, '\0');
  for (char& c : content) c = static_cast<char>(random());
  auto layer = test_support::LayerBuilder().File("random.bin", content).Build(test_support::Compression::kGzip);
  EXPECT_TRUE(layer) << layer.error().ToString();
  test_support::ImageBuilder builder;
  builder.AddLayer(std::move(*layer));
  auto built = builder.Build();
  EXPECT_TRUE(built) << built.error().ToString();
  test_support::TestHttpClient pusher = registry.Client();
  auto pushed = test_support::PushImage(pusher, registry.url(), "test/stream", "v1", *built);
  EXPECT_TRUE(pushed) << pushed.error().ToString();
  return {built->layers[0].data, registry.V2Url("test/stream/blobs/" + built->layers[0].digest.ToString())};
}

TEST_F(HttpClientTest, StreamsRangeTail) {
  auto registry = StartRegistry();
  ASSERT_TRUE(registry);
  PushedLayer layer = PushLayer(*registry);
  ASSERT_GT(layer.data.size(), 100000u);
  auto client = NewClient();

  const uint64_t start = layer.data.size() / 3;
  std::string received;
  int chunks = 0;
  long status_seen = 0;
  ASSERT_OK_AND_ASSIGN(
      HttpResponse response,
      client->Send({.url = layer.url,
                    .range_start = start,
                    .body_sink = [&](std::string_view chunk) -> Status {
                      received.append(chunk);
                      ++chunks;
                      return {};
                    },
                    .on_headers = [&](const HttpResponse& head) -> Status {
                      status_seen = head.status;
                      EXPECT_TRUE(received.empty());
                      return {};
                    }}));
  EXPECT_EQ(response.status, 206);
  EXPECT_EQ(status_seen, 206);
  EXPECT_TRUE(response.body.empty());
  EXPECT_GT(chunks, 1);
  EXPECT_EQ(received.size(), layer.data.size() - start);
  EXPECT_TRUE(received == layer.data.substr(start));

  // A sink error aborts the transfer and comes back unchanged.
  Result<HttpResponse> aborted = client->Send(
      {.url = layer.url, .body_sink = [](std::string_view) -> Status { return Fail(ErrorCode::kCanceled, "stop here"); }});
  ASSERT_FALSE(aborted);
  EXPECT_EQ(aborted.error(), Error(ErrorCode::kCanceled, "stop here"));

  // Collected bodies are capped.
  Result<HttpResponse> capped = client->Send({.url = layer.url, .max_body_bytes = 1000});
  ASSERT_FALSE(capped);
  EXPECT_EQ(capped.error().code(), ErrorCode::kFailedPrecondition);
}

TEST_F(HttpClientTest, StreamsUploadFromReader) {
  auto registry = StartRegistry();
  ASSERT_TRUE(registry);
  auto client = NewClient();
  std::string data(300000, 'x');
  for (size_t i = 0; i < data.size(); i += 7) data[i] = static_cast<char>('a' + i % 26);
  Digest digest = Digest::Of(data);

  ASSERT_OK_AND_ASSIGN(HttpResponse session,
                       client->Send({.method = "POST", .url = registry->V2Url("test/upload/blobs/uploads/")}));
  ASSERT_EQ(session.status, 202) << session.body;
  ASSERT_OK_AND_ASSIGN(std::string location,
                       ResolveUrl(registry->V2Url(""), session.headers.Get("Location").value_or("")));
  location += (location.find('?') == std::string::npos ? "?" : "&") + ("digest=" + digest.ToString());
  size_t offset = 0;
  ASSERT_OK_AND_ASSIGN(HttpResponse put, client->Send({.method = "PUT",
                                                       .url = location,
                                                       .headers = {{"Content-Type", "application/octet-stream"}},
                                                       .body_reader = [&](std::span<char> buffer) -> Result<size_t> {
                                                         size_t n = std::min(buffer.size(), data.size() - offset);
                                                         std::memcpy(buffer.data(), data.data() + offset, n);
                                                         offset += n;
                                                         return n;
                                                       },
                                                       .body_size = data.size()}));
  EXPECT_EQ(put.status, 201) << put.body;
  ASSERT_OK_AND_ASSIGN(HttpResponse head, client->Send({.method = "HEAD",
                                                        .url = registry->V2Url("test/upload/blobs/" + digest.ToString())}));
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.headers.Get("Content-Length").value_or(""), std::to_string(data.size()));
}

TEST_F(HttpClientTest, StallFailsWithinStallTimeout) {
  auto registry = StartRegistry();
  ASSERT_TRUE(registry);
  PushedLayer layer = PushLayer(*registry);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<FaultProxy> proxy,
                       FaultProxy::Start(registry->url(), {{.method = "GET", .path_regex = "/blobs/",
                                                            .action = FaultAction::kStallAfter, .body_bytes = 5000}}));
  auto client = NewClient({.stall_timeout = std::chrono::seconds(2)});
  std::string url = proxy->url() + layer.url.substr(registry->url().size());
  auto started = std::chrono::steady_clock::now();
  Result<HttpResponse> response = client->Send({.url = url});
  auto elapsed = std::chrono::steady_clock::now() - started;
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code(), ErrorCode::kUnavailable);
  EXPECT_EQ(response.error().message(), fmt::format("no data from {} for 2 s while GET {}", proxy->host(), url));
  EXPECT_GE(elapsed, std::chrono::seconds(2));
  EXPECT_LT(elapsed, std::chrono::milliseconds(4500));
  EXPECT_EQ(proxy->BodyBytesForwarded("/v2/test/stream/blobs/"), 5000u);
}

TEST_F(HttpClientTest, ReusesOneConnection) {
  auto registry = StartRegistry();
  ASSERT_TRUE(registry);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<FaultProxy> proxy, FaultProxy::Start(registry->url()));
  auto client = NewClient();
  long new_connections = 0;
  for (int i = 0; i < 20; ++i) {
    ASSERT_OK_AND_ASSIGN(HttpResponse response, client->Send({.url = proxy->url() + "/v2/"}));
    EXPECT_EQ(response.status, 200);
    new_connections += response.new_connections;
  }
  EXPECT_EQ(new_connections, 1);
  EXPECT_EQ(proxy->connections(), 1);
  EXPECT_EQ(proxy->request_count(), 20);

  // Concurrent senders share the pool (and stay correct).
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10; ++i) {
        auto response = client->Send({.url = proxy->url() + "/v2/"});
        if (response && response->status == 200) ++ok;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(ok.load(), 40);
  EXPECT_LE(proxy->connections(), 4);
}

}  // namespace
}  // namespace strata::registry
