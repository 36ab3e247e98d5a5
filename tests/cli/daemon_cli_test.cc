// The CLI with `strata serve` running on its root: pull, push, images, tag, rmi, mount,
// umount and gc go through the daemon's socket (its log shows each call; the store stays
// locked by the daemon throughout) and print what they print without a daemon — the same
// commands run against a second root with no daemon, and the outputs are compared. A
// command that needs the store itself fails naming the daemon's socket.
#include <chrono>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/support/assertions.h"
#include "tests/support/image_builder.h"
#include "tests/support/process.h"
#include "tests/support/registry_fixture.h"
#include "tests/support/root.h"
#include "tests/support/strata_cli.h"

namespace strata::cli {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using test_support::CommandRun;
using test_support::RegistryFixture;

std::string ReadText(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::string ReplaceAll(std::string text, const std::string& from, const std::string& to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
  return text;
}

// The last `n` lines of `text` (a command's result after its progress lines).
std::string LastLines(const std::string& text, size_t n) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::string out;
  for (size_t i = lines.size() > n ? lines.size() - n : 0; i < lines.size(); ++i) out += lines[i] + "\n";
  return out;
}

json LastJson(const std::string& output) {
  json last;
  std::istringstream in(output);
  for (std::string line; std::getline(in, line);) {
    json parsed = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!parsed.is_discarded()) last = std::move(parsed);
  }
  return last;
}

class DaemonCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    STRATA_REQUIRE_ROOT();  // the daemon unpacks and mounts
    ASSERT_OK_AND_ASSIGN(auto served, test_support::TempRoot::Create("strata-daemon-cli"));
    served_ = std::make_unique<test_support::TempRoot>(std::move(served));
    ASSERT_OK_AND_ASSIGN(auto direct, test_support::TempRoot::Create("strata-direct-cli"));
    direct_ = std::make_unique<test_support::TempRoot>(std::move(direct));
    ASSERT_OK_AND_ASSIGN(registry_, RegistryFixture::Start());

    test_support::ChildOptions serve;
    serve.argv = {STRATA_BIN, "--root", (served_->path() / "store").string(), "--log-level", "info", "serve",
                  "--socket", socket().string()};
    serve.env = {{"HOME", served_->path().string()}};
    serve.log_path = served_->path() / "serve.log";
    ASSERT_OK_AND_ASSIGN(auto child, test_support::Child::Start(serve));
    serve_ = std::make_unique<test_support::Child>(std::move(child));
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!fs::exists(served_->path() / "store" / "daemon.json")) {
      ASSERT_TRUE(serve_->Running()) << "strata serve exited: " << serve_->LogTail();
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "strata serve did not start: " << serve_->LogTail();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  void TearDown() override {
    if (serve_) EXPECT_EQ(serve_->Stop(), 0) << serve_->LogTail();
  }

  fs::path socket() const { return served_->path() / "strata.sock"; }

  // Runs `args` against the served root and the direct one; returns {served, direct}
  // with each home's path replaced by <HOME>.
  std::pair<CommandRun, CommandRun> Both(const std::vector<std::string>& args) {
    auto with_home = [&](const test_support::TempRoot& home) {
      std::vector<std::string> replaced;
      for (const std::string& arg : args) replaced.push_back(ReplaceAll(arg, "<HOME>", home.path().string()));
      CommandRun run = test_support::RunStrata(STRATA_BIN, home.path(), replaced);
      run.output = ReplaceAll(run.output, home.path().string(), "<HOME>");
      return run;
    };
    return {with_home(*served_), with_home(*direct_)};
  }

  std::string ServeLog() const { return ReadText(served_->path() / "serve.log"); }

  std::unique_ptr<test_support::TempRoot> served_;
  std::unique_ptr<test_support::TempRoot> direct_;
  std::unique_ptr<RegistryFixture> registry_;
  std::unique_ptr<test_support::Child> serve_;
};

TEST_F(DaemonCliTest, CommandsGoThroughTheDaemonAndPrintTheSame) {
  ASSERT_OK_AND_ASSIGN(auto base, test_support::LayerBuilder().Dir("etc").File("etc/os-release", "ID=test\n").Build());
  ASSERT_OK_AND_ASSIGN(auto app, test_support::LayerBuilder().File("app.txt", "app v1\n").Build());
  test_support::ImageBuilder builder;
  builder.AddLayer(base).AddLayer(app);
  ASSERT_OK_AND_ASSIGN(auto pushed, builder.PushTo(*registry_, "cli/served", "1"));
  const std::string name = registry_->host() + "/cli/served:1";
  const std::string other = registry_->host() + "/cli/served:other";

  {
    auto [served, direct] = Both({"pull", name});
    ASSERT_EQ(served.code, 0) << served.output << ServeLog();
    ASSERT_EQ(direct.code, 0) << direct.output;
    EXPECT_EQ(LastLines(served.output, 2), LastLines(direct.output, 2));
    EXPECT_NE(served.output.find("2 of 2 layers unpacked"), std::string::npos) << served.output;
    EXPECT_NE(served.output.find(pushed.manifest_digest.ToString()), std::string::npos) << served.output;
    // Progress lines came through too (not a terminal: one line per state change).
    EXPECT_NE(served.output.find("done"), std::string::npos) << served.output;
  }
  {
    auto [served, direct] = Both({"--json", "pull", name});
    ASSERT_EQ(served.code, 0) << served.output;
    EXPECT_EQ(LastJson(served.output), LastJson(direct.output));
    EXPECT_EQ(LastJson(served.output).value("status", ""), "pulled") << served.output;
  }
  {
    auto [served, direct] = Both({"tag", name, other});
    ASSERT_EQ(served.code, 0) << served.output;
    EXPECT_EQ(served.output, direct.output);
  }
  {
    auto [served, direct] = Both({"--json", "images"});
    ASSERT_EQ(served.code, 0) << served.output;
    json served_list = json::parse(served.output);
    json direct_list = json::parse(direct.output);
    ASSERT_EQ(served_list.size(), 2u) << served.output;
    for (json* list : {&served_list, &direct_list}) {
      for (json& image : *list) {
        image.erase("created_at");
        image.erase("updated_at");
      }
    }
    EXPECT_EQ(served_list, direct_list);
    auto [served_text, direct_text] = Both({"images", "name~=served:1"});
    const std::regex age("[0-9]+ (second|minute)s? ago");
    EXPECT_EQ(std::regex_replace(served_text.output, age, "AGE"), std::regex_replace(direct_text.output, age, "AGE"));
    EXPECT_NE(served_text.output.find(name), std::string::npos) << served_text.output;
  }
  {
    auto [served, direct] = Both({"push", "-q", other, registry_->host() + "/cli/pushed:1"});
    ASSERT_EQ(served.code, 0) << served.output << ServeLog();
    EXPECT_EQ(served.output, direct.output);
  }
  fs::create_directories(served_->path() / "mnt");
  fs::create_directories(direct_->path() / "mnt");
  {
    auto [served, direct] = Both({"--json", "mount", name, "<HOME>/mnt"});
    ASSERT_EQ(served.code, 0) << served.output << ServeLog();
    ASSERT_EQ(direct.code, 0) << direct.output;
    EXPECT_EQ(served.output, direct.output);
    EXPECT_EQ(ReadText(served_->path() / "mnt" / "app.txt"), "app v1\n");
    EXPECT_EQ(ReadText(served_->path() / "mnt" / "etc/os-release"), "ID=test\n");
  }
  {
    auto [served, direct] = Both({"umount", "<HOME>/mnt"});
    ASSERT_EQ(served.code, 0) << served.output;
    EXPECT_EQ(served.output, direct.output);
    EXPECT_FALSE(fs::exists(served_->path() / "mnt" / "app.txt"));
  }
  {
    auto [served, direct] = Both({"rmi", other});
    ASSERT_EQ(served.code, 0) << served.output;
    EXPECT_EQ(served.output, direct.output);
    auto [served_again, direct_again] = Both({"rmi", other});
    EXPECT_NE(served_again.code, 0);
    EXPECT_EQ(served_again.output, direct_again.output);
  }
  {
    auto [served, direct] = Both({"--json", "gc", "--dry-run"});
    ASSERT_EQ(served.code, 0) << served.output;
    EXPECT_EQ(served.output, direct.output);
    auto [served_text, direct_text] = Both({"gc"});
    ASSERT_EQ(served_text.code, 0) << served_text.output;
    EXPECT_EQ(served_text.output, direct_text.output);
  }

  // Each went through the daemon, which held the store all along.
  const std::string log = ServeLog();
  for (const char* call : {"images.Pull", "images.Tag", "images.Push", "images.Mount", "images.Unmount",
                           "images.Remove", "images.GC"}) {
    EXPECT_NE(log.find(call), std::string::npos) << call << " is not in the daemon's log:\n" << log;
  }
  EXPECT_TRUE(serve_->Running()) << log;
}

TEST_F(DaemonCliTest, CommandsThatNeedTheStoreNameTheDaemon) {
  CommandRun run = test_support::RunStrata(STRATA_BIN, served_->path(), {"content", "ls"});
  EXPECT_NE(run.code, 0) << run.output;
  EXPECT_NE(run.output.find("is in use by pid"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("the strata daemon serving on " + socket().string()), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("Stop the daemon, or use the commands that go through it"), std::string::npos)
      << run.output;

  // Once it stops, the store opens directly again.
  EXPECT_EQ(serve_->Stop(), 0) << serve_->LogTail();
  serve_.reset();
  CommandRun after = test_support::RunStrata(STRATA_BIN, served_->path(), {"content", "ls"});
  EXPECT_EQ(after.code, 0) << after.output;
}

}  // namespace
}  // namespace strata::cli
