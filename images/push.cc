#include "images/push.h"

#include <memory>
#include <set>
#include <span>

#include <fmt/format.h>

#include "images/pull.h"
#include "images/transfer_all.h"
#include "oci/index.h"
#include "oci/manifest.h"
#include "oci/media_types.h"

namespace strata::images {
namespace {


// Streams a stored blob from `offset`, for as many uploads (and replays) as the pusher needs.
registry::BlobOpener StoreBlobOpener(store::ContentStore& content, const Digest& digest) {
  return [&content, digest](uint64_t offset) -> Result<registry::BodyReader> {
    STRATA_ASSIGN_OR_RETURN(std::unique_ptr<store::BlobReader> reader, content.Reader(digest));
    std::shared_ptr<store::BlobReader> shared = std::move(reader);
    auto position = std::make_shared<int64_t>(static_cast<int64_t>(offset));
    return registry::BodyReader([shared, position](std::span<char> buffer) -> Result<size_t> {
      STRATA_ASSIGN_OR_RETURN(size_t n, shared->ReadAt(buffer.data(), buffer.size(), *position));
      *position += static_cast<int64_t>(n);
      return n;
    });
  };
}

struct ManifestToPush {
  oci::Descriptor descriptor;
  std::string bytes;
  oci::Manifest manifest;
};

Result<ManifestToPush> LoadManifest(store::ContentStore& content, const oci::Descriptor& descriptor) {
  ManifestToPush part{.descriptor = descriptor};
  STRATA_ASSIGN_OR_RETURN(part.bytes, store::ReadBlob(content, descriptor.digest));
  STRATA_ASSIGN_OR_RETURN(part.manifest, oci::Manifest::Parse(part.bytes));
  return part;
}

void EmitPushed(const registry::ProgressSink& progress, const oci::Descriptor& descriptor, registry::BlobKind kind) {
  if (!progress) return;
  progress({.digest = descriptor.digest,
            .kind = kind,
            .state = registry::TransferState::kDone,
            .offset = descriptor.size,
            .total = descriptor.size});
}

// Pushes the tree under `top` (as stored) to `target`. `source` names where the content
// came from, for cross-repository mounts.
Result<PushImageResult> PushTree(registry::Pusher& pusher, store::Store& store, const oci::Descriptor& top,
                                 const std::optional<oci::Reference>& source, const oci::Reference& target,
                                 const PushImageOptions& options) {
  store::ContentStore& content = store.content();
  PushImageResult result;
  std::vector<ManifestToPush> parts;
  std::string index_bytes;
  bool push_index = false;
  if (oci::IsIndex(top.media_type)) {
    STRATA_ASSIGN_OR_RETURN(index_bytes, store::ReadBlob(content, top.digest));
    STRATA_ASSIGN_OR_RETURN(oci::Index index, oci::Index::Parse(index_bytes));
    for (const oci::Descriptor& entry : index.manifests) {
      if (!oci::IsManifest(entry.media_type) || !content.Info(entry.digest)) continue;
      STRATA_ASSIGN_OR_RETURN(ManifestToPush part, LoadManifest(content, entry));
      parts.push_back(std::move(part));
    }
    if (parts.empty()) {
      return Fail(ErrorCode::kNotFound, "index {}: none of its {} manifests is in the store", top.digest,
                  index.manifests.size());
    }
    push_index = parts.size() == index.manifests.size();
    if (!push_index) {
      const oci::Descriptor& kept = parts.front().descriptor;
      result.note = fmt::format(
          "index {} lists {} manifests but {} are in the store; pushed only manifest {}{} (pull --all-platforms "
          "to push the whole index)",
          top.digest, index.manifests.size(), parts.size(), kept.digest,
          kept.platform ? fmt::format(" for {}", kept.platform->String()) : "");
      parts.resize(1);
    }
  } else {
    STRATA_ASSIGN_OR_RETURN(ManifestToPush part, LoadManifest(content, top));
    parts.push_back(std::move(part));
  }

  std::optional<std::string> mount_from = options.mount_from;
  if (!mount_from && source && source->domain() == target.domain() && source->path() != target.path()) {
    mount_from = source->path();
  }

  // Configs and layers, each digest once; foreign layers stay behind unless allowed.
  BlobList blobs;
  std::set<Digest> seen;
  for (const ManifestToPush& part : parts) {
    if (seen.insert(part.manifest.config.digest).second) {
      blobs.emplace_back(part.manifest.config, registry::BlobKind::kConfig);
    }
    for (const oci::Descriptor& layer : part.manifest.layers) {
      if (!seen.insert(layer.digest).second) continue;
      if (oci::IsForeignLayer(layer.media_type) && !options.allow_nondistributable) {
        ++result.skipped;
        if (options.progress) {
          options.progress({.digest = layer.digest,
                            .kind = registry::BlobKind::kLayer,
                            .state = registry::TransferState::kSkipped,
                            .total = layer.size});
        }
        continue;
      }
      blobs.emplace_back(layer, registry::BlobKind::kLayer);
    }
  }
  for (const auto& [blob, kind] : blobs) {
    if (!content.Info(blob.digest)) {
      return Fail(ErrorCode::kNotFound, "push to {}: blob {} is not in the store", target.String(), blob.digest);
    }
    if (options.progress) options.progress({.digest = blob.digest, .kind = kind, .total = blob.size});
  }

  auto pushed = TransferAll<registry::BlobPushOutcome>(
      blobs, options.parallelism,
      [&](const oci::Descriptor& blob, registry::BlobKind kind, const std::atomic<bool>&) {
        return pusher.PushBlob(target, blob, StoreBlobOpener(content, blob.digest),
                               {.chunk_size = options.chunk_size,
                                .mount_from = mount_from,
                                .progress = options.progress,
                                .kind = kind});
      });
  if (!pushed) return Fail(pushed.error().WithContext(fmt::format("push {}", target.String())));
  for (registry::BlobPushOutcome outcome : *pushed) {
    switch (outcome) {
      case registry::BlobPushOutcome::kExists: ++result.existed; break;
      case registry::BlobPushOutcome::kMounted: ++result.mounted; break;
      case registry::BlobPushOutcome::kUploaded: ++result.uploaded; break;
    }
  }

  // Manifests once their blobs are there; the index (or the lone manifest) by tag last.
  const std::string tag_or_digest = target.ManifestReference();
  if (push_index) {
    for (const ManifestToPush& part : parts) {
      STRATA_RETURN_IF_ERROR(
          pusher.PushManifest(target, part.descriptor.media_type, part.bytes, part.descriptor.digest.ToString()));
      EmitPushed(options.progress, part.descriptor, registry::BlobKind::kManifest);
    }
    STRATA_RETURN_IF_ERROR(pusher.PushManifest(target, top.media_type, index_bytes, tag_or_digest));
    EmitPushed(options.progress, top, registry::BlobKind::kIndex);
    result.pushed = top;
  } else {
    const ManifestToPush& part = parts.front();
    STRATA_RETURN_IF_ERROR(pusher.PushManifest(target, part.descriptor.media_type, part.bytes, tag_or_digest));
    EmitPushed(options.progress, part.descriptor, registry::BlobKind::kManifest);
    result.pushed = part.descriptor;
    result.pushed.platform.reset();
  }
  return result;
}

}  // namespace

std::string StoredImageName(const store::ImageStore& images, const std::string& text) {
  if (auto parsed = oci::Reference::Parse(text); parsed && !images.Get(text)) return parsed->String();
  return text;
}

Result<PushImageResult> PushImage(registry::Pusher& pusher, store::Store& store, const std::string& image_name,
                                  const oci::Reference& target, const PushImageOptions& options) {
  STRATA_ASSIGN_OR_RETURN(store::Image image, store.images().Get(image_name));
  std::optional<oci::Reference> source;
  if (auto parsed = oci::Reference::Parse(image_name)) source = *parsed;
  return PushTree(pusher, store, image.target, source, target, options);
}

Result<PushImageResult> CopyImage(registry::Resolver& resolver, registry::Fetcher& fetcher,
                                  registry::Pusher& pusher, store::Store& store, const oci::Reference& source,
                                  const oci::Reference& target, const CopyOptions& options) {
  STRATA_ASSIGN_OR_RETURN(store::ScopedLease lease, store::ScopedLease::Create(
                                                       store.leases(), {{"strata.io/copy", source.String()}},
                                                       std::chrono::hours(24)));

  PullOptions pull{.platform = options.platform,
                   .all_platforms = options.all_platforms,
                   .parallelism = options.parallelism,
                   .progress = options.progress,
                   .record_image = false,
                   .lease = lease.id()};
  STRATA_ASSIGN_OR_RETURN(PullResult pulled, Pull(resolver, fetcher, store, source, pull));
  // One platform: the manifest alone (its digest is the platform's digest at the source).
  const oci::Descriptor& top = options.all_platforms ? pulled.target : pulled.manifest;
  return PushTree(pusher, store, top, source, target,
                  {.parallelism = options.parallelism,
                   .chunk_size = options.chunk_size,
                   .allow_nondistributable = options.allow_nondistributable,
                   .progress = options.progress});
}

}  // namespace strata::images
