// Child, RunCommand and TempRoot: real processes, real mounts.
#include <signal.h>
#include <sys/mount.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "base/file.h"
#include "tests/support/process.h"
#include "tests/support/root.h"

namespace strata::test_support {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

bool ProcessExists(pid_t pid) { return ::kill(pid, 0) == 0 || errno != ESRCH; }

bool IsMountPoint(const fs::path& path) {
  std::ifstream mountinfo("/proc/self/mountinfo");
  std::string line;
  while (std::getline(mountinfo, line)) {
    if (line.find(" " + path.native() + " ") != std::string::npos) return true;
  }
  return false;
}

TEST(ChildTest, CapturesOutputEnvironmentAndExitCode) {
  Result<TempDir> dir = TempDir::Create("strata-child-test");
  ASSERT_TRUE(dir) << dir.error().ToString();
  Result<Child> child = Child::Start({
      .argv = {"sh", "-c", "echo out $STRATA_TEST_VALUE; echo err >&2; pwd; exit 3"},
      .env = {{"STRATA_TEST_VALUE", "from-env"}},
      .log_path = dir->path() / "child.log",
      .working_dir = dir->path(),
  });
  ASSERT_TRUE(child) << child.error().ToString();
  Result<int> code = child->Wait(milliseconds(10000));
  ASSERT_TRUE(code) << code.error().ToString();
  EXPECT_EQ(*code, 3);
  std::string log = child->LogTail();
  EXPECT_NE(log.find("out from-env"), std::string::npos) << log;
  EXPECT_NE(log.find("err"), std::string::npos) << log;
  EXPECT_NE(log.find(dir->path().native()), std::string::npos) << log;
}

TEST(ChildTest, MissingProgramIsAnErrorAtStart) {
  Result<Child> child = Child::Start({.argv = {"strata-no-such-program-here"}});
  ASSERT_FALSE(child);
  EXPECT_EQ(child.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(child.error().message().find("strata-no-such-program-here"), std::string::npos);
}

TEST(ChildTest, StopTerminatesAndReaps) {
  Result<Child> child = Child::Start({.argv = {"sleep", "100"}});
  ASSERT_TRUE(child) << child.error().ToString();
  pid_t pid = child->pid();
  EXPECT_TRUE(child->Running());
  EXPECT_FALSE(child->Wait(milliseconds(50)));  // still running: Unavailable
  EXPECT_EQ(child->Stop(), 128 + SIGTERM);
  EXPECT_FALSE(child->Running());
  EXPECT_FALSE(ProcessExists(pid));
}

TEST(ChildTest, StopEscalatesToSigkill) {
  // The ignored SIGTERM disposition survives exec, so sleep ignores it too.
  Result<Child> child = Child::Start({.argv = {"sh", "-c", "trap '' TERM; exec sleep 100"}});
  ASSERT_TRUE(child) << child.error().ToString();
  std::this_thread::sleep_for(milliseconds(100));  // let the trap be installed
  pid_t pid = child->pid();
  EXPECT_EQ(child->Stop(milliseconds(200)), 128 + SIGKILL);
  EXPECT_FALSE(ProcessExists(pid));
}

TEST(ChildTest, DestructorStopsTheProcess) {
  pid_t pid = -1;
  {
    Result<Child> child = Child::Start({.argv = {"sleep", "100"}});
    ASSERT_TRUE(child) << child.error().ToString();
    pid = child->pid();
    Child moved = std::move(*child);  // ownership moves; the moved-from one must not kill
    EXPECT_TRUE(moved.Running());
  }
  EXPECT_FALSE(ProcessExists(pid));
}

TEST(RunCommandTest, ReturnsExitCodeAndOutput) {
  std::string output;
  Result<int> code = RunCommand({"sh", "-c", "echo hello; exit 7"}, &output);
  ASSERT_TRUE(code) << code.error().ToString();
  EXPECT_EQ(*code, 7);
  EXPECT_EQ(output, "hello\n");
}

TEST(TempRootTest, CreatesAndRemovesTheDirectory) {
  fs::path path;
  {
    Result<TempRoot> root = TempRoot::Create();
    ASSERT_TRUE(root) << root.error().ToString();
    path = root->path();
    EXPECT_TRUE(fs::is_directory(path));
    EXPECT_TRUE(fs::is_empty(path));
    ASSERT_TRUE(AtomicWriteFile(*root / "file", "x"));
  }
  EXPECT_FALSE(fs::exists(path));
}

TEST(TempRootTest, UnmountsNestedMountsOnTeardown) {
  STRATA_REQUIRE_ROOT();
  fs::path path;
  {
    Result<TempRoot> root = TempRoot::Create();
    ASSERT_TRUE(root) << root.error().ToString();
    path = root->path();
    fs::create_directories(*root / "outer");
    ASSERT_EQ(::mount("tmpfs", (*root / "outer").c_str(), "tmpfs", 0, "size=1m"), 0) << std::strerror(errno);
    fs::create_directories(*root / "outer/inner");
    ASSERT_EQ(::mount("tmpfs", (*root / "outer/inner").c_str(), "tmpfs", 0, "size=1m"), 0) << std::strerror(errno);
    ASSERT_TRUE(AtomicWriteFile(*root / "outer/inner/file", "on tmpfs"));
    EXPECT_TRUE(IsMountPoint(*root / "outer/inner"));
  }
  EXPECT_FALSE(IsMountPoint(path / "outer/inner"));
  EXPECT_FALSE(IsMountPoint(path / "outer"));
  EXPECT_FALSE(fs::exists(path));
}

TEST(TempRootTest, UnmountAllBeneathLeavesOtherMountsAlone) {
  STRATA_REQUIRE_ROOT();
  Result<TempRoot> root = TempRoot::Create();
  Result<TempRoot> neighbour = TempRoot::Create();
  ASSERT_TRUE(root && neighbour);
  ASSERT_EQ(::mount("tmpfs", root->path().c_str(), "tmpfs", 0, "size=1m"), 0) << std::strerror(errno);
  ASSERT_EQ(::mount("tmpfs", neighbour->path().c_str(), "tmpfs", 0, "size=1m"), 0) << std::strerror(errno);
  Result<int> detached = UnmountAllBeneath(root->path());
  ASSERT_TRUE(detached) << detached.error().ToString();
  EXPECT_EQ(*detached, 1);
  EXPECT_FALSE(IsMountPoint(root->path()));
  EXPECT_TRUE(IsMountPoint(neighbour->path()));
}

}  // namespace
}  // namespace strata::test_support
