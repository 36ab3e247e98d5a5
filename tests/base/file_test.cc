#include "base/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <set>
#include <string>
#include <thread>

namespace strata {
namespace {

namespace fs = std::filesystem;

TempDir MakeTempDir() {
  Result<TempDir> dir = TempDir::Create("strata-file-test");
  if (!dir) ADD_FAILURE() << dir.error().ToString();
  return std::move(*dir);
}

std::set<std::string> ListDir(const fs::path& dir) {
  std::set<std::string> names;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir)) names.insert(entry.path().filename());
  return names;
}

bool FdIsOpen(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

mode_t ModeOf(const fs::path& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0);
  return st.st_mode & 07777;
}

// --- UniqueFd ---------------------------------------------------------------------------

TEST(UniqueFdTest, ClosesOnDestruction) {
  int raw = -1;
  {
    Result<UniqueFd> fd = OpenFile("/dev/null", O_RDONLY);
    ASSERT_TRUE(fd.has_value()) << fd.error().ToString();
    raw = fd->get();
    EXPECT_TRUE(*fd);
    EXPECT_TRUE(FdIsOpen(raw));
    EXPECT_TRUE(::fcntl(raw, F_GETFD) & FD_CLOEXEC);
  }
  EXPECT_FALSE(FdIsOpen(raw));
}

TEST(UniqueFdTest, MoveTransfersOwnership) {
  Result<UniqueFd> opened = OpenFile("/dev/null", O_RDONLY);
  ASSERT_TRUE(opened.has_value());
  UniqueFd first = std::move(*opened);
  const int raw = first.get();

  UniqueFd second(std::move(first));
  EXPECT_FALSE(first);  // NOLINT(bugprone-use-after-move): the moved-from state is specified
  EXPECT_EQ(first.get(), -1);
  EXPECT_EQ(second.get(), raw);
  EXPECT_TRUE(FdIsOpen(raw));

  UniqueFd third;
  third = std::move(second);
  EXPECT_EQ(third.get(), raw);
  EXPECT_TRUE(FdIsOpen(raw));
  third = UniqueFd();  // move-assigning over an open fd closes it
  EXPECT_FALSE(FdIsOpen(raw));
}

TEST(UniqueFdTest, MoveAssignClosesPreviousFd) {
  Result<UniqueFd> a = OpenFile("/dev/null", O_RDONLY);
  Result<UniqueFd> b = OpenFile("/dev/null", O_RDONLY);
  ASSERT_TRUE(a && b);
  const int raw_a = a->get();
  const int raw_b = b->get();
  *a = std::move(*b);
  EXPECT_FALSE(FdIsOpen(raw_a));
  EXPECT_TRUE(FdIsOpen(raw_b));
  EXPECT_EQ(a->get(), raw_b);

  UniqueFd& self = *a;
  *a = std::move(self);  // self-move leaves it intact
  EXPECT_TRUE(FdIsOpen(raw_b));
}

TEST(UniqueFdTest, ReleaseAndReset) {
  Result<UniqueFd> fd = OpenFile("/dev/null", O_RDONLY);
  ASSERT_TRUE(fd.has_value());
  const int raw = fd->release();
  EXPECT_FALSE(*fd);
  EXPECT_TRUE(FdIsOpen(raw));  // release does not close
  fd->reset(raw);
  EXPECT_EQ(fd->get(), raw);
  fd->reset(raw);  // resetting to the same fd must not close it
  EXPECT_TRUE(FdIsOpen(raw));
  fd->reset();
  EXPECT_FALSE(FdIsOpen(raw));
}

// --- OpenFile / WriteAll / ReadFile / FsyncDir -----------------------------------------------

TEST(FileTest, OpenMissingFileIsNotFoundNamingThePath) {
  TempDir dir = MakeTempDir();
  const fs::path missing = dir.path() / "missing";
  Result<UniqueFd> fd = OpenFile(missing, O_RDONLY);
  ASSERT_FALSE(fd.has_value());
  EXPECT_EQ(fd.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(fd.error().message().find(missing.native()), std::string::npos) << fd.error().message();
}

TEST(FileTest, OpenExclusiveOnExistingFileIsAlreadyExists) {
  TempDir dir = MakeTempDir();
  const fs::path path = dir.path() / "f";
  ASSERT_TRUE(OpenFile(path, O_WRONLY | O_CREAT | O_EXCL).has_value());
  Result<UniqueFd> again = OpenFile(path, O_WRONLY | O_CREAT | O_EXCL);
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code(), ErrorCode::kAlreadyExists);
}

TEST(FileTest, WriteAllThenReadFileRoundTrips) {
  TempDir dir = MakeTempDir();
  const fs::path path = dir.path() / "data";
  std::string data(5 * 1024 * 1024 + 3, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 31 + i / 7);
  {
    Result<UniqueFd> fd = OpenFile(path, O_WRONLY | O_CREAT | O_TRUNC);
    ASSERT_TRUE(fd.has_value());
    ASSERT_TRUE(WriteAll(fd->get(), data).has_value());
  }
  Result<std::string> read = ReadFile(path);
  ASSERT_TRUE(read.has_value()) << read.error().ToString();
  EXPECT_EQ(*read, data);
}

TEST(FileTest, WriteAllThroughAPipeHandlesShortWrites) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  UniqueFd read_end(fds[0]);
  UniqueFd write_end(fds[1]);
  const std::string data(1024 * 1024, 'p');  // far more than a pipe buffer holds
  std::string received;
  std::thread reader([&] {
    char buffer[4096];
    ssize_t got;
    while ((got = ::read(read_end.get(), buffer, sizeof buffer)) > 0) received.append(buffer, got);
  });
  const Status status = WriteAll(write_end.get(), data);
  write_end.reset();
  reader.join();
  ASSERT_TRUE(status.has_value()) << status.error().ToString();
  EXPECT_EQ(received, data);
}

TEST(FileTest, WriteAllToBadFdFails) {
  Status status = WriteAll(-1, "x");
  ASSERT_FALSE(status.has_value());
  EXPECT_EQ(status.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(WriteAll(-1, "").has_value());  // nothing to write, nothing to fail
}

TEST(FileTest, ReadFileHandlesEmptyAndSizelessFiles) {
  TempDir dir = MakeTempDir();
  const fs::path empty = dir.path() / "empty";
  ASSERT_TRUE(OpenFile(empty, O_WRONLY | O_CREAT).has_value());
  Result<std::string> content = ReadFile(empty);
  ASSERT_TRUE(content.has_value());
  EXPECT_TRUE(content->empty());

  // procfs files report size 0 but have content.
  Result<std::string> status = ReadFile("/proc/self/status");
  ASSERT_TRUE(status.has_value()) << status.error().ToString();
  EXPECT_NE(status->find("Pid:"), std::string::npos);
}

TEST(FileTest, ReadFileErrors) {
  TempDir dir = MakeTempDir();
  Result<std::string> missing = ReadFile(dir.path() / "nope");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);

  Result<std::string> directory = ReadFile(dir.path());
  ASSERT_FALSE(directory.has_value());
  EXPECT_NE(directory.error().message().find(dir.path().native()), std::string::npos);
}

TEST(FileTest, FsyncDir) {
  TempDir dir = MakeTempDir();
  EXPECT_TRUE(FsyncDir(dir.path()).has_value());
  Status missing = FsyncDir(dir.path() / "missing");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
}

// --- AtomicWriteFile --------------------------------------------------------------------------

TEST(AtomicWriteFileTest, CreatesAndReplacesLeavingNoTempFile) {
  TempDir dir = MakeTempDir();
  const fs::path path = dir.path() / "config.json";
  ASSERT_TRUE(AtomicWriteFile(path, "first version, rather long").has_value());
  EXPECT_EQ(*ReadFile(path), "first version, rather long");
  ASSERT_TRUE(AtomicWriteFile(path, "second").has_value());
  EXPECT_EQ(*ReadFile(path), "second");
  ASSERT_TRUE(AtomicWriteFile(path, "").has_value());
  EXPECT_EQ(*ReadFile(path), "");
  EXPECT_EQ(ListDir(dir.path()), std::set<std::string>{"config.json"});
}

TEST(AtomicWriteFileTest, ReplacesAnOpenFileWithoutDisturbingReaders) {
  TempDir dir = MakeTempDir();
  const fs::path path = dir.path() / "f";
  ASSERT_TRUE(AtomicWriteFile(path, "old").has_value());
  Result<UniqueFd> reader = OpenFile(path, O_RDONLY);
  ASSERT_TRUE(reader.has_value());
  ASSERT_TRUE(AtomicWriteFile(path, "new").has_value());
  char buffer[8] = {};
  ASSERT_EQ(::read(reader->get(), buffer, sizeof buffer), 3);
  EXPECT_EQ(std::string(buffer), "old");  // the old inode, intact
  EXPECT_EQ(*ReadFile(path), "new");
}

TEST(AtomicWriteFileTest, AppliesModeExactly) {
  TempDir dir = MakeTempDir();
  const mode_t old_umask = ::umask(022);
  for (mode_t mode : {mode_t{0444}, mode_t{0600}, mode_t{0640}, mode_t{0666}}) {
    SCOPED_TRACE(mode);
    const fs::path path = dir.path() / fmt::format("f{:o}", mode);
    ASSERT_TRUE(AtomicWriteFile(path, "x", mode).has_value());
    EXPECT_EQ(ModeOf(path), mode);
  }
  ::umask(old_umask);
  const fs::path default_mode = dir.path() / "default";
  ASSERT_TRUE(AtomicWriteFile(default_mode, "x").has_value());
  EXPECT_EQ(ModeOf(default_mode), 0644u);
  // A read-only target is replaced too: rename needs write access to the directory only.
  ASSERT_TRUE(AtomicWriteFile(dir.path() / "f444", "y", 0444).has_value());
  EXPECT_EQ(*ReadFile(dir.path() / "f444"), "y");
}

TEST(AtomicWriteFileTest, FailuresLeaveNoTempFile) {
  TempDir dir = MakeTempDir();
  const fs::path subdir = dir.path() / "sub";
  fs::create_directory(subdir);
  // Renaming a file over a directory fails after the temp file was written.
  Status over_dir = AtomicWriteFile(subdir, "x");
  ASSERT_FALSE(over_dir.has_value());
  EXPECT_NE(over_dir.error().message().find(subdir.native()), std::string::npos) << over_dir.error().message();
  EXPECT_EQ(ListDir(dir.path()), std::set<std::string>{"sub"});

  Status missing_dir = AtomicWriteFile(dir.path() / "no" / "such", "x");
  ASSERT_FALSE(missing_dir.has_value());
  EXPECT_EQ(missing_dir.error().code(), ErrorCode::kNotFound);
}

// --- SafeJoin ---------------------------------------------------------------------------------

TEST(SafeJoinTest, Table) {
  const fs::path root = "/srv/root";
  struct Case {
    std::string relative;
    std::optional<fs::path> expected;  // nullopt: rejected
  };
  const Case cases[] = {
      {"a", root / "a"},
      {"a/b", root / "a" / "b"},
      {"./a", root / "a"},
      {"a/../b", root / "b"},
      {".", root},
      {"./", root},
      {"a/..", root},
      {"a/./b", root / "a" / "b"},
      {"a//b", root / "a" / "b"},
      {"a/b/", root / "a" / "b"},
      {"a/b/../../c", root / "c"},
      {"..a", root / "..a"},
      {"a/...", root / "a" / "..."},
      {"a\\..\\..\\x", root / "a\\..\\..\\x"},  // backslash is an ordinary byte on Linux
      {"etc/passwd", root / "etc" / "passwd"},
      {"", std::nullopt},
      {"..", std::nullopt},
      {"../x", std::nullopt},
      {"./../x", std::nullopt},
      {"a/../../x", std::nullopt},
      {"a/b/../../..", std::nullopt},
      {"a/../b/../..", std::nullopt},
      {"/etc/passwd", std::nullopt},
      {"/", std::nullopt},
      {"//x", std::nullopt},
      {std::string("a\0b", 3), std::nullopt},
      {std::string("\0", 1), std::nullopt},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(fmt::format("{:?}", c.relative));
    Result<fs::path> joined = SafeJoin(root, c.relative);
    if (c.expected) {
      ASSERT_TRUE(joined.has_value()) << joined.error().ToString();
      EXPECT_EQ(joined->native(), c.expected->native());
    } else {
      ASSERT_FALSE(joined.has_value()) << joined->native();
      EXPECT_EQ(joined.error().code(), ErrorCode::kInvalidArgument);
      EXPECT_NE(joined.error().message().find(fmt::format("{:?}", c.relative)), std::string::npos)
          << joined.error().message();
    }
  }
}

TEST(SafeJoinTest, RelativeRootStaysRelative) {
  Result<fs::path> joined = SafeJoin("store", "a/../b");
  ASSERT_TRUE(joined.has_value());
  EXPECT_EQ(joined->native(), "store/b");
}

// --- TempDir ----------------------------------------------------------------------------------

TEST(TempDirTest, CreatesAndRemovesItself) {
  fs::path path;
  {
    Result<TempDir> dir = TempDir::Create("strata-test");
    ASSERT_TRUE(dir.has_value()) << dir.error().ToString();
    path = dir->path();
    EXPECT_TRUE(fs::is_directory(path));
    EXPECT_EQ(path.filename().native().rfind("strata-test-", 0), 0u) << path;
    EXPECT_EQ(ModeOf(path), 0700u);
    fs::create_directories(path / "a" / "b");
    ASSERT_TRUE(AtomicWriteFile(path / "a" / "b" / "blob", "x", 0444).has_value());
    fs::create_symlink("/etc", path / "link-out");  // must be removed, not followed
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_TRUE(fs::exists("/etc/passwd"));
}

TEST(TempDirTest, RemovesReadOnlyDirectories) {
  fs::path path;
  {
    TempDir dir = MakeTempDir();
    path = dir.path();
    fs::create_directories(path / "ro" / "inner");
    ASSERT_TRUE(AtomicWriteFile(path / "ro" / "inner" / "f", "x").has_value());
    fs::permissions(path / "ro" / "inner", fs::perms::owner_read | fs::perms::owner_exec);
    fs::permissions(path / "ro", fs::perms::owner_read | fs::perms::owner_exec);
  }
  EXPECT_FALSE(fs::exists(path));
}

TEST(TempDirTest, ReleaseKeepsTheDirectory) {
  fs::path kept;
  {
    TempDir dir = MakeTempDir();
    const fs::path original = dir.path();
    kept = dir.Release();
    EXPECT_EQ(kept, original);
    EXPECT_TRUE(dir.path().empty());
  }
  EXPECT_TRUE(fs::is_directory(kept));
  fs::remove_all(kept);
}

TEST(TempDirTest, MoveTransfersOwnership) {
  TempDir a = MakeTempDir();
  TempDir b = MakeTempDir();
  const fs::path path_a = a.path();
  const fs::path path_b = b.path();
  {
    TempDir moved(std::move(a));
    EXPECT_EQ(moved.path(), path_a);
    EXPECT_TRUE(a.path().empty());  // NOLINT(bugprone-use-after-move)
    b = std::move(moved);           // b's old directory goes away now
    EXPECT_FALSE(fs::exists(path_b));
    EXPECT_TRUE(fs::exists(path_a));
  }
  EXPECT_TRUE(fs::exists(path_a));  // owned by b now
  EXPECT_EQ(b.path(), path_a);
}

TEST(TempDirTest, HonoursTmpdirAndRejectsBadPrefixes) {
  TempDir parent = MakeTempDir();
  const char* old = std::getenv("TMPDIR");
  const std::optional<std::string> saved = old ? std::optional<std::string>(old) : std::nullopt;
  ::setenv("TMPDIR", parent.path().c_str(), 1);
  Result<TempDir> child = TempDir::Create("inner");
  if (saved) {
    ::setenv("TMPDIR", saved->c_str(), 1);
  } else {
    ::unsetenv("TMPDIR");
  }
  ASSERT_TRUE(child.has_value()) << child.error().ToString();
  EXPECT_EQ(child->path().parent_path(), parent.path());

  Result<TempDir> bad = TempDir::Create("a/b");
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace strata
