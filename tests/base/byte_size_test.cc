#include "base/byte_size.h"

#include <gtest/gtest.h>

#include "tests/support/assertions.h"

namespace strata {
namespace {

TEST(ByteSizeTest, NumbersWithBinaryUnitsInAnySpelling) {
  EXPECT_EQ(ParseByteSize("4096").value(), 4096u);
  EXPECT_EQ(ParseByteSize("0").value(), 0u);
  EXPECT_EQ(ParseByteSize("7B").value(), 7u);
  EXPECT_EQ(ParseByteSize("2K").value(), 2048u);
  EXPECT_EQ(ParseByteSize("512M").value(), uint64_t{512} << 20);
  EXPECT_EQ(ParseByteSize("512MiB").value(), uint64_t{512} << 20);
  EXPECT_EQ(ParseByteSize("20g").value(), uint64_t{20} << 30);
  EXPECT_EQ(ParseByteSize("20GB").value(), uint64_t{20} << 30);
  EXPECT_EQ(ParseByteSize("3t").value(), uint64_t{3} << 40);
}

TEST(ByteSizeTest, AnythingElseIsRefusedNamingTheText) {
  for (const char* text : {"", "G", "lots", "1X", "1.5G", "-1", "1 G", "1GiBB", "99999999999999999999",
                           "17179869184G"}) {
    SCOPED_TRACE(text);
    auto size = ParseByteSize(text);
    ASSERT_FALSE(size);
    EXPECT_EQ(size.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(size.error().message().find("is not a size"), std::string::npos) << size.error().message();
  }
}

}  // namespace
}  // namespace strata
