// Malicious layers and manifests beyond tests/images/malicious_layer_test.cc, pulled by the
// real `strata` binary (so its peak RSS is measured) from a real docker-registry — or, for
// what docker-registry refuses to store or cannot serve (invalid digests, negative sizes,
// index entries that are not manifests, bytes that do not match their digest), from a
// hand-written registry front. Each either ends with a clear error (checked by text) or is
// handled (names with newlines); either way the pull's peak RSS stays under a bound,
// nothing is written outside the store (a sentinel next to it is compared), fsck is clean
// and a refused pull leaves no image and no snapshot.
#include <algorithm>
#include <cctype>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "base/file.h"
#include "tests/hostile/hostile_support.h"
#include "tests/support/assertions.h"
#include "tests/support/compression.h"
#include "tests/support/image_builder.h"
#include "tests/support/registry_fixture.h"
#include "tests/support/root.h"

namespace strata::hostile {
namespace {

namespace fs = std::filesystem;
using archive::TarEntry;
using archive::TarEntryType;
using test_support::Blob;
using test_support::Layer;
using test_support::LayerBuilder;
namespace media_types = test_support::media_types;
using ordered_json = nlohmann::ordered_json;

// What a pull of hostile input may use at most; a small pull peaks near 35 MiB here.
constexpr int64_t kRssBoundKib = 256 << 10;

// A gzip layer of exactly these tar bytes (crafted headers).
Result<Layer> RawLayer(std::string tar) {
  STRATA_ASSIGN_OR_RETURN(std::string blob, test_support::Compress(tar, test_support::Compression::kGzip));
  const Digest digest = Digest::Of(blob), diff_id = Digest::Of(tar);
  return Layer{.compression = test_support::Compression::kGzip, .tar = std::move(tar), .blob = std::move(blob),
               .digest = digest, .diff_id = diff_id};
}

// One 512-byte ustar header, checksum filled in, followed by `data` padded to 512.
std::string RawEntry(std::string_view name, char typeflag, std::string_view data, uint64_t size_field) {
  std::string block(512, '\0');
  block.replace(0, std::min<size_t>(name.size(), 100), name.substr(0, 100));
  auto octal = [&](size_t offset, size_t width, uint64_t value) {
    const std::string text = fmt::format("{:0{}o}", value, width - 1);
    block.replace(offset, width - 1, text.substr(text.size() - (width - 1)));
  };
  octal(100, 8, 0644);
  octal(108, 8, 0);
  octal(116, 8, 0);
  octal(124, 12, size_field);
  octal(136, 12, 1'700'000'000);
  block[156] = typeflag;
  block.replace(257, 6, std::string("ustar\0", 6));
  block.replace(263, 2, "00");
  block.replace(148, 8, "        ");
  unsigned sum = 0;
  for (unsigned char c : block) sum += c;
  block.replace(148, 8, fmt::format("{:06o}", sum) + std::string("\0 ", 2));
  std::string out = block + std::string(data);
  out.resize((out.size() + 511) / 512 * 512, '\0');
  return out;
}

// A tar: a PAX header with `records` (its size field says `pax_size`, default their
// length), a file "victim", then the end blocks.
std::string TarWithPax(std::string_view records, std::optional<uint64_t> pax_size = std::nullopt) {
  return RawEntry("PaxHeaders/victim", 'x', records, pax_size.value_or(records.size())) +
         RawEntry("victim", '0', "data\n", 5) + std::string(1024, '\0');
}

// An OCI config with these diffIDs.
Blob ConfigFor(const std::vector<Digest>& diff_ids) {
  ordered_json config = {{"architecture", test_support::HostArchitecture()},
                         {"os", "linux"},
                         {"rootfs", {{"type", "layers"}, {"diff_ids", ordered_json::array()}}}};
  for (const Digest& diff_id : diff_ids) config["rootfs"]["diff_ids"].push_back(diff_id.ToString());
  return Blob::Of(std::string(media_types::kOciConfig), config.dump());
}

Blob ManifestOf(const ordered_json& config, const std::vector<ordered_json>& layers) {
  ordered_json manifest = {{"schemaVersion", 2}, {"mediaType", media_types::kOciManifest}, {"config", config},
                           {"layers", layers}};
  return Blob::Of(std::string(media_types::kOciManifest), manifest.dump());
}

ordered_json LayerDescriptor(const Layer& layer) {
  return {{"mediaType", media_types::kOciLayerGzip}, {"digest", layer.digest.ToString()}, {"size", layer.blob.size()}};
}

class MaliciousInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    STRATA_REQUIRE_ROOT();
    ASSERT_OK_AND_ASSIGN(auto temp, test_support::TempRoot::Create("strata-hostile"));
    temp_.emplace(std::move(temp));
    fs::create_directories(home());
    ASSERT_OK_AND_ASSIGN(auto sentinel, Sentinel::Create(temp_->path() / "sentinel"));
    sentinel_.emplace(std::move(sentinel));
    ASSERT_OK_AND_ASSIGN(registry_, test_support::RegistryFixture::Start());
  }

  fs::path home() const { return temp_->path() / "home"; }

  HostileRegistry& hostile() {
    if (!hostile_) {
      auto started = HostileRegistry::Start();
      EXPECT_TRUE(started) << started.error().ToString();
      hostile_ = std::move(*started);
    }
    return *hostile_;
  }

  // Pushes an image of `layers` to the real registry; returns its reference.
  std::string PushLayers(const std::string& repository, const std::vector<Layer>& layers) {
    test_support::ImageBuilder builder;
    for (const Layer& layer : layers) builder.AddLayer(layer);
    auto pushed = builder.PushTo(*registry_, repository, "1");
    EXPECT_TRUE(pushed) << pushed.error().ToString();
    return registry_->host() + "/" + repository + ":1";
  }

  // Pushes blobs and a manifest (by tag "1") to the real registry, as given.
  std::string PushRaw(const std::string& repository, const std::vector<Blob>& blobs, const Blob& manifest) {
    auto client = registry_->Client();
    for (const Blob& blob : blobs) {
      Status pushed = test_support::PushBlob(client, registry_->url(), repository, blob);
      EXPECT_TRUE(pushed) << pushed.error().ToString();
    }
    Status pushed = test_support::PushManifest(client, registry_->url(), repository, "1", manifest);
    EXPECT_TRUE(pushed) << pushed.error().ToString();
    return registry_->host() + "/" + repository + ":1";
  }

  MeasuredRun Pull(const std::string& reference, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"pull", "-q", reference};
    args.insert(args.end(), extra.begin(), extra.end());
    MeasuredRun run = RunStrataMeasured(home(), args);
    peak_rss_kib_ = std::max(peak_rss_kib_, run.max_rss_kib);
    EXPECT_GT(run.max_rss_kib, 0) << reference << ": peak RSS not measured (is GNU time installed?)";
    EXPECT_LT(run.max_rss_kib, kRssBoundKib) << reference << " peaked at " << run.max_rss_kib << " KiB";
    return run;
  }

  // The pull fails with every one of `reasons` in its output and leaves nothing behind.
  void ExpectRefused(const std::string& what, const std::string& reference, const std::vector<std::string>& reasons,
                     std::vector<std::string> extra = {}) {
    SCOPED_TRACE(what);
    const std::string before = StoreState();
    MeasuredRun run = Pull(reference, std::move(extra));
    ASSERT_NE(run.code, 0) << "the pull of " << what << " succeeded: " << run.output;
    for (const std::string& reason : reasons) {
      EXPECT_NE(run.output.find(reason), std::string::npos) << "expected \"" << reason << "\" in: " << run.output;
    }
    std::string message = run.output.substr(0, 600);
    while (!message.empty() && message.back() == '\n') message.pop_back();
    std::cerr << "[ info ] " << what << " (" << run.elapsed.count() << " ms, " << run.max_rss_kib / 1024
              << " MiB peak RSS): " << message << "\n";
    EXPECT_EQ(StoreState(), before) << "the refused pull left images, snapshots or snapshot directories";
    ExpectStoreConsistent();
  }

  // Images, snapshots and snapshot directories, as text to compare.
  std::string StoreState() {
    MeasuredRun images = RunStrataMeasured(home(), {"--json", "images"});
    EXPECT_EQ(images.code, 0) << images.output;
    MeasuredRun snapshots = RunStrataMeasured(home(), {"--json", "snapshots", "ls"});
    EXPECT_EQ(snapshots.code, 0) << snapshots.output;
    std::string state = images.output + snapshots.output;
    if (fs::exists(home() / "store" / "snapshots")) {
      std::vector<std::string> dirs;
      for (const auto& entry : fs::directory_iterator(home() / "store" / "snapshots")) {
        dirs.push_back(entry.path().filename().string());
      }
      std::ranges::sort(dirs);
      state += fmt::format("dirs: {}\n", fmt::join(dirs, " "));
    }
    return state;
  }

  // No image or snapshot stays, no snapshot directory, fsck clean, sentinel untouched.
  void ExpectNothingLeft() {
    MeasuredRun images = RunStrataMeasured(home(), {"--json", "images"});
    EXPECT_EQ(images.code, 0) << images.output;
    EXPECT_EQ(images.output.find("\"name\""), std::string::npos) << "images left: " << images.output;
    ExpectStoreConsistent();
    MeasuredRun snapshots = RunStrataMeasured(home(), {"--json", "snapshots", "ls"});
    EXPECT_EQ(snapshots.code, 0) << snapshots.output;
    EXPECT_EQ(snapshots.output.find("\"key\""), std::string::npos) << "snapshots left: " << snapshots.output;
    if (fs::exists(home() / "store" / "snapshots")) {
      EXPECT_TRUE(fs::is_empty(home() / "store" / "snapshots")) << "snapshot directories left";
    }
  }

  void ExpectStoreConsistent() {
    MeasuredRun fsck = RunStrataMeasured(home(), {"fsck"});
    EXPECT_EQ(fsck.code, 0) << fsck.output;
    EXPECT_EQ(sentinel_->Changes(), "") << "the sentinel next to the store changed";
    std::vector<std::string> top;
    for (const auto& entry : fs::directory_iterator(temp_->path())) top.push_back(entry.path().filename().string());
    std::ranges::sort(top);
    EXPECT_EQ(top, (std::vector<std::string>{"home", "sentinel"}));
  }

  void TearDown() override {
    if (peak_rss_kib_ > 0) std::cerr << "[ info ] highest peak RSS of a pull: " << peak_rss_kib_ / 1024 << " MiB\n";
  }

  std::optional<test_support::TempRoot> temp_;
  std::optional<Sentinel> sentinel_;
  std::unique_ptr<test_support::RegistryFixture> registry_;
  std::unique_ptr<HostileRegistry> hostile_;
  int64_t peak_rss_kib_ = 0;
};

TEST_F(MaliciousInputTest, SymlinkLoopsAreDataAndNeverFollowed) {
  ASSERT_OK_AND_ASSIGN(auto loops, LayerBuilder()
                                       .Symlink("self", "self")
                                       .Symlink("a", "b")
                                       .Symlink("b", "a")
                                       .Symlink("up", "../../../../sentinel")
                                       .File("ok", "ok\n")
                                       .Build());
  const std::string reference = PushLayers("loops/ok", {loops});
  MeasuredRun pull = Pull(reference);
  ASSERT_EQ(pull.code, 0) << pull.output;
  // Reading through a loop ends with the kernel's ELOOP or the view's own refusal.
  for (const std::string path : {"self", "a", "b/x"}) {
    MeasuredRun cat = RunStrataMeasured(home(), {"cat", reference, path});
    EXPECT_NE(cat.code, 0) << path << ": " << cat.output;
    EXPECT_TRUE(cat.output.find("symbolic links") != std::string::npos ||
                cat.output.find("symlink") != std::string::npos)
        << path << ": " << cat.output;
    std::cerr << "[ info ] cat " << path << ": " << cat.output;
  }
  ExpectStoreConsistent();
  // A later layer writing through the loop is refused.
  ASSERT_OK_AND_ASSIGN(auto through, LayerBuilder().File("a/pwned", "x\n").Build());
  const std::string refused = PushLayers("loops/through", {loops, through});
  MeasuredRun second = Pull(refused);
  EXPECT_NE(second.code, 0) << second.output;
  EXPECT_NE(second.output.find("symlink"), std::string::npos) << second.output;
  ExpectStoreConsistent();
}

TEST_F(MaliciousInputTest, HundredThousandLevelsOfNestingAreRefused) {
  auto nested = [](int levels) {
    std::string path;
    for (int i = 0; i < levels; ++i) path += "d/";
    return path + "f";
  };
  // 100,000 levels: a 200 KB name, longer than any path the kernel takes.
  ASSERT_OK_AND_ASSIGN(auto deep, LayerBuilder().File("ok", "ok\n").File(nested(100'000), "deep\n").Build());
  ExpectRefused("100k levels", PushLayers("nesting/100k", {deep}), {"layer entry", "(200001 bytes)", "PATH_MAX"});
  // Within PATH_MAX but deeper than walks of the tree can afford.
  ASSERT_OK_AND_ASSIGN(auto too_deep, LayerBuilder().File(nested(600), "deep\n").Build());
  ExpectRefused("600 levels", PushLayers("nesting/600", {too_deep}), {"601 levels deep", "512"});
  // The deepest allowed unpacks, and goes again (rmi + gc) within a 1024-fd limit.
  ASSERT_OK_AND_ASSIGN(auto ok, LayerBuilder().File(nested(511), "deep\n").Build());
  const std::string reference = PushLayers("nesting/511", {ok});
  MeasuredRun pull = Pull(reference);
  ASSERT_EQ(pull.code, 0) << pull.output.substr(0, 2000);
  std::cerr << "[ info ] 512 components: pull " << pull.elapsed.count() << " ms, peak RSS " << pull.max_rss_kib / 1024
            << " MiB\n";
  MeasuredRun rmi = RunStrataMeasured(home(), {"rmi", reference});
  EXPECT_EQ(rmi.code, 0) << rmi.output;
  std::vector<std::string> gc = {"prlimit", "--nofile=1024"};
  for (const std::string& arg : StrataArgv(home(), {"gc"})) gc.push_back(arg);
  MeasuredRun collected = RunMeasured(gc);
  EXPECT_EQ(collected.code, 0) << collected.output;
  ExpectNothingLeft();
}

TEST_F(MaliciousInputTest, ManyEmptyFiles) {
  // The default run keeps it quick; STRATA_HOSTILE_FILES=1000000 runs the million.
  int64_t count = 20'000;
  if (const char* env = std::getenv("STRATA_HOSTILE_FILES")) count = std::max<int64_t>(1, std::atoll(env));
  ASSERT_OK_AND_ASSIGN(Layer layer, StreamedLayer([&](archive::TarWriter& tar) -> Status {
                         for (int64_t dir = 0; dir * 1000 < count; ++dir) {
                           STRATA_RETURN_IF_ERROR(tar.WriteHeader(
                               TarEntry{.name = fmt::format("d{:04}/", dir), .type = TarEntryType::kDirectory,
                                        .mode = 0755, .mtime = {1'700'000'000, 0}}));
                           for (int64_t i = dir * 1000; i < std::min(count, (dir + 1) * 1000); ++i) {
                             STRATA_RETURN_IF_ERROR(tar.WriteHeader(
                                 TarEntry{.name = fmt::format("d{:04}/f{:07}", dir, i), .mtime = {1'700'000'000, 0}}));
                           }
                         }
                         return {};
                       }));
  const std::string reference = PushLayers("many/files", {layer});
  MeasuredRun pull = Pull(reference);
  ASSERT_EQ(pull.code, 0) << pull.output;
  MeasuredRun ls = RunStrataMeasured(home(), {"ls", reference, fmt::format("d{:04}", (count - 1) / 1000)});
  EXPECT_EQ(ls.code, 0) << ls.output.substr(0, 2000);
  EXPECT_NE(ls.output.find(fmt::format("f{:07}", count - 1)), std::string::npos) << ls.output.substr(0, 2000);
  std::cerr << "[ info ] " << count << " empty files (blob " << layer.blob.size() << " bytes): pull " << pull.elapsed.count()
            << " ms, peak RSS " << pull.max_rss_kib / 1024 << " MiB\n";
  ExpectStoreConsistent();
}

TEST_F(MaliciousInputTest, NamesWithNewlinesAndInvalidUtf8AreKeptNamesWithNulAreRefused) {
  const std::vector<std::string> odd = {"line\nbreak", std::string("bad\xff\xfe" "utf8"), "tab\there", "\r"};
  LayerBuilder builder;
  for (const std::string& name : odd) builder.File(name, "content of " + name);
  ASSERT_OK_AND_ASSIGN(auto layer, builder.Build());
  const std::string reference = PushLayers("names/odd", {layer});
  MeasuredRun pull = Pull(reference);
  ASSERT_EQ(pull.code, 0) << pull.output;
  for (const std::string& name : odd) {
    MeasuredRun cat = RunStrataMeasured(home(), {"--log-level", "off", "cat", reference, name});
    EXPECT_EQ(cat.code, 0) << cat.output;
    EXPECT_EQ(cat.output, "content of " + name);
  }
  for (const std::vector<std::string>& args : {std::vector<std::string>{"ls", reference},
                                               std::vector<std::string>{"--json", "ls", reference}}) {
    MeasuredRun ls = RunStrataMeasured(home(), args);
    EXPECT_EQ(ls.code, 0) << fmt::format("{}", fmt::join(args, " ")) << ": " << ls.output;
  }
  ExpectStoreConsistent();

  ASSERT_OK_AND_ASSIGN(auto nul, LayerBuilder().Entry(TarEntry{.name = std::string("nul\0name", 8)}, "x").Build());
  ExpectRefused("a NUL in a name", PushLayers("names/nul", {nul}), {"NUL byte in name"});
}

TEST_F(MaliciousInputTest, PaxRecordsWithAbsurdLengthsAreRefused) {
  struct Case {
    std::string what;
    std::string tar;
    std::vector<std::string> reasons;
  };
  const std::vector<Case> cases = {
      {"a record length of 10^23", TarWithPax("99999999999999999999999 path=x\n"), {"PAX"}},
      {"a record length of 0", TarWithPax("0 path=x\n"), {"PAX"}},
      {"a record length shorter than its prefix", TarWithPax("3 path=x\n"), {"PAX"}},
      {"a record length past the header", TarWithPax("500 path=x\n"), {"PAX"}},
      {"a record length that is not a number", TarWithPax("1x path=x\n"), {"PAX"}},
      {"a PAX header of 4 GiB", TarWithPax("", uint64_t{4} << 30), {"over the limit"}},
  };
  int n = 0;
  for (const Case& c : cases) {
    ASSERT_OK_AND_ASSIGN(auto layer, RawLayer(c.tar));
    ExpectRefused(c.what, PushLayers(fmt::format("pax/case{}", n++), {layer}), c.reasons);
  }
}

TEST_F(MaliciousInputTest, TenThousandLayersAreRefusedByALimit) {
  ASSERT_OK_AND_ASSIGN(auto layer, LayerBuilder().File("f", "f\n").Build());
  const Blob blob = Blob::Of(std::string(media_types::kOciLayerGzip), layer.blob);
  const Blob config = ConfigFor(std::vector<Digest>(10'000, layer.diff_id));
  const Blob manifest = ManifestOf(config.Descriptor(), std::vector<ordered_json>(10'000, blob.Descriptor()));
  ExpectRefused("10k layers", PushRaw("layers/10k", {blob, config}, manifest), {"10000 layers", "limit"});
}

TEST_F(MaliciousInputTest, NegativeSizesAreRefused) {
  ASSERT_OK_AND_ASSIGN(auto layer, LayerBuilder().File("f", "f\n").Build());
  const Blob config = ConfigFor({layer.diff_id});
  ordered_json negative_layer = LayerDescriptor(layer);
  negative_layer["size"] = -1;
  ordered_json negative_config = config.Descriptor();
  negative_config["size"] = -5;
  HostileRegistry& front = hostile();
  int n = 0;
  for (const Blob& manifest : {ManifestOf(config.Descriptor(), {negative_layer}), ManifestOf(negative_config, {LayerDescriptor(layer)})}) {
    const std::string repository = fmt::format("negative/case{}", n++);
    front.Put(fmt::format("/v2/{}/manifests/1", repository), {std::string(media_types::kOciManifest), manifest.data,
                                                               manifest.digest.ToString()});
    front.Put(fmt::format("/v2/{}/manifests/{}", repository, manifest.digest.ToString()),
              {std::string(media_types::kOciManifest), manifest.data, manifest.digest.ToString()});
    front.Put(fmt::format("/v2/{}/blobs/{}", repository, config.digest.ToString()), {"application/octet-stream", config.data, ""});
    front.Put(fmt::format("/v2/{}/blobs/{}", repository, layer.digest.ToString()), {"application/octet-stream", layer.blob, ""});
    ExpectRefused(repository, front.host() + "/" + repository + ":1", {"negative size"});
  }
}

TEST_F(MaliciousInputTest, DigestAlgorithmConfusionIsRefused) {
  ASSERT_OK_AND_ASSIGN(auto layer, LayerBuilder().File("f", "f\n").Build());
  const Blob config = ConfigFor({layer.diff_id});
  const std::string hex = layer.digest.hex();
  std::string upper = hex;
  std::ranges::transform(upper, upper.begin(), [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  struct Case {
    std::string what;
    std::string digest;
    std::string reason;
  };
  const std::vector<Case> cases = {
      {"sha512 naming a sha256 hex", "sha512:" + hex, "sha512"},
      {"an unknown algorithm", "md5:" + hex.substr(0, 32), "md5"},
      {"uppercase hex", "sha256:" + upper, "sha256:" + upper},
      {"a short hex", "sha256:" + hex.substr(0, 63), "sha256:" + hex.substr(0, 63)},
      {"no algorithm", hex, hex},
  };
  HostileRegistry& front = hostile();
  int n = 0;
  for (const Case& c : cases) {
    ordered_json descriptor = LayerDescriptor(layer);
    descriptor["digest"] = c.digest;
    const Blob manifest = ManifestOf(config.Descriptor(), {descriptor});
    const std::string repository = fmt::format("digest/case{}", n++);
    front.Put(fmt::format("/v2/{}/manifests/1", repository), {std::string(media_types::kOciManifest), manifest.data, ""});
    front.Put(fmt::format("/v2/{}/blobs/{}", repository, config.digest.ToString()), {"application/octet-stream", config.data, ""});
    front.Put(fmt::format("/v2/{}/blobs/{}", repository, c.digest), {"application/octet-stream", layer.blob, ""});
    ExpectRefused(c.what, front.host() + "/" + repository + ":1", {c.reason});
  }
  // The registry's Docker-Content-Digest names other bytes than it sends for a tag.
  const Blob manifest = ManifestOf(config.Descriptor(), {LayerDescriptor(layer)});
  front.Put("/v2/digest/header/manifests/1", {std::string(media_types::kOciManifest), manifest.data, config.digest.ToString()});
  front.Put("/v2/digest/header/manifests/" + config.digest.ToString(),
            {std::string(media_types::kOciManifest), manifest.data, config.digest.ToString()});
  ExpectRefused("a Docker-Content-Digest of other bytes", front.host() + "/digest/header:1",
                {"does not match", config.digest.ToString()});
}

TEST_F(MaliciousInputTest, MediaTypeConfusionIsRefused) {
  ASSERT_OK_AND_ASSIGN(auto layer, LayerBuilder().File("f", "f\n").Build());
  const Blob layer_blob = Blob::Of(std::string(media_types::kOciLayerGzip), layer.blob);
  const Blob config = ConfigFor({layer.diff_id});
  const Blob good = ManifestOf(config.Descriptor(), {layer_blob.Descriptor()});
  // A manifest served as a blob: as the config, and as a layer (the registry stores any
  // bytes as a blob, and checks only that descriptors name existing blobs).
  const Blob manifest_as_blob = Blob::Of("application/octet-stream", good.data);
  ordered_json as_config = manifest_as_blob.Descriptor();
  as_config["mediaType"] = media_types::kOciConfig;
  ExpectRefused("a manifest as the config", PushRaw("confusion/config", {manifest_as_blob, layer_blob},
                                                    ManifestOf(as_config, {layer_blob.Descriptor()})),
                {manifest_as_blob.digest.ToString()});
  ordered_json as_layer = manifest_as_blob.Descriptor();
  as_layer["mediaType"] = media_types::kOciLayerGzip;
  ExpectRefused("a manifest as a layer",
                PushRaw("confusion/layer", {manifest_as_blob, ConfigFor({Digest::Of(good.data)})},
                        ManifestOf(ConfigFor({Digest::Of(good.data)}).Descriptor(), {as_layer})),
                {manifest_as_blob.digest.ToString()});

  HostileRegistry& front = hostile();
  // A tag whose Content-Type says index while the body is a manifest.
  front.Put("/v2/confusion/header/manifests/1", {std::string(media_types::kOciIndex), good.data, ""});
  ExpectRefused("Content-Type index, body manifest", front.host() + "/confusion/header:1", {"differs from Content-Type"});
  // A tag that resolves to a config blob.
  front.Put("/v2/confusion/tag/manifests/1", {std::string(media_types::kOciConfig), config.data, ""});
  ExpectRefused("a config served as a manifest", front.host() + "/confusion/tag:1", {"unsupported media type"});
  // An index entry that says manifest but names a layer blob.
  ordered_json index = {{"schemaVersion", 2},
                        {"mediaType", media_types::kOciIndex},
                        {"manifests", {{{"mediaType", media_types::kOciManifest},
                                        {"digest", layer.digest.ToString()},
                                        {"size", layer.blob.size()},
                                        {"platform", {{"os", "linux"}, {"architecture", test_support::HostArchitecture()}}}}}}};
  front.Put("/v2/confusion/entry/manifests/1", {std::string(media_types::kOciIndex), index.dump(), ""});
  front.Put("/v2/confusion/entry/manifests/" + layer.digest.ToString(), {std::string(media_types::kOciManifest), layer.blob, ""});
  ExpectRefused("an index entry naming a layer", front.host() + "/confusion/entry:1", {"not a JSON object"});
}

TEST_F(MaliciousInputTest, AHugeManifestIsRefusedUnread) {
  // 64 MiB of JSON whitespace before a manifest: the resolver stops at the 4 MiB limit
  // (here at the Content-Length header) instead of holding it.
  ASSERT_OK_AND_ASSIGN(auto layer, LayerBuilder().File("f", "f\n").Build());
  const Blob config = ConfigFor({layer.diff_id});
  const Blob manifest = ManifestOf(config.Descriptor(), {LayerDescriptor(layer)});
  hostile().Put("/v2/huge/manifest/manifests/1",
                {std::string(media_types::kOciManifest), std::string(64 << 20, ' ') + manifest.data, ""});
  ExpectRefused("a 64 MiB manifest", hostile().host() + "/huge/manifest:1", {"more than the 4194304 allowed"});
}

TEST_F(MaliciousInputTest, IndexCyclesAndNestingAreRefused) {
  ASSERT_OK_AND_ASSIGN(auto layer, LayerBuilder().File("f", "f\n").Build());
  test_support::ImageBuilder image;
  image.AddLayer(layer);
  ASSERT_OK_AND_ASSIGN(auto built, image.Build());
  auto client = registry_->Client();
  ASSERT_OK(test_support::PushImage(client, registry_->url(), "cycles/nested", "", built));
  // A cycle cannot be built from content-addressed parts (an index cannot name its own
  // digest); only a registry serving other bytes than a digest names can make one. Here
  // the index names digest D and D serves the index itself.
  ordered_json entry = {{"mediaType", media_types::kOciIndex},
                        {"digest", built.manifest.digest.ToString()},
                        {"size", 1000},
                        {"platform", {{"os", "linux"}, {"architecture", test_support::HostArchitecture()}}}};
  ordered_json cyclic = {{"schemaVersion", 2}, {"mediaType", media_types::kOciIndex}, {"manifests", {entry}}};
  entry["mediaType"] = media_types::kOciManifest;
  ordered_json cyclic_manifest = {{"schemaVersion", 2}, {"mediaType", media_types::kOciIndex}, {"manifests", {entry}}};
  HostileRegistry& front = hostile();
  for (const ordered_json* doc : {&cyclic, &cyclic_manifest}) {
    const std::string repository = doc == &cyclic ? "cycles/index" : "cycles/manifest";
    front.Put("/v2/" + repository + "/manifests/1", {std::string(media_types::kOciIndex), doc->dump(), ""});
    front.Put("/v2/" + repository + "/manifests/" + built.manifest.digest.ToString(),
              {std::string(media_types::kOciIndex), doc->dump(), ""});
    ExpectRefused(repository, front.host() + "/" + repository + ":1",
                  {doc == &cyclic ? "not an image manifest" : "does not match"});
    ExpectRefused(repository + " --all-platforms", front.host() + "/" + repository + ":1",
                  {doc == &cyclic ? "no image manifest" : "does not match"}, {"--all-platforms"});
  }
  // Nesting through the real registry: an index whose only entry is an index.
  ordered_json inner = {{"schemaVersion", 2}, {"mediaType", media_types::kOciIndex},
                        {"manifests", {{{"mediaType", media_types::kOciManifest},
                                        {"digest", built.manifest.digest.ToString()},
                                        {"size", built.manifest.data.size()},
                                        {"platform", {{"os", "linux"}, {"architecture", test_support::HostArchitecture()}}}}}}};
  const Blob inner_blob = Blob::Of(std::string(media_types::kOciIndex), inner.dump());
  ASSERT_OK(test_support::PushManifest(client, registry_->url(), "cycles/nested", inner_blob.digest.ToString(), inner_blob));
  ordered_json outer = {{"schemaVersion", 2}, {"mediaType", media_types::kOciIndex},
                        {"manifests", {{{"mediaType", media_types::kOciIndex},
                                        {"digest", inner_blob.digest.ToString()},
                                        {"size", inner_blob.data.size()},
                                        {"platform", {{"os", "linux"}, {"architecture", test_support::HostArchitecture()}}}}}}};
  ASSERT_OK(test_support::PushManifest(client, registry_->url(), "cycles/nested", "1",
                                       Blob::Of(std::string(media_types::kOciIndex), outer.dump())));
  ExpectRefused("an index in an index", registry_->host() + "/cycles/nested:1", {"not an image manifest"});
}

}  // namespace
}  // namespace strata::hostile
