// Windows images through a real pull with unpack: each layer lands in its snapshot's fs/ dir
// as a windowsfilter-style layer dir (layerchain.json naming the parents' dirs), labelled
// windows, and exports back to the entries of its tar; a Linux image still unpacks in
// overlay form; invalid base layers and deltas without a usable parent fail naming why and
// leave no snapshot of the pull; the in-process view and `strata mount` show the Windows
// layer view (vm isolation: a container dir with a scratch VHD); commit refuses them.
#include <sys/stat.h>
#include <sys/xattr.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <map>
#include <ranges>
#include <tuple>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "archive/tar_reader.h"
#include "base/io.h"
#include "images/commit.h"
#include "images/image_mount.h"
#include "images/image_view.h"
#include "images/pull.h"
#include "images/unpack.h"
#include "oci/chain_id.h"
#include "snapshotter/vhd_footer.h"
#include "tests/images/unpack_fixture.h"
#include "tests/support/assertions.h"
#include "tests/support/compression.h"
#include "tests/support/image_builder.h"
#include "tests/support/registry_fixture.h"
#include "tests/support/windows_layer_builder.h"

namespace strata::images {
namespace {

namespace fs = std::filesystem;
using test_support::Compression;
using test_support::Layer;
using test_support::WindowsLayerBuilder;
using test_support::WinAttrs;

constexpr std::string_view kOsVersion = "10.0.20348.2762";

// A Windows layer tar as a pushable layer (gzip), digests computed.
Result<Layer> WindowsLayer(const WindowsLayerBuilder& builder) { return builder.Build(Compression::kGzip); }

// A second delta, over WindowsDeltaLayer(): a patched file, a hard link to a file of its
// parent (the delta) and new hives.
WindowsLayerBuilder SecondDeltaLayer() {
  const WinAttrs dir{.fileattr = test_support::kAttrDirectory, .rawsd = std::string(test_support::kOwnerBuiltinUsersSd)};
  const WinAttrs file{.fileattr = test_support::kAttrArchive, .rawsd = std::string(test_support::kOwnerBuiltinUsersSd)};
  WindowsLayerBuilder b;
  b.Dir("Files/", dir)
      .Dir("Files/Windows/", dir)
      .Dir("Files/Windows/System32/", dir)
      .File("Files/Windows/System32/kernel32.dll", "MZ kernel32 v3", file)
      .Dir("Files/app/", dir)
      .Hardlink("Files/app/linked-again.txt", std::string(test_support::kDeltaParentLink), file)
      .Dir("Hives/", dir);
  for (const char* hive : {"DefaultUser", "Sam", "Security", "Software", "System"}) {
    b.File(std::string("Hives/") + hive + "_Delta", std::string("regf second delta ") + hive, file);
  }
  return b;
}

// One tar entry in comparable form.
struct ParsedEntry {
  std::string name;
  char type = 0;
  uint32_t mode = 0;
  int64_t mtime_s = 0;
  uint32_t mtime_ns = 0;
  std::string linkname;
  std::map<std::string, std::string> pax_records;
  std::map<std::string, std::string> xattrs;
  std::string data;

  auto Key() const { return std::tie(name, type, mode, mtime_s, mtime_ns, linkname, pax_records, xattrs, data); }
  bool operator<(const ParsedEntry& other) const { return Key() < other.Key(); }
  bool operator==(const ParsedEntry& other) const { return Key() == other.Key(); }
};

std::string Describe(const ParsedEntry& e) {
  return fmt::format("{} type={} mode={:o} mtime={}.{} link={:?} records={} xattrs={} data={} bytes", e.name, e.type,
                     e.mode, e.mtime_s, e.mtime_ns, e.linkname, e.pax_records, e.xattrs, e.data.size());
}

Result<std::vector<ParsedEntry>> ParseTar(std::string_view tar) {
  StringViewReader input(tar);
  archive::TarReader reader(input);
  std::vector<ParsedEntry> entries;
  for (;;) {
    STRATA_ASSIGN_OR_RETURN(std::optional<archive::TarEntry> next, reader.Next());
    if (!next) break;
    ParsedEntry e{.name = next->name, .type = static_cast<char>(next->type), .mode = next->mode,
                  .mtime_s = next->mtime.seconds, .mtime_ns = next->mtime.nanoseconds, .linkname = next->linkname,
                  .pax_records = next->pax_records, .xattrs = next->xattrs};
    char buffer[4096];
    for (;;) {
      STRATA_ASSIGN_OR_RETURN(size_t got, reader.ReadContent(buffer));
      if (got == 0) break;
      e.data.append(buffer, got);
    }
    entries.push_back(std::move(e));
  }
  std::sort(entries.begin(), entries.end());
  return entries;
}

// The two tars hold the same entries (order-insensitive); failures list the differences.
void ExpectSameEntries(const std::string& original, const std::string& exported, const std::string& what) {
  SCOPED_TRACE(what);
  ASSERT_OK_AND_ASSIGN(std::vector<ParsedEntry> a, ParseTar(original));
  ASSERT_OK_AND_ASSIGN(std::vector<ParsedEntry> b, ParseTar(exported));
  std::vector<ParsedEntry> only_a, only_b;
  std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(only_a));
  std::set_difference(b.begin(), b.end(), a.begin(), a.end(), std::back_inserter(only_b));
  std::vector<std::string> lines;
  for (const auto& e : only_a) lines.push_back("only in the original: " + Describe(e));
  for (const auto& e : only_b) lines.push_back("only in the export:   " + Describe(e));
  EXPECT_TRUE(lines.empty()) << fmt::format("{}", fmt::join(lines, "\n"));
  EXPECT_EQ(a.size(), b.size());
  EXPECT_GT(a.size(), 5u);
}

std::string Slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class WindowsUnpackTest : public UnpackFixture {
 protected:
  WindowsUnpackTest() : UnpackFixture("strata-windows-unpack") {}

  void SetUpStrata() override {
    MakeFastResolver(2);
    ASSERT_NO_FATAL_FAILURE(OpenRoot(strata_, "store"));
  }

  // Pushes an image of `layers` for `os` as <repository>:1 and returns its name.
  Result<std::string> Push(const std::string& repository, const std::vector<Layer>& layers,
                           const std::string& os = "windows") {
    test_support::ImageBuilder builder;
    test_support::Platform platform{.os = os, .architecture = "amd64"};
    if (os == "windows") platform.os_version = std::string(kOsVersion);
    builder.SetPlatform(platform);
    for (const Layer& layer : layers) builder.AddLayer(layer);
    auto pushed = builder.PushTo(*registry_, repository, "1");
    if (!pushed) return std::unexpected(pushed.error().WithContext("push (test setup)"));
    return registry_->host() + "/" + repository + ":1";
  }

  Result<PullResult> PullWith(const std::string& name, int parallelism) {
    PullOptions options;
    options.unpack_into = strata_.snapshots.get();
    options.parallelism = parallelism;
    return Pull(*resolver_, *strata_.fetcher, *strata_.store, Ref(name), options);
  }

  fs::path LayerDir(const Digest& chain_id) {
    auto record = strata_.snapshots->records().Get(chain_id.ToString());
    EXPECT_TRUE(record) << record.error().ToString();
    return record ? strata_.snapshots->layout().FsDir(record->id) : fs::path();
  }

  Result<std::string> Export(const Digest& chain_id) {
    std::string tar;
    STRATA_RETURN_IF_ERROR(ExportSnapshotLayer(*strata_.snapshots, chain_id.ToString(), [&](std::string_view bytes) {
      tar.append(bytes);
      return Status{};
    }));
    return tar;
  }

  // Every layer of the chain is a committed, complete Windows layer dir whose
  // layerchain.json names its parents' dirs, and exports back to its tar's entries.
  void ExpectWindowsChain(const std::vector<Digest>& chain_ids, const std::vector<Layer>& layers) {
    ASSERT_EQ(chain_ids.size(), layers.size());
    std::vector<fs::path> dirs;  // bottom up
    for (size_t i = 0; i < chain_ids.size(); ++i) {
      SCOPED_TRACE(fmt::format("layer #{}", i));
      ASSERT_OK_AND_ASSIGN(snapshotter::SnapshotInfo info, strata_.snapshots->Stat(chain_ids[i].ToString()));
      EXPECT_EQ(info.kind, snapshotter::Kind::kCommitted);
      EXPECT_EQ(info.parent, i == 0 ? "" : chain_ids[i - 1].ToString());
      EXPECT_EQ(info.labels[std::string(kLabelLayerFormat)], kLayerFormatWindows);
      EXPECT_EQ(SnapshotLayerFormat(info), LayerFormat::kWindows);
      const fs::path dir = LayerDir(chain_ids[i]);
      EXPECT_TRUE(fs::is_directory(dir / "Files"));
      EXPECT_TRUE(fs::is_regular_file(dir / ".strata/entries"));
      EXPECT_FALSE(fs::exists(dir / "work")) << "the layer dir is the snapshot's fs/ dir";
      const nlohmann::json chain = nlohmann::json::parse(Slurp(dir / "layerchain.json"), nullptr, false);
      if (i == 0) {
        EXPECT_TRUE(chain.is_null()) << chain.dump();
        EXPECT_TRUE(fs::is_regular_file(dir / "Files/Windows/System32/config/SYSTEM"));
        EXPECT_TRUE(fs::is_directory(dir / "UtilityVM/Files"));
      } else {
        std::vector<std::string> expected;
        for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) expected.push_back(it->string());
        ASSERT_TRUE(chain.is_array()) << chain.dump();
        EXPECT_EQ(chain.get<std::vector<std::string>>(), expected);
        EXPECT_TRUE(fs::is_directory(dir / "Hives"));
      }
      ASSERT_OK_AND_ASSIGN(std::string exported, Export(chain_ids[i]));
      ExpectSameEntries(layers[i].tar, exported, fmt::format("export of layer #{}", i));
      dirs.push_back(dir);
    }
  }

  void ExpectNoSnapshots(const std::string& why) {
    std::vector<std::string> names = SnapshotNames(strata_);
    EXPECT_TRUE(names.empty()) << why << ": " << fmt::format("{}", fmt::join(names, ", "));
  }

  StrataRoot strata_;
};

TEST_F(WindowsUnpackTest, PullUnpacksEachLayerIntoACompleteWindowsLayerDir) {
  ASSERT_OK_AND_ASSIGN(Layer base, WindowsLayer(test_support::WindowsBaseLayer()));
  ASSERT_OK_AND_ASSIGN(Layer delta, WindowsLayer(test_support::WindowsDeltaLayer()));
  ASSERT_OK_AND_ASSIGN(std::string name, Push("windows/servercore", {base, delta}));
  ASSERT_OK_AND_ASSIGN(PullResult pulled, PullInto(strata_, name));
  EXPECT_EQ(pulled.layers_unpacked, 2);
  const std::vector<Digest> diff_ids{base.diff_id, delta.diff_id};
  EXPECT_EQ(pulled.chain_ids, oci::ChainIDs(diff_ids));
  ASSERT_NO_FATAL_FAILURE(ExpectWindowsChain(pulled.chain_ids, {base, delta}));
  // The delta's tombstones, as the union view will read them; its link into the base is a copy.
  const fs::path delta_dir = LayerDir(pulled.chain_ids[1]);
  struct stat st {};
  ASSERT_EQ(::lstat((delta_dir / test_support::kBaseDeletedFile).c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_rdev, makedev(0, 0));
  EXPECT_TRUE(fs::is_regular_file(delta_dir / test_support::kDeltaParentLink));
  EXPECT_EQ(SnapshotNames(strata_).size(), 2u) << "no extract snapshot left";

  // A second pull has nothing to unpack.
  ASSERT_OK_AND_ASSIGN(PullResult again, PullInto(strata_, name));
  EXPECT_EQ(again.layers_unpacked, 0);
}

TEST_F(WindowsUnpackTest, DeltasWaitForTheirParentsWhateverTheParallelism) {
  // A blob used twice (the delta again on top) and a delta linking into its parent delta:
  // with one transfer at a time deltas stream over finished parents; with four they are
  // fetched before their parents are applied and applied afterwards.
  ASSERT_OK_AND_ASSIGN(Layer base, WindowsLayer(test_support::WindowsBaseLayer()));
  ASSERT_OK_AND_ASSIGN(Layer delta, WindowsLayer(test_support::WindowsDeltaLayer()));
  ASSERT_OK_AND_ASSIGN(Layer second, WindowsLayer(SecondDeltaLayer()));
  const std::vector<Layer> layers{base, delta, second, delta};
  ASSERT_OK_AND_ASSIGN(std::string name, Push("windows/stacked", layers));
  for (int parallelism : {1, 4}) {
    SCOPED_TRACE(fmt::format("parallelism {}", parallelism));
    // A fresh root each time: the blobs must come from the registry to stream.
    strata_.Reset();
    ASSERT_NO_FATAL_FAILURE(OpenRoot(strata_, fmt::format("store-p{}", parallelism)));
    ASSERT_OK_AND_ASSIGN(PullResult pulled, PullWith(name, parallelism));
    EXPECT_EQ(pulled.layers_unpacked, 4);
    ASSERT_NO_FATAL_FAILURE(ExpectWindowsChain(pulled.chain_ids, layers));
    // The link to the parent delta's file holds that file's data.
    EXPECT_EQ(Slurp(LayerDir(pulled.chain_ids[2]) / "Files/app/linked-again.txt"),
              Slurp(LayerDir(pulled.chain_ids[1]) / test_support::kDeltaParentLink));
    EXPECT_EQ(SnapshotNames(strata_).size(), 4u);
    // Again from the store (the blobs stay): the non-streaming path.
    for (auto it = pulled.chain_ids.rbegin(); it != pulled.chain_ids.rend(); ++it) {
      ASSERT_OK(strata_.snapshots->Remove(it->ToString()));
    }
    ASSERT_OK(strata_.snapshots->Cleanup());
    ASSERT_OK_AND_ASSIGN(store::Image image, strata_.store->images().Get(name));
    ASSERT_OK_AND_ASSIGN(StoredManifest manifest,
                         ResolveStoredManifest(strata_.store->content(), image.target, oci::Platform::Host()));
    ASSERT_OK_AND_ASSIGN(std::vector<Digest> chain_ids,
                         UnpackStored(strata_.store->content(), *strata_.snapshots, manifest.manifest));
    ASSERT_NO_FATAL_FAILURE(ExpectWindowsChain(chain_ids, layers));
    for (auto it = chain_ids.rbegin(); it != chain_ids.rend(); ++it) ASSERT_OK(strata_.snapshots->Remove(it->ToString()));
    ASSERT_OK(strata_.snapshots->Cleanup());
    ExpectNoSnapshots("after removing the chain");
  }
}

TEST_F(WindowsUnpackTest, LinuxImageStillUnpacksInOverlayForm) {
  ASSERT_OK_AND_ASSIGN(Layer lower, test_support::LayerBuilder().Dir("etc").File("etc/gone", "x").Build());
  ASSERT_OK_AND_ASSIGN(Layer upper, test_support::LayerBuilder().Whiteout("etc/gone").File("etc/new", "y").Build());
  ASSERT_OK_AND_ASSIGN(std::string name, Push("linux/plain", {lower, upper}, "linux"));
  ASSERT_OK_AND_ASSIGN(PullResult pulled, PullInto(strata_, name));
  ASSERT_EQ(pulled.layers_unpacked, 2);
  for (const Digest& chain_id : pulled.chain_ids) {
    ASSERT_OK_AND_ASSIGN(snapshotter::SnapshotInfo info, strata_.snapshots->Stat(chain_id.ToString()));
    EXPECT_EQ(SnapshotLayerFormat(info), LayerFormat::kOverlay);
    EXPECT_FALSE(info.labels.contains(std::string(kLabelLayerFormat)));
    EXPECT_FALSE(fs::exists(LayerDir(chain_id) / "layerchain.json"));
  }
  const fs::path upper_dir = LayerDir(pulled.chain_ids[1]);
  struct stat st {};
  ASSERT_EQ(::lstat((upper_dir / "etc/gone").c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode)) << "an overlay whiteout";
  EXPECT_FALSE(fs::exists(upper_dir / "etc/.wh.gone"));
  // Its layer exports as the overlay diff.
  ASSERT_OK_AND_ASSIGN(std::string exported, Export(pulled.chain_ids[1]));
  ASSERT_OK_AND_ASSIGN(std::vector<ParsedEntry> entries, ParseTar(exported));
  EXPECT_TRUE(std::ranges::any_of(entries, [](const ParsedEntry& e) { return e.name == "etc/.wh.gone"; }));
}

TEST_F(WindowsUnpackTest, InvalidBaseLayersFailNamingTheEntryAndLeaveNoSnapshot) {
  struct Case {
    std::string repository;
    WindowsLayerBuilder layer;
    std::vector<std::string> reasons;
  };
  WindowsLayerBuilder with_whiteout = test_support::WindowsBaseLayer();
  with_whiteout.Whiteout("Files/Windows/System32/kernel32.dll");
  WindowsLayerBuilder outside = test_support::WindowsBaseLayer();
  outside.File("Program Files/app.exe", "MZ");
  const std::vector<Case> cases{
      {"windows/tombstone", with_whiteout, {"Files/Windows/System32/.wh.kernel32.dll", "base layer cannot have tombstones"}},
      {"windows/outside", outside, {"Program Files/app.exe"}},
      // A delta pushed as an image of its own has no parent: it is applied as a base layer.
      {"windows/orphan-delta", test_support::WindowsDeltaLayer(), {"windows layer entry"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.repository);
    ASSERT_OK_AND_ASSIGN(Layer layer, WindowsLayer(c.layer));
    ASSERT_OK_AND_ASSIGN(std::string name, Push(c.repository, {layer}));
    auto pulled = PullInto(strata_, name);
    ASSERT_FALSE(pulled) << "pull of an invalid base layer succeeded";
    for (const std::string& reason : c.reasons) {
      EXPECT_NE(pulled.error().message().find(reason), std::string::npos)
          << "expected \"" << reason << "\" in: " << pulled.error().ToString();
    }
    EXPECT_NE(pulled.error().message().find(layer.digest.ToString()), std::string::npos) << pulled.error().ToString();
    EXPECT_FALSE(strata_.store->images().Get(name));
    ExpectNoSnapshots("after the refused pull");
    std::vector<std::string> dirs;
    for (const auto& entry : fs::directory_iterator(strata_.store->root() / "snapshots")) {
      dirs.push_back(entry.path().string());
    }
    EXPECT_TRUE(dirs.empty()) << "snapshot dirs left: " << fmt::format("{}", fmt::join(dirs, ", "));
  }
}

TEST_F(WindowsUnpackTest, DeltaOverAMissingOrForeignParentFailsClearly) {
  ASSERT_OK_AND_ASSIGN(Layer base, WindowsLayer(test_support::WindowsBaseLayer()));
  ASSERT_OK_AND_ASSIGN(Layer delta, WindowsLayer(test_support::WindowsDeltaLayer()));
  ASSERT_OK_AND_ASSIGN(std::string base_only, Push("windows/base", {base}));
  ASSERT_OK_AND_ASSIGN(std::string stacked, Push("windows/stacked", {base, delta}));
  ASSERT_OK_AND_ASSIGN(PullResult pulled, PullInto(strata_, base_only));
  ASSERT_EQ(pulled.layers_unpacked, 1);
  const fs::path base_dir = LayerDir(pulled.chain_ids[0]);

  // The base snapshot's layer dir lost its files: the delta is not applied over nothing.
  fs::remove_all(base_dir);
  ASSERT_TRUE(fs::create_directory(base_dir));
  auto refused = PullInto(strata_, stacked);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::kFailedPrecondition) << refused.error().ToString();
  EXPECT_NE(refused.error().message().find("missing or incomplete"), std::string::npos) << refused.error().ToString();
  EXPECT_NE(refused.error().message().find(base_dir.string()), std::string::npos) << refused.error().ToString();
  EXPECT_EQ(SnapshotNames(strata_).size(), 1u) << "nothing but the base snapshot";
  ASSERT_OK(strata_.snapshots->Remove(pulled.chain_ids[0].ToString()));
  ASSERT_OK(strata_.snapshots->Cleanup());

  // The same base layer unpacked for a Linux image is in overlay form: not a Windows parent.
  ASSERT_OK_AND_ASSIGN(std::string as_linux, Push("linux/same-layer", {base}, "linux"));
  ASSERT_OK(PullInto(strata_, as_linux));
  auto foreign = PullInto(strata_, stacked);
  ASSERT_FALSE(foreign);
  EXPECT_EQ(foreign.error().code(), ErrorCode::kFailedPrecondition) << foreign.error().ToString();
  EXPECT_NE(foreign.error().message().find("overlay form"), std::string::npos) << foreign.error().ToString();
  EXPECT_EQ(SnapshotNames(strata_).size(), 1u);
}

// strata ls/cat: the merged Files/ trees, case-insensitive, delta whiteouts applied,
// Windows metadata as xattrs.
TEST_F(WindowsUnpackTest, ViewShowsTheMergedFilesTreeCaseInsensitively) {
  ASSERT_OK_AND_ASSIGN(Layer base, WindowsLayer(test_support::WindowsBaseLayer()));
  ASSERT_OK_AND_ASSIGN(Layer delta, WindowsLayer(test_support::WindowsDeltaLayer()));
  ASSERT_OK_AND_ASSIGN(std::string name, Push("windows/servercore", {base, delta}));
  ASSERT_OK(PullInto(strata_, name));

  ASSERT_OK_AND_ASSIGN(auto view, ImageView::Open(*strata_.store, *strata_.snapshots, name, {}));
  EXPECT_EQ(view->layers(), 2u);
  ASSERT_OK_AND_ASSIGN(auto root, view->List(""));
  std::vector<std::string> names;
  for (const auto& entry : root) names.push_back(entry.name);
  EXPECT_NE(std::find(names.begin(), names.end(), "Windows"), names.end()) << fmt::format("{}", fmt::join(names, " "));
  for (const char* hidden : {"Files", "Hives", "UtilityVM", "layerchain.json", ".strata"}) {
    EXPECT_EQ(std::find(names.begin(), names.end(), hidden), names.end()) << hidden << " is not part of C:\\";
  }
  // Any case finds it; the stored spelling is what is listed.
  ASSERT_OK_AND_ASSIGN(auto config, view->Stat("WINDOWS/system32/Config/system", true));
  EXPECT_TRUE(S_ISREG(config.st.st_mode));
  EXPECT_EQ(config.name, "system");  // the name as asked; List gives the stored one
  ASSERT_OK_AND_ASSIGN(auto config_dir, view->List("windows/SYSTEM32/config"));
  std::vector<std::string> hives;
  for (const auto& entry : config_dir) hives.push_back(entry.name);
  EXPECT_NE(std::find(hives.begin(), hives.end(), "SYSTEM"), hives.end()) << fmt::format("{}", fmt::join(hives, " "));
  // The delta's tombstones hide the base's file and dir.
  const std::string deleted_file(test_support::kBaseDeletedFile.substr(std::string_view("Files/").size()));
  const std::string deleted_dir(test_support::kBaseDeletedDir.substr(std::string_view("Files/").size()));
  EXPECT_EQ(view->Stat(deleted_file, false).error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(view->Stat(deleted_dir, false).error().code(), ErrorCode::kNotFound);
  // The delta's hard link to a base file reads the base file's content.
  const std::string link(test_support::kDeltaParentLink.substr(std::string_view("Files/").size()));
  const std::string target(test_support::kDeltaParentLinkTarget.substr(std::string_view("Files/").size()));
  std::string via_link, via_target;
  ASSERT_OK(view->Read(link, [&](std::string_view bytes) { via_link.append(bytes); return Status{}; }));
  ASSERT_OK(view->Read(target, [&](std::string_view bytes) { via_target.append(bytes); return Status{}; }));
  EXPECT_EQ(via_link, via_target);
  EXPECT_FALSE(via_link.empty());
  // Windows attributes come along as xattrs.
  ASSERT_OK_AND_ASSIGN(auto xattrs, view->Xattrs("Windows/System32/config/SYSTEM"));
  EXPECT_TRUE(xattrs.contains("user.windows.fileattr")) << fmt::format("{}", fmt::join(std::views::keys(xattrs), " "));
}

// strata mount: process isolation is fsfilter's read-only Windows view; vm isolation makes
// the container's layer dir (layerchain.json + sandbox.vhd); --rw is refused; commit of a
// container over a Windows chain is refused rather than exported as an overlay diff.
TEST_F(WindowsUnpackTest, MountsTheWindowsViewOrAContainerDirForAVm) {
  const fs::path bin_dir = fs::path(STRATA_BIN_DIR);
  if (!fs::exists(bin_dir / "strata-fsfilter")) GTEST_SKIP() << "strata-fsfilter is not built in " << bin_dir;
  const std::string path = bin_dir.string() + ":" + (std::getenv("PATH") ? std::getenv("PATH") : "/usr/bin:/bin");
  ::setenv("PATH", path.c_str(), 1);  // MountAt finds the FUSE program in PATH

  ASSERT_OK_AND_ASSIGN(Layer base, WindowsLayer(test_support::WindowsBaseLayer()));
  ASSERT_OK_AND_ASSIGN(Layer delta, WindowsLayer(test_support::WindowsDeltaLayer()));
  ASSERT_OK_AND_ASSIGN(std::string name, Push("windows/nanoserver", {base, delta}));
  ASSERT_OK_AND_ASSIGN(PullResult pulled, PullInto(strata_, name));
  const std::vector<std::string> before = SnapshotNames(strata_);

  MountGuard unused;
  auto writable = MountAt(strata_, unused, name, "rw", /*writable=*/true);
  ASSERT_FALSE(writable) << "a Windows image was mounted read-write";
  EXPECT_EQ(writable.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(writable.error().message().find("read-only"), std::string::npos) << writable.error().ToString();
  EXPECT_EQ(SnapshotNames(strata_), before) << "a refused mount prepares nothing";

  {
    MountGuard guard;
    ASSERT_OK_AND_ASSIGN(MountedImage mounted, MountAt(strata_, guard, name, "view"));
    ASSERT_EQ(mounted.mounts.size(), 1u);
    EXPECT_EQ(mounted.mounts[0].type, "fuse3.strata-fsfilter");
    const fs::path mnt = root_->path() / "view";
    EXPECT_TRUE(fs::is_regular_file(mnt / "windows/system32/CONFIG/Software"));
    EXPECT_FALSE(fs::exists(mnt / "Files"));
    EXPECT_FALSE(fs::exists(mnt / test_support::kBaseDeletedFile.substr(std::string_view("Files/").size())));
    char value[64] = {};
    const std::string system = (mnt / "Windows/System32/config/SYSTEM").string();
    EXPECT_GT(::getxattr(system.c_str(), "user.windows.fileattr", value, sizeof value), 0) << std::strerror(errno);
    // Read-only.
    EXPECT_FALSE(std::ofstream(mnt / "new.txt").good());
  }

  {
    MountGuard guard;
    const fs::path target = root_->path() / "vm";
    fs::create_directories(target);
    MountOptions options{.isolation = Isolation::kVm, .scratch_bytes = uint64_t{1} << 30};
    ASSERT_OK_AND_ASSIGN(MountedImage mounted, MountImage(*strata_.store, *strata_.snapshots, name, target, options));
    guard.snapshots = strata_.snapshots.get();
    guard.dir = target;
    ASSERT_EQ(mounted.mounts.size(), 1u);
    EXPECT_EQ(mounted.mounts[0].type, "windows-layer");
    // The container dir: layerchain.json names the image's layer dirs, nearest first.
    const nlohmann::json chain = nlohmann::json::parse(Slurp(target / "layerchain.json"), nullptr, false);
    ASSERT_TRUE(chain.is_array()) << chain.dump();
    EXPECT_EQ(chain.get<std::vector<std::string>>(),
              (std::vector<std::string>{LayerDir(pulled.chain_ids[1]).string(), LayerDir(pulled.chain_ids[0]).string()}));
    EXPECT_EQ(mounted.mounts[0].options,
              (std::vector<std::string>{"rw", "parentLayerPaths=" + chain.dump()}));
    ASSERT_OK_AND_ASSIGN(snapshotter::VhdFooter footer, snapshotter::ReadVhdFooter(target / "sandbox.vhd"));
    EXPECT_EQ(footer.data_size, uint64_t{1} << 30);
    // The dir is the container snapshot's: writable, and gone with umount.
    EXPECT_TRUE(std::ofstream(target / "scratch-note").good());
  }
  EXPECT_EQ(SnapshotNames(strata_), before) << "umount removes the container snapshots";

  auto bad_scratch = MountImage(*strata_.store, *strata_.snapshots, name, root_->path(),
                                {.isolation = Isolation::kVm, .scratch_bytes = 1000});
  ASSERT_FALSE(bad_scratch);
  EXPECT_NE(bad_scratch.error().message().find("multiple of 512"), std::string::npos) << bad_scratch.error().ToString();
  EXPECT_EQ(SnapshotNames(strata_), before) << "a failed vm mount leaves no container snapshot";

  // A container snapshot over the Windows chain (as a containerd client could make one):
  // its changes are not exported as an overlay diff.
  const std::string key = "container-over-windows";
  ASSERT_OK(strata_.snapshots->Prepare(key, pulled.chain_ids.back().ToString(),
                                       {{std::string(kLabelMountManifest), pulled.manifest.digest.ToString()}}));
  auto committed = CommitContainer(*strata_.store, *strata_.snapshots, key, "committed:1");
  ASSERT_FALSE(committed);
  EXPECT_EQ(committed.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(committed.error().message().find("Windows image"), std::string::npos) << committed.error().ToString();
  EXPECT_FALSE(strata_.store->images().Get("committed:1"));
  ASSERT_OK(strata_.snapshots->Remove(key));
}

}  // namespace
}  // namespace strata::images
