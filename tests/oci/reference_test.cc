#include "oci/reference.h"

#include <string>

#include <gtest/gtest.h>

namespace strata::oci {
namespace {

constexpr std::string_view kHex = "8a1cee436cbac1489a1883c9d886fcfc46f302c55ed4106ae31729e4f4eb9041";

std::string Sha256(std::string_view hex = kHex) { return "sha256:" + std::string(hex); }

// ---- Inputs that parse: expected normalised parts ----

struct GoodCase {
  const char* test_name;  // gtest case name: points a failure at its input
  std::string input;
  std::string domain;
  std::string path;
  std::optional<std::string> tag;
  std::optional<std::string> digest;
  std::string string;           // String()
  std::string familiar_string;  // FamiliarString()
};

std::ostream& operator<<(std::ostream& out, const GoodCase& c) { return out << '"' << c.input << '"'; }

class ReferenceParsesTest : public testing::TestWithParam<GoodCase> {};

TEST_P(ReferenceParsesTest, Normalises) {
  const GoodCase& c = GetParam();
  Result<Reference> reference = Reference::Parse(c.input);
  ASSERT_TRUE(reference.has_value()) << reference.error().ToString();
  EXPECT_EQ(reference->domain(), c.domain);
  EXPECT_EQ(reference->path(), c.path);
  EXPECT_EQ(reference->name(), c.domain + "/" + c.path);
  EXPECT_EQ(reference->tag(), c.tag);
  if (c.digest) {
    ASSERT_TRUE(reference->digest().has_value());
    EXPECT_EQ(reference->digest()->ToString(), *c.digest);
  } else {
    EXPECT_FALSE(reference->digest().has_value());
  }
  EXPECT_EQ(reference->String(), c.string);
  EXPECT_EQ(reference->FamiliarString(), c.familiar_string);
}

TEST_P(ReferenceParsesTest, StringAndFamiliarStringParseBackToTheSameReference) {
  const GoodCase& c = GetParam();
  Result<Reference> reference = Reference::Parse(c.input);
  ASSERT_TRUE(reference.has_value()) << reference.error().ToString();
  Result<Reference> from_string = Reference::Parse(reference->String());
  ASSERT_TRUE(from_string.has_value()) << from_string.error().ToString();
  EXPECT_EQ(*from_string, *reference);
  Result<Reference> from_familiar = Reference::Parse(reference->FamiliarString());
  ASSERT_TRUE(from_familiar.has_value()) << from_familiar.error().ToString();
  EXPECT_EQ(*from_familiar, *reference);
}

const std::string kTag128(128, 't');

INSTANTIATE_TEST_SUITE_P(
    Good, ReferenceParsesTest,
    testing::Values(
        GoodCase{"OfficialImageShort", "alpine", "docker.io", "library/alpine", "latest", {},
                 "docker.io/library/alpine:latest", "alpine:latest"},
        GoodCase{"OfficialImageWithTag", "alpine:3.19", "docker.io", "library/alpine", "3.19", {},
                 "docker.io/library/alpine:3.19", "alpine:3.19"},
        GoodCase{"UserImage", "user/app:1", "docker.io", "user/app", "1", {}, "docker.io/user/app:1", "user/app:1"},
        GoodCase{"DockerIoSingleSegmentGetsLibrary", "docker.io/alpine", "docker.io", "library/alpine", "latest", {},
                 "docker.io/library/alpine:latest", "alpine:latest"},
        GoodCase{"DockerIoLibraryExplicit", "docker.io/library/alpine:edge", "docker.io", "library/alpine", "edge",
                 {}, "docker.io/library/alpine:edge", "alpine:edge"},
        GoodCase{"LibraryPrefixWithoutDomain", "library/alpine", "docker.io", "library/alpine", "latest", {},
                 "docker.io/library/alpine:latest", "alpine:latest"},
        GoodCase{"IndexDockerIoIsDockerIo", "index.docker.io/library/alpine:edge", "docker.io", "library/alpine",
                 "edge", {}, "docker.io/library/alpine:edge", "alpine:edge"},
        GoodCase{"IndexDockerIoUserImage", "index.docker.io/foo/bar", "docker.io", "foo/bar", "latest", {},
                 "docker.io/foo/bar:latest", "foo/bar:latest"},
        GoodCase{"DockerIoDeepPathKept", "docker.io/foo/bar/baz", "docker.io", "foo/bar/baz", "latest", {},
                 "docker.io/foo/bar/baz:latest", "foo/bar/baz:latest"},
        GoodCase{"DockerIoLibraryNested", "docker.io/library/a/b", "docker.io", "library/a/b", "latest", {},
                 "docker.io/library/a/b:latest", "library/a/b:latest"},
        GoodCase{"LocalhostIsADomain", "localhost/x", "localhost", "x", "latest", {}, "localhost/x:latest",
                 "localhost/x:latest"},
        GoodCase{"LocalhostWithPort", "localhost:5000/x", "localhost:5000", "x", "latest", {},
                 "localhost:5000/x:latest", "localhost:5000/x:latest"},
        GoodCase{"LocalhostPortDeepPathAndTag", "localhost:5000/a/b:tag", "localhost:5000", "a/b", "tag", {},
                 "localhost:5000/a/b:tag", "localhost:5000/a/b:tag"},
        GoodCase{"HostPortWithDigest", "host:5000/a/b@" + Sha256(), "host:5000", "a/b", {}, Sha256(),
                 "host:5000/a/b@" + Sha256(), "host:5000/a/b@" + Sha256()},
        GoodCase{"TagAndDigestTogether", "alpine:3.19@" + Sha256(), "docker.io", "library/alpine", "3.19", Sha256(),
                 "docker.io/library/alpine:3.19@" + Sha256(), "alpine:3.19@" + Sha256()},
        GoodCase{"DigestWithoutTagGetsNoLatest", "alpine@" + Sha256(), "docker.io", "library/alpine", {}, Sha256(),
                 "docker.io/library/alpine@" + Sha256(), "alpine@" + Sha256()},
        GoodCase{"Sha512Digest", "ghcr.io/o/r@sha512:" + std::string(128, 'a'), "ghcr.io", "o/r", {},
                 "sha512:" + std::string(128, 'a'), "ghcr.io/o/r@sha512:" + std::string(128, 'a'),
                 "ghcr.io/o/r@sha512:" + std::string(128, 'a')},
        GoodCase{"DottedDomain", "ghcr.io/org/repo:v1.2.3", "ghcr.io", "org/repo", "v1.2.3", {},
                 "ghcr.io/org/repo:v1.2.3", "ghcr.io/org/repo:v1.2.3"},
        GoodCase{"MicrosoftWindowsImage", "mcr.microsoft.com/windows/servercore:ltsc2022", "mcr.microsoft.com",
                 "windows/servercore", "ltsc2022", {}, "mcr.microsoft.com/windows/servercore:ltsc2022",
                 "mcr.microsoft.com/windows/servercore:ltsc2022"},
        GoodCase{"DeepPath", "registry.example.com/a/b/c/d:1", "registry.example.com", "a/b/c/d", "1", {},
                 "registry.example.com/a/b/c/d:1", "registry.example.com/a/b/c/d:1"},
        GoodCase{"Ipv4WithPort", "127.0.0.1:5000/x", "127.0.0.1:5000", "x", "latest", {},
                 "127.0.0.1:5000/x:latest", "127.0.0.1:5000/x:latest"},
        GoodCase{"Ipv6WithPort", "[::1]:5000/x:1", "[::1]:5000", "x", "1", {}, "[::1]:5000/x:1", "[::1]:5000/x:1"},
        GoodCase{"UpperCaseFirstSegmentIsADomain", "Foo/bar", "Foo", "bar", "latest", {}, "Foo/bar:latest",
                 "Foo/bar:latest"},
        GoodCase{"AllSeparators", "my-registry.local/a__b/c-d/e.f/g_h/i---j:TAG_1.x-y", "my-registry.local",
                 "a__b/c-d/e.f/g_h/i---j", "TAG_1.x-y", {}, "my-registry.local/a__b/c-d/e.f/g_h/i---j:TAG_1.x-y",
                 "my-registry.local/a__b/c-d/e.f/g_h/i---j:TAG_1.x-y"},
        GoodCase{"HostAndPortWithoutSlashIsNameAndTag", "localhost:5000", "docker.io", "library/localhost", "5000",
                 {}, "docker.io/library/localhost:5000", "localhost:5000"},
        GoodCase{"TagOf128Characters", "alpine:" + kTag128, "docker.io", "library/alpine", kTag128, {},
                 "docker.io/library/alpine:" + kTag128, "alpine:" + kTag128},
        GoodCase{"TagStartingWithUnderscore", "alpine:_x", "docker.io", "library/alpine", "_x", {},
                 "docker.io/library/alpine:_x", "alpine:_x"},
        GoodCase{"NameOfExactly255Characters", "example.com/" + std::string(243, 'a'), "example.com",
                 std::string(243, 'a'), "latest", {}, "example.com/" + std::string(243, 'a') + ":latest",
                 "example.com/" + std::string(243, 'a') + ":latest"}),
    [](const testing::TestParamInfo<GoodCase>& info) { return std::string(info.param.test_name); });

// ---- Inputs that must be refused, with the reason the message must carry ----

struct BadCase {
  const char* test_name;
  std::string input;
  std::string reason;  // substring of the error message
};

std::ostream& operator<<(std::ostream& out, const BadCase& c) { return out << '"' << c.input << '"'; }

class ReferenceRejectsTest : public testing::TestWithParam<BadCase> {};

TEST_P(ReferenceRejectsTest, WithInvalidArgumentNamingInputAndReason) {
  const BadCase& c = GetParam();
  Result<Reference> reference = Reference::Parse(c.input);
  ASSERT_FALSE(reference.has_value()) << "parsed as " << reference->String();
  EXPECT_EQ(reference.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(reference.error().message().find("invalid reference \"" + c.input + "\""), std::string::npos)
      << reference.error().message();
  EXPECT_NE(reference.error().message().find(c.reason), std::string::npos) << reference.error().message();
}

INSTANTIATE_TEST_SUITE_P(
    Bad, ReferenceRejectsTest,
    testing::Values(
        BadCase{"Empty", "", "empty"},
        BadCase{"UpperCaseRepository", "Alpine", "must be lowercase"},
        BadCase{"UpperCaseInPathAfterDomain", "docker.io/Library/alpine", "must be lowercase"},
        BadCase{"UpperCaseAfterRegistry", "ghcr.io/Org/repo", "must be lowercase"},
        BadCase{"EmptyTag", "alpine:", "empty tag"},
        BadCase{"TagStartingWithDash", "alpine:-bad", "must start with"},
        BadCase{"TagStartingWithDot", "alpine:.bad", "must start with"},
        BadCase{"TagWithInvalidCharacter", "alpine:bad!", "invalid character '!' in tag"},
        BadCase{"TagOf129Characters", "alpine:" + std::string(129, 't'), "longer than 128"},
        BadCase{"EmptyDigest", "alpine@", "empty digest"},
        BadCase{"NonHexDigest", "alpine@sha256:" + std::string(64, 'z'), "invalid digest"},
        BadCase{"ShortDigest", "alpine@sha256:" + std::string(63, 'a'), "invalid digest"},
        BadCase{"UpperCaseDigest", "alpine@sha256:" + std::string(64, 'A'), "invalid digest"},
        BadCase{"UnknownDigestAlgorithm", "alpine@md5:d41d8cd98f00b204e9800998ecf8427e", "invalid digest"},
        BadCase{"TwoAtSigns", "alpine@sha256:" + std::string(kHex) + "@x", "invalid digest"},
        BadCase{"TrailingSlash", "foo/", "trailing '/'"},
        BadCase{"TrailingSlashAfterDomain", "localhost:5000/", "trailing '/'"},
        BadCase{"LeadingSlash", "/foo", "leading '/'"},
        BadCase{"DoubleSlash", "foo//bar", "empty path segment"},
        BadCase{"DoubleSlashAfterDomain", "example.com//bar", "empty path segment"},
        BadCase{"DoubleDot", "a..b", "path segment \"a..b\""},
        BadCase{"DotUnderscore", "a._b", "path segment \"a._b\""},
        BadCase{"TripleUnderscore", "a___b", "path segment \"a___b\""},
        BadCase{"LeadingDash", "-a", "path segment \"-a\""},
        BadCase{"TrailingDash", "a-", "path segment \"a-\""},
        BadCase{"TrailingDotInPath", "foo/bar.", "path segment \"bar.\""},
        BadCase{"Space", "a b", "invalid character ' '"},
        BadCase{"NonAscii", "caf\xc3\xa9", "invalid character '\\xc3'"},
        BadCase{"Bang", "foo!bar", "invalid character '!' in repository name"},
        BadCase{"ColonInsidePath", "a:b:c", "invalid character ':' in repository name"},
        BadCase{"NonNumericPort", "host:abc/x", "invalid port"},
        BadCase{"EmptyPort", "host:/x", "invalid port"},
        BadCase{"UnderscoreInDomain", "exa_mple.com/x", "invalid domain"},
        BadCase{"DomainLabelStartingWithDash", "-host.com/x", "invalid domain"},
        BadCase{"EmptyDomainLabel", "a..com/x", "invalid domain"},
        BadCase{"UnterminatedIpv6", "[::1/foo", "unterminated '['"},
        BadCase{"NameOver255Characters", "example.com/" + std::string(244, 'a'), "more than 255"},
        BadCase{"NormalisedNameOver255Characters", std::string(240, 'a'), "more than 255"},
        BadCase{"ImageIdLikeName", std::string(kHex), "ambiguous with an image ID"}),
    [](const testing::TestParamInfo<BadCase>& info) { return std::string(info.param.test_name); });

// ---- Accessors and copies ----

TEST(ReferenceTest, ApiHostOfDockerHubIsRegistry1) {
  EXPECT_EQ(Reference::Parse("alpine")->ApiHost(), "registry-1.docker.io");
  EXPECT_EQ(Reference::Parse("index.docker.io/foo/bar")->ApiHost(), "registry-1.docker.io");
  EXPECT_EQ(Reference::Parse("localhost:5000/x")->ApiHost(), "localhost:5000");
  EXPECT_EQ(Reference::Parse("ghcr.io/o/r")->ApiHost(), "ghcr.io");
}

TEST(ReferenceTest, ManifestReferencePrefersDigestOverTag) {
  EXPECT_EQ(Reference::Parse("alpine")->ManifestReference(), "latest");
  EXPECT_EQ(Reference::Parse("alpine:3")->ManifestReference(), "3");
  EXPECT_EQ(Reference::Parse("alpine:3@" + Sha256())->ManifestReference(), Sha256());
}

TEST(ReferenceTest, WithTagReplacesTagAndChecksIt) {
  Result<Reference> reference = Reference::Parse("localhost:5000/a/b:1");
  ASSERT_TRUE(reference.has_value());
  Result<Reference> retagged = reference->WithTag("2");
  ASSERT_TRUE(retagged.has_value());
  EXPECT_EQ(retagged->String(), "localhost:5000/a/b:2");
  EXPECT_EQ(reference->String(), "localhost:5000/a/b:1");

  Result<Reference> bad = reference->WithTag("-x");
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(bad.error().message().find("\"-x\""), std::string::npos) << bad.error().message();
}

TEST(ReferenceTest, WithDigestKeepsTag) {
  Result<Reference> reference = Reference::Parse("alpine:3");
  ASSERT_TRUE(reference.has_value());
  Result<Digest> digest = Digest::Parse(Sha256());
  ASSERT_TRUE(digest.has_value());
  Reference pinned = reference->WithDigest(*digest);
  EXPECT_EQ(pinned.String(), "docker.io/library/alpine:3@" + Sha256());
  EXPECT_EQ(pinned.ManifestReference(), Sha256());
}

TEST(ReferenceTest, EqualityComparesNormalisedForms) {
  EXPECT_EQ(*Reference::Parse("alpine"), *Reference::Parse("docker.io/library/alpine:latest"));
  EXPECT_EQ(*Reference::Parse("index.docker.io/alpine"), *Reference::Parse("alpine:latest"));
  EXPECT_NE(*Reference::Parse("alpine"), *Reference::Parse("alpine:3"));
}

TEST(ReferenceTest, FormatsWithFmtAsFullString) {
  EXPECT_EQ(fmt::format("{}", *Reference::Parse("user/app:1")), "docker.io/user/app:1");
}

TEST(ReferenceTest, FamiliarNameDropsDockerIoAndLoneLibrary) {
  EXPECT_EQ(Reference::Parse("alpine")->FamiliarName(), "alpine");
  EXPECT_EQ(Reference::Parse("user/app")->FamiliarName(), "user/app");
  EXPECT_EQ(Reference::Parse("quay.io/library/alpine")->FamiliarName(), "quay.io/library/alpine");
}

// Found by tests/fuzz/reference_fuzz.cc: dropping docker.io here would name registry foo.io.
TEST(ReferenceTest, FamiliarNameKeepsDockerIoBeforeADomainLikeSegment) {
  EXPECT_EQ(Reference::Parse("index.docker.io/foo.io/bar")->FamiliarName(), "docker.io/foo.io/bar");
  EXPECT_EQ(Reference::Parse("docker.io/localhost/bar:1")->FamiliarString(), "docker.io/localhost/bar:1");
  EXPECT_EQ(Reference::Parse("docker.io/library/foo.io")->FamiliarName(), "foo.io");
  const std::string hex(64, 'b');
  EXPECT_EQ(Reference::Parse("library/" + hex)->FamiliarName(), "library/" + hex);
}

}  // namespace
}  // namespace strata::oci
