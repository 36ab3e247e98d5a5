#include "snapshotter/snapshot_gc.h"

#include <algorithm>
#include <map>
#include <set>

#include "store/filters.h"

namespace strata::snapshotter {

Result<std::vector<std::string>> CollectSnapshots(const store::ContentStore& content, OverlaySnapshotter& snapshots,
                                                  bool dry_run) {
  STRATA_ASSIGN_OR_RETURN(store::Filter everything, store::Filter::Parse({}));
  std::map<std::string, SnapshotInfo> all;
  STRATA_RETURN_IF_ERROR(snapshots.Walk(everything, [&](const SnapshotInfo& info) {
    all.emplace(info.name, info);
    return true;
  }));

  const store::Timestamp now = store::Now();
  std::vector<std::string> roots;
  std::set<std::string> expired;
  for (const auto& [name, info] : all) {
    if (info.kind == Kind::kCommitted) continue;
    auto expire = info.labels.find(std::string(kLabelSnapshotExpire));
    if (expire != info.labels.end()) {
      auto when = store::ParseTimestamp(expire->second);
      if (when && *when < now) {
        expired.insert(name);
        continue;
      }
    }
    roots.push_back(name);
  }
  const std::string ref_label = std::string(store::kLabelGcRefSnapshotPrefix) + snapshots.name();
  STRATA_RETURN_IF_ERROR(content.Walk(everything, [&](const store::ContentInfo& info) {
    auto ref = info.labels.find(ref_label);
    if (ref != info.labels.end()) roots.push_back(ref->second);
    return true;
  }));

  std::set<std::string> live;
  for (std::string name : roots) {
    while (!name.empty() && live.insert(name).second) {
      auto it = all.find(name);
      if (it == all.end()) break;  // a label naming a snapshot that is gone
      name = it->second.parent;
    }
  }

  // Children before parents: deepest first.
  auto depth = [&](std::string name) {
    int d = 0;
    for (auto it = all.find(name); it != all.end() && !it->second.parent.empty(); it = all.find(it->second.parent)) ++d;
    return d;
  };
  std::vector<std::pair<int, std::string>> doomed;
  for (const auto& [name, info] : all) {
    if (!live.contains(name)) doomed.emplace_back(depth(name), name);
  }
  std::sort(doomed.begin(), doomed.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<std::string> removed;
  for (const auto& [unused, name] : doomed) {
    if (!dry_run) STRATA_RETURN_IF_ERROR(snapshots.Remove(name));
    removed.push_back(name);
  }
  return removed;
}

}  // namespace strata::snapshotter
