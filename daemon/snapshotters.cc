#include "daemon/snapshotters.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace strata::daemon {

snapshotter::UnionMount UnionMountOf(const PersonalitySpec& spec) {
  auto parsed = snapshotter::ParseUnionMount(spec.driver);
  return parsed ? *parsed : snapshotter::UnionMount::kKernelOverlay;
}

Result<PersonalitySpec> ParsePersonalitySpec(const std::string& text) {
  PersonalitySpec spec;
  const size_t eq = text.find('=');
  spec.name = text.substr(0, eq);
  if (eq != std::string::npos) spec.driver = text.substr(eq + 1);
  const bool name_ok = !spec.name.empty() && spec.name.size() <= 64 &&
                       spec.name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") ==
                           std::string::npos &&
                       spec.name != "." && spec.name != "..";
  if (!name_ok) {
    return Fail(ErrorCode::kInvalidArgument, "snapshotter name {:?}: use 1-64 of A-Z a-z 0-9 . _ -", spec.name);
  }
  if (auto known = snapshotter::ParseUnionMount(spec.driver); !known || spec.driver.empty()) {
    return Fail(ErrorCode::kInvalidArgument, "snapshotter {}: {}", spec.name,
                known ? "empty driver (drivers: overlay, fsfilter, vm)" : known.error().message());
  }
  return spec;
}

Result<std::unique_ptr<Snapshotters>> Snapshotters::Open(const std::filesystem::path& root, store::MetaDB& db,
                                                         const std::vector<PersonalitySpec>& specs) {
  auto result = std::make_unique<Snapshotters>();
  for (const PersonalitySpec& spec : specs) {
    if (result->by_name_.contains(spec.name)) {
      return Fail(ErrorCode::kInvalidArgument, "snapshotter {} is configured twice", spec.name);
    }
    STRATA_ASSIGN_OR_RETURN(auto snapshotter,
                            snapshotter::OverlaySnapshotter::OpenIn(root / "proxy-snapshots" / spec.name, db,
                                                                    "proxy/" + spec.name, UnionMountOf(spec)));
    result->by_name_.emplace(spec.name, std::move(snapshotter));
  }
  return result;
}

Result<snapshotter::OverlaySnapshotter*> Snapshotters::Find(const std::string& name) const {
  auto it = by_name_.find(name);
  if (it == by_name_.end()) {
    return Fail(ErrorCode::kNotFound, "snapshotter {:?} is not served here (serving: {})", name,
                fmt::join(names(), ", "));
  }
  return it->second.get();
}

std::vector<std::string> Snapshotters::names() const {
  std::vector<std::string> names;
  for (const auto& [name, _] : by_name_) names.push_back(name);
  return names;
}

}  // namespace strata::daemon
