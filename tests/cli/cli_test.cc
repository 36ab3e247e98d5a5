// The `strata` command as a user runs it: real binary, real store under a temp root.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "base/file.h"
#include "store/store.h"
#include "tests/support/root.h"
#include "tests/support/strata_cli.h"

namespace strata::cli {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

using test_support::CommandRun;

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto root = test_support::TempRoot::Create("strata-cli-test");
    ASSERT_TRUE(root.has_value());
    root_.emplace(std::move(*root));
  }

  CommandRun Strata(std::vector<std::string> args) {
    return test_support::RunStrata(STRATA_BIN, root_->path(), args);
  }

  json StrataJson(std::vector<std::string> args) {
    args.insert(args.begin(), "--json");
    auto run = Strata(args);
    EXPECT_EQ(run.code, 0) << run.output;
    return json::parse(run.output, nullptr, false);
  }

  fs::path WriteInput(const std::string& name, const std::string& data) {
    auto path = root_->path() / name;
    EXPECT_TRUE(AtomicWriteFile(path, data).has_value());
    return path;
  }

  std::optional<test_support::TempRoot> root_;
};

TEST_F(CliTest, VersionAndHelp) {
  auto version = Strata({"version"});
  EXPECT_EQ(version.code, 0);
  EXPECT_TRUE(version.output.starts_with("strata 0.1.0")) << version.output;
  EXPECT_NE(version.output.find("rocksdb"), std::string::npos);
  auto info = StrataJson({"version"});
  EXPECT_EQ(info["version"], "0.1.0");
  EXPECT_TRUE(info["libraries"].contains("openssl"));

  auto help = Strata({"--help"});
  EXPECT_EQ(help.code, 0);
  for (const char* command : {"version", "content", "images", "tag", "rmi", "gc", "fsck"}) {
    EXPECT_NE(help.output.find(command), std::string::npos) << command;
  }
}

TEST_F(CliTest, UsageErrorsAreClear) {
  EXPECT_NE(Strata({}).code, 0);
  auto bad_level = Strata({"--log-level", "loud", "version"});
  EXPECT_NE(bad_level.code, 0);
  EXPECT_NE(bad_level.output.find("loud"), std::string::npos) << bad_level.output;
  auto bad_digest = Strata({"content", "info", "sha256:XYZ"});
  EXPECT_EQ(bad_digest.code, 1);
  EXPECT_NE(bad_digest.output.find("sha256:XYZ"), std::string::npos) << bad_digest.output;
}

TEST_F(CliTest, ContentLifecycle) {
  std::string data = "strata content\n";
  auto input = WriteInput("input", data);
  auto digest = Digest::Of(data).ToString();

  auto ingest = Strata({"content", "ingest", "--label", "team=store", input.string()});
  ASSERT_EQ(ingest.code, 0) << ingest.output;
  EXPECT_EQ(ingest.output, digest + "\n");

  auto list = StrataJson({"content", "ls"});
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["digest"], digest);
  EXPECT_EQ(list[0]["size"], data.size());
  EXPECT_EQ(list[0]["labels"]["team"], "store");
  EXPECT_EQ(StrataJson({"content", "ls", "labels.team==other"}).size(), 0u);

  auto info = StrataJson({"content", "info", digest});
  EXPECT_EQ(info["size"], data.size());

  auto out = root_->path() / "out";
  ASSERT_EQ(Strata({"content", "get", digest, "-o", out.string()}).code, 0);
  EXPECT_EQ(ReadFile(out).value_or(""), data);

  // Ingesting the same content again reports that it exists.
  auto again = Strata({"content", "ingest", input.string()});
  EXPECT_EQ(again.code, 1);
  EXPECT_NE(again.output.find("already exists"), std::string::npos) << again.output;

  ASSERT_EQ(Strata({"content", "rm", digest}).code, 0);
  auto missing = Strata({"content", "info", digest});
  EXPECT_EQ(missing.code, 1);
  EXPECT_NE(missing.output.find("not found"), std::string::npos) << missing.output;
}

TEST_F(CliTest, IngestRejectsWrongDigestAndLeavesNoBlob) {
  auto input = WriteInput("input", "payload");
  auto wrong = Digest::Of("something else").ToString();
  auto run = Strata({"content", "ingest", "--expected", wrong, input.string()});
  EXPECT_EQ(run.code, 1);
  EXPECT_NE(run.output.find(wrong), std::string::npos) << run.output;
  EXPECT_NE(run.output.find(Digest::Of("payload").ToString()), std::string::npos) << run.output;
  EXPECT_EQ(StrataJson({"content", "ls"}).size(), 0u);
  EXPECT_FALSE(fs::exists(root_->path() / "store/blobs/sha256" / Digest::Of("payload").hex()));
}

TEST_F(CliTest, ImagesTagRmiAndGc) {
  std::string manifest = R"({"schemaVersion":2})";
  auto digest = Digest::Of(manifest);
  {
    auto store = store::Store::Open(root_->path() / "store");
    ASSERT_TRUE(store.has_value());
    auto writer = (*store)->content().Writer("m", {});
    ASSERT_TRUE(writer.has_value());
    ASSERT_TRUE((*writer)->Write(manifest).has_value());
    ASSERT_TRUE((*writer)->Commit(0, digest).has_value());
    auto target = oci::Descriptor::Parse(fmt::format(
        R"({{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{}}})", digest.ToString(),
        manifest.size()));
    ASSERT_TRUE(target.has_value());
    ASSERT_TRUE((*store)->images().Create({"docker.io/library/app:1", *target, {}, {}, {}}).has_value());
  }
  auto tag = Strata({"tag", "app:1", "localhost:5000/team/app:stable"});
  ASSERT_EQ(tag.code, 0) << tag.output;
  EXPECT_EQ(tag.output, "localhost:5000/team/app:stable\n");
  auto images = StrataJson({"images"});
  ASSERT_EQ(images.size(), 2u);
  EXPECT_EQ(images[0]["name"], "docker.io/library/app:1");
  EXPECT_EQ(images[1]["target"]["digest"], digest.ToString());

  auto missing = Strata({"tag", "nope:1", "other:1"});
  EXPECT_EQ(missing.code, 1);
  EXPECT_NE(missing.output.find("docker.io/library/nope:1"), std::string::npos) << missing.output;

  // Content stays while any name points at it.
  ASSERT_EQ(Strata({"rmi", "app:1"}).code, 0);
  auto gc = StrataJson({"gc"});
  EXPECT_EQ(gc["blobs_removed"].size(), 0u);
  ASSERT_EQ(Strata({"rmi", "localhost:5000/team/app:stable"}).code, 0);
  auto dry = StrataJson({"gc", "--dry-run"});
  ASSERT_EQ(dry["blobs_removed"].size(), 1u);
  EXPECT_EQ(StrataJson({"content", "ls"}).size(), 1u);
  gc = StrataJson({"gc"});
  EXPECT_EQ(gc["blobs_removed"][0], digest.ToString());
  EXPECT_EQ(gc["bytes_freed"], manifest.size());
  EXPECT_EQ(StrataJson({"content", "ls"}).size(), 0u);
}

TEST_F(CliTest, FsckReportsCorruptionAndRepairs) {
  auto input = WriteInput("input", "will be damaged");
  ASSERT_EQ(Strata({"content", "ingest", input.string()}).code, 0);
  auto blob = root_->path() / "store/blobs/sha256" / Digest::Of("will be damaged").hex();
  fs::permissions(blob, fs::perms::owner_write, fs::perm_options::add);
  ASSERT_TRUE(AtomicWriteFile(blob, "will be damageD", 0444).has_value());

  auto quick = Strata({"fsck", "--quick"});
  EXPECT_EQ(quick.code, 0) << quick.output;  // same size: only a full check sees it
  auto full = Strata({"fsck"});
  EXPECT_EQ(full.code, 1);
  EXPECT_NE(full.output.find("corrupt-blob"), std::string::npos) << full.output;
  auto repair = Strata({"fsck", "--repair"});
  EXPECT_EQ(repair.code, 0) << repair.output;
  EXPECT_NE(repair.output.find("(repaired)"), std::string::npos) << repair.output;
  EXPECT_EQ(Strata({"fsck"}).code, 0);
}

}  // namespace
}  // namespace strata::cli
