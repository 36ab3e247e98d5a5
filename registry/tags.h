// Listing a repository's tags: GET /v2/<name>/tags/list, page by page as the registry's
// Link headers lead (distribution-spec "Listing Tags").
#pragma once

#include <string>
#include <vector>

#include "base/error.h"
#include "oci/reference.h"
#include "registry/resolver.h"

namespace strata::registry {

// The tags of `repository` (its tag or digest, if any, is ignored), in the order the registry
// lists them. `page_size` > 0 asks for pages of that many (?n=); the registry may choose
// otherwise. Pages are followed through `Link: <url>; rel="next"` (relative to the URL that
// answered) until one comes without. Hosts with the resolve capability are tried in order
// (mirrors first). Errors: NotFound for an unknown repository; InvalidArgument for a body
// that is not a tag list; FailedPrecondition when the Link chain loops; otherwise as for
// Resolver::Send and StatusError.
Result<std::vector<std::string>> ListTags(Resolver& resolver, const oci::Reference& repository, int page_size = 0);

}  // namespace strata::registry
