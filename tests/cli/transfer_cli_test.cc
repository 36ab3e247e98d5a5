// `strata pull`, `push` and `copy` as a user runs them: the real binary against real
// docker-registry instances, checking the line-per-state progress on a non-terminal, the
// --json event stream, the printed digests, and the error for a wrong password.
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "base/file.h"
#include "tests/support/assertions.h"
#include "tests/support/image_builder.h"
#include "tests/support/registry_fixture.h"
#include "tests/support/strata_cli.h"

namespace strata::cli {
namespace {

using test_support::CommandRun;
using test_support::RegistryAuth;
using test_support::RegistryFixture;

class TransferCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto home = TempDir::Create("strata-transfer-cli");
    ASSERT_TRUE(home) << home.error().ToString();
    home_ = std::make_unique<TempDir>(std::move(*home));
    auto registry = RegistryFixture::Start();
    ASSERT_TRUE(registry) << registry.error().ToString();
    registry_ = std::move(*registry);
  }

  CommandRun Strata(std::vector<std::string> args) {
    return test_support::RunStrata(STRATA_BIN, home_->path(), args);
  }

  Result<test_support::PushedImage> PushImage(RegistryFixture& registry, const std::string& repository) {
    auto layer = test_support::LayerBuilder().File("hello.txt", "hello from " + repository + "\n").Build();
    if (!layer) return std::unexpected(layer.error());
    test_support::ImageBuilder builder;
    builder.AddLayer(std::move(*layer));
    return builder.PushTo(registry, repository, "1");
  }

  static std::vector<std::string> Lines(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
  }

  std::unique_ptr<TempDir> home_;
  std::unique_ptr<RegistryFixture> registry_;
};

TEST_F(TransferCliTest, PullPrintsOneLinePerStateAndTheDigest) {
  ASSERT_OK_AND_ASSIGN(auto pushed, PushImage(*registry_, "team/app"));
  const std::string name = registry_->host() + "/team/app:1";
  CommandRun run = Strata({"pull", name});
  ASSERT_EQ(run.code, 0) << run.output;
  const std::string layer = pushed.layer_digests[0].hex().substr(0, 12);
  EXPECT_NE(run.output.find(layer + ": layer waiting\n"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find(layer + ": layer downloading\n"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find(layer + ": layer done ("), std::string::npos) << run.output;
  EXPECT_EQ(Lines(run.output).back(), pushed.manifest_digest.ToString());

  CommandRun again = Strata({"pull", "-q", name});
  ASSERT_EQ(again.code, 0) << again.output;
  EXPECT_EQ(again.output, pushed.manifest_digest.ToString() + "\n");

  CommandRun images = Strata({"images"});
  EXPECT_NE(images.output.find(name), std::string::npos) << images.output;
}

TEST_F(TransferCliTest, JsonModeEmitsOneParseableEventPerLine) {
  ASSERT_OK_AND_ASSIGN(auto pushed, PushImage(*registry_, "json/app"));
  CommandRun run = Strata({"--json", "pull", registry_->host() + "/json/app:1"});
  ASSERT_EQ(run.code, 0) << run.output;
  std::vector<std::string> lines = Lines(run.output);
  ASSERT_GE(lines.size(), 4u) << run.output;
  std::set<std::string> states;
  for (const std::string& line : lines) {
    auto event = nlohmann::json::parse(line, nullptr, false);
    ASSERT_FALSE(event.is_discarded()) << line;
    if (event.contains("state")) states.insert(event["state"].get<std::string>());
  }
  EXPECT_TRUE(states.contains("downloading"));
  EXPECT_TRUE(states.contains("done"));
  auto result = nlohmann::json::parse(lines.back());
  EXPECT_EQ(result["status"], "pulled");
  EXPECT_EQ(result["digest"], pushed.manifest_digest.ToString());
}

TEST_F(TransferCliTest, PushAndCopyToAnotherRegistryPrintTheDigest) {
  ASSERT_OK_AND_ASSIGN(auto pushed, PushImage(*registry_, "src/app"));
  auto other = RegistryFixture::Start();
  ASSERT_TRUE(other) << other.error().ToString();
  const std::string name = registry_->host() + "/src/app:1";
  ASSERT_EQ(Strata({"pull", "-q", name}).code, 0);

  CommandRun push = Strata({"push", name, (*other)->host() + "/dst/app:1"});
  ASSERT_EQ(push.code, 0) << push.output;
  EXPECT_NE(push.output.find("2 blobs uploaded"), std::string::npos) << push.output;
  EXPECT_EQ(Lines(push.output).back(), pushed.manifest_digest.ToString());

  CommandRun copy = Strata({"copy", "--chunk-size", "64", name, (*other)->host() + "/copied/app:2"});
  ASSERT_EQ(copy.code, 0) << copy.output;
  EXPECT_EQ(Lines(copy.output).back(), pushed.manifest_digest.ToString());
  CommandRun tags = Strata({"tags", (*other)->host() + "/copied/app"});
  EXPECT_EQ(tags.output, "2\n");
}

TEST_F(TransferCliTest, WrongPasswordIsAClearUnauthorizedError) {
  auto secured = RegistryFixture::Start({.auth = RegistryAuth::kBasic});
  ASSERT_TRUE(secured) << secured.error().ToString();
  std::filesystem::create_directories(home_->path() / "config" / "strata");
  const std::string auth = "d3Jvbmc6cGFzc3dvcmQ=";  // base64("wrong:password")
  ASSERT_OK(AtomicWriteFile(home_->path() / "config" / "strata" / "auth.json",
                            fmt::format(R"({{"auths":{{"{}":{{"auth":"{}"}}}}}})", (*secured)->host(), auth)));
  CommandRun run = Strata({"pull", (*secured)->host() + "/team/app:1"});
  EXPECT_EQ(run.code, 1) << run.output;
  EXPECT_NE(run.output.find("unauthorized"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find((*secured)->host()), std::string::npos) << run.output;
}

}  // namespace
}  // namespace strata::cli
