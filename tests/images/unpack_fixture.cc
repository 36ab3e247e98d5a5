#include "tests/images/unpack_fixture.h"

#include <gtest/gtest.h>

#include "store/filters.h"

namespace strata::images {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

void MountGuard::Release() {
  if (snapshots == nullptr) return;
  if (auto status = UnmountImage(*snapshots, dir); !status) {
    ADD_FAILURE() << "unmount " << dir << ": " << status.error().ToString();
    (void)test_support::UnmountAllBeneath(dir);
  }
  snapshots = nullptr;
}

void StrataRoot::Reset() {
  fetcher.reset();
  snapshots.reset();
  store.reset();
}

void UnpackFixture::SetUp() {
  STRATA_REQUIRE_ROOT();
  RegistryClientTest::SetUp();
  if (HasFatalFailure()) return;
  registry_ = StartTrustedRegistry();
  ASSERT_TRUE(registry_);
  auto root = test_support::TempRoot::Create(root_prefix_);
  ASSERT_TRUE(root) << root.error().ToString();
  root_ = std::make_unique<test_support::TempRoot>(std::move(*root));
  SetUpStrata();
}

void UnpackFixture::MakeFastResolver(int max_attempts, bool instant_retries) {
  authorizer_ = std::make_unique<registry::Authorizer>(*client_, Fixed(std::nullopt));
  registry::ResolverOptions options;
  options.retry = {.max_attempts = max_attempts, .initial_backoff = 1ms, .jitter = 0};
  if (instant_retries) options.sleep = [](std::chrono::milliseconds) {};
  resolver_ = std::make_unique<registry::Resolver>(*authorizer_, std::move(options));
}

void UnpackFixture::OpenRoot(StrataRoot& root, const std::string& dir) {
  auto store = store::Store::Open(root_->path() / dir);
  ASSERT_TRUE(store) << store.error().ToString();
  root.store = std::move(*store);
  auto snapshots = snapshotter::OverlaySnapshotter::Open(root.store->root(), root.store->db());
  ASSERT_TRUE(snapshots) << snapshots.error().ToString();
  root.snapshots = std::move(*snapshots);
  MakeFetcher(root);
}

void UnpackFixture::MakeFetcher(StrataRoot& root) {
  root.fetcher = std::make_unique<registry::Fetcher>(*resolver_, root.store->content(), &root.store->leases());
}

Result<PullResult> UnpackFixture::PullInto(StrataRoot& root, const std::string& name, bool unpack,
                                           UnpackLimits limits) {
  PullOptions options;
  if (unpack) options.unpack_into = root.snapshots.get();
  options.unpack_limits = limits;
  return Pull(*resolver_, *root.fetcher, *root.store, Ref(name), options);
}

Result<MountedImage> UnpackFixture::MountAt(StrataRoot& root, MountGuard& guard, const std::string& name,
                                            const std::string& dir, bool writable) {
  const fs::path target = root_->path() / dir;
  fs::create_directories(target);
  auto mounted = MountImage(*root.store, *root.snapshots, name, target, {.writable = writable});
  if (mounted) {
    guard.snapshots = root.snapshots.get();
    guard.dir = target;
  }
  return mounted;
}

std::vector<snapshotter::SnapshotInfo> UnpackFixture::Snapshots(StrataRoot& root) {
  std::vector<snapshotter::SnapshotInfo> all;
  auto filter = store::Filter::Parse({});
  if (!filter) {
    ADD_FAILURE() << filter.error().ToString();
    return all;
  }
  auto walked = root.snapshots->Walk(*filter, [&](const snapshotter::SnapshotInfo& info) {
    all.push_back(info);
    return true;
  });
  EXPECT_TRUE(walked) << walked.error().ToString();
  return all;
}

std::vector<std::string> UnpackFixture::SnapshotNames(StrataRoot& root) {
  std::vector<std::string> names;
  for (const auto& info : Snapshots(root)) {
    names.push_back(info.name + " (" + std::string(snapshotter::KindName(info.kind)) + ")");
  }
  return names;
}

}  // namespace strata::images
