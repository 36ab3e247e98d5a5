// Pieces shared by the fixtures' small HTTP servers (token server, fault proxy).
#pragma once

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

// "OK", "Not Found", ... for the statuses the fixtures send; "Status" otherwise.
std::string_view HttpReasonPhrase(int status);

}  // namespace strata::test_support
