// What is mounted where, from /proc/self/mountinfo.
#pragma once

#include <filesystem>
#include <vector>

#include "base/error.h"

namespace strata {

// Mount points at `dir` or beneath it, deepest first (a path mounted several times appears
// once per mount). `dir` is canonicalised first when it exists.
Result<std::vector<std::filesystem::path>> MountPointsAtOrBeneath(const std::filesystem::path& dir);

}  // namespace strata
