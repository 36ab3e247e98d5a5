#include "base/log.h"

#include <gtest/gtest.h>

namespace strata {
namespace {

TEST(LogTest, ParsesEveryLevel) {
  const std::pair<std::string_view, LogLevel> cases[] = {
      {"trace", LogLevel::kTrace}, {"debug", LogLevel::kDebug}, {"info", LogLevel::kInfo},
      {"warn", LogLevel::kWarn},   {"warning", LogLevel::kWarn}, {"error", LogLevel::kError},
      {"off", LogLevel::kOff},     {"INFO", LogLevel::kInfo},    {"Debug", LogLevel::kDebug},
  };
  for (const auto& [name, level] : cases) {
    SCOPED_TRACE(name);
    Result<LogLevel> parsed = ParseLogLevel(name);
    ASSERT_TRUE(parsed.has_value()) << parsed.error().ToString();
    EXPECT_EQ(*parsed, level);
  }
}

TEST(LogTest, NamesRoundTrip) {
  for (LogLevel level :
       {LogLevel::kTrace, LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarn, LogLevel::kError, LogLevel::kOff}) {
    Result<LogLevel> parsed = ParseLogLevel(LogLevelName(level));
    ASSERT_TRUE(parsed.has_value());
    EXPECT_EQ(*parsed, level);
  }
}

TEST(LogTest, RejectsUnknownLevels) {
  for (std::string_view name : {"", "verbose", "critical", "inf", "info ", "err"}) {
    SCOPED_TRACE(name);
    Result<LogLevel> parsed = ParseLogLevel(name);
    ASSERT_FALSE(parsed.has_value());
    EXPECT_EQ(parsed.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(parsed.error().message().find(fmt::format("\"{}\"", name)), std::string::npos)
        << parsed.error().message();
  }
}

TEST(LogTest, InitLoggingSetsLevelAndRejectsBadOnes) {
  ASSERT_TRUE(InitLogging("debug").has_value());
  EXPECT_EQ(spdlog::default_logger()->level(), spdlog::level::debug);
  spdlog::debug("log_test: debug output goes to stderr");

  // A bad level changes nothing.
  Status bad = InitLogging("loud");
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(spdlog::default_logger()->level(), spdlog::level::debug);

  ASSERT_TRUE(InitLogging("warn").has_value());  // a second call replaces the first
  EXPECT_EQ(spdlog::default_logger()->level(), spdlog::level::warn);
  SetLogLevel(LogLevel::kError);
  EXPECT_EQ(spdlog::default_logger()->level(), spdlog::level::err);
  SetLogLevel(LogLevel::kOff);
  EXPECT_EQ(spdlog::default_logger()->level(), spdlog::level::off);
}

}  // namespace
}  // namespace strata
