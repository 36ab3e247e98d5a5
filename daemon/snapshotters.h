// The snapshotter personalities one daemon serves, by the name containerd's proxy plugin
// is configured with (the `snapshotter` field of every snapshots.v1 request).
//
// Each personality is its own namespace: metadata under "proxy/<name>" and directories
// under <root>/proxy-snapshots/<name>/. containerd owns what it creates there (its GC lists
// and removes them), so strata's own snapshots (the CLI's "overlayfs" namespace) never show
// up in a containerd List, and strata's GC never touches containerd's.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "snapshotter/overlay_snapshotter.h"
#include "store/meta_db.h"

namespace strata::daemon {

// "NAME" or "NAME=DRIVER" as `strata serve --snapshotter` takes it. Drivers: "overlay"
// (kernel overlayfs mounts; the default), "fsfilter" (the same snapshots, composed by
// strata's FUSE union view: fuse3.strata-fsfilter mounts) and "vm" (for VM runtimes: each
// layer as a read-only EROFS image, a scratch ext4 disk per container, composed by the
// guest's overlayfs; snapshotter/vm_layout.h).
struct PersonalitySpec {
  std::string name;
  std::string driver = "overlay";
};
snapshotter::UnionMount UnionMountOf(const PersonalitySpec& spec);
// InvalidArgument for a malformed name (allowed: [A-Za-z0-9._-], 1-64 chars) or an
// unknown driver (naming the drivers this build has).
Result<PersonalitySpec> ParsePersonalitySpec(const std::string& text);

class Snapshotters {
 public:
  static Result<std::unique_ptr<Snapshotters>> Open(const std::filesystem::path& root, store::MetaDB& db,
                                                    const std::vector<PersonalitySpec>& specs);

  // NotFound "snapshotter X is not served here (serving: a, b)".
  Result<snapshotter::OverlaySnapshotter*> Find(const std::string& name) const;
  std::vector<std::string> names() const;

 private:
  std::map<std::string, std::unique_ptr<snapshotter::OverlaySnapshotter>> by_name_;
};

}  // namespace strata::daemon
