#include "base/error.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace strata {
namespace {

TEST(ErrorTest, ToStringAppendsCodeName) {
  const Error error(ErrorCode::kNotFound, "blob sha256:ab not found");
  EXPECT_EQ(error.ToString(), "blob sha256:ab not found: not found");
  EXPECT_EQ(Error(ErrorCode::kInvalidArgument, "bad").ToString(), "bad: invalid argument");
  EXPECT_EQ(Error(ErrorCode::kUnimplemented, "x").ToString(), "x: not implemented");
}

TEST(ErrorTest, EveryCodeHasAName) {
  for (ErrorCode code : {ErrorCode::kNotFound, ErrorCode::kAlreadyExists, ErrorCode::kFailedPrecondition,
                         ErrorCode::kInvalidArgument, ErrorCode::kUnavailable, ErrorCode::kUnimplemented,
                         ErrorCode::kCanceled, ErrorCode::kInternal}) {
    EXPECT_FALSE(ErrorCodeName(code).empty());
    EXPECT_NE(ErrorCodeName(code), "unknown");
  }
}

TEST(ErrorTest, WithContextPrefixesAndKeepsCode) {
  const Error error(ErrorCode::kUnavailable, "connection refused");
  const Error wrapped = error.WithContext("fetch manifest");
  EXPECT_EQ(wrapped.code(), ErrorCode::kUnavailable);
  EXPECT_EQ(wrapped.message(), "fetch manifest: connection refused");
  EXPECT_EQ(error.message(), "connection refused");  // the original is untouched
}

TEST(ErrorTest, FailFormatsMessage) {
  Result<int> result = Fail(ErrorCode::kFailedPrecondition, "size {} does not match {}", 1234, 1200);
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error(), Error(ErrorCode::kFailedPrecondition, "size 1234 does not match 1200"));
}

Result<int> ParsePositive(int value) {
  if (value <= 0) return Fail(ErrorCode::kInvalidArgument, "{} is not positive", value);
  return value;
}

Status CheckPositive(int value) {
  STRATA_RETURN_IF_ERROR(ParsePositive(value));
  return {};
}

Result<int> SumOfTwo(int a, int b) {
  STRATA_ASSIGN_OR_RETURN(int first, ParsePositive(a));
  STRATA_ASSIGN_OR_RETURN(const int second, ParsePositive(b));
  return first + second;
}

Result<std::unique_ptr<int>> MakeBox(int value) {
  STRATA_RETURN_IF_ERROR(CheckPositive(value));
  return std::make_unique<int>(value);
}

Result<int> Unbox(int value) {
  std::unique_ptr<int> box;
  STRATA_ASSIGN_OR_RETURN(box, MakeBox(value));  // assigns to an existing, move-only variable
  return *box;
}

TEST(ErrorMacrosTest, ReturnIfErrorPassesSuccessThrough) {
  EXPECT_TRUE(CheckPositive(3).has_value());
}

TEST(ErrorMacrosTest, ReturnIfErrorPropagatesError) {
  Status status = CheckPositive(-1);
  ASSERT_FALSE(status.has_value());
  EXPECT_EQ(status.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(status.error().message(), "-1 is not positive");
}

TEST(ErrorMacrosTest, AssignOrReturnAssignsValues) {
  Result<int> sum = SumOfTwo(2, 3);
  ASSERT_TRUE(sum.has_value());
  EXPECT_EQ(*sum, 5);
}

TEST(ErrorMacrosTest, AssignOrReturnPropagatesFirstError) {
  Result<int> sum = SumOfTwo(2, -7);
  ASSERT_FALSE(sum.has_value());
  EXPECT_EQ(sum.error().message(), "-7 is not positive");
}

TEST(ErrorMacrosTest, AssignOrReturnWorksWithMoveOnlyValues) {
  ASSERT_TRUE(Unbox(4).has_value());
  EXPECT_EQ(*Unbox(4), 4);
  ASSERT_FALSE(Unbox(0).has_value());
  EXPECT_EQ(Unbox(0).error().code(), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace strata
