// A real `strata content ingest` process killed mid-write leaves a consistent store whose
// ingest resumes where the killed process stopped.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>

#include <thread>

#include "base/file.h"
#include "tests/store/store_test_util.h"
#include "tests/support/process.h"

namespace strata::store {
namespace {

using testing::StoreTest;
namespace fs = std::filesystem;

class CrashTest : public StoreTest {};

int64_t IngestedBytes(const fs::path& root) {
  int64_t total = 0;
  std::error_code ec;
  for (const auto& dir : fs::directory_iterator(root / "ingest", ec)) {
    struct stat st {};
    if (stat((dir.path() / "data").c_str(), &st) == 0) total += st.st_size;
  }
  return total;
}

TEST_F(CrashTest, KilledIngestResumesFromItsOffset) {
  constexpr size_t kSize = 8 << 20;
  constexpr size_t kBeforeKill = 3 << 20;
  std::string data(kSize, '\0');
  for (size_t i = 0; i < kSize; ++i) data[i] = static_cast<char>((i * 2654435761u) >> 13);
  Digest expected = Digest::Of(data);
  auto scratch = TempDir::Create("strata-crash");
  ASSERT_OK(scratch);
  fs::path input = scratch->path() / "input";
  ASSERT_OK(AtomicWriteFile(input, data));
  fs::path fifo = scratch->path() / "fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);

  store_.reset();  // the child must own the store
  auto child = test_support::Child::Start(
      {.argv = {STRATA_BIN, "--root", root().string(), "content", "ingest", "--ref", "crash-ref", "--expected",
                expected.ToString(), "--size", std::to_string(kSize), fifo.string()},
       .log_path = scratch->path() / "child.log"});
  ASSERT_OK(child);
  {
    auto writer = OpenFile(fifo, O_WRONLY);  // blocks until the child opens it
    ASSERT_OK(writer);
    ASSERT_OK(WriteAll(writer->get(), std::string_view(data).substr(0, kBeforeKill)));
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (IngestedBytes(root()) < static_cast<int64_t>(kBeforeKill) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_EQ(IngestedBytes(root()), static_cast<int64_t>(kBeforeKill)) << child->LogTail();
    ASSERT_EQ(kill(child->pid(), SIGKILL), 0);
    auto code = child->Wait(std::chrono::seconds(10));
    ASSERT_OK(code);
    EXPECT_EQ(*code, 128 + SIGKILL);
  }

  // The store is consistent: fsck finds nothing to repair, the ingest is where it stopped.
  Reopen();
  auto report = store_->Check({});
  ASSERT_OK(report);
  EXPECT_TRUE(report->clean()) << report->problems.front().kind << " " << report->problems.front().subject;
  auto status = content().StatusOf("crash-ref");
  ASSERT_OK(status);
  EXPECT_EQ(status->offset, static_cast<int64_t>(kBeforeKill));
  EXPECT_EQ(status->expected, expected);
  store_.reset();

  // The same command, given the whole file, resumes instead of starting over.
  std::string output;
  auto code = test_support::RunCommand({STRATA_BIN, "--root", root().string(), "--log-level", "info", "content",
                                        "ingest", "--ref", "crash-ref", "--expected", expected.ToString(),
                                        input.string()},
                                       &output);
  ASSERT_OK(code);
  ASSERT_EQ(*code, 0) << output;
  EXPECT_NE(output.find(fmt::format("resuming ingest \"crash-ref\" at offset {}", kBeforeKill)), std::string::npos)
      << output;
  EXPECT_NE(output.find(expected.ToString()), std::string::npos);
  Reopen();
  auto info = content().Info(expected);
  ASSERT_OK(info);
  EXPECT_EQ(info->size, static_cast<int64_t>(kSize));
}

// A crash inside ContentWriter::Commit after the data file became the blob file but before
// the record was written (scripts/crash hits this window in ~5% of killed pulls): the next
// open finishes the commit, so fsck is clean and a rerun does not fetch the blob again.
TEST_F(CrashTest, BlobPublishedWithoutItsRecordIsRecordedAtTheNextOpen) {
  const std::string data = "published, then the process died";
  const Digest digest = Digest::Of(data);
  {
    auto writer = content().Writer("fetch-ref", {.total = static_cast<int64_t>(data.size()), .expected = digest});
    ASSERT_OK(writer);
    ASSERT_OK((*writer)->Write(data));
  }  // the ingest stays, as a killed process leaves it
  const fs::path ingest_data = content().IngestDir(ContentStore::IngestDirId("fetch-ref")) / "data";
  ASSERT_EQ(chmod(ingest_data.c_str(), 0444), 0);
  fs::rename(ingest_data, content().BlobPath(digest));  // the commit's rename; its record never came

  Reopen();
  auto info = content().Info(digest);
  ASSERT_OK(info);
  EXPECT_EQ(info->size, static_cast<int64_t>(data.size()));
  EXPECT_FALSE(content().StatusOf("fetch-ref").has_value());
  EXPECT_FALSE(fs::exists(ingest_data.parent_path()));
  auto report = store_->Check({});
  ASSERT_OK(report);
  EXPECT_TRUE(report->clean()) << report->problems.front().kind << " " << report->problems.front().subject;
}

// A blob file that does not hash to the ingest's expected digest is not adopted: fsck
// still reports it.
TEST_F(CrashTest, APublishedBlobThatDoesNotVerifyIsLeftToFsck) {
  const std::string data = "the expected bytes";
  const Digest digest = Digest::Of(data);
  {
    auto writer = content().Writer("fetch-ref", {.total = static_cast<int64_t>(data.size()), .expected = digest});
    ASSERT_OK(writer);
    ASSERT_OK((*writer)->Write(data));
  }
  const fs::path ingest_data = content().IngestDir(ContentStore::IngestDirId("fetch-ref")) / "data";
  fs::remove(ingest_data);
  ASSERT_OK(AtomicWriteFile(content().BlobPath(digest), "other bytes, same length", 0444));

  Reopen();
  EXPECT_FALSE(content().Info(digest).has_value());
  auto report = store_->Check({});
  ASSERT_OK(report);
  EXPECT_FALSE(report->clean());
}

}  // namespace
}  // namespace strata::store
