// Windows images through real docker-registry instances: which manifest of a multi-build
// index a Windows host version gets (in-process and through `strata pull`, with the
// configurable default host version), the error when no entry fits, foreign base layers
// fetched from their urls behind a second loopback server (in either source order), and
// copy/push keeping manifests byte-identical while leaving foreign layers behind unless
// allowed.
#include <chrono>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "base/file.h"
#include "images/pull.h"
#include "images/push.h"
#include "registry/fetcher.h"
#include "registry/pusher.h"
#include "store/store.h"
#include "tests/registry/registry_client_test_base.h"
#include "tests/support/assertions.h"
#include "tests/support/image_builder.h"
#include "tests/support/registry_fixture.h"
#include "tests/support/strata_cli.h"
#include "tests/support/windows_image.h"

namespace strata::images {
namespace {

using namespace std::chrono_literals;
using test_support::CommandRun;
using test_support::ManifestFormat;
using test_support::RegistryFixture;
using test_support::WindowsImageSpec;
using test_support::WindowsOsVersion;
namespace ts = test_support;

// Positions in the standard index (StandardWindowsImageSpecs, then linux/amd64).
constexpr size_t kServer2019 = 0;
constexpr size_t kServer2022 = 1;
constexpr size_t kServer2025 = 2;
constexpr size_t kLinux = 3;

class WindowsImageTest : public registry::RegistryClientTest {
 protected:
  void SetUp() override {
    RegistryClientTest::SetUp();
    auto dir = TempDir::Create("strata-windows-image");
    ASSERT_TRUE(dir) << dir.error().ToString();
    dir_ = std::make_unique<TempDir>(std::move(*dir));
    MakeResolver();
    OpenStore("store");
  }

  // A fresh store (and fetcher) under the test dir; `foreign_urls_first` as the Fetcher option.
  void OpenStore(const std::string& name, bool foreign_urls_first = false) {
    fetcher_.reset();
    store_.reset();
    auto store = store::Store::Open(dir_->path() / name);
    ASSERT_TRUE(store) << store.error().ToString();
    store_ = std::move(*store);
    fetcher_ = std::make_unique<registry::Fetcher>(*resolver_, store_->content(), &store_->leases(),
                                                   registry::FetcherOptions{.foreign_urls_first = foreign_urls_first});
  }

  Result<PullResult> PullFor(const std::string& reference, const std::string& platform) {
    PullOptions options;
    STRATA_ASSIGN_OR_RETURN(options.platform, oci::Platform::Parse(platform));
    return Pull(*resolver_, *fetcher_, *store_, Ref(reference), options);
  }

  // `strata <args>` with its own home under the test dir; `env` entries "K=V" go first.
  CommandRun Strata(const std::vector<std::string>& args, const std::vector<std::string>& env = {},
                    const std::string& home = "home") {
    std::filesystem::create_directories(dir_->path() / home);
    std::vector<std::string> prefix;
    if (!env.empty()) {
      prefix.push_back("env");
      prefix.insert(prefix.end(), env.begin(), env.end());
    }
    return ts::RunStrata(STRATA_BIN, dir_->path() / home, args, prefix);
  }

  // The "manifest" digest of `strata --json pull`'s result line (its last line).
  static std::string PulledManifest(const CommandRun& run) {
    std::istringstream in(run.output);
    std::string line, last;
    while (std::getline(in, line)) {
      if (!line.empty()) last = line;
    }
    auto result = nlohmann::json::parse(last, nullptr, false);
    if (result.is_discarded() || !result.contains("manifest")) return "no result line: " + run.output;
    return result["manifest"].get<std::string>();
  }

  static std::string ServedManifest(RegistryFixture& registry, const std::string& repository,
                                    const std::string& reference) {
    ts::TestHttpClient http;
    auto response = ts::FetchManifest(http, registry.url(), repository, reference);
    EXPECT_TRUE(response) << response.error().ToString();
    if (!response) return {};
    EXPECT_EQ(response->status, 200) << response->body;
    return response->body;
  }

  static long BlobStatus(RegistryFixture& registry, const std::string& repository, const Digest& digest) {
    ts::TestHttpClient http;
    auto response = http.Head(registry.V2Url(repository + "/blobs/" + digest.ToString()));
    EXPECT_TRUE(response) << response.error().ToString();
    return response ? response->status : -1;
  }

  // GETs of `digest` the registry has logged, waiting briefly for at least `at_least` (it
  // logs a request just after answering it).
  static int RegistryBlobGets(const RegistryFixture& registry, const std::string& repository, const Digest& digest,
                              int at_least = 0) {
    const std::string uri = "/v2/" + repository + "/blobs/" + digest.ToString();
    int count = registry.CountRequests("GET", uri);
    for (int i = 0; i < 100 && count < at_least; ++i) {
      std::this_thread::sleep_for(20ms);
      count = registry.CountRequests("GET", uri);
    }
    return count;
  }

  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<registry::Fetcher> fetcher_;
};

TEST_F(WindowsImageTest, PullPicksTheManifestEachHostVersionCanRun) {
  auto registry = StartTrustedRegistry();
  ASSERT_TRUE(registry);
  ASSERT_OK_AND_ASSIGN(auto pushed, ts::PushStandardWindowsIndex(*registry, "win/servercore", "ltsc"));
  ASSERT_EQ(pushed.images.size(), 4u);
  const std::string reference = registry->host() + "/win/servercore:ltsc";
  struct Case {
    std::string host;
    size_t expected;
  };
  const std::vector<Case> cases = {
      {WindowsOsVersion(ts::kWindowsServer2022Build, 100), kServer2022},   // same build, older UBR
      {WindowsOsVersion(ts::kWindows11Build, 3155), kServer2022},          // between the LTSCs
      {WindowsOsVersion(ts::kWindowsServer2025Build), kServer2025},        // newest build it runs
      {WindowsOsVersion(26200, 1), kServer2025},                           // later client: 26100..26200
      {WindowsOsVersion(ts::kWindowsServer2019Build, 5000), kServer2019},  // < 20348: exact build
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.host);
    ASSERT_OK_AND_ASSIGN(PullResult result, PullFor(reference, "windows/amd64:" + c.host));
    EXPECT_EQ(result.target.digest, pushed.index_digest);
    EXPECT_EQ(result.manifest.digest, pushed.images[c.expected].manifest_digest);
    EXPECT_EQ(result.config.digest, pushed.images[c.expected].config_digest);
  }
  // The index's linux entry still serves linux hosts.
  ASSERT_OK_AND_ASSIGN(PullResult linux_result, PullFor(reference, "linux/amd64"));
  EXPECT_EQ(linux_result.manifest.digest, pushed.images[kLinux].manifest_digest);
}

TEST_F(WindowsImageTest, HigherUbrOfTheSameBuildWinsComparedAsNumbers) {
  auto registry = StartTrustedRegistry();
  ASSERT_TRUE(registry);
  const WindowsImageSpec ubr_999{.build = ts::kWindowsServer2022Build, .ubr = 999};
  const WindowsImageSpec ubr_1000{.build = ts::kWindowsServer2022Build, .ubr = 1000};
  ASSERT_OK_AND_ASSIGN(auto newer, ts::BuildWindowsImage(ubr_1000));
  // Both orders in the index: the pick must not depend on position or on string order
  // ("999" > "1000" as text).
  for (const auto& [tag, specs] : std::vector<std::pair<std::string, std::vector<WindowsImageSpec>>>{
           {"999-first", {ubr_999, ubr_1000}}, {"1000-first", {ubr_1000, ubr_999}}}) {
    SCOPED_TRACE(tag);
    ASSERT_OK_AND_ASSIGN(auto built, ts::BuildWindowsIndex(specs, ManifestFormat::kOci, /*with_linux=*/false));
    ts::TestHttpClient http = registry->Client();
    ASSERT_OK(ts::PushIndex(http, registry->url(), "win/ubr", tag, built));
    ASSERT_OK_AND_ASSIGN(PullResult result, PullFor(registry->host() + "/win/ubr:" + tag,
                                                    "windows/amd64:" + WindowsOsVersion(ts::kWindowsServer2022Build, 1)));
    EXPECT_EQ(result.manifest.digest, newer.manifest.digest);
  }
}

TEST_F(WindowsImageTest, HostThatNoEntryFitsFailsNamingWantedAndAvailableVersions) {
  auto registry = StartTrustedRegistry();
  ASSERT_TRUE(registry);
  ASSERT_OK(ts::PushStandardWindowsIndex(*registry, "win/servercore", "ltsc"));
  const std::string reference = registry->host() + "/win/servercore:ltsc";
  const std::string wanted = WindowsOsVersion(ts::kWindows10Build);
  const std::vector<std::string> available = {
      WindowsOsVersion(ts::kWindowsServer2019Build, ts::kWindowsServer2019Ubr),
      WindowsOsVersion(ts::kWindowsServer2022Build, ts::kWindowsServer2022Ubr),
      WindowsOsVersion(ts::kWindowsServer2025Build, ts::kWindowsServer2025Ubr), "linux/amd64"};

  auto result = PullFor(reference, "windows/amd64:" + wanted);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kNotFound);
  const std::string message = result.error().message();
  EXPECT_NE(message.find("windows/amd64:" + wanted), std::string::npos) << message;
  for (const std::string& version : available) EXPECT_NE(message.find(version), std::string::npos) << message;
  ASSERT_OK_AND_ASSIGN(auto images, store_->images().List({}));
  EXPECT_TRUE(images.empty());

  // What a user sees.
  CommandRun run = Strata({"pull", "--no-unpack", "--platform", "windows/amd64:" + wanted, reference});
  EXPECT_NE(run.code, 0) << run.output;
  EXPECT_NE(run.output.find(wanted), std::string::npos) << run.output;
  for (const std::string& version : available) EXPECT_NE(run.output.find(version), std::string::npos) << run.output;
}

TEST_F(WindowsImageTest, StrataPullTakesTheDefaultWindowsHostVersionFromFlagOrEnvironment) {
  CommandRun help = Strata({"pull", "--help"});
  ASSERT_EQ(help.code, 0) << help.output;
  EXPECT_NE(help.output.find("--windows-version"), std::string::npos) << help.output;
  EXPECT_NE(help.output.find("STRATA_WINDOWS_HOST_VERSION"), std::string::npos) << help.output;
  EXPECT_NE(help.output.find("--foreign-urls-first"), std::string::npos) << help.output;

  auto registry = StartTrustedRegistry();
  ASSERT_TRUE(registry);
  ASSERT_OK_AND_ASSIGN(auto pushed, ts::PushStandardWindowsIndex(*registry, "win/servercore", "ltsc"));
  const std::string reference = registry->host() + "/win/servercore:ltsc";
  auto manifest_of = [&](size_t i) { return pushed.images[i].manifest_digest.ToString(); };
  const std::string env_2019 = "STRATA_WINDOWS_HOST_VERSION=" + WindowsOsVersion(ts::kWindowsServer2019Build);

  CommandRun from_env = Strata({"--json", "pull", "--no-unpack", "--platform", "windows", reference}, {env_2019});
  ASSERT_EQ(from_env.code, 0) << from_env.output;
  EXPECT_EQ(PulledManifest(from_env), manifest_of(kServer2019));

  CommandRun flag_wins = Strata({"--json", "pull", "--no-unpack", "--platform", "windows/amd64", "--windows-version",
                                 WindowsOsVersion(ts::kWindowsServer2025Build), reference},
                                {env_2019});
  ASSERT_EQ(flag_wins.code, 0) << flag_wins.output;
  EXPECT_EQ(PulledManifest(flag_wins), manifest_of(kServer2025));

  // A version in --platform itself is kept.
  CommandRun explicit_version =
      Strata({"--json", "pull", "--no-unpack", "--platform",
              "windows/amd64:" + WindowsOsVersion(ts::kWindows11Build), reference},
             {env_2019});
  ASSERT_EQ(explicit_version.code, 0) << explicit_version.output;
  EXPECT_EQ(PulledManifest(explicit_version), manifest_of(kServer2022));

  CommandRun malformed =
      Strata({"pull", "--no-unpack", "--platform", "windows", reference}, {"STRATA_WINDOWS_HOST_VERSION=ltsc2022"});
  EXPECT_NE(malformed.code, 0);
  EXPECT_NE(malformed.output.find("ltsc2022"), std::string::npos) << malformed.output;
}

TEST_F(WindowsImageTest, ForeignBaseLayerComesFromItsUrlWhenTheRegistryLacksIt) {
  auto registry = StartTrustedRegistry(ts::AllowLoopbackForeignUrls());
  ASSERT_TRUE(registry);
  ASSERT_OK_AND_ASSIGN(auto foreign, ts::PushForeignWindowsIndex(*registry, "win/foreign", "1"));
  const Digest& base = foreign.base_layer.digest;
  EXPECT_EQ(BlobStatus(*registry, "win/foreign", base), 404);

  ASSERT_OK_AND_ASSIGN(PullResult result,
                       PullFor(registry->host() + "/win/foreign:1",
                               "windows/amd64:" + WindowsOsVersion(ts::kWindowsServer2022Build, 1)));
  EXPECT_EQ(result.manifest.digest, foreign.pushed.images[kServer2022].manifest_digest);
  EXPECT_TRUE(store_->content().Info(base));
  EXPECT_EQ(foreign.server->blob_gets(), 1);
  // The registry was asked first (and said no).
  EXPECT_GE(RegistryBlobGets(*registry, "win/foreign", base, 1), 1);
}

TEST_F(WindowsImageTest, ForeignUrlsOrRegistryFirstIsConfigurable) {
  auto registry = StartTrustedRegistry(ts::AllowLoopbackForeignUrls());
  ASSERT_TRUE(registry);
  ASSERT_OK_AND_ASSIGN(auto foreign,
                       ts::PushForeignWindowsIndex(*registry, "win/both", "1", /*registry_has_blob=*/true));
  const Digest& base = foreign.base_layer.digest;
  ASSERT_EQ(BlobStatus(*registry, "win/both", base), 200);
  const std::string reference = registry->host() + "/win/both:1";
  const std::string host = "windows/amd64:" + WindowsOsVersion(ts::kWindowsServer2025Build);

  // Default: the registry first; the urls are never asked.
  ASSERT_OK(PullFor(reference, host));
  EXPECT_EQ(RegistryBlobGets(*registry, "win/both", base, 1), 1);
  EXPECT_EQ(foreign.server->blob_gets(), 0);

  // foreign_urls_first: the url serves it; the registry is not asked again.
  OpenStore("store-urls-first", /*foreign_urls_first=*/true);
  ASSERT_OK(PullFor(reference, host));
  EXPECT_EQ(foreign.server->blob_gets(), 1);
  EXPECT_EQ(RegistryBlobGets(*registry, "win/both", base), 1);

  // The same through `strata pull --foreign-urls-first`.
  CommandRun run = Strata({"pull", "--no-unpack", "--foreign-urls-first", "--platform", host, reference});
  ASSERT_EQ(run.code, 0) << run.output;
  EXPECT_EQ(foreign.server->blob_gets(), 2);
  EXPECT_EQ(RegistryBlobGets(*registry, "win/both", base), 1);
}

// The user's path for browsing a Windows image from Linux: pull one platform of the index
// (unpacked into Windows layer dirs), then `strata ls` / `strata cat` with that platform,
// paths in any case.
TEST_F(WindowsImageTest, StrataLsAndCatBrowseThePulledWindowsPlatform) {
  auto registry = StartTrustedRegistry();
  ASSERT_TRUE(registry);
  ASSERT_OK(ts::PushStandardWindowsIndex(*registry, "win/servercore", "ltsc"));
  const std::string reference = registry->host() + "/win/servercore:ltsc";
  const std::string platform =
      "windows/amd64:" + WindowsOsVersion(ts::kWindowsServer2022Build, ts::kWindowsServer2022Ubr);
  CommandRun pull = Strata({"pull", "--platform", platform, reference});
  ASSERT_EQ(pull.code, 0) << pull.output;

  CommandRun ls = Strata({"ls", "--platform", platform, reference, "windows/SYSTEM32/config"});
  ASSERT_EQ(ls.code, 0) << ls.output;
  for (const char* hive : {"DEFAULT", "SAM", "SECURITY", "SOFTWARE", "SYSTEM"}) {
    EXPECT_NE(ls.output.find(hive), std::string::npos) << hive << " missing from:\n" << ls.output;
  }
  CommandRun cat = Strata({"cat", "--platform", platform, reference, "WINDOWS/System32/drivers/ETC/hosts"});
  ASSERT_EQ(cat.code, 0) << cat.output;
  EXPECT_EQ(cat.output, "127.0.0.1 localhost\r\n");
  // The delta's tombstone hides the base's notepad.exe.
  CommandRun gone = Strata({"cat", "--platform", platform, reference, "Windows/System32/notepad.exe"});
  EXPECT_NE(gone.code, 0) << gone.output;
  EXPECT_NE(gone.output.find("notepad.exe"), std::string::npos) << gone.output;
}

// `strata mount` of a Windows image: the read-only Windows view, or with --isolation vm a
// container layer dir (layerchain.json + sandbox.vhd); `strata umount` undoes either.
TEST_F(WindowsImageTest, StrataMountShowsTheViewOrWritesAVmContainerDir) {
  auto registry = StartTrustedRegistry();
  ASSERT_TRUE(registry);
  ASSERT_OK(ts::PushStandardWindowsIndex(*registry, "win/servercore", "ltsc"));
  const std::string reference = registry->host() + "/win/servercore:ltsc";
  const std::string platform =
      "windows/amd64:" + WindowsOsVersion(ts::kWindowsServer2025Build, ts::kWindowsServer2025Ubr);
  ASSERT_EQ(Strata({"pull", "--platform", platform, reference}).code, 0);

  const std::filesystem::path view = dir_->path() / "view";
  std::filesystem::create_directories(view);
  CommandRun mounted = Strata({"mount", "--platform", platform, reference, view.string()});
  ASSERT_EQ(mounted.code, 0) << mounted.output;
  const bool hosts_seen = std::filesystem::is_regular_file(view / "windows/system32/DRIVERS/etc/HOSTS");
  CommandRun unmounted = Strata({"umount", view.string()});
  EXPECT_TRUE(hosts_seen) << "case-insensitive path through the mounted view";
  ASSERT_EQ(unmounted.code, 0) << unmounted.output;
  EXPECT_TRUE(std::filesystem::is_empty(view));

  const std::filesystem::path vm = dir_->path() / "vm";
  std::filesystem::create_directories(vm);
  CommandRun made = Strata(
      {"mount", "--isolation", "vm", "--scratch-size", "64M", "--platform", platform, reference, vm.string()});
  ASSERT_EQ(made.code, 0) << made.output;
  EXPECT_NE(made.output.find("layerchain.json over 2 layers"), std::string::npos) << made.output;
  const auto chain = nlohmann::json::parse(ReadFile(vm / "layerchain.json").value_or("?"), nullptr, false);
  EXPECT_TRUE(chain.is_array() && chain.size() == 2) << chain.dump();
  std::error_code ec;
  EXPECT_EQ(std::filesystem::file_size(vm / "sandbox.vhd", ec), (uint64_t{64} << 20) + 512);
  ASSERT_EQ(Strata({"umount", vm.string()}).code, 0);
  EXPECT_TRUE(std::filesystem::is_empty(vm));

  CommandRun rw = Strata({"mount", "--rw", "--platform", platform, reference, view.string()});
  EXPECT_NE(rw.code, 0);
  EXPECT_NE(rw.output.find("read-only"), std::string::npos) << rw.output;
}

TEST_F(WindowsImageTest, StrataCopyAllKeepsTheWindowsIndexAndManifestsByteIdentical) {
  for (ManifestFormat format : {ManifestFormat::kDocker, ManifestFormat::kOci}) {
    SCOPED_TRACE(format == ManifestFormat::kOci ? "oci" : "docker");
    auto source = StartTrustedRegistry();
    auto target = StartTrustedRegistry();
    ASSERT_TRUE(source && target);
    ASSERT_OK_AND_ASSIGN(auto pushed, ts::PushStandardWindowsIndex(*source, "win/servercore", "ltsc", format));
    CommandRun run = Strata({"copy", "--all", source->host() + "/win/servercore:ltsc",
                             target->host() + "/mirror/servercore:ltsc"});
    ASSERT_EQ(run.code, 0) << run.output;

    const std::string source_index = ServedManifest(*source, "win/servercore", "ltsc");
    const std::string target_index = ServedManifest(*target, "mirror/servercore", "ltsc");
    EXPECT_EQ(target_index, source_index);
    EXPECT_EQ(Digest::Of(target_index), pushed.index_digest);
    for (const auto& image : pushed.images) {
      const std::string digest = image.manifest_digest.ToString();
      const std::string copied = ServedManifest(*target, "mirror/servercore", digest);
      EXPECT_EQ(copied, ServedManifest(*source, "win/servercore", digest));
      EXPECT_EQ(Digest::Of(copied), image.manifest_digest);
      for (const Digest& layer : image.layer_digests) {
        EXPECT_EQ(BlobStatus(*target, "mirror/servercore", layer), 200) << layer;
      }
    }
  }
}

TEST_F(WindowsImageTest, CopyAndPushLeaveForeignLayersBehindUnlessAllowed) {
  auto source = StartTrustedRegistry(ts::AllowLoopbackForeignUrls());
  auto target = StartTrustedRegistry(ts::AllowLoopbackForeignUrls());
  ASSERT_TRUE(source && target);
  ASSERT_OK_AND_ASSIGN(auto foreign, ts::PushForeignWindowsIndex(*source, "win/foreign", "1"));
  const Digest& base = foreign.base_layer.digest;
  const std::string source_ref = source->host() + "/win/foreign:1";

  // `strata copy --all`: manifests byte-identical (still naming the urls), base not uploaded.
  CommandRun skip = Strata({"copy", "--all", source_ref, target->host() + "/win/skip:1"});
  ASSERT_EQ(skip.code, 0) << skip.output;
  EXPECT_EQ(ServedManifest(*target, "win/skip", "1"), foreign.built.index.data);
  for (const auto& image : foreign.pushed.images) {
    const std::string manifest = ServedManifest(*target, "win/skip", image.manifest_digest.ToString());
    EXPECT_EQ(Digest::Of(manifest), image.manifest_digest);
  }
  const auto manifest = nlohmann::json::parse(
      ServedManifest(*target, "win/skip", foreign.pushed.images[kServer2019].manifest_digest.ToString()));
  EXPECT_EQ(manifest["layers"][0]["urls"][0], foreign.server->url());
  EXPECT_EQ(BlobStatus(*target, "win/skip", base), 404);
  EXPECT_EQ(BlobStatus(*target, "win/skip", foreign.pushed.images[kServer2019].layer_digests[1]), 200);

  CommandRun keep = Strata({"copy", "--all", "--allow-nondistributable", source_ref, target->host() + "/win/keep:1"});
  ASSERT_EQ(keep.code, 0) << keep.output;
  EXPECT_EQ(ServedManifest(*target, "win/keep", "1"), foreign.built.index.data);
  EXPECT_EQ(BlobStatus(*target, "win/keep", base), 200);

  // images::PushImage of the pulled index: the same rule, counted.
  PullOptions all;
  all.all_platforms = true;
  ASSERT_OK(Pull(*resolver_, *fetcher_, *store_, Ref(source_ref), all));
  registry::Pusher pusher(*resolver_);
  ASSERT_OK_AND_ASSIGN(PushImageResult skipped,
                       PushImage(pusher, *store_, source_ref, Ref(target->host() + "/win/push-skip:1"), {}));
  EXPECT_EQ(skipped.pushed.digest, foreign.pushed.index_digest);
  EXPECT_EQ(skipped.skipped, 1);  // one base blob shared by the three Windows images
  EXPECT_EQ(BlobStatus(*target, "win/push-skip", base), 404);
  ASSERT_OK_AND_ASSIGN(PushImageResult allowed,
                       PushImage(pusher, *store_, source_ref, Ref(target->host() + "/win/push-keep:1"),
                                 {.allow_nondistributable = true}));
  EXPECT_EQ(allowed.skipped, 0);
  EXPECT_EQ(BlobStatus(*target, "win/push-keep", base), 200);
  EXPECT_EQ(ServedManifest(*target, "win/push-keep", "1"), foreign.built.index.data);
}

}  // namespace
}  // namespace strata::images
