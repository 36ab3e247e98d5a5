// Applies an OCI layer tar onto a directory (a snapshot's upper dir, or a full tree),
// hardened against hostile layers: nothing is ever written outside `root`.
//
// Path rules (every entry name and hard-link target):
// - a leading "./" (repeated) is stripped; empty "" and "." components are dropped; a name
//   that is nothing but "." / "./" means root itself (only a directory entry may name it);
// - refused: empty names, NUL bytes, names of PATH_MAX (4096) bytes or more or of more
//   than 512 components (deep nesting), absolute names ("/etc/x" is refused, not stripped),
//   any ".." component.
// Resolution: the parent of every entry is opened below a root fd with openat2(2)
// RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS, falling back to (or, for
// missing parents, continuing with) a component-by-component openat(O_NOFOLLOW) walk. We
// chose RESOLVE_NO_SYMLINKS for the parent walk: a layer can never write through a symlink,
// whether it created it or a lower layer did; such an entry is refused with
// "path component <c> is a symlink". Tars made by diffing a real tree never go through a
// symlink, so legitimate layers are unaffected. Symlink targets are stored as data and never
// followed; the final component is always created/opened with O_NOFOLLOW semantics.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/io.h"

namespace strata::archive {

struct ApplyOptions {
  // Overlay form (for overlayfs upper/lower dirs): OCI whiteout ".wh.<name>" -> a 0/0
  // character device <name> (owned by the header uid/gid); ".wh..wh..opq" -> xattr
  // trusted.overlay.opaque="y" on the directory (user.overlay.opaque when `userxattr`).
  // Off: whiteouts remove the named path from `root` itself and an opaque marker removes
  // every child of its directory not written by this layer (applying a diff onto a full tree).
  bool overlay_whiteouts = true;
  bool userxattr = false;
  // chown to the tar uid/gid; only when running as root (skipped silently otherwise).
  bool same_owner = true;
};

struct ApplyStats {
  uint64_t entries = 0;    // tar entries processed (whiteout markers included)
  uint64_t bytes = 0;      // regular file content bytes written
  uint64_t whiteouts = 0;  // ".wh.<name>" and opaque markers
  // Directories created only because an entry's parent was missing ("a/b" for an entry
  // "a/b/c" with no "a/b" entry before it). Applied in overlay form over a parent chain,
  // such a directory hides nothing of the lower layers, so the caller checks the chain: a
  // lower symlink at one of these paths means the layer writes "through" it.
  std::vector<std::string> implied_dirs;
};

// Applies the tar read from `tar` under directory `root` (which must exist).
//
// Entries: regular files (content written in >= 256 KiB chunks), directories (a dir over an
// existing dir keeps it and updates metadata; anything over an existing dir removes that dir
// tree first; anything else over an existing entry unlinks it), symlinks, hard links (target
// must resolve under root by the same rules and be an existing non-directory), char/block
// devices and fifos (mknod; needs root). Metadata: owner (fchownat, no follow), then mode
// incl. setuid/setgid/sticky (chown clears setuid), xattrs, then mtime (atime = mtime).
// Directory times are set after the whole tar is applied, deepest first, so children
// written later do not disturb them. Missing parent directories are created 0755.
//
// Errors: InvalidArgument "layer entry <name>: <reason>" for refused entries (escape,
// absolute, "..", link outside root, write through a symlink, forged overlay xattr
// "trusted.overlay.*"/"user.overlay.*", unsupported type, ".wh." marker naming "." or "..");
// system call and reader errors carry the context "layer entry <name>".
// On error Apply leaves partial output under root (the caller removes the partial snapshot);
// it never writes outside root. Not thread-safe with respect to concurrent writers of root.
Result<ApplyStats> ApplyLayer(ByteReader& tar, const std::filesystem::path& root, const ApplyOptions& options = {});

namespace internal {
// Test hook: when true, behave as if openat2(2) returned ENOSYS (exercises the fallback walk).
void SetForceNoOpenat2(bool force);
}  // namespace internal

}  // namespace strata::archive
