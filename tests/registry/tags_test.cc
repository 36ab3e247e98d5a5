// ListTags against the real docker-registry: one page, several pages through Link
// headers, an unknown repository, and token auth.
#include "registry/tags.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <regex>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/registry/registry_client_test_base.h"
#include "tests/support/assertions.h"
#include "tests/support/image_builder.h"
#include "tests/support/loopback_server.h"
#include "tests/support/registry_fixture.h"

namespace strata::registry {
namespace {

// distribution 2.8 ignores ?n= and sends every tag at once, in directory order. This front
// adds the distribution-spec's pagination to a real registry's answer: tags sorted, at most
// n per page after `last`, and `Link: <...>; rel="next"` while more remain — the first
// page's link an absolute path (as distribution 3 writes it), later ones relative to the
// request URL ("list?..."), so both forms get resolved. Other requests get a 404.
class PagingTagsServer {
 public:
  static std::unique_ptr<PagingTagsServer> Start(const test_support::RegistryFixture& registry) {
    std::unique_ptr<PagingTagsServer> server(new PagingTagsServer(registry));
    auto http = test_support::OneShotHttpServer::Start("paging tags server", [self = server.get()](const std::string& head) {
      return self->Answer(head.substr(0, head.find("\r\n")));
    });
    EXPECT_TRUE(http) << http.error().ToString();
    if (!http) return nullptr;
    server->http_ = std::move(*http);
    return server;
  }
  std::string host() const { return fmt::format("127.0.0.1:{}", http_->port()); }
  int pages_served() const { return pages_.load(); }

 private:
  explicit PagingTagsServer(const test_support::RegistryFixture& registry)
      : upstream_(registry.Client()), upstream_url_(registry.url()) {}

  std::string Answer(const std::string& request_line) {
    static const std::regex kTagsList(R"(^GET (/v2/(.+)/tags/)list(\?\S*)? HTTP/1\.1$)");
    std::smatch match;
    if (!std::regex_match(request_line, match, kTagsList)) return Response(404, "", "{}");
    const std::string dir = match[1], name = match[2], query = match[3];
    auto upstream = upstream_.Get(upstream_url_ + dir + "list");
    if (!upstream) return Response(503, "", "{}");
    if (upstream->status != 200) return Response(static_cast<int>(upstream->status), "", upstream->body);
    std::vector<std::string> tags = nlohmann::json::parse(upstream->body)["tags"];
    std::sort(tags.begin(), tags.end());

    std::smatch param;
    size_t n = tags.size();
    std::string last;
    static const std::regex kN(R"([?&]n=(\d+))"), kLast(R"([?&]last=([^&]*))");
    if (std::regex_search(query, param, kN)) n = std::stoul(param[1]);
    if (std::regex_search(query, param, kLast)) last = param[1];
    auto begin = std::upper_bound(tags.begin(), tags.end(), last);
    auto end = begin + static_cast<ptrdiff_t>(std::min<size_t>(n, static_cast<size_t>(tags.end() - begin)));
    std::string link;
    if (end != tags.end()) {
      std::string next = fmt::format("list?n={}&last={}", n, *(end - 1));
      link = fmt::format("Link: <{}>; rel=\"next\"\r\n", last.empty() ? dir + next : next);
    }
    ++pages_;
    nlohmann::json page = {{"name", name}, {"tags", std::vector<std::string>(begin, end)}};
    return Response(200, link, page.dump());
  }

  static std::string Response(int status, const std::string& extra_headers, const std::string& body) {
    return fmt::format(
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n{}",
        status, test_support::HttpReasonPhrase(status), body.size(), extra_headers, body);
  }

  test_support::TestHttpClient upstream_;  // used by the server thread only
  std::string upstream_url_;
  std::atomic<int> pages_{0};
  std::unique_ptr<test_support::OneShotHttpServer> http_;  // last: stopped before what its handler uses
};

using namespace std::chrono_literals;
using test_support::RegistryAuth;
using test_support::RegistryOptions;

class TagsTest : public RegistryClientTest {
 protected:
  void StartRegistry(RegistryOptions options = {}) {
    registry_ = StartTrustedRegistry(std::move(options));
    ASSERT_TRUE(registry_);
  }

  // Pushes one small image under each of `tags`.
  void PushTags(const std::string& repository, const std::vector<std::string>& tags) {
    auto layer = test_support::LayerBuilder().File("hello.txt", "hello\n").Build();
    ASSERT_OK(layer);
    test_support::ImageBuilder builder(test_support::ManifestFormat::kOci);
    builder.AddLayer(std::move(*layer));
    for (const std::string& tag : tags) ASSERT_OK(builder.PushTo(*registry_, repository, tag));
  }

  oci::Reference Repo(const std::string& path) {
    auto reference = oci::Reference::Parse(registry_->host() + "/" + path);
    EXPECT_TRUE(reference) << reference.error().ToString();
    return *reference;
  }

  std::unique_ptr<test_support::RegistryFixture> registry_;
};

const std::vector<std::string> kSevenTags = {"1.0", "1.1", "2.0", "latest", "rc1", "stable", "v3"};

TEST_F(TagsTest, OnePage) {
  StartRegistry();
  ASSERT_NO_FATAL_FAILURE(PushTags("team/app", kSevenTags));
  ASSERT_OK_AND_ASSIGN(auto tags, ListTags(MakeResolver(), Repo("team/app"), /*page_size=*/3));
  std::sort(tags.begin(), tags.end());  // distribution 2.8 lists in directory order, ignoring ?n=
  EXPECT_EQ(tags, kSevenTags);
  EXPECT_EQ(registry_->CountRequests("GET", "/v2/team/app/tags/list"), 1);
}

TEST_F(TagsTest, FollowsLinkHeadersAcrossPages) {
  StartRegistry();
  ASSERT_NO_FATAL_FAILURE(PushTags("team/app", kSevenTags));
  auto pager = PagingTagsServer::Start(*registry_);
  ASSERT_TRUE(pager);
  auto repository = oci::Reference::Parse(pager->host() + "/team/app:ignored");
  ASSERT_OK(repository);
  ASSERT_OK_AND_ASSIGN(auto tags, ListTags(MakeResolver(), *repository, /*page_size=*/3));
  EXPECT_EQ(tags, kSevenTags);  // in page order, none twice
  EXPECT_EQ(pager->pages_served(), 3);  // 3 + 3 + 1

  ASSERT_OK_AND_ASSIGN(auto whole, ListTags(MakeResolver(), *repository));
  EXPECT_EQ(whole, kSevenTags);
  EXPECT_EQ(pager->pages_served(), 4);
}

TEST_F(TagsTest, UnknownRepositoryIsNotFound) {
  StartRegistry();
  auto tags = ListTags(MakeResolver(), Repo("team/absent"));
  ASSERT_FALSE(tags);
  EXPECT_EQ(tags.error().code(), ErrorCode::kNotFound) << tags.error().ToString();
  EXPECT_NE(tags.error().message().find(registry_->host() + "/team/absent"), std::string::npos)
      << tags.error().message();
}

TEST_F(TagsTest, TokenAuth) {
  StartRegistry({.auth = RegistryAuth::kToken, .token = {.require_credentials = true}});
  ASSERT_NO_FATAL_FAILURE(PushTags("team/secure", {"a", "b", "c"}));
  ASSERT_OK_AND_ASSIGN(auto tags,
                       ListTags(MakeResolver(Credentials{.username = "strata", .password = "strata-password"}),
                                Repo("team/secure"), 2));
  std::sort(tags.begin(), tags.end());
  EXPECT_EQ(tags, (std::vector<std::string>{"a", "b", "c"}));
  auto denied = ListTags(MakeResolver(), Repo("team/secure"));
  ASSERT_FALSE(denied);
  EXPECT_EQ(denied.error().code(), ErrorCode::kFailedPrecondition) << denied.error().ToString();
}

}  // namespace
}  // namespace strata::registry
