#include "registry/tags.h"

#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "registry/registry_errors.h"
#include "registry/url.h"

namespace strata::registry {
namespace {

std::string_view TrimSpaces(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

// The target of the first `rel="next"` link among the Link header values (RFC 8288:
// `<target>; param=value; ...`, several links separated by commas), if any.
std::optional<std::string> NextLink(const HttpHeaders& headers) {
  for (std::string_view value : headers.GetAll("Link")) {
    while (true) {
      size_t open = value.find('<');
      if (open == std::string_view::npos) break;
      size_t close = value.find('>', open);
      if (close == std::string_view::npos) break;
      std::string_view target = value.substr(open + 1, close - open - 1);
      value.remove_prefix(close + 1);
      // Parameters run to the next link's comma (targets, between <>, may hold commas).
      size_t end = value.find(',');
      std::string_view params = value.substr(0, end);
      value.remove_prefix(end == std::string_view::npos ? value.size() : end + 1);
      while (!params.empty()) {
        size_t semicolon = params.find(';');
        std::string_view param = TrimSpaces(params.substr(0, semicolon));
        params.remove_prefix(semicolon == std::string_view::npos ? params.size() : semicolon + 1);
        size_t equals = param.find('=');
        if (equals == std::string_view::npos) continue;
        std::string name(TrimSpaces(param.substr(0, equals)));
        std::string_view rel = TrimSpaces(param.substr(equals + 1));
        if (rel.size() >= 2 && rel.front() == '"' && rel.back() == '"') rel = rel.substr(1, rel.size() - 2);
        for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (name != "rel") continue;
        // rel may list several relation types separated by spaces.
        for (size_t start = 0; start < rel.size();) {
          size_t space = rel.find(' ', start);
          if (rel.substr(start, space - start) == "next") return std::string(target);
          start = space == std::string_view::npos ? rel.size() : space + 1;
        }
      }
    }
  }
  return std::nullopt;
}

Result<std::vector<std::string>> ListTagsOn(Resolver& resolver, const RegistryHost& host,
                                            const oci::Reference& repository, int page_size,
                                            const std::string& what) {
  std::string url = host.RepositoryUrl(repository.path()) + "tags/list";
  if (page_size > 0) url += fmt::format("?n={}", page_size);
  std::vector<std::string> tags;
  std::set<std::string> visited;
  while (true) {
    if (!visited.insert(url).second) {
      return Fail(ErrorCode::kFailedPrecondition, "{}: the registry's Link headers lead back to {}", what, url);
    }
    HttpRequest request{.method = "GET", .url = url, .headers = {{"Accept", "application/json"}}};
    STRATA_ASSIGN_OR_RETURN(HttpResponse response, resolver.Send(host, repository, request));
    if (response.status != 200) return Fail(StatusError(response, what));
    auto doc = nlohmann::json::parse(response.body, nullptr, /*allow_exceptions=*/false);
    if (!doc.is_object()) {
      return Fail(ErrorCode::kInvalidArgument, "{}: {} answered {} bytes that are not a JSON object", what, url,
                  response.body.size());
    }
    if (auto it = doc.find("tags"); it != doc.end() && !it->is_null()) {
      if (!it->is_array()) return Fail(ErrorCode::kInvalidArgument, "{}: \"tags\" is not an array", what);
      for (const auto& tag : *it) {
        if (!tag.is_string()) return Fail(ErrorCode::kInvalidArgument, "{}: a tag is not a string", what);
        tags.push_back(tag.get<std::string>());
      }
    } else if (it == doc.end() && !doc.contains("name")) {
      return Fail(ErrorCode::kInvalidArgument, "{}: {} answered JSON without \"tags\"", what, url);
    }
    std::optional<std::string> next = NextLink(response.headers);
    if (!next) return tags;
    // Relative to the URL that answered (a redirect may have moved us).
    std::string base = response.effective_url.empty() ? url : response.effective_url;
    STRATA_ASSIGN_OR_RETURN(url, ResolveUrl(base, *next));
  }
}

}  // namespace

Result<std::vector<std::string>> ListTags(Resolver& resolver, const oci::Reference& repository, int page_size) {
  const std::string what = fmt::format("tags of {}", repository.name());
  STRATA_ASSIGN_OR_RETURN(std::vector<RegistryHost> hosts, resolver.Hosts(repository, kCapabilityResolve));
  return TryEachHost<std::vector<std::string>>(hosts, what, [&](const RegistryHost& host) {
    return ListTagsOn(resolver, host, repository, page_size, what);
  });
}

}  // namespace strata::registry
