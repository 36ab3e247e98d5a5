// Runs one transfer per blob on a small pool, as pull and push both do: at most
// `parallelism` at once, and once one fails the rest stop early. Internal to images/.
#pragma once

#include <algorithm>
#include <atomic>
#include <functional>
#include <future>
#include <utility>
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"
#include "oci/descriptor.h"
#include "registry/progress.h"

namespace strata::images {

using BlobList = std::vector<std::pair<oci::Descriptor, registry::BlobKind>>;

// Calls `transfer(blob, kind, stop)` for every blob. After a failure `stop` is true:
// transfers not yet started are skipped, running ones may watch it to end early. Returns
// every outcome in `blobs` order, or the first real failure (never a cancellation it caused).
template <typename T>
Result<std::vector<T>> TransferAll(
    const BlobList& blobs, int parallelism,
    const std::function<Result<T>(const oci::Descriptor&, registry::BlobKind, const std::atomic<bool>& stop)>&
        transfer) {
  std::atomic<bool> stop{false};
  std::vector<Result<T>> outcomes;
  {
    ThreadPool pool(static_cast<size_t>(std::clamp<int>(parallelism, 1, std::max<int>(1, blobs.size()))));
    std::vector<std::future<Result<T>>> pending;
    for (const auto& [blob, kind] : blobs) {
      pending.push_back(pool.Submit([&, blob, kind]() -> Result<T> {
        if (stop.load()) return Fail(ErrorCode::kCanceled, "blob {}: canceled", blob.digest);
        Result<T> outcome = transfer(blob, kind, stop);
        if (!outcome) stop.store(true);
        return outcome;
      }));
    }
    for (auto& future : pending) outcomes.push_back(future.get());
  }
  const Error* first_failure = nullptr;
  for (const auto& outcome : outcomes) {
    if (!outcome && (first_failure == nullptr || first_failure->code() == ErrorCode::kCanceled)) {
      first_failure = &outcome.error();
    }
  }
  if (first_failure != nullptr) return Fail(*first_failure);
  std::vector<T> values;
  for (auto& outcome : outcomes) values.push_back(std::move(*outcome));
  return values;
}

}  // namespace strata::images
