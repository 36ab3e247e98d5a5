// `strata gc` and `strata fsck`: keeping the store small and honest. gc goes through a
// daemon serving the root; fsck needs the store to itself.
#include <vector>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/app.h"
#include "cli/daemon_client.h"
#include "cli/format.h"
#include "images/collect_garbage.h"
#include "store/store.h"

namespace strata::cli {

void AddMaintenanceCommands(CLI::App& app, const GlobalOptions& options) {
  auto* gc = app.add_subcommand(
      "gc", "Remove content no image, lease or gc.root label keeps alive, then snapshots no image or mount needs");
  auto dry_run = std::make_shared<bool>(false);
  gc->add_flag("-n,--dry-run", *dry_run, "Report what would be removed, remove nothing");
  gc->callback([&options, dry_run] {
    images::GarbageReport garbage;
    if (auto client = DaemonClient::Find(options)) {  // the daemon collects, between its other calls
      garbage = OrDie(client->CollectGarbage(*dry_run));
    } else {
      auto store = OpenStoreOrDie(options);
      auto snapshotter = OpenSnapshotterOrDie(*store);
      garbage = OrDie(images::CollectGarbage(*store, *snapshotter, *dry_run));
    }
    const store::GcReport& report = garbage.content;
    const std::vector<std::string>& snapshots_removed = garbage.snapshots_removed;
    if (options.json) {
      nlohmann::ordered_json out;
      out["dry_run"] = *dry_run;
      out["blobs_removed"] = nlohmann::json::array();
      for (const auto& d : report.blobs_removed) out["blobs_removed"].push_back(d.ToString());
      out["ingests_removed"] = report.ingests_removed;
      out["leases_expired"] = report.leases_expired;
      out["orphan_files_removed"] = report.orphan_files_removed;
      out["snapshot_dirs_removed"] = report.snapshot_dirs_removed;
      out["snapshots_removed"] = snapshots_removed;
      out["bytes_freed"] = report.bytes_freed;
      out["blobs_kept"] = report.blobs_kept;
      fmt::print("{}\n", JsonText(out, 2));
      return;
    }
    const char* verb = *dry_run ? "would remove" : "removed";
    for (const auto& d : report.blobs_removed) fmt::print("{} blob {}\n", verb, d);
    for (const auto& r : report.ingests_removed) fmt::print("{} ingest {:?}\n", verb, r);
    for (const auto& f : report.orphan_files_removed) fmt::print("{} orphan {}\n", verb, f);
    for (const auto& d : report.snapshot_dirs_removed) fmt::print("{} orphaned snapshot {}\n", verb, d);
    for (const auto& l : report.leases_expired) fmt::print("{} expired lease {}\n", verb, l);
    for (const auto& s : snapshots_removed) fmt::print("{} snapshot {}\n", verb, s);
    fmt::print("{} {} blobs, {} ingests, {} orphan files, {} snapshots; {} freed; {} blobs kept\n", verb,
               report.blobs_removed.size(), report.ingests_removed.size(), report.orphan_files_removed.size(),
               snapshots_removed.size(), HumanSize(report.bytes_freed), report.blobs_kept);
  });

  auto* fsck = app.add_subcommand("fsck", "Verify every blob against its digest and the records against the disk");
  struct FsckArgs {
    bool quick = false;
    bool repair = false;
  };
  auto args = std::make_shared<FsckArgs>();
  fsck->add_flag("--quick", args->quick, "Check sizes only, do not rehash blobs");
  fsck->add_flag("--repair", args->repair, "Fix what is found (drop bad blobs, adopt or remove unnamed files)");
  fsck->callback([&options, args] {
    auto store = OpenStoreOrDie(options);
    auto report = OrDie(store->Check({.quick = args->quick, .repair = args->repair}));
    size_t unrepaired = 0;
    for (const auto& p : report.problems) unrepaired += p.repaired ? 0 : 1;
    if (options.json) {
      nlohmann::ordered_json out;
      out["blobs_checked"] = report.blobs_checked;
      out["bytes_checked"] = report.bytes_checked;
      out["problems"] = nlohmann::json::array();
      for (const auto& p : report.problems) {
        out["problems"].push_back({{"kind", p.kind}, {"subject", p.subject}, {"detail", p.detail}, {"repaired", p.repaired}});
      }
      fmt::print("{}\n", JsonText(out, 2));
    } else {
      for (const auto& p : report.problems) {
        fmt::print("{}: {}: {}{}\n", p.kind, p.subject, p.detail, p.repaired ? " (repaired)" : "");
      }
      fmt::print("checked {} blobs ({}): {} problems, {} repaired\n", report.blobs_checked,
                 HumanSize(report.bytes_checked), report.problems.size(), report.problems.size() - unrepaired);
    }
    if (unrepaired > 0) throw CLI::RuntimeError(1);
  });
}

}  // namespace strata::cli
