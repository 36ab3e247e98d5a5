#include "store/content_store.h"

#include <sys/stat.h>

#include <thread>

#include "tests/store/store_test_util.h"

namespace strata::store {
namespace {

using testing::Ingest;
using testing::StoreTest;
namespace fs = std::filesystem;

class ContentStoreTest : public StoreTest {
 protected:
  size_t CountIngestDirs() {
    size_t n = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator(root() / "ingest")) ++n;
    return n;
  }
};

std::string ReadAll(const BlobReader& reader) {
  std::string out(static_cast<size_t>(reader.size()), '\0');
  size_t done = 0;
  while (done < out.size()) {
    auto n = reader.ReadAt(out.data() + done, out.size() - done, static_cast<int64_t>(done));
    EXPECT_TRUE(n.has_value());
    if (!n || *n == 0) break;
    done += *n;
  }
  return out;
}

TEST_F(ContentStoreTest, IngestCommitInfoRead) {
  std::string data(300000, 'x');
  auto info = Ingest(content(), data, "ref-1", {{"k", "v"}});
  EXPECT_EQ(info.digest, Digest::Of(data));
  EXPECT_EQ(info.size, 300000);
  auto path = content().BlobPath(info.digest);
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0444);
  auto again = content().Info(info.digest);
  ASSERT_OK(again);
  EXPECT_EQ(again->labels, (Labels{{"k", "v"}}));
  EXPECT_EQ(again->created_at, info.created_at);
  auto reader = content().Reader(info.digest);
  ASSERT_OK(reader);
  EXPECT_EQ(ReadAll(**reader), data);
  EXPECT_EQ(CountIngestDirs(), 0u);
  auto status = content().StatusOf("ref-1");
  EXPECT_EQ(status.error().code(), ErrorCode::kNotFound);
}

TEST_F(ContentStoreTest, DigestMismatchLeavesNothingBehind) {
  auto writer = content().Writer("bad", {});
  ASSERT_OK(writer);
  ASSERT_OK((*writer)->Write("actual bytes"));
  Digest wrong = Digest::Of("other bytes");
  auto result = (*writer)->Commit(12, wrong);
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(result.error().message().find(Digest::Of("actual bytes").ToString()), std::string::npos);
  EXPECT_NE(result.error().message().find(wrong.ToString()), std::string::npos);
  EXPECT_FALSE(fs::exists(content().BlobPath(Digest::Of("actual bytes"))));
  EXPECT_FALSE(content().Info(Digest::Of("actual bytes")).has_value());
  EXPECT_FALSE(content().StatusOf("bad").has_value());
  EXPECT_EQ(CountIngestDirs(), 0u);
}

TEST_F(ContentStoreTest, SizeMismatchNamesBothSizes) {
  auto writer = content().Writer("short", {});
  ASSERT_OK(writer);
  ASSERT_OK((*writer)->Write("12345"));
  auto result = (*writer)->Commit(6, std::nullopt);
  ASSERT_FALSE(result.has_value());
  EXPECT_NE(result.error().message().find("wrote 5 bytes but the expected size is 6"), std::string::npos)
      << result.error().message();
  EXPECT_FALSE(fs::exists(content().BlobPath(Digest::Of("12345"))));
}

TEST_F(ContentStoreTest, ResumeContinuesFromTheBytesOnDisk) {
  std::string data(2 << 20, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7 + i / 4096);
  Digest expected = Digest::Of(data);
  {
    auto writer = content().Writer("resume", {.total = static_cast<int64_t>(data.size()), .expected = expected});
    ASSERT_OK(writer);
    ASSERT_OK((*writer)->Write(std::string_view(data).substr(0, 1234567)));
  }  // dropped without commit: the ingest stays
  Reopen();
  auto status = content().StatusOf("resume");
  ASSERT_OK(status);
  EXPECT_EQ(status->offset, 1234567);
  EXPECT_EQ(status->total, static_cast<int64_t>(data.size()));
  EXPECT_EQ(status->expected, expected);
  auto writer = content().Writer("resume", {});
  ASSERT_OK(writer);
  EXPECT_EQ((*writer)->offset(), 1234567);
  ASSERT_OK((*writer)->Write(std::string_view(data).substr(1234567)));
  auto info = (*writer)->Commit(0, std::nullopt);  // expectation recorded at first open
  ASSERT_OK(info);
  EXPECT_EQ(info->digest, expected);
}

TEST_F(ContentStoreTest, ResumeWithADifferentExpectedDigestStartsOver) {
  {
    auto writer = content().Writer("r", {.expected = Digest::Of("first")});
    ASSERT_OK(writer);
    ASSERT_OK((*writer)->Write("fir"));
  }
  auto writer = content().Writer("r", {.expected = Digest::Of("second")});
  ASSERT_OK(writer);
  EXPECT_EQ((*writer)->offset(), 0);
  ASSERT_OK((*writer)->Write("second"));
  ASSERT_OK((*writer)->Commit(6, Digest::Of("second")));
}

TEST_F(ContentStoreTest, ConcurrentWritersOfOneRef) {
  auto first = content().Writer("same", {});
  ASSERT_OK(first);
  auto second = content().Writer("same", {});
  ASSERT_FALSE(second.has_value());
  EXPECT_EQ(second.error().code(), ErrorCode::kUnavailable);
  EXPECT_NE(second.error().message().find("is locked"), std::string::npos);

  // A waiting writer gets the ref once the first lets go, and sees its bytes.
  ASSERT_OK((*first)->Write("abc"));
  std::atomic<int64_t> seen_offset = -1;
  std::thread waiter([&] {
    auto w = content().Writer("same", {.wait_for_lock = true});
    ASSERT_TRUE(w.has_value());
    seen_offset = (*w)->offset();
    ASSERT_TRUE((*w)->Write("def").has_value());
    ASSERT_TRUE((*w)->Commit(6, Digest::Of("abcdef")).has_value());
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(seen_offset, -1);
  first->reset();
  waiter.join();
  EXPECT_EQ(seen_offset, 3);
  EXPECT_TRUE(content().Info(Digest::Of("abcdef")).has_value());
}

TEST_F(ContentStoreTest, TwoRefsOneDigestFirstCommitWins) {
  auto a = content().Writer("a", {});
  auto b = content().Writer("b", {});
  ASSERT_OK(a);
  ASSERT_OK(b);
  ASSERT_OK((*a)->Write("same"));
  ASSERT_OK((*b)->Write("same"));
  ASSERT_OK((*a)->Commit(4, Digest::Of("same")));
  auto second = (*b)->Commit(4, Digest::Of("same"));
  ASSERT_FALSE(second.has_value());
  EXPECT_EQ(second.error().code(), ErrorCode::kAlreadyExists);
  EXPECT_FALSE(content().StatusOf("b").has_value());
  // Opening a writer for content that exists is refused up front.
  auto c = content().Writer("c", {.expected = Digest::Of("same")});
  EXPECT_EQ(c.error().code(), ErrorCode::kAlreadyExists);
}

TEST_F(ContentStoreTest, UpdateLabelsAndWalkWithFilters) {
  auto one = Ingest(content(), "one", "1", {{"a", "1"}});
  auto two = Ingest(content(), "two", "2", {{"a", "2"}, {"b", "x"}});
  ContentInfo update = one;
  update.labels = {{"b", "y"}};
  auto updated = content().Update(update, {"labels.b"});
  ASSERT_OK(updated);
  EXPECT_EQ(updated->labels, (Labels{{"a", "1"}, {"b", "y"}}));
  EXPECT_GE(updated->updated_at, one.updated_at);
  update.labels = {};
  ASSERT_OK(content().Update(update, {"labels.a"}));  // absent = delete
  EXPECT_EQ(content().Info(one.digest)->labels, (Labels{{"b", "y"}}));
  EXPECT_EQ(content().Update(update, {"size"}).error().code(), ErrorCode::kInvalidArgument);

  std::vector<Digest> seen;
  auto filter = Filter::Parse({"labels.b==x"});
  ASSERT_OK(filter);
  ASSERT_OK(content().Walk(*filter, [&](const ContentInfo& info) {
    seen.push_back(info.digest);
    return true;
  }));
  EXPECT_EQ(seen, std::vector<Digest>{two.digest});
}

TEST_F(ContentStoreTest, LabelsOverTheLimitAreRejected) {
  auto writer = content().Writer("big-label", {});
  ASSERT_OK(writer);
  ASSERT_OK((*writer)->Write("x"));
  auto result = (*writer)->Commit(1, std::nullopt, {{"k", std::string(5000, 'v')}});
  EXPECT_EQ(result.error().code(), ErrorCode::kInvalidArgument);
}

TEST_F(ContentStoreTest, DeleteAndAbortAndListStatuses) {
  auto info = Ingest(content(), "gone soon", "g");
  ASSERT_OK(content().Delete(info.digest));
  EXPECT_FALSE(fs::exists(content().BlobPath(info.digest)));
  EXPECT_EQ(content().Delete(info.digest).error().code(), ErrorCode::kNotFound);

  for (const char* ref : {"pull-1", "pull-2", "push-1"}) {
    auto w = content().Writer(ref, {.total = 10});
    ASSERT_OK(w);
    ASSERT_OK((*w)->Write("12"));
  }
  auto filter = Filter::Parse({"ref~=^pull-"});
  ASSERT_OK(filter);
  auto statuses = content().ListStatuses(*filter);
  ASSERT_OK(statuses);
  ASSERT_EQ(statuses->size(), 2u);
  EXPECT_EQ((*statuses)[0].offset, 2);
  ASSERT_OK(content().Abort("pull-1"));
  EXPECT_EQ(content().Abort("pull-1").error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(CountIngestDirs(), 2u);
}

TEST_F(ContentStoreTest, Sha512Content) {
  Digest expected = Digest::Of("five twelve", DigestAlgorithm::kSha512);
  auto writer = content().Writer("512", {.expected = expected});
  ASSERT_OK(writer);
  ASSERT_OK((*writer)->Write("five twelve"));
  auto info = (*writer)->Commit(11, expected);
  ASSERT_OK(info);
  EXPECT_TRUE(fs::exists(root() / "blobs/sha512" / expected.hex()));
}

}  // namespace
}  // namespace strata::store
