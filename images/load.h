// Load: images from an offline format (images/image_archive.h) into the store. The format
// is detected: a directory with oci-layout (or an unpacked docker archive with
// manifest.json), or a tar (optionally gzip/zstd compressed) holding manifest.json
// (docker-archive, both Docker 25+'s OCI-layout form and the older <id>/layer.tar form) or
// index.json (oci-archive).
//
// Every blob is verified: by the digest its path or descriptor names, sizes against
// descriptors, docker layers against the config's diff_ids. Blobs go through content-store
// ingests, so none is visible before it is whole and verified; they are held by a lease
// until the images are recorded. Manifests and indexes are stored as their exact bytes
// (digests survive). A docker archive without an OCI manifest for an image (the old form)
// gets a Docker schema 2 manifest written for it, naming the uncompressed layers under
// their own digests (= diffIDs); foreign layers (LayerSources) keep the foreign media type
// but lose their urls, since the stored blob is the uncompressed one.
//
// Names: io.containerd.image.name when present; else ref.name when it is a full reference
// (has '/' or ':'); else ref.name is a tag in `repository` (default
// "localhost/<archive file stem>"); an entry without either is recorded as
// <repository>@<digest>. docker-archive: every RepoTags entry.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "base/error.h"
#include "images/image_archive.h"
#include "oci/descriptor.h"
#include "store/store.h"

namespace strata::images {

struct LoadOptions {
  // Repository for entries naming only a tag (or nothing); "" = "localhost/<stem>".
  std::string repository;
};

struct LoadedImage {
  std::string name;
  oci::Descriptor target;
};

struct LoadResult {
  ArchiveFormat format = ArchiveFormat::kOciLayout;
  std::vector<LoadedImage> images;
  int blobs_written = 0;  // committed by this load
  int blobs_present = 0;  // already in the store
  std::vector<std::string> notes;  // blobs the archive leaves out (foreign layers, other platforms)
};

// Loads every image of the archive at `path`. Errors name the archive entry: InvalidArgument
// for a malformed archive or document, FailedPrecondition for a digest or size mismatch,
// NotFound for a referenced blob the archive lacks. On error no image is recorded (blobs
// committed meanwhile are unreferenced and go with the next GC).
Result<LoadResult> LoadImages(store::Store& store, const std::filesystem::path& path, const LoadOptions& options);

}  // namespace strata::images
