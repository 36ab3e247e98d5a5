// Retry policy of the registry client: which answers are worth another try, how long to
// wait between tries (exponential backoff with jitter, or the server's Retry-After), and a
// loop that applies both to one request.
//
// Retried: HTTP 408, 429 and 5xx, and transport errors with code Unavailable (connect
// failures, dropped connections, stalls). Everything else is returned at once.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "base/error.h"
#include "registry/http_client.h"

namespace strata::registry {

struct RetryPolicy {
  // Total tries, the first included. 1 = no retry. Values < 1 count as 1.
  int max_attempts = 5;
  // Wait before the 2nd try; doubled for each further try, capped at max_backoff.
  std::chrono::milliseconds initial_backoff{500};
  // Upper bound of every wait, Retry-After included.
  std::chrono::milliseconds max_backoff{30'000};
  // Each computed backoff is scaled by a random factor in [1 - jitter, 1 + jitter]
  // (then capped at max_backoff). 0 = deterministic. Not applied to Retry-After.
  double jitter = 0.2;
};

// Sends one try of the request. Called once per attempt; must build a fresh request each
// time (a streamed body must start again from its first byte).
using SendFunction = std::function<Result<HttpResponse>()>;
// Waits `delay`. Tests pass one that records the delay and returns at once.
using SleepFunction = std::function<void(std::chrono::milliseconds delay)>;

// True for 408, 429 and 500..599.
bool IsRetryableStatus(long status);
// True for transport errors worth retrying (ErrorCode::kUnavailable).
bool IsRetryableError(const Error& error);

// The backoff before try number `retry + 2` (retry = 0 is the wait after the first try):
// initial_backoff * 2^retry scaled by (1 + jitter * (2 * unit_random - 1)), capped at
// max_backoff and never negative. REQUIRES: 0 <= unit_random <= 1.
std::chrono::milliseconds BackoffDelay(const RetryPolicy& policy, int retry, double unit_random);

// The delay a Retry-After header value asks for: delta-seconds ("120") or an IMF-fixdate
// HTTP-date ("Wed, 21 Oct 2026 07:28:00 GMT", relative to `now`; a past date is 0).
// nullopt when the value is neither.
std::optional<std::chrono::milliseconds> ParseRetryAfter(
    std::string_view value, std::chrono::system_clock::time_point now = std::chrono::system_clock::now());

// Calls `send` until it returns a response that is not retryable, a non-retryable error,
// or policy.max_attempts tries were made. Between tries it sleeps (through `sleep`, or
// std::this_thread::sleep_for when unset) the Retry-After of a 429/503/... response when it
// has one (capped at max_backoff), else BackoffDelay.
// Returns the first non-retryable response (any status) or error unchanged. When the tries
// run out: Unavailable "<what>: giving up after N attempts: last <status 503 | error ...>".
// `what` names the request in messages ("GET https://host/v2/a/manifests/1").
// Thread-safe if `send` and `sleep` are.
Result<HttpResponse> SendWithRetry(const SendFunction& send, const RetryPolicy& policy,
                                   const SleepFunction& sleep = {}, std::string_view what = "request");

}  // namespace strata::registry
