// Reading extended attributes.
#pragma once

#include <filesystem>
#include <map>
#include <string>

#include "base/error.h"

namespace strata {

// Every xattr of one entry, read through `fd` when it is >= 0 (files, dirs), else with the
// l* calls on `path` (symlinks, devices and fifos cannot be opened for reading); `path`
// also names the entry in errors. A filesystem without xattrs gives an empty map.
Result<std::map<std::string, std::string>> ReadXattrs(int fd, const std::filesystem::path& path);

}  // namespace strata
