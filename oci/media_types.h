// Media types of the OCI image-spec and of Docker's schema 2, and questions about them.
//
// The predicates accept what a registry puts in Content-Type: parameters after ';' and
// surrounding blanks are ignored, and the comparison is ASCII case-insensitive (RFC 6838).
#pragma once

#include <string_view>

#include "base/error.h"

namespace strata::oci {

// The constants live in their own namespace so call sites read media_type::kOciIndex.
namespace media_type {

// OCI image-spec v1.1.
inline constexpr std::string_view kOciIndex = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view kOciManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view kOciConfig = "application/vnd.oci.image.config.v1+json";
inline constexpr std::string_view kOciLayer = "application/vnd.oci.image.layer.v1.tar";
inline constexpr std::string_view kOciLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip";
inline constexpr std::string_view kOciLayerZstd = "application/vnd.oci.image.layer.v1.tar+zstd";
// Non-distributable layers: deprecated in image-spec v1.1 but still found in old images.
inline constexpr std::string_view kOciLayerNondistributable =
    "application/vnd.oci.image.layer.nondistributable.v1.tar";
inline constexpr std::string_view kOciLayerNondistributableGzip =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
inline constexpr std::string_view kOciLayerNondistributableZstd =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
// The two-byte blob "{}" artifacts use as config or layer.
inline constexpr std::string_view kOciEmpty = "application/vnd.oci.empty.v1+json";
inline constexpr std::string_view kOciDescriptor = "application/vnd.oci.descriptor.v1+json";
inline constexpr std::string_view kOciLayoutHeader = "application/vnd.oci.layout.header.v1+json";

// Docker image manifest v2 schema 2.
inline constexpr std::string_view kDockerManifestList =
    "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr std::string_view kDockerManifest =
    "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr std::string_view kDockerConfig = "application/vnd.docker.container.image.v1+json";
inline constexpr std::string_view kDockerLayer = "application/vnd.docker.image.rootfs.diff.tar";
inline constexpr std::string_view kDockerLayerGzip =
    "application/vnd.docker.image.rootfs.diff.tar.gzip";
inline constexpr std::string_view kDockerLayerZstd =
    "application/vnd.docker.image.rootfs.diff.tar.zstd";
// Foreign layers (Windows base layers before 2023): fetched from the descriptor's urls.
inline constexpr std::string_view kDockerForeignLayer =
    "application/vnd.docker.image.rootfs.foreign.diff.tar";
inline constexpr std::string_view kDockerForeignLayerGzip =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
// Schema 1: recognised so it can be refused by name; never parsed.
inline constexpr std::string_view kDockerSchema1Manifest =
    "application/vnd.docker.distribution.manifest.v1+json";
inline constexpr std::string_view kDockerSchema1SignedManifest =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";

}  // namespace media_type

// `media_type` without parameters and surrounding blanks:
// "application/json; charset=utf-8" -> "application/json".
std::string_view BaseMediaType(std::string_view media_type);

// True when the two name the same type, ignoring parameters and ASCII case.
bool SameMediaType(std::string_view a, std::string_view b);

// OCI index or Docker manifest list.
bool IsIndex(std::string_view media_type);
// OCI image manifest or Docker schema 2 manifest (schema 1 is not a manifest we read).
bool IsManifest(std::string_view media_type);
// OCI or Docker image config.
bool IsConfig(std::string_view media_type);
// Any OCI or Docker layer type above, distributable or not.
bool IsLayer(std::string_view media_type);
// OCI non-distributable or Docker foreign layer: content may have to come from `urls`, and
// push skips it unless told otherwise.
bool IsForeignLayer(std::string_view media_type);
bool IsSchema1Manifest(std::string_view media_type);

enum class Compression { kNone, kGzip, kZstd };

std::string_view CompressionName(Compression compression);  // "none", "gzip", "zstd"

// Compression of a layer blob of this type. InvalidArgument for a type that is not a
// layer; Unimplemented for encrypted layers ("+encrypted").
Result<Compression> LayerCompression(std::string_view media_type);

}  // namespace strata::oci
