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
#include "registry/fetcher.h"
#include "snapshotter/overlay_snapshotter.h"
#include "store/filters.h"
#include "store/store.h"
#include "tests/registry/registry_client_test_base.h"
#include "tests/support/assertions.h"
#include "tests/support/fault_proxy.h"
#include "tests/support/image_builder.h"
#include "tests/support/oci_layout.h"
#include "tests/support/registry_fixture.h"
#include "tests/support/root.h"
#include "tests/support/tree_compare.h"

namespace strata::images {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using test_support::Compression;
using test_support::EntryAttrs;
using test_support::FaultAction;
using test_support::FaultProxy;
using test_support::FaultRule;
using test_support::LayerBuilder;
using test_support::ManifestFormat;
using test_support::RandomBytes;
using test_support::TreeEntry;

// Each layer stamps its own mtime, so a view showing the wrong layer's entry shows in mtimes too.
constexpr int64_t kBaseMtime = test_support::kDefaultEntryMtime;
constexpr int64_t kMiddleMtime = kBaseMtime + 86'400;
constexpr int64_t kTopMtime = kBaseMtime + 2 * 86'400;

EntryAttrs Attrs(uint32_t mode, uint64_t uid = 0, uint64_t gid = 0, std::map<std::string, std::string> xattrs = {},
                 int64_t mtime = kBaseMtime) {
  return EntryAttrs{.mode = mode, .uid = uid, .gid = gid, .mtime = {mtime, 0}, .xattrs = std::move(xattrs)};
}
EntryAttrs Middle(uint32_t mode, uint64_t uid = 0, uint64_t gid = 0, std::map<std::string, std::string> xattrs = {}) {
  return Attrs(mode, uid, gid, std::move(xattrs), kMiddleMtime);
}
EntryAttrs Top(uint32_t mode, uint64_t uid = 0, uint64_t gid = 0) { return Attrs(mode, uid, gid, {}, kTopMtime); }

// The recipe of tests/snapshotter/umoci_tree_test.cc: every entry kind and odd names...
LayerBuilder BaseLayer() {
  const std::string long_name(120, 'n');
  LayerBuilder layer;
  layer.Dir("bin")
      .File("bin/busybox", "#!busybox\n", Attrs(0755))
      .File("bin/su", "su\n", Attrs(04755))
      .File("bin/wall", "wall\n", Attrs(02755, 0, 5))
      .Symlink("bin/sh", "busybox")
      .Dir("etc")
      .File("etc/passwd", "root:x:0:0::/root:/bin/sh\n")
      .File("etc/shadow", "root:*::0:::::\n", Attrs(0600))
      .File("etc/motd", "to be whited out\n")
      .File("etc/empty", "")
      .Symlink("etc/localtime", "/usr/share/zoneinfo/UTC")
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
      .File("attrs/user-x", "u\n",
            Attrs(0644, 0, 0, {{"user.comment", "hello"}, {"user.bin", std::string("\0\x01\xff", 3)}}))
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

// ...modifies, replaces, whiteouts, makes a dir opaque...
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
      .File("usr/bin/tool-b", "tool-b split off\n", Middle(0755))
      .Dir("home", Middle(0755))
      .Dir("home/user", Middle(0700, 1000, 1000))
      .File("home/user/.profile", "export A=1\n", Middle(0600, 1000, 1000));
  return layer;
}

// ...and type replacements both ways plus a new hard-link group.
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

// Unmounts (and removes the snapshot of) a strata mount on scope exit, whatever happened.
struct MountGuard {
  snapshotter::OverlaySnapshotter* snapshots = nullptr;
  fs::path dir;
  MountGuard() = default;
  MountGuard(const MountGuard&) = delete;
  MountGuard& operator=(const MountGuard&) = delete;
  ~MountGuard() { Release(); }
  void Release() {
    if (snapshots == nullptr) return;
    if (auto status = UnmountImage(*snapshots, dir); !status) {
      ADD_FAILURE() << "unmount " << dir << ": " << status.error().ToString();
      (void)test_support::UnmountAllBeneath(dir);
    }
    snapshots = nullptr;
  }
};

const TreeEntry* Find(const std::vector<TreeEntry>& entries, const std::string& path) {
  auto it = std::ranges::find(entries, path, &TreeEntry::path);
  return it == entries.end() ? nullptr : &*it;
}

std::vector<std::string> Paths(const std::vector<TreeEntry>& entries) {
  std::vector<std::string> paths;
  for (const auto& entry : entries) paths.push_back(entry.path);
  return paths;
}

class UnpackTest : public registry::RegistryClientTest {
 protected:
  void SetUp() override {
    STRATA_REQUIRE_ROOT();
    RegistryClientTest::SetUp();
    registry_ = StartTrustedRegistry();
    ASSERT_TRUE(registry_);
    auto root = test_support::TempRoot::Create("strata-unpack");
    ASSERT_TRUE(root) << root.error().ToString();
    root_ = std::make_unique<test_support::TempRoot>(std::move(*root));
    auto store = store::Store::Open(root_->path() / "store");
    ASSERT_TRUE(store) << store.error().ToString();
    store_ = std::move(*store);
    auto snapshots = snapshotter::OverlaySnapshotter::Open(store_->root(), store_->db());
    ASSERT_TRUE(snapshots) << snapshots.error().ToString();
    snapshots_ = std::move(*snapshots);
    MakeClient();
  }

  void MakeClient(int max_attempts = 4) {
    fetcher_.reset();
    authorizer_ = std::make_unique<registry::Authorizer>(*client_, Fixed(std::nullopt));
    registry::ResolverOptions options;
    options.retry = {.max_attempts = max_attempts, .initial_backoff = 1ms, .jitter = 0};
    options.sleep = [](std::chrono::milliseconds) {};
    resolver_ = std::make_unique<registry::Resolver>(*authorizer_, std::move(options));
    fetcher_ = std::make_unique<registry::Fetcher>(*resolver_, store_->content(), &store_->leases());
  }

  Result<PullResult> PullRef(const std::string& text, bool unpack = true) {
    PullOptions options;
    if (unpack) options.unpack_into = snapshots_.get();
    return Pull(*resolver_, *fetcher_, *store_, Ref(text), options);
  }

  std::vector<snapshotter::SnapshotInfo> Snapshots() {
    std::vector<snapshotter::SnapshotInfo> all;
    auto filter = store::Filter::Parse({});
    EXPECT_TRUE(filter);
    auto walked = snapshots_->Walk(*filter, [&](const snapshotter::SnapshotInfo& info) {
      all.push_back(info);
      return true;
    });
    EXPECT_TRUE(walked) << walked.error().ToString();
    return all;
  }

  // Mounts image `name` on root_/<dir> (created) and arms `guard`.
  Result<MountedImage> MountAt(MountGuard& guard, const std::string& name, const std::string& dir,
                               bool writable = false) {
    const fs::path target = root_->path() / dir;
    fs::create_directories(target);
    auto mounted = MountImage(*store_, *snapshots_, name, target, {.writable = writable});
    if (mounted) {
      guard.snapshots = snapshots_.get();
      guard.dir = target;
    }
    return mounted;
  }

  static Result<test_support::BuiltImage> EveryKindImage() {
    test_support::ImageBuilder builder;
    for (const LayerBuilder& layer : {BaseLayer(), MiddleLayer(), TopLayer()}) {
      auto built = layer.Build(Compression::kGzip);
      if (!built) return std::unexpected(built.error());
      builder.AddLayer(std::move(*built));
    }
    return builder.Build();
  }

  // Compares the mounted tree with umoci's unpack of `image`: everything including the
  // mtimes of every entry, directories too, except the root's (no layer names "./": umoci
  // leaves rootfs/ at mtime 0, our view shows the fs dir of the top snapshot as made).
  void ExpectSameAsUmoci(const fs::path& merged, const test_support::BuiltImage& image, const std::string& name) {
    ASSERT_OK(test_support::WriteOciLayout(image, root_->path() / ("layout-" + name), "latest"));
    ASSERT_OK_AND_ASSIGN(fs::path umoci_rootfs, test_support::UmociUnpack(root_->path() / ("layout-" + name), "latest",
                                                                          root_->path() / ("bundle-" + name)));
    test_support::TreeCompareOptions options{.compare_mtimes = true, .compare_dir_mtimes = true};
    ASSERT_OK_AND_ASSIGN(auto ours, test_support::ScanTree(merged, options));
    ASSERT_OK_AND_ASSIGN(auto theirs, test_support::ScanTree(umoci_rootfs, options));
    ASSERT_EQ(ours.at(0).path, ".");
    ASSERT_EQ(theirs.at(0).path, ".");
    ours[0].mtime_ns = theirs[0].mtime_ns;
    std::vector<std::string> differences = test_support::CompareEntries(ours, theirs, options);
    EXPECT_TRUE(differences.empty()) << "ours (A, pulled + mounted) vs umoci (B):\n  "
                                     << fmt::format("{}", fmt::join(differences, "\n  "));
    // The comparison is only as good as what the trees hold.
    EXPECT_EQ(Find(ours, "etc/motd"), nullptr);
    EXPECT_EQ(Find(ours, "old"), nullptr);
    EXPECT_EQ(Find(ours, "opaque/lower-a"), nullptr);
    ASSERT_NE(Find(ours, "opaque/upper-b"), nullptr);
    ASSERT_NE(Find(ours, "replaced"), nullptr);
    EXPECT_EQ(Find(ours, "replaced")->type, 'f');
    ASSERT_NE(Find(ours, "file2dir"), nullptr);
    EXPECT_EQ(Find(ours, "file2dir")->type, 'd');
    ASSERT_NE(Find(ours, "usr/bin/tool-a"), nullptr);
    EXPECT_EQ(Find(ours, "usr/bin/tool-a")->hardlink_group, "usr/bin/tool");
    ASSERT_NE(Find(ours, "dev/loop0"), nullptr);
    EXPECT_EQ(Find(ours, "dev/loop0")->type, 'b');
    EXPECT_EQ(Find(ours, "bin/su")->mode, 04755u);
    EXPECT_EQ(Find(ours, "tmp")->mode, 01777u);
    EXPECT_EQ(Find(ours, "attrs/trusted-x")->xattrs.count("trusted.strata-test"), 1u);
  }

  void ExpectNoSnapshots(const std::string& why) {
    std::vector<std::string> names;
    for (const auto& info : Snapshots()) names.push_back(info.name + " (" + std::string(snapshotter::KindName(info.kind)) + ")");
    EXPECT_TRUE(names.empty()) << why << ": " << fmt::format("{}", fmt::join(names, ", "));
  }

  std::unique_ptr<test_support::RegistryFixture> registry_;
  std::unique_ptr<test_support::TempRoot> root_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<snapshotter::OverlaySnapshotter> snapshots_;
  std::unique_ptr<registry::Fetcher> fetcher_;
};

#define REQUIRE_UMOCI()                                                                         \
  do {                                                                                          \
    if (!fs::exists(test_support::kUmociPath)) GTEST_SKIP() << "umoci not found (apt-get install umoci)"; \
  } while (0)

TEST_F(UnpackTest, PulledAndMountedTreeMatchesUmociAndChainIsCommitted) {
  REQUIRE_UMOCI();
  ASSERT_OK_AND_ASSIGN(auto image, EveryKindImage());
  test_support::TestHttpClient http(registry_->ClientOptions());
  ASSERT_OK_AND_ASSIGN(auto pushed, test_support::PushImage(http, registry_->url(), "every/kind", "1", image));
  const std::string name = registry_->host() + "/every/kind:1";
  ASSERT_OK_AND_ASSIGN(PullResult pulled, PullRef(name));
  EXPECT_EQ(pulled.layers_unpacked, 3);
  const std::vector<Digest> expected_chain = oci::ChainIDs(image.diff_ids);
  ASSERT_EQ(pulled.chain_ids, expected_chain);

  // Each chainID committed over the one below; no extract snapshot is left.
  for (size_t i = 0; i < expected_chain.size(); ++i) {
    ASSERT_OK_AND_ASSIGN(snapshotter::SnapshotInfo info, snapshots_->Stat(expected_chain[i].ToString()));
    EXPECT_EQ(info.kind, snapshotter::Kind::kCommitted) << i;
    EXPECT_EQ(info.parent, i == 0 ? "" : expected_chain[i - 1].ToString()) << i;
  }
  EXPECT_EQ(Snapshots().size(), 3u);
  // The config holds the top snapshot for GC.
  ASSERT_OK_AND_ASSIGN(store::ContentInfo config, store_->content().Info(pushed.config_digest));
  EXPECT_EQ(config.labels["containerd.io/gc.ref.snapshot.overlayfs"], expected_chain.back().ToString());

  MountGuard guard;
  ASSERT_OK_AND_ASSIGN(MountedImage mounted, MountAt(guard, name, "merged"));
  EXPECT_EQ(mounted.chain_ids, expected_chain);
  EXPECT_EQ(mounted.manifest.descriptor.digest, pushed.manifest_digest);
  ExpectSameAsUmoci(root_->path() / "merged", image, "pull");
  guard.Release();
  EXPECT_FALSE(snapshots_->Stat(MountKey(root_->path() / "merged")));
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
  ASSERT_OK_AND_ASSIGN(auto top, snapshots_->Stat(two.chain_ids[2].ToString()));
  EXPECT_EQ(top.parent, one.chain_ids[1].ToString());
  EXPECT_EQ(Snapshots().size(), 4u);

  MountGuard guard;
  ASSERT_OK(MountAt(guard, registry_->host() + "/share/two:1", "two"));
  ASSERT_OK_AND_ASSIGN(auto entries, test_support::ScanTree(root_->path() / "two"));
  EXPECT_EQ(Paths(entries), (std::vector<std::string>{".", "layer0", "layer1", "other"}));
}

TEST_F(UnpackTest, FetchOnlyPullIsUnpackedFromTheStoreAtMountTime) {
  REQUIRE_UMOCI();
  ASSERT_OK_AND_ASSIGN(auto image, EveryKindImage());
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
    ASSERT_OK_AND_ASSIGN(auto info, snapshots_->Stat(chain_id.ToString()));
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
  ASSERT_OK_AND_ASSIGN(auto proxy, FaultProxy::Start(registry_->url(),
                                                     {FaultRule{.method = "GET",
                                                                .path_regex = "/blobs/" + big_layer.digest.ToString(),
                                                                .action = FaultAction::kDropAfter,
                                                                .body_bytes = 700'000,
                                                                .first_n = 1}}));
  const std::string name = proxy->host() + "/cut/app:1";
  MakeClient(/*max_attempts=*/1);
  auto failed = PullRef(name);
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().code(), ErrorCode::kUnavailable) << failed.error().ToString();
  ExpectNoSnapshots("after the cut pull");
  EXPECT_FALSE(store_->images().Get(name));

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
  ASSERT_OK_AND_ASSIGN(auto proxy, FaultProxy::Start(registry_->url(),
                                                     {FaultRule{.method = "GET",
                                                                .path_regex = "/blobs/" + big_layer.digest.ToString(),
                                                                .action = FaultAction::kDropAfter,
                                                                .body_bytes = 1'000'000,
                                                                .first_n = 2}}));
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
  EXPECT_FALSE(store_->images().Get(name));
  // The snapshot directories went too.
  size_t dirs = 0;
  if (fs::exists(store_->root() / "snapshots")) {
    for ([[maybe_unused]] const auto& entry : fs::directory_iterator(store_->root() / "snapshots")) ++dirs;
  }
  EXPECT_EQ(dirs, 0u);
}

}  // namespace
}  // namespace strata::images
