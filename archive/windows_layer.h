// Windows container layers: import a Windows layer tar into a windowsfilter-style layer
// directory, and export that directory back into an equivalent tar, losslessly.
//
// What a layer directory holds (user-facing description):
//   Files/             the layer's view of C:\ as an ordinary tree
//   Hives/             registry deltas (*_Delta files) of a non-base layer
//   UtilityVM/Files/   the utility VM boot image of a base layer
//   layerchain.json    JSON array of the absolute parent layer dirs, nearest first; `null`
//                      for a base layer. Written last: a dir without it is incomplete.
//   .strata/entries    the entry index: every tar entry in archive order with its header
//                      fields and PAX records verbatim (MSWINDOWS.fileattr/rawsd/mountpoint/
//                      xattr.*, LIBARCHIVE.creationtime, atime/ctime, ...), its raw name
//                      (so each alternate data stream keeps its `f:s` or `f:s:$DATA` form)
//                      and its link target. Binary-safe PAX record syntax (see
//                      windows_layer_index.h). It is the source of truth for export.
//   .strata/streams/N  the content of the alternate data stream that was tar entry N.
// In the trees: directories (0755) and files (0644: Windows headers carry no permission
// bits; the header mode is kept in the index), symlinks and junctions as Linux symlinks whose
// target is the raw Windows text ("C:\Windows", "..\x"), hard links within the layer as real
// hard links (UtilityVM/Files -> Files/), a hard link to a parent layer's file as a copy of
// its data (the index remembers it is a link), and each whiteout ".wh.<name>" as an
// overlay-style 0/0 character device <name> (the union view hides the lower entry).
// Per-file metadata lives in the index and not in xattrs: the index survives any copy of the
// directory (with or without xattrs, as root or not), keeps per-path records of hard-linked
// paths apart (xattrs would be shared by the inode), and needs no names inside Files/, so a
// real file can never collide with metadata (':' is a legal Linux name character, so ADS are
// never stored as siblings). mtimes (and atimes from the `atime` record) are set on the tree;
// directory times after all children and whiteouts are applied. Records are kept verbatim,
// legacy MSWINDOWS.sd included (export must reproduce the tar; nothing is converted).
// Export reproduces entries, not bytes: a tar from another writer comes back with the same
// names, types, fields, records and data, in the same order, but with our PAX encoding.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "archive/tar_writer.h"
#include "base/error.h"
#include "base/io.h"

namespace strata::archive {

struct WindowsLayerOptions {
  // A base layer: no parents, no whiteouts, no Hives/, must hold
  // Files/Windows/System32/config/{DEFAULT,SAM,SECURITY,SOFTWARE,SYSTEM}.
  bool is_base = false;
  // Absolute parent layer dirs, nearest first (empty for a base layer; at least one
  // otherwise). Hard links to files not in this layer are resolved in them, in order.
  std::vector<std::filesystem::path> parent_layers;
};

// One entry of a layer's index: the tar header as read (name, type, mode, times, linkname,
// PAX records such as MSWINDOWS.fileattr) and, for an alternate data stream, where its data
// is (relative to the layer dir, ".strata/streams/<n>").
struct WindowsLayerEntry {
  TarEntry header;
  std::string stream;
};

struct WindowsLayerStats {
  uint64_t entries = 0;    // tar entries
  uint64_t bytes = 0;      // content bytes written (files, streams, copied parent links)
  uint64_t streams = 0;    // alternate data streams
  uint64_t whiteouts = 0;  // ".wh.<name>" entries
};

// Applies the Windows layer tar read from `tar` into `layer_dir`.
// REQUIRES: `layer_dir` exists and is empty; parent layer dirs are complete strata Windows
// layers (or at least hold Files/...) and are not modified meanwhile.
// Accepted entries: names under Files/, UtilityVM/Files/ and (non-base) Hives/, plus the
// dirs "Files/", "Hives/", "UtilityVM/", "UtilityVM/Files/"; regular files, directories,
// symlinks/junctions (typeflag 2), hard links (typeflag 1, under Files/ or UtilityVM/Files
// only, target earlier in this tar or, for a non-base layer, in a parent layer), ADS (a
// regular entry "<path>:<stream>[:$DATA]" of an earlier entry of this layer), whiteouts.
// Refused with InvalidArgument "windows layer entry <name>: <reason>": absolute names, ".."
// components, NUL or backslash in names, entries outside the prefixes above, Hives/ in a base
// layer, whiteouts in a base layer ("base layer cannot have tombstones"), duplicate names,
// ':' outside the last component, device/fifo entries, hard links out of Files/UtilityVM,
// to a directory, to a stream, or to nothing, and writes through a symlink. A base layer
// missing one of the five hives fails at the end, naming the missing path. UtilityVM/Files/
// is accepted in a non-base layer too (servicing updates of the utility VM image).
// Whiteouts are mknod(2)ed, so a layer with whiteouts needs CAP_MKNOD.
// Durability: the index and layerchain.json are written atomically and fsynced; file data is
// not (the caller syncs the filesystem, e.g. SyncFilesystemOf, before committing the layer).
// Guarantees: nothing is written outside `layer_dir` (openat2 RESOLVE_BENEATH without
// symlinks, as ApplyLayer). On error the directory holds a partial layer without
// layerchain.json; the caller discards it. Not thread-safe for one `layer_dir`.
Result<WindowsLayerStats> ApplyWindowsLayer(ByteReader& tar, const std::filesystem::path& layer_dir,
                                            const WindowsLayerOptions& options);

// Writes the tar of a layer directory made by ApplyWindowsLayer to `sink` (ending with the
// two zero blocks): the entries of the original tar in their original order with the same
// names, types, header mode/uid/gid/uname/gname, mtimes, link targets, xattrs and PAX records;
// file data from the tree, stream data from .strata/streams. Deterministic.
// Errors: FailedPrecondition when the dir has no index or is incomplete (no
// layerchain.json), InvalidArgument for a damaged index, and "file changed" when a file's
// size differs from the index. On error the sink has received a partial archive.
Result<WindowsLayerStats> WriteWindowsLayer(const std::filesystem::path& layer_dir, const ByteSink& sink);

// The index of a complete layer dir, in tar order: what a union view needs for Windows
// attributes, security descriptors and streams of the paths in Files/. Errors as
// WriteWindowsLayer's (FailedPrecondition for an incomplete or foreign dir).
Result<std::vector<WindowsLayerEntry>> ReadWindowsLayerEntries(const std::filesystem::path& layer_dir);

}  // namespace strata::archive
