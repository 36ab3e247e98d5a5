// RunProgram with real programs (/bin/sh): input, output, exit status, the deadline, the
// output bound, and a daemon left behind holding the pipes.
#include "base/subprocess.h"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "base/file.h"

namespace strata {
namespace {

using namespace std::chrono_literals;

Result<ProgramOutput> Sh(const std::string& script, RunOptions options = {}) {
  return RunProgram("/bin/sh", {"sh", "-c", script}, options);
}

TEST(RunProgram, PassesInputAndCapturesBothStreamsAndTheStatus) {
  auto ran = Sh("read line; echo \"got $line\"; echo oops >&2; exit 3", {.input = "hello\n"});
  ASSERT_TRUE(ran) << ran.error().ToString();
  EXPECT_EQ(ran->out, "got hello\n");
  EXPECT_EQ(ran->err, "oops\n");
  EXPECT_FALSE(ran->Succeeded());
  EXPECT_EQ(ran->HowItEnded(), "exit status 3");
  ran = Sh("true");
  ASSERT_TRUE(ran);
  EXPECT_TRUE(ran->Succeeded());
}

TEST(RunProgram, DeadlineKillsTheProgramAndWhatItStarted) {
  auto dir = TempDir::Create("strata-subprocess");
  ASSERT_TRUE(dir);
  const std::string pid_file = (dir->path() / "child.pid").string();
  const auto start = std::chrono::steady_clock::now();
  auto ran = Sh("sleep 60 & echo $! > " + pid_file + "; wait", {.timeout = 300ms});
  ASSERT_FALSE(ran);
  EXPECT_EQ(ran.error().code(), ErrorCode::kUnavailable);
  EXPECT_NE(ran.error().message().find("sh timed out after 300 ms"), std::string::npos) << ran.error().message();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 30s);
  auto child = ReadFile(pid_file);
  ASSERT_TRUE(child);
  const pid_t sleeper = std::stoi(*child);
  // Killed with its group (it may linger as a zombie of init for a moment).
  auto dead = [&] {
    auto stat = ReadFile("/proc/" + std::to_string(sleeper) + "/stat");
    return !stat || stat->find(") Z") != std::string::npos;
  };
  for (int i = 0; i < 200 && !dead(); ++i) std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(dead()) << "pid " << sleeper << " survived";
}

TEST(RunProgram, OutputBeyondTheBoundIsAnError) {
  auto ran = Sh("head -c 100000 /dev/zero", {.max_output = 1000});
  ASSERT_FALSE(ran);
  EXPECT_NE(ran.error().message().find("wrote more than 1000 bytes"), std::string::npos) << ran.error().message();
}

// A mount program daemonises: the call returns when the program exits, even though the
// daemon it left (in a session of its own) still holds stdout, and the daemon lives on.
TEST(RunProgram, ADaemonLeftBehindNeitherBlocksTheCallNorIsKilled) {
  auto dir = TempDir::Create("strata-subprocess");
  ASSERT_TRUE(dir);
  const std::string pid_file = (dir->path() / "daemon.pid").string();
  const auto start = std::chrono::steady_clock::now();
  auto ran = Sh("setsid sh -c 'echo $$ > " + pid_file + "; exec sleep 30' & sleep 0.2; echo mounted",
                {.timeout = 10s, .kill_group_on_exit = false});
  ASSERT_TRUE(ran) << ran.error().ToString();
  EXPECT_TRUE(ran->Succeeded());
  EXPECT_EQ(ran->out, "mounted\n");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  auto daemon = ReadFile(pid_file);
  ASSERT_TRUE(daemon);
  const pid_t daemon_pid = std::stoi(*daemon);
  EXPECT_EQ(::kill(daemon_pid, 0), 0) << "the daemon was killed";
  ::kill(daemon_pid, SIGKILL);
}

TEST(RunProgram, FindInPathAndAMissingBinary) {
  auto sh = FindInPath("sh");
  ASSERT_TRUE(sh);
  EXPECT_TRUE(sh->is_absolute());
  EXPECT_FALSE(FindInPath("strata-no-such-program"));
  auto ran = RunProgram("/nonexistent/prog", {"prog"});
  ASSERT_FALSE(ran);
  EXPECT_NE(ran.error().message().find("cannot run prog (/nonexistent/prog)"), std::string::npos)
      << ran.error().message();
}

}  // namespace
}  // namespace strata
