// Results of filesystem operations inside fsfilter: an errno on failure.
//
// The union engine speaks the file-system protocol (FUSE replies carry an errno), so its
// operations return SysResult<T> = expected<T, errno>. Setup that crosses into the rest of
// strata (opening a layer chain) returns strata::Result with a message instead.
#pragma once

#include <cerrno>
#include <expected>

namespace strata::fsfilter {

template <typename T>
using SysResult = std::expected<T, int>;
using SysStatus = SysResult<void>;

// The error of a failed system call: the current errno (EIO if errno is 0).
inline std::unexpected<int> LastErrno() { return std::unexpected<int>(errno != 0 ? errno : EIO); }
inline std::unexpected<int> SysFail(int errnum) { return std::unexpected<int>(errnum); }

}  // namespace strata::fsfilter

// FS_RETURN_IF_ERROR(expr): expr is a SysResult; returns its errno from the caller.
#define FS_RETURN_IF_ERROR(expr)                                      \
  do {                                                                \
    auto&& fs_status_ = (expr);                                       \
    if (!fs_status_) return ::std::unexpected<int>(fs_status_.error()); \
  } while (0)

#define FS_CONCAT_INNER(a, b) a##b
#define FS_CONCAT(a, b) FS_CONCAT_INNER(a, b)
// FS_ASSIGN_OR_RETURN(lhs, expr): `lhs = std::move(*expr)` or return its errno.
#define FS_ASSIGN_OR_RETURN(lhs, expr) FS_ASSIGN_OR_RETURN_IMPL(FS_CONCAT(fs_result_, __LINE__), lhs, expr)
#define FS_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr)                \
  auto tmp = (expr);                                            \
  if (!tmp) return ::std::unexpected<int>(tmp.error());         \
  lhs = std::move(*tmp)
