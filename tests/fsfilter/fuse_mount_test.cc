// strata-fsfilter mounted for real: file operations through the kernel, the upper dir they
// leave (compared with kernel overlayfs on the same operations), the read-only and
// mount.fuse3 forms, and daemonisation. Needs root and /dev/fuse; skips otherwise.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "base/mounts.h"
#include "tests/fsfilter/fsfilter_mount.h"
#include "tests/fsfilter/layer_fixture.h"
#include "tests/support/process.h"
#include "tests/support/root.h"
#include "tests/support/tree_compare.h"

namespace strata::fsfilter {
namespace {

using namespace std::chrono_literals;
using testing::Exists;
using testing::FsfilterMount;
using testing::IsFuseMount;
using testing::IsMountPoint;
using testing::UnmountGuard;
using testing::GetXattr;
using testing::IsWhiteoutAt;
using testing::LayerDirs;
using testing::Lstat;
using testing::ReadText;
using testing::WriteText;

class FuseMountTest : public ::testing::Test {
 protected:
  void SetUp() override {
    STRATA_REQUIRE_ROOT();
    if (::access("/dev/fuse", R_OK | W_OK) != 0) GTEST_SKIP() << "no /dev/fuse";
  }

  std::string LowerDirs() const { return "lowerdir=" + dirs_.l1().string() + ":" + dirs_.l2().string(); }
  std::string WritableOptions() const {
    return LowerDirs() + ",upperdir=" + dirs_.upper().string() + ",workdir=" + dirs_.work().string();
  }

  LayerDirs dirs_;
};

// The same scenario through any mounted union at `mnt`; errors are recorded as strings.
std::vector<std::string> RunScenario(const std::filesystem::path& mnt) {
  std::vector<std::string> results;
  auto check = [&](bool ok, const std::string& what) {
    results.push_back(what + (ok ? ": ok" : std::string(": ") + std::strerror(errno)));
  };
  results.push_back("read d/a: " + ReadText(mnt / "d" / "a"));
  {
    int fd = ::open((mnt / "d" / "a").c_str(), O_WRONLY | O_APPEND);
    check(fd >= 0 && ::write(fd, "more\n", 5) == 5, "append d/a");
    if (fd >= 0) ::close(fd);
  }
  check(::unlink((mnt / "d" / "b").c_str()) == 0, "unlink d/b");
  check(::unlink((mnt / "dir" / "x").c_str()) == 0, "unlink dir/x");
  check(::rmdir((mnt / "dir").c_str()) == 0, "rmdir dir");
  check(::mkdir((mnt / "dir").c_str(), 0750) == 0, "mkdir dir");
  check(::mkdir((mnt / "fresh").c_str(), 0755) == 0, "mkdir fresh");
  WriteText(mnt / "fresh" / "new.txt", "new\n");
  check(::rename((mnt / "ldir").c_str(), (mnt / "ldir2").c_str()) == 0, "rename ldir");
  check(::rename((mnt / "d" / "c").c_str(), (mnt / "c_moved").c_str()) == 0, "rename d/c");
  check(::symlink("d/a", (mnt / "sym").c_str()) == 0, "symlink");
  check(::link((mnt / "hard").c_str(), (mnt / "hard2").c_str()) == 0, "link hard");
  check(::chmod((mnt / "mode").c_str(), 0600) == 0, "chmod mode");
  check(::truncate((mnt / "trunc").c_str(), 3) == 0, "truncate trunc");
  check(::mkfifo((mnt / "fifo").c_str(), 0644) == 0, "mkfifo");
  check(::lsetxattr((mnt / "xattr").c_str(), "user.k", "v", 1, 0) == 0, "setxattr");
  std::set<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(mnt)) names.insert(entry.path().filename());
  std::string listing = "root:";
  for (const auto& name : names) listing += " " + name;
  results.push_back(listing);
  return results;
}

void PopulateScenarioLayers(const LayerDirs& dirs) {
  WriteText(dirs.l2() / "d" / "a", "hello\n");
  WriteText(dirs.l2() / "d" / "b", "b\n");
  WriteText(dirs.l1() / "d" / "c", "c\n");
  WriteText(dirs.l2() / "dir" / "x", "x\n");
  WriteText(dirs.l2() / "ldir" / "y", "y\n");
  WriteText(dirs.l2() / "hard", "hard\n");
  WriteText(dirs.l2() / "mode", "mode\n");
  WriteText(dirs.l2() / "trunc", "truncate me\n");
  WriteText(dirs.l1() / "xattr", "x\n");
}

TEST_F(FuseMountTest, FileOperationsLeaveAnOverlayFormUpper) {
  PopulateScenarioLayers(dirs_);
  FsfilterMount mount;
  ASSERT_NO_FATAL_FAILURE(mount.Start({"-o", WritableOptions(), dirs_.mnt().string()}, dirs_.mnt(),
                                      dirs_.root() / "fsfilter.log"));
  const struct stat before = Lstat(dirs_.mnt() / "mode");
  std::vector<std::string> results = RunScenario(dirs_.mnt());
  EXPECT_EQ(Lstat(dirs_.mnt() / "mode").st_ino, before.st_ino) << "st_ino kept across copy-up";
  EXPECT_EQ(Lstat(dirs_.mnt() / "hard").st_ino, Lstat(dirs_.mnt() / "hard2").st_ino);
  EXPECT_EQ(ReadText(dirs_.mnt() / "d" / "a"), "hello\nmore\n");
  EXPECT_EQ(ReadText(dirs_.mnt() / "trunc"), "tru");
  EXPECT_EQ(ReadText(dirs_.mnt() / "c_moved"), "c\n");
  EXPECT_TRUE(std::filesystem::is_empty(dirs_.mnt() / "dir"));
  EXPECT_EQ(mount.Stop(), 0);

  std::string joined;
  for (const auto& line : results) joined += line + "\n";
  EXPECT_NE(joined.find("rename ldir: Invalid cross-device link"), std::string::npos) << joined;
  EXPECT_EQ(ReadText(dirs_.upper() / "d" / "a"), "hello\nmore\n");
  EXPECT_TRUE(IsWhiteoutAt(dirs_.upper() / "d" / "b"));
  EXPECT_TRUE(IsWhiteoutAt(dirs_.upper() / "d" / "c"));
  EXPECT_EQ(GetXattr(dirs_.upper() / "dir", "trusted.overlay.opaque"), "y");
  EXPECT_FALSE(GetXattr(dirs_.upper() / "fresh", "trusted.overlay.opaque").has_value());
  EXPECT_EQ(ReadText(dirs_.upper() / "fresh" / "new.txt"), "new\n");
  EXPECT_EQ(Lstat(dirs_.upper() / "mode").st_mode & 07777, 0600u);
  EXPECT_EQ(GetXattr(dirs_.upper() / "xattr", "user.k"), "v");
  EXPECT_FALSE(Exists(dirs_.upper() / "ldir"));
  EXPECT_EQ(ReadText(dirs_.l2() / "d" / "a"), "hello\n") << "lower layers are never written";
}

TEST_F(FuseMountTest, UpperMatchesKernelOverlayfs) {
  // Kernel overlayfs on a copy of the same layers is the reference.
  LayerDirs kernel_dirs;
  PopulateScenarioLayers(dirs_);
  PopulateScenarioLayers(kernel_dirs);
  const std::string kernel_options = "lowerdir=" + kernel_dirs.l1().string() + ":" + kernel_dirs.l2().string() +
                                     ",upperdir=" + kernel_dirs.upper().string() +
                                     ",workdir=" + kernel_dirs.work().string();
  if (::mount("overlay", kernel_dirs.mnt().c_str(), "overlay", 0, kernel_options.c_str()) != 0)
    GTEST_SKIP() << "kernel overlayfs unavailable: " << std::strerror(errno);
  std::vector<std::string> kernel_results;
  {
    UnmountGuard kernel_guard(kernel_dirs.mnt());
    kernel_results = RunScenario(kernel_dirs.mnt());
  }
  FsfilterMount mount;
  ASSERT_NO_FATAL_FAILURE(mount.Start({"-o", WritableOptions(), dirs_.mnt().string()}, dirs_.mnt(),
                                      dirs_.root() / "fsfilter.log"));
  std::vector<std::string> our_results = RunScenario(dirs_.mnt());
  EXPECT_EQ(mount.Stop(), 0);
  EXPECT_EQ(our_results, kernel_results);
  EXPECT_TRUE(test_support::TreesEqual(kernel_dirs.upper(), dirs_.upper()));
  EXPECT_EQ(GetXattr(dirs_.upper() / "dir", "trusted.overlay.opaque"),
            GetXattr(kernel_dirs.upper() / "dir", "trusted.overlay.opaque"));
  EXPECT_EQ(GetXattr(dirs_.upper() / "fresh", "trusted.overlay.opaque"),
            GetXattr(kernel_dirs.upper() / "fresh", "trusted.overlay.opaque"));
}

// Kernel FUSE passthrough (on by default as root where the kernel has it): files read and
// written straight by the kernel must show the same bytes as through the server, and a
// handle opened on a lower file before a copy-up sees what is written after it (lower files
// of a writable view go through the server unless passthrough=all, which refuses that
// write-open with ETXTBSY instead).
TEST_F(FuseMountTest, PassthroughModesKeepContentAndCopyUpSemantics) {
  std::string big(3 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + (i * 7 + i / 4096) % 26);
  for (const std::string mode : {"1", "all", "0"}) {
    SCOPED_TRACE("passthrough=" + mode);
    LayerDirs dirs;
    WriteText(dirs.l2() / "big", big);
    WriteText(dirs.l2() / "log", "one\n");
    FsfilterMount mount;
    ASSERT_NO_FATAL_FAILURE(mount.Start({"-o",
                                         "lowerdir=" + dirs.l1().string() + ":" + dirs.l2().string() +
                                             ",upperdir=" + dirs.upper().string() + ",workdir=" +
                                             dirs.work().string() + ",passthrough=" + mode,
                                         dirs.mnt().string()},
                                        dirs.mnt(), dirs.root() / "fsfilter.log"));
    EXPECT_TRUE(ReadText(dirs.mnt() / "big") == big);
    // A new upper file: written and read back (through mmap too).
    WriteText(dirs.mnt() / "fresh", big.substr(0, 100000));
    EXPECT_TRUE(ReadText(dirs.mnt() / "fresh") == big.substr(0, 100000));
    {
      const int fd = ::open((dirs.mnt() / "fresh").c_str(), O_RDONLY);
      ASSERT_GE(fd, 0) << std::strerror(errno);
      void* map = ::mmap(nullptr, 100000, PROT_READ, MAP_SHARED, fd, 0);
      ASSERT_NE(map, MAP_FAILED) << std::strerror(errno);
      EXPECT_EQ(std::string_view(static_cast<const char*>(map), 100000), big.substr(0, 100000));
      ::munmap(map, 100000);
      ::close(fd);
    }
    // A reader of the lower file, then a writer that copies it up.
    const int reader = ::open((dirs.mnt() / "log").c_str(), O_RDONLY);
    ASSERT_GE(reader, 0) << std::strerror(errno);
    const int writer = ::open((dirs.mnt() / "log").c_str(), O_WRONLY | O_APPEND);
    if (mode == "all") {
      EXPECT_EQ(writer, -1);
      EXPECT_EQ(errno, ETXTBSY);
    } else {
      ASSERT_GE(writer, 0) << std::strerror(errno);
      EXPECT_EQ(::write(writer, "two\n", 4), 4);
      ::close(writer);
      char buffer[16] = {};
      EXPECT_EQ(::pread(reader, buffer, sizeof buffer, 0), 8);
      EXPECT_EQ(std::string(buffer), "one\ntwo\n") << "the reader sees the write made after copy-up";
    }
    ::close(reader);
    EXPECT_EQ(mount.Stop(), 0);
    EXPECT_TRUE(ReadText(dirs.upper() / "fresh") == big.substr(0, 100000));
  }
}

TEST_F(FuseMountTest, ReadOnlyViewInTheMountHelperForm) {
  WriteText(dirs_.l2() / "f", "lower\n");
  WriteText(dirs_.l1() / ".wh.f", "");
  WriteText(dirs_.l1() / "g", "top\n");
  ASSERT_EQ(::mknod((dirs_.l2() / "null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
  FsfilterMount mount;
  ASSERT_NO_FATAL_FAILURE(
      mount.Start({"myimage", dirs_.mnt().string(), "-o", LowerDirs() + ",rw,dev,suid,noatime,threaded=1,fsync=0"},
                  dirs_.mnt(), dirs_.root() / "fsfilter.log"));
  EXPECT_FALSE(Exists(dirs_.mnt() / "f"));
  EXPECT_FALSE(Exists(dirs_.mnt() / ".wh.f"));
  EXPECT_EQ(ReadText(dirs_.mnt() / "g"), "top\n");
  EXPECT_EQ(::open((dirs_.mnt() / "g").c_str(), O_WRONLY), -1);
  EXPECT_EQ(errno, EROFS);
  // Device nodes work (a root mount is "dev" by default, as a container root needs).
  const int null_fd = ::open((dirs_.mnt() / "null").c_str(), O_WRONLY);
  EXPECT_GE(null_fd, 0) << std::strerror(errno);
  if (null_fd >= 0) {
    EXPECT_EQ(::write(null_fd, "x", 1), 1);
    ::close(null_fd);
  }
  std::string mountinfo = ReadText("/proc/self/mountinfo");
  EXPECT_NE(mountinfo.find("fuse.strata-fsfilter myimage"), std::string::npos);
  EXPECT_EQ(mount.Stop(), 0);
}

TEST_F(FuseMountTest, DaemonisesOnlyOnceMountedAndExitsOnUnmount) {
  WriteText(dirs_.l2() / "f", "x");
  std::string output;
  UnmountGuard guard(dirs_.mnt());
  auto rc = test_support::RunCommand({STRATA_FSFILTER_BIN, "-o", LowerDirs(), dirs_.mnt().string()}, &output);
  ASSERT_TRUE(rc.has_value());
  ASSERT_EQ(*rc, 0) << output;
  EXPECT_TRUE(IsFuseMount(dirs_.mnt())) << "mounted when the parent returns";
  EXPECT_EQ(ReadText(dirs_.mnt() / "f"), "x");
  guard.Unmount();
  EXPECT_FALSE(IsMountPoint(dirs_.mnt()));

  auto bad = test_support::RunCommand(
      {STRATA_FSFILTER_BIN, "-o", "lowerdir=/nonexistent/strata-lower", dirs_.mnt().string()}, &output);
  ASSERT_TRUE(bad.has_value());
  EXPECT_NE(*bad, 0);
  EXPECT_NE(output.find("/nonexistent/strata-lower"), std::string::npos) << output;
  auto bad_option = test_support::RunCommand(
      {STRATA_FSFILTER_BIN, "-o", LowerDirs() + ",uidmapping=0:1000:1", dirs_.mnt().string()}, &output);
  ASSERT_TRUE(bad_option.has_value());
  EXPECT_NE(*bad_option, 0);
  EXPECT_NE(output.find("uidmapping"), std::string::npos) << output;
  EXPECT_FALSE(IsMountPoint(dirs_.mnt()));
}


// fchmod/fchown/futimens on an open file change its upper copy, also after a rename, and
// for a lower file once its open copied it up; the lower file stays as it was.
TEST_F(FuseMountTest, AttributeChangesThroughAnOpenFileReachTheUpperCopy) {
  WriteText(dirs_.l2() / "lower", "lower\n");
  FsfilterMount mount;
  ASSERT_NO_FATAL_FAILURE(mount.Start({"-o", WritableOptions(), dirs_.mnt().string()}, dirs_.mnt(),
                                      dirs_.root() / "fsfilter.log"));
  const int made = ::open((dirs_.mnt() / "made").c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
  ASSERT_GE(made, 0) << std::strerror(errno);
  ASSERT_EQ(::rename((dirs_.mnt() / "made").c_str(), (dirs_.mnt() / "renamed").c_str()), 0);
  EXPECT_EQ(::fchmod(made, 0600), 0) << std::strerror(errno);
  EXPECT_EQ(::fchown(made, 1234, 5678), 0) << std::strerror(errno);
  const struct timespec times[2] = {{1000, 0}, {2000, 5}};
  EXPECT_EQ(::futimens(made, times), 0) << std::strerror(errno);
  ::close(made);
  const int lower = ::open((dirs_.mnt() / "lower").c_str(), O_WRONLY | O_APPEND);
  ASSERT_GE(lower, 0) << std::strerror(errno);
  EXPECT_EQ(::fchmod(lower, 0640), 0) << std::strerror(errno);
  ::close(lower);
  EXPECT_EQ(mount.Stop(), 0);

  const struct stat renamed = Lstat(dirs_.upper() / "renamed");
  EXPECT_EQ(renamed.st_mode & 07777, 0600u);
  EXPECT_EQ(renamed.st_uid, 1234u);
  EXPECT_EQ(renamed.st_gid, 5678u);
  EXPECT_EQ(renamed.st_mtim.tv_sec, 2000);
  EXPECT_EQ(renamed.st_mtim.tv_nsec, 5);
  EXPECT_EQ(Lstat(dirs_.upper() / "lower").st_mode & 07777, 0640u);
  EXPECT_EQ(Lstat(dirs_.l2() / "lower").st_mode & 07777, 0644u) << "the lower file is untouched";
}

// The request loop (fsfilter/session_loop.h) under clients running side by side: reads of
// lower files answered inline, copy-ups (one of a 48 MiB file, long enough for the others
// to run beside it) and creations handed to workers. With 1, 2 and the default 16 threads:
// one thread alone must lead and work in turn, two must hand over without losing a request.
TEST_F(FuseMountTest, ConcurrentClientsGetEveryAnswerRightAtAnyThreadCount) {
  constexpr int kClients = 6;
  constexpr int kFilesPerClient = 40;
  for (int client = 0; client < kClients; ++client) {
    for (int i = 0; i < kFilesPerClient; ++i) {
      WriteText(dirs_.l2() / fmt::format("c{}", client) / fmt::format("f{}", i), fmt::format("lower {} {}\n", client, i));
    }
  }
  std::string big(48 << 20, '\0');
  for (size_t i = 0; i < big.size(); i += 4096) big[i] = static_cast<char>('a' + i / 4096 % 26);
  WriteText(dirs_.l2() / "big", big);

  for (const std::string threads : {"threads=1", "threads=2", ""}) {
    SCOPED_TRACE(threads.empty() ? "default threads" : threads);
    std::filesystem::remove_all(dirs_.upper());
    std::filesystem::remove_all(dirs_.work());
    std::filesystem::create_directories(dirs_.upper());
    std::filesystem::create_directories(dirs_.work());
    FsfilterMount mount;
    ASSERT_NO_FATAL_FAILURE(mount.Start({"-o", WritableOptions() + (threads.empty() ? "" : "," + threads),
                                         dirs_.mnt().string()},
                                        dirs_.mnt(), dirs_.root() / "fsfilter.log"));
    std::vector<std::string> errors(kClients + 1);
    std::vector<std::thread> clients;
    clients.emplace_back([&] {  // one long copy-up: append to the big lower file
      const int fd = ::open((dirs_.mnt() / "big").c_str(), O_WRONLY | O_APPEND);
      if (fd < 0 || ::write(fd, "!", 1) != 1) errors[kClients] = std::string("append big: ") + std::strerror(errno);
      if (fd >= 0) ::close(fd);
    });
    for (int client = 0; client < kClients; ++client) {
      clients.emplace_back([&, client] {
        const std::filesystem::path dir = dirs_.mnt() / fmt::format("c{}", client);
        for (int round = 0; round < 3 && errors[client].empty(); ++round) {
          for (int i = 0; i < kFilesPerClient; ++i) {
            const std::filesystem::path file = dir / fmt::format("f{}", i);
            std::string expected = fmt::format("lower {} {}\n", client, i);
            if (i % 4 == 0) expected += std::string(static_cast<size_t>(round), '+');
            if (ReadText(file) != expected) {
              errors[client] = fmt::format("round {}: {} reads \"{}\"", round, file.string(), ReadText(file));
              return;
            }
            if (i % 4 == 0) {  // a copy-up in round 0, then appends to the upper file
              const int fd = ::open(file.c_str(), O_WRONLY | O_APPEND);
              if (fd < 0 || ::write(fd, "+", 1) != 1) errors[client] = file.string() + ": " + std::strerror(errno);
              if (fd >= 0) ::close(fd);
            }
            struct stat st {};
            if (::lstat(file.c_str(), &st) != 0 || st.st_size != static_cast<off_t>(expected.size() + (i % 4 == 0))) {
              errors[client] = fmt::format("round {}: {} has size {}", round, file.string(), st.st_size);
              return;
            }
          }
          WriteText(dir / fmt::format("new{}", round), "made\n");
        }
      });
    }
    for (std::thread& client : clients) client.join();
    for (const std::string& error : errors) EXPECT_EQ(error, "");
    EXPECT_EQ(std::filesystem::file_size(dirs_.mnt() / "big"), big.size() + 1);
    EXPECT_EQ(ReadText(dirs_.mnt() / "c0" / "new2"), "made\n");
    EXPECT_EQ(mount.Stop(), 0);
    EXPECT_EQ(ReadText(dirs_.upper() / "c5" / "f36"), "lower 5 36\n+++");
  }
}

// SIGTERM ends the daemon and its mount, idle or right after a burst of requests.
TEST_F(FuseMountTest, SigtermUnmountsAndExits) {
  for (int i = 0; i < 200; ++i) WriteText(dirs_.l2() / "d" / std::to_string(i), "x");
  for (const bool busy : {false, true}) {
    SCOPED_TRACE(busy ? "after requests" : "idle");
    FsfilterMount mount;
    ASSERT_NO_FATAL_FAILURE(mount.Start({"-o", WritableOptions(), dirs_.mnt().string()}, dirs_.mnt(),
                                        dirs_.root() / "fsfilter.log"));
    if (busy) {
      for (int i = 0; i < 200; ++i) EXPECT_EQ(ReadText(dirs_.mnt() / "d" / std::to_string(i)), "x");
    }
    bool still_mounted = true;
    EXPECT_EQ(mount.Terminate(&still_mounted), 0);
    EXPECT_FALSE(still_mounted);
  }
}

}  // namespace
}  // namespace strata::fsfilter
