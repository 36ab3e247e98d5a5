// FaultProxy against the real docker-registry: each fault, pass-through of Range and
// Location, and the counters later tests rely on.
#include "tests/support/fault_proxy.h"

#include <gtest/gtest.h>

#include "tests/support/image_builder.h"
#include "tests/support/registry_fixture.h"

namespace strata::test_support {
namespace {

class FaultProxyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto registry = RegistryFixture::Start();
    ASSERT_TRUE(registry) << registry.error().ToString();
    registry_ = std::move(*registry);
    std::string data;
    for (int i = 0; data.size() < 100000; ++i) data += fmt::format("line {} of the fault proxy test blob\n", i);
    blob_ = Blob::Of("application/octet-stream", std::move(data));
    TestHttpClient client = registry_->Client();
    Status pushed = PushBlob(client, registry_->url(), "test/faults", blob_);
    ASSERT_TRUE(pushed) << pushed.error().ToString();
  }

  std::unique_ptr<FaultProxy> StartProxy(std::vector<FaultRule> rules) {
    auto proxy = FaultProxy::Start(registry_->url(), std::move(rules));
    EXPECT_TRUE(proxy) << proxy.error().ToString();
    return proxy ? std::move(*proxy) : nullptr;
  }

  std::string BlobPath() const { return "/v2/test/faults/blobs/" + blob_.digest.ToString(); }

  std::unique_ptr<RegistryFixture> registry_;
  Blob blob_ = Blob::Of("application/octet-stream", "");
};

TEST_F(FaultProxyTest, ForwardsRangeAndRewritesLocation) {
  auto proxy = StartProxy({});
  ASSERT_TRUE(proxy);
  TestHttpClient client;
  Result<HttpResponse> tail = client.Get(proxy->url() + BlobPath(), {{"Range", "bytes=1000-"}});
  ASSERT_TRUE(tail) << tail.error().ToString();
  EXPECT_EQ(tail->status, 206);
  EXPECT_EQ(tail->body, blob_.data.substr(1000));
  EXPECT_EQ(proxy->BodyBytesForwarded("/v2/test/faults/blobs/"), blob_.data.size() - 1000);
  EXPECT_EQ(proxy->BodyBytesForwarded("/v2/other/"), 0u);

  Result<HttpResponse> upload = client.Post(proxy->url() + "/v2/test/faults/blobs/uploads/");
  ASSERT_TRUE(upload) << upload.error().ToString();
  EXPECT_EQ(upload->status, 202);
  std::string location = upload->Header("location").value_or("");
  EXPECT_TRUE(location.starts_with(proxy->url() + "/v2/test/faults/blobs/uploads/") || location.starts_with("/v2/"))
      << location;
  EXPECT_EQ(location.find(registry_->host()), std::string::npos) << location;
  EXPECT_EQ(proxy->request_count(), 2);
}

TEST_F(FaultProxyTest, DropsMidBodyOnce) {
  auto proxy = StartProxy({{.method = "GET", .path_regex = "/blobs/", .action = FaultAction::kDropAfter,
                            .body_bytes = 1000}});
  ASSERT_TRUE(proxy);
  TestHttpClient client;
  Result<HttpResponse> dropped = client.Get(proxy->url() + BlobPath());
  EXPECT_FALSE(dropped) << "status " << dropped->status << " body " << dropped->body.size();
  EXPECT_EQ(proxy->BodyBytesForwarded("/v2/test/faults/blobs/"), 1000u);
  Result<HttpResponse> whole = client.Get(proxy->url() + BlobPath());
  ASSERT_TRUE(whole) << whole.error().ToString();
  EXPECT_EQ(whole->body, blob_.data);
  EXPECT_EQ(proxy->matched(0), 2);
  EXPECT_EQ(proxy->fired(0), 1);
  EXPECT_EQ(proxy->BodyBytesForwarded("/v2/test/faults/blobs/"), 1000u + blob_.data.size());
}

TEST_F(FaultProxyTest, TooManyRequestsWithRetryAfter) {
  auto proxy = StartProxy({{.path_regex = "^/v2/$", .action = FaultAction::kTooManyRequests,
                            .retry_after_seconds = 7}});
  ASSERT_TRUE(proxy);
  TestHttpClient client;
  Result<HttpResponse> limited = client.Get(proxy->url() + "/v2/");
  ASSERT_TRUE(limited) << limited.error().ToString();
  EXPECT_EQ(limited->status, 429);
  EXPECT_EQ(limited->Header("Retry-After").value_or(""), "7");
  EXPECT_NE(limited->body.find("TOOMANYREQUESTS"), std::string::npos);
  Result<HttpResponse> ok = client.Get(proxy->url() + "/v2/");
  ASSERT_TRUE(ok) << ok.error().ToString();
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(proxy->fired(0), 1);
}

TEST_F(FaultProxyTest, ServiceUnavailableEveryOtherRequest) {
  auto proxy = StartProxy({{.method = "GET", .path_regex = "^/v2/$", .action = FaultAction::kServiceUnavailable,
                            .every_kth = 2}});
  ASSERT_TRUE(proxy);
  TestHttpClient client;
  std::vector<long> statuses;
  for (int i = 0; i < 4; ++i) {
    Result<HttpResponse> response = client.Get(proxy->url() + "/v2/");
    ASSERT_TRUE(response) << response.error().ToString();
    statuses.push_back(response->status);
  }
  EXPECT_EQ(statuses, (std::vector<long>{200, 503, 200, 503}));
  EXPECT_EQ(proxy->matched(0), 4);
  EXPECT_EQ(proxy->fired(0), 2);
  std::vector<ProxiedRequest> requests = proxy->requests();
  ASSERT_EQ(requests.size(), 4u);
  EXPECT_EQ(requests[0].fault_rule, -1);
  EXPECT_EQ(requests[1].fault_rule, 0);
}

TEST_F(FaultProxyTest, CorruptsOneByte) {
  auto proxy = StartProxy({{.path_regex = "/blobs/sha256:", .action = FaultAction::kCorruptByte,
                            .body_bytes = 12345}});
  ASSERT_TRUE(proxy);
  TestHttpClient client;
  Result<HttpResponse> corrupt = client.Get(proxy->url() + BlobPath());
  ASSERT_TRUE(corrupt) << corrupt.error().ToString();
  ASSERT_EQ(corrupt->body.size(), blob_.data.size());
  std::vector<size_t> differing;
  for (size_t i = 0; i < blob_.data.size(); ++i) {
    if (corrupt->body[i] != blob_.data[i]) differing.push_back(i);
  }
  EXPECT_EQ(differing, std::vector<size_t>{12345});
}

TEST_F(FaultProxyTest, KeepsClientConnectionsAlive) {
  auto proxy = StartProxy({});
  ASSERT_TRUE(proxy);
  TestHttpClient client;
  for (int i = 0; i < 5; ++i) {
    Result<HttpResponse> response = client.Get(proxy->url() + "/v2/");
    ASSERT_TRUE(response) << response.error().ToString();
  }
  EXPECT_EQ(proxy->request_count(), 5);
  EXPECT_GE(proxy->connections(), 1);
}

}  // namespace
}  // namespace strata::test_support
