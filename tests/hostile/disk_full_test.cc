// A full disk: the store lives on a 160 MiB ext4 on a loop device, a filler file takes
// most of it, and `strata pull` runs out of space — once while the blob downloads, once
// while a blob that fits unpacks into more than fits. Each time the pull fails saying "No
// space left on device" and naming the file it was writing in the store; nothing of the
// pull is visible (no image, no snapshot, no snapshot directory), fsck is clean; after the
// filler goes, the same pull succeeds and the files read back.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include "tests/hostile/hostile_support.h"
#include "tests/support/assertions.h"
#include "tests/support/image_builder.h"
#include "tests/support/registry_fixture.h"
#include "tests/support/root.h"

namespace strata::hostile {
namespace {

namespace fs = std::filesystem;
using test_support::LayerBuilder;

class DiskFullTest : public ::testing::Test {
 protected:
  void SetUp() override {
    STRATA_REQUIRE_ROOT();
    ASSERT_OK_AND_ASSIGN(auto temp, test_support::TempRoot::Create("strata-full"));
    temp_.emplace(std::move(temp));
    ASSERT_OK_AND_ASSIGN(registry_, test_support::RegistryFixture::Start());
    ASSERT_OK_AND_ASSIGN(disk_, LoopFilesystem::Create(temp_->path(), 160));
    // The store exists (metadata db made) before the disk fills.
    MeasuredRun init = RunStrataMeasured(home(), {"images"});
    ASSERT_EQ(init.code, 0) << init.output;
  }

  void TearDown() override {
    disk_.reset();
    if (temp_) {
      EXPECT_EQ(test_support::LoopsBackedUnder(temp_->path()), std::vector<std::string>{});
    }
  }

  const fs::path& home() const { return disk_->mount_point(); }
  fs::path store() const { return home() / "store"; }

  // Pushes a one-file image; returns its reference.
  std::string Push(const std::string& repository, const std::string& path, const std::string& content) {
    auto layer = LayerBuilder().File(path, content).Build();
    EXPECT_TRUE(layer) << layer.error().ToString();
    if (!layer) return "";
    test_support::ImageBuilder image;
    image.AddLayer(*layer);
    auto pushed = image.PushTo(*registry_, repository, "1");
    EXPECT_TRUE(pushed) << pushed.error().ToString();
    return registry_->host() + "/" + repository + ":1";
  }

  // The pull of `reference` (with `extra` arguments) fails for lack of space at once (no
  // retries), naming a file under `store_part` of the store, and leaves nothing of itself
  // visible.
  void ExpectRefusedForSpace(const std::string& reference, const std::string& store_part,
                             const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"pull", "-q", reference};
    args.insert(args.end(), extra.begin(), extra.end());
    MeasuredRun pull = RunStrataMeasured(home(), args);
    ASSERT_NE(pull.code, 0) << "the pull fitted after all: " << pull.output;
    EXPECT_NE(pull.output.find("No space left on device"), std::string::npos) << pull.output;
    EXPECT_NE(pull.output.find((store() / store_part).string()), std::string::npos)
        << "the error does not name the file under " << (store() / store_part) << ": " << pull.output;
    EXPECT_EQ(pull.output.find("attempts"), std::string::npos) << "a full disk was retried: " << pull.output;
    std::cerr << "[ info ] pull " << fmt::format("{}", fmt::join(extra, " ")) << " (" << pull.elapsed.count()
              << " ms): " << pull.output;
    ExpectNothingVisible(reference);
  }

  void ExpectNothingVisible(const std::string& reference) {
    MeasuredRun images = RunStrataMeasured(home(), {"images"});
    EXPECT_EQ(images.code, 0) << images.output;
    EXPECT_EQ(images.output.find(reference.substr(reference.find('/') + 1)), std::string::npos) << images.output;
    MeasuredRun snapshots = RunStrataMeasured(home(), {"--json", "snapshots", "ls"});
    EXPECT_EQ(snapshots.code, 0) << snapshots.output;
    EXPECT_EQ(snapshots.output.find("\"key\""), std::string::npos) << "snapshots left: " << snapshots.output;
    std::vector<std::string> dirs;
    for (const auto& entry : fs::directory_iterator(store() / "snapshots")) dirs.push_back(entry.path().string());
    EXPECT_TRUE(dirs.empty()) << "snapshot dirs left: " << dirs.front();
    MeasuredRun fsck = RunStrataMeasured(home(), {"fsck"});
    EXPECT_EQ(fsck.code, 0) << fsck.output;
  }

  // Frees the filler; the same pull succeeds and `path` reads back as `content`.
  void ExpectPullAfterFreeing(const std::string& reference, const std::string& path, const std::string& content) {
    fs::remove(home() / "filler");
    MeasuredRun pull = RunStrataMeasured(home(), {"pull", "-q", reference});
    ASSERT_EQ(pull.code, 0) << pull.output;
    MeasuredRun cat = RunStrataMeasured(home(), {"--log-level", "off", "cat", reference, path});
    ASSERT_EQ(cat.code, 0) << cat.output.substr(0, 2000);
    EXPECT_TRUE(cat.output == content) << "read back " << cat.output.size() << " bytes, pushed " << content.size();
    MeasuredRun fsck = RunStrataMeasured(home(), {"fsck"});
    EXPECT_EQ(fsck.code, 0) << fsck.output;
  }

  std::optional<test_support::TempRoot> temp_;
  std::unique_ptr<test_support::RegistryFixture> registry_;
  std::unique_ptr<LoopFilesystem> disk_;
};

TEST_F(DiskFullTest, BlobLargerThanTheFreeSpace) {
  const std::string content = test_support::RandomBytes(40 << 20, 11);  // incompressible: blob ~ 40 MiB
  const std::string reference = Push("full/blob", "big", content);
  ASSERT_OK(FillUntilFree(home() / "filler", 24 << 20));
  // Fetch only: the download fills the disk.
  ASSERT_NO_FATAL_FAILURE(ExpectRefusedForSpace(reference, "ingest/", {"--no-unpack"}));
  // Fetch and unpack at once: whichever write meets the full disk first is named.
  ASSERT_NO_FATAL_FAILURE(ExpectRefusedForSpace(reference, ""));
  ASSERT_NO_FATAL_FAILURE(ExpectPullAfterFreeing(reference, "big", content));
}

TEST_F(DiskFullTest, BlobFitsItsUnpackedLayerDoesNot) {
  // 48 MiB of a repeated 4 KiB random block: gzip makes it ~1/100 (deflate's 258-byte
  // matches), and no run of zeros lets the unpack punch holes.
  const std::string block = test_support::RandomBytes(4096, 12);
  std::string content;
  content.reserve(48 << 20);
  while (content.size() < (48u << 20)) content += block;
  const std::string reference = Push("full/unpack", "big", content);
  ASSERT_OK(FillUntilFree(home() / "filler", 24 << 20));
  ASSERT_NO_FATAL_FAILURE(ExpectRefusedForSpace(reference, "snapshots/"));
  ASSERT_NO_FATAL_FAILURE(ExpectPullAfterFreeing(reference, "big", content));
}

}  // namespace
}  // namespace strata::hostile
