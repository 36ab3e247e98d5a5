#include "registry/retry.h"

#include <time.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <random>
#include <thread>

namespace strata::registry {

bool IsRetryableStatus(long status) { return status == 408 || status == 429 || (status >= 500 && status <= 599); }

bool IsRetryableError(const Error& error) { return error.code() == ErrorCode::kUnavailable; }

std::chrono::milliseconds BackoffDelay(const RetryPolicy& policy, int retry, double unit_random) {
  const double cap = static_cast<double>(std::max<int64_t>(policy.max_backoff.count(), 0));
  double delay = static_cast<double>(policy.initial_backoff.count());
  for (int i = 0; i < retry && delay < cap; ++i) delay *= 2;  // stop early: no overflow
  delay *= 1.0 + policy.jitter * (2.0 * std::clamp(unit_random, 0.0, 1.0) - 1.0);
  delay = std::clamp(delay, 0.0, cap);
  return std::chrono::milliseconds(static_cast<int64_t>(std::llround(delay)));
}

std::optional<std::chrono::milliseconds> ParseRetryAfter(std::string_view value,
                                                         std::chrono::system_clock::time_point now) {
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  if (value.empty()) return std::nullopt;
  if (std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    int64_t seconds = 0;
    auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
    if (ec != std::errc() || ptr != value.data() + value.size()) {
      // Too large to represent: as long as anyone would wait.
      return std::chrono::milliseconds::max();
    }
    if (seconds > std::chrono::milliseconds::max().count() / 1000) return std::chrono::milliseconds::max();
    return std::chrono::milliseconds(seconds * 1000);
  }
  // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT".
  std::string text(value);
  struct tm tm {};
  const char* end = strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (end == nullptr || *end != '\0') return std::nullopt;
  const time_t when = timegm(&tm);
  if (when == static_cast<time_t>(-1)) return std::nullopt;
  auto delta = std::chrono::system_clock::from_time_t(when) - now;
  if (delta <= decltype(delta)::zero()) return std::chrono::milliseconds(0);
  return std::chrono::duration_cast<std::chrono::milliseconds>(delta);
}

namespace {

double UnitRandom() {
  thread_local std::mt19937_64 engine{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(engine);
}

}  // namespace

Result<HttpResponse> SendWithRetry(const SendFunction& send, const RetryPolicy& policy, const SleepFunction& sleep,
                                   std::string_view what) {
  const int max_attempts = std::max(policy.max_attempts, 1);
  std::string last;
  for (int attempt = 1;; ++attempt) {
    Result<HttpResponse> result = send();
    std::optional<std::chrono::milliseconds> retry_after;
    if (result) {
      if (!IsRetryableStatus(result->status)) return result;
      last = fmt::format("status {}", result->status);
      if (auto header = result->headers.Get("Retry-After")) retry_after = ParseRetryAfter(*header);
    } else {
      if (!IsRetryableError(result.error())) return result;
      last = fmt::format("error: {}", result.error().message());
    }
    if (attempt >= max_attempts) {
      return Fail(ErrorCode::kUnavailable, "{}: giving up after {} attempt{}: last {}", what, attempt,
                  attempt == 1 ? "" : "s", last);
    }
    std::chrono::milliseconds delay = retry_after ? std::min(*retry_after, policy.max_backoff)
                                                  : BackoffDelay(policy, attempt - 1, UnitRandom());
    if (delay < std::chrono::milliseconds(0)) delay = std::chrono::milliseconds(0);
    if (sleep) {
      sleep(delay);
    } else {
      std::this_thread::sleep_for(delay);
    }
  }
}

}  // namespace strata::registry
