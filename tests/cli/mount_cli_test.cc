// `strata mount/umount/commit` and `strata snapshots` as a user runs them: the real binary
// against a real docker-registry — pull (unpacking), list the chain snapshots, mount --rw,
// write, commit, umount, mount the new image read-only elsewhere and see the change; the
// error for umount of a directory strata did not mount; snapshots prepare/commit/rm.
#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "base/file.h"
#include "oci/chain_id.h"
#include "tests/support/assertions.h"
#include "tests/support/image_builder.h"
#include "tests/support/registry_fixture.h"
#include "tests/support/root.h"
#include "tests/support/strata_cli.h"

namespace strata::cli {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using test_support::CommandRun;
using test_support::RegistryFixture;

class MountCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    STRATA_REQUIRE_ROOT();
    auto home = test_support::TempRoot::Create("strata-mount-cli");
    ASSERT_TRUE(home) << home.error().ToString();
    home_ = std::make_unique<test_support::TempRoot>(std::move(*home));
    auto registry = RegistryFixture::Start();
    ASSERT_TRUE(registry) << registry.error().ToString();
    registry_ = std::move(*registry);
  }

  CommandRun Strata(std::vector<std::string> args) { return test_support::RunStrata(STRATA_BIN, home_->path(), args); }

  // The last line of `output` that parses as JSON (logs may share the stream).
  static json LastJson(const std::string& output) {
    json last;
    std::istringstream in(output);
    for (std::string line; std::getline(in, line);) {
      json parsed = json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (!parsed.is_discarded()) last = std::move(parsed);
    }
    return last;
  }

  // `snapshots ls --json` as key -> entry.
  std::map<std::string, json> Snapshots() {
    CommandRun ls = Strata({"--json", "snapshots", "ls"});
    EXPECT_EQ(ls.code, 0) << ls.output;
    json list = LastJson(ls.output);
    EXPECT_TRUE(list.is_array()) << ls.output;
    std::map<std::string, json> by_key;
    if (list.is_array()) {
      for (const json& entry : list) by_key[entry.value("key", "")] = entry;
    }
    return by_key;
  }

  // Pushes a one-layer image (base.txt) as <repository>:1, pulls it with the CLI and sets
  // `chain_id` to its top chain snapshot. Call it with ASSERT_NO_FATAL_FAILURE.
  void PullOneLayerImage(const std::string& repository, std::string& chain_id) {
    ASSERT_OK_AND_ASSIGN(auto layer, test_support::LayerBuilder().File("base.txt", "base\n").Build());
    test_support::ImageBuilder builder;
    builder.AddLayer(layer);
    ASSERT_OK_AND_ASSIGN(auto pushed, builder.PushTo(*registry_, repository, "1"));
    ASSERT_EQ(Strata({"pull", "-q", registry_->host() + "/" + repository + ":1"}).code, 0);
    chain_id = oci::ChainIDs(pushed.diff_ids).back().ToString();
  }

  fs::path Dir(const std::string& name) {
    fs::path dir = home_->path() / name;
    fs::create_directories(dir);
    return dir;
  }

  std::unique_ptr<test_support::TempRoot> home_;
  std::unique_ptr<RegistryFixture> registry_;
};

// Runs `strata umount DIR` on scope exit while armed, detaching by hand if that fails.
struct UmountGuard {
  std::function<CommandRun(std::vector<std::string>)> strata;
  fs::path dir;
  bool armed = false;
  ~UmountGuard() { Release(); }
  void Release() {
    if (!armed) return;
    armed = false;
    CommandRun run = strata({"umount", dir.string()});
    if (run.code != 0) {
      ADD_FAILURE() << "strata umount " << dir << ": " << run.output;
      (void)test_support::UnmountAllBeneath(dir);
    }
  }
};

std::string ReadText(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

TEST_F(MountCliTest, PullMountWriteCommitAndMountTheNewImage) {
  ASSERT_OK_AND_ASSIGN(auto base, test_support::LayerBuilder().Dir("etc").File("etc/os-release", "ID=test\n").Build());
  ASSERT_OK_AND_ASSIGN(auto app, test_support::LayerBuilder().File("app.txt", "app v1\n").Build());
  test_support::ImageBuilder builder;
  builder.AddLayer(base).AddLayer(app);
  ASSERT_OK_AND_ASSIGN(auto pushed, builder.PushTo(*registry_, "cli/app", "1"));
  const std::string name = registry_->host() + "/cli/app:1";
  const std::string new_name = registry_->host() + "/cli/app:2";
  auto strata = [this](std::vector<std::string> args) { return Strata(std::move(args)); };

  CommandRun pull = Strata({"pull", name});
  ASSERT_EQ(pull.code, 0) << pull.output;
  EXPECT_NE(pull.output.find("2 of 2 layers unpacked"), std::string::npos) << pull.output;

  // The chain snapshots are committed, each over the one below.
  const std::vector<Digest> chain = oci::ChainIDs(pushed.diff_ids);
  {
    auto snapshots = Snapshots();
    EXPECT_EQ(snapshots.size(), 2u);
    for (size_t i = 0; i < chain.size(); ++i) {
      ASSERT_TRUE(snapshots.contains(chain[i].ToString())) << chain[i];
      const json& entry = snapshots[chain[i].ToString()];
      EXPECT_EQ(entry.value("kind", ""), "committed");
      EXPECT_EQ(entry.value("parent", ""), i == 0 ? "" : chain[i - 1].ToString());
    }
  }

  // mount --rw, write through it, commit, umount.
  const fs::path rw = Dir("rw");
  CommandRun mount = Strata({"--json", "mount", "--rw", name, rw.string()});
  ASSERT_EQ(mount.code, 0) << mount.output;
  UmountGuard rw_guard{strata, rw, true};
  json mounted = LastJson(mount.output);
  EXPECT_EQ(mounted.value("writable", false), true) << mount.output;
  EXPECT_EQ(mounted.value("layers", 0), 2) << mount.output;
  const std::string key = mounted.value("snapshot", "");
  EXPECT_EQ(key, "strata-mount:" + rw.string());
  EXPECT_EQ(ReadText(rw / "app.txt"), "app v1\n");
  {
    std::ofstream out(rw / "hello.txt");
    out << "written through the mount\n";
    ASSERT_TRUE(out.good());
  }
  {
    auto snapshots = Snapshots();
    ASSERT_TRUE(snapshots.contains(key));
    EXPECT_EQ(snapshots[key].value("kind", ""), "active");
    EXPECT_EQ(snapshots[key].value("parent", ""), chain.back().ToString());
  }
  CommandRun commit = Strata({"commit", rw.string(), new_name, "-m", "added hello"});
  ASSERT_EQ(commit.code, 0) << commit.output;
  EXPECT_NE(commit.output.find(new_name + ": new layer sha256:"), std::string::npos) << commit.output;
  CommandRun images = Strata({"images"});
  EXPECT_NE(images.output.find(new_name), std::string::npos) << images.output;
  rw_guard.Release();
  EXPECT_FALSE(Snapshots().contains(key)) << "umount keeps the mount's snapshot";
  EXPECT_FALSE(fs::exists(rw / "hello.txt"));

  // The new image, read-only, in another directory.
  const fs::path ro = Dir("ro");
  CommandRun mount_ro = Strata({"mount", new_name, ro.string()});
  ASSERT_EQ(mount_ro.code, 0) << mount_ro.output;
  UmountGuard ro_guard{strata, ro, true};
  EXPECT_NE(mount_ro.output.find("read-only"), std::string::npos) << mount_ro.output;
  EXPECT_EQ(ReadText(ro / "hello.txt"), "written through the mount\n");
  EXPECT_EQ(ReadText(ro / "app.txt"), "app v1\n");
  EXPECT_EQ(ReadText(ro / "etc/os-release"), "ID=test\n");
  const int fd = ::open((ro / "new").c_str(), O_WRONLY | O_CREAT, 0644);
  EXPECT_LT(fd, 0) << "a read-only mount took a write";
  if (fd >= 0) ::close(fd);
  EXPECT_EQ(errno, EROFS);
  // The new image's chain: the two base layers plus one.
  EXPECT_EQ(Snapshots().size(), 4u);  // 3 chain snapshots + the view
  ro_guard.Release();
  EXPECT_EQ(Snapshots().size(), 3u);

  // A second mount on a busy directory is refused.
  ASSERT_EQ(Strata({"mount", name, ro.string()}).code, 0);
  UmountGuard again_guard{strata, ro, true};
  CommandRun twice = Strata({"mount", name, ro.string()});
  EXPECT_NE(twice.code, 0) << twice.output;
}

TEST_F(MountCliTest, UmountOfADirectoryWithNothingMountedFails) {
  const fs::path empty = Dir("nothing");
  CommandRun run = Strata({"umount", empty.string()});
  EXPECT_NE(run.code, 0) << run.output;
  EXPECT_NE(run.output.find("strata has no mount at " + empty.string()), std::string::npos) << run.output;
  CommandRun missing = Strata({"umount", (home_->path() / "does-not-exist").string()});
  EXPECT_NE(missing.code, 0) << missing.output;
  EXPECT_NE(missing.output.find("does-not-exist"), std::string::npos) << missing.output;
}

TEST_F(MountCliTest, MountOfAnUnknownImageOrANonDirectoryFails) {
  const fs::path dir = Dir("target");
  CommandRun unknown = Strata({"mount", "example.com/not/pulled:1", dir.string()});
  EXPECT_NE(unknown.code, 0) << unknown.output;
  EXPECT_NE(unknown.output.find("example.com/not/pulled:1"), std::string::npos) << unknown.output;
  CommandRun not_dir = Strata({"mount", "example.com/not/pulled:1", (home_->path() / "nope").string()});
  EXPECT_NE(not_dir.code, 0) << not_dir.output;
  EXPECT_NE(not_dir.output.find("is not a directory"), std::string::npos) << not_dir.output;
  CommandRun commit = Strata({"commit", dir.string(), "example.com/new:1"});
  EXPECT_NE(commit.code, 0) << commit.output;
  EXPECT_NE(commit.output.find("strata-mount:" + dir.string()), std::string::npos) << commit.output;
}

// `strata ls` / `strata cat` read the image in-process: listing, JSON, file bytes, errors.
TEST_F(MountCliTest, LsAndCatReadTheImageWithoutMounting) {
  ASSERT_OK_AND_ASSIGN(auto layer, test_support::LayerBuilder()
                                       .File("etc/motd", "hello from the image\n", {.mode = 0640, .uid = 7, .gid = 8})
                                       .Symlink("motd", "/etc/motd")
                                       .Build());
  test_support::ImageBuilder builder;
  builder.AddLayer(layer);
  ASSERT_OK(builder.PushTo(*registry_, "browse", "1"));
  const std::string ref = registry_->host() + "/browse:1";
  ASSERT_EQ(Strata({"pull", "-q", ref}).code, 0);

  CommandRun cat = Strata({"cat", ref, "motd"});
  ASSERT_EQ(cat.code, 0) << cat.output;
  EXPECT_EQ(cat.output, "hello from the image\n");

  CommandRun ls = Strata({"ls", ref, "/etc"});
  ASSERT_EQ(ls.code, 0) << ls.output;
  std::vector<std::vector<std::string>> rows;
  std::istringstream lines(ls.output);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    rows.emplace_back(std::istream_iterator<std::string>(words), std::istream_iterator<std::string>());
  }
  ASSERT_EQ(rows.size(), 2u) << ls.output;  // header + motd
  EXPECT_EQ(rows[1], (std::vector<std::string>{"-rw-r-----", "7", "8", "21", "2023-11-14", "22:13", "motd"}))
      << ls.output;

  CommandRun root = Strata({"--json", "ls", ref});
  ASSERT_EQ(root.code, 0) << root.output;
  json entries = LastJson(root.output);
  ASSERT_TRUE(entries.is_array()) << root.output;
  ASSERT_EQ(entries.size(), 2u) << root.output;
  EXPECT_EQ(entries[0]["name"], "etc");
  EXPECT_EQ(entries[0]["type"], "dir");
  EXPECT_EQ(entries[1]["name"], "motd");
  EXPECT_EQ(entries[1]["type"], "symlink");
  EXPECT_EQ(entries[1]["target"], "/etc/motd");

  CommandRun missing = Strata({"cat", ref, "etc/nothing"});
  EXPECT_EQ(missing.code, 1);
  EXPECT_NE(missing.output.find("etc/nothing: No such file or directory"), std::string::npos) << missing.output;
  CommandRun directory = Strata({"cat", ref, "etc"});
  EXPECT_EQ(directory.code, 1);
  EXPECT_NE(directory.output.find("etc: not a regular file"), std::string::npos) << directory.output;
}

TEST_F(MountCliTest, SnapshotsPrepareCommitRemoveRoundTrip) {
  std::string base;
  ASSERT_NO_FATAL_FAILURE(PullOneLayerImage("cli/snap", base));

  // --label after the positionals: before them it swallows them (see the next test).
  CommandRun prepare = Strata({"snapshots", "prepare", "work", base, "--label", "team=qa"});
  ASSERT_EQ(prepare.code, 0) << prepare.output;
  EXPECT_NE(prepare.output.find("mount -t overlay"), std::string::npos) << prepare.output;
  EXPECT_NE(prepare.output.find("upperdir="), std::string::npos) << prepare.output;
  {
    auto snapshots = Snapshots();
    ASSERT_TRUE(snapshots.contains("work"));
    EXPECT_EQ(snapshots["work"].value("kind", ""), "active");
    EXPECT_EQ(snapshots["work"].value("parent", ""), base);
    EXPECT_EQ(snapshots["work"]["labels"].value("team", ""), "qa");
  }
  CommandRun mounts = Strata({"--json", "snapshots", "mounts", "work"});
  ASSERT_EQ(mounts.code, 0) << mounts.output;
  json mount_list = LastJson(mounts.output);
  ASSERT_TRUE(mount_list.is_array() && mount_list.size() == 1) << mounts.output;
  EXPECT_EQ(mount_list[0].value("type", ""), "overlay");

  CommandRun commit = Strata({"snapshots", "commit", "mine", "work"});
  ASSERT_EQ(commit.code, 0) << commit.output;
  EXPECT_EQ(commit.output, "mine\n");
  {
    auto snapshots = Snapshots();
    EXPECT_FALSE(snapshots.contains("work"));
    ASSERT_TRUE(snapshots.contains("mine"));
    EXPECT_EQ(snapshots["mine"].value("kind", ""), "committed");
    EXPECT_EQ(snapshots["mine"].value("parent", ""), base);
  }
  // A committed parent with a child cannot go first.
  CommandRun rm_base = Strata({"snapshots", "rm", base});
  EXPECT_NE(rm_base.code, 0) << rm_base.output;

  CommandRun rm = Strata({"snapshots", "rm", "mine"});
  ASSERT_EQ(rm.code, 0) << rm.output;
  EXPECT_EQ(rm.output, "mine\n");
  EXPECT_FALSE(Snapshots().contains("mine"));
  CommandRun rm_again = Strata({"snapshots", "rm", "mine"});
  EXPECT_NE(rm_again.code, 0) << rm_again.output;
  EXPECT_NE(rm_again.output.find("mine"), std::string::npos) << rm_again.output;
  EXPECT_EQ(Strata({"snapshots", "cleanup"}).code, 0);
  EXPECT_EQ(Snapshots().size(), 1u);
}

TEST_F(MountCliTest, SnapshotsPrepareLabelBeforeThePositionals) {
  std::string base;
  ASSERT_NO_FATAL_FAILURE(PullOneLayerImage("cli/label", base));
  CommandRun prepare = Strata({"snapshots", "prepare", "--label", "team=qa", "work", base});
  ASSERT_EQ(prepare.code, 0) << prepare.output;
  auto snapshots = Snapshots();
  ASSERT_TRUE(snapshots.contains("work"));
  EXPECT_EQ(snapshots["work"]["labels"].value("team", ""), "qa");
  EXPECT_EQ(snapshots["work"].value("parent", ""), base);
}

}  // namespace
}  // namespace strata::cli
