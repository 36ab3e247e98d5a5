// Our EROFS encoder against the two readers that did not come from us: the kernel (the image
// loop-mounted must equal its source tree: every entry kind, modes, owners, nanosecond
// mtimes, xattrs incl. overlay markers, devices, hard links, multi-block directories) and
// erofs-utils' fsck.erofs (the image checks clean and extracts to the same tree).
// Needs root (loop devices, mounts, devices, ownership).
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <fstream>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "base/digest.h"
#include "base/file.h"
#include "base/mounts.h"
#include "base/subprocess.h"
#include "snapshotter/erofs_builder.h"
#include "snapshotter/erofs_layer.h"
#include "snapshotter/loop_mount.h"
#include "snapshotter/mount.h"
#include "tests/support/assertions.h"
#include "tests/support/root.h"
#include "tests/support/tree_compare.h"

namespace strata::snapshotter {
namespace {

namespace fs = std::filesystem;
using test_support::LoopsBackedUnder;

// The error text of a failed Result ("" when it succeeded).
template <typename T>
std::string ErrorText(const Result<T>& result) {
  return result ? std::string() : result.error().ToString();
}
#define EXPECT_ERROR_CONTAINS(expr, text)                                              \
  do {                                                                                 \
    const std::string strata_error_ = ErrorText(expr);                                 \
    EXPECT_NE(strata_error_.find(text), std::string::npos) << "error: " << strata_error_; \
  } while (0)

void WriteBytes(const fs::path& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }

std::string Pattern(size_t size, uint64_t seed) {
  std::string out(size, '\0');
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (char& c : out) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    c = static_cast<char>(x);
  }
  return out;
}

void SetTime(const fs::path& path, int64_t sec, long nsec) {
  const timespec times[2] = {{sec, nsec}, {sec, nsec}};
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW), 0) << path;
}

// A layer dir in overlay form with every kind of entry and every size class of the encoder
// (empty, inline, exactly one block, one block + 1, many blocks), directories spanning
// several blocks, long symlinks, names needing no escaping in EROFS but in shells.
void MakeEveryKindTree(const fs::path& root) {
  fs::create_directories(root / "etc/deep/er/still");
  WriteBytes(root / "empty", "");
  WriteBytes(root / "small", "hello\n");
  WriteBytes(root / "block", Pattern(4096, 1));
  WriteBytes(root / "block+1", Pattern(4097, 2));
  WriteBytes(root / "big", Pattern((5 << 20) + 123, 3));
  WriteBytes(root / "almost-inline", Pattern(4096 - 64 - 40, 4));
  WriteBytes(root / "etc/deep/er/still/leaf", "leaf\n");
  ASSERT_EQ(::chmod((root / "small").c_str(), 04755), 0);
  ASSERT_EQ(::chown((root / "small").c_str(), 1000, 2000), 0);
  fs::create_directories(root / "tmp");
  ASSERT_EQ(::chmod((root / "tmp").c_str(), 01777), 0);
  // Hard links, one of them inline-sized, one large.
  fs::create_hard_link(root / "small", root / "etc/small-link");
  fs::create_hard_link(root / "big", root / "big-link");
  // Symlinks: short (inline), near the 4095 limit (its own data block).
  fs::create_symlink("../small", root / "etc/up");
  fs::create_symlink(std::string(4000, 'x'), root / "long-link");
  ASSERT_EQ(::mkfifo((root / "fifo").c_str(), 0600), 0);
  ASSERT_EQ(::mknod((root / "null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
  ASSERT_EQ(::mknod((root / "disk").c_str(), S_IFBLK | 0660, makedev(259, 70000)), 0);
  ASSERT_EQ(::mknod((root / "whiteout").c_str(), S_IFCHR | 0, makedev(0, 0)), 0);
  // An opaque dir and xattrs of every namespace the encoder maps.
  fs::create_directories(root / "opaque");
  ASSERT_EQ(::setxattr((root / "opaque").c_str(), "trusted.overlay.opaque", "y", 1, 0), 0);
  ASSERT_EQ(::setxattr((root / "small").c_str(), "user.note", "a note", 6, 0), 0);
  // A v2 file capability (cap_net_bind_service, effective): 20 bytes the kernel validates.
  const std::string capability("\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 20);
  ASSERT_EQ(::setxattr((root / "small").c_str(), "security.capability", capability.data(), capability.size(), 0), 0);
  ASSERT_EQ(::lsetxattr((root / "etc/up").c_str(), "trusted.link", "l", 1, 0), 0);
  const std::string big_value(3000, 'v');
  ASSERT_EQ(::setxattr((root / "almost-inline").c_str(), "user.big", big_value.data(), big_value.size(), 0), 0);
  // A directory of 600 long names: several directory blocks, lookups across them.
  fs::create_directories(root / "many");
  for (int i = 0; i < 600; ++i) {
    WriteBytes(root / "many" / fmt::format("{:03}-{}", (i * 37) % 600, std::string(60, 'n')), std::to_string(i));
  }
  WriteBytes(root / "many" / "!first", "sorts before .");
  WriteBytes(root / "name with\nnewline and \xc3\xa9", "odd name\n");
  // Nanosecond mtimes, set last (children change their dirs' mtimes).
  for (const auto& entry : fs::recursive_directory_iterator(root)) SetTime(entry.path(), 1600000000, 123456789);
  SetTime(root / "small", 1234567890, 987654321);
  SetTime(root, 1700000000, 5);
}

class ErofsBuilderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    STRATA_REQUIRE_ROOT();
    ASSERT_OK_AND_ASSIGN(auto root, test_support::TempRoot::Create("strata-erofs"));
    root_.emplace(std::move(root));
    snapshot_ = *root_ / "snapshot";
    fs::create_directories(snapshot_ / "fs");
    mnt_ = *root_ / "mnt";
    fs::create_directories(mnt_);
  }

  void TearDown() override {
    if (root_) {
      if (auto points = MountPointsAtOrBeneath(root_->path())) {
        for (const fs::path& point : *points) (void)UnmountAt(point);
      }
      EXPECT_EQ(LoopsBackedUnder(root_->path()), std::vector<std::string>{});
    }
  }

  // Everything in the tree, xattrs included (overlay markers are data here).
  static test_support::TreeCompareOptions Exact() {
    return {.compare_mtimes = true, .compare_dir_mtimes = true, .ignore_xattr_prefixes = {"security.selinux"}};
  }

  std::optional<test_support::TempRoot> root_;
  fs::path snapshot_, mnt_;
};

TEST_F(ErofsBuilderTest, KernelMountEqualsTheSourceTree) {
  ASSERT_NO_FATAL_FAILURE(MakeEveryKindTree(snapshot_ / "fs"));
  ASSERT_OK_AND_ASSIGN(fs::path image, EnsureLayerImage(snapshot_, "seed"));
  ASSERT_OK(MountLoopImage(image, "erofs", mnt_));
  EXPECT_TRUE(test_support::TreesEqual(snapshot_ / "fs", mnt_, Exact()));
  // Reads through the kernel: a block-exact, a multi-block and an inline file.
  ASSERT_OK_AND_ASSIGN(std::string big, ReadFile(mnt_ / "big-link"));
  EXPECT_EQ(Digest::Of(big), Digest::Of(Pattern((5 << 20) + 123, 3)));
  ASSERT_OK_AND_ASSIGN(std::string small, ReadFile(mnt_ / "etc/small-link"));
  EXPECT_EQ(small, "hello\n");
  struct stat st {};
  ASSERT_EQ(::stat((mnt_ / "big").c_str(), &st), 0);
  EXPECT_EQ(st.st_nlink, 2u);
  ASSERT_EQ(::stat((mnt_ / "etc").c_str(), &st), 0);
  EXPECT_EQ(st.st_nlink, 3u) << "2 + one subdirectory";
  ASSERT_OK(UnmountAt(mnt_));
}

TEST_F(ErofsBuilderTest, FsckErofsChecksCleanAndExtractsTheSameTree) {
  const auto fsck = FindInPath("fsck.erofs");
  if (!fsck) GTEST_SKIP() << "needs erofs-utils (fsck.erofs)";
  ASSERT_NO_FATAL_FAILURE(MakeEveryKindTree(snapshot_ / "fs"));
  ASSERT_OK_AND_ASSIGN(fs::path image, EnsureLayerImage(snapshot_, "seed"));
  const fs::path extracted = *root_ / "extracted";
  ASSERT_OK_AND_ASSIGN(auto ran, RunProgram(*fsck, {"fsck.erofs", "--extract=" + extracted.string(), image.string()},
                                            {.timeout = std::chrono::minutes(2)}));
  ASSERT_TRUE(ran.Succeeded()) << ran.HowItEnded() << ": " << ran.err << ran.out;
  // fsck.erofs 1.5 restores content, types, modes, owners, times and devices but not
  // xattrs or hard links: those are the kernel test's.
  auto options = Exact();
  options.ignore_xattr_prefixes = {""};
  ASSERT_OK_AND_ASSIGN(auto source, test_support::ScanTree(snapshot_ / "fs", options));
  ASSERT_OK_AND_ASSIGN(auto copy, test_support::ScanTree(extracted, options));
  for (auto* entries : {&source, &copy}) {
    for (auto& entry : *entries) entry.hardlink_group.clear();
    std::erase_if(*entries, [](const auto& entry) { return entry.path == "."; });
  }
  EXPECT_EQ(test_support::CompareEntries(source, copy, options), std::vector<std::string>{});
}

TEST_F(ErofsBuilderTest, SameTreeSameSeedGivesTheSameBytes) {
  ASSERT_NO_FATAL_FAILURE(MakeEveryKindTree(snapshot_ / "fs"));
  ASSERT_OK_AND_ASSIGN(fs::path image, EnsureLayerImage(snapshot_, "seed"));
  ASSERT_OK_AND_ASSIGN(std::string first, ReadFile(image));
  fs::remove(image);
  ASSERT_OK_AND_ASSIGN(image, EnsureLayerImage(snapshot_, "seed"));
  ASSERT_OK_AND_ASSIGN(std::string second, ReadFile(image));
  EXPECT_TRUE(first == second) << "the image differs between two builds of one tree";
  EXPECT_EQ(fs::status(image).permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::group_read |
                                                                   fs::perms::others_read);
}

TEST_F(ErofsBuilderTest, AnEmptyLayerMounts) {
  ASSERT_OK_AND_ASSIGN(fs::path image, EnsureLayerImage(snapshot_, "empty"));
  ASSERT_OK(MountLoopImage(image, "erofs", mnt_));
  EXPECT_TRUE(fs::is_empty(mnt_));
  ASSERT_OK(UnmountAt(mnt_));
}

TEST_F(ErofsBuilderTest, SeveralLayersBuildConcurrentlyInOrderAndAFailureIsReported) {
  std::vector<LayerImageSource> layers;
  for (int i = 0; i < 3; ++i) {
    const fs::path dir = *root_ / fmt::format("layer-{}", i);
    fs::create_directories(dir / "fs");
    WriteBytes(dir / "fs" / "which", std::to_string(i));
    layers.push_back({.snapshot_dir = dir, .uuid_seed = fmt::format("layer-{}", i)});
  }
  ASSERT_OK_AND_ASSIGN(auto images, EnsureLayerImages(layers));
  ASSERT_EQ(images.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(images[i], layers[i].snapshot_dir / "layer.erofs");
    ASSERT_OK(MountLoopImage(images[i], "erofs", mnt_));
    EXPECT_EQ(ReadFile(mnt_ / "which").value_or("?"), std::to_string(i));
    ASSERT_OK(UnmountAt(mnt_));
  }
  // A layer whose fs/ is gone: its error, naming it, not a partial result.
  fs::create_directories(*root_ / "broken");
  layers.push_back({.snapshot_dir = *root_ / "broken", .uuid_seed = "broken"});
  EXPECT_ERROR_CONTAINS(EnsureLayerImages(layers), "broken");
  EXPECT_FALSE(fs::exists(*root_ / "broken" / "layer.erofs"));
}

TEST_F(ErofsBuilderTest, RefusesWhatEroFsCannotHold) {
  ASSERT_OK_AND_ASSIGN(UniqueFd out, OpenFile(*root_ / "image", O_RDWR | O_CREAT | O_EXCL));
  ErofsBuilder builder(out.get());
  ErofsBuilder::Attributes file{.mode = S_IFREG | 0644};
  ErofsBuilder::Attributes bad_xattr{.mode = S_IFREG | 0644, .xattrs = {{"system.nfs4_acl", "x"}}};
  EXPECT_ERROR_CONTAINS(builder.Add(ErofsBuilder::kRoot, "f", bad_xattr), "system.nfs4_acl");
  ASSERT_OK_AND_ASSIGN(auto f, builder.Add(ErofsBuilder::kRoot, "f", file));
  EXPECT_ERROR_CONTAINS(builder.Add(ErofsBuilder::kRoot, "f", file), "twice");
  EXPECT_ERROR_CONTAINS(builder.Add(ErofsBuilder::kRoot, "a/b", file), "not a valid EROFS file name");
  EXPECT_ERROR_CONTAINS(builder.Add(ErofsBuilder::kRoot, "..", file), "not a valid EROFS file name");
  EXPECT_ERROR_CONTAINS(builder.Add(ErofsBuilder::kRoot, std::string(256, 'x'), file), "not a valid EROFS file name");
  EXPECT_ERROR_CONTAINS(builder.Add(f, "child", file), "not a directory");
  ASSERT_OK_AND_ASSIGN(auto link, builder.Add(ErofsBuilder::kRoot, "l", {.mode = S_IFLNK | 0777}));
  EXPECT_ERROR_CONTAINS(builder.SetSymlinkTarget(link, std::string(4096, 't')), "symlink target");
  StringViewReader short_source("abc");
  EXPECT_ERROR_CONTAINS(builder.SetFileData(f, short_source, 10), "early");
}

}  // namespace
}  // namespace strata::snapshotter
