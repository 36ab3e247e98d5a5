// The read-only union view of Windows layer directories (made by archive::ApplyWindowsLayer,
// see archive/windows_layer.h): what `strata mount` of a Windows image and images::ImageView
// show, and what `strata-fsfilter -o windows` mounts.
//
// Contract of the view returned by OpenWindowsLayerView:
//  - Contents: the union of each layer's Files/ tree (C:\), topmost layer first; Hives/,
//    UtilityVM/ and the layer metadata (.strata/, layerchain.json) are not in it. Whiteouts
//    (0/0 character devices in Files/) hide the lower entry of the same folded name.
//  - Names: NTFS-style, case-insensitive and case-preserving (CaseFoldingNameFilter): a
//    lookup in any case finds the entry; readdir lists each folded name once, spelled as in
//    the topmost layer holding it. Names differing only in case within one layer's directory
//    (impossible on NTFS) show as one entry, the first in that directory's readdir order.
//  - Read-only: UnionFilesystem::writable() is false; writes fail with EROFS.
//  - Windows metadata as extended attributes, from the index of the layer whose file the view
//    shows (the topmost holding the entry); nothing else is listed (see kWindowsXattr*):
//      user.windows.fileattr       MSWINDOWS.fileattr as recorded (decimal Win32 attributes)
//      user.windows.rawsd          MSWINDOWS.rawsd decoded: the self-relative
//                                  SECURITY_DESCRIPTOR bytes (the record text if not base64)
//      user.windows.sd             legacy MSWINDOWS.sd (SDDL text) as recorded
//      user.windows.creationtime   LIBARCHIVE.creationtime as recorded ("secs[.frac]")
//      user.windows.mountpoint     MSWINDOWS.mountpoint as recorded ("1" on a junction)
//      user.windows.xattr.<EA>     MSWINDOWS.xattr.<EA> decoded: the raw EA value
//      user.windows.stream.<name>  the content of alternate data stream <name> (tar entry
//                                  "<file>:<name>" or "<file>:<name>:$DATA"); E2BIG when
//                                  longer than 65536 bytes (XATTR_SIZE_MAX)
//    On symlinks and junctions the same xattrs are named trusted.windows.* (Linux allows
//    user.* xattrs on regular files and directories only; reading trusted.* through a mount
//    needs CAP_SYS_ADMIN). An absent record gives no xattr; names longer than 255 bytes are
//    not listed.
//  - REQUIRES: the layer dirs are not modified while the view is open (directory name maps
//    and the index are cached).
//  - Memory: the per-entry records of every layer index are held for the view's life.
#pragma once

#include <filesystem>
#include <memory>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "fsfilter/union_filesystem.h"

namespace strata::fsfilter {

inline constexpr std::string_view kWindowsXattrFileAttr = "user.windows.fileattr";
inline constexpr std::string_view kWindowsXattrRawSd = "user.windows.rawsd";
inline constexpr std::string_view kWindowsXattrSddl = "user.windows.sd";
inline constexpr std::string_view kWindowsXattrCreationTime = "user.windows.creationtime";
inline constexpr std::string_view kWindowsXattrMountPoint = "user.windows.mountpoint";
inline constexpr std::string_view kWindowsXattrEaPrefix = "user.windows.xattr.";
inline constexpr std::string_view kWindowsXattrStreamPrefix = "user.windows.stream.";

// Opens the view over `layer_dirs`, topmost first (a layer's parents follow it, in
// layerchain.json order; the caller supplies the chain).
// Errors (each naming the layer dir): InvalidArgument for an empty list; NotFound when a
// dir does not exist; FailedPrecondition when it is incomplete (no layerchain.json), not a
// strata Windows layer dir (no .strata/entries) or has no Files/ directory; InvalidArgument
// for a damaged index.
Result<std::unique_ptr<UnionFilesystem>> OpenWindowsLayerView(const std::vector<std::filesystem::path>& layer_dirs);

}  // namespace strata::fsfilter
