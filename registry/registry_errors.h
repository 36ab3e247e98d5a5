// Reading a registry's answers: the distribution error document and the Error a
// response that is not what we asked for becomes.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "registry/http_client.h"

namespace strata::registry {

// The registry's error document ({"errors":[{"code","message"}]}) as
// "CODE: message; CODE2: message2" (empty when the body is not one), and whether a code
// says the thing does not exist (MANIFEST_UNKNOWN, NAME_UNKNOWN, BLOB_UNKNOWN).
struct RegistryErrors {
  std::string text;
  bool unknown = false;
};
RegistryErrors ParseRegistryErrors(std::string_view body);

// The Error for a final response with an unexpected status. `what` names the object
// ("manifest docker.io/library/alpine:latest"). NotFound for 404 or an *_UNKNOWN code;
// FailedPrecondition "access denied" for 401/403; Unavailable for 408/429/5xx;
// FailedPrecondition "unexpected answer" otherwise. The message carries the status and the
// registry's error text.
Error StatusError(const HttpResponse& response, std::string_view what);

// The texts of the "299" warnings in Warning header values (`299 - "Docker Hub will ..."`,
// several per value allowed, RFC 9111 §5.5), which registries use for deprecation notices
// the user should see. Other warn-codes and malformed values are ignored.
std::vector<std::string> ParseRegistryWarnings(const std::vector<std::string_view>& header_values);

}  // namespace strata::registry
