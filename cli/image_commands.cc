// `strata images`, `strata tag`, `strata rmi`: the image store's names. While a daemon
// serves the root, each asks it (DaemonClient) instead of opening the store.
#include <nlohmann/json.hpp>

#include "cli/app.h"
#include "cli/daemon_client.h"
#include "cli/format.h"
#include "oci/reference.h"
#include "store/store.h"

namespace strata::cli {
namespace {

using json = nlohmann::ordered_json;

}  // namespace

void AddImageCommands(CLI::App& app, const GlobalOptions& options) {
  auto* images = app.add_subcommand("images", "List images (name -> manifest or index)");
  auto filters = std::make_shared<std::vector<std::string>>();
  images->add_option("filter", *filters, "containerd filter expressions, e.g. name~=alpine");
  images->callback([&options, filters] {
    auto filter = OrDie(store::Filter::Parse(*filters));
    std::vector<store::Image> list;
    if (auto client = DaemonClient::Find(options)) {
      list = OrDie(client->List(*filters));
    } else {
      list = OrDie(OpenStoreOrDie(options)->images().List(filter));
    }
    if (options.json) {
      json out = json::array();
      for (const auto& image : list) {
        out.push_back({{"name", image.name},
                       {"target", json::parse(image.target.Serialize())},
                       {"created_at", store::FormatTimestamp(image.created_at)},
                       {"updated_at", store::FormatTimestamp(image.updated_at)},
                       {"labels", image.labels}});
      }
      fmt::print("{}\n", JsonText(out, 2));
      return;
    }
    std::vector<std::vector<std::string>> rows = {{"NAME", "TYPE", "DIGEST", "SIZE", "CREATED"}};
    for (const auto& image : list) {
      rows.push_back({image.name, image.target.media_type, image.target.digest.ToString(),
                      HumanSize(image.target.size), Age(image.created_at) + " ago"});
    }
    PrintTable(rows);
  });

  auto* tag = app.add_subcommand("tag", "Give an existing image another name");
  struct TagArgs {
    std::string source;
    std::string target;
  };
  auto tag_args = std::make_shared<TagArgs>();
  tag->add_option("source", tag_args->source, "Existing image")->required();
  tag->add_option("target", tag_args->target, "New name")->required();
  tag->callback([&options, tag_args] {
    auto source = NormalisedNameOrDie(tag_args->source);
    auto target = NormalisedNameOrDie(tag_args->target);
    if (auto client = DaemonClient::Find(options)) {
      OrDie(client->Tag(source, target));
    } else {
      auto store = OpenStoreOrDie(options);
      auto image = OrDie(store->images().Get(source));
      image.name = target;
      OrDie(store->images().Put(std::move(image)));
    }
    fmt::print("{}\n", target);
  });

  auto* rmi = app.add_subcommand("rmi", "Remove image names (content goes at the next gc)");
  auto names = std::make_shared<std::vector<std::string>>();
  rmi->add_option("name", *names, "Images to remove")->required();
  rmi->callback([&options, names] {
    std::unique_ptr<DaemonClient> client = DaemonClient::Find(options);
    std::unique_ptr<store::Store> store = client ? nullptr : OpenStoreOrDie(options);
    for (const auto& text : *names) {
      auto name = NormalisedNameOrDie(text);
      if (client) {
        OrDie(client->Remove(name));
      } else {
        OrDie(store->images().Delete(name));
      }
      fmt::print("{}\n", name);
    }
  });
}

}  // namespace strata::cli
