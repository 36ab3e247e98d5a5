// `strata snapshots ls|prepare|view|commit|rm|mounts|usage|cleanup`: the overlay
// snapshotter by hand, for debugging (as `ctr snapshots` is for containerd's).
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/app.h"
#include "cli/format.h"
#include "store/filters.h"
#include "store/store.h"

namespace strata::cli {
namespace {

using json = nlohmann::ordered_json;

// One line per mount, in the form `mount -t TYPE -o OPTIONS SOURCE TARGET` takes.
void PrintMounts(const std::vector<snapshotter::Mount>& mounts, bool as_json) {
  if (as_json) {
    json out = json::array();
    for (const auto& m : mounts) out.push_back({{"type", m.type}, {"source", m.source}, {"options", m.options}});
    fmt::print("{}\n", JsonText(out));
    return;
  }
  for (const auto& m : mounts) {
    std::string options;
    for (const auto& option : m.options) options += (options.empty() ? "" : ",") + option;
    fmt::print("mount -t {} {}{} <target>\n", m.type, options.empty() ? "" : "-o " + options + " ", m.source);
  }
}

struct SnapshotArgs {
  std::string key;
  std::string parent;
  std::string name;
  std::vector<std::string> labels;
  std::vector<std::string> keys;
  std::vector<std::string> filters;
};

}  // namespace

void AddSnapshotCommands(CLI::App& app, const GlobalOptions& options) {
  auto* snapshots = app.add_subcommand("snapshots", "Inspect and manage overlay snapshots (debugging)");
  snapshots->require_subcommand(1);
  auto args = std::make_shared<SnapshotArgs>();

  auto* ls = snapshots->add_subcommand("ls", "List snapshots: key or name, parent, kind");
  ls->add_option("filter", args->filters, "containerd filter expressions, e.g. kind==committed");
  ls->callback([&options, args] {
    auto filter = OrDie(store::Filter::Parse(args->filters));
    auto store = OpenStoreOrDie(options);
    auto snapshotter = OpenSnapshotterOrDie(*store);
    std::vector<std::vector<std::string>> rows{{"KEY", "PARENT", "KIND"}};
    json out = json::array();
    OrDie(snapshotter->Walk(filter, [&](const snapshotter::SnapshotInfo& info) {
      const std::string kind(snapshotter::KindName(info.kind));
      rows.push_back({info.name, info.parent, kind});
      out.push_back({{"key", info.name}, {"parent", info.parent}, {"kind", kind}, {"labels", info.labels},
                     {"created", store::FormatTimestamp(info.created_at)}});
      return true;
    }));
    if (options.json) {
      fmt::print("{}\n", JsonText(out));
    } else {
      PrintTable(rows);
    }
  });

  auto* prepare = snapshots->add_subcommand("prepare", "Create an active snapshot over PARENT and print its mounts");
  prepare->add_option("key", args->key, "New snapshot key")->required();
  prepare->add_option("parent", args->parent, "Committed parent (none: an empty snapshot)");
  prepare->add_option("--label", args->labels, "KEY=VALUE label (repeatable)")->allow_extra_args(false);
  auto* view = snapshots->add_subcommand("view", "Create a read-only view of PARENT and print its mounts");
  view->add_option("key", args->key, "New snapshot key")->required();
  view->add_option("parent", args->parent, "Committed snapshot to view")->required();
  view->add_option("--label", args->labels, "KEY=VALUE label (repeatable)")->allow_extra_args(false);
  for (auto* cmd : {prepare, view}) {
    const bool is_view = cmd == view;
    cmd->callback([&options, args, is_view] {
      auto store = OpenStoreOrDie(options);
      auto snapshotter = OpenSnapshotterOrDie(*store);
      const store::Labels labels = ParseLabelsOrDie(args->labels);
      auto mounts = OrDie(is_view ? snapshotter->View(args->key, args->parent, labels)
                                  : snapshotter->Prepare(args->key, args->parent, labels));
      PrintMounts(mounts, options.json);
    });
  }

  auto* commit = snapshots->add_subcommand("commit", "Commit active snapshot KEY as NAME");
  commit->add_option("name", args->name, "Name of the committed snapshot")->required();
  commit->add_option("key", args->key, "Active snapshot")->required();
  commit->add_option("--label", args->labels, "KEY=VALUE label (repeatable)")->allow_extra_args(false);
  commit->callback([&options, args] {
    auto store = OpenStoreOrDie(options);
    auto snapshotter = OpenSnapshotterOrDie(*store);
    OrDie(snapshotter->Commit(args->name, args->key, ParseLabelsOrDie(args->labels)));
    fmt::print("{}\n", args->name);
  });

  auto* rm = snapshots->add_subcommand("rm", "Remove snapshots (metadata only: directories go at `snapshots cleanup` or gc)");
  rm->add_option("key", args->keys, "Snapshot keys or names")->required();
  rm->callback([&options, args] {
    auto store = OpenStoreOrDie(options);
    auto snapshotter = OpenSnapshotterOrDie(*store);
    for (const auto& key : args->keys) {
      OrDie(snapshotter->Remove(key));
      fmt::print("{}\n", key);
    }
  });

  auto* mounts = snapshots->add_subcommand("mounts", "Print the mounts of snapshot KEY");
  mounts->add_option("key", args->key, "Active snapshot or view")->required();
  mounts->callback([&options, args] {
    auto store = OpenStoreOrDie(options);
    auto snapshotter = OpenSnapshotterOrDie(*store);
    PrintMounts(OrDie(snapshotter->Mounts(args->key)), options.json);
  });

  auto* usage = snapshots->add_subcommand("usage", "Disk usage of snapshots (all, or the keys given)");
  usage->add_option("key", args->keys, "Snapshot keys or names");
  usage->callback([&options, args] {
    auto store = OpenStoreOrDie(options);
    auto snapshotter = OpenSnapshotterOrDie(*store);
    std::vector<std::string> keys = args->keys;
    if (keys.empty()) {
      OrDie(snapshotter->Walk(OrDie(store::Filter::Parse({})), [&](const snapshotter::SnapshotInfo& info) {
        keys.push_back(info.name);
        return true;
      }));
    }
    std::vector<std::vector<std::string>> rows{{"KEY", "SIZE", "INODES"}};
    json out = json::array();
    for (const auto& key : keys) {
      auto used = OrDie(snapshotter->UsageOf(key));
      rows.push_back({key, HumanSize(used.size), std::to_string(used.inodes)});
      out.push_back({{"key", key}, {"size", used.size}, {"inodes", used.inodes}});
    }
    if (options.json) {
      fmt::print("{}\n", JsonText(out));
    } else {
      PrintTable(rows);
    }
  });

  auto* cleanup = snapshots->add_subcommand("cleanup", "Remove snapshot directories no snapshot names");
  cleanup->callback([&options] {
    auto store = OpenStoreOrDie(options);
    OrDie(OpenSnapshotterOrDie(*store)->Cleanup());
  });
}

}  // namespace strata::cli
