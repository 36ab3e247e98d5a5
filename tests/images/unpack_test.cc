// Streaming pull + unpack against the real docker-registry: a three-layer image covering
// every entry kind pulled, unpacked into chainID snapshots and mounted must equal umoci's
// unpack of the same image; repeated and overlapping pulls unpack only what is missing; a
// fetch-only pull is unpacked from the store at mount time; cut downloads, mixed
// compressions, Docker media types and a blob used twice in one image; and a config whose
// diff_ids lie leaves nothing behind.
#include <algorithm>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include "images/image_mount.h"
#include "images/pull.h"
#include "images/unpack.h"
#include "oci/chain_id.h"
#include "tests/images/unpack_fixture.h"
#include "tests/support/assertions.h"
#include "tests/support/every_kind_image.h"
#include "tests/support/fault_proxy.h"
#include "tests/support/image_builder.h"
#include "tests/support/oci_layout.h"
#include "tests/support/registry_fixture.h"
#include "tests/support/tree_compare.h"

namespace strata::images {
namespace {

namespace fs = std::filesystem;
using test_support::Compression;
using test_support::FaultAction;
using test_support::FaultProxy;
using test_support::FaultRule;
using test_support::LayerBuilder;
using test_support::ManifestFormat;
using test_support::RandomBytes;
using test_support::TreeEntry;

const TreeEntry* Find(const std::vector<TreeEntry>& entries, const std::string& path) {
  auto it = std::ranges::find(entries, path, &TreeEntry::path);
  return it == entries.end() ? nullptr : &*it;
}

std::vector<std::string> Paths(const std::vector<TreeEntry>& entries) {
  std::vector<std::string> paths;
  for (const auto& entry : entries) paths.push_back(entry.path);
  return paths;
}

class UnpackTest : public UnpackFixture {
 protected:
  UnpackTest() : UnpackFixture("strata-unpack") {}

  void SetUpStrata() override {
    MakeFastResolver(4);
    OpenRoot(strata_, "store");
  }

  void MakeClient(int max_attempts = 4) {
    strata_.fetcher.reset();
    MakeFastResolver(max_attempts);
    MakeFetcher(strata_);
  }

  Result<PullResult> PullRef(const std::string& text, bool unpack = true) { return PullInto(strata_, text, unpack); }

  std::vector<snapshotter::SnapshotInfo> Snapshots() { return UnpackFixture::Snapshots(strata_); }

  // Mounts image `name` on root_/<dir> (created) and arms `guard`.
  Result<MountedImage> MountAt(MountGuard& guard, const std::string& name, const std::string& dir) {
    return UnpackFixture::MountAt(strata_, guard, name, dir);
  }

  // A proxy to the registry that drops the connection of the first `first_n` GETs of
  // `blob` after `body_bytes` bytes of its body.
  Result<std::unique_ptr<FaultProxy>> DropBlobAfter(const Digest& blob, uint64_t body_bytes, int first_n) {
    return FaultProxy::Start(registry_->url(), {FaultRule{.method = "GET",
                                                          .path_regex = "/blobs/" + blob.ToString(),
                                                          .action = FaultAction::kDropAfter,
                                                          .body_bytes = body_bytes,
                                                          .first_n = first_n}});
  }

  // Compares the mounted tree with umoci's unpack of `image`: everything including the
  // mtimes of every entry, directories too, except the root's.
  void ExpectSameAsUmoci(const fs::path& merged, const test_support::BuiltImage& image, const std::string& name) {
    ASSERT_OK(test_support::WriteOciLayout(image, root_->path() / ("layout-" + name), "latest"));
    ASSERT_OK_AND_ASSIGN(fs::path umoci_rootfs, test_support::UmociUnpack(root_->path() / ("layout-" + name), "latest",
                                                                          root_->path() / ("bundle-" + name)));
    std::vector<TreeEntry> ours;
    ASSERT_NO_FATAL_FAILURE(test_support::ExpectSameTreeAsUmoci(merged, umoci_rootfs, "pulled + mounted", ours));
    // The comparison is only as good as what the trees hold.
    ASSERT_NO_FATAL_FAILURE(test_support::ExpectEveryKindCases(ours));
    EXPECT_EQ(Find(ours, "tmp")->mode, 01777u);
  }

  void ExpectNoSnapshots(const std::string& why) {
    std::vector<std::string> names = SnapshotNames(strata_);
    EXPECT_TRUE(names.empty()) << why << ": " << fmt::format("{}", fmt::join(names, ", "));
  }

  StrataRoot strata_;
};

#define REQUIRE_UMOCI()                                                                         \
  do {                                                                                          \
    if (!fs::exists(test_support::kUmociPath)) GTEST_SKIP() << "umoci not found (apt-get install umoci)"; \
  } while (0)

TEST_F(UnpackTest, PulledAndMountedTreeMatchesUmociAndChainIsCommitted) {
  REQUIRE_UMOCI();
  ASSERT_OK_AND_ASSIGN(auto every_kind, test_support::BuildEveryKindImage());
  const test_support::BuiltImage& image = every_kind.image;
  test_support::TestHttpClient http(registry_->ClientOptions());
  ASSERT_OK_AND_ASSIGN(auto pushed, test_support::PushImage(http, registry_->url(), "every/kind", "1", image));
  const std::string name = registry_->host() + "/every/kind:1";
  ASSERT_OK_AND_ASSIGN(PullResult pulled, PullRef(name));
  EXPECT_EQ(pulled.layers_unpacked, 3);
  const std::vector<Digest> expected_chain = oci::ChainIDs(image.diff_ids);
  ASSERT_EQ(pulled.chain_ids, expected_chain);

  // Each chainID committed over the one below; no extract snapshot is left.
  for (size_t i = 0; i < expected_chain.size(); ++i) {
    ASSERT_OK_AND_ASSIGN(snapshotter::SnapshotInfo info, strata_.snapshots->Stat(expected_chain[i].ToString()));
    EXPECT_EQ(info.kind, snapshotter::Kind::kCommitted) << i;
    EXPECT_EQ(info.parent, i == 0 ? "" : expected_chain[i - 1].ToString()) << i;
  }
  EXPECT_EQ(Snapshots().size(), 3u);
  // The config holds the top snapshot for GC.
  ASSERT_OK_AND_ASSIGN(store::ContentInfo config, strata_.store->content().Info(pushed.config_digest));
  EXPECT_EQ(config.labels["containerd.io/gc.ref.snapshot.overlayfs"], expected_chain.back().ToString());

  MountGuard guard;
  ASSERT_OK_AND_ASSIGN(MountedImage mounted, MountAt(guard, name, "merged"));
  EXPECT_EQ(mounted.chain_ids, expected_chain);
  EXPECT_EQ(mounted.manifest.descriptor.digest, pushed.manifest_digest);
  ExpectSameAsUmoci(root_->path() / "merged", image, "pull");
  guard.Release();
  EXPECT_FALSE(strata_.snapshots->Stat(MountKey(root_->path() / "merged")));
  EXPECT_EQ(Snapshots().size(), 3u);
}

TEST_F(UnpackTest, SecondPullUnpacksNothingAndSharedLowerLayersAreReused) {
  std::vector<test_support::Layer> layers;
  for (int i = 0; i < 3; ++i) {
    ASSERT_OK_AND_ASSIGN(auto layer, LayerBuilder().File(fmt::format("layer{}", i), fmt::format("{}\n", i)).Build());
    layers.push_back(std::move(layer));
  }
  test_support::ImageBuilder first;
  for (const auto& layer : layers) first.AddLayer(layer);
  ASSERT_OK(first.PushTo(*registry_, "share/one", "1"));
  ASSERT_OK_AND_ASSIGN(PullResult one, PullRef(registry_->host() + "/share/one:1"));
  EXPECT_EQ(one.layers_unpacked, 3);

  ASSERT_OK_AND_ASSIGN(PullResult again, PullRef(registry_->host() + "/share/one:1"));
  EXPECT_EQ(again.layers_unpacked, 0);
  EXPECT_EQ(again.chain_ids, one.chain_ids);
  EXPECT_EQ(Snapshots().size(), 3u);

  ASSERT_OK_AND_ASSIGN(auto other, LayerBuilder().File("other", "other\n").Build());
  test_support::ImageBuilder second;
  second.AddLayer(layers[0]).AddLayer(layers[1]).AddLayer(other);
  ASSERT_OK(second.PushTo(*registry_, "share/two", "1"));
  ASSERT_OK_AND_ASSIGN(PullResult two, PullRef(registry_->host() + "/share/two:1"));
  EXPECT_EQ(two.layers_unpacked, 1);
  ASSERT_EQ(two.chain_ids.size(), 3u);
  EXPECT_EQ(two.chain_ids[0], one.chain_ids[0]);
  EXPECT_EQ(two.chain_ids[1], one.chain_ids[1]);
  EXPECT_NE(two.chain_ids[2], one.chain_ids[2]);
  ASSERT_OK_AND_ASSIGN(auto top, strata_.snapshots->Stat(two.chain_ids[2].ToString()));
  EXPECT_EQ(top.parent, one.chain_ids[1].ToString());
  EXPECT_EQ(Snapshots().size(), 4u);

  MountGuard guard;
  ASSERT_OK(MountAt(guard, registry_->host() + "/share/two:1", "two"));
  ASSERT_OK_AND_ASSIGN(auto entries, test_support::ScanTree(root_->path() / "two"));
  EXPECT_EQ(Paths(entries), (std::vector<std::string>{".", "layer0", "layer1", "other"}));
}

TEST_F(UnpackTest, FetchOnlyPullIsUnpackedFromTheStoreAtMountTime) {
  REQUIRE_UMOCI();
  ASSERT_OK_AND_ASSIGN(auto every_kind, test_support::BuildEveryKindImage());
  const test_support::BuiltImage& image = every_kind.image;
  test_support::TestHttpClient http(registry_->ClientOptions());
  ASSERT_OK(test_support::PushImage(http, registry_->url(), "every/later", "1", image));
  const std::string name = registry_->host() + "/every/later:1";
  ASSERT_OK_AND_ASSIGN(PullResult pulled, PullRef(name, /*unpack=*/false));
  EXPECT_EQ(pulled.layers_unpacked, 0);
  EXPECT_TRUE(pulled.chain_ids.empty());
  ExpectNoSnapshots("after a fetch-only pull");

  MountGuard guard;
  ASSERT_OK_AND_ASSIGN(MountedImage mounted, MountAt(guard, name, "merged"));
  EXPECT_EQ(mounted.chain_ids, oci::ChainIDs(image.diff_ids));
  for (const Digest& chain_id : mounted.chain_ids) {
    ASSERT_OK_AND_ASSIGN(auto info, strata_.snapshots->Stat(chain_id.ToString()));
    EXPECT_EQ(info.kind, snapshotter::Kind::kCommitted);
  }
  ExpectSameAsUmoci(root_->path() / "merged", image, "stored");
}

TEST_F(UnpackTest, CutDownloadFailsCleanlyAndTheNextPullUnpacksFromTheResumedBlob) {
  const std::string big = RandomBytes(2'000'000, 11);
  ASSERT_OK_AND_ASSIGN(auto big_layer,
                       LayerBuilder().Dir("data").File("data/big.bin", big).File("data/after", "after\n").Build());
  ASSERT_OK_AND_ASSIGN(auto small_layer, LayerBuilder().File("etc/hostname", "strata\n").Build());
  test_support::ImageBuilder builder;
  builder.AddLayer(big_layer).AddLayer(small_layer);
  ASSERT_OK(builder.PushTo(*registry_, "cut/app", "1"));
  ASSERT_OK_AND_ASSIGN(auto proxy, DropBlobAfter(big_layer.digest, 700'000, 1));
  const std::string name = proxy->host() + "/cut/app:1";
  MakeClient(/*max_attempts=*/1);
  auto failed = PullRef(name);
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().code(), ErrorCode::kUnavailable) << failed.error().ToString();
  ExpectNoSnapshots("after the cut pull");
  EXPECT_FALSE(strata_.store->images().Get(name));

  // The next pull resumes the ingest at 700000: the stream is not the whole blob, so the
  // layer is applied from the stored blob once it is verified.
  MakeClient();
  ASSERT_OK_AND_ASSIGN(PullResult pulled, PullRef(name));
  EXPECT_EQ(pulled.layers_unpacked, 2);
  int ranged = 0;
  for (const auto& request : proxy->requests()) {
    if (request.Header("Range")) ++ranged;
  }
  EXPECT_GE(ranged, 1);
  for (const auto& info : Snapshots()) EXPECT_EQ(info.kind, snapshotter::Kind::kCommitted) << info.name;

  MountGuard guard;
  ASSERT_OK(MountAt(guard, name, "merged"));
  ASSERT_OK_AND_ASSIGN(auto entries, test_support::ScanTree(root_->path() / "merged"));
  EXPECT_EQ(Paths(entries), (std::vector<std::string>{".", "data", "data/after", "data/big.bin", "etc", "etc/hostname"}));
  ASSERT_NE(Find(entries, "data/big.bin"), nullptr);
  EXPECT_EQ(Find(entries, "data/big.bin")->content_sha256, Digest::Of(big).hex());
  EXPECT_EQ(Find(entries, "etc/hostname")->content_sha256, Digest::Of("strata\n").hex());
}

TEST_F(UnpackTest, DroppedConnectionResumedWithinOnePullKeepsStreaming) {
  const std::string big = RandomBytes(3'000'000, 12);
  ASSERT_OK_AND_ASSIGN(auto big_layer, LayerBuilder().File("big.bin", big).Build());
  test_support::ImageBuilder builder;
  builder.AddLayer(big_layer);
  ASSERT_OK(builder.PushTo(*registry_, "drop/app", "1"));
  ASSERT_OK_AND_ASSIGN(auto proxy, DropBlobAfter(big_layer.digest, 1'000'000, 2));
  const std::string name = proxy->host() + "/drop/app:1";
  ASSERT_OK_AND_ASSIGN(PullResult pulled, PullRef(name));
  EXPECT_EQ(pulled.layers_unpacked, 1);
  EXPECT_EQ(proxy->fired(0), 2);
  MountGuard guard;
  ASSERT_OK(MountAt(guard, name, "merged"));
  ASSERT_OK_AND_ASSIGN(auto entries, test_support::ScanTree(root_->path() / "merged"));
  ASSERT_NE(Find(entries, "big.bin"), nullptr);
  EXPECT_EQ(Find(entries, "big.bin")->content_sha256, Digest::Of(big).hex());
}

// Layers A (gzip), B (zstd or none) and A again: positions 0 and 2 share one blob, and B
// whites out what A made, so only an A applied twice gives the right tree.
TEST_F(UnpackTest, MixedCompressionsDockerTypesAndOneBlobUsedTwice) {
  ASSERT_OK_AND_ASSIGN(auto a, LayerBuilder().File("shared.txt", "from A\n").Dir("d").File("d/x", "x\n").Build(
                                   Compression::kGzip));
  for (ManifestFormat format : {ManifestFormat::kOci, ManifestFormat::kDocker}) {
    const bool oci = format == ManifestFormat::kOci;
    SCOPED_TRACE(oci ? "oci" : "docker");
    ASSERT_OK_AND_ASSIGN(auto b, LayerBuilder()
                                     .Whiteout("shared.txt")
                                     .File(oci ? "b-zstd.txt" : "b-none.txt", "B\n")
                                     .Build(oci ? Compression::kZstd : Compression::kNone));
    ASSERT_OK_AND_ASSIGN(auto c, LayerBuilder().File("c.txt", "C\n").Build(oci ? Compression::kNone : Compression::kGzip));
    test_support::ImageBuilder builder(format);
    builder.AddLayer(a).AddLayer(b).AddLayer(a).AddLayer(c);
    const std::string repository = oci ? "mixed/oci" : "mixed/docker";
    ASSERT_OK_AND_ASSIGN(auto pushed, builder.PushTo(*registry_, repository, "1"));
    const std::string name = registry_->host() + "/" + repository + ":1";
    ASSERT_OK_AND_ASSIGN(PullResult pulled, PullRef(name));
    // A's chain is shared between the two images, so the second one unpacks 3.
    EXPECT_EQ(pulled.layers_unpacked, oci ? 4 : 3);
    ASSERT_EQ(pulled.chain_ids.size(), 4u);
    EXPECT_EQ(std::set<Digest>(pulled.chain_ids.begin(), pulled.chain_ids.end()).size(), 4u);
    EXPECT_EQ(pulled.chain_ids, oci::ChainIDs(pushed.diff_ids));

    MountGuard guard;
    ASSERT_OK(MountAt(guard, name, repository));
    ASSERT_OK_AND_ASSIGN(auto entries, test_support::ScanTree(root_->path() / repository));
    const std::string b_name = oci ? "b-zstd.txt" : "b-none.txt";
    std::vector<std::string> expected{".", b_name, "c.txt", "d", "d/x", "shared.txt"};
    std::ranges::sort(expected);
    EXPECT_EQ(Paths(entries), expected);
    ASSERT_NE(Find(entries, "shared.txt"), nullptr);
    EXPECT_EQ(Find(entries, "shared.txt")->content_sha256, Digest::Of("from A\n").hex());
    EXPECT_EQ(Find(entries, "c.txt")->content_sha256, Digest::Of("C\n").hex());
  }
}

TEST_F(UnpackTest, DiffIdMismatchFailsAndLeavesNoSnapshotOrImage) {
  ASSERT_OK_AND_ASSIGN(auto good, LayerBuilder().File("good", "good\n").Build());
  ASSERT_OK_AND_ASSIGN(auto liar, LayerBuilder().File("liar", "liar\n").Build());
  const Digest actual = liar.diff_id;
  const Digest claimed = Digest::Of("not the tar of this layer");
  liar.diff_id = claimed;
  test_support::ImageBuilder builder;
  builder.AddLayer(good).AddLayer(liar);
  ASSERT_OK(builder.PushTo(*registry_, "liar/app", "1"));
  const std::string name = registry_->host() + "/liar/app:1";
  auto result = PullRef(name);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kFailedPrecondition) << result.error().ToString();
  EXPECT_NE(result.error().message().find(actual.ToString()), std::string::npos) << result.error().message();
  EXPECT_NE(result.error().message().find(claimed.ToString()), std::string::npos) << result.error().message();
  ExpectNoSnapshots("after the diffID mismatch");
  EXPECT_FALSE(strata_.store->images().Get(name));
  // The snapshot directories went too.
  size_t dirs = 0;
  if (fs::exists(strata_.store->root() / "snapshots")) {
    for ([[maybe_unused]] const auto& entry : fs::directory_iterator(strata_.store->root() / "snapshots")) ++dirs;
  }
  EXPECT_EQ(dirs, 0u);
}

}  // namespace
}  // namespace strata::images
