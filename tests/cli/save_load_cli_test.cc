// `strata save` and `strata load` against skopeo (the reference reader and writer of all
// three formats): what strata saves, skopeo reads with the same digests; what skopeo writes,
// strata loads and shows (`strata cat`); strata -> strata round trips keep digests.
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "base/file.h"
#include "tests/support/assertions.h"
#include "tests/support/image_builder.h"
#include "tests/support/process.h"
#include "tests/support/registry_fixture.h"
#include "tests/support/strata_cli.h"

namespace strata::cli {
namespace {

namespace fs = std::filesystem;
using test_support::CommandRun;
using test_support::RegistryFixture;

class SaveLoadCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto temp = TempDir::Create("strata-save-load");
    ASSERT_TRUE(temp) << temp.error().ToString();
    temp_ = std::make_unique<TempDir>(std::move(*temp));
    fs::create_directories(Home("a"));
    fs::create_directories(Home("b"));
    auto registry = RegistryFixture::Start();
    ASSERT_TRUE(registry) << registry.error().ToString();
    registry_ = std::move(*registry);
    auto first = test_support::LayerBuilder().File("hello.txt", "hello from the first layer\n").Build();
    auto second = test_support::LayerBuilder().Dir("etc").File("etc/motd", "second layer\n").Build();
    ASSERT_TRUE(first && second);
    test_support::ImageBuilder builder;
    builder.AddLayer(std::move(*first)).AddLayer(std::move(*second));
    auto pushed = builder.PushTo(*registry_, "team/app", "1");
    ASSERT_TRUE(pushed) << pushed.error().ToString();
    pushed_ = std::make_unique<test_support::PushedImage>(*pushed);
    name_ = registry_->host() + "/team/app:1";
  }

  fs::path Home(std::string_view which) const { return temp_->path() / which; }
  fs::path Path(std::string_view name) const { return temp_->path() / name; }

  CommandRun Strata(std::string_view home, std::vector<std::string> args) {
    return test_support::RunStrata(STRATA_BIN, Home(home), args);
  }

  static std::string Run(const std::vector<std::string>& argv, int* code = nullptr) {
    std::string output;
    auto rc = test_support::RunCommand(argv, &output, std::chrono::seconds(120));
    if (code) *code = rc ? *rc : -1;
    return output;
  }

  // skopeo's view of the raw manifest / config behind `ref` (a transport reference).
  std::string SkopeoRaw(const std::string& ref, bool config = false) {
    std::vector<std::string> argv = {"skopeo", "inspect", "--raw"};
    if (config) argv.insert(argv.begin() + 2, "--config");
    argv.push_back(ref);
    int code = 0;
    std::string output = Run(argv, &code);
    EXPECT_EQ(code, 0) << output;
    return output;
  }

  std::string ImageDigest(std::string_view home, const std::string& name) {
    CommandRun run = Strata(home, {"--json", "images"});
    auto list = nlohmann::json::parse(run.output, nullptr, false);
    if (list.is_discarded()) return "unparsed: " + run.output;
    for (const auto& image : list) {
      if (image["name"] == name) return image["target"]["digest"].get<std::string>();
    }
    return "missing " + name + " in " + run.output;
  }

  std::unique_ptr<TempDir> temp_;
  std::unique_ptr<RegistryFixture> registry_;
  std::unique_ptr<test_support::PushedImage> pushed_;
  std::string name_;
};

TEST_F(SaveLoadCliTest, SkopeoReadsEveryFormatStrataSaves) {
  ASSERT_EQ(Strata("a", {"pull", "-q", name_}).code, 0);
  for (const char* format : {"oci", "oci-archive", "docker-archive"}) {
    CommandRun save = Strata("a", {"save", "--format", format, "-o", Path(format).string(), name_});
    ASSERT_EQ(save.code, 0) << format << ": " << save.output;
  }
  // The OCI forms hold the stored bytes: the manifest digest survives.
  const std::string oci_raw = SkopeoRaw("oci:" + Path("oci").string() + ":1");
  EXPECT_EQ(Digest::Of(oci_raw), pushed_->manifest_digest);
  const std::string archive_raw = SkopeoRaw("oci-archive:" + Path("oci-archive").string() + ":1");
  EXPECT_EQ(Digest::Of(archive_raw), pushed_->manifest_digest);
  // docker-archive keeps the config (image ID) and the diffIDs.
  const std::string config = SkopeoRaw("docker-archive:" + Path("docker-archive").string(), /*config=*/true);
  EXPECT_EQ(Digest::Of(config), pushed_->config_digest);
  int code = 0;
  std::string out = Run({"skopeo", "inspect", "docker-archive:" + Path("docker-archive").string()}, &code);
  ASSERT_EQ(code, 0) << out;
  auto inspected = nlohmann::json::parse(out);
  ASSERT_EQ(inspected["Layers"].size(), 2u) << out;
  EXPECT_EQ(inspected["Layers"][0], pushed_->diff_ids[0].ToString());
  EXPECT_EQ(inspected["Layers"][1], pushed_->diff_ids[1].ToString());
  out = Run({"tar", "-xOf", Path("docker-archive").string(), "manifest.json"}, &code);
  ASSERT_EQ(code, 0) << out;
  auto docker_manifest = nlohmann::json::parse(out);
  EXPECT_EQ(docker_manifest[0]["RepoTags"][0], name_) << out;
  EXPECT_EQ(docker_manifest[0]["Config"], "blobs/sha256/" + pushed_->config_digest.hex()) << out;

  // skopeo copy out of each: the blobs verify on the way.
  for (const std::string& source : {"oci:" + Path("oci").string() + ":1",
                                   "oci-archive:" + Path("oci-archive").string() + ":1",
                                   "docker-archive:" + Path("docker-archive").string()}) {
    const fs::path target = Path("copied-" + std::to_string(std::hash<std::string>{}(source)));
    out = Run({"skopeo", "copy", "--quiet", source, "dir:" + target.string()}, &code);
    EXPECT_EQ(code, 0) << source << ": " << out;
  }
}

TEST_F(SaveLoadCliTest, RoundTripIntoAFreshRootKeepsDigests) {
  ASSERT_EQ(Strata("a", {"pull", "-q", name_}).code, 0);
  for (const char* format : {"oci", "oci-archive", "docker-archive"}) {
    SCOPED_TRACE(format);
    const fs::path path = Path(std::string("rt-") + format);
    CommandRun save = Strata("a", {"save", "--format", format, "-o", path.string(), name_});
    ASSERT_EQ(save.code, 0) << save.output;
    fs::remove_all(Home("b") / "store");
    CommandRun load = Strata("b", {"load", path.string()});
    ASSERT_EQ(load.code, 0) << load.output;
    EXPECT_NE(load.output.find("Loaded " + name_), std::string::npos) << load.output;
    if (std::string_view(format) != "docker-archive") {
      EXPECT_EQ(ImageDigest("b", name_), pushed_->manifest_digest.ToString());
    }
    CommandRun cat = Strata("b", {"cat", name_, "/hello.txt", "/etc/motd"});
    ASSERT_EQ(cat.code, 0) << cat.output;
    EXPECT_EQ(cat.output, "hello from the first layer\nsecond layer\n");
    // Saving the loaded image again gives the same bytes' digests (docker-archive: same config).
    const fs::path again = Path(std::string("again-") + format);
    ASSERT_EQ(Strata("b", {"save", "--format", format, "-o", again.string(), name_}).code, 0);
    if (std::string_view(format) == "docker-archive") {
      EXPECT_EQ(Digest::Of(SkopeoRaw("docker-archive:" + again.string(), true)), pushed_->config_digest);
    }
  }
  // The save path must be new.
  CommandRun twice = Strata("a", {"save", "-o", Path("rt-oci").string(), name_});
  EXPECT_NE(twice.code, 0);
  EXPECT_NE(twice.output.find("exists"), std::string::npos) << twice.output;
}

TEST_F(SaveLoadCliTest, LoadsWhatSkopeoWritesInEveryFormat) {
  const std::string source = "docker://" + name_;
  int code = 0;
  std::string out;
  out = Run({"skopeo", "copy", "--quiet", "--src-tls-verify=false", source, "oci:" + Path("s-oci").string() + ":v1"},
            &code);
  ASSERT_EQ(code, 0) << out;
  out = Run({"skopeo", "copy", "--quiet", "--src-tls-verify=false", source,
             "oci-archive:" + Path("s-oci.tar").string() + ":v1"},
            &code);
  ASSERT_EQ(code, 0) << out;
  out = Run({"skopeo", "copy", "--quiet", "--src-tls-verify=false", source,
             "docker-archive:" + Path("s-docker.tar").string() + ":example.com/skopeo/app:v1"},
            &code);
  ASSERT_EQ(code, 0) << out;

  CommandRun load = Strata("b", {"load", "--repository", "example.com/from/oci", Path("s-oci").string()});
  ASSERT_EQ(load.code, 0) << load.output;
  EXPECT_EQ(ImageDigest("b", "example.com/from/oci:v1"), pushed_->manifest_digest.ToString());
  load = Strata("b", {"load", Path("s-oci.tar").string()});  // default repository: localhost/<stem>
  ASSERT_EQ(load.code, 0) << load.output;
  EXPECT_EQ(ImageDigest("b", "localhost/s-oci:v1"), pushed_->manifest_digest.ToString());
  load = Strata("b", {"load", Path("s-docker.tar").string()});
  ASSERT_EQ(load.code, 0) << load.output;
  for (const std::string& name : {"example.com/from/oci:v1", "localhost/s-oci:v1", "example.com/skopeo/app:v1"}) {
    CommandRun cat = Strata("b", {"cat", name, "/hello.txt"});
    EXPECT_EQ(cat.code, 0) << name << ": " << cat.output;
    EXPECT_EQ(cat.output, "hello from the first layer\n") << name;
    CommandRun ls = Strata("b", {"ls", name, "/etc"});
    EXPECT_NE(ls.output.find("motd"), std::string::npos) << name << ": " << ls.output;
  }
}

TEST_F(SaveLoadCliTest, CorruptBlobIsRefusedNamingTheEntryAndRecordsNothing) {
  ASSERT_EQ(Strata("a", {"pull", "-q", name_}).code, 0);
  ASSERT_EQ(Strata("a", {"save", "-o", Path("bad").string(), name_}).code, 0);
  const fs::path layer = Path("bad") / "blobs" / "sha256" / pushed_->layer_digests[1].hex();
  fs::permissions(layer, fs::perms::owner_write, fs::perm_options::add);
  ASSERT_OK(AtomicWriteFile(layer, "not the layer"));
  CommandRun load = Strata("b", {"load", Path("bad").string()});
  EXPECT_NE(load.code, 0);
  EXPECT_NE(load.output.find(pushed_->layer_digests[1].hex()), std::string::npos) << load.output;
  EXPECT_EQ(Strata("b", {"images", "-q"}).output.find(name_), std::string::npos);

  // A tar that is neither format.
  ASSERT_OK(AtomicWriteFile(Path("junk.tar"), std::string(1024, '\0')));
  load = Strata("b", {"load", Path("junk.tar").string()});
  EXPECT_NE(load.code, 0);
  EXPECT_NE(load.output.find("neither manifest.json"), std::string::npos) << load.output;
}

}  // namespace
}  // namespace strata::cli
