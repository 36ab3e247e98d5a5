// ReadXattrs on a real file: none, a few (one call), more names than its first buffer
// holds (the size-query path), a large value, by fd and by path.
#include "base/xattr.h"

#include <fcntl.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <map>
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "base/file.h"

namespace strata {
namespace {

class XattrTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = TempDir::Create("strata-xattr");
    ASSERT_TRUE(dir.has_value());
    dir_.emplace(std::move(*dir));
    file_ = dir_->path() / "file";
    ASSERT_TRUE(AtomicWriteFile(file_, "x", 0644).has_value());
    if (::setxattr(file_.c_str(), "user.probe", "1", 1, 0) != 0) GTEST_SKIP() << "no user xattrs here";
    ::removexattr(file_.c_str(), "user.probe");
  }
  void Set(const std::string& name, const std::string& value) {
    ASSERT_EQ(::setxattr(file_.c_str(), name.c_str(), value.data(), value.size(), 0), 0) << name;
  }
  // By fd and by path; both must agree.
  std::map<std::string, std::string> Read() {
    UniqueFd fd(::open(file_.c_str(), O_RDONLY | O_CLOEXEC));
    auto by_fd = ReadXattrs(fd.get(), file_);
    auto by_path = ReadXattrs(-1, file_);
    EXPECT_TRUE(by_fd.has_value() && by_path.has_value());
    if (!by_fd || !by_path) return {};
    EXPECT_EQ(*by_fd, *by_path);
    return *by_fd;
  }
  std::optional<TempDir> dir_;
  std::filesystem::path file_;
};

TEST_F(XattrTest, NoneAFewManyAndLarge) {
  EXPECT_TRUE(Read().empty());

  std::map<std::string, std::string> expected = {{"user.a", "1"}, {"user.b", ""}, {"user.c", std::string("\0z", 2)}};
  for (const auto& [name, value] : expected) Set(name, value);
  EXPECT_EQ(Read(), expected);

  // 40 names of ~30 bytes: more than the first 256-byte list buffer.
  for (int i = 0; i < 40; ++i) {
    const std::string name = fmt::format("user.a-rather-long-name-{:04}", i);
    expected[name] = std::to_string(i);
    Set(name, expected[name]);
  }
  expected["user.large"] = std::string(1000, 'v');
  Set("user.large", expected["user.large"]);
  EXPECT_EQ(Read(), expected);
}

TEST(XattrErrors, MissingFileNamesThePath) {
  auto read = ReadXattrs(-1, "/nonexistent-strata-xattr/file");
  ASSERT_FALSE(read.has_value());
  EXPECT_NE(read.error().ToString().find("/nonexistent-strata-xattr/file"), std::string::npos)
      << read.error().ToString();
}

}  // namespace
}  // namespace strata
