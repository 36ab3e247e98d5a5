// The markers overlay-form layers use, read in both forms and written in overlay form:
//   whiteout  - a 0/0 character device named X, or (AUFS/OCI form) a file ".wh.X";
//   opaque    - xattr trusted.overlay.opaque=y (or user.overlay.opaque=y, the userxattr
//               form) on a directory, or a ".wh..wh..opq" file inside it.
// All functions take a directory fd (O_PATH is enough) and a single name component and
// never follow a symlink.
#pragma once

#include <sys/stat.h>

#include <string>
#include <string_view>

#include "fsfilter/sys_result.h"

namespace strata::fsfilter {

inline constexpr std::string_view kWhiteoutPrefix = ".wh.";
inline constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";
inline constexpr const char* kTrustedOpaqueXattr = "trusted.overlay.opaque";
inline constexpr const char* kUserOpaqueXattr = "user.overlay.opaque";

// Names that never appear in, and cannot be created through, the merged view.
inline bool IsReservedName(std::string_view name) { return name.starts_with(kWhiteoutPrefix); }
// xattrs that are overlay bookkeeping: hidden from getxattr/listxattr, refused by set/remove.
inline bool IsOverlayXattr(std::string_view name) {
  return name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.");
}

inline bool IsWhiteoutStat(const struct stat& st) { return S_ISCHR(st.st_mode) && st.st_rdev == 0; }

// True when the directory `dir_fd` is opaque in either form.
bool IsOpaqueDir(int dir_fd);

// ".wh." + name: the AUFS-form whiteout file of `name`.
std::string WhiteoutFileName(std::string_view name);
// True when `dir_fd` holds a ".wh.<name>" whiteout file for `name`.
bool HasWhiteoutFile(int dir_fd, std::string_view name);

// Creates an overlay-form whiteout (0/0 char device) named `name` in `dir_fd`. When mknod is
// not permitted (EPERM: no CAP_MKNOD and a kernel refusing unprivileged whiteouts), falls
// back to an empty ".wh.<name>" file, which this engine (but not kernel overlayfs) honours.
SysStatus CreateWhiteout(int dir_fd, std::string_view name);

// Marks the directory `dir_fd`/`name` opaque: trusted.overlay.opaque=y; without
// CAP_SYS_ADMIN, user.overlay.opaque=y (what an unprivileged userxattr mount writes).
SysStatus MarkOpaque(int dir_fd, std::string_view name);

// Removes markers for `name` in `dir_fd` so a new entry can take its place: a 0/0 char device
// named `name` and/or a ".wh.<name>" file. Returns true when one was there (a lower entry of
// that name is hidden, so a new directory must be opaque).
SysResult<bool> RemoveWhiteout(int dir_fd, std::string_view name);

// Removes everything inside `dir_fd` (recursively), keeping the directory itself.
SysStatus RemoveChildrenAt(int dir_fd);
// Removes `name` in `dir_fd`, recursively when it is a directory.
SysStatus RemoveTreeAt(int dir_fd, const std::string& name);

}  // namespace strata::fsfilter
