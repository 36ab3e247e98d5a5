// Error and Result: the one error type that crosses module boundaries.
//
// Codes mirror containerd's errdefs classes so the daemon can map them 1:1 to gRPC
// status codes. Messages say what failed and on what, e.g.
//   "blob sha256:ab.. size 1234 does not match manifest size 1200".
#pragma once

#include <expected>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/format.h>

namespace strata {

enum class ErrorCode {
  kNotFound,
  kAlreadyExists,
  kFailedPrecondition,
  kInvalidArgument,
  kUnavailable,
  kUnimplemented,
  kCanceled,
  kInternal,
};

// Lower-case name as containerd's errdefs prints it ("not found", "already exists", ...).
std::string_view ErrorCodeName(ErrorCode code);

class Error {
 public:
  Error(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}

  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // "<message>: <code name>", the form containerd uses when it wraps errdefs.
  std::string ToString() const;

  // Returns a copy whose message is "<context>: <message>", keeping the code.
  Error WithContext(std::string_view context) const;

  bool operator==(const Error&) const = default;

 private:
  ErrorCode code_;
  std::string message_;
};

template <typename T>
using Result = std::expected<T, Error>;
using Status = Result<void>;

// Builds an unexpected Error with a fmt-formatted message:
//   return Fail(ErrorCode::kNotFound, "blob {} not found", digest);
template <typename... Args>
std::unexpected<Error> Fail(ErrorCode code, fmt::format_string<Args...> format, Args&&... args) {
  return std::unexpected<Error>(Error(code, fmt::format(format, std::forward<Args>(args)...)));
}

inline std::unexpected<Error> Fail(Error error) { return std::unexpected<Error>(std::move(error)); }

}  // namespace strata

// Propagation helpers for functions returning Result/Status.
#define STRATA_CONCAT_INNER(a, b) a##b
#define STRATA_CONCAT(a, b) STRATA_CONCAT_INNER(a, b)

// STRATA_RETURN_IF_ERROR(expr): expr is a Result<T>; returns its error from the caller.
#define STRATA_RETURN_IF_ERROR(expr)                                            \
  do {                                                                          \
    auto&& strata_status_ = (expr);                                             \
    if (!strata_status_) return ::std::unexpected(std::move(strata_status_).error()); \
  } while (0)

// STRATA_ASSIGN_OR_RETURN(lhs, expr): `lhs = std::move(*expr)` or return its error.
#define STRATA_ASSIGN_OR_RETURN(lhs, expr) \
  STRATA_ASSIGN_OR_RETURN_IMPL(STRATA_CONCAT(strata_result_, __LINE__), lhs, expr)
#define STRATA_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr)            \
  auto tmp = (expr);                                            \
  if (!tmp) return ::std::unexpected(std::move(tmp).error());   \
  lhs = std::move(*tmp)
