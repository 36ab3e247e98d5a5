// OpenWindowsLayerView over layer dirs made by archive::ApplyWindowsLayer (base + delta from
// tests/support/windows_layer_builder.h, plus a layer spelling the same paths in other case):
// merged contents, whiteouts (also in other case), case-insensitive lookup with stored-case
// readdir, Windows metadata and streams as xattrs; then the same through a real
// `strata-fsfilter -o windows` mount. Needs root (whiteouts are mknod'ed).
#include "fsfilter/windows_view.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "archive/windows_layer.h"
#include "base/io.h"
#include "base/mounts.h"
#include "fsfilter/mount_options.h"
#include "tests/fsfilter/fsfilter_mount.h"
#include "tests/fsfilter/layer_fixture.h"
#include "tests/support/assertions.h"
#include "tests/support/process.h"
#include "tests/support/root.h"
#include "tests/support/windows_layer_builder.h"

namespace strata::fsfilter {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using test_support::Base64;
using test_support::WindowsLayerBuilder;
using test_support::WinAttrs;

template <typename T>
int ErrnoOf(const SysResult<T>& result) {
  return result ? 0 : result.error();
}

// A layer over delta + base that spells shared paths in other case: a new file in
// WINDOWS/SYSTEM32, tombstones "KERNEL32-ALIAS.DLL" and "DRIVERS" (base: kernel32-alias.dll,
// drivers/), and "users/public/README.TXT" replacing the delta's readme.txt.
WindowsLayerBuilder CaseLayer() {
  WinAttrs dir;
  dir.fileattr = test_support::kAttrDirectory;
  WinAttrs hidden;
  hidden.fileattr = test_support::kAttrArchive | test_support::kAttrHidden;
  WindowsLayerBuilder b;
  b.Dir("Files/", dir)
      .Dir("Files/WINDOWS/", dir)
      .Dir("Files/WINDOWS/SYSTEM32/", dir)
      .File("Files/WINDOWS/SYSTEM32/Upper.txt", "from the case layer", hidden)
      .Whiteout("Files/WINDOWS/SYSTEM32/KERNEL32-ALIAS.DLL")
      .Whiteout("Files/WINDOWS/SYSTEM32/DRIVERS")
      .Dir("Files/users/", dir)
      .Dir("Files/users/public/", dir)
      .File("Files/users/public/README.TXT", "case layer readme", hidden);
  return b;
}

// base, delta (over base) and case (over delta, base), applied once for the whole suite.
class WindowsLayers {
 public:
  static const WindowsLayers& Get() {
    static const WindowsLayers* layers = new WindowsLayers();
    return *layers;
  }
  fs::path base() const { return root_->path() / "base"; }
  fs::path delta() const { return root_->path() / "delta"; }
  fs::path upcase() const { return root_->path() / "case"; }
  fs::path root() const { return root_->path(); }
  const std::string& error() const { return error_; }

 private:
  WindowsLayers() {
    auto dir = TempDir::Create("strata-windows-view-test");
    if (!dir) {
      error_ = dir.error().ToString();
      return;
    }
    root_.emplace(std::move(*dir));
    auto apply = [&](const WindowsLayerBuilder& builder, const fs::path& target, archive::WindowsLayerOptions options) {
      if (!error_.empty()) return;
      fs::create_directories(target);
      auto tar = builder.Tar();
      if (!tar) {
        error_ = tar.error().ToString();
        return;
      }
      StringViewReader reader(*tar);
      auto applied = archive::ApplyWindowsLayer(reader, target, options);
      if (!applied) error_ = target.string() + ": " + applied.error().ToString();
    };
    apply(test_support::WindowsBaseLayer(), base(), {.is_base = true, .parent_layers = {}});
    apply(test_support::WindowsDeltaLayer(), delta(), {.is_base = false, .parent_layers = {base()}});
    apply(CaseLayer(), upcase(), {.is_base = false, .parent_layers = {delta(), base()}});
  }
  std::optional<TempDir> root_;
  std::string error_;
};

class WindowsViewTest : public ::testing::Test {
 protected:
  void SetUp() override {
    STRATA_REQUIRE_ROOT();
    ASSERT_EQ(WindowsLayers::Get().error(), "");
  }
  const WindowsLayers& layers() const { return WindowsLayers::Get(); }

  void Open(const std::vector<fs::path>& dirs) {
    ASSERT_OK_AND_ASSIGN(fs_, OpenWindowsLayerView(dirs));
    ASSERT_FALSE(fs_->writable());
  }

  SysResult<Entry> Resolve(const std::string& path) { return testing::ResolvePath(*fs_, path); }
  Node* NodeAt(const std::string& path) { return testing::NodeAtPath(*fs_, path); }

  // The listing without "." and ".."; fails on a name listed twice or a folded duplicate.
  std::set<std::string> Names(const std::string& dir) {
    std::set<std::string> names, keys;
    Node* node = dir.empty() ? fs_->root() : NodeAt(dir);
    if (node == nullptr) return names;
    auto entries = fs_->view().ListDir(node);
    EXPECT_TRUE(entries.has_value());
    if (!entries) return names;
    for (const DirEntry& entry : *entries) {
      if (entry.name == "." || entry.name == "..") continue;
      EXPECT_TRUE(keys.insert(fs_->view().names().MergeKey(entry.name)).second) << "duplicate " << entry.name;
      names.insert(entry.name);
    }
    return names;
  }

  std::string ReadAll(const std::string& path) { return testing::ReadThroughView(*fs_, path); }

  std::optional<std::string> Xattr(const std::string& path, const std::string& name) {
    Node* node = NodeAt(path);
    if (node == nullptr) return std::nullopt;
    auto value = fs_->view().GetXattr(node, name, 1 << 16);
    if (!value) {
      EXPECT_EQ(value.error(), ENODATA) << path << " " << name;
      return std::nullopt;
    }
    return *value;
  }

  std::set<std::string> XattrNames(const std::string& path) {
    std::set<std::string> names;
    Node* node = NodeAt(path);
    if (node == nullptr) return names;
    auto list = fs_->view().ListXattr(node, 0);
    EXPECT_TRUE(list.has_value());
    if (!list) return names;
    for (size_t start = 0; start < list->size();) {
      const size_t end = list->find('\0', start);
      names.insert(list->substr(start, end - start));
      start = end + 1;
    }
    return names;
  }

  std::unique_ptr<UnionFilesystem> fs_;
};

TEST_F(WindowsViewTest, MergesFilesTreesAndHonoursTombstones) {
  Open({layers().delta(), layers().base()});
  EXPECT_EQ(Names(""), (std::set<std::string>{"Windows", "ProgramData", "Users", "Documents and Settings",
                                               "dir-with-stream"}));
  const std::set<std::string> system32 = Names("Windows/System32");
  EXPECT_EQ(system32, (std::set<std::string>{"config", "kernel32.dll", "kernel32-alias.dll", "CatRoot", "drivers"}));
  EXPECT_EQ(Names("Windows/System32/CatRoot"), (std::set<std::string>{"new-catalog.cat"}));  // base dir whited out
  EXPECT_EQ(ErrnoOf(Resolve("Windows/System32/notepad.exe")), ENOENT);
  EXPECT_EQ(ErrnoOf(Resolve("WINDOWS/SYSTEM32/NOTEPAD.EXE")), ENOENT);
  EXPECT_EQ(ErrnoOf(Resolve("Windows/System32/CatRoot/{f750e6c3-38ee-11d1-85e5-00c04fc295ee}")), ENOENT);
  EXPECT_EQ(ReadAll("Windows/System32/kernel32.dll"), "MZ kernel32 v2 (patched)");
  EXPECT_EQ(ReadAll("Windows/System32/kernel32-alias.dll"), "MZ kernel32 v1");
  EXPECT_EQ(ReadAll("Users/Public/linked.txt"), "こんにちは");
  EXPECT_EQ(ReadAll("Users/Zoë/日本語.txt"), "こんにちは");
  EXPECT_EQ(Names("Users/Public"), (std::set<std::string>{"linked.txt", "readme.txt"}));
  // Alternate data streams are never files of the view.
  EXPECT_EQ(Names("Users/Zoë"), (std::set<std::string>{"日本語.txt"}));
  EXPECT_EQ(ErrnoOf(Resolve("Users/Public/readme.txt:Zone.Identifier")), ENOENT);
  EXPECT_EQ(ErrnoOf(Resolve("dir-with-stream:meta")), ENOENT);
  // Links keep their Windows targets.
  Node* junction = NodeAt("documents and settings");
  ASSERT_NE(junction, nullptr);
  EXPECT_EQ(fs_->view().ReadLink(junction), "C:\\Users");
  EXPECT_EQ(fs_->view().ReadLink(NodeAt("windows/NOTEPAD-LINK.EXE")), "C:\\Windows\\System32\\notepad.exe");
}

TEST_F(WindowsViewTest, LookupIgnoresCaseAndReaddirKeepsStoredCase) {
  Open({layers().delta(), layers().base()});
  SysResult<Entry> exact_result = Resolve("Windows/System32/config/SAM");
  SysResult<Entry> upper_result = Resolve("WINDOWS/SYSTEM32/CONFIG/SAM");
  SysResult<Entry> mixed_result = Resolve("windows/system32/Config/sam");
  ASSERT_TRUE(exact_result && upper_result && mixed_result);
  const Entry exact = *exact_result, upper = *upper_result, mixed = *mixed_result;
  EXPECT_EQ(exact.node, upper.node);
  EXPECT_EQ(exact.node, mixed.node);
  EXPECT_EQ(exact.attr.st_ino, mixed.attr.st_ino);
  EXPECT_EQ(mixed.node->name, "SAM");
  EXPECT_EQ(ReadAll("users/zoË/日本語.TXT"), "こんにちは");
  EXPECT_TRUE(Names("WINDOWS/SYSTEM32/CONFIG").contains("SOFTWARE"));
  EXPECT_EQ(ErrnoOf(Resolve("Windows/System32/absent.dll")), ENOENT);
  EXPECT_EQ(ErrnoOf(Resolve("windows/system32/ß")), ENOENT);
}

TEST_F(WindowsViewTest, LayersSpellingPathsInOtherCaseMergeAsOneEntry) {
  Open({layers().upcase(), layers().delta(), layers().base()});
  // The topmost layer's spelling wins; every folded name is listed once.
  EXPECT_EQ(Names(""), (std::set<std::string>{"WINDOWS", "ProgramData", "users", "Documents and Settings",
                                               "dir-with-stream"}));
  EXPECT_EQ(Names("windows/system32"),
            (std::set<std::string>{"Upper.txt", "config", "kernel32.dll", "CatRoot"}));  // tombstones in other case
  EXPECT_EQ(ErrnoOf(Resolve("Windows/System32/kernel32-alias.dll")), ENOENT);
  EXPECT_EQ(ErrnoOf(Resolve("Windows/System32/drivers/etc/hosts")), ENOENT);
  EXPECT_EQ(ErrnoOf(Resolve("Windows/System32/drivers")), ENOENT);
  // Entries only in lower layers, under directories spelled differently there.
  EXPECT_EQ(ReadAll("Windows/System32/config/SAM"), "regf hive SAM");
  EXPECT_EQ(ReadAll("WINDOWS/SYSTEM32/kernel32.dll"), "MZ kernel32 v2 (patched)");
  EXPECT_EQ(Names("Windows/System32/CatRoot"), (std::set<std::string>{"new-catalog.cat"}));
  EXPECT_EQ(Names("Users/Public"), (std::set<std::string>{"linked.txt", "README.TXT"}));
  EXPECT_EQ(ReadAll("Users/Public/readme.txt"), "case layer readme");
  EXPECT_EQ(ReadAll("users/public/LINKED.TXT"), "こんにちは");
  EXPECT_TRUE(Names("Users").contains("Zoë"));
  // Attributes come from the layer that shows the file, found under its own spelling there.
  EXPECT_EQ(Xattr("WINDOWS/SYSTEM32/CONFIG/SAM", "user.windows.fileattr"), "36");  // base: archive|system
  EXPECT_EQ(Xattr("Windows/System32/kernel32.dll", "user.windows.fileattr"), "32");  // delta
  EXPECT_EQ(Xattr("Windows/System32/Upper.txt", "user.windows.fileattr"), "34");  // case layer
  EXPECT_EQ(Xattr("users/public/readme.txt", "user.windows.fileattr"), "34");
  EXPECT_EQ(Xattr("Users/Public/readme.txt", "user.windows.stream.Zone.Identifier"), std::nullopt);
  EXPECT_EQ(Xattr("Users/Zoë/日本語.txt", "user.windows.stream.ストリーム"), "ads with a non-ASCII name");
  EXPECT_EQ(Xattr("", "user.windows.fileattr"), "16");
}

TEST_F(WindowsViewTest, WindowsMetadataAsXattrs) {
  Open({layers().base()});
  const std::string notepad = "Windows/System32/notepad.exe";
  EXPECT_EQ(XattrNames(notepad),
            (std::set<std::string>{"user.windows.fileattr", "user.windows.rawsd", "user.windows.creationtime",
                                   "user.windows.xattr.$KERNEL.PURGE.ESBCACHE", "user.windows.xattr..LONGNAME",
                                   "user.windows.stream.Zone.Identifier", "user.windows.stream.com.example.meta"}));
  EXPECT_EQ(Xattr(notepad, "user.windows.fileattr"), "32");
  const std::optional<std::string> sd = Xattr(notepad, "user.windows.rawsd");
  ASSERT_TRUE(sd.has_value());
  EXPECT_EQ(Base64(*sd), test_support::kOwnerBuiltinUsersSd);
  EXPECT_EQ(sd->size(), 52u);
  EXPECT_EQ(Xattr(notepad, "user.windows.creationtime"), "1600000000.1234567");
  EXPECT_EQ(Xattr(notepad, "user.windows.xattr.$KERNEL.PURGE.ESBCACHE"), std::string("\x01\x00\x02\xff", 4));
  EXPECT_EQ(Xattr(notepad, "user.windows.xattr..LONGNAME"), "notepad");
  EXPECT_EQ(Xattr(notepad, "user.windows.stream.Zone.Identifier"), "[ZoneTransfer]\r\nZoneId=3\r\n");
  EXPECT_EQ(Xattr(notepad, "user.windows.stream.com.example.meta"), std::string("\x00\x01 binary", 9));
  EXPECT_EQ(Xattr(notepad, "user.windows.mountpoint"), std::nullopt);
  // Links carry them as trusted.windows.* (the kernel refuses user.* xattrs on symlinks).
  EXPECT_EQ(XattrNames("Documents and Settings"),
            (std::set<std::string>{"trusted.windows.mountpoint", "trusted.windows.fileattr"}));
  EXPECT_EQ(Xattr("Documents and Settings", "trusted.windows.mountpoint"), "1");
  EXPECT_EQ(Xattr("Documents and Settings", "trusted.windows.fileattr"), "1040");  // directory|reparse point
  EXPECT_EQ(Xattr("Documents and Settings", "user.windows.fileattr"), std::nullopt);
  EXPECT_EQ(Xattr("Windows/notepad-link.exe", "trusted.windows.fileattr"), "1056");  // archive|reparse point
  EXPECT_EQ(Xattr("Windows/notepad-link.exe", "trusted.windows.mountpoint"), std::nullopt);
  EXPECT_EQ(Xattr("dir-with-stream", "user.windows.stream.meta"), "a stream on a directory");
  EXPECT_EQ(Xattr("ProgramData/hidden.dat", "user.windows.fileattr"), "35");
  // Hard links keep their own records.
  EXPECT_EQ(Xattr("Windows/System32/kernel32-alias.dll", "user.windows.creationtime"), "1600000000.1234567");
  // getxattr size semantics and absent names.
  Node* node = NodeAt(notepad);
  ASSERT_NE(node, nullptr);
  EXPECT_EQ(fs_->view().GetXattr(node, "user.windows.creationtime", 0)->size(), 18u);
  EXPECT_EQ(ErrnoOf(fs_->view().GetXattr(node, "user.windows.creationtime", 5)), ERANGE);
  EXPECT_EQ(ErrnoOf(fs_->view().GetXattr(node, "user.windows.nope", 100)), ENODATA);
  EXPECT_EQ(ErrnoOf(fs_->view().GetXattr(node, "trusted.overlay.opaque", 100)), ENODATA);
  EXPECT_EQ(ErrnoOf(fs_->view().ListXattr(node, 10)), ERANGE);
  // Read-only.
  EXPECT_EQ(ErrnoOf(fs_->Open(node, O_WRONLY)), EROFS);
}

TEST_F(WindowsViewTest, RefusesDirsThatAreNotCompleteWindowsLayers) {
  auto error_of = [](const std::vector<fs::path>& dirs) {
    auto view = OpenWindowsLayerView(dirs);
    return view ? std::string("opened") : view.error().ToString();
  };
  EXPECT_NE(error_of({}).find("at least one"), std::string::npos);
  const fs::path plain = layers().root() / "plain";
  fs::create_directories(plain / "Files");
  std::string error = error_of({layers().delta(), plain});
  EXPECT_NE(error.find(plain.string()), std::string::npos) << error;
  const fs::path incomplete = layers().root() / "incomplete";
  fs::create_directories(incomplete / ".strata");
  testing::WriteText(incomplete / ".strata" / "entries", "strata-windows-layer-index 1\n");
  error = error_of({incomplete});
  EXPECT_NE(error.find(incomplete.string()), std::string::npos) << error;
  EXPECT_NE(error.find("layerchain.json"), std::string::npos) << error;
  error = error_of({layers().root() / "absent"});
  EXPECT_NE(error.find("absent"), std::string::npos) << error;
}

TEST(WindowsCommandLineTest, WindowsOptionIsReadOnly) {
  ASSERT_OK_AND_ASSIGN(CommandLine line, ParseCommandLine({"-o", "windows,lowerdir=/a:/b", "/mnt"}));
  EXPECT_TRUE(line.windows_layers);
  EXPECT_EQ(line.layers.lower_dirs, (std::vector<fs::path>{"/a", "/b"}));
  auto refused = ParseCommandLine({"-o", "windows,lowerdir=/a,upperdir=/u,workdir=/w", "/mnt"});
  ASSERT_FALSE(refused.has_value());
  EXPECT_NE(refused.error().message().find("windows layer views are read-only"), std::string::npos);
  ASSERT_OK_AND_ASSIGN(CommandLine plain, ParseCommandLine({"-o", "lowerdir=/a", "/mnt"}));
  EXPECT_FALSE(plain.windows_layers);
  EXPECT_NE(UsageText().find("windows"), std::string::npos);
}

// ---- Through a real mount ----

using testing::FsfilterMount;
using testing::IsFuseMount;

std::optional<std::string> MountXattr(const fs::path& path, const std::string& name) {
  std::string value(1 << 16, '\0');
  const ssize_t n = ::lgetxattr(path.c_str(), name.c_str(), value.data(), value.size());
  if (n < 0) return std::nullopt;
  value.resize(static_cast<size_t>(n));
  return value;
}

TEST_F(WindowsViewTest, MountedWithWindowsOption) {
  if (::access("/dev/fuse", R_OK | W_OK) != 0) GTEST_SKIP() << "no /dev/fuse";
  ASSERT_OK_AND_ASSIGN(TempDir scratch, TempDir::Create("strata-windows-mount-test"));
  const fs::path mnt = scratch.path() / "mnt";
  fs::create_directories(mnt);
  FsfilterMount mount;
  mount.Start({"-o", "windows,lowerdir=" + layers().upcase().string() + ":" + layers().delta().string() + ":" +
                         layers().base().string(),
               mnt.string()},
              mnt, scratch.path() / "fsfilter.log");
  if (::testing::Test::HasFatalFailure()) return;

  EXPECT_EQ(testing::ReadText(mnt / "windows" / "system32" / "config" / "sam"), "regf hive SAM");
  EXPECT_EQ(testing::ReadText(mnt / "WINDOWS" / "SYSTEM32" / "KERNEL32.DLL"), "MZ kernel32 v2 (patched)");
  EXPECT_EQ(testing::ReadText(mnt / "Users" / "Public" / "readme.txt"), "case layer readme");
  std::set<std::string> root, system32;
  for (const auto& entry : fs::directory_iterator(mnt)) root.insert(entry.path().filename());
  for (const auto& entry : fs::directory_iterator(mnt / "Windows" / "System32")) system32.insert(entry.path().filename());
  EXPECT_EQ(root, (std::set<std::string>{"WINDOWS", "ProgramData", "users", "Documents and Settings", "dir-with-stream"}));
  EXPECT_EQ(system32, (std::set<std::string>{"Upper.txt", "config", "kernel32.dll", "CatRoot"}));
  EXPECT_FALSE(testing::Exists(mnt / "Windows" / "System32" / "notepad.exe"));
  EXPECT_FALSE(testing::Exists(mnt / "windows" / "system32" / "Kernel32-Alias.dll"));

  EXPECT_EQ(MountXattr(mnt / "Windows" / "System32" / "kernel32.dll", "user.windows.fileattr"), "32");
  EXPECT_EQ(MountXattr(mnt / "windows" / "system32" / "config" / "SAM", "user.windows.fileattr"), "36");
  const auto sd = MountXattr(mnt / "windows" / "system32" / "config" / "SAM", "user.windows.rawsd");
  ASSERT_TRUE(sd.has_value());
  EXPECT_EQ(Base64(*sd), test_support::kOwnerBuiltinUsersSd);
  EXPECT_EQ(MountXattr(mnt / "Users" / "Zoë" / "日本語.txt", "user.windows.stream.ストリーム"),
            "ads with a non-ASCII name");
  EXPECT_EQ(MountXattr(mnt / "Documents and Settings", "trusted.windows.mountpoint"), "1");
  char names[4096];
  const ssize_t n = ::llistxattr((mnt / "dir-with-stream").c_str(), names, sizeof(names));
  ASSERT_GT(n, 0) << std::strerror(errno);
  EXPECT_NE(std::string(names, static_cast<size_t>(n)).find("user.windows.stream.meta"), std::string::npos);

  errno = 0;
  EXPECT_LT(::open((mnt / "new.txt").c_str(), O_CREAT | O_WRONLY, 0644), 0);
  EXPECT_EQ(errno, EROFS);
  EXPECT_NE(::setxattr((mnt / "users").c_str(), "user.x", "1", 1, 0), 0);
}

TEST_F(WindowsViewTest, MountRefusesUpperDir) {
  ASSERT_OK_AND_ASSIGN(TempDir scratch, TempDir::Create("strata-windows-mount-test"));
  test_support::ChildOptions options;
  options.argv = {STRATA_FSFILTER_BIN, "-f", "-o",
                  "windows,lowerdir=" + layers().base().string() + ",upperdir=" + (scratch.path() / "u").string() +
                      ",workdir=" + (scratch.path() / "w").string(),
                  (scratch.path() / "mnt").string()};
  options.log_path = scratch.path() / "log";
  ASSERT_OK_AND_ASSIGN(test_support::Child child, test_support::Child::Start(options));
  auto code = child.Wait(10s);
  ASSERT_TRUE(code.has_value());
  EXPECT_NE(*code, 0);
  EXPECT_NE(child.LogTail().find("windows layer views are read-only"), std::string::npos) << child.LogTail();
}

}  // namespace
}  // namespace strata::fsfilter
