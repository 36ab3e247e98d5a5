// archive::TarWriter output checked by GNU tar: listing, extraction, metadata.
#include "archive/tar_writer.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "base/file.h"
#include "tests/support/process.h"
#include "tests/support/root.h"

namespace strata::archive {
namespace {

namespace fs = std::filesystem;
using test_support::RunCommand;

constexpr int64_t kMtime = 1'600'000'000;

// Collects the archive in memory.
struct Archive {
  std::string bytes;
  TarWriter writer{[this](std::string_view data) -> Status {
    bytes.append(data);
    return {};
  }};
};

class TarWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<TempDir> dir = TempDir::Create("strata-tar-test");
    ASSERT_TRUE(dir) << dir.error().ToString();
    dir_.emplace(std::move(*dir));
  }

  // Writes `bytes` to a file and returns its path.
  fs::path Save(const std::string& bytes) {
    fs::path path = dir_->path() / "test.tar";
    EXPECT_TRUE(AtomicWriteFile(path, bytes));
    return path;
  }

  // Runs GNU tar; fails the test (with its output) unless it exits 0.
  std::string Tar(std::vector<std::string> args) {
    args.insert(args.begin(), "tar");
    std::string output;
    Result<int> code = RunCommand(args, &output);
    EXPECT_TRUE(code) << code.error().ToString();
    EXPECT_EQ(code.value_or(-1), 0) << output;
    return output;
  }

  fs::path Extract(const std::string& bytes) {
    fs::path out = dir_->path() / "out";
    fs::create_directories(out);
    Tar({"--xattrs", "--xattrs-include=*", "-xpf", Save(bytes).native(), "-C", out.native()});
    return out;
  }

  std::optional<TempDir> dir_;
};

TEST_F(TarWriterTest, RegularFilesDirsAndModesRoundTrip) {
  Archive archive;
  ASSERT_TRUE(archive.writer.WriteHeader({.name = "etc", .type = TarEntryType::kDirectory, .mode = 0750, .mtime = {kMtime, 0}}));
  ASSERT_TRUE(archive.writer.WriteEntry({.name = "etc/hosts", .mode = 0640, .mtime = {kMtime, 0}}, "127.0.0.1 localhost\n"));
  ASSERT_TRUE(archive.writer.WriteEntry({.name = "bin/tool", .mode = 04755, .mtime = {kMtime, 0}}, "#!/bin/sh\n"));
  // Streaming in pieces.
  ASSERT_TRUE(archive.writer.WriteHeader({.name = "data/blob", .size = 1500, .mtime = {kMtime, 0}}));
  ASSERT_TRUE(archive.writer.WriteData(std::string(1000, 'a')));
  ASSERT_TRUE(archive.writer.WriteData(std::string(500, 'b')));
  ASSERT_TRUE(archive.writer.WriteEntry({.name = "empty", .mtime = {kMtime, 0}}, ""));
  ASSERT_TRUE(archive.writer.Finish());

  EXPECT_EQ(archive.bytes.size() % 512, 0u);
  EXPECT_EQ(archive.bytes.size(), archive.writer.bytes_written());
  EXPECT_EQ(archive.bytes.substr(archive.bytes.size() - 1024), std::string(1024, '\0'));

  std::string listing = Tar({"-tvf", Save(archive.bytes).native()});
  EXPECT_NE(listing.find("drwxr-x---"), std::string::npos) << listing;
  EXPECT_NE(listing.find("etc/hosts"), std::string::npos) << listing;
  EXPECT_NE(listing.find("-rwsr-xr-x"), std::string::npos) << listing;

  fs::path out = Extract(archive.bytes);
  EXPECT_EQ(ReadFile(out / "etc/hosts").value_or(""), "127.0.0.1 localhost\n");
  EXPECT_EQ(ReadFile(out / "data/blob").value_or(""), std::string(1000, 'a') + std::string(500, 'b'));
  EXPECT_EQ(ReadFile(out / "empty").value_or("x"), "");
  struct stat st {};
  ASSERT_EQ(::stat((out / "etc").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0750u);
  ASSERT_EQ(::stat((out / "etc/hosts").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  EXPECT_EQ(st.st_mtim.tv_sec, kMtime);
  if (::geteuid() == 0) {  // only root may extract setuid bits as given
    ASSERT_EQ(::stat((out / "bin/tool").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 04755u);
  }
}

TEST_F(TarWriterTest, LongNamesLinksAndNonAsciiUsePax) {
  // 180 characters splittable at a '/' into ustar prefix + name: no PAX needed.
  std::string split_name = std::string(90, 'p') + "/" + std::string(89, 'n');
  // A 150-character component cannot be split: PAX "path".
  std::string long_component = "deep/" + std::string(150, 'c');
  // More than 255 characters overall.
  std::string very_long = std::string(120, 'x') + "/" + std::string(120, 'y') + "/" + std::string(60, 'z') + ".txt";
  std::string long_target = "../" + std::string(140, 't');
  std::string unicode = "caf\xc3\xa9/na\xc3\xafve.txt";

  Archive archive;
  ASSERT_TRUE(archive.writer.WriteEntry({.name = split_name, .mtime = {kMtime, 0}}, "split"));
  ASSERT_TRUE(archive.writer.WriteEntry({.name = long_component, .mtime = {kMtime, 0}}, "component"));
  ASSERT_TRUE(archive.writer.WriteEntry({.name = very_long, .mtime = {kMtime, 0}}, "very long"));
  ASSERT_TRUE(archive.writer.WriteHeader(
      {.name = "links/long-symlink", .type = TarEntryType::kSymlink, .mode = 0777, .linkname = long_target}));
  ASSERT_TRUE(archive.writer.WriteHeader(
      {.name = "links/hard", .type = TarEntryType::kHardLink, .linkname = very_long}));
  ASSERT_TRUE(archive.writer.WriteEntry({.name = unicode, .mtime = {kMtime, 0}}, "unicode"));
  ASSERT_TRUE(archive.writer.Finish());

  // Only the entries that need it get a PAX header.
  EXPECT_EQ(archive.bytes.find(PaxRecord("path", split_name)), std::string::npos);
  EXPECT_NE(archive.bytes.find(PaxRecord("path", long_component)), std::string::npos);
  EXPECT_NE(archive.bytes.find(PaxRecord("linkpath", long_target)), std::string::npos);

  fs::path out = Extract(archive.bytes);
  EXPECT_EQ(ReadFile(out / split_name).value_or(""), "split");
  EXPECT_EQ(ReadFile(out / long_component).value_or(""), "component");
  EXPECT_EQ(ReadFile(out / very_long).value_or(""), "very long");
  EXPECT_EQ(ReadFile(out / unicode).value_or(""), "unicode");
  EXPECT_EQ(fs::read_symlink(out / "links/long-symlink").native(), long_target);
  struct stat original {}, linked {};
  ASSERT_EQ(::stat((out / very_long).c_str(), &original), 0);
  ASSERT_EQ(::stat((out / "links/hard").c_str(), &linked), 0);
  EXPECT_EQ(original.st_ino, linked.st_ino);
  EXPECT_EQ(original.st_nlink, 2u);
}

TEST_F(TarWriterTest, XattrsFractionalMtimesAndLargeIds) {
  Archive archive;
  TarEntry entry{.name = "attrs", .mode = 0600, .uid = 3'000'000, .gid = 3'000'001, .mtime = {kMtime, 123456789}};
  entry.xattrs["user.strata.comment"] = "hello xattr";
  entry.xattrs["user.strata.binary"] = std::string("a\0b\x01", 4);
  ASSERT_TRUE(archive.writer.WriteEntry(entry, "with attributes"));
  ASSERT_TRUE(archive.writer.Finish());

  EXPECT_NE(archive.bytes.find(PaxRecord("mtime", "1600000000.123456789")), std::string::npos);
  EXPECT_NE(archive.bytes.find(PaxRecord("uid", "3000000")), std::string::npos);
  EXPECT_NE(archive.bytes.find(PaxRecord("SCHILY.xattr.user.strata.comment", "hello xattr")), std::string::npos);

  fs::path out = Extract(archive.bytes);
  fs::path file = out / "attrs";
  struct stat st {};
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mtim.tv_sec, kMtime);
  EXPECT_EQ(st.st_mtim.tv_nsec, 123456789);
  if (::geteuid() == 0) {
    EXPECT_EQ(st.st_uid, 3'000'000u);
    EXPECT_EQ(st.st_gid, 3'000'001u);
  }
  char value[64];
  ssize_t size = ::getxattr(file.c_str(), "user.strata.comment", value, sizeof(value));
  if (size < 0 && (errno == ENOTSUP || errno == EOPNOTSUPP)) GTEST_SKIP() << "no user xattrs on " << out;
  ASSERT_GE(size, 0) << std::strerror(errno);
  EXPECT_EQ(std::string(value, static_cast<size_t>(size)), "hello xattr");
  size = ::getxattr(file.c_str(), "user.strata.binary", value, sizeof(value));
  ASSERT_GE(size, 0) << std::strerror(errno);
  EXPECT_EQ(std::string(value, static_cast<size_t>(size)), std::string("a\0b\x01", 4));
}

TEST_F(TarWriterTest, FifosAndDevices) {
  Archive archive;
  ASSERT_TRUE(archive.writer.WriteHeader({.name = "dev/pipe", .type = TarEntryType::kFifo, .mode = 0620}));
  ASSERT_TRUE(archive.writer.WriteHeader(
      {.name = "dev/null", .type = TarEntryType::kCharDevice, .mode = 0666, .devmajor = 1, .devminor = 3}));
  ASSERT_TRUE(archive.writer.WriteHeader(
      {.name = "dev/loop9", .type = TarEntryType::kBlockDevice, .mode = 0660, .devmajor = 7, .devminor = 9}));
  ASSERT_TRUE(archive.writer.Finish());

  std::string listing = Tar({"-tvf", Save(archive.bytes).native()});
  EXPECT_NE(listing.find("prw--w----"), std::string::npos) << listing;
  EXPECT_NE(listing.find("crw-rw-rw-"), std::string::npos) << listing;
  EXPECT_NE(listing.find("1,3"), std::string::npos) << listing;
  EXPECT_NE(listing.find("brw-rw----"), std::string::npos) << listing;
  EXPECT_NE(listing.find("7,9"), std::string::npos) << listing;

  STRATA_REQUIRE_ROOT();  // mknod
  fs::path out = Extract(archive.bytes);
  struct stat st {};
  ASSERT_EQ(::lstat((out / "dev/pipe").c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  ASSERT_EQ(::lstat((out / "dev/null").c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(major(st.st_rdev), 1u);
  EXPECT_EQ(minor(st.st_rdev), 3u);
  ASSERT_EQ(::lstat((out / "dev/loop9").c_str(), &st), 0);
  EXPECT_TRUE(S_ISBLK(st.st_mode));
}

TEST_F(TarWriterTest, ExtraPaxRecordsAndOutOfRangeValues) {
  Archive archive;
  TarEntry windows{.name = "Files/Windows/System32/config.sys", .mtime = {-2, 500'000'000}};
  windows.pax_records["MSWINDOWS.fileattr"] = "32";
  windows.pax_records["MSWINDOWS.rawsd"] = "AQAEgBQAAAAkAAAAAAAAADAAAAA=";
  ASSERT_TRUE(archive.writer.WriteEntry(windows, "windows"));
  ASSERT_TRUE(archive.writer.WriteHeader({.name = "huge", .size = uint64_t{10} << 30}));  // 10 GiB
  EXPECT_NE(archive.bytes.find(PaxRecord("MSWINDOWS.fileattr", "32")), std::string::npos);
  EXPECT_NE(archive.bytes.find(PaxRecord("mtime", "-1.5")), std::string::npos);
  EXPECT_NE(archive.bytes.find(PaxRecord("size", "10737418240")), std::string::npos);
}

TEST_F(TarWriterTest, PaxRecordLengthCountsItsOwnDigits) {
  EXPECT_EQ(PaxRecord("path", "a"), "9 path=a\n");
  // 7 + 92 = 99 characters before the length; with two digits it would be 101: three.
  std::string value(92, 'v');
  std::string record = PaxRecord("path", value);
  EXPECT_EQ(record.size(), 102u);
  EXPECT_TRUE(record.starts_with("102 path="));
}

TEST_F(TarWriterTest, MisuseIsRejected) {
  Archive archive;
  EXPECT_FALSE(archive.writer.WriteHeader({.name = ""}));
  EXPECT_FALSE(archive.writer.WriteHeader({.name = "d", .type = TarEntryType::kDirectory, .size = 1}));
  EXPECT_FALSE(archive.writer.WriteHeader({.name = "l", .type = TarEntryType::kSymlink}));
  TarEntry bad_key{.name = "k"};
  bad_key.pax_records["bad=key"] = "v";
  EXPECT_EQ(archive.writer.WriteHeader(bad_key).error().code(), ErrorCode::kInvalidArgument);

  ASSERT_TRUE(archive.writer.WriteHeader({.name = "f", .size = 4}));
  EXPECT_EQ(archive.writer.WriteData("12345").error().code(), ErrorCode::kInvalidArgument);
  ASSERT_TRUE(archive.writer.WriteData("12"));
  EXPECT_EQ(archive.writer.WriteHeader({.name = "g"}).error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_EQ(archive.writer.Finish().error().code(), ErrorCode::kFailedPrecondition);
  ASSERT_TRUE(archive.writer.WriteData("34"));
  ASSERT_TRUE(archive.writer.Finish());
  EXPECT_FALSE(archive.writer.Finish());
}

TEST_F(TarWriterTest, SinkErrorsStopTheWriter) {
  int calls = 0;
  TarWriter writer([&calls](std::string_view) -> Status {
    if (++calls == 2) return Fail(ErrorCode::kUnavailable, "disk full");
    return {};
  });
  ASSERT_TRUE(writer.WriteHeader({.name = "a", .size = 3}));
  Status failed = writer.WriteData("abc");
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().code(), ErrorCode::kUnavailable);
  EXPECT_EQ(writer.Finish().error().code(), ErrorCode::kFailedPrecondition);
}

}  // namespace
}  // namespace strata::archive
