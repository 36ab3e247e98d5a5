#include "store/fsck.h"

#include <sys/stat.h>

#include "base/file.h"
#include "tests/store/store_test_util.h"

namespace strata::store {
namespace {

using testing::Ingest;
using testing::StoreTest;
namespace fs = std::filesystem;

class FsckTest : public StoreTest {};

std::vector<std::string> Kinds(const FsckReport& report) {
  std::vector<std::string> kinds;
  for (const auto& p : report.problems) kinds.push_back(p.kind);
  std::sort(kinds.begin(), kinds.end());
  return kinds;
}

TEST_F(FsckTest, CleanStoreIsClean) {
  Ingest(content(), "fine", "f");
  auto report = store_->Check({});
  ASSERT_OK(report);
  EXPECT_TRUE(report->clean());
  EXPECT_EQ(report->blobs_checked, 1);
  EXPECT_EQ(report->bytes_checked, 4);
}

TEST_F(FsckTest, DetectsAndRepairsCorruptionAndOrphans) {
  auto corrupt = Ingest(content(), "original content", "c");
  auto good = Ingest(content(), "good content", "g");
  // Flip a byte of a committed blob (same size: only a full check sees it).
  auto path = content().BlobPath(corrupt.digest);
  chmod(path.c_str(), 0644);
  ASSERT_OK(AtomicWriteFile(path, "0riginal content", 0444));
  // A file nobody recorded that is not a valid blob, and one that is.
  ASSERT_OK(AtomicWriteFile(root() / "blobs/sha256/not-a-digest", "junk"));
  auto adoptable = Digest::Of("adopt me");
  ASSERT_OK(AtomicWriteFile(content().BlobPath(adoptable), "adopt me", 0444));

  auto quick = store_->Check({.quick = true});
  ASSERT_OK(quick);
  EXPECT_EQ(Kinds(*quick), (std::vector<std::string>{"orphan-file", "unrecorded-blob"}));

  auto report = store_->Check({});
  ASSERT_OK(report);
  EXPECT_EQ(Kinds(*report), (std::vector<std::string>{"corrupt-blob", "orphan-file", "unrecorded-blob"}));
  for (const auto& p : report->problems) EXPECT_FALSE(p.repaired);

  auto repair = store_->Check({.repair = true});
  ASSERT_OK(repair);
  for (const auto& p : repair->problems) EXPECT_TRUE(p.repaired) << p.kind;
  auto after = store_->Check({});
  ASSERT_OK(after);
  EXPECT_TRUE(after->clean());
  EXPECT_FALSE(content().Info(corrupt.digest).has_value());
  EXPECT_TRUE(content().Info(good.digest).has_value());
  auto adopted = content().Info(adoptable);
  ASSERT_OK(adopted);
  EXPECT_EQ(adopted->size, 8);
}

TEST_F(FsckTest, MissingBlobFileAndOrphanIngest) {
  auto gone = Ingest(content(), "vanishing", "v");
  fs::remove(content().BlobPath(gone.digest));
  fs::create_directories(root() / "ingest/0123");
  auto report = store_->Check({.repair = true});
  ASSERT_OK(report);
  EXPECT_EQ(Kinds(*report), (std::vector<std::string>{"missing-blob", "orphan-ingest"}));
  EXPECT_FALSE(content().Info(gone.digest).has_value());
  EXPECT_FALSE(fs::exists(root() / "ingest/0123"));
}

}  // namespace
}  // namespace strata::store
