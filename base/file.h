// File and directory helpers: RAII fds, durable atomic writes, safe joins of untrusted
// relative paths, self-cleaning temp dirs.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <string_view>

#include "base/error.h"

namespace strata {

// Owns one file descriptor; closes it on destruction. Move-only.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  // Gives up ownership without closing.
  int release();
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// An error for a failed system call: "<operation> "<path>": <strerror>" (or without the
// path), with the code derived from errno (ENOENT -> NotFound, ENOSPC -> Unavailable, ...).
std::unexpected<Error> ErrnoFail(int errnum, std::string_view operation, const std::filesystem::path& path);
std::unexpected<Error> ErrnoFail(int errnum, std::string_view operation);

// open(2) with O_CLOEXEC added; errors name the path (NotFound for ENOENT).
Result<UniqueFd> OpenFile(const std::filesystem::path& path, int flags, mode_t mode = 0644);
// Writes all of `data`, retrying short writes and EINTR.
Status WriteAll(int fd, std::string_view data);
// Reads a whole file.
Result<std::string> ReadFile(const std::filesystem::path& path);
// fsync(2) on a directory, so a rename or create inside it is durable.
Status FsyncDir(const std::filesystem::path& dir);
// syncfs(2) of the filesystem holding `path`: every file written there (a whole unpacked
// layer) reaches the disk in one call, as containerd does before a snapshot commit.
Status SyncFilesystemOf(const std::filesystem::path& path);

// Durably replaces `path` with `data`: writes a temp file in the same directory, fsyncs it,
// renames it over `path`, fsyncs the directory. Readers see the old or the new content,
// never a mix; a crash leaves at most a stray temp file (named ".<name>.tmp-*").
Status AtomicWriteFile(const std::filesystem::path& path, std::string_view data, mode_t mode = 0644);

// Joins `relative` (a path from an archive or a client) under `root`, lexically.
// Accepts "a/b", "./a", "a/../b" (stays inside); rejects (InvalidArgument, naming the input)
// absolute paths, empty paths, NUL bytes and any path whose ".." climbs above root.
// The result is root itself for "." and "a/..". Symlinks inside root are NOT resolved here:
// callers that open the result must still guard against symlink escapes (openat2
// RESOLVE_IN_ROOT or equivalent).
Result<std::filesystem::path> SafeJoin(const std::filesystem::path& root, std::string_view relative);

// A fresh directory (mkdtemp under $TMPDIR or /tmp) removed recursively on destruction.
// Move-only.
class TempDir {
 public:
  // `prefix` becomes the start of the directory name ("strata-test-XXXXXX").
  static Result<TempDir> Create(std::string_view prefix = "strata");
  ~TempDir();
  TempDir(TempDir&& other) noexcept;
  TempDir& operator=(TempDir&& other) noexcept;
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  // Keeps the directory on destruction (for post-mortem of a failed test).
  std::filesystem::path Release();

 private:
  explicit TempDir(std::filesystem::path path) : path_(std::move(path)) {}
  std::filesystem::path path_;
};

}  // namespace strata
