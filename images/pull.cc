#include "images/pull.h"

#include <optional>
#include <set>
#include <vector>

#include <fmt/format.h>

#include "images/transfer_all.h"
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

// One image manifest of the pull, fetched and parsed.
struct ManifestPart {
  oci::Descriptor descriptor;
  std::string bytes;
  oci::Manifest manifest;
};

// The manifests `top` leads to: itself, or the chosen (or every) image manifest of an index.
Result<std::vector<ManifestPart>> ResolveManifests(registry::Resolver& resolver, const oci::Reference& reference,
                                                   const registry::Resolved& top,
                                                   const std::optional<oci::Index>& index, const PullOptions& options) {
  std::vector<oci::Descriptor> chosen;
  if (!index) {
    chosen.push_back(top.descriptor);
  } else if (options.all_platforms) {
    for (const oci::Descriptor& entry : index->manifests) {
      if (oci::IsManifest(entry.media_type)) chosen.push_back(entry);
    }
    if (chosen.empty()) {
      // Nested indexes are not followed (so no index can lead a pull around in circles).
      return Fail(ErrorCode::kNotFound, "{}: the index lists no image manifest ({} entries, none of them a manifest)",
                  reference.String(), index->manifests.size());
    }
  } else {
    auto entry = oci::SelectManifestForPlatform(*index, oci::PlatformMatcher(options.platform));
    if (!entry) return Fail(entry.error().WithContext(reference.String()));
    if (!oci::IsManifest(entry->media_type)) {
      return Fail(ErrorCode::kUnimplemented, "{}: entry {} for platform {} is a {}, not an image manifest",
                  reference.String(), entry->digest, options.platform.String(), entry->media_type);
    }
    chosen.push_back(*entry);
  }
  std::vector<ManifestPart> parts;
  for (const oci::Descriptor& descriptor : chosen) {
    ManifestPart part{.descriptor = descriptor};
    if (index) {
      STRATA_ASSIGN_OR_RETURN(part.bytes, resolver.FetchManifest(reference, descriptor));
    } else {
      part.bytes = top.manifest;
    }
    STRATA_ASSIGN_OR_RETURN(part.manifest, oci::Manifest::Parse(part.bytes));
    parts.push_back(std::move(part));
  }
  return parts;
}

}  // namespace

Result<PullResult> Pull(registry::Resolver& resolver, registry::Fetcher& fetcher, store::Store& store,
                        const oci::Reference& reference, const PullOptions& options) {
  // Our own lease lasts a day: long enough for any pull, short enough that a crashed
  // pull's hold expires.
  std::optional<store::ScopedLease> own_lease;
  std::string lease_id = options.lease;
  if (lease_id.empty()) {
    auto created = store::ScopedLease::Create(store.leases(), {{"strata.io/pull", reference.String()}},
                                              std::chrono::hours(24));
    if (!created) return Fail(created.error());
    own_lease.emplace(std::move(*created));
    lease_id = own_lease->id();
  }

  STRATA_ASSIGN_OR_RETURN(registry::Resolved top, resolver.Resolve(reference));
  std::optional<oci::Index> index;
  if (oci::IsIndex(top.descriptor.media_type)) {
    STRATA_ASSIGN_OR_RETURN(index, oci::Index::Parse(top.manifest));
  }
  STRATA_ASSIGN_OR_RETURN(std::vector<ManifestPart> parts, ResolveManifests(resolver, reference, top, index, options));

  // With unpack, the config comes first: its diffIDs name the snapshots.
  std::optional<ImageUnpack> unpack;
  std::optional<registry::FetchOutcome> config_outcome;
  std::set<Digest> seen;
  if (options.unpack_into != nullptr && !options.all_platforms) {
    const oci::Manifest& manifest = parts.front().manifest;
    if (options.progress) {
      options.progress({.digest = manifest.config.digest, .kind = registry::BlobKind::kConfig,
                        .total = manifest.config.size});
    }
    STRATA_ASSIGN_OR_RETURN(config_outcome, fetcher.Fetch(reference, manifest.config,
                                                          {.lease = lease_id, .kind = registry::BlobKind::kConfig,
                                                           .progress = options.progress}));
    seen.insert(manifest.config.digest);
    unpack.emplace(*options.unpack_into, manifest, options.unpack_limits);
    STRATA_RETURN_IF_ERROR(unpack->Plan(store.content(), manifest.config));
  }

  // Configs and layers of every chosen manifest, each digest once.
  BlobList blobs;
  for (const ManifestPart& part : parts) {
    if (seen.insert(part.manifest.config.digest).second) blobs.emplace_back(part.manifest.config, registry::BlobKind::kConfig);
    for (const oci::Descriptor& layer : part.manifest.layers) {
      if (seen.insert(layer.digest).second) blobs.emplace_back(layer, registry::BlobKind::kLayer);
    }
  }
  for (const auto& [blob, kind] : blobs) {
    if (options.progress) options.progress({.digest = blob.digest, .kind = kind, .total = blob.size});
  }

  PullResult result;
  result.image_name = options.image_name.empty() ? reference.String() : options.image_name;
  const int64_t received_before = fetcher.bytes_received();
  auto fetched = TransferAll<registry::FetchOutcome>(
      blobs, options.parallelism,
      [&](const oci::Descriptor& blob, registry::BlobKind kind, const std::atomic<bool>& stop) {
        auto fetch = [&](registry::FetchOptions::DataTee tee) {
          return fetcher.Fetch(reference, blob,
                               {.lease = lease_id, .kind = kind, .progress = options.progress, .cancel = &stop,
                                .on_data = std::move(tee)});
        };
        if (!unpack || kind != registry::BlobKind::kLayer) return fetch(nullptr);
        return unpack->Transfer(blob, fetch);
      });
  if (!fetched) return Fail(fetched.error().WithContext(fmt::format("pull {}", reference.String())));
  if (unpack) {
    auto committed = unpack->CommitAll();
    if (!committed) return Fail(committed.error().WithContext(fmt::format("pull {}", reference.String())));
    result.layers_unpacked = *committed;
    result.chain_ids = unpack->chain_ids();
  }
  if (config_outcome) fetched->push_back(*config_outcome);
  for (registry::FetchOutcome outcome : *fetched) {
    (outcome == registry::FetchOutcome::kFetched ? result.blobs_fetched : result.blobs_present)++;
  }

  // Parents after children: manifests (naming config and layers), then the index.
  store::LeaseManager* leases = &store.leases();
  auto count = [&](bool written) { (written ? result.blobs_fetched : result.blobs_present)++; };
  for (const ManifestPart& part : parts) {
    STRATA_ASSIGN_OR_RETURN(bool written, store::WriteBlob(store.content(), leases, part.descriptor.digest,
                                                           part.bytes,
                                                           ManifestGcLabels(part.manifest.config, part.manifest.layers),
                                                           lease_id));
    count(written);
    EmitWritten(options.progress, part.descriptor, registry::BlobKind::kManifest, written);
    result.manifests.push_back(part.descriptor);
  }
  if (index) {
    STRATA_ASSIGN_OR_RETURN(bool written, store::WriteBlob(store.content(), leases, top.descriptor.digest, top.manifest,
                                                           IndexGcLabels(index->manifests), lease_id));
    count(written);
    EmitWritten(options.progress, top.descriptor, registry::BlobKind::kIndex, written);
  }

  result.target = top.descriptor;
  result.manifest = parts.front().descriptor;
  result.config = parts.front().manifest.config;
  if (options.record_image) {
    STRATA_ASSIGN_OR_RETURN(store::Image recorded,
                            store.images().Put(store::Image{.name = result.image_name, .target = top.descriptor}));
    result.target = recorded.target;
  }
  result.bytes_received = fetcher.bytes_received() - received_before;
  return result;
}

}  // namespace strata::images
