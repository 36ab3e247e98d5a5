// archive::ApplyWindowsLayer / WriteWindowsLayer: a base and a delta layer with every
// Windows feature are applied, checked on disk, and exported again; the export must hold the
// same entries as the original (compared as multisets, and in order). Invalid and hostile
// layers are refused with an error naming the entry, without writing beside the layer dir.
#include "archive/windows_layer.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <iterator>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "archive/apply.h"
#include "archive/tar_reader.h"
#include "archive/windows_layer_index.h"
#include "base/digest.h"
#include "base/file.h"
#include "base/io.h"
#include "tests/support/assertions.h"
#include "tests/support/image_builder.h"
#include "tests/support/root.h"
#include "tests/support/windows_layer_builder.h"

namespace strata::archive {
namespace {

namespace fs = std::filesystem;
using test_support::WindowsBaseLayer;
using test_support::WindowsDeltaLayer;
using test_support::WindowsLayerBuilder;
using test_support::WinAttrs;

// One tar entry in comparable form.
struct ParsedEntry {
  std::string name;
  char type = 0;
  uint32_t mode = 0;
  uint64_t uid = 0, gid = 0;
  int64_t mtime_s = 0;
  uint32_t mtime_ns = 0;
  std::string linkname;
  std::map<std::string, std::string> pax_records;
  std::map<std::string, std::string> xattrs;
  std::string data_sha256;

  auto Key() const {
    return std::tie(name, type, mode, uid, gid, mtime_s, mtime_ns, linkname, pax_records, xattrs, data_sha256);
  }
  bool operator<(const ParsedEntry& other) const { return Key() < other.Key(); }
  bool operator==(const ParsedEntry& other) const { return Key() == other.Key(); }
};

std::ostream& operator<<(std::ostream& out, const ParsedEntry& e) {
  out << "{" << e.name << " type=" << e.type << " mode=" << e.mode << " mtime=" << e.mtime_s << "." << e.mtime_ns
      << " link=" << e.linkname << " sha=" << e.data_sha256.substr(0, 12);
  for (const auto& [k, v] : e.pax_records) out << " " << k << "=" << v;
  for (const auto& [k, v] : e.xattrs) out << " xattr:" << k << "=" << v;
  return out << "}";
}

Result<std::vector<ParsedEntry>> ParseTar(std::string_view tar) {
  StringViewReader input(tar);
  TarReader reader(input);
  std::vector<ParsedEntry> out;
  while (true) {
    STRATA_ASSIGN_OR_RETURN(auto next, reader.Next());
    if (!next) break;
    ParsedEntry e{next->name, static_cast<char>(next->type), next->mode, next->uid, next->gid,
                  next->mtime.seconds, next->mtime.nanoseconds, next->linkname, next->pax_records, next->xattrs, ""};
    std::string data;
    char buf[4096];
    while (true) {
      STRATA_ASSIGN_OR_RETURN(size_t got, reader.ReadContent(buf));
      if (got == 0) break;
      data.append(buf, got);
    }
    e.data_sha256 = Digest::Of(data).hex();
    out.push_back(std::move(e));
  }
  return out;
}

std::string Slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

struct stat Lstat(const fs::path& path) {
  struct stat st{};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path << ": " << strerror(errno);
  return st;
}

bool Exists(const fs::path& path) {
  struct stat st{};
  return ::lstat(path.c_str(), &st) == 0;
}

Result<std::string> Export(const fs::path& layer_dir) {
  std::string tar;
  STRATA_RETURN_IF_ERROR(WriteWindowsLayer(layer_dir, [&tar](std::string_view bytes) -> Status {
    tar.append(bytes);
    return {};
  }));
  return tar;
}

Result<WindowsLayerStats> Apply(std::string_view tar, const fs::path& dir, const WindowsLayerOptions& options) {
  StringViewReader reader(tar);
  return ApplyWindowsLayer(reader, dir, options);
}

// The original and exported tars hold the same entries (compared as multisets), and in the
// same order. Failures print the differing entries only.
void ExpectEquivalent(const std::string& original, const std::string& exported) {
  ASSERT_OK_AND_ASSIGN(auto a, ParseTar(original));
  ASSERT_OK_AND_ASSIGN(auto b, ParseTar(exported));
  auto sorted_a = a;
  auto sorted_b = b;
  std::sort(sorted_a.begin(), sorted_a.end());
  std::sort(sorted_b.begin(), sorted_b.end());
  std::vector<ParsedEntry> only_a, only_b;
  std::set_difference(sorted_a.begin(), sorted_a.end(), sorted_b.begin(), sorted_b.end(), std::back_inserter(only_a));
  std::set_difference(sorted_b.begin(), sorted_b.end(), sorted_a.begin(), sorted_a.end(), std::back_inserter(only_b));
  for (const auto& e : only_a) ADD_FAILURE() << "only in the original: " << e;
  for (const auto& e : only_b) ADD_FAILURE() << "only in the export: " << e;
  if (!only_a.empty() || !only_b.empty()) return;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!(a[i] == b[i])) {
      ADD_FAILURE() << "entry " << i << " is out of order: " << a[i].name << " vs " << b[i].name;
      return;
    }
  }
}

class WindowsLayerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = TempDir::Create("strata-winlayer");
    ASSERT_TRUE(dir) << dir.error().ToString();
    tmp_.emplace(std::move(*dir));
    // A sentinel beside the layer dirs: hostile layers must not touch it.
    std::ofstream(tmp_->path() / "sentinel") << "untouched";
  }

  fs::path NewLayerDir(const std::string& name) {
    fs::path dir = tmp_->path() / name;
    fs::create_directory(dir);
    return dir;
  }

  // Nothing but the layer dirs and the sentinel beside them.
  void ExpectNothingBeside(const std::set<std::string>& layers) {
    std::set<std::string> names;
    for (const auto& child : fs::directory_iterator(tmp_->path())) names.insert(child.path().filename().string());
    std::set<std::string> expected = layers;
    expected.insert("sentinel");
    EXPECT_EQ(names, expected);
    EXPECT_EQ(Slurp(tmp_->path() / "sentinel"), "untouched");
  }

  std::optional<TempDir> tmp_;
};

TEST_F(WindowsLayerTest, BaseLayerAppliesAndExportsEquivalently) {
  ASSERT_OK_AND_ASSIGN(std::string tar, WindowsBaseLayer().Tar());
  fs::path base = NewLayerDir("base");
  ASSERT_OK_AND_ASSIGN(auto stats, Apply(tar, base, {.is_base = true}));
  EXPECT_EQ(stats.entries, WindowsBaseLayer().entry_count());
  EXPECT_EQ(stats.streams, 4u);
  EXPECT_EQ(stats.whiteouts, 0u);

  EXPECT_EQ(Slurp(base / "layerchain.json"), "null");
  EXPECT_EQ(Slurp(base / "Files/Windows/System32/config/SAM"), "regf hive SAM");
  EXPECT_EQ(Slurp(base / "Files/Users/Zoë/日本語.txt"), "こんにちは");
  // Hard links are real hard links inside the layer, UtilityVM/Files -> Files/ included.
  EXPECT_EQ(Lstat(base / "UtilityVM/Files/Windows/System32/kernel32.dll").st_ino,
            Lstat(base / "Files/Windows/System32/kernel32.dll").st_ino);
  EXPECT_EQ(Lstat(base / "Files/Windows/System32/kernel32-alias.dll").st_ino,
            Lstat(base / "Files/Windows/System32/kernel32.dll").st_ino);
  // Links keep their raw Windows targets.
  EXPECT_EQ(fs::read_symlink(base / "Files/Documents and Settings").string(), "C:\\Users");
  EXPECT_EQ(fs::read_symlink(base / "Files/Windows/notepad-link.exe").string(), "C:\\Windows\\System32\\notepad.exe");
  EXPECT_EQ(fs::read_symlink(base / "Files/Windows/etc").string(), "System32\\drivers\\etc");
  // Streams are not siblings in the tree.
  for (const auto& entry : fs::recursive_directory_iterator(base / "Files")) {
    EXPECT_EQ(entry.path().filename().string().find(':'), std::string::npos) << entry.path();
  }
  // Times: mtime with nanoseconds, atime from the record, directories after their children.
  struct stat notepad = Lstat(base / "Files/Windows/System32/notepad.exe");
  EXPECT_EQ(notepad.st_mtim.tv_sec, test_support::kWindowsEntryMtime.seconds);
  EXPECT_EQ(notepad.st_mtim.tv_nsec, test_support::kWindowsEntryMtime.nanoseconds);
  EXPECT_EQ(notepad.st_atim.tv_sec, 1'700'000'100);
  EXPECT_EQ(notepad.st_atim.tv_nsec, 250'000'000);
  struct stat system32 = Lstat(base / "Files/Windows/System32");
  EXPECT_EQ(system32.st_mtim.tv_sec, test_support::kWindowsEntryMtime.seconds);
  EXPECT_EQ(system32.st_mtim.tv_nsec, test_support::kWindowsEntryMtime.nanoseconds);

  ASSERT_OK_AND_ASSIGN(std::string exported, Export(base));
  ExpectEquivalent(tar, exported);
  // Stronger than promised, and true because the fixture was written by TarWriter too.
  EXPECT_EQ(exported, tar);
  ASSERT_OK_AND_ASSIGN(std::string again, Export(base));
  EXPECT_EQ(exported, again) << "export is not deterministic";
  ExpectNothingBeside({"base"});
}

TEST_F(WindowsLayerTest, IndexGivesWindowsMetadataPerPath) {
  ASSERT_OK_AND_ASSIGN(std::string tar, WindowsBaseLayer().Tar());
  fs::path base = NewLayerDir("base");
  ASSERT_OK(Apply(tar, base, {.is_base = true}));
  ASSERT_OK_AND_ASSIGN(auto entries, ReadWindowsLayerEntries(base));
  ASSERT_EQ(entries.size(), WindowsBaseLayer().entry_count());
  std::map<std::string, WindowsLayerEntry> by_name;
  for (auto& entry : entries) by_name[entry.header.name] = entry;
  const auto& hidden = by_name.at("Files/ProgramData/");
  EXPECT_EQ(hidden.header.pax_records.at("MSWINDOWS.fileattr"), "22");
  const auto& junction = by_name.at("Files/Documents and Settings");
  EXPECT_EQ(junction.header.pax_records.at("MSWINDOWS.mountpoint"), "1");
  EXPECT_EQ(junction.header.linkname, "C:\\Users");
  const auto& stream = by_name.at("Files/Windows/System32/notepad.exe:com.example.meta:$DATA");
  ASSERT_FALSE(stream.stream.empty());
  EXPECT_EQ(Slurp(base / stream.stream), std::string("\x00\x01 binary", 9));
  const auto& uvm_link = by_name.at("UtilityVM/Files/Windows/System32/kernel32.dll");
  EXPECT_EQ(uvm_link.header.type, TarEntryType::kHardLink);
  EXPECT_EQ(uvm_link.header.pax_records.at("MSWINDOWS.fileattr"), "32");
}

TEST_F(WindowsLayerTest, ExportSurvivesCopyWithoutXattrs) {
  ASSERT_OK_AND_ASSIGN(std::string tar, WindowsBaseLayer().Tar());
  fs::path base = NewLayerDir("base");
  ASSERT_OK(Apply(tar, base, {.is_base = true}));
  fs::path copy = tmp_->path() / "copy";
  fs::copy(base, copy, fs::copy_options::recursive | fs::copy_options::copy_symlinks);
  ASSERT_OK_AND_ASSIGN(std::string exported, Export(copy));
  // Plain copies break hard-link sharing but not the index: the export is unchanged.
  ExpectEquivalent(tar, exported);
}

TEST_F(WindowsLayerTest, DeltaLayerAppliesOverBaseAndExportsEquivalently) {
  STRATA_REQUIRE_ROOT();  // whiteouts are 0/0 character devices (mknod)
  ASSERT_OK_AND_ASSIGN(std::string base_tar, WindowsBaseLayer().Tar());
  ASSERT_OK_AND_ASSIGN(std::string delta_tar, WindowsDeltaLayer().Tar());
  fs::path base = NewLayerDir("base");
  fs::path delta = NewLayerDir("delta");
  ASSERT_OK(Apply(base_tar, base, {.is_base = true}));
  ASSERT_OK_AND_ASSIGN(auto stats, Apply(delta_tar, delta, {.is_base = false, .parent_layers = {base}}));
  EXPECT_EQ(stats.whiteouts, 2u);
  EXPECT_EQ(stats.streams, 1u);

  nlohmann::json chain = nlohmann::json::parse(Slurp(delta / "layerchain.json"));
  EXPECT_EQ(chain, nlohmann::json::array({base.string()}));

  // Tombstones: 0/0 character devices where the base file and dir were.
  for (std::string_view deleted : {test_support::kBaseDeletedFile, test_support::kBaseDeletedDir}) {
    struct stat st = Lstat(delta / deleted);
    EXPECT_TRUE(S_ISCHR(st.st_mode)) << deleted;
    EXPECT_EQ(st.st_rdev, makedev(0, 0)) << deleted;
  }
  // The hard link to a base-layer file holds its data.
  EXPECT_EQ(Slurp(delta / test_support::kDeltaParentLink), "こんにちは");
  EXPECT_EQ(Slurp(delta / "Hives/Software_Delta"), "regf delta Software");
  EXPECT_EQ(Slurp(delta / "Files/Windows/System32/kernel32.dll"), "MZ kernel32 v2 (patched)");
  EXPECT_EQ(Slurp(base / "Files/Windows/System32/kernel32.dll"), "MZ kernel32 v1");
  // The CatRoot case: the directory's time survives the whiteout and file written into it.
  struct stat catroot = Lstat(delta / test_support::kDeltaCatRootDir);
  EXPECT_EQ(catroot.st_mtim.tv_sec, test_support::kDeltaCatRootMtime.seconds);
  EXPECT_EQ(catroot.st_mtim.tv_nsec, test_support::kDeltaCatRootMtime.nanoseconds);
  struct stat system32 = Lstat(delta / "Files/Windows/System32");
  EXPECT_EQ(system32.st_mtim.tv_sec, 1'710'000'001);
  EXPECT_EQ(system32.st_mtim.tv_nsec, 0);

  ASSERT_OK_AND_ASSIGN(std::string exported, Export(delta));
  ExpectEquivalent(delta_tar, exported);
  ASSERT_OK_AND_ASSIGN(std::string base_exported, Export(base));
  ExpectEquivalent(base_tar, base_exported);
  ExpectNothingBeside({"base", "delta"});
}

TEST_F(WindowsLayerTest, ExportRefusesIncompleteOrForeignDirs) {
  fs::path empty = NewLayerDir("empty");
  auto result = Export(empty);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kFailedPrecondition);
  std::ofstream(empty / "layerchain.json") << "null";
  result = Export(empty);
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message().find(".strata/entries"), std::string::npos) << result.error().message();
}

TEST_F(WindowsLayerTest, TruncatedTarLeavesNoCompleteLayer) {
  ASSERT_OK_AND_ASSIGN(std::string tar, WindowsBaseLayer().Tar());
  fs::path base = NewLayerDir("base");
  auto result = Apply(std::string_view(tar).substr(0, tar.size() / 2 + 100), base, {.is_base = true});
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message().find("windows layer"), std::string::npos) << result.error().message();
  EXPECT_FALSE(Exists(base / "layerchain.json"));
  EXPECT_EQ(Export(base).error().code(), ErrorCode::kFailedPrecondition);
}

TEST_F(WindowsLayerTest, ExportRefusesAnIndexPointingOutside) {
  fs::path dir = NewLayerDir("layer");
  fs::create_directories(dir / ".strata/streams");
  std::ofstream(dir / "layerchain.json") << "null";
  WindowsLayerEntry entry;
  entry.header.name = "Files/x:s";
  entry.header.size = 9;
  entry.stream = "../sentinel";
  std::ofstream(dir / ".strata/entries") << windows_index::IndexPreamble() << windows_index::EncodeIndexEntry(entry, 0);
  auto result = Export(dir);
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message().find("\"..\" component"), std::string::npos) << result.error().message();
  std::ofstream(dir / ".strata/entries") << "not an index";
  result = Export(dir);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kInvalidArgument) << result.error().ToString();
}

TEST_F(WindowsLayerTest, ExportNoticesChangedFiles) {
  ASSERT_OK_AND_ASSIGN(std::string tar, WindowsBaseLayer().Tar());
  fs::path base = NewLayerDir("base");
  ASSERT_OK(Apply(tar, base, {.is_base = true}));
  std::ofstream(base / "Files/Windows/System32/drivers/etc/hosts", std::ios::app) << "more";
  auto result = Export(base);
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message().find("file changed"), std::string::npos) << result.error().message();
}

TEST_F(WindowsLayerTest, ApplyRefusesNonEmptyDirAndBadOptions) {
  ASSERT_OK_AND_ASSIGN(std::string tar, WindowsBaseLayer().Tar());
  fs::path dir = NewLayerDir("layer");
  std::ofstream(dir / "leftover") << "x";
  auto result = Apply(tar, dir, {.is_base = true});
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kFailedPrecondition);
  fs::path other = NewLayerDir("other");
  result = Apply(tar, other, {.is_base = false});
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message().find("no parent layers"), std::string::npos) << result.error().message();
  result = Apply(tar, other, {.is_base = false, .parent_layers = {"relative/dir"}});
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message().find("not absolute"), std::string::npos) << result.error().message();
}

// A valid base layer prefix: Files/ and the five hives.
WindowsLayerBuilder MinimalBase() {
  WindowsLayerBuilder b;
  b.Dir("Files/").Dir("Files/Windows/").Dir("Files/Windows/System32/").Dir("Files/Windows/System32/config/");
  for (const char* hive : {"DEFAULT", "SAM", "SECURITY", "SOFTWARE", "SYSTEM"}) {
    b.File(std::string("Files/Windows/System32/config/") + hive, "regf");
  }
  return b;
}

TarEntry RawEntry(std::string name, TarEntryType type = TarEntryType::kRegular, std::string linkname = {}) {
  TarEntry entry;
  entry.name = std::move(name);
  entry.type = type;
  entry.mode = 0;
  entry.linkname = std::move(linkname);
  return entry;
}

struct InvalidCase {
  std::string label;
  bool is_base;
  WindowsLayerBuilder layer;
  std::string entry;   // the entry the error must name
  std::string reason;  // a part of the message
};

std::vector<InvalidCase> InvalidCases() {
  std::vector<InvalidCase> cases;
  auto base = [] { return MinimalBase(); };
  auto delta = [] { return WindowsLayerBuilder().Dir("Files/"); };
  cases.push_back({"base tombstone", true, base().Whiteout("Files/Windows/old.dll"), "Files/Windows/.wh.old.dll",
                   "base layer cannot have tombstones"});
  cases.push_back({"outside prefixes", false, delta().File("Other/x.txt", "x"), "Other/x.txt",
                   "outside Files/, Hives/ and UtilityVM/Files/"});
  cases.push_back({"UtilityVM other", true, base().Dir("UtilityVM/").File("UtilityVM/boot.ini", "x"),
                   "UtilityVM/boot.ini", "outside Files/, Hives/ and UtilityVM/Files/"});
  cases.push_back({"top-level file", false, delta().File("layerchain.json", "[]"), "layerchain.json",
                   "outside Files/"});
  cases.push_back({"Hives in base", true, base().Dir("Hives/").File("Hives/Sam_Delta", "x"), "Hives/",
                   "a base layer cannot have Hives/"});
  cases.push_back({"absolute", false, delta().File("/Files/x", "x"), "/Files/x", "absolute"});
  cases.push_back({"dotdot escape", false, delta().File("Files/../../escape.txt", "x"), "Files/../../escape.txt",
                   "\"..\" component"});
  cases.push_back({"dotdot inside", false, delta().File("Files/a/../b", "x"), "Files/a/../b", "\"..\" component"});
  cases.push_back({"backslash", false, delta().File("Files\\..\\..\\evil", "x"), "Files\\..\\..\\evil", "backslash"});
  cases.push_back({"hard link outside", false, delta().Entry(RawEntry("Files/l", TarEntryType::kHardLink, "../../etc/passwd")),
                   "Files/l", "\"..\" component"});
  cases.push_back({"hard link absolute", false, delta().Entry(RawEntry("Files/l", TarEntryType::kHardLink, "/etc/passwd")),
                   "Files/l", "absolute"});
  cases.push_back({"hard link to Hives", false,
                   delta().Dir("Hives/").File("Hives/Sam_Delta", "x").Entry(RawEntry("Files/l", TarEntryType::kHardLink, "Hives/Sam_Delta")),
                   "Files/l", "outside Files/ and UtilityVM/Files/"});
  cases.push_back({"hard link in Hives", false,
                   delta().File("Files/a", "x").Dir("Hives/").Entry(RawEntry("Hives/l", TarEntryType::kHardLink, "Files/a")),
                   "Hives/l", "only under Files/ and UtilityVM/Files/"});
  cases.push_back({"hard link to nothing in base", true,
                   base().Entry(RawEntry("Files/l", TarEntryType::kHardLink, "Files/missing")), "Files/l",
                   "not an earlier entry"});
  cases.push_back({"hard link to a dir", true,
                   base().Entry(RawEntry("Files/l", TarEntryType::kHardLink, "Files/Windows")), "Files/l",
                   "hard link to directory"});
  cases.push_back({"hard link to a stream", true,
                   base().File("Files/f", "x").Stream("Files/f", "s", "y").Entry(RawEntry("Files/l", TarEntryType::kHardLink, "Files/f:s")),
                   "Files/l", "not a file path"});
  cases.push_back({"write through symlink", false,
                   delta().Symlink("Files/link", "C:\\").Entry(RawEntry("Files/link/x")), "Files/link/x",
                   "is a symlink"});
  cases.push_back({"write through unix symlink", false,
                   delta().Symlink("Files/up", "../../..").Entry(RawEntry("Files/up/escape")), "Files/up/escape",
                   "is a symlink"});
  cases.push_back({"stream of nothing", false, delta().Stream("Files/missing.txt", "s", "x"), "Files/missing.txt:s",
                   "not an earlier entry"});
  cases.push_back({"bad stream name", false, delta().File("Files/f", "x").Entry(RawEntry("Files/f:s:$INDEX_ALLOCATION")),
                   "Files/f:s:$INDEX_ALLOCATION", "malformed alternate data stream"});
  cases.push_back({"colon in dir", false, delta().Entry(RawEntry("Files/a:b/c")), "Files/a:b/c",
                   "':' in a directory component"});
  cases.push_back({"device", false, delta().Entry(RawEntry("Files/dev", TarEntryType::kCharDevice)), "Files/dev",
                   "unsupported entry type"});
  cases.push_back({"duplicate", false, delta().File("Files/a", "1").File("Files/a", "2"), "Files/a", "duplicate"});
  cases.push_back({"whiteout of own file", false, delta().File("Files/a", "1").Whiteout("Files/a"), "Files/.wh.a",
                   "which this layer writes"});
  cases.push_back({"whiteout dotdot", false, delta().Entry(RawEntry("Files/.wh..")), "Files/.wh..", "refused"});
  return cases;
}

TEST_F(WindowsLayerTest, InvalidLayersAreRefusedNamingTheEntry) {
  fs::path parent = NewLayerDir("parent");
  ASSERT_OK_AND_ASSIGN(std::string parent_tar, MinimalBase().Tar());
  ASSERT_OK(Apply(parent_tar, parent, {.is_base = true}));
  int n = 0;
  for (bool no_openat2 : {false, true}) {
  internal::SetForceNoOpenat2(no_openat2);  // the O_NOFOLLOW walk must refuse the same
  for (auto& c : InvalidCases()) {
    SCOPED_TRACE(c.label + (no_openat2 ? " (without openat2)" : ""));
    ASSERT_OK_AND_ASSIGN(std::string tar, c.layer.Tar());
    std::string name = "layer" + std::to_string(n++);
    fs::path dir = NewLayerDir(name);
    WindowsLayerOptions options{.is_base = c.is_base};
    if (!c.is_base) options.parent_layers = {parent};
    auto result = Apply(tar, dir, options);
    ASSERT_FALSE(result) << "accepted";
    EXPECT_EQ(result.error().code(), ErrorCode::kInvalidArgument) << result.error().ToString();
    const std::string& message = result.error().message();
    EXPECT_NE(message.find(fmt::format("{:?}", c.entry)), std::string::npos) << message;
    EXPECT_NE(message.find(c.reason), std::string::npos) << message;
    EXPECT_FALSE(Exists(dir / "layerchain.json")) << "a failed layer looks complete";
    fs::remove_all(dir);
  }
  }
  internal::SetForceNoOpenat2(false);
  ExpectNothingBeside({"parent"});
  EXPECT_FALSE(Exists(tmp_->path().parent_path() / "escape.txt"));
}

TEST_F(WindowsLayerTest, BaseLayerMissingAHiveIsRefused) {
  WindowsLayerBuilder b;
  b.Dir("Files/").Dir("Files/Windows/").Dir("Files/Windows/System32/").Dir("Files/Windows/System32/config/");
  for (const char* hive : {"DEFAULT", "SAM", "SECURITY", "SOFTWARE"}) {
    b.File(std::string("Files/Windows/System32/config/") + hive, "regf");
  }
  ASSERT_OK_AND_ASSIGN(std::string tar, b.Tar());
  fs::path dir = NewLayerDir("base");
  auto result = Apply(tar, dir, {.is_base = true});
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message().find("Files/Windows/System32/config/SYSTEM"), std::string::npos)
      << result.error().message();
  EXPECT_FALSE(Exists(dir / "layerchain.json"));
}

TEST_F(WindowsLayerTest, HardLinkToParentLayerResolvesNearestFirst) {
  STRATA_REQUIRE_ROOT();  // a whiteout (mknod) in a parent layer
  fs::path base = NewLayerDir("base");
  ASSERT_OK_AND_ASSIGN(std::string base_tar, MinimalBase().File("Files/shared.dll", "v1").Tar());
  ASSERT_OK(Apply(base_tar, base, {.is_base = true}));
  fs::path mid = NewLayerDir("mid");
  ASSERT_OK_AND_ASSIGN(std::string mid_tar, WindowsLayerBuilder().Dir("Files/").File("Files/shared.dll", "v2").Tar());
  ASSERT_OK(Apply(mid_tar, mid, {.parent_layers = {base}}));
  fs::path top = NewLayerDir("top");
  ASSERT_OK_AND_ASSIGN(std::string top_tar, WindowsLayerBuilder()
                                                .Dir("Files/")
                                                .Hardlink("Files/link.dll", "Files/shared.dll")
                                                .Tar());
  ASSERT_OK(Apply(top_tar, top, {.parent_layers = {mid, base}}));
  EXPECT_EQ(Slurp(top / "Files/link.dll"), "v2");
  nlohmann::json chain = nlohmann::json::parse(Slurp(top / "layerchain.json"));
  EXPECT_EQ(chain, nlohmann::json::array({mid.string(), base.string()}));
  ASSERT_OK_AND_ASSIGN(std::string exported, Export(top));
  ExpectEquivalent(top_tar, exported);

  // A target deleted by the nearer layer is not taken from the older one.
  fs::path gone = NewLayerDir("gone");
  ASSERT_OK_AND_ASSIGN(std::string gone_tar, WindowsLayerBuilder().Dir("Files/").Whiteout("Files/shared.dll").Tar());
  ASSERT_OK(Apply(gone_tar, gone, {.parent_layers = {base}}));
  fs::path orphan = NewLayerDir("orphan");
  auto result = Apply(top_tar, orphan, {.parent_layers = {gone, base}});
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message().find("deleted in parent layer"), std::string::npos) << result.error().message();
}

TEST_F(WindowsLayerTest, HostileNamesStayInsideTheLayer) {
  // Non-ASCII, spaces, colons in streams, long names: all land under Files/ or in streams.
  std::string long_name = "Files/" + std::string(200, 'x') + "/" + std::string(200, 'y') + ".txt";
  WindowsLayerBuilder b;
  b.Dir("Files/")
      .Dir("./Files/dot-prefixed/")
      .File("Files//double//slash.txt", "a")
      .File(long_name, "long")
      .File("Files/名前 with spaces.txt", "b")
      .Stream("Files/名前 with spaces.txt", "流", "c", true)
      .Symlink("Files/escape-link", "..\\..\\..\\Windows")
      .Junction("Files/abs-junction", "\\??\\C:\\Windows");
  ASSERT_OK_AND_ASSIGN(std::string tar, b.Tar());
  fs::path parent = NewLayerDir("parent");
  ASSERT_OK_AND_ASSIGN(std::string parent_tar, MinimalBase().Tar());
  ASSERT_OK(Apply(parent_tar, parent, {.is_base = true}));
  fs::path dir = NewLayerDir("layer");
  ASSERT_OK(Apply(tar, dir, {.parent_layers = {parent}}));
  EXPECT_EQ(Slurp(dir / "Files/double/slash.txt"), "a");
  EXPECT_EQ(Slurp(dir / long_name), "long");
  EXPECT_EQ(fs::read_symlink(dir / "Files/escape-link").string(), "..\\..\\..\\Windows");
  ASSERT_OK_AND_ASSIGN(std::string exported, Export(dir));
  ExpectEquivalent(tar, exported);
  ExpectNothingBeside({"parent", "layer"});
}

TEST_F(WindowsLayerTest, ForeignEncodingComesBackEquivalent) {
  // Records another writer spells differently: a whole-second PAX mtime, an explicit path
  // for an ASCII name, legacy MSWINDOWS.sd, permission bits in the header mode.
  WindowsLayerBuilder b = MinimalBase();
  TarEntry file = RawEntry("Files/legacy.txt");
  file.mode = 0644;
  file.mtime = {1'700'000'000, 0};
  file.pax_records = {{"mtime", "1700000000"}, {"path", "Files/legacy.txt"}, {"MSWINDOWS.sd", "O:BAG:SYD:"},
                      {"MSWINDOWS.fileattr", "32"}};
  b.Entry(file, "legacy");
  ASSERT_OK_AND_ASSIGN(std::string tar, b.Tar());
  fs::path dir = NewLayerDir("base");
  ASSERT_OK(Apply(tar, dir, {.is_base = true}));
  ASSERT_OK_AND_ASSIGN(std::string exported, Export(dir));
  EXPECT_NE(exported, tar);  // our encoding differs...
  ExpectEquivalent(tar, exported);  // ...the entries do not
}

TEST_F(WindowsLayerTest, LargeFilesAndStreamsRoundTrip) {
  std::string big = test_support::RandomBytes((size_t{3} << 20) + 17, 7);
  std::string big_stream = test_support::RandomBytes((size_t{2} << 20) + 5, 8);
  WindowsLayerBuilder b = MinimalBase();
  b.File("Files/big.bin", big).Stream("Files/big.bin", "big", big_stream, true).File("Files/empty.bin", "");
  ASSERT_OK_AND_ASSIGN(std::string tar, b.Tar());
  fs::path dir = NewLayerDir("base");
  ASSERT_OK_AND_ASSIGN(auto stats, Apply(tar, dir, {.is_base = true}));
  EXPECT_EQ(stats.bytes, big.size() + big_stream.size() + 5 * 4);
  EXPECT_EQ(Slurp(dir / "Files/big.bin"), big);
  ASSERT_OK_AND_ASSIGN(std::string exported, Export(dir));
  ExpectEquivalent(tar, exported);
}

}  // namespace
}  // namespace strata::archive
