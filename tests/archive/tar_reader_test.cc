// archive::TarReader: round trips through TarWriter, archives written by GNU tar in every
// format it has (including sparse files), and hostile inputs.
#include "archive/tar_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "archive/tar_writer.h"
#include "base/file.h"
#include "tests/support/assertions.h"
#include "tests/support/process.h"

namespace strata::archive {
namespace {

namespace fs = std::filesystem;
using test_support::RunCommand;

constexpr size_t kBlock = 512;

// Hands out the data in pieces of at most `step` bytes, so header and content reads cross
// the reader's refills at awkward places.
class ChunkedReader : public ByteReader {
 public:
  ChunkedReader(std::string_view data, size_t step) : data_(data), step_(step) {}
  Result<size_t> Read(std::span<char> buffer) override {
    size_t count = std::min({buffer.size(), data_.size(), step_});
    std::memcpy(buffer.data(), data_.data(), count);
    data_.remove_prefix(count);
    return count;
  }

 private:
  std::string_view data_;
  size_t step_;
};

struct ReadBack {
  TarEntry entry;
  std::string content;
};

Result<std::vector<ReadBack>> ReadArchive(std::string_view tar, TarReaderOptions options = {},
                                          size_t input_step = 100'000, size_t content_chunk = 70'000) {
  ChunkedReader input(tar, input_step);
  TarReader reader(input, options);
  std::vector<ReadBack> entries;
  while (true) {
    STRATA_ASSIGN_OR_RETURN(std::optional<TarEntry> entry, reader.Next());
    if (!entry) break;
    ReadBack item{std::move(*entry), {}};
    std::string chunk(content_chunk, '\0');
    while (true) {
      STRATA_ASSIGN_OR_RETURN(size_t got, reader.ReadContent(chunk));
      if (got == 0) break;
      item.content.append(chunk.data(), got);
    }
    entries.push_back(std::move(item));
  }
  return entries;
}

std::string WriteArchive(const std::vector<std::pair<TarEntry, std::string>>& entries) {
  std::string bytes;
  TarWriter writer([&](std::string_view data) -> Status {
    bytes.append(data);
    return {};
  });
  for (const auto& [entry, content] : entries) {
    Status status = writer.WriteEntry(entry, content);
    EXPECT_TRUE(status) << status.error().ToString();
  }
  Status finished = writer.Finish();
  EXPECT_TRUE(finished) << finished.error().ToString();
  return bytes;
}

void ExpectSameEntry(const TarEntry& want, const TarEntry& got) {
  SCOPED_TRACE("entry " + want.name);
  EXPECT_EQ(want.name, got.name);
  EXPECT_EQ(static_cast<char>(want.type), static_cast<char>(got.type));
  EXPECT_EQ(want.mode, got.mode);
  EXPECT_EQ(want.uid, got.uid);
  EXPECT_EQ(want.gid, got.gid);
  EXPECT_EQ(want.uname, got.uname);
  EXPECT_EQ(want.gname, got.gname);
  EXPECT_EQ(want.size, got.size);
  EXPECT_EQ(want.mtime.seconds, got.mtime.seconds);
  EXPECT_EQ(want.mtime.nanoseconds, got.mtime.nanoseconds);
  EXPECT_EQ(want.linkname, got.linkname);
  EXPECT_EQ(want.devmajor, got.devmajor);
  EXPECT_EQ(want.devminor, got.devminor);
  EXPECT_EQ(want.xattrs, got.xattrs);
  EXPECT_EQ(want.pax_records, got.pax_records);
}

TarEntry Make(std::string name, TarEntryType type = TarEntryType::kRegular) {
  TarEntry entry;
  entry.name = std::move(name);
  entry.type = type;
  entry.mode = type == TarEntryType::kDirectory ? 0755 : 0644;
  entry.uid = 1000;
  entry.gid = 100;
  entry.uname = "user";
  entry.gname = "users";
  entry.mtime = {1'600'000'000, 0};
  return entry;
}

std::string RandomBytes(size_t size, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string out(size, '\0');
  for (char& c : out) c = static_cast<char>(rng());
  return out;
}

void RoundTrip(const std::vector<std::pair<TarEntry, std::string>>& input) {
  std::string tar = WriteArchive(input);
  // Several input step sizes, so every header/field crosses a refill boundary somewhere.
  for (size_t step : {size_t{1} << 20, size_t{4096}, size_t{511}, size_t{7}}) {
    SCOPED_TRACE("input step " + std::to_string(step));
    ASSERT_OK_AND_ASSIGN(std::vector<ReadBack> entries, ReadArchive(tar, {}, step, step % 2 ? 333 : 65536));
    ASSERT_EQ(entries.size(), input.size());
    for (size_t i = 0; i < input.size(); ++i) {
      TarEntry want = input[i].first;
      want.size = input[i].second.size();
      if (want.type == TarEntryType::kDirectory && !want.name.ends_with('/')) want.name += '/';
      ExpectSameEntry(want, entries[i].entry);
      EXPECT_EQ(entries[i].content, input[i].second) << want.name;
    }
  }
}

// Overwrites bytes of the header at `header_offset` and fixes its checksum.
void PatchHeader(std::string& tar, size_t header_offset, size_t field_offset, std::string_view bytes) {
  tar.replace(header_offset + field_offset, bytes.size(), bytes);
  std::memset(tar.data() + header_offset + 148, ' ', 8);
  unsigned sum = 0;
  for (size_t i = 0; i < kBlock; ++i) sum += static_cast<unsigned char>(tar[header_offset + i]);
  std::string digits = fmt::format("{:06o}", sum);
  tar.replace(header_offset + 148, 7, digits + '\0');
}

TEST(TarReaderTest, RoundTripEveryEntryType) {
  TarEntry device = Make("dev/null", TarEntryType::kCharDevice);
  device.devmajor = 1;
  device.devminor = 3;
  TarEntry block = Make("dev/sda", TarEntryType::kBlockDevice);
  block.devmajor = 8;
  block.devminor = 0;
  TarEntry symlink = Make("bin/sh", TarEntryType::kSymlink);
  symlink.linkname = "busybox";
  TarEntry hardlink = Make("bin/ls", TarEntryType::kHardLink);
  hardlink.linkname = "bin/busybox";
  TarEntry setuid = Make("bin/su");
  setuid.mode = 04755;
  RoundTrip({
      {Make("bin", TarEntryType::kDirectory), ""},
      {Make("bin/busybox"), RandomBytes(3 * kBlock + 17, 1)},
      {Make("empty"), ""},
      {symlink, ""},
      {hardlink, ""},
      {device, ""},
      {block, ""},
      {Make("run/fifo", TarEntryType::kFifo), ""},
      {setuid, "x"},
      {Make("exact-block"), RandomBytes(kBlock, 2)},
      {Make("big"), RandomBytes(1 << 20, 3)},
  });
}

TEST(TarReaderTest, RoundTripPaxFeatures) {
  std::string dir150 = std::string(60, 'd') + "/" + std::string(40, 'e') + "/";
  TarEntry split_name = Make(dir150 + std::string(48, 'f'));  // fits ustar prefix + name
  ASSERT_GT(split_name.name.size(), 100u);
  TarEntry very_long = Make(std::string(120, 'a') + "/" + std::string(120, 'b') + "/" + std::string(100, 'c'));
  ASSERT_GT(very_long.name.size(), 255u);
  TarEntry unicode = Make("données/ファイル.txt");
  TarEntry long_link = Make("link", TarEntryType::kSymlink);
  long_link.linkname = std::string(200, 'L') + "/target";
  TarEntry xattrs = Make("xattrs");
  xattrs.xattrs["user.binary"] = std::string("\0\x01\xff\n=\n", 6);
  xattrs.xattrs["security.capability"] = std::string("\x01\x00\x00\x02\x00\x20\x00\x00", 8);
  xattrs.xattrs["user.empty_name_value"] = "v";
  TarEntry windows = Make("Files/Windows/System32/config/SYSTEM");
  windows.pax_records["MSWINDOWS.fileattr"] = "32";
  windows.pax_records["MSWINDOWS.rawsd"] = "AQAAgBQAAAAkAAAAAAAAAAAAAAABAgAAAAAABSAAAAAhAgAAAQIAAAAAAAUgAAAAIQIAAA==";
  windows.pax_records["LIBARCHIVE.creationtime"] = "1600000000.5";
  windows.pax_records["atime"] = "1600000001.25";
  windows.pax_records["ctime"] = "1600000002";
  TarEntry big_ids = Make("big-ids");
  big_ids.uid = uint64_t{1} << 40;
  big_ids.gid = 4'000'000'000;
  big_ids.uname = std::string(40, 'u');  // over ustar's 32 bytes
  TarEntry subsecond = Make("subsecond");
  subsecond.mtime = {1'600'000'000, 123'456'789};
  TarEntry negative = Make("before-1970");
  negative.mtime = {-2, 500'000'000};
  TarEntry far_future = Make("far-future");
  far_future.mtime = {int64_t{1} << 40, 1};
  RoundTrip({
      {split_name, "split"},
      {very_long, "long"},
      {unicode, "unicode"},
      {long_link, ""},
      {xattrs, "x"},
      {windows, RandomBytes(1000, 4)},
      {big_ids, ""},
      {subsecond, ""},
      {negative, ""},
      {far_future, ""},
  });
}

TEST(TarReaderTest, NextSkipsUnreadContentAndOffsetCountsBytes) {
  std::string tar = WriteArchive({{Make("a"), RandomBytes(300'000, 5)}, {Make("b"), "bee"}});
  StringViewReader input(tar);
  TarReader reader(input);
  ASSERT_OK_AND_ASSIGN(std::optional<TarEntry> a, reader.Next());
  ASSERT_TRUE(a);
  std::string buffer(10, '\0');
  ASSERT_OK_AND_ASSIGN(size_t got, reader.ReadContent(buffer));
  EXPECT_EQ(got, 10u);
  ASSERT_OK_AND_ASSIGN(std::optional<TarEntry> b, reader.Next());
  ASSERT_TRUE(b);
  EXPECT_EQ(b->name, "b");
  EXPECT_EQ(reader.offset(), kBlock + 300'000 + (kBlock - 300'000 % kBlock) + kBlock);
  ASSERT_OK_AND_ASSIGN(got, reader.ReadContent(buffer));
  EXPECT_EQ(std::string(buffer.data(), got), "bee");
  ASSERT_OK_AND_ASSIGN(std::optional<TarEntry> end, reader.Next());
  EXPECT_FALSE(end);
  ASSERT_OK_AND_ASSIGN(end, reader.Next());  // stays at the end
  EXPECT_FALSE(end);
}

TEST(TarReaderTest, HugeSizeFromPaxIsParsedThenDataIsTruncated) {
  std::string tar;
  TarWriter writer([&](std::string_view data) -> Status {
    tar.append(data);
    return {};
  });
  TarEntry huge = Make("huge");
  huge.size = 9ull << 30;  // > 8 GiB: only PAX can say it
  ASSERT_OK(writer.WriteHeader(huge));
  ASSERT_OK(writer.WriteData("some data"));

  StringViewReader input(tar);
  TarReader reader(input);
  ASSERT_OK_AND_ASSIGN(std::optional<TarEntry> entry, reader.Next());
  ASSERT_TRUE(entry);
  EXPECT_EQ(entry->size, 9ull << 30);
  std::string buffer(1 << 16, '\0');
  Result<size_t> got = reader.ReadContent(buffer);
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, 9u);
  got = reader.ReadContent(buffer);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(got.error().message().find("truncated tar: entry 'huge' ends at byte"), std::string::npos)
      << got.error().message();
  // Errors are sticky.
  Result<std::optional<TarEntry>> next = reader.Next();
  ASSERT_FALSE(next);
  EXPECT_EQ(next.error(), got.error());
}

TEST(TarReaderTest, SizeOverLimitIsRefused) {
  std::string tar = WriteArchive({{Make("big"), std::string(5000, 'x')}});
  Result<std::vector<ReadBack>> result = ReadArchive(tar, {.max_entry_size = 4096});
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message().find("over the limit"), std::string::npos) << result.error().message();
  EXPECT_NE(result.error().message().find("'big'"), std::string::npos) << result.error().message();
}

TEST(TarReaderTest, PaxHeaderOverLimitIsRefused) {
  std::string tar = WriteArchive({{Make(std::string(300, 'n')), ""}});
  Result<std::vector<ReadBack>> result = ReadArchive(tar, {.max_pax_header_bytes = 200});
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message().find("PAX header at byte 0 has size"), std::string::npos)
      << result.error().message();
  ASSERT_OK(ReadArchive(tar, {.max_pax_header_bytes = 1024}));
}

TEST(TarReaderTest, BadChecksumIsRefused) {
  std::string tar = WriteArchive({{Make("file"), "data"}});
  tar[0] = 'F';  // name changes, checksum does not
  Result<std::vector<ReadBack>> result = ReadArchive(tar);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(result.error().message().find("bad header checksum at byte 0 (name 'File')"), std::string::npos)
      << result.error().message();
}

TEST(TarReaderTest, TruncatedHeaderIsRefused) {
  std::string tar = WriteArchive({{Make("a"), "data"}, {Make("b"), "data"}});
  Result<std::vector<ReadBack>> result = ReadArchive(tar.substr(0, 2 * kBlock + 300));
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message().find("truncated tar: header at byte 1024 has 300 of 512 bytes"),
            std::string::npos)
      << result.error().message();
}

TEST(TarReaderTest, TruncatedDataIsRefused) {
  std::string tar = WriteArchive({{Make("f"), std::string(1000, 'x')}});
  Result<std::vector<ReadBack>> result = ReadArchive(tar.substr(0, kBlock + 500));
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message().find("truncated tar: entry 'f' ends at byte 1012 (500 of its 1000"),
            std::string::npos)
      << result.error().message();
  // Skipping (not reading) the data notices it too.
  StringViewReader input(std::string_view(tar).substr(0, kBlock + 500));
  TarReader reader(input);
  ASSERT_OK(reader.Next());
  EXPECT_FALSE(reader.Next());
}

TEST(TarReaderTest, GarbageNumbersAreRefused) {
  for (auto [field_offset, bytes, what] : {std::tuple{size_t{100}, std::string("07x4\0", 5), "mode"},
                                           std::tuple{size_t{124}, std::string("9999"), "size"},
                                           std::tuple{size_t{108}, std::string("\x42\x01", 2), "uid"}}) {
    std::string tar = WriteArchive({{Make("f"), "data"}});
    PatchHeader(tar, 0, field_offset, bytes);
    Result<std::vector<ReadBack>> result = ReadArchive(tar);
    ASSERT_FALSE(result) << what;
    EXPECT_NE(result.error().message().find(fmt::format("bad {} field", what)), std::string::npos)
        << result.error().message();
  }
}

TEST(TarReaderTest, BadPaxRecordsAreRefused) {
  TarEntry entry = Make(std::string(120, 'p'));  // forces a PAX header
  for (std::string_view bad : {"99 path=x\n", "5 path=xyz\n", "11 pathxyz\n\n", "x path=y\n", "12 mtime=1.\n"}) {
    std::string tar = WriteArchive({{entry, ""}});
    std::string records(bad);
    records.resize(kBlock, '\0');
    tar.replace(kBlock, kBlock, records);
    PatchHeader(tar, 0, 124, fmt::format("{:011o}", bad.size()));
    Result<std::vector<ReadBack>> result = ReadArchive(tar);
    ASSERT_FALSE(result) << bad;
    EXPECT_EQ(result.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(result.error().message().find("PAX"), std::string::npos) << result.error().message();
  }
}

TEST(TarReaderTest, EndOfArchiveVariants) {
  std::string tar = WriteArchive({{Make("f"), "data"}});
  size_t entry_end = 2 * kBlock;
  ASSERT_EQ(tar.size(), entry_end + 2 * kBlock);
  // Empty input, no end blocks, a lone zero block, and trailing garbage after the end.
  for (auto [input, entries] : {std::pair{std::string(), 0u}, std::pair{tar.substr(0, entry_end), 1u},
                                std::pair{tar.substr(0, entry_end + kBlock), 1u},
                                std::pair{tar + "trailing garbage", 1u}}) {
    ASSERT_OK_AND_ASSIGN(std::vector<ReadBack> read, ReadArchive(input));
    EXPECT_EQ(read.size(), entries) << input.size();
  }
  // A zero block followed by another header is refused, not silently cut short.
  std::string hidden = tar.substr(0, entry_end) + std::string(kBlock, '\0') + tar;
  Result<std::vector<ReadBack>> result = ReadArchive(hidden);
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message().find("zero block at byte 1024 is followed by data"), std::string::npos)
      << result.error().message();
}

TEST(TarReaderTest, Base256Numbers) {
  std::string tar = WriteArchive({{Make("f"), "data"}});
  std::string uid(8, '\0');
  uid[0] = static_cast<char>(0x80);
  uid[3] = 0x01;  // 1 << 32
  PatchHeader(tar, 0, 108, uid);
  std::string mtime(12, static_cast<char>(0xff));  // -1
  PatchHeader(tar, 0, 136, mtime);
  std::string size(12, '\0');
  size[0] = static_cast<char>(0x80);
  size[11] = 4;
  PatchHeader(tar, 0, 124, size);
  ASSERT_OK_AND_ASSIGN(std::vector<ReadBack> read, ReadArchive(tar));
  ASSERT_EQ(read.size(), 1u);
  EXPECT_EQ(read[0].entry.uid, uint64_t{1} << 32);
  EXPECT_EQ(read[0].entry.mtime.seconds, -1);
  EXPECT_EQ(read[0].content, "data");
}

TEST(TarReaderTest, GlobalHeadersApplyToLaterEntriesAndEmptyValuesCancel) {
  TarEntry global_carrier = Make("ignored");
  global_carrier.pax_records["MSWINDOWS.fileattr"] = "16";
  global_carrier.pax_records["comment"] = "from global";
  TarEntry cancel = Make("second");
  cancel.pax_records["comment"] = "";
  std::string tar = WriteArchive({{global_carrier, ""}, {Make("first"), ""}, {cancel, ""}});
  // The first entry's PAX header becomes a global header; drop the entry it described.
  PatchHeader(tar, 0, 156, "g");
  tar.erase(2 * kBlock, kBlock);
  ASSERT_OK_AND_ASSIGN(std::vector<ReadBack> read, ReadArchive(tar));
  ASSERT_EQ(read.size(), 2u);
  EXPECT_EQ(read[0].entry.name, "first");
  EXPECT_EQ(read[0].entry.pax_records,
            (std::map<std::string, std::string>{{"MSWINDOWS.fileattr", "16"}, {"comment", "from global"}}));
  EXPECT_EQ(read[1].entry.pax_records, (std::map<std::string, std::string>{{"MSWINDOWS.fileattr", "16"}}));
}

TEST(TarReaderTest, LibarchiveXattrsAreDecoded) {
  TarEntry entry = Make("f");
  entry.pax_records["LIBARCHIVE.xattr.user.a%3Db"] = "AAH/Cg==";  // "\0\1\xff\n"
  std::string tar = WriteArchive({{entry, ""}});
  ASSERT_OK_AND_ASSIGN(std::vector<ReadBack> read, ReadArchive(tar));
  ASSERT_EQ(read.size(), 1u);
  EXPECT_TRUE(read[0].entry.pax_records.empty());
  EXPECT_EQ(read[0].entry.xattrs, (std::map<std::string, std::string>{{"user.a=b", std::string("\0\1\xff\n", 4)}}));
}

TEST(TarReaderTest, UnknownTypeFlags) {
  std::string tar = WriteArchive({{Make("odd"), ""}, {Make("odd-with-data"), "data"}});
  PatchHeader(tar, 0, 156, "Z");
  PatchHeader(tar, kBlock, 156, "Q");
  ChunkedReader input(tar, 1 << 20);
  TarReader reader(input);
  ASSERT_OK_AND_ASSIGN(std::optional<TarEntry> odd, reader.Next());
  ASSERT_TRUE(odd);
  EXPECT_EQ(static_cast<char>(odd->type), 'Z');
  Result<std::optional<TarEntry>> bad = reader.Next();
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("unsupported type"), std::string::npos) << bad.error().message();
}

TEST(TarReaderTest, OldStyleHeaders) {
  // v7 regular type '\0' with a trailing slash is a directory; '7' (contiguous) is regular.
  std::string tar = WriteArchive({{Make("olddir/"), ""}, {Make("contiguous"), "c"}});
  PatchHeader(tar, 0, 156, std::string(1, '\0'));
  PatchHeader(tar, kBlock, 156, "7");
  ASSERT_OK_AND_ASSIGN(std::vector<ReadBack> read, ReadArchive(tar));
  ASSERT_EQ(read.size(), 2u);
  EXPECT_EQ(read[0].entry.type, TarEntryType::kDirectory);
  EXPECT_EQ(read[1].entry.type, TarEntryType::kRegular);
  EXPECT_EQ(read[1].content, "c");

  // Some old tars sum the header as signed bytes.
  std::string signed_tar = WriteArchive({{Make("caf\xc3\xa9"), ""}});  // non-ASCII: PAX + '_' fallback
  size_t header = signed_tar.size() - 3 * kBlock;
  PatchHeader(signed_tar, header, 0, "caf\xc3\xa9");
  int sum = 0;
  for (size_t i = 0; i < kBlock; ++i) {
    bool in_checksum = i >= 148 && i < 156;
    sum += in_checksum ? ' ' : static_cast<signed char>(signed_tar[header + i]);
  }
  signed_tar.replace(header + 148, 7, fmt::format("{:06o}", sum) + '\0');
  ASSERT_OK_AND_ASSIGN(read, ReadArchive(signed_tar));
  ASSERT_EQ(read.size(), 1u);
  EXPECT_EQ(read[0].entry.name, "caf\xc3\xa9");
}

// ---- Archives written by GNU tar ----

class GnuTarTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<TempDir> dir = TempDir::Create("strata-tar-reader");
    ASSERT_TRUE(dir) << dir.error().ToString();
    dir_.emplace(std::move(*dir));
    root_ = dir_->path() / "root";
    fs::create_directories(root_ / "sub" / "deeper");
  }

  void WriteFile(const fs::path& relative, std::string_view content) {
    std::ofstream(root_ / relative, std::ios::binary) << content;
  }

  void MakeCommonTree() {
    WriteFile("a.txt", "hello\n");
    WriteFile("empty", "");
    WriteFile("sub/big.bin", RandomBytes(700'000, 9));
    WriteFile("sub/deeper/x", "x");
    fs::create_symlink("../a.txt", root_ / "sub" / "link");
    fs::create_hard_link(root_ / "a.txt", root_ / "sub" / "hard");
    fs::permissions(root_ / "a.txt", fs::perms(0640));
  }

  void MakeExtendedTree() {
    // Over 100 bytes but splittable into ustar's prefix and name.
    fs::create_directories(root_ / std::string(90, 'd'));
    WriteFile(fs::path(std::string(90, 'd')) / std::string(60, 'f'), "long name");
    ASSERT_EQ(mkfifo((root_ / "fifo").c_str(), 0600), 0);
    WriteFile("données-ファイル", "unicode");
  }

  void MakeVeryLongName() {
    fs::path path = root_;
    for (int i = 0; i < 3; ++i) path /= std::string(100, static_cast<char>('p' + i));
    fs::create_directories(path);
    std::ofstream(path / "leaf", std::ios::binary) << "very long";  // > 255 bytes
    fs::create_symlink(std::string(150, 't'), root_ / "long-target");  // > 100 bytes
  }

  std::string Tar(std::vector<std::string> flags) {
    fs::path out = dir_->path() / "out.tar";
    std::vector<std::string> argv = {"tar"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    for (std::string arg : {std::string("-cf"), out.string(), std::string("-C"), root_.string(), std::string(".")}) {
      argv.push_back(arg);
    }
    std::string output;
    Result<int> code = RunCommand(argv, &output);
    EXPECT_TRUE(code && *code == 0) << output;
    std::ifstream in(out, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  static std::string Slurp(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  // Every entry matches the file it came from, and every file has an entry.
  void ExpectMatchesTree(const std::vector<ReadBack>& entries) {
    std::set<std::string> seen;
    for (const ReadBack& item : entries) {
      const TarEntry& entry = item.entry;
      SCOPED_TRACE("entry " + entry.name);
      ASSERT_TRUE(entry.name.starts_with("./")) << entry.name;
      std::string relative = entry.name.substr(2);
      while (relative.ends_with('/')) relative.pop_back();
      if (relative.empty()) continue;
      seen.insert(relative);
      fs::path path = root_ / relative;
      struct stat st {};
      ASSERT_EQ(lstat(path.c_str(), &st), 0) << path;
      EXPECT_EQ(entry.mode, st.st_mode & 07777);
      EXPECT_EQ(entry.mtime.seconds, st.st_mtim.tv_sec);
      EXPECT_EQ(entry.uid, st.st_uid);
      switch (entry.type) {
        case TarEntryType::kRegular:
          ASSERT_TRUE(S_ISREG(st.st_mode));
          EXPECT_EQ(entry.size, static_cast<uint64_t>(st.st_size));
          EXPECT_TRUE(item.content == Slurp(path)) << "content differs";
          break;
        case TarEntryType::kDirectory:
          EXPECT_TRUE(S_ISDIR(st.st_mode));
          EXPECT_TRUE(entry.name.ends_with('/'));
          break;
        case TarEntryType::kSymlink:
          ASSERT_TRUE(S_ISLNK(st.st_mode));
          EXPECT_EQ(entry.linkname, fs::read_symlink(path).string());
          break;
        case TarEntryType::kHardLink: {
          ASSERT_TRUE(entry.linkname.starts_with("./"));
          struct stat target {};
          ASSERT_EQ(lstat((root_ / entry.linkname.substr(2)).c_str(), &target), 0);
          EXPECT_EQ(target.st_ino, st.st_ino);
          EXPECT_EQ(entry.size, 0u);
          break;
        }
        case TarEntryType::kFifo:
          EXPECT_TRUE(S_ISFIFO(st.st_mode));
          break;
        default:
          ADD_FAILURE() << "unexpected type " << static_cast<char>(entry.type);
      }
    }
    for (const auto& file : fs::recursive_directory_iterator(root_)) {
      EXPECT_TRUE(seen.contains(fs::relative(file.path(), root_).string())) << "missing " << file.path();
    }
  }

  std::optional<TempDir> dir_;
  fs::path root_;
};

TEST_F(GnuTarTest, GnuFormat) {
  MakeCommonTree();
  MakeExtendedTree();
  MakeVeryLongName();
  std::string tar = Tar({"--format=gnu"});
  ASSERT_NE(tar.find("././@LongLink"), std::string::npos);  // the long-name path is exercised
  ASSERT_OK_AND_ASSIGN(std::vector<ReadBack> entries, ReadArchive(tar, {}, 4093));
  ExpectMatchesTree(entries);
}

TEST_F(GnuTarTest, PaxFormat) {
  MakeCommonTree();
  MakeExtendedTree();
  MakeVeryLongName();
  std::string tar = Tar({"--format=pax"});
  ASSERT_OK_AND_ASSIGN(std::vector<ReadBack> entries, ReadArchive(tar));
  ExpectMatchesTree(entries);
  // GNU tar's PAX output carries atime/ctime; they are kept as records.
  EXPECT_TRUE(entries.back().entry.pax_records.contains("atime"));
}

TEST_F(GnuTarTest, UstarFormat) {
  MakeCommonTree();
  MakeExtendedTree();
  ASSERT_OK_AND_ASSIGN(std::vector<ReadBack> entries, ReadArchive(Tar({"--format=ustar"})));
  ExpectMatchesTree(entries);
}

TEST_F(GnuTarTest, V7Format) {
  MakeCommonTree();
  ASSERT_OK_AND_ASSIGN(std::vector<ReadBack> entries, ReadArchive(Tar({"--format=v7"})));
  ExpectMatchesTree(entries);
}

class GnuTarSparseTest : public GnuTarTest, public ::testing::WithParamInterface<std::vector<std::string>> {};

TEST_P(GnuTarSparseTest, SparseFileIsExpanded) {
  fs::path path = root_ / "sparse.img";
  int fd = open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  std::string data = RandomBytes(5000, 11);
  // 64 data regions: more than an old GNU header (4) and two extension blocks (21 each) hold.
  for (off_t offset = 0; offset < (off_t{16} << 20); offset += off_t{256} << 10) {
    ASSERT_EQ(pwrite(fd, data.data(), data.size(), offset), static_cast<ssize_t>(data.size()));
  }
  ASSERT_EQ(ftruncate(fd, off_t{17} << 20), 0);  // ends in a hole
  close(fd);
  WriteFile("after", "after the sparse file");

  std::string tar = Tar(GetParam());
  ASSERT_LT(tar.size(), 1u << 20) << "GNU tar did not store the file sparse";
  ASSERT_OK_AND_ASSIGN(std::vector<ReadBack> entries, ReadArchive(tar, {}, 1000, 100'000));
  ExpectMatchesTree(entries);
  bool found = false;
  for (const ReadBack& item : entries) {
    if (item.entry.name == "./sparse.img") {
      found = true;
      EXPECT_EQ(item.entry.size, uint64_t{17} << 20);
    }
  }
  EXPECT_TRUE(found);
}

INSTANTIATE_TEST_SUITE_P(Formats, GnuTarSparseTest,
                         ::testing::Values(std::vector<std::string>{"--format=gnu", "--sparse"},
                                           std::vector<std::string>{"--format=pax", "--sparse",
                                                                    "--sparse-version=0.0"},
                                           std::vector<std::string>{"--format=pax", "--sparse",
                                                                    "--sparse-version=0.1"},
                                           std::vector<std::string>{"--format=pax", "--sparse",
                                                                    "--sparse-version=1.0"}));

}  // namespace
}  // namespace strata::archive
