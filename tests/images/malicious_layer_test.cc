// Hostile layers through a real pull with unpack: every one must fail with its reason in
// the error, write nothing outside the store (a sentinel directory next to the store root
// is compared before and after), leave no committed or extract snapshot, and leave the
// content store fsck-clean.
#include <zlib.h>

#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include "archive/tar_writer.h"
#include "base/file.h"
#include "images/pull.h"
#include "images/unpack.h"
#include "tests/images/unpack_fixture.h"
#include "tests/support/assertions.h"
#include "tests/support/compression.h"
#include "tests/support/image_builder.h"
#include "tests/support/registry_fixture.h"
#include "tests/support/root.h"
#include "tests/support/tree_compare.h"

namespace strata::images {
namespace {

namespace fs = std::filesystem;
using archive::TarEntry;
using archive::TarEntryType;
using test_support::Compression;
using test_support::Layer;
using test_support::LayerBuilder;

// A layer whose tar is given as is (truncated, crafted): gzip-compressed, digests computed.
Result<Layer> RawLayer(std::string tar) {
  auto blob = test_support::Compress(tar, Compression::kGzip);
  if (!blob) return std::unexpected(blob.error());
  const Digest digest = Digest::Of(*blob), diff_id = Digest::Of(tar);
  return Layer{.compression = Compression::kGzip, .tar = std::move(tar), .blob = std::move(*blob),
               .digest = digest, .diff_id = diff_id};
}

// A gzip bomb: a tar holding one file of `zeros` zero bytes, deflated at level 9 in
// chunks (never held whole in memory). Deflate tops out near 1030:1 on zeros.
Result<Layer> GzipBomb(uint64_t zeros) {
  z_stream zs{};
  if (deflateInit2(&zs, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY) != Z_OK) {
    return Fail(ErrorCode::kInternal, "deflateInit2 failed");
  }
  Layer layer{.compression = Compression::kGzip, .digest = Digest::Of(""), .diff_id = Digest::Of("")};
  Digester tar_digest;
  std::string out(1 << 20, '\0');
  auto deflate_some = [&](std::string_view in, int flush) -> Status {
    tar_digest.Update(in);
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    zs.avail_in = static_cast<uInt>(in.size());
    do {
      zs.next_out = reinterpret_cast<Bytef*>(out.data());
      zs.avail_out = static_cast<uInt>(out.size());
      const int rc = deflate(&zs, flush);
      if (rc == Z_STREAM_ERROR) return Fail(ErrorCode::kInternal, "deflate failed");
      layer.blob.append(out.data(), out.size() - zs.avail_out);
    } while (zs.avail_out == 0 || (flush == Z_FINISH && zs.avail_in > 0));
    return {};
  };
  archive::TarWriter writer([&](std::string_view bytes) { return deflate_some(bytes, Z_NO_FLUSH); });
  Status status = writer.WriteHeader(TarEntry{.name = "bomb", .size = zeros, .mtime = {1'700'000'000, 0}});
  const std::string chunk(1 << 20, '\0');
  for (uint64_t left = zeros; status && left > 0;) {
    const uint64_t n = std::min<uint64_t>(left, chunk.size());
    status = writer.WriteData(std::string_view(chunk).substr(0, n));
    left -= n;
  }
  if (status) status = writer.Finish();
  if (status) status = deflate_some({}, Z_FINISH);
  deflateEnd(&zs);
  if (!status) return std::unexpected(status.error());
  layer.digest = Digest::Of(layer.blob);
  layer.diff_id = tar_digest.Finish();
  return layer;
}

class MaliciousLayerTest : public UnpackFixture {
 protected:
  MaliciousLayerTest() : UnpackFixture("strata-malicious") {}

  void SetUpStrata() override {
    // <root>/sentinel sits next to <root>/store; a snapshot's upper dir is
    // <root>/store/snapshots/<n>/fs, so "../../../../sentinel" from it lands here.
    sentinel_ = root_->path() / "sentinel";
    fs::create_directories(sentinel_ / "dir");
    ASSERT_OK(AtomicWriteFile(sentinel_ / "keep", "original\n"));
    ASSERT_OK(AtomicWriteFile(sentinel_ / "dir" / "inner", "inner\n"));
    MakeFastResolver(2);
    ASSERT_NO_FATAL_FAILURE(OpenRoot(strata_, "store"));
    auto before = test_support::ScanTree(sentinel_, {.compare_mtimes = true, .compare_dir_mtimes = true});
    ASSERT_TRUE(before) << before.error().ToString();
    sentinel_before_ = std::move(*before);
  }

  Result<PullResult> PushAndPull(const std::string& repository, const std::vector<Layer>& layers,
                                 UnpackLimits limits = {}) {
    test_support::ImageBuilder builder;
    for (const Layer& layer : layers) builder.AddLayer(layer);
    auto pushed = builder.PushTo(*registry_, repository, "1");
    if (!pushed) return std::unexpected(pushed.error().WithContext("push (test setup)"));
    return PullInto(strata_, registry_->host() + "/" + repository + ":1", /*unpack=*/true, limits);
  }

  // The pull of `layers` fails, its message holds every one of `reasons`, and nothing leaked.
  void ExpectRefused(const std::string& repository, const std::vector<Layer>& layers,
                     const std::vector<std::string>& reasons, UnpackLimits limits = {}) {
    SCOPED_TRACE(repository);
    auto result = PushAndPull(repository, layers, limits);
    ASSERT_FALSE(result) << "pull of a hostile layer succeeded";
    EXPECT_EQ(result.error().message().find("push (test setup)"), std::string::npos) << result.error().ToString();
    for (const std::string& reason : reasons) {
      EXPECT_NE(result.error().message().find(reason), std::string::npos)
          << "expected \"" << reason << "\" in: " << result.error().ToString();
    }
    last_error_ = result.error().ToString();
    EXPECT_FALSE(strata_.store->images().Get(registry_->host() + "/" + repository + ":1"));
    ExpectNothingLeaked();
  }

  void ExpectNothingLeaked() {
    // The sentinel is untouched, content and times.
    auto after = test_support::ScanTree(sentinel_, {.compare_mtimes = true, .compare_dir_mtimes = true});
    ASSERT_TRUE(after) << after.error().ToString();
    auto differences = test_support::CompareEntries(sentinel_before_, *after,
                                                    {.compare_mtimes = true, .compare_dir_mtimes = true});
    EXPECT_TRUE(differences.empty()) << "sentinel changed:\n  " << fmt::format("{}", fmt::join(differences, "\n  "));
    // Nothing new next to the store.
    std::vector<std::string> top;
    for (const auto& entry : fs::directory_iterator(root_->path())) top.push_back(entry.path().filename().string());
    std::ranges::sort(top);
    EXPECT_EQ(top, (std::vector<std::string>{"sentinel", "store"}));
    // No snapshot of the pull: neither committed nor "extract-...".
    std::vector<std::string> names = SnapshotNames(strata_);
    EXPECT_TRUE(names.empty()) << "snapshots left: " << fmt::format("{}", fmt::join(names, ", "));
    // Their directories went too.
    std::vector<std::string> dirs;
    if (fs::exists(strata_.store->root() / "snapshots")) {
      for (const auto& entry : fs::directory_iterator(strata_.store->root() / "snapshots")) dirs.push_back(entry.path().string());
    }
    EXPECT_TRUE(dirs.empty()) << "snapshot dirs left: " << fmt::format("{}", fmt::join(dirs, ", "));
    // The content store is consistent.
    auto report = strata_.store->Check();
    ASSERT_TRUE(report) << report.error().ToString();
    std::vector<std::string> problems;
    for (const auto& problem : report->problems) problems.push_back(problem.kind + " " + problem.subject + ": " + problem.detail);
    EXPECT_TRUE(report->clean()) << fmt::format("{}", fmt::join(problems, "\n"));
  }

  std::string Outside(std::string_view name) const { return (sentinel_ / name).string(); }

  fs::path sentinel_;
  std::vector<test_support::TreeEntry> sentinel_before_;
  StrataRoot strata_;
  std::string last_error_;
};

Result<Layer> Build(LayerBuilder builder) { return builder.Build(Compression::kGzip); }

// How apply names an entry in its errors: layer entry "<name>".
std::string EntryName(std::string_view name) { return fmt::format("layer entry {:?}", name); }

TEST_F(MaliciousLayerTest, DotDotEscapeIsRefused) {
  ASSERT_OK_AND_ASSIGN(auto layer, Build(LayerBuilder().File("ok", "ok\n").Entry(
                                       TarEntry{.name = "../../../../sentinel/pwned"}, "pwned\n")));
  ExpectRefused("escape/dotdot", {layer}, {EntryName("../../../../sentinel/pwned"), "\"..\" component"});
  ASSERT_OK_AND_ASSIGN(auto nested, Build(LayerBuilder().Entry(
                                        TarEntry{.name = "a/b/../../../../../../sentinel/pwned"}, "pwned\n")));
  ExpectRefused("escape/nested", {nested}, {EntryName("a/b/../../../../../../sentinel/pwned"), "\"..\" component"});
}

TEST_F(MaliciousLayerTest, AbsolutePathIsRefusedNotStripped) {
  ASSERT_FALSE(fs::exists("/etc/x")) << "the host has /etc/x: cannot tell a leak";
  ASSERT_OK_AND_ASSIGN(auto etc, Build(LayerBuilder().Entry(TarEntry{.name = "/etc/x"}, "pwned\n")));
  ExpectRefused("escape/abs-etc", {etc}, {EntryName("/etc/x"), "absolute"});
  EXPECT_FALSE(fs::exists("/etc/x"));
  ASSERT_OK_AND_ASSIGN(auto sentinel, Build(LayerBuilder().Entry(TarEntry{.name = Outside("abs")}, "pwned\n")));
  ExpectRefused("escape/abs-sentinel", {sentinel}, {EntryName(Outside("abs")), "absolute"});
}

TEST_F(MaliciousLayerTest, WriteThroughSymlinkOfTheSameLayerIsRefused) {
  ASSERT_OK_AND_ASSIGN(auto absolute, Build(LayerBuilder().Symlink("escape", sentinel_.string()).File("escape/pwned", "x\n")));
  ExpectRefused("symlink/absolute", {absolute}, {EntryName("escape/pwned"), "symlink"});
  ASSERT_OK_AND_ASSIGN(auto relative,
                       Build(LayerBuilder().Symlink("up", "../../../../sentinel").File("up/pwned", "x\n")));
  ExpectRefused("symlink/relative", {relative}, {EntryName("up/pwned"), "symlink"});
  ASSERT_OK_AND_ASSIGN(auto deep, Build(LayerBuilder().Dir("a").Symlink("a/link", sentinel_.string()).File(
                                      "a/link/dir/pwned", "x\n")));
  ExpectRefused("symlink/deep", {deep}, {EntryName("a/link/dir/pwned"), "symlink"});
}

TEST_F(MaliciousLayerTest, WriteUnderSymlinkOfALowerLayerIsRefusedAtCommit) {
  ASSERT_OK_AND_ASSIGN(auto lower, Build(LayerBuilder().File("ok", "ok\n").Symlink("escape", sentinel_.string())));
  ASSERT_OK_AND_ASSIGN(auto upper, Build(LayerBuilder().File("escape/pwned", "x\n")));
  ExpectRefused("symlink/lower", {lower, upper}, {"escape", "is a symlink in a lower layer"});
}

TEST_F(MaliciousLayerTest, HardLinkToOutsideIsRefused) {
  const std::vector<std::string> targets = {"../../x", "../../../../sentinel/keep", Outside("keep")};
  int n = 0;
  for (const std::string& target : targets) {
    ASSERT_OK_AND_ASSIGN(auto layer,
                         Build(LayerBuilder().File("ok", "ok\n").Entry(
                             TarEntry{.name = "link", .type = TarEntryType::kHardLink, .linkname = target})));
    ExpectRefused(fmt::format("hardlink/{}", n++), {layer}, {EntryName("link")});
  }
  // The target's link count did not move either.
  EXPECT_EQ(fs::hard_link_count(sentinel_ / "keep"), 1u);
}

TEST_F(MaliciousLayerTest, FileReplacingADirectoryThenAWriteUnderItIsRefused) {
  // The directory in a lower layer, the file and the write under it in the upper one.
  ASSERT_OK_AND_ASSIGN(auto lower, Build(LayerBuilder().Dir("d").File("d/a", "a\n")));
  ASSERT_OK_AND_ASSIGN(auto upper, Build(LayerBuilder().File("d", "now a file\n").File("d/b", "b\n")));
  ExpectRefused("replace/lower", {lower, upper}, {EntryName("d/b")});
  // All in one layer.
  ASSERT_OK_AND_ASSIGN(auto same, Build(LayerBuilder().Dir("d").File("d/a", "a\n").File("d", "file\n").File("d/b", "b\n")));
  ExpectRefused("replace/same", {same}, {EntryName("d/b")});
}

TEST_F(MaliciousLayerTest, DeviceNodesStayInsideTheSnapshotAndEscapingOnesAreRefused) {
  // As root a device node inside the layer is legitimate: it lands in the snapshot only.
  ASSERT_OK_AND_ASSIGN(auto devices,
                       Build(LayerBuilder().Dir("dev").CharDevice("dev/null", 1, 3, {.mode = 0666}).BlockDevice(
                           "dev/sda", 8, 0, {.mode = 0660})));
  ASSERT_OK_AND_ASSIGN(PullResult pulled, PushAndPull("devices/ok", {devices}));
  ASSERT_EQ(pulled.chain_ids.size(), 1u);
  ASSERT_OK_AND_ASSIGN(snapshotter::SnapshotRecord record, strata_.snapshots->records().Get(pulled.chain_ids[0].ToString()));
  const fs::path fs_dir = strata_.snapshots->layout().FsDir(record.id);
  ASSERT_OK_AND_ASSIGN(auto entries, test_support::ScanTree(fs_dir));
  std::vector<std::string> devs;
  for (const auto& entry : entries) {
    if (entry.type == 'c' || entry.type == 'b') devs.push_back(fmt::format("{} {}:{}", entry.path, entry.rdev_major, entry.rdev_minor));
  }
  EXPECT_EQ(devs, (std::vector<std::string>{"dev/null 1:3", "dev/sda 8:0"}));
  // Nothing appeared in the sentinel; the pull's snapshot is the only one.
  auto after = test_support::ScanTree(sentinel_, {.compare_mtimes = true, .compare_dir_mtimes = true});
  ASSERT_TRUE(after);
  EXPECT_TRUE(test_support::CompareEntries(sentinel_before_, *after, {.compare_mtimes = true, .compare_dir_mtimes = true}).empty());
  // Remove is metadata-only; Cleanup reclaims the directory.
  ASSERT_OK(strata_.snapshots->Remove(pulled.chain_ids[0].ToString()));
  ASSERT_OK(strata_.snapshots->Cleanup());

  ASSERT_OK_AND_ASSIGN(auto escaping,
                       Build(LayerBuilder().Entry(TarEntry{.name = "../../../../sentinel/null",
                                                           .type = TarEntryType::kCharDevice,
                                                           .devmajor = 1,
                                                           .devminor = 3})));
  ExpectRefused("devices/escape", {escaping}, {EntryName("../../../../sentinel/null"), "\"..\" component"});
  ASSERT_OK_AND_ASSIGN(auto absolute, Build(LayerBuilder().Entry(TarEntry{.name = Outside("sda"),
                                                                           .type = TarEntryType::kBlockDevice,
                                                                           .devmajor = 8,
                                                                           .devminor = 0})));
  ExpectRefused("devices/absolute", {absolute}, {EntryName(Outside("sda")), "absolute"});
}

TEST_F(MaliciousLayerTest, HugePaxSizeIsRefused) {
  ASSERT_OK_AND_ASSIGN(auto layer, Build(LayerBuilder().File("ok", "ok\n").Entry(
                                       TarEntry{.name = "huge", .pax_records = {{"size", "99999999999999"}}},
                                       "only a few bytes\n")));
  ExpectRefused("pax/huge", {layer}, {"'huge'", "size 99999999999999", "over the limit"});
  std::cerr << "[ info ] huge PAX size: " << last_error_ << "\n";
}

TEST_F(MaliciousLayerTest, TruncatedTarIsRefused) {
  ASSERT_OK_AND_ASSIGN(std::string tar, LayerBuilder()
                                            .File("first", "first\n")
                                            .File("cut", test_support::RandomBytes(200'000, 5))
                                            .Tar());
  // Cut in the middle of "cut"'s content: a valid gzip stream of an incomplete tar.
  ASSERT_OK_AND_ASSIGN(auto layer, RawLayer(tar.substr(0, 100'000)));
  ExpectRefused("truncated/tar", {layer}, {EntryName("cut"), "truncated tar"});
  std::cerr << "[ info ] truncated tar: " << last_error_ << "\n";

  // And a gzip stream cut short itself (the tar is whole, the blob is not).
  ASSERT_OK_AND_ASSIGN(auto whole, RawLayer(tar));
  Layer cut_gzip = whole;
  cut_gzip.blob = whole.blob.substr(0, whole.blob.size() / 2);
  cut_gzip.digest = Digest::Of(cut_gzip.blob);
  ExpectRefused("truncated/gzip", {cut_gzip}, {cut_gzip.digest.ToString(), "unexpected end of gzip stream"});
  std::cerr << "[ info ] truncated gzip: " << last_error_ << "\n";
}

TEST_F(MaliciousLayerTest, GzipBombIsRefusedByTheRatioGuard) {
  // The guard allows max_ratio x compressed + 256 MiB of slack. Deflate packs zeros about
  // 1030:1, so 400 MiB of zeros is ~400 KB of gzip: 200 x 400 KB + 256 MiB ~ 335 MiB < 400 MiB.
  constexpr uint64_t kZeros = 400ULL << 20;
  ASSERT_OK_AND_ASSIGN(auto bomb, GzipBomb(kZeros));
  ASSERT_LT(bomb.blob.size(), 1u << 20) << "not much of a bomb";
  const auto start = std::chrono::steady_clock::now();
  ExpectRefused("bomb/gzip", {bomb}, {EntryName("bomb"), "decompression ratio above 200"},
                UnpackLimits{.max_ratio = 200});
  std::cerr << "[ info ] gzip bomb (" << bomb.blob.size() << " bytes): " << last_error_ << " after "
            << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count()
            << " ms\n";
}

}  // namespace
}  // namespace strata::images
