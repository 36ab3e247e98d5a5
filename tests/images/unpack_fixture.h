// What the tests of unpack_test share: a root-only fixture with a real docker-registry, a
// temp root to hold strata roots (store + overlay snapshotter + fetcher) and mount points,
// pulls that unpack into a root, and mounts of its images undone on scope exit.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "images/image_mount.h"
#include "images/pull.h"
#include "registry/fetcher.h"
#include "snapshotter/overlay_snapshotter.h"
#include "store/store.h"
#include "tests/registry/registry_client_test_base.h"
#include "tests/support/registry_fixture.h"
#include "tests/support/root.h"

namespace strata::images {

// Unmounts (and removes the snapshot of) a strata mount on scope exit, whatever happened.
struct MountGuard {
  snapshotter::OverlaySnapshotter* snapshots = nullptr;
  std::filesystem::path dir;
  MountGuard() = default;
  MountGuard(const MountGuard&) = delete;
  MountGuard& operator=(const MountGuard&) = delete;
  ~MountGuard() { Release(); }
  void Release();
};

// One strata root: store, snapshotter, fetcher.
struct StrataRoot {
  std::unique_ptr<store::Store> store;
  std::unique_ptr<snapshotter::OverlaySnapshotter> snapshots;
  std::unique_ptr<registry::Fetcher> fetcher;
  // Users of the store first.
  void Reset();
};

class UnpackFixture : public registry::RegistryClientTest {
 protected:
  // `root_prefix` names the temp root: "<$TMPDIR or /tmp>/<root_prefix>-XXXXXX".
  explicit UnpackFixture(std::string root_prefix) : root_prefix_(std::move(root_prefix)) {}

  // Skips unless root; starts the registry and makes the temp root, then SetUpStrata().
  void SetUp() final;
  // The test's own setup (resolver, strata roots...): runs once the registry and the temp
  // root are up, never when the test was skipped or setting them up failed.
  virtual void SetUpStrata() = 0;

  // A resolver without credentials (and its authorizer) trying `max_attempts` times, 1 ms
  // apart; `instant_retries` makes its sleep a no-op.
  void MakeFastResolver(int max_attempts, bool instant_retries = true);

  // Opens the store at root_/<dir> and the snapshotter on it, then MakeFetcher(root).
  void OpenRoot(StrataRoot& root, const std::string& dir);
  // A fetcher into root's content store through resolver_ (replacing the previous one).
  void MakeFetcher(StrataRoot& root);

  // Pulls `name` into `root`, unpacking into its snapshotter unless `unpack` is false.
  Result<PullResult> PullInto(StrataRoot& root, const std::string& name, bool unpack = true,
                              UnpackLimits limits = {});

  // Mounts image `name` of `root` on root_/<dir> (created) and arms `guard`.
  Result<MountedImage> MountAt(StrataRoot& root, MountGuard& guard, const std::string& name, const std::string& dir,
                               bool writable = false);

  // Every snapshot of `root`, as Walk lists them.
  static std::vector<snapshotter::SnapshotInfo> Snapshots(StrataRoot& root);
  // Their "name (kind)".
  static std::vector<std::string> SnapshotNames(StrataRoot& root);

  std::string root_prefix_;
  std::unique_ptr<test_support::RegistryFixture> registry_;
  std::unique_ptr<test_support::TempRoot> root_;
};

}  // namespace strata::images
