// Retry policy: the backoff schedule and Retry-After parsing as unit tests with an
// instant sleep, then the loop against a real registry behind a FaultProxy.
#include "registry/retry.h"

#include <chrono>
#include <deque>

#include <gtest/gtest.h>

#include "base/file.h"
#include "tests/registry/registry_client_test_base.h"
#include "tests/support/assertions.h"
#include "tests/support/fault_proxy.h"
#include "tests/support/image_builder.h"
#include "tests/support/registry_fixture.h"

namespace strata::registry {
namespace {

using namespace std::chrono_literals;
using std::chrono::milliseconds;

TEST(RetryTest, RetryableStatuses) {
  for (long status : {408L, 429L, 500L, 502L, 503L, 504L, 599L}) EXPECT_TRUE(IsRetryableStatus(status)) << status;
  for (long status : {200L, 201L, 307L, 400L, 401L, 403L, 404L, 405L, 409L, 600L}) {
    EXPECT_FALSE(IsRetryableStatus(status)) << status;
  }
  EXPECT_TRUE(IsRetryableError(Error(ErrorCode::kUnavailable, "x")));
  EXPECT_FALSE(IsRetryableError(Error(ErrorCode::kInvalidArgument, "x")));
}

TEST(RetryTest, BackoffDoublesAndCaps) {
  RetryPolicy policy{.max_attempts = 10, .initial_backoff = 500ms, .max_backoff = 30s, .jitter = 0};
  EXPECT_EQ(BackoffDelay(policy, 0, 0.5), 500ms);
  EXPECT_EQ(BackoffDelay(policy, 1, 0.5), 1000ms);
  EXPECT_EQ(BackoffDelay(policy, 2, 0.5), 2000ms);
  EXPECT_EQ(BackoffDelay(policy, 5, 0.5), 16000ms);
  EXPECT_EQ(BackoffDelay(policy, 6, 0.5), 30000ms);
  EXPECT_EQ(BackoffDelay(policy, 1000, 0.5), 30000ms);  // no overflow
}

TEST(RetryTest, JitterStaysInBounds) {
  RetryPolicy policy{.initial_backoff = 1000ms, .max_backoff = 30s, .jitter = 0.25};
  EXPECT_EQ(BackoffDelay(policy, 0, 0.0), 750ms);
  EXPECT_EQ(BackoffDelay(policy, 0, 1.0), 1250ms);
  EXPECT_EQ(BackoffDelay(policy, 0, 0.5), 1000ms);
  // Jitter never pushes past the cap.
  EXPECT_EQ(BackoffDelay(policy, 10, 1.0), 30s);
}

TEST(RetryTest, ParseRetryAfter) {
  auto now = std::chrono::system_clock::from_time_t(1'700'000'000);  // Tue, 14 Nov 2023 22:13:20 GMT
  EXPECT_EQ(ParseRetryAfter("1", now), milliseconds(1000));
  EXPECT_EQ(ParseRetryAfter(" 120 ", now), milliseconds(120'000));
  EXPECT_EQ(ParseRetryAfter("0", now), milliseconds(0));
  EXPECT_EQ(ParseRetryAfter("Tue, 14 Nov 2023 22:13:50 GMT", now), milliseconds(30'000));
  EXPECT_EQ(ParseRetryAfter("Tue, 14 Nov 2023 22:00:00 GMT", now), milliseconds(0));  // past
  EXPECT_EQ(ParseRetryAfter("99999999999999999999999", now), milliseconds::max());
  EXPECT_EQ(ParseRetryAfter("", now), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("-1", now), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("soon", now), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("Tue, 14 Nov 2023 22:13:50", now), std::nullopt);
}

// A scripted sequence of answers for the loop; records the sleeps.
struct Script {
  std::deque<Result<HttpResponse>> answers;
  std::vector<milliseconds> sleeps;
  int calls = 0;

  SendFunction Send() {
    return [this]() -> Result<HttpResponse> {
      ++calls;
      Result<HttpResponse> answer = std::move(answers.front());
      answers.pop_front();
      return answer;
    };
  }
  SleepFunction Sleep() {
    return [this](milliseconds delay) { sleeps.push_back(delay); };
  }
};

HttpResponse Answer(long status, std::optional<std::string> retry_after = std::nullopt) {
  HttpResponse response;
  response.status = status;
  if (retry_after) response.headers.Add("Retry-After", *retry_after);
  return response;
}

TEST(SendWithRetryTest, BackoffScheduleThenSuccess) {
  Script script;
  script.answers = {Answer(503), Answer(502), Answer(500), Answer(200)};
  RetryPolicy policy{.max_attempts = 5, .initial_backoff = 500ms, .max_backoff = 30s, .jitter = 0};
  ASSERT_OK_AND_ASSIGN(HttpResponse response, SendWithRetry(script.Send(), policy, script.Sleep()));
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(script.calls, 4);
  EXPECT_EQ(script.sleeps, (std::vector<milliseconds>{500ms, 1000ms, 2000ms}));
}

TEST(SendWithRetryTest, RetryAfterHonouredAndCapped) {
  Script script;
  script.answers = {Answer(429, "3"), Answer(429, "3600"), Answer(503, "bogus"), Answer(200)};
  RetryPolicy policy{.max_attempts = 5, .initial_backoff = 100ms, .max_backoff = 10s, .jitter = 0};
  ASSERT_OK_AND_ASSIGN(HttpResponse response, SendWithRetry(script.Send(), policy, script.Sleep()));
  EXPECT_EQ(response.status, 200);
  // 3 s as asked; 3600 s capped at max_backoff; an unparseable value falls back to backoff.
  EXPECT_EQ(script.sleeps, (std::vector<milliseconds>{3000ms, 10000ms, 400ms}));
}

TEST(SendWithRetryTest, TransportErrorsRetriedOthersNot) {
  Script script;
  script.answers = {std::unexpected(Error(ErrorCode::kUnavailable, "connection reset")), Answer(200)};
  RetryPolicy policy{.max_attempts = 3, .initial_backoff = 10ms, .jitter = 0};
  ASSERT_OK_AND_ASSIGN(HttpResponse response, SendWithRetry(script.Send(), policy, script.Sleep()));
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(script.calls, 2);

  Script fatal;
  fatal.answers = {std::unexpected(Error(ErrorCode::kInvalidArgument, "bad url"))};
  auto result = SendWithRetry(fatal.Send(), policy, fatal.Sleep());
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error(), Error(ErrorCode::kInvalidArgument, "bad url"));
  EXPECT_EQ(fatal.calls, 1);
  EXPECT_TRUE(fatal.sleeps.empty());
}

TEST(SendWithRetryTest, NonRetryableStatusReturnedAtOnce) {
  Script script;
  script.answers = {Answer(404)};
  ASSERT_OK_AND_ASSIGN(HttpResponse response, SendWithRetry(script.Send(), RetryPolicy{}, script.Sleep()));
  EXPECT_EQ(response.status, 404);
  EXPECT_EQ(script.calls, 1);
}

TEST(SendWithRetryTest, GivesUpNamingAttemptsAndLastAnswer) {
  Script script;
  script.answers = {Answer(503), Answer(503), Answer(429)};
  RetryPolicy policy{.max_attempts = 3, .initial_backoff = 10ms, .jitter = 0};
  auto result = SendWithRetry(script.Send(), policy, script.Sleep(), "GET http://h/v2/a/manifests/1");
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kUnavailable);
  EXPECT_EQ(result.error().message(), "GET http://h/v2/a/manifests/1: giving up after 3 attempts: last status 429");
  EXPECT_EQ(script.sleeps.size(), 2u);

  Script errors;
  errors.answers = {std::unexpected(Error(ErrorCode::kUnavailable, "no data from h for 30 s"))};
  auto once = SendWithRetry(errors.Send(), RetryPolicy{.max_attempts = 1}, errors.Sleep(), "GET x");
  ASSERT_FALSE(once);
  EXPECT_EQ(once.error().message(), "GET x: giving up after 1 attempt: last error: no data from h for 30 s");
}

// ---- Through a FaultProxy in front of a real registry ----

class RetryProxyTest : public RegistryClientTest {
 protected:
  void SetUp() override {
    RegistryClientTest::SetUp();
    ASSERT_OK_AND_ASSIGN(registry_, test_support::RegistryFixture::Start());
    auto layer = test_support::LayerBuilder().File("hello.txt", "hello\n").Build();
    ASSERT_TRUE(layer) << layer.error().ToString();
    test_support::ImageBuilder builder;
    builder.AddLayer(std::move(*layer));
    ASSERT_OK(builder.PushTo(*registry_, "team/app", "1"));
  }

  Result<HttpResponse> GetManifestThrough(test_support::FaultProxy& proxy, const RetryPolicy& policy) {
    return SendWithRetry(
        [&]() {
          return client_->Send({.url = proxy.url() + "/v2/team/app/manifests/1",
                                .headers = {{"Accept", test_support::ManifestAcceptHeader()}}});
        },
        policy);
  }

  std::unique_ptr<test_support::RegistryFixture> registry_;
};

TEST_F(RetryProxyTest, TooManyRequestsWaitsForRetryAfter) {
  using test_support::FaultAction;
  ASSERT_OK_AND_ASSIGN(auto proxy,
                       test_support::FaultProxy::Start(registry_->url(), {{.method = "GET",
                                                                           .path_regex = "/manifests/",
                                                                           .action = FaultAction::kTooManyRequests,
                                                                           .retry_after_seconds = 1,
                                                                           .first_n = 1}}));
  auto start = std::chrono::steady_clock::now();
  ASSERT_OK_AND_ASSIGN(HttpResponse response,
                       GetManifestThrough(*proxy, {.max_attempts = 3, .initial_backoff = 10ms, .jitter = 0}));
  auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(response.status, 200);
  EXPECT_GE(elapsed, 1s);
  EXPECT_EQ(proxy->fired(0), 1);
  EXPECT_EQ(proxy->matched(0), 2);
}

TEST_F(RetryProxyTest, ServiceUnavailableTwiceThenSuccess) {
  using test_support::FaultAction;
  ASSERT_OK_AND_ASSIGN(auto proxy, test_support::FaultProxy::Start(
                                       registry_->url(), {{.method = "GET",
                                                           .path_regex = "/manifests/",
                                                           .action = FaultAction::kServiceUnavailable,
                                                           .first_n = 2}}));
  ASSERT_OK_AND_ASSIGN(HttpResponse response,
                       GetManifestThrough(*proxy, {.max_attempts = 5, .initial_backoff = 10ms, .jitter = 0.5}));
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(proxy->fired(0), 2);
  EXPECT_EQ(proxy->matched(0), 3);

  // Always failing: bounded attempts and a message that says so.
  proxy->SetRules({{.method = "GET",
                    .path_regex = "/manifests/",
                    .action = FaultAction::kServiceUnavailable,
                    .first_n = 0}});
  auto result = GetManifestThrough(*proxy, {.max_attempts = 3, .initial_backoff = 10ms, .jitter = 0});
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kUnavailable);
  EXPECT_NE(result.error().message().find("giving up after 3 attempts: last status 503"), std::string::npos)
      << result.error().message();
  EXPECT_EQ(proxy->matched(0), 3);
}

}  // namespace
}  // namespace strata::registry
