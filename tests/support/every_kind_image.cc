#include "tests/support/every_kind_image.h"

#include <algorithm>
#include <map>
#include <string>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include "tests/support/assertions.h"

namespace strata::test_support {
namespace {

EntryAttrs Attrs(uint32_t mode, uint64_t uid = 0, uint64_t gid = 0, std::map<std::string, std::string> xattrs = {},
                 int64_t mtime = kEveryKindBaseMtime) {
  return EntryAttrs{.mode = mode, .uid = uid, .gid = gid, .mtime = {mtime, 0}, .xattrs = std::move(xattrs)};
}
EntryAttrs Middle(uint32_t mode, uint64_t uid = 0, uint64_t gid = 0, std::map<std::string, std::string> xattrs = {}) {
  return Attrs(mode, uid, gid, std::move(xattrs), kEveryKindMiddleMtime);
}
EntryAttrs Top(uint32_t mode, uint64_t uid = 0, uint64_t gid = 0) {
  return Attrs(mode, uid, gid, {}, kEveryKindTopMtime);
}

// Every entry kind and the odd names, plus the paths the later layers change.
LayerBuilder BaseLayer() {
  const std::string long_name(120, 'n');
  LayerBuilder layer;
  layer.Dir("bin")
      .File("bin/busybox", "#!busybox\n", Attrs(0755))
      .File("bin/su", "su\n", Attrs(04755))
      .File("bin/wall", "wall\n", Attrs(02755, 0, 5))
      .Symlink("bin/sh", "busybox")  // relative
      .Dir("etc")
      .File("etc/passwd", "root:x:0:0::/root:/bin/sh\n")
      .File("etc/shadow", "root:*::0:::::\n", Attrs(0600))
      .File("etc/motd", "to be whited out\n")
      .File("etc/empty", "")
      .Symlink("etc/localtime", "/usr/share/zoneinfo/UTC")  // absolute
      .Dir("tmp", Attrs(01777))
      .Dir("home")
      .Dir("home/user", Attrs(0700, 1000, 1000))
      .Dir("home/user/shared", Attrs(02775, 1000, 100, {{"user.purpose", "team"}}))
      .File("home/user/shared/notes.txt", "notes\n", Attrs(0640, 1000, 100))
      .Dir("usr")
      .Dir("usr/bin")
      .File("usr/bin/tool", "tool v1\n", Attrs(0755))
      .Hardlink("usr/bin/tool-a", "usr/bin/tool")
      .Hardlink("usr/bin/tool-b", "usr/bin/tool")
      .Dir("run")
      .Fifo("run/initctl", Attrs(0600))
      .Dir("dev")
      .CharDevice("dev/null", 1, 3, Attrs(0666))
      .BlockDevice("dev/loop0", 7, 0, Attrs(0660, 0, 6))
      .Dir("attrs")
      .File("attrs/user-x", "u\n", Attrs(0644, 0, 0, {{"user.comment", "hello"}, {"user.bin", std::string("\0\x01\xff", 3)}}))
      .File("attrs/trusted-x", "t\n", Attrs(0644, 0, 0, {{"trusted.strata-test", "secret"}}))
      .Dir("names")
      .File("names/" + long_name, "long\n")
      .File("names/h\xc3\xa9llo-\xe4\xb8\x96\xe7\x95\x8c.txt", "non-ascii\n")
      .Dir("data")
      .File("data/big.bin", RandomBytes(1 << 20, 7))
      .Dir("old")
      .Dir("old/nested")
      .File("old/nested/file", "gone with old/\n")
      .Dir("opaque")
      .File("opaque/lower-a", "hidden by opaque\n")
      .Dir("opaque/lower-dir")
      .Dir("replaced")
      .File("replaced/child", "gone when replaced/ becomes a file\n")
      .File("file2dir", "becomes a dir\n");
  return layer;
}

// Modifies, replaces, whiteouts, makes a dir opaque.
LayerBuilder MiddleLayer() {
  LayerBuilder layer;
  layer.Dir("etc", Middle(0755))
      .File("etc/passwd", "root:x:0:0::/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n", Middle(0644))
      .File("etc/shadow", "root:!::0:::::\n", Middle(0640, 0, 42))
      .Whiteout("etc/motd")
      .File("etc/new.conf", "added in layer 2\n", Middle(0644))
      .Dir("bin", Middle(0755))
      .Symlink("bin/sh", "/bin/busybox", Middle(0777))
      .Whiteout("old")
      .Dir("opaque", Middle(0750, 0, 0, {{"user.layer", "2"}}))
      .OpaqueDir("opaque")
      .File("opaque/upper-b", "visible\n", Middle(0644))
      .Dir("usr", Middle(0755))
      .Dir("usr/bin", Middle(0755))
      .File("usr/bin/tool-b", "tool-b split off\n", Middle(0755))  // leaves tool + tool-a linked
      .Dir("home", Middle(0755))
      .Dir("home/user", Middle(0700, 1000, 1000))
      .File("home/user/.profile", "export A=1\n", Middle(0600, 1000, 1000));
  return layer;
}

// Type replacements both ways and a new hard-link group.
LayerBuilder TopLayer() {
  LayerBuilder layer;
  layer.File("replaced", "now a file\n", Top(0600))
      .Dir("file2dir", Top(0711))
      .File("file2dir/inner", "inside\n", Top(0644))
      .Dir("usr", Top(0755))
      .Dir("usr/lib", Top(0755))
      .File("usr/lib/libx.so.1", "ELF-ish\n", Top(0755))
      .Hardlink("usr/lib/libx.so", "usr/lib/libx.so.1", Top(0755));
  return layer;
}

}  // namespace

Result<EveryKindImage> BuildEveryKindImage() {
  std::vector<Layer> layers;
  ImageBuilder builder;
  for (const LayerBuilder& layer : {BaseLayer(), MiddleLayer(), TopLayer()}) {
    auto built = layer.Build(Compression::kGzip);
    if (!built) return std::unexpected(built.error());
    builder.AddLayer(*built);
    layers.push_back(std::move(*built));
  }
  auto image = builder.Build();
  if (!image) return std::unexpected(image.error());
  return EveryKindImage{.layers = std::move(layers), .image = std::move(*image)};
}

void ExpectSameTreeAsUmoci(const std::filesystem::path& ours, const std::filesystem::path& umoci_rootfs,
                           std::string_view ours_name, std::vector<TreeEntry>& ours_entries) {
  const TreeCompareOptions options{.compare_mtimes = true, .compare_dir_mtimes = true};
  ASSERT_OK_AND_ASSIGN(ours_entries, ScanTree(ours, options));
  ASSERT_OK_AND_ASSIGN(auto theirs, ScanTree(umoci_rootfs, options));
  ASSERT_EQ(ours_entries.at(0).path, ".");
  ASSERT_EQ(theirs.at(0).path, ".");
  ours_entries[0].mtime_ns = theirs[0].mtime_ns;
  std::vector<std::string> differences = CompareEntries(ours_entries, theirs, options);
  EXPECT_TRUE(differences.empty()) << "ours (A, " << ours_name << ") vs umoci (B):\n  "
                                   << fmt::format("{}", fmt::join(differences, "\n  "));
}

void ExpectEveryKindCases(const std::vector<TreeEntry>& entries) {
  auto find = [&](const std::string& path) -> const TreeEntry* {
    auto it = std::ranges::find(entries, path, &TreeEntry::path);
    return it == entries.end() ? nullptr : &*it;
  };
  EXPECT_EQ(find("etc/motd"), nullptr);
  EXPECT_EQ(find("old"), nullptr);
  EXPECT_EQ(find("opaque/lower-a"), nullptr);
  EXPECT_NE(find("opaque/upper-b"), nullptr);
  ASSERT_NE(find("replaced"), nullptr);
  EXPECT_EQ(find("replaced")->type, 'f');
  ASSERT_NE(find("file2dir"), nullptr);
  EXPECT_EQ(find("file2dir")->type, 'd');
  ASSERT_NE(find("usr/bin/tool-a"), nullptr);
  EXPECT_EQ(find("usr/bin/tool-a")->hardlink_group, "usr/bin/tool");
  ASSERT_NE(find("dev/loop0"), nullptr);
  EXPECT_EQ(find("dev/loop0")->type, 'b');
  EXPECT_EQ(find("bin/su")->mode, 04755u);
  EXPECT_EQ(find("attrs/trusted-x")->xattrs.count("trusted.strata-test"), 1u);
}

}  // namespace strata::test_support
