// Built test images as OCI image layout directories, and umoci unpacking them: a second,
// independent implementation of layer application to check ours against.
#pragma once

#include <filesystem>
#include <string_view>

#include "base/error.h"
#include "tests/support/image_builder.h"

namespace strata::test_support {

inline constexpr std::string_view kUmociPath = "/usr/bin/umoci";

// Writes `image` as an OCI image layout at `dir` (created if missing): "oci-layout",
// "index.json" with one manifest descriptor annotated org.opencontainers.image.ref.name =
// `tag`, and blobs/sha256/<hex> for the manifest, config and every layer blob.
// REQUIRES: image.format == kOci for umoci to accept it (nothing else is checked).
Status WriteOciLayout(const BuiltImage& image, const std::filesystem::path& dir, std::string_view tag);

// Runs `umoci unpack --image <layout>:<tag> <bundle>` and returns <bundle>/rootfs. As root
// umoci keeps ownership, devices and trusted.* xattrs. `bundle` must not exist yet.
// Errors carry umoci's exit code and output.
Result<std::filesystem::path> UmociUnpack(const std::filesystem::path& layout, std::string_view tag,
                                          const std::filesystem::path& bundle);

}  // namespace strata::test_support
