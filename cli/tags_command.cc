// `strata tags REPO`: the tags a registry lists for a repository, one per line (with
// --json, a JSON array).
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/app.h"
#include "cli/registry_session.h"
#include "oci/reference.h"
#include "registry/tags.h"

namespace strata::cli {
namespace {

struct TagsArgs {
  std::string repository;
  int page_size = 0;
  RegistryFlags registry;
};

void RunTags(const GlobalOptions& options, const TagsArgs& args) {
  oci::Reference repository = OrDie(oci::Reference::Parse(args.repository));
  std::unique_ptr<RegistrySession> session = OpenRegistrySessionOrDie(args.registry, {repository});
  std::vector<std::string> tags = OrDie(registry::ListTags(session->resolver(), repository, args.page_size));
  if (options.json) {
    fmt::print("{}\n", nlohmann::json(tags).dump());
    return;
  }
  for (const std::string& tag : tags) fmt::print("{}\n", tag);
}

}  // namespace

void AddTagsCommand(CLI::App& app, const GlobalOptions& options) {
  auto args = std::make_shared<TagsArgs>();
  auto* cmd = app.add_subcommand("tags", "List the tags of a repository in a registry");
  cmd->add_option("repository", args->repository, "Repository, e.g. alpine or host:5000/team/app")->required();
  cmd->add_option("--page-size", args->page_size, "Ask the registry for pages of this many tags (0: its default)")
      ->check(CLI::NonNegativeNumber);
  AddRegistryFlags(cmd, args->registry);
  cmd->callback([&options, args] { RunTags(options, *args); });
}

}  // namespace strata::cli
