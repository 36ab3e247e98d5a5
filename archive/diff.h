// Diff (containerd's diff.Comparer for overlayfs): turns a snapshot's overlay upper dir —
// the changes of that snapshot — into an OCI layer tar. The inverse of ApplyLayer with
// overlay_whiteouts: overlay whiteout devices become ".wh.<name>" files and opaque
// directories get a ".wh..wh..opq" marker.
#pragma once

#include <cstdint>
#include <filesystem>

#include "archive/tar_writer.h"
#include "base/error.h"

namespace strata::archive {

struct DiffOptions {
  // The opaque/redirect/metacopy markers are user.overlay.* (overlay mounted with
  // -o userxattr) instead of trusted.overlay.*.
  bool userxattr = false;
};

struct DiffStats {
  uint64_t entries = 0;    // tar entries written (whiteout and opaque markers included)
  uint64_t bytes = 0;      // regular file content bytes written
  uint64_t whiteouts = 0;  // ".wh.<name>" and ".wh..wh..opq" markers
};

// Writes the OCI layer tar of overlayfs upper dir `upper` to `sink`, including the two
// end-of-archive blocks.
//
// Output is deterministic: a depth-first walk (symlinks never followed) with children in
// bytewise name order, a directory before its children, the root itself not emitted,
// names relative ("a/b", directories "a/"). Per entry: mode & 07777, numeric uid/gid (no
// uname/gname), mtime with nanoseconds, xattrs as SCHILY.xattr records except every
// trusted.overlay.* and user.overlay.* one. A whiteout (char device 0:0) becomes an empty
// file "<dir>/.wh.<name>" (mode 0, owner 0:0); an opaque directory (overlay.opaque="y") is
// followed directly by "<dir>/.wh..wh..opq". A non-directory inode with st_nlink > 1 seen
// before in this walk becomes a hard link to its first path. Sockets are skipped.
//
// REQUIRES: the upper dir is not being modified (the overlay is unmounted or the container
// frozen); a regular file whose length differs from its stat size fails with
// "file changed while diffing". Errors name the path: InvalidArgument for a mount point
// inside `upper` or an overlay redirect/metacopy xattr (not representable in a layer);
// system call errors as ErrnoFail. On error the sink has received a partial archive.
Result<DiffStats> WriteOverlayDiff(const std::filesystem::path& upper, const ByteSink& sink,
                                   const DiffOptions& options = {});

}  // namespace strata::archive
