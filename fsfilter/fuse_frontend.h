// The FUSE front end: serves a UnionFilesystem through libfuse3's low-level API with a
// leader/follower thread pool (session_loop.h), long entry/attr timeouts (the view is exclusive: nothing
// else changes the layers while mounted), writeback cache, splice and readdirplus, and kernel
// FUSE passthrough for open files where the kernel allows it.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "fsfilter/union_filesystem.h"

namespace strata::fsfilter {

enum class FusePassthroughMode {
  kOff,
  // Files of the upper layer, and every file of a read-only view. Lower files of a writable
  // view go through the server, so a copy-up never meets readers pinned to the lower file.
  kOn,
  // Lower files of a writable view too. A write-open that must copy up a file whose lower
  // copy is open elsewhere then fails with ETXTBSY (kernel overlayfs would allow it).
  kAll,
};

struct FuseMountOptions {
  std::filesystem::path mountpoint;
  std::string fsname = "strata-fsfilter";  // the "source" column of /proc/mounts
  bool allow_other = false;                // implies default_permissions
  bool default_permissions = false;
  bool read_only = false;
  bool debug = false;                      // libfuse request tracing on stderr
  bool writeback_cache = true;
  bool splice = true;                      // splice read/write between /dev/fuse and files
  // Kernel FUSE passthrough (fuse_passthrough.h) when the kernel offers it and we run as
  // root: reads and writes of open files bypass this process; the writeback cache is then
  // off. See FusePassthroughMode.
  FusePassthroughMode passthrough = FusePassthroughMode::kOn;
  unsigned max_threads = 16;               // request threads, the reading one included
  double timeout_seconds = 86400;          // entry and attribute cache lifetime
  // Mount flags forwarded to the kernel mount (nosuid, nodev, noexec, noatime, ...). When
  // root mounts, dev and suid are on unless these say nodev/nosuid.
  std::vector<std::string> mount_flags;
};

class FuseServer {
 public:
  // Creates the session and mounts it. Nothing is served until Serve(). Errors name the
  // mount point. `fs` must outlive the server.
  static Result<std::unique_ptr<FuseServer>> Mount(UnionFilesystem& fs, const FuseMountOptions& options);
  // Unmounts (if still mounted) and frees the session.
  ~FuseServer();
  FuseServer(const FuseServer&) = delete;
  FuseServer& operator=(const FuseServer&) = delete;

  // Serves requests until the file system is unmounted or SIGINT/SIGTERM/SIGHUP arrives.
  // Installs signal handlers for its duration. Returns when done; the mount is gone then.
  Status Serve();

 private:
  struct State;
  explicit FuseServer(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace strata::fsfilter
