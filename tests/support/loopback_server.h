// Pieces shared by the fixtures' small HTTP servers (token server, fault proxy).
#pragma once

#include <optional>
#include <string_view>

#include "base/error.h"
#include "base/file.h"

namespace strata::test_support {

struct LoopbackListener {
  UniqueFd fd;
  int port = 0;
};

// A listening TCP socket on 127.0.0.1 with a kernel-chosen port, kept open (no window for
// another process to take the port). `who` names the server in errors.
Result<LoopbackListener> ListenOnLoopback(std::string_view who);

// Waits for a connection on `listener` or for `wake_fd` to become readable (the server is
// stopping). nullopt = stop serving; otherwise the accepted connection, which is an empty
// UniqueFd when the accept itself failed (try again).
std::optional<UniqueFd> AcceptUnlessWoken(int listener, int wake_fd);

// "OK", "Not Found", ... for the statuses the fixtures send; "Status" otherwise.
std::string_view HttpReasonPhrase(int status);

}  // namespace strata::test_support
