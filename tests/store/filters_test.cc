#include "store/filters.h"

#include <gtest/gtest.h>

#include <map>

#include <fmt/format.h>

namespace strata::store {
namespace {

// A record with name, kind and labels, looked up the way the stores do.
bool Matches(const std::vector<std::string>& filters, const std::map<std::string, std::string>& fields,
             const std::map<std::string, std::string>& labels = {}) {
  auto filter = Filter::Parse(filters);
  EXPECT_TRUE(filter.has_value()) << filter.error().ToString();
  return filter->Match([&](const std::vector<std::string>& path) -> std::optional<std::string> {
    if (path.size() == 1 && fields.contains(path[0])) return fields.at(path[0]);
    if (path.size() == 2 && path[0] == "labels" && labels.contains(path[1])) return labels.at(path[1]);
    return std::nullopt;
  });
}

TEST(Filter, EmptyMatchesEverything) { EXPECT_TRUE(Matches({}, {{"name", "a"}})); }

TEST(Filter, EqualAndNotEqual) {
  EXPECT_TRUE(Matches({"kind==committed"}, {{"kind", "committed"}}));
  EXPECT_FALSE(Matches({"kind==active"}, {{"kind", "committed"}}));
  EXPECT_TRUE(Matches({"kind!=active"}, {{"kind", "committed"}}));
  EXPECT_FALSE(Matches({"parent!=\"\""}, {{"name", "x"}}));  // absent compares as ""
  EXPECT_TRUE(Matches({"parent!=\"\""}, {{"parent", "p"}}));
}

TEST(Filter, PresenceAndQuotedLabelKeys) {
  EXPECT_TRUE(Matches({"labels.\"containerd.io/gc.root\""}, {}, {{"containerd.io/gc.root", "x"}}));
  EXPECT_FALSE(Matches({"labels.\"containerd.io/gc.root\""}, {}, {{"other", "x"}}));
  EXPECT_TRUE(Matches({"labels.\"containerd.io/gc.root\"==x"}, {}, {{"containerd.io/gc.root", "x"}}));
}

TEST(Filter, CommaIsAndSeveralFiltersAreOr) {
  std::map<std::string, std::string> rec = {{"kind", "active"}, {"name", "n1"}};
  EXPECT_TRUE(Matches({"kind==active,name==n1"}, rec));
  EXPECT_FALSE(Matches({"kind==active,name==n2"}, rec));
  EXPECT_TRUE(Matches({"name==n2", "kind==active"}, rec));
}

TEST(Filter, Regex) {
  EXPECT_TRUE(Matches({"name~=^docker\\.io/"}, {{"name", "docker.io/library/alpine"}}));
  EXPECT_FALSE(Matches({"name~=^quay"}, {{"name", "docker.io/library/alpine"}}));
}

TEST(Filter, BadSyntaxIsInvalidArgumentNamingTheFilter) {
  for (const char* bad : {"==x", "name=x", "labels.\"unterminated", "name~=(", "a..b"}) {
    auto filter = Filter::Parse({bad});
    ASSERT_FALSE(filter.has_value()) << bad;
    EXPECT_EQ(filter.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(filter.error().message().find(fmt::format("{:?}", bad)), std::string::npos) << filter.error().message();
  }
}

}  // namespace
}  // namespace strata::store
