// CaseFoldingNameFilter: the upcase mapping (ASCII, Latin-1, Latin Extended-A, Greek,
// Cyrillic, invalid UTF-8) and case-insensitive matching in a directory, with and without
// the directory cache.
#include "fsfilter/case_folding.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "base/file.h"
#include "tests/fsfilter/layer_fixture.h"

namespace strata::fsfilter {
namespace {

using testing::WriteText;

TEST(UpcaseNameTest, Ascii) {
  EXPECT_EQ(UpcaseName("notepad.exe"), "NOTEPAD.EXE");
  EXPECT_EQ(UpcaseName("Mixed_Case-09 ~!"), "MIXED_CASE-09 ~!");
  EXPECT_EQ(UpcaseName(""), "");
}

TEST(UpcaseNameTest, Latin1AndExtendedA) {
  EXPECT_EQ(UpcaseName("zoë"), "ZOË");
  EXPECT_EQ(UpcaseName("àéîõüþ"), "ÀÉÎÕÜÞ");
  EXPECT_EQ(UpcaseName("ÿ"), "Ÿ");      // U+00FF -> U+0178
  EXPECT_EQ(UpcaseName("÷×"), "÷×");     // not letters
  EXPECT_EQ(UpcaseName("ß"), "ß");       // no simple 1:1 uppercase
  EXPECT_EQ(UpcaseName("ąćęłńśźż"), "ĄĆĘŁŃŚŹŻ");
  EXPECT_EQ(UpcaseName("ŉ"), "ŉ");       // only a multi-character uppercase
  EXPECT_EQ(UpcaseName("ı"), "I");       // dotless i
  EXPECT_EQ(UpcaseName("ľĺ"), "ĽĹ");     // the odd/even switch at U+0139
}

TEST(UpcaseNameTest, GreekAndCyrillic) {
  EXPECT_EQ(UpcaseName("αβγδεζηθικλμνξοπρστυφχψω"), "ΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩ");
  EXPECT_EQ(UpcaseName("ς"), "Σ");  // final sigma
  EXPECT_EQ(UpcaseName("άέήίόύώ"), "ΆΈΉΊΌΎΏ");
  EXPECT_EQ(UpcaseName("привет мир"), "ПРИВЕТ МИР");
  EXPECT_EQ(UpcaseName("ёђѓєѕіїјљњћќѝўџ"), "ЁЂЃЄЅІЇЈЉЊЋЌЍЎЏ");
  EXPECT_EQ(UpcaseName("ѡҁ"), "ѠҀ");
  EXPECT_EQ(UpcaseName("日本語.txt"), "日本語.TXT");  // no case: unchanged
}

TEST(UpcaseNameTest, InvalidUtf8KeptAsIs) {
  EXPECT_EQ(UpcaseName(std::string("a\xff" "b", 3)), std::string("A\xff" "B", 3));
  EXPECT_EQ(UpcaseName(std::string("\xc3", 1)), std::string("\xc3", 1));        // truncated sequence
  EXPECT_EQ(UpcaseName(std::string("\xc0\xa1x", 3)), std::string("\xc0\xa1X", 3));  // overlong
  EXPECT_EQ(UpcaseName(std::string("\xed\xa0\x80z", 4)), std::string("\xed\xa0\x80Z", 4));  // surrogate
  EXPECT_EQ(UpcaseName(std::string("\xc3\xa9\x80", 3)), std::string("\xc3\x89\x80", 3));  // é + stray byte
}

class CaseFoldingMatchTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    auto dir = TempDir::Create("strata-casefold-test");
    ASSERT_TRUE(dir.has_value());
    dir_.emplace(std::move(*dir));
    WriteText(root() / "Notepad.EXE", "x");
    WriteText(root() / "Zoë.txt", "x");
    WriteText(root() / ".wh.Hidden", "");
    std::filesystem::create_directory(root() / "System32");
    ::symlink("target", (root() / "Link").c_str());
    fd_.reset(::open(root().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(fd_);
  }
  const std::filesystem::path& root() const { return dir_->path(); }

  std::optional<TempDir> dir_;
  UniqueFd fd_;
};

TEST_P(CaseFoldingMatchTest, FindsStoredCase) {
  CaseFoldingNameFilter filter({.cache_directories = GetParam()});
  EXPECT_FALSE(filter.IsIdentity());
  EXPECT_EQ(filter.MatchInLayer(fd_.get(), "Notepad.EXE"), "Notepad.EXE");
  EXPECT_EQ(filter.MatchInLayer(fd_.get(), "notepad.exe"), "Notepad.EXE");
  EXPECT_EQ(filter.MatchInLayer(fd_.get(), "NOTEPAD.EXE"), "Notepad.EXE");
  EXPECT_EQ(filter.MatchInLayer(fd_.get(), "ZOË.TXT"), "Zoë.txt");
  EXPECT_EQ(filter.MatchInLayer(fd_.get(), "system32"), "System32");
  EXPECT_EQ(filter.MatchInLayer(fd_.get(), "LINK"), "Link");  // not followed
  EXPECT_EQ(filter.MatchInLayer(fd_.get(), "absent"), std::nullopt);
  EXPECT_EQ(filter.MatchInLayer(fd_.get(), "HIDDEN"), std::nullopt);  // ".wh." names are markers
  EXPECT_EQ(filter.MergeKey("Notepad.exe"), filter.MergeKey("NOTEPAD.EXE"));
}

TEST_P(CaseFoldingMatchTest, SeesNewEntries) {
  // The cache is keyed by the directory's ctime/mtime: a change is picked up.
  CaseFoldingNameFilter filter({.cache_directories = GetParam()});
  EXPECT_EQ(filter.MatchInLayer(fd_.get(), "NEW.TXT"), std::nullopt);
  struct stat before{};
  ::fstat(fd_.get(), &before);
  for (int i = 0; i < 200; ++i) {  // wait for a visible timestamp step
    WriteText(root() / "new.txt", "x");
    struct stat after{};
    ::fstat(fd_.get(), &after);
    if (after.st_mtim.tv_nsec != before.st_mtim.tv_nsec || after.st_mtim.tv_sec != before.st_mtim.tv_sec) break;
    std::filesystem::remove(root() / "new.txt");
    ::usleep(5000);
  }
  EXPECT_EQ(filter.MatchInLayer(fd_.get(), "NEW.TXT"), "new.txt");
}

INSTANTIATE_TEST_SUITE_P(Cache, CaseFoldingMatchTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Cached" : "Uncached"; });

}  // namespace
}  // namespace strata::fsfilter
