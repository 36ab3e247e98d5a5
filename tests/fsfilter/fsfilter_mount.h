// A strata-fsfilter mount owned by a test: started in the foreground (-f) as a child, and
// unmounted and reaped on destruction whatever happened, so a failing test never leaves a
// mount or a daemon behind. Needs STRATA_FSFILTER_BIN defined by the test target.
#pragma once

#include <sys/mount.h>
#include <sys/statfs.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "base/mounts.h"
#include "tests/support/process.h"

namespace strata::fsfilter::testing {

using namespace std::chrono_literals;

inline constexpr long kFuseSuperMagic = 0x65735546;

inline bool IsFuseMount(const std::filesystem::path& path) {
  struct statfs st{};
  return ::statfs(path.c_str(), &st) == 0 && st.f_type == kFuseSuperMagic;
}

inline bool IsMountPoint(const std::filesystem::path& path) {
  auto mounts = MountPointsAtOrBeneath(path);
  if (!mounts) return false;
  for (const auto& mount : *mounts)
    if (mount == std::filesystem::canonical(path)) return true;
  return false;
}

// Unmounts on destruction (lazily if busy), so a failing test never leaves a mount behind.
class UnmountGuard {
 public:
  explicit UnmountGuard(std::filesystem::path path) : path_(std::move(path)) {}
  ~UnmountGuard() { Unmount(); }
  void Unmount() {
    if (path_.empty()) return;
    if (IsMountPoint(path_) && ::umount2(path_.c_str(), 0) != 0) ::umount2(path_.c_str(), MNT_DETACH);
    path_.clear();
  }

 private:
  std::filesystem::path path_;
};

// strata-fsfilter -f serving `mnt`, owned by pid: unmounted and reaped on destruction.
class FsfilterMount {
 public:
  void Start(const std::vector<std::string>& args, const std::filesystem::path& mnt, const std::filesystem::path& log) {
    mnt_ = mnt;
    test_support::ChildOptions options;
    options.argv = {STRATA_FSFILTER_BIN, "-f"};
    options.argv.insert(options.argv.end(), args.begin(), args.end());
    options.log_path = log;
    auto child = test_support::Child::Start(options);
    ASSERT_TRUE(child.has_value()) << child.error().ToString();
    child_ = std::move(*child);
    guard_.emplace(mnt);
    for (auto deadline = std::chrono::steady_clock::now() + 10s; std::chrono::steady_clock::now() < deadline;) {
      if (IsFuseMount(mnt)) return;
      ASSERT_TRUE(child_.Running()) << "strata-fsfilter exited: " << child_.LogTail();
      std::this_thread::sleep_for(20ms);
    }
    FAIL() << "not mounted after 10s: " << child_.LogTail();
  }

  // Unmounts and waits for the daemon to exit by itself; returns its exit code.
  int Stop() {
    guard_.reset();
    auto code = child_.Wait(10s);
    if (!code) return child_.Stop();
    return *code;
  }

  // SIGTERM to the daemon, which should unmount and exit; its exit code. `still_mounted`
  // tells whether the mount outlived it (the guard then unmounts it).
  int Terminate(bool* still_mounted) {
    const int code = child_.Stop(10s);
    *still_mounted = IsMountPoint(mnt_);
    guard_.reset();
    return code;
  }

  ~FsfilterMount() {
    guard_.reset();
    if (child_.pid() > 0 && child_.Running()) (void)child_.Wait(5s);
  }

 private:
  std::filesystem::path mnt_;
  test_support::Child child_;
  std::optional<UnmountGuard> guard_;
};

}  // namespace strata::fsfilter::testing
