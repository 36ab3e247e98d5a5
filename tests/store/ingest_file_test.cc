#include "store/ingest_file.h"

#include <gtest/gtest.h>
#include <linux/magic.h>
#include <sys/vfs.h>

#include "base/file.h"

namespace strata::store {
namespace {

namespace fs = std::filesystem;

std::string Pattern(size_t size, int seed) {
  std::string data(size, '\0');
  for (size_t i = 0; i < size; ++i) data[i] = static_cast<char>(i * 31 + seed + (i >> 12));
  return data;
}

// Appends `pieces` and checks the file holds exactly their concatenation after Sync().
void AppendAndCheck(const fs::path& dir, const std::vector<size_t>& pieces) {
  auto path = dir / "data";
  auto file = IngestFile::Open(path, /*truncate=*/true);
  ASSERT_TRUE(file.has_value()) << file.error().ToString();
  std::string expected;
  int seed = 0;
  for (size_t size : pieces) {
    std::string piece = Pattern(size, ++seed);
    ASSERT_TRUE((*file)->Append(piece).has_value());
    expected += piece;
    EXPECT_EQ((*file)->size(), static_cast<int64_t>(expected.size()));
  }
  ASSERT_TRUE((*file)->Sync().has_value());
  EXPECT_EQ(ReadFile(path).value_or("<unreadable>"), expected);
}

class IngestFileTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    const char* base = GetParam();
    if (!fs::is_directory(base)) GTEST_SKIP() << base << " does not exist here";
    setenv("TMPDIR", base, 1);
    auto dir = TempDir::Create("strata-ingest-file");
    unsetenv("TMPDIR");
    ASSERT_TRUE(dir.has_value());
    dir_.emplace(std::move(*dir));
  }
  std::optional<TempDir> dir_;
};

TEST_P(IngestFileTest, WholePiecesOddSizesAndTails) {
  AppendAndCheck(dir_->path(), {1 << 20, 1 << 20});                // aligned pieces only
  AppendAndCheck(dir_->path(), {3 << 20, 1});                      // pieces, then a 1-byte tail
  AppendAndCheck(dir_->path(), {7, 1 << 20, 4095, 65536, 999999});  // staging straddles pieces
  AppendAndCheck(dir_->path(), {});
}

TEST_P(IngestFileTest, UsesDirectWritesWhereTheFilesystemHasThem) {
  struct statfs fs_info {};
  ASSERT_EQ(statfs(dir_->path().c_str(), &fs_info), 0);
  auto file = IngestFile::Open(dir_->path() / "data", true);
  ASSERT_TRUE(file.has_value());
  // Disk filesystems take O_DIRECT; tmpfs does on newer kernels only, so either is right there.
  if (fs_info.f_type != TMPFS_MAGIC) {
    EXPECT_TRUE((*file)->direct()) << "filesystem type " << std::hex << fs_info.f_type;
  }
}

TEST_P(IngestFileTest, FlushMidwayThenAppendMore) {
  auto path = dir_->path() / "data";
  auto file = IngestFile::Open(path, true);
  ASSERT_TRUE(file.has_value());
  std::string a = Pattern(1500000, 1), b = Pattern(2 << 20, 2);
  ASSERT_TRUE((*file)->Append(a).has_value());
  ASSERT_TRUE((*file)->Flush().has_value());  // the file end is unaligned now
  EXPECT_EQ(fs::file_size(path), a.size());
  ASSERT_TRUE((*file)->Append(b).has_value());
  ASSERT_TRUE((*file)->Sync().has_value());
  EXPECT_EQ(ReadFile(path).value_or(""), a + b);
}

TEST_P(IngestFileTest, ReopenAppendsAfterTheEndAndDestructionKeepsStagedBytes) {
  auto path = dir_->path() / "data";
  std::string a = Pattern(2 << 20, 3), b = Pattern(12345, 4), c = Pattern(1 << 20, 5);
  {
    auto file = IngestFile::Open(path, true);
    ASSERT_TRUE(file.has_value());
    ASSERT_TRUE((*file)->Append(a).has_value());
    ASSERT_TRUE((*file)->Append(b).has_value());
  }  // destroyed without Sync: staged bytes still reach the file
  auto file = IngestFile::Open(path, false);
  ASSERT_TRUE(file.has_value());
  EXPECT_EQ((*file)->size(), static_cast<int64_t>(a.size() + b.size()));
  EXPECT_FALSE((*file)->direct());  // unaligned end: buffered from here on
  ASSERT_TRUE((*file)->Append(c).has_value());
  ASSERT_TRUE((*file)->Sync().has_value());
  EXPECT_EQ(ReadFile(path).value_or(""), a + b + c);
  ASSERT_TRUE((*file)->Truncate().has_value());
  EXPECT_EQ(fs::file_size(path), 0u);
  ASSERT_TRUE((*file)->Append(a).has_value());
  ASSERT_TRUE((*file)->Sync().has_value());
  EXPECT_EQ(ReadFile(path).value_or(""), a);
}

// /tmp is a disk filesystem (the O_DIRECT path) on our machines; /dev/shm is tmpfs.
INSTANTIATE_TEST_SUITE_P(Filesystems, IngestFileTest, ::testing::Values("/tmp", "/dev/shm"),
                         [](const auto& info) { return std::string(info.param == std::string("/tmp") ? "Tmp" : "DevShm"); });

}  // namespace
}  // namespace strata::store
