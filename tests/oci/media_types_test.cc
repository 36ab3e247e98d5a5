#include "oci/media_types.h"

#include <gtest/gtest.h>

namespace strata::oci {
namespace {

using namespace media_type;

TEST(MediaTypesTest, IndexTypes) {
  EXPECT_TRUE(IsIndex(kOciIndex));
  EXPECT_TRUE(IsIndex(kDockerManifestList));
  EXPECT_FALSE(IsIndex(kOciManifest));
  EXPECT_FALSE(IsIndex(kDockerManifest));
  EXPECT_FALSE(IsIndex(""));
}

TEST(MediaTypesTest, ManifestTypes) {
  EXPECT_TRUE(IsManifest(kOciManifest));
  EXPECT_TRUE(IsManifest(kDockerManifest));
  EXPECT_FALSE(IsManifest(kOciIndex));
  EXPECT_FALSE(IsManifest(kDockerSchema1SignedManifest));
  EXPECT_TRUE(IsSchema1Manifest(kDockerSchema1SignedManifest));
  EXPECT_TRUE(IsSchema1Manifest(kDockerSchema1Manifest));
}

TEST(MediaTypesTest, ConfigTypes) {
  EXPECT_TRUE(IsConfig(kOciConfig));
  EXPECT_TRUE(IsConfig(kDockerConfig));
  EXPECT_FALSE(IsConfig(kOciEmpty));
  EXPECT_FALSE(IsConfig(kOciLayerGzip));
}

TEST(MediaTypesTest, LayerTypes) {
  for (std::string_view type : {kOciLayer, kOciLayerGzip, kOciLayerZstd, kOciLayerNondistributable,
                                kOciLayerNondistributableGzip, kOciLayerNondistributableZstd, kDockerLayer,
                                kDockerLayerGzip, kDockerLayerZstd, kDockerForeignLayer, kDockerForeignLayerGzip}) {
    EXPECT_TRUE(IsLayer(type)) << type;
  }
  EXPECT_FALSE(IsLayer(kOciConfig));
  EXPECT_FALSE(IsLayer(kOciManifest));
  EXPECT_FALSE(IsLayer("application/vnd.oci.image.layer.v1.tar+bzip2"));
}

TEST(MediaTypesTest, ForeignLayerTypes) {
  for (std::string_view type : {kOciLayerNondistributable, kOciLayerNondistributableGzip,
                                kOciLayerNondistributableZstd, kDockerForeignLayer, kDockerForeignLayerGzip}) {
    EXPECT_TRUE(IsForeignLayer(type)) << type;
  }
  for (std::string_view type : {kOciLayer, kOciLayerGzip, kOciLayerZstd, kDockerLayerGzip}) {
    EXPECT_FALSE(IsForeignLayer(type)) << type;
  }
}

TEST(MediaTypesTest, IgnoresParametersBlanksAndCase) {
  EXPECT_TRUE(IsManifest("application/vnd.oci.image.manifest.v1+json; charset=utf-8"));
  EXPECT_TRUE(IsIndex("  Application/VND.OCI.image.index.v1+json  "));
  EXPECT_EQ(BaseMediaType("application/json ; q=1"), "application/json");
  EXPECT_EQ(BaseMediaType("  "), "");
  EXPECT_TRUE(SameMediaType("application/JSON", "application/json;charset=utf-8"));
  EXPECT_FALSE(SameMediaType("application/json", "application/jsonx"));
}

TEST(MediaTypesTest, LayerCompression) {
  struct Case {
    std::string_view type;
    Compression want;
  };
  for (const Case& c : {Case{kOciLayer, Compression::kNone}, Case{kOciLayerGzip, Compression::kGzip},
                        Case{kOciLayerZstd, Compression::kZstd}, Case{kOciLayerNondistributable, Compression::kNone},
                        Case{kOciLayerNondistributableGzip, Compression::kGzip},
                        Case{kOciLayerNondistributableZstd, Compression::kZstd}, Case{kDockerLayer, Compression::kNone},
                        Case{kDockerLayerGzip, Compression::kGzip}, Case{kDockerLayerZstd, Compression::kZstd},
                        Case{kDockerForeignLayer, Compression::kNone},
                        Case{kDockerForeignLayerGzip, Compression::kGzip}}) {
    Result<Compression> compression = LayerCompression(c.type);
    ASSERT_TRUE(compression.has_value()) << c.type << ": " << compression.error().ToString();
    EXPECT_EQ(*compression, c.want) << c.type;
  }
}

TEST(MediaTypesTest, LayerCompressionOfNonLayerIsInvalidArgument) {
  Result<Compression> compression = LayerCompression(kOciConfig);
  ASSERT_FALSE(compression.has_value());
  EXPECT_EQ(compression.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(compression.error().message(), "\"application/vnd.oci.image.config.v1+json\" is not a layer media type");
}

TEST(MediaTypesTest, LayerCompressionOfEncryptedLayerIsUnimplemented) {
  Result<Compression> compression = LayerCompression("application/vnd.oci.image.layer.v1.tar+gzip+encrypted");
  ASSERT_FALSE(compression.has_value());
  EXPECT_EQ(compression.error().code(), ErrorCode::kUnimplemented);
}

TEST(MediaTypesTest, CompressionNames) {
  EXPECT_EQ(CompressionName(Compression::kNone), "none");
  EXPECT_EQ(CompressionName(Compression::kGzip), "gzip");
  EXPECT_EQ(CompressionName(Compression::kZstd), "zstd");
}

}  // namespace
}  // namespace strata::oci
