// Logging setup. Code logs through spdlog directly (this header includes it):
//   spdlog::info("pulled {} in {:.1f}s", reference, seconds);
// InitLogging installs the process-wide logger; until it runs, spdlog's default logger
// (stdout, info) is in effect.
#pragma once

#include <string_view>

#include <spdlog/spdlog.h>

#include "base/error.h"

namespace strata {

enum class LogLevel { kTrace, kDebug, kInfo, kWarn, kError, kOff };

// Parses "trace", "debug", "info", "warn" (or "warning"), "error", "off", ignoring case.
// InvalidArgument naming the input otherwise.
Result<LogLevel> ParseLogLevel(std::string_view name);
// The canonical lower-case name ("warn" for kWarn).
std::string_view LogLevelName(LogLevel level);

// Makes a stderr logger (coloured when stderr is a terminal) the default and sets its
// level. May be called again to change the level. InvalidArgument for an unknown level,
// in which case nothing changes.
// REQUIRES: no other thread is logging (call it at startup).
Status InitLogging(std::string_view level);

// Changes the level of the default logger. Thread-safe.
void SetLogLevel(LogLevel level);

}  // namespace strata
