#include "registry/url.h"

#include <gtest/gtest.h>

namespace strata::registry {
namespace {

std::string Resolve(std::string_view base, std::string_view location) {
  Result<std::string> resolved = ResolveUrl(base, location);
  return resolved ? *resolved : "error: " + resolved.error().ToString();
}

TEST(UrlTest, ResolvesLocations) {
  const std::string base = "https://reg.example:5000/v2/library/alpine/blobs/uploads/";
  EXPECT_EQ(Resolve(base, "https://storage.example/blob?sig=a%2Fb&x=1"), "https://storage.example/blob?sig=a%2Fb&x=1");
  EXPECT_EQ(Resolve(base, "/v2/library/alpine/blobs/uploads/abc?_state=xyz%3D"),
            "https://reg.example:5000/v2/library/alpine/blobs/uploads/abc?_state=xyz%3D");
  EXPECT_EQ(Resolve(base, "abc?_state=1"), "https://reg.example:5000/v2/library/alpine/blobs/uploads/abc?_state=1");
  EXPECT_EQ(Resolve(base, "../../x"), "https://reg.example:5000/v2/library/alpine/x");
  EXPECT_EQ(Resolve(base, "//cdn.example/p"), "https://cdn.example/p");
  EXPECT_FALSE(ResolveUrl("not a url", "/x"));
}

TEST(UrlTest, ParsesOrigins) {
  Result<UrlOrigin> origin = ParseOrigin("HTTPS://Reg.Example/v2/");
  ASSERT_TRUE(origin) << origin.error().ToString();
  EXPECT_EQ(origin->scheme, "https");
  EXPECT_EQ(origin->host, "reg.example");
  EXPECT_EQ(origin->port, 443);
  EXPECT_EQ(origin->HostPort(), "reg.example:443");
  EXPECT_EQ(*ParseOrigin("http://127.0.0.1/"), (UrlOrigin{"http", "127.0.0.1", 80}));
  EXPECT_EQ(ParseOrigin("http://[::1]:5000/")->HostPort(), "[::1]:5000");
  EXPECT_NE(*ParseOrigin("http://a.example/"), *ParseOrigin("https://a.example/"));
  EXPECT_NE(*ParseOrigin("http://a.example:81/"), *ParseOrigin("http://a.example/"));
  EXPECT_FALSE(ParseOrigin("ftp://a.example/"));
  EXPECT_EQ(UrlHostForMessage("http://127.0.0.1:5000/v2/"), "127.0.0.1:5000");
}

TEST(UrlTest, LoopbackDefaultsToPlainHttp) {
  for (const char* host : {"localhost", "localhost:5000", "LocalHost", "127.0.0.1", "127.0.0.1:5000", "127.1.2.3:80",
                           "::1", "[::1]", "[::1]:5000"}) {
    EXPECT_TRUE(DefaultsToPlainHttp(host)) << host;
  }
  for (const char* host : {"registry.example", "registry.example:5000", "128.0.0.1", "10.0.0.1:5000", "::2",
                           "[::2]:5000", "localhost.example", "", "[::1", "127.0.0.1.example"}) {
    EXPECT_FALSE(DefaultsToPlainHttp(host)) << host;
  }
}

}  // namespace
}  // namespace strata::registry
