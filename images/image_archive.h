// Offline image formats shared by save and load: the OCI image layout (a directory, or the
// same tree as a tar: "oci-archive") and `docker save`'s tar ("docker-archive").
//
// Tags in an OCI layout: index.json entries carry the image's full name in
// "io.containerd.image.name" and its tag in "org.opencontainers.image.ref.name" (as
// containerd's export and Docker 25+ write them); when two saved images share a tag, every
// entry's ref.name is the full name instead, so each stays addressable (skopeo
// `oci:DIR:docker.io/library/alpine:3`).
#pragma once

#include <string>
#include <string_view>

#include "base/error.h"

namespace strata::images {

enum class ArchiveFormat {
  kOciLayout,      // a directory: oci-layout, index.json, blobs/<alg>/<hex>
  kOciArchive,     // the same tree as a tar file
  kDockerArchive,  // `docker save`: manifest.json + uncompressed layers (+ an OCI layout, Docker 25+)
};

// "oci", "oci-archive", "docker-archive". InvalidArgument naming the text otherwise.
Result<ArchiveFormat> ParseArchiveFormat(std::string_view text);
std::string_view ArchiveFormatName(ArchiveFormat format);

inline constexpr std::string_view kRefNameAnnotation = "org.opencontainers.image.ref.name";
inline constexpr std::string_view kContainerdImageNameAnnotation = "io.containerd.image.name";
inline constexpr std::string_view kOciLayoutFile = R"({"imageLayoutVersion":"1.0.0"})";

}  // namespace strata::images
