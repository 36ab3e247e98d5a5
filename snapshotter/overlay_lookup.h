// Lookups in a chain of overlay-form layer directories without mounting them: what the
// merged view would show at a path, as far as a caller needs it before stacking a layer.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace strata::snapshotter {

// The first prefix of `relative` ("a/b/c" -> "a", "a/b", "a/b/c") that the merged view of
// `layers` (nearest first; overlay whiteouts = 0/0 char devices, opaque dirs =
// `opaque_xattr` set to "y") shows as a symlink, or nullopt when none is: each prefix is
// absent, a directory, or a non-symlink that ends the walk. Never follows a symlink.
// `relative` must be a clean relative path (no "", ".", ".." components).
Result<std::optional<std::string>> FindMergedSymlink(const std::vector<std::filesystem::path>& layers,
                                                     std::string_view relative,
                                                     const char* opaque_xattr = "trusted.overlay.opaque");

}  // namespace strata::snapshotter
