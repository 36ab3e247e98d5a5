// Save: images from the store to an offline format (images/image_archive.h), read straight
// from the content store.
//
// What each format keeps:
//  - oci / oci-archive: the exact stored bytes of every index, manifest, config and layer,
//    so every digest survives. An index whose other platforms were never pulled is written
//    whole with only the present manifests' blobs (the image-spec allows a layout to miss
//    referenced blobs). Foreign (non-distributable) layers are included when the store has
//    them and left out otherwise (their urls stay in the manifest).
//  - docker-archive: one platform's manifest per image (`platform`), layers uncompressed
//    and stored under their diffIDs (that is what `docker load` and skopeo expect). Only the
//    config (the image ID) and the diffIDs survive; the manifest inside is rewritten for
//    the uncompressed layers unless they already were. The tar is Docker 25+'s form: an OCI
//    layout plus manifest.json and repositories. A foreign layer the store lacks is an
//    error (the archive must hold every layer); present ones are listed in LayerSources.
//
// The output appears only when complete: it is written beside PATH under a temporary name
// and renamed. PATH must not exist yet.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "base/error.h"
#include "images/image_archive.h"
#include "oci/descriptor.h"
#include "oci/platform.h"
#include "store/store.h"

namespace strata::images {

struct SaveOptions {
  ArchiveFormat format = ArchiveFormat::kOciLayout;
  // docker-archive: the manifest taken from an index.
  oci::Platform platform = oci::Platform::Host();
};

struct SavedImage {
  std::string name;            // as recorded in the store
  oci::Descriptor descriptor;  // what the archive names for it (index or manifest)
};

struct SaveResult {
  std::vector<SavedImage> images;
  int blobs = 0;          // blobs written
  int64_t bytes = 0;      // blob bytes written
  std::vector<std::string> notes;  // blobs left out and why
};

// Writes the images named `image_names` (as the store records them) to `path`. Errors:
// NotFound for an unknown image or a blob the format needs that is not in the store (named);
// AlreadyExists when `path` exists; I/O errors naming the file; for docker-archive, a layer
// whose uncompressed digest differs from the config's diffID (FailedPrecondition).
Result<SaveResult> SaveImages(store::Store& store, const std::vector<std::string>& image_names,
                              const std::filesystem::path& path, const SaveOptions& options);

}  // namespace strata::images
