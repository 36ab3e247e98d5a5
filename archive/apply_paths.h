// Private helpers of archive/apply.cc (not part of the archive API): entry-name cleaning,
// openat2(2) with a test switch, and removal that never follows symlinks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "base/file.h"

namespace strata::archive::apply_detail {

// An entry name for messages: quoted, cut after 200 bytes (with its length) so a hostile
// 200 KB name does not become a 200 KB error.
std::string QuotedName(std::string_view name);
// InvalidArgument "layer entry <name>: <reason>".
std::unexpected<Error> Refuse(std::string_view name, std::string_view reason);
// ErrnoFail(errnum, op, path) with the context "layer entry <name>".
std::unexpected<Error> SysFail(std::string_view name, int errnum, std::string_view op, std::string_view path);

// The deepest name a layer may have, in components. Real trees stay far below (deep
// node_modules reach ~50); every walk of a snapshot (usage, removal) holds an open
// directory per level, and std::filesystem's walks hold each level's full path, so depth
// costs fds and memory (a pull of 2000 levels peaked at 292 MiB, mostly the usage walk
// at commit). 512 keeps such walks within a 1024-fd limit and a few MiB.
inline constexpr size_t kMaxPathDepth = 512;

// A cleaned relative path: its components, none empty, ".", or "..". Empty = root itself.
using Components = std::vector<std::string>;

// Applies the name rules of apply.h to `raw` (refusing empty, NUL, absolute, "..",
// PATH_MAX bytes or more, more than kMaxPathDepth components); `what`
// names the field in messages ("name", "hard link target"), `entry_name` the entry.
Result<Components> CleanName(std::string_view entry_name, std::string_view raw, std::string_view what);

// The first `count` components joined with "/" (all of them without `count`).
std::string Join(const Components& comps, size_t count);
std::string Join(const Components& comps);

// openat2(2); fails with errno ENOSYS when internal::SetForceNoOpenat2(true) is in effect.
long Openat2(int dirfd, const char* path, uint64_t flags, uint64_t resolve);

// Removes `name` in `dirfd`, recursively if it is a directory, never following symlinks.
// A missing name is fine. `entry` and `display` name the entry and path in errors.
Status RemoveAt(int dirfd, const std::string& name, std::string_view entry, const std::string& display);

// A directory opened below `dirfd` without following a symlink, and its entries (no "."
// or ".."). `fd` stays open for *at() calls on the children. Errors name `entry` and
// `display` (the directory as the layer names it).
struct DirListing {
  UniqueFd fd;
  std::vector<std::string> children;
};
Result<DirListing> ListDirAt(int dirfd, const std::string& name, std::string_view entry, std::string_view display);

}  // namespace strata::archive::apply_detail
