#include "oci/chain_id.h"

#include <vector>

#include <gtest/gtest.h>

namespace strata::oci {
namespace {

// Expected values computed with coreutils, e.g.
//   printf 'sha256:4fbe... sha256:77ea...' | sha256sum
// where the diff IDs are sha256 of the strings "layer0", "layer1", "layer2".
constexpr std::string_view kDiff0 = "sha256:4fbec69b941195fd56f8212a5000e304129451d82efca94ff0e0fb2d5355472e";
constexpr std::string_view kDiff1 = "sha256:77ea7eee3d80b1a38f83906dd3048e2689457eb90e18a7d12f839c5ae37106a2";
constexpr std::string_view kDiff2 = "sha256:95cf1a2e1698fe3ca1fcc3f653119146b271d0b62e487ec264441e886a11bd06";
constexpr std::string_view kChain1 = "sha256:ef232af0eb422cdfd7917631657cd8ed2bfd5b9461b37c427aa0d3e0a19adf79";
constexpr std::string_view kChain2 = "sha256:7ad3896338947cc04ee0b35b50d400ff32538d63f42f85ec87feac78bf71a54d";

Digest D(std::string_view text) {
  Result<Digest> digest = Digest::Parse(text);
  EXPECT_TRUE(digest.has_value()) << digest.error().ToString();
  return *digest;
}

TEST(ChainIdTest, SingleLayerChainIsItsDiffId) {
  std::vector<Digest> diff_ids = {D(kDiff0)};
  EXPECT_EQ(ChainIDs(diff_ids), diff_ids);
  EXPECT_EQ(ChainID(diff_ids), D(kDiff0));
}

TEST(ChainIdTest, EveryPrefixOfThreeLayers) {
  std::vector<Digest> diff_ids = {D(kDiff0), D(kDiff1), D(kDiff2)};
  std::vector<Digest> chain_ids = ChainIDs(diff_ids);
  ASSERT_EQ(chain_ids.size(), 3u);
  EXPECT_EQ(chain_ids[0].ToString(), kDiff0);
  EXPECT_EQ(chain_ids[1].ToString(), kChain1);
  EXPECT_EQ(chain_ids[2].ToString(), kChain2);
  EXPECT_EQ(ChainID(diff_ids), D(kChain2));
}

TEST(ChainIdTest, DependsOnOrder) {
  std::vector<Digest> forward = {D(kDiff0), D(kDiff1)};
  std::vector<Digest> backward = {D(kDiff1), D(kDiff0)};
  EXPECT_NE(ChainID(forward), ChainID(backward));
}

TEST(ChainIdTest, EmptyInput) {
  EXPECT_TRUE(ChainIDs({}).empty());
  Result<Digest> chain_id = ChainID({});
  ASSERT_FALSE(chain_id.has_value());
  EXPECT_EQ(chain_id.error().code(), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace strata::oci
