// Reading registry answers: error documents, the Error a status becomes, and Warning
// headers.
#include "registry/registry_errors.h"

#include <gtest/gtest.h>

namespace strata::registry {
namespace {

TEST(RegistryErrorsTest, ErrorDocumentCodesAndMessages) {
  RegistryErrors errors = ParseRegistryErrors(
      R"({"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"},{"code":"DENIED"}]})");
  EXPECT_EQ(errors.text, "BLOB_UNKNOWN: blob unknown to registry; DENIED");
  EXPECT_TRUE(errors.unknown);
  EXPECT_EQ(ParseRegistryErrors("<html>oops</html>").text, "");
}

TEST(RegistryErrorsTest, StatusErrorCodes) {
  HttpResponse response;
  response.status = 404;
  EXPECT_EQ(StatusError(response, "blob x").code(), ErrorCode::kNotFound);
  response.status = 401;
  EXPECT_EQ(StatusError(response, "blob x").code(), ErrorCode::kFailedPrecondition);
  response.status = 503;
  Error unavailable = StatusError(response, "blob x");
  EXPECT_EQ(unavailable.code(), ErrorCode::kUnavailable);
  EXPECT_NE(unavailable.message().find("blob x"), std::string::npos);
  EXPECT_NE(unavailable.message().find("503"), std::string::npos);
}

TEST(RegistryErrorsTest, Only299WarningTextsAreShown) {
  EXPECT_EQ(ParseRegistryWarnings({R"(299 - "Docker Hub will stop serving schema 1")"}),
            (std::vector<std::string>{"Docker Hub will stop serving schema 1"}));
  // Several in one value, a warn-date with a comma, escapes, and a non-299 code.
  EXPECT_EQ(ParseRegistryWarnings({R"(299 - "first \"quoted\"" "Tue, 15 Nov 1994 08:12:31 GMT", 110 - "stale", )"
                                   R"(299 registry.example "second")"}),
            (std::vector<std::string>{"first \"quoted\"", "second"}));
  EXPECT_TRUE(ParseRegistryWarnings({"299 - unquoted", R"(299 - "unterminated)", ""}).empty());
}

}  // namespace
}  // namespace strata::registry
