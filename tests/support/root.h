// Root-only tests and throwaway strata roots.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>
#include <optional>
#include <string_view>

#include <gtest/gtest.h>

#include "base/error.h"
#include "base/file.h"

// Skips the current test (or fixture SetUp) unless the process runs as root: mounts,
// device nodes and chown need it, and skipping keeps `ctest` green for ordinary users.
#define STRATA_REQUIRE_ROOT()                                                              \
  do {                                                                                     \
    if (::geteuid() != 0) {                                                                \
      GTEST_SKIP() << "this test needs root (euid 0) for mounts/devices/ownership; "       \
                      "run it as root (e.g. sudo ctest) to include it";                    \
    }                                                                                      \
  } while (0)

namespace strata::test_support {

// A fresh, empty directory to use as a strata root, removed on destruction after everything
// mounted beneath it has been detached. Move-only.
class TempRoot {
 public:
  // Creates "<$TMPDIR or /tmp>/<prefix>-XXXXXX".
  static Result<TempRoot> Create(std::string_view prefix = "strata-root");
  ~TempRoot();
  TempRoot(TempRoot&&) noexcept = default;
  TempRoot& operator=(TempRoot&& other) noexcept;
  TempRoot(const TempRoot&) = delete;
  TempRoot& operator=(const TempRoot&) = delete;

  const std::filesystem::path& path() const { return dir_->path(); }
  // path() / relative.
  std::filesystem::path operator/(std::string_view relative) const { return path() / relative; }

  // Keeps the directory (mounts are still detached) for post-mortem; returns its path.
  std::filesystem::path Release();

 private:
  explicit TempRoot(TempDir dir) : dir_(std::move(dir)) {}
  void Teardown();

  std::optional<TempDir> dir_;
};

// Detaches (umount2 MNT_DETACH) every mount whose mount point is `dir` or lies beneath it,
// deepest first, as listed in /proc/self/mountinfo. Returns how many were detached.
// Best effort: a mount that cannot be detached is reported in the error after trying all.
Result<int> UnmountAllBeneath(const std::filesystem::path& dir);

// The loop devices ("loop3") whose backing file lies under `dir`: what a test that attaches
// loop devices must not leave behind.
std::vector<std::string> LoopsBackedUnder(const std::filesystem::path& dir);

}  // namespace strata::test_support
