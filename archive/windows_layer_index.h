// Private to archive/windows_layer_*.cc: the entry index of a Windows layer directory
// (`.strata/entries`, see windows_layer.h) and the shared error/path helpers.
//
// Format: the line "strata-windows-layer-index 1\n", then per tar entry, in archive order,
// PAX-syntax records "<len> <key>=<value>\n" (values binary-safe): "entry" (its position,
// starts the entry), "name", "type" (typeflag char), "mode", "uid", "gid", "uname", "gname",
// "size", "mtime" ("<seconds> <nanoseconds>"), "linkname", "stream" (path of the stream data
// relative to the layer dir, ADS only), "pax:<key>" per PAX record and "xattr:<name>" per
// SCHILY xattr. Unknown keys are refused (a newer writer's index is not half-understood).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "archive/apply_paths.h"
#include "archive/tar_writer.h"
#include "archive/windows_layer.h"
#include "base/error.h"

namespace strata::archive::windows_index {

inline constexpr std::string_view kMetadataDir = ".strata";
inline constexpr std::string_view kIndexFile = ".strata/entries";
inline constexpr std::string_view kStreamsDir = ".strata/streams";
inline constexpr std::string_view kLayerChainFile = "layerchain.json";

// header: as the tar reader returned it (size = content length); stream: ADS only, the
// stream data file relative to the layer dir.
using IndexEntry = WindowsLayerEntry;

// The first bytes of an index file.
std::string IndexPreamble();

// The records of one entry at position `position` of the tar.
std::string EncodeIndexEntry(const IndexEntry& entry, uint64_t position);

// Every entry of an index file, in order. InvalidArgument naming the problem (bad preamble,
// malformed record, unknown key, bad number, positions out of sequence).
Result<std::vector<IndexEntry>> DecodeIndex(std::string_view data);

// InvalidArgument "windows layer entry <name>: <reason>".
std::unexpected<Error> EntryRefuse(std::string_view name, std::string_view reason);
// ErrnoFail(errnum, op, path) with the context "windows layer entry <name>".
std::unexpected<Error> EntryFail(std::string_view name, int errnum, std::string_view op, std::string_view path);

// Opens directory `comps[0..count)` below directory fd `root` (O_PATH) without following
// any symlink (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, or an O_NOFOLLOW walk), creating
// missing components (0755) when `create`. A missing component is NotFound; a symlink or
// non-directory component is InvalidArgument naming it. Errors name `entry`.
Result<UniqueFd> OpenDirBeneath(int root, const apply_detail::Components& comps, size_t count, bool create,
                                std::string_view entry);

}  // namespace strata::archive::windows_index
