#include "images/pull.h"

#include <algorithm>
#include <atomic>
#include <future>
#include <vector>

#include <fmt/format.h>

#include "base/thread_pool.h"
#include "oci/media_types.h"

namespace strata::images {

store::Labels ManifestGcLabels(const oci::Descriptor& config, const std::vector<oci::Descriptor>& layers) {
  const std::string prefix(store::kLabelGcRefContentPrefix);
  store::Labels labels;
  labels[prefix + ".config"] = config.digest.ToString();
  for (size_t i = 0; i < layers.size(); ++i) labels[fmt::format("{}.l.{}", prefix, i)] = layers[i].digest.ToString();
  return labels;
}

store::Labels IndexGcLabels(const std::vector<oci::Descriptor>& manifests) {
  const std::string prefix(store::kLabelGcRefContentPrefix);
  store::Labels labels;
  for (size_t i = 0; i < manifests.size(); ++i) {
    labels[fmt::format("{}.m.{}", prefix, i)] = manifests[i].digest.ToString();
  }
  return labels;
}

namespace {

// Deletes the pull's lease however the pull ends.
class LeaseGuard {
 public:
  LeaseGuard(store::LeaseManager& leases, std::string id) : leases_(leases), id_(std::move(id)) {}
  ~LeaseGuard() { (void)leases_.Delete(id_); }
  LeaseGuard(const LeaseGuard&) = delete;
  LeaseGuard& operator=(const LeaseGuard&) = delete;
  const std::string& id() const { return id_; }

 private:
  store::LeaseManager& leases_;
  std::string id_;
};

// Emits the one-shot events of a small blob written from memory.
void EmitWritten(const registry::ProgressSink& progress, const oci::Descriptor& descriptor, registry::BlobKind kind,
                 bool written) {
  if (!progress) return;
  progress({.digest = descriptor.digest,
            .kind = kind,
            .state = written ? registry::TransferState::kDone : registry::TransferState::kExists,
            .offset = descriptor.size,
            .total = descriptor.size});
}

}  // namespace

Result<PullResult> Pull(registry::Resolver& resolver, registry::Fetcher& fetcher, store::Store& store,
                        const oci::Reference& reference, const PullOptions& options) {
  // A day: long enough for any pull, short enough that a crashed pull's hold expires.
  STRATA_ASSIGN_OR_RETURN(store::Lease lease,
                          store.leases().Create("", {{"strata.io/pull", reference.String()}}, std::chrono::hours(24)));
  LeaseGuard lease_guard(store.leases(), lease.id);

  STRATA_ASSIGN_OR_RETURN(registry::ResolvedImage image, resolver.ResolvePlatform(reference, options.platform));
  const std::vector<oci::Descriptor>& layers = image.manifest.layers;
  for (const oci::Descriptor& layer : layers) {
    if (options.progress) {
      options.progress({.digest = layer.digest, .kind = registry::BlobKind::kLayer, .total = layer.size});
    }
  }

  PullResult result;
  result.image_name = options.image_name.empty() ? reference.String() : options.image_name;
  const int64_t received_before = fetcher.bytes_received();
  std::atomic<bool> cancel{false};
  std::vector<Result<registry::FetchOutcome>> outcomes;
  {
    ThreadPool pool(static_cast<size_t>(std::clamp<int>(options.parallelism, 1, std::max<int>(1, layers.size()))));
    std::vector<std::future<Result<registry::FetchOutcome>>> pending;
    for (const oci::Descriptor& layer : layers) {
      pending.push_back(pool.Submit([&, layer]() -> Result<registry::FetchOutcome> {
        if (cancel.load()) return Fail(ErrorCode::kCanceled, "blob {}: canceled", layer.digest);
        auto outcome = fetcher.Fetch(reference, layer,
                                     {.lease = lease.id,
                                      .kind = registry::BlobKind::kLayer,
                                      .progress = options.progress,
                                      .cancel = &cancel});
        if (!outcome) cancel.store(true);
        return outcome;
      }));
    }
    for (auto& future : pending) outcomes.push_back(future.get());
  }
  // Report the failure that caused the others' cancellation, not a cancellation.
  const Error* first_failure = nullptr;
  for (const auto& outcome : outcomes) {
    if (outcome) {
      (*outcome == registry::FetchOutcome::kFetched ? result.blobs_fetched : result.blobs_present)++;
    } else if (first_failure == nullptr || first_failure->code() == ErrorCode::kCanceled) {
      first_failure = &outcome.error();
    }
  }
  if (first_failure != nullptr) return Fail(first_failure->WithContext(fmt::format("pull {}", reference.String())));

  // Children before parents: config, then manifest (naming config and layers), then index.
  store::ContentStore& content = store.content();
  store::LeaseManager* leases = &store.leases();
  auto count = [&](bool written) { (written ? result.blobs_fetched : result.blobs_present)++; };
  STRATA_ASSIGN_OR_RETURN(bool config_written, store::WriteBlob(content, leases, image.manifest.config.digest,
                                                                image.config_bytes, {}, lease.id));
  count(config_written);
  EmitWritten(options.progress, image.manifest.config, registry::BlobKind::kConfig, config_written);
  STRATA_ASSIGN_OR_RETURN(
      bool manifest_written,
      store::WriteBlob(content, leases, image.manifest_descriptor.digest, image.manifest_bytes,
                       ManifestGcLabels(image.manifest.config, layers), lease.id));
  count(manifest_written);
  EmitWritten(options.progress, image.manifest_descriptor, registry::BlobKind::kManifest, manifest_written);
  if (image.index) {
    STRATA_ASSIGN_OR_RETURN(bool index_written,
                            store::WriteBlob(content, leases, image.top.descriptor.digest, image.top.manifest,
                                             IndexGcLabels(image.index->manifests), lease.id));
    count(index_written);
    EmitWritten(options.progress, image.top.descriptor, registry::BlobKind::kIndex, index_written);
  }

  STRATA_ASSIGN_OR_RETURN(store::Image recorded, store.images().Put(store::Image{
                                                     .name = result.image_name,
                                                     .target = image.top.descriptor,
                                                 }));
  result.target = recorded.target;
  result.manifest = image.manifest_descriptor;
  result.config = image.manifest.config;
  result.bytes_received = fetcher.bytes_received() - received_before;
  return result;
}

}  // namespace strata::images
