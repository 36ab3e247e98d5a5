#include "oci/platform.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "oci/index.h"

namespace strata::oci {
namespace {

Platform P(std::string_view text) {
  Result<Platform> platform = Platform::Parse(text);
  EXPECT_TRUE(platform.has_value()) << platform.error().ToString();
  return platform.value_or(Platform());
}

// A platform exactly as an index entry spells it (no normalisation).
Platform Raw(std::string os, std::string architecture, std::string variant = "", std::string os_version = "") {
  Platform platform;
  platform.os = std::move(os);
  platform.architecture = std::move(architecture);
  platform.variant = std::move(variant);
  platform.os_version = std::move(os_version);
  return platform;
}

Platform Windows(std::string os_version) { return Raw("windows", "amd64", "", std::move(os_version)); }

// ---- Parse and String ----

TEST(PlatformParseTest, OsAndArchitecture) {
  Platform platform = P("linux/amd64");
  EXPECT_EQ(platform.os, "linux");
  EXPECT_EQ(platform.architecture, "amd64");
  EXPECT_EQ(platform.variant, "");
  EXPECT_EQ(platform.String(), "linux/amd64");
}

TEST(PlatformParseTest, Arm64V8NormalisesToNoVariant) {
  EXPECT_EQ(P("linux/arm64/v8"), Raw("linux", "arm64"));
  EXPECT_EQ(P("linux/arm64/8"), Raw("linux", "arm64"));
  EXPECT_EQ(P("linux/aarch64"), Raw("linux", "arm64"));
}

TEST(PlatformParseTest, ArmDefaultsToV7) {
  EXPECT_EQ(P("linux/arm"), Raw("linux", "arm", "v7"));
  EXPECT_EQ(P("linux/arm/7"), Raw("linux", "arm", "v7"));
  EXPECT_EQ(P("linux/arm/v6"), Raw("linux", "arm", "v6"));
  EXPECT_EQ(P("linux/armhf"), Raw("linux", "arm", "v7"));
  EXPECT_EQ(P("linux/armel"), Raw("linux", "arm", "v6"));
}

TEST(PlatformParseTest, X86Aliases) {
  EXPECT_EQ(P("linux/x86_64"), Raw("linux", "amd64"));
  EXPECT_EQ(P("linux/x86-64"), Raw("linux", "amd64"));
  EXPECT_EQ(P("linux/amd64/v1"), Raw("linux", "amd64"));
  EXPECT_EQ(P("linux/amd64/v3"), Raw("linux", "amd64", "v3"));
  EXPECT_EQ(P("linux/i386"), Raw("linux", "386"));
}

TEST(PlatformParseTest, LowerCasesOsAndArchitecture) { EXPECT_EQ(P("Linux/AMD64"), Raw("linux", "amd64")); }

TEST(PlatformParseTest, WindowsOsVersionAfterColon) {
  Platform platform = P("windows/amd64:10.0.20348.2762");
  EXPECT_EQ(platform, Windows("10.0.20348.2762"));
  EXPECT_EQ(platform.String(), "windows/amd64:10.0.20348.2762");
  EXPECT_EQ(P(platform.String()), platform);
}

TEST(PlatformParseTest, ContainerdOsVersionInParentheses) {
  EXPECT_EQ(P("windows(10.0.17763.5000)/amd64"), Windows("10.0.17763.5000"));
}

TEST(PlatformParseTest, SingleWordOsTakesHostArchitecture) {
  Platform platform = P("windows");
  EXPECT_EQ(platform.os, "windows");
  EXPECT_EQ(platform.architecture, Platform::Host().architecture);
}

TEST(PlatformParseTest, SingleWordArchitectureMeansLinux) {
  EXPECT_EQ(P("arm64"), Raw("linux", "arm64"));
  EXPECT_EQ(P("aarch64"), Raw("linux", "arm64"));
}

TEST(PlatformParseTest, RejectsMalformedInput) {
  for (std::string_view text : {"", "linux/", "/amd64", "linux//v7", "linux/amd64/v8/x", "linux/am d64", "lin@ux/amd64",
                                "windows/amd64:", "windows/amd64:10.0", "windows/amd64:10.0.x.1", "windows(/amd64",
                                "plan10"}) {
    Result<Platform> platform = Platform::Parse(text);
    ASSERT_FALSE(platform.has_value()) << "\"" << text << "\" parsed as " << platform->String();
    EXPECT_EQ(platform.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(platform.error().message().find(fmt::format("invalid platform \"{}\"", text)), std::string::npos)
        << platform.error().message();
  }
}

TEST(PlatformTest, HostIsLinuxWithTheBuildArchitecture) {
  Platform host = Platform::Host();
  EXPECT_EQ(host.os, "linux");
  EXPECT_FALSE(host.architecture.empty());
  EXPECT_EQ(host, host.Normalized());
#if defined(__x86_64__)
  EXPECT_EQ(host.String(), "linux/amd64");
#elif defined(__aarch64__)
  EXPECT_EQ(host.String(), "linux/arm64");
#endif
}

TEST(PlatformTest, JsonRoundTripKeepsUnknownKeys) {
  nlohmann::json json = {{"architecture", "amd64"},
                         {"os", "windows"},
                         {"os.version", "10.0.17763.6414"},
                         {"os.features", {"win32k"}},
                         {"features", {"sse4"}}};
  Result<Platform> platform = Platform::FromJson(json);
  ASSERT_TRUE(platform.has_value()) << platform.error().ToString();
  EXPECT_EQ(platform->os_version, "10.0.17763.6414");
  EXPECT_EQ(platform->os_features, std::vector<std::string>{"win32k"});
  EXPECT_EQ(platform->ToJson(), json);
}

TEST(PlatformTest, JsonRequiresOs) {
  Result<Platform> platform = Platform::FromJson({{"architecture", "amd64"}});
  ASSERT_FALSE(platform.has_value());
  EXPECT_EQ(platform.error().message(), "platform: os: missing");
}

// ---- WindowsVersion and the host/container compatibility rule ----

TEST(WindowsVersionTest, ParsesThreeOrFourNumbers) {
  EXPECT_EQ(WindowsVersion::Parse("10.0.17763"), (WindowsVersion{10, 0, 17763, 0}));
  EXPECT_EQ(WindowsVersion::Parse("10.0.17763.1000"), (WindowsVersion{10, 0, 17763, 1000}));
  for (std::string_view text : {"", "10.0", "10.0.x", "10.0.17763.1.2", "10..17763", "10.0.17763.", "-1.0.1",
                                "10.0.99999999999"}) {
    EXPECT_FALSE(WindowsVersion::Parse(text).has_value()) << text;
  }
}

bool CanRun(std::string_view host, std::string_view image) {
  return WindowsHostCanRun(*WindowsVersion::Parse(host), *WindowsVersion::Parse(image));
}

TEST(WindowsHostCanRunTest, MajorAndMinorMustMatch) {
  EXPECT_FALSE(CanRun("10.0.20348.1", "6.3.20348.1"));
  EXPECT_FALSE(CanRun("10.0.20348.1", "10.1.20348.1"));
}

TEST(WindowsHostCanRunTest, Host17763RunsExactlyItsBuild) {
  EXPECT_TRUE(CanRun("10.0.17763.5000", "10.0.17763.1"));
  EXPECT_TRUE(CanRun("10.0.17763.5000", "10.0.17763.9999"));  // revision never decides
  EXPECT_FALSE(CanRun("10.0.17763.5000", "10.0.17134.1"));
  EXPECT_FALSE(CanRun("10.0.17763.5000", "10.0.14393.1"));
  EXPECT_FALSE(CanRun("10.0.17763.5000", "10.0.20348.1"));
}

TEST(WindowsHostCanRunTest, Host20348RunsOnly20348) {
  EXPECT_TRUE(CanRun("10.0.20348.2762", "10.0.20348.100"));
  EXPECT_FALSE(CanRun("10.0.20348.2762", "10.0.17763.6414"));
  EXPECT_FALSE(CanRun("10.0.20348.2762", "10.0.22621.1"));
  EXPECT_FALSE(CanRun("10.0.20348.2762", "10.0.26100.1"));
}

TEST(WindowsHostCanRunTest, Host22621RunsFrom20348UpToItself) {
  EXPECT_TRUE(CanRun("10.0.22621.1", "10.0.20348.1"));
  EXPECT_TRUE(CanRun("10.0.22621.1", "10.0.22000.1"));
  EXPECT_TRUE(CanRun("10.0.22621.1", "10.0.22621.1"));
  EXPECT_FALSE(CanRun("10.0.22621.1", "10.0.17763.1"));
  EXPECT_FALSE(CanRun("10.0.22621.1", "10.0.26100.1"));
}

TEST(WindowsHostCanRunTest, Host26100RunsFrom20348UpToItself) {
  EXPECT_TRUE(CanRun("10.0.26100.1742", "10.0.20348.2762"));
  EXPECT_TRUE(CanRun("10.0.26100.1742", "10.0.22621.1"));
  EXPECT_TRUE(CanRun("10.0.26100.1742", "10.0.26100.1"));
  EXPECT_FALSE(CanRun("10.0.26100.1742", "10.0.17763.6414"));
  EXPECT_FALSE(CanRun("10.0.26100.1742", "10.0.26200.1"));
}

TEST(WindowsHostCanRunTest, HostAfter26100RunsFrom26100UpToItself) {
  EXPECT_TRUE(CanRun("10.0.26200.1", "10.0.26100.1"));
  EXPECT_TRUE(CanRun("10.0.26200.1", "10.0.26200.1"));
  EXPECT_FALSE(CanRun("10.0.26200.1", "10.0.20348.1"));
}

// ---- PlatformMatcher: Linux ----

TEST(PlatformMatcherTest, Arm64MatchesWithOrWithoutV8) {
  PlatformMatcher matcher(P("linux/arm64"));
  EXPECT_TRUE(matcher.Match(Raw("linux", "arm64", "v8")));
  EXPECT_TRUE(matcher.Match(Raw("linux", "arm64")));
  EXPECT_TRUE(matcher.Match(Raw("linux", "aarch64")));
  EXPECT_FALSE(matcher.Match(Raw("linux", "arm", "v7")));
  EXPECT_FALSE(matcher.Match(Raw("linux", "amd64")));

  PlatformMatcher wants_v8(Raw("linux", "arm64", "v8"));
  EXPECT_TRUE(wants_v8.Match(Raw("linux", "arm64")));
}

TEST(PlatformMatcherTest, ArmVariantsDoNotCrossMatch) {
  PlatformMatcher v7(P("linux/arm/v7"));
  PlatformMatcher v6(P("linux/arm/v6"));
  EXPECT_TRUE(v7.Match(Raw("linux", "arm", "v7")));
  EXPECT_TRUE(v7.Match(Raw("linux", "arm")));  // arm's default variant is v7
  EXPECT_FALSE(v7.Match(Raw("linux", "arm", "v6")));
  EXPECT_FALSE(v6.Match(Raw("linux", "arm", "v7")));
  EXPECT_TRUE(v6.Match(Raw("linux", "arm", "v6")));
}

TEST(PlatformMatcherTest, Amd64MatchesAliasesOnly) {
  PlatformMatcher matcher(P("linux/amd64"));
  EXPECT_TRUE(matcher.Match(Raw("linux", "amd64")));
  EXPECT_TRUE(matcher.Match(Raw("linux", "x86_64")));
  EXPECT_FALSE(matcher.Match(Raw("linux", "386")));
  EXPECT_FALSE(matcher.Match(Raw("windows", "amd64")));
  EXPECT_FALSE(matcher.Match(Raw("linux", "amd64", "v3")));
}

TEST(PlatformMatcherTest, LinuxIgnoresOsVersion) {
  PlatformMatcher matcher(P("linux/amd64"));
  EXPECT_TRUE(matcher.Match(Raw("linux", "amd64", "", "5.10")));
}

TEST(PlatformMatcherTest, LessPutsMatchesFirstAndIsIrreflexive) {
  PlatformMatcher matcher(P("linux/amd64"));
  Platform yes = Raw("linux", "amd64");
  Platform no = Raw("linux", "arm64");
  EXPECT_TRUE(matcher.Less(yes, no));
  EXPECT_FALSE(matcher.Less(no, yes));
  EXPECT_FALSE(matcher.Less(yes, yes));
  EXPECT_FALSE(matcher.Less(no, no));
}

// ---- PlatformMatcher: Windows ----

TEST(PlatformMatcherTest, WindowsHost17763AcceptsOnly17763) {
  PlatformMatcher matcher(P("windows/amd64:10.0.17763.5000"));
  EXPECT_TRUE(matcher.Match(Windows("10.0.17763.6414")));
  EXPECT_TRUE(matcher.Match(Windows("10.0.17763.100")));
  EXPECT_FALSE(matcher.Match(Windows("10.0.20348.2762")));
  EXPECT_FALSE(matcher.Match(Windows("10.0.14393.1")));
  EXPECT_FALSE(matcher.Match(Raw("windows", "arm64", "", "10.0.17763.6414")));
}

TEST(PlatformMatcherTest, WindowsHost20348AcceptsOnly20348) {
  PlatformMatcher matcher(P("windows/amd64:10.0.20348.2762"));
  EXPECT_TRUE(matcher.Match(Windows("10.0.20348.1")));
  EXPECT_FALSE(matcher.Match(Windows("10.0.17763.6414")));
  EXPECT_FALSE(matcher.Match(Windows("10.0.26100.1")));
}

TEST(PlatformMatcherTest, WindowsHost26100Accepts20348Through26100) {
  PlatformMatcher matcher(P("windows/amd64:10.0.26100.1742"));
  EXPECT_TRUE(matcher.Match(Windows("10.0.20348.2762")));
  EXPECT_TRUE(matcher.Match(Windows("10.0.26100.1")));
  EXPECT_FALSE(matcher.Match(Windows("10.0.17763.6414")));
}

TEST(PlatformMatcherTest, WindowsCandidateWithUnparsableVersionDoesNotMatch) {
  PlatformMatcher matcher(P("windows/amd64:10.0.20348.2762"));
  EXPECT_FALSE(matcher.Match(Windows("ltsc2022")));
}

TEST(PlatformMatcherTest, WindowsRevisionRanksNumerically) {
  PlatformMatcher matcher(P("windows/amd64:10.0.17763.5000"));
  Platform rev999 = Windows("10.0.17763.999");
  Platform rev1000 = Windows("10.0.17763.1000");
  EXPECT_TRUE(matcher.Less(rev1000, rev999));
  EXPECT_FALSE(matcher.Less(rev999, rev1000));
  std::vector<Platform> candidates = {Raw("linux", "amd64"), rev999, rev1000, Windows("10.0.20348.3000")};
  EXPECT_EQ(matcher.Best(candidates), 2u);
}

TEST(PlatformMatcherTest, WindowsExactBuildBeatsLowerCompatibleBuild) {
  PlatformMatcher matcher(P("windows/amd64:10.0.26100.100"));
  std::vector<Platform> candidates = {Windows("10.0.20348.9999"), Windows("10.0.26100.5"), Windows("10.0.22621.50")};
  EXPECT_EQ(matcher.Best(candidates), 1u);
  EXPECT_TRUE(matcher.Less(candidates[2], candidates[0]));  // then the closer build
}

TEST(PlatformMatcherTest, WindowsCandidateWithoutVersionMatchesButRanksLast) {
  PlatformMatcher matcher(P("windows/amd64:10.0.20348.2762"));
  Platform unversioned = Windows("");
  EXPECT_TRUE(matcher.Match(unversioned));
  std::vector<Platform> candidates = {unversioned, Windows("10.0.20348.1")};
  EXPECT_EQ(matcher.Best(candidates), 1u);
  EXPECT_EQ(matcher.Best({unversioned}), 0u);
}

TEST(PlatformMatcherTest, WindowsWithoutWantedVersionTakesFirstInIndexOrder) {
  PlatformMatcher matcher(P("windows/amd64"));
  std::vector<Platform> candidates = {Raw("linux", "amd64"), Windows("10.0.17763.6414"), Windows("10.0.20348.2762")};
  EXPECT_TRUE(matcher.Match(candidates[1]));
  EXPECT_TRUE(matcher.Match(candidates[2]));
  EXPECT_EQ(matcher.Best(candidates), 1u);
}

TEST(PlatformMatcherTest, BestOfNothingIsNullopt) {
  PlatformMatcher matcher(P("linux/riscv64"));
  EXPECT_EQ(matcher.Best({}), std::nullopt);
  EXPECT_EQ(matcher.Best({Raw("linux", "amd64")}), std::nullopt);
}

// ---- Choosing from an index ----

Descriptor Entry(std::string digest_hex_char, Platform platform) {
  Descriptor descriptor;
  descriptor.media_type = "application/vnd.oci.image.manifest.v1+json";
  descriptor.digest = *Digest::Parse("sha256:" + std::string(64, digest_hex_char[0]));
  descriptor.size = 1000;
  descriptor.platform = std::move(platform);
  return descriptor;
}

Index MultiPlatformIndex() {
  Index index;
  index.media_type = "application/vnd.oci.image.index.v1+json";
  index.manifests = {Entry("1", Raw("linux", "amd64")),
                     Entry("2", Raw("linux", "arm64", "v8")),
                     Entry("3", Raw("linux", "arm", "v7")),
                     Entry("4", Raw("linux", "arm", "v6")),
                     Entry("5", Windows("10.0.17763.999")),
                     Entry("6", Windows("10.0.17763.1000")),
                     Entry("7", Windows("10.0.20348.2762")),
                     Entry("8", Raw("unknown", "unknown"))};
  Descriptor no_platform = Entry("9", Raw("linux", "amd64"));
  no_platform.platform.reset();
  index.manifests.push_back(no_platform);
  return index;
}

TEST(SelectManifestForPlatformTest, PicksLinuxEntries) {
  Index index = MultiPlatformIndex();
  EXPECT_EQ(SelectManifestForPlatform(index, PlatformMatcher(P("linux/amd64")))->digest.hex(), std::string(64, '1'));
  EXPECT_EQ(SelectManifestForPlatform(index, PlatformMatcher(P("linux/arm64")))->digest.hex(), std::string(64, '2'));
  EXPECT_EQ(SelectManifestForPlatform(index, PlatformMatcher(P("linux/arm")))->digest.hex(), std::string(64, '3'));
  EXPECT_EQ(SelectManifestForPlatform(index, PlatformMatcher(P("linux/arm/v6")))->digest.hex(), std::string(64, '4'));
}

TEST(SelectManifestForPlatformTest, PicksHighestWindowsRevisionNumerically) {
  Index index = MultiPlatformIndex();
  Result<Descriptor> chosen = SelectManifestForPlatform(index, PlatformMatcher(P("windows/amd64:10.0.17763.1")));
  ASSERT_TRUE(chosen.has_value()) << chosen.error().ToString();
  EXPECT_EQ(chosen->digest.hex(), std::string(64, '6'));
  chosen = SelectManifestForPlatform(index, PlatformMatcher(P("windows/amd64:10.0.26100.1")));
  ASSERT_TRUE(chosen.has_value()) << chosen.error().ToString();
  EXPECT_EQ(chosen->digest.hex(), std::string(64, '7'));
}

TEST(SelectManifestForPlatformTest, NotFoundListsAvailablePlatforms) {
  Index index = MultiPlatformIndex();
  Result<Descriptor> chosen = SelectManifestForPlatform(index, PlatformMatcher(P("linux/riscv64")));
  ASSERT_FALSE(chosen.has_value());
  EXPECT_EQ(chosen.error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(chosen.error().message(),
            "no manifest for platform linux/riscv64 in index (available: linux/amd64, linux/arm64/v8, linux/arm/v7, "
            "linux/arm/v6, windows/amd64:10.0.17763.999, windows/amd64:10.0.17763.1000, "
            "windows/amd64:10.0.20348.2762, unknown/unknown)");
}

TEST(SelectManifestForPlatformTest, NotFoundInIndexWithoutPlatforms) {
  Index index;
  Result<Descriptor> chosen = SelectManifestForPlatform(index, PlatformMatcher(P("linux/amd64")));
  ASSERT_FALSE(chosen.has_value());
  EXPECT_EQ(chosen.error().message(), "no manifest for platform linux/amd64 in index (available: none)");
}

}  // namespace
}  // namespace strata::oci
