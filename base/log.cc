#include "base/log.h"

#include <array>
#include <memory>
#include <utility>

#include <spdlog/sinks/stdout_color_sinks.h>

namespace strata {
namespace {

constexpr std::array<std::pair<std::string_view, LogLevel>, 7> kLevelNames = {{
    {"trace", LogLevel::kTrace},
    {"debug", LogLevel::kDebug},
    {"info", LogLevel::kInfo},
    {"warn", LogLevel::kWarn},
    {"warning", LogLevel::kWarn},
    {"error", LogLevel::kError},
    {"off", LogLevel::kOff},
}};

bool EqualsIgnoringCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    const char lower = (a[i] >= 'A' && a[i] <= 'Z') ? static_cast<char>(a[i] - 'A' + 'a') : a[i];
    if (lower != b[i]) return false;
  }
  return true;
}

spdlog::level::level_enum ToSpdlog(LogLevel level) {
  switch (level) {
    case LogLevel::kTrace: return spdlog::level::trace;
    case LogLevel::kDebug: return spdlog::level::debug;
    case LogLevel::kInfo: return spdlog::level::info;
    case LogLevel::kWarn: return spdlog::level::warn;
    case LogLevel::kError: return spdlog::level::err;
    case LogLevel::kOff: return spdlog::level::off;
  }
  return spdlog::level::info;
}

}  // namespace

Result<LogLevel> ParseLogLevel(std::string_view name) {
  for (const auto& [level_name, level] : kLevelNames) {
    if (EqualsIgnoringCase(name, level_name)) return level;
  }
  return Fail(ErrorCode::kInvalidArgument, "unknown log level {:?} (want trace, debug, info, warn, error or off)",
              name);
}

std::string_view LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kTrace: return "trace";
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kError: return "error";
    case LogLevel::kOff: return "off";
  }
  return "unknown";
}

Status InitLogging(std::string_view level) {
  STRATA_ASSIGN_OR_RETURN(const LogLevel parsed, ParseLogLevel(level));
  // Not registered under a name of its own: set_default_logger replaces the previous
  // default, so calling this twice is fine.
  auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>("strata", std::move(sink));
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ %v");
  logger->set_level(ToSpdlog(parsed));
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(std::move(logger));
  return {};
}

void SetLogLevel(LogLevel level) { spdlog::set_level(ToSpdlog(level)); }

}  // namespace strata
