// strata.v1.Images through a real socket: a daemon::Daemon started in-process on a temp
// root pulls from a real docker-registry (progress events, then the result), and the
// image calls (List, Get, Tag, Remove), Mount with and without a target, Unmount, GC and
// the bad-input answers are checked against what lands in the store.
#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <sstream>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "daemon/daemon.h"
#include "images/image_mount.h"
#include "oci/chain_id.h"
#include "snapshotter/mount.h"
#include "snapshotter/overlay_snapshotter.h"
#include "store/store.h"
#include "strata/v1/images.grpc.pb.h"
#include "tests/support/assertions.h"
#include "tests/support/image_builder.h"
#include "tests/support/registry_fixture.h"
#include "tests/support/root.h"

namespace strata::daemon {
namespace {

namespace fs = std::filesystem;
namespace v1 = strata::v1;
using test_support::RegistryFixture;

std::string ReadText(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

class ImagesServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    STRATA_REQUIRE_ROOT();  // unpacking (overlay whiteouts, trusted.* xattrs) and mounts
    ASSERT_OK_AND_ASSIGN(auto temp, test_support::TempRoot::Create("strata-images-service"));
    temp_ = std::make_unique<test_support::TempRoot>(std::move(temp));
    ASSERT_OK_AND_ASSIGN(registry_, RegistryFixture::Start());
    StartDaemon();
  }

  void TearDown() override {
    stub_.reset();
    if (daemon_) daemon_->Shutdown();
    daemon_.reset();
  }

  fs::path root() const { return temp_->path() / "store"; }
  fs::path socket() const { return temp_->path() / "strata.sock"; }

  void StartDaemon() {
    DaemonOptions options;
    options.root = root();
    options.socket_path = socket();
    options.shutdown_grace = std::chrono::seconds(5);
    auto started = Daemon::Start(std::move(options));
    ASSERT_TRUE(started) << started.error().ToString();
    daemon_ = std::move(*started);
    stub_ = v1::Images::NewStub(grpc::CreateChannel("unix:" + socket().string(), grpc::InsecureChannelCredentials()));
  }

  void StopDaemon() {
    stub_.reset();
    daemon_->Shutdown();
    daemon_.reset();
  }

  // Pushes a two-layer image as daemon/app:1 and returns what was pushed.
  test_support::PushedImage PushTwoLayerImage() {
    auto base = test_support::LayerBuilder().Dir("etc").File("etc/os-release", "ID=test\n").Build();
    auto app = test_support::LayerBuilder().File("app.txt", "app v1\n").Build();
    EXPECT_TRUE(base && app);
    test_support::ImageBuilder builder;
    builder.AddLayer(*base).AddLayer(*app);
    auto pushed = builder.PushTo(*registry_, "daemon/app", "1");
    EXPECT_TRUE(pushed) << pushed.error().ToString();
    return *pushed;
  }

  std::string ImageName() const { return registry_->host() + "/daemon/app:1"; }

  struct PullRun {
    grpc::Status status;
    std::vector<v1::TransferProgress> progress;
    std::optional<v1::PullResult> result;
  };
  PullRun Pull(const v1::PullRequest& request) {
    grpc::ClientContext context;
    auto reader = stub_->Pull(&context, request);
    PullRun run;
    v1::PullEvent event;
    while (reader->Read(&event)) {
      if (event.has_progress()) run.progress.push_back(event.progress());
      if (event.has_result()) {
        EXPECT_FALSE(run.result) << "two results";
        run.result = event.result();
      }
    }
    run.status = reader->Finish();
    return run;
  }
  PullRun PullImage() {
    v1::PullRequest request;
    request.set_reference(ImageName());
    return Pull(request);
  }

  grpc::Status Call(auto method, const auto& request, auto* response) {
    grpc::ClientContext context;
    return ((*stub_).*method)(&context, request, response);
  }

  std::unique_ptr<test_support::TempRoot> temp_;
  std::unique_ptr<RegistryFixture> registry_;
  std::unique_ptr<Daemon> daemon_;
  std::unique_ptr<v1::Images::Stub> stub_;
};

TEST_F(ImagesServiceTest, PullStreamsProgressThenTheResult) {
  const auto pushed = PushTwoLayerImage();
  PullRun run = PullImage();
  ASSERT_TRUE(run.status.ok()) << run.status.error_message();
  ASSERT_TRUE(run.result);

  // Every layer reports its bytes and ends done; the manifest and config are reported too.
  std::set<std::string> layers_done;
  bool saw_manifest = false;
  bool saw_config = false;
  for (const auto& progress : run.progress) {
    if (progress.kind() == v1::BLOB_KIND_LAYER && progress.phase() == v1::TRANSFER_PHASE_DONE) {
      EXPECT_EQ(progress.done(), progress.total());
      EXPECT_GT(progress.total(), 0);
      layers_done.insert(progress.digest());
    }
    saw_manifest = saw_manifest || progress.kind() == v1::BLOB_KIND_MANIFEST;
    saw_config = saw_config || progress.kind() == v1::BLOB_KIND_CONFIG;
  }
  std::set<std::string> expected_layers;
  for (const Digest& layer : pushed.layer_digests) expected_layers.insert(layer.ToString());
  EXPECT_EQ(layers_done, expected_layers);
  EXPECT_TRUE(saw_manifest);
  EXPECT_TRUE(saw_config);

  const v1::PullResult& result = *run.result;
  EXPECT_EQ(result.name(), ImageName());
  EXPECT_EQ(result.manifest().digest(), pushed.manifest_digest.ToString());
  EXPECT_EQ(result.target().digest(), pushed.manifest_digest.ToString());
  EXPECT_EQ(result.config().digest(), pushed.config_digest.ToString());
  std::vector<std::string> chain_ids;
  for (const Digest& chain_id : oci::ChainIDs(pushed.diff_ids)) chain_ids.push_back(chain_id.ToString());
  EXPECT_EQ(std::vector<std::string>(result.chain_ids().begin(), result.chain_ids().end()), chain_ids);
  EXPECT_EQ(result.layers_unpacked(), 2);
  EXPECT_EQ(result.blobs_fetched(), 4);  // manifest, config, two layers
  EXPECT_TRUE(result.unpacked());

  // Again: everything is present, nothing unpacked.
  PullRun again = PullImage();
  ASSERT_TRUE(again.status.ok()) << again.status.error_message();
  ASSERT_TRUE(again.result);
  EXPECT_EQ(again.result->blobs_fetched(), 0);
  EXPECT_EQ(again.result->layers_unpacked(), 0);
}

TEST_F(ImagesServiceTest, ListGetTagRemove) {
  const auto pushed = PushTwoLayerImage();
  ASSERT_TRUE(PullImage().status.ok());

  {
    v1::ListImagesRequest request;
    v1::ListImagesResponse list;
    ASSERT_TRUE(Call(&v1::Images::Stub::List, request, &list).ok());
    ASSERT_EQ(list.images_size(), 1);
    EXPECT_EQ(list.images(0).name(), ImageName());
    EXPECT_EQ(list.images(0).target().digest(), pushed.manifest_digest.ToString());
    EXPECT_EQ(list.images(0).target().size(), static_cast<int64_t>(pushed.manifest_size));
    EXPECT_GT(list.images(0).created_at().seconds(), 0);
  }
  {
    v1::ListImagesRequest request;
    request.add_filters("name~=nomatch");
    v1::ListImagesResponse list;
    ASSERT_TRUE(Call(&v1::Images::Stub::List, request, &list).ok());
    EXPECT_EQ(list.images_size(), 0);
    request.set_filters(0, "name==\"unterminated");
    grpc::Status bad = Call(&v1::Images::Stub::List, request, &list);
    EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bad.error_message();
  }

  const std::string tagged = registry_->host() + "/daemon/app:2";
  {
    v1::TagImageRequest request;
    request.set_source(ImageName());
    request.set_target(tagged);
    v1::TagImageResponse response;
    grpc::Status status = Call(&v1::Images::Stub::Tag, request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.image().name(), tagged);
    EXPECT_EQ(response.image().target().digest(), pushed.manifest_digest.ToString());
  }
  {
    v1::GetImageRequest request;
    request.set_name(tagged);
    v1::GetImageResponse response;
    ASSERT_TRUE(Call(&v1::Images::Stub::Get, request, &response).ok());
    EXPECT_EQ(response.image().target().digest(), pushed.manifest_digest.ToString());
  }
  {
    v1::RemoveImageRequest request;
    request.set_name(tagged);
    v1::RemoveImageResponse response;
    ASSERT_TRUE(Call(&v1::Images::Stub::Remove, request, &response).ok());
    EXPECT_EQ(response.name(), tagged);
    EXPECT_EQ(Call(&v1::Images::Stub::Remove, request, &response).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  {
    v1::GetImageRequest request;
    request.set_name(tagged);
    v1::GetImageResponse response;
    EXPECT_EQ(Call(&v1::Images::Stub::Get, request, &response).error_code(), grpc::StatusCode::NOT_FOUND);
    request.set_name("Not A Reference");
    grpc::Status bad = Call(&v1::Images::Stub::Get, request, &response);
    EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(bad.error_message().find("name"), std::string::npos) << bad.error_message();
    request.set_name(ImageName());
    EXPECT_TRUE(Call(&v1::Images::Stub::Get, request, &response).ok()) << "the source name went too";
  }
}

TEST_F(ImagesServiceTest, BadInputGetsClearErrors) {
  {
    PullRun run = Pull(v1::PullRequest());
    EXPECT_EQ(run.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(run.status.error_message().find("reference"), std::string::npos) << run.status.error_message();
    v1::PullRequest request;
    request.set_reference(ImageName());
    request.set_parallelism(1000);
    run = Pull(request);
    EXPECT_EQ(run.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(run.status.error_message().find("parallelism 1000"), std::string::npos) << run.status.error_message();
    request.set_parallelism(0);
    request.set_platform("linux/");
    EXPECT_EQ(Pull(request).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  {
    v1::PullRequest request;
    request.set_reference(registry_->host() + "/daemon/missing:1");
    PullRun run = Pull(request);
    EXPECT_EQ(run.status.error_code(), grpc::StatusCode::NOT_FOUND) << run.status.error_message();
  }
  {
    v1::MountImageRequest request;
    request.set_image(ImageName());
    request.set_isolation(static_cast<v1::Isolation>(7));
    v1::MountImageResponse response;
    grpc::Status status = Call(&v1::Images::Stub::Mount, request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(status.error_message(), "isolation 7 is unknown");
    request.set_isolation(v1::ISOLATION_PROCESS);
    request.set_target("relative/dir");
    status = Call(&v1::Images::Stub::Mount, request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(status.error_message().find("relative/dir"), std::string::npos) << status.error_message();
    request.set_target("");
    status = Call(&v1::Images::Stub::Mount, request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND) << "no such image: " << status.error_message();
  }
  {
    v1::UnmountImageRequest request;
    v1::UnmountImageResponse response;
    EXPECT_EQ(Call(&v1::Images::Stub::Unmount, request, &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    request.set_lease("no-such-lease");
    EXPECT_EQ(Call(&v1::Images::Stub::Unmount, request, &response).error_code(), grpc::StatusCode::NOT_FOUND);
    const fs::path nothing = temp_->path() / "nothing";
    fs::create_directories(nothing);
    request.set_target(nothing.string());
    EXPECT_EQ(Call(&v1::Images::Stub::Unmount, request, &response).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  {
    v1::SaveImagesResponse save;
    grpc::Status status = Call(&v1::Images::Stub::Save, v1::SaveImagesRequest(), &save);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNIMPLEMENTED);
    EXPECT_NE(status.error_message().find("issue 10"), std::string::npos) << status.error_message();
    v1::LoadImagesResponse load;
    status = Call(&v1::Images::Stub::Load, v1::LoadImagesRequest(), &load);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNIMPLEMENTED);
    EXPECT_NE(status.error_message().find("issue 10"), std::string::npos) << status.error_message();
  }
}

TEST_F(ImagesServiceTest, MountWithoutTargetReturnsMountsHeldByALease) {
  PushTwoLayerImage();
  ASSERT_TRUE(PullImage().status.ok());
  v1::MountImageRequest request;
  request.set_image(ImageName());
  v1::MountImageResponse mounted;
  // A Linux image's vm form: one erofs layer image per layer and the composition (read-only).
  request.set_isolation(v1::ISOLATION_VM);
  grpc::Status status = Call(&v1::Images::Stub::Mount, request, &mounted);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(mounted.mounts_size(), 3);
  EXPECT_EQ(mounted.mounts(0).type(), "erofs");
  EXPECT_EQ(mounted.mounts(1).type(), "erofs");
  EXPECT_EQ(mounted.mounts(2).type(), "format/overlay");
  {
    v1::UnmountImageRequest release;
    release.set_lease(mounted.lease());
    v1::UnmountImageResponse released;
    ASSERT_TRUE(Call(&v1::Images::Stub::Unmount, release, &released).ok());
  }
  request.set_isolation(v1::ISOLATION_PROCESS);
  status = Call(&v1::Images::Stub::Mount, request, &mounted);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_FALSE(mounted.lease().empty());
  EXPECT_EQ(mounted.snapshot(), std::string(images::kLeaseKeyPrefix) + mounted.lease());
  EXPECT_EQ(mounted.layers(), 2);
  EXPECT_EQ(mounted.image(), ImageName());
  EXPECT_TRUE(mounted.target().empty());
  ASSERT_EQ(mounted.mounts_size(), 1);
  EXPECT_EQ(mounted.mounts(0).type(), "overlay");

  // The caller applies the mounts: the image's files are there.
  const fs::path dir = temp_->path() / "by-hand";
  fs::create_directories(dir);
  std::vector<std::string> options(mounted.mounts(0).options().begin(), mounted.mounts(0).options().end());
  ASSERT_OK(snapshotter::MountAt({.type = mounted.mounts(0).type(), .source = mounted.mounts(0).source(),
                                  .options = options},
                                 dir));
  EXPECT_EQ(ReadText(dir / "app.txt"), "app v1\n");
  EXPECT_EQ(ReadText(dir / "etc/os-release"), "ID=test\n");
  ASSERT_OK(snapshotter::UnmountAt(dir));

  // The snapshot and its lease are in the store (the daemon is stopped to look).
  StopDaemon();
  {
    ASSERT_OK_AND_ASSIGN(auto store, store::Store::Open(root()));
    ASSERT_OK_AND_ASSIGN(auto snapshots, snapshotter::OverlaySnapshotter::Open(store->root(), store->db()));
    ASSERT_OK_AND_ASSIGN(auto info, snapshots->Stat(mounted.snapshot()));
    EXPECT_EQ(info.kind, snapshotter::Kind::kView);
    ASSERT_OK_AND_ASSIGN(auto resources, store->leases().ListResources(mounted.lease()));
    EXPECT_EQ(resources, (std::vector<store::LeaseResource>{{"snapshots/overlayfs", mounted.snapshot()}}));
  }
  StartDaemon();

  v1::UnmountImageRequest unmount;
  unmount.set_lease(mounted.lease());
  v1::UnmountImageResponse unmounted;
  status = Call(&v1::Images::Stub::Unmount, unmount, &unmounted);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(Call(&v1::Images::Stub::Unmount, unmount, &unmounted).error_code(), grpc::StatusCode::NOT_FOUND);

  StopDaemon();
  ASSERT_OK_AND_ASSIGN(auto store, store::Store::Open(root()));
  ASSERT_OK_AND_ASSIGN(auto snapshots, snapshotter::OverlaySnapshotter::Open(store->root(), store->db()));
  EXPECT_EQ(snapshots->Stat(mounted.snapshot()).error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(store->leases().Get(mounted.lease()).error().code(), ErrorCode::kNotFound);
}

TEST_F(ImagesServiceTest, MountOnATargetAndUnmount) {
  PushTwoLayerImage();
  ASSERT_TRUE(PullImage().status.ok());
  const fs::path dir = temp_->path() / "rw";
  fs::create_directories(dir);
  v1::MountImageRequest request;
  request.set_image(ImageName());
  request.set_rw(true);
  request.set_target(dir.string());
  v1::MountImageResponse mounted;
  grpc::Status status = Call(&v1::Images::Stub::Mount, request, &mounted);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(mounted.lease().empty());
  EXPECT_EQ(mounted.snapshot(), images::MountKey(dir));
  EXPECT_EQ(mounted.target(), dir.string());
  EXPECT_EQ(mounted.layers(), 2);
  EXPECT_TRUE(mounted.rw());
  EXPECT_EQ(ReadText(dir / "app.txt"), "app v1\n");
  { std::ofstream(dir / "new.txt") << "written\n"; }
  EXPECT_EQ(ReadText(dir / "new.txt"), "written\n");

  // A second mount on the same directory is refused.
  EXPECT_EQ(Call(&v1::Images::Stub::Mount, request, &mounted).error_code(), grpc::StatusCode::ALREADY_EXISTS);

  v1::UnmountImageRequest unmount;
  unmount.set_target(dir.string());
  v1::UnmountImageResponse unmounted;
  status = Call(&v1::Images::Stub::Unmount, unmount, &unmounted);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_FALSE(fs::exists(dir / "app.txt"));
  EXPECT_FALSE(fs::exists(dir / "new.txt"));
  EXPECT_EQ(Call(&v1::Images::Stub::Unmount, unmount, &unmounted).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ImagesServiceTest, GcRemovesWhatNoImageNeeds) {
  const auto pushed = PushTwoLayerImage();
  ASSERT_TRUE(PullImage().status.ok());

  // While the image is named, nothing goes.
  v1::GCRequest request;
  v1::GCResponse report;
  ASSERT_TRUE(Call(&v1::Images::Stub::GC, request, &report).ok());
  EXPECT_EQ(report.blobs_removed_size(), 0);
  EXPECT_EQ(report.snapshots_removed_size(), 0);
  EXPECT_EQ(report.blobs_kept(), 4);

  v1::RemoveImageRequest remove;
  remove.set_name(ImageName());
  v1::RemoveImageResponse removed;
  ASSERT_TRUE(Call(&v1::Images::Stub::Remove, remove, &removed).ok());

  request.set_dry_run(true);
  ASSERT_TRUE(Call(&v1::Images::Stub::GC, request, &report).ok());
  EXPECT_TRUE(report.dry_run());
  EXPECT_EQ(report.blobs_removed_size(), 4);
  // (Snapshots are kept by their config's label until the config goes: a dry run, which
  // removes no blob, reports none of them, as `strata gc --dry-run` does.)

  request.set_dry_run(false);
  ASSERT_TRUE(Call(&v1::Images::Stub::GC, request, &report).ok());
  EXPECT_FALSE(report.dry_run());
  std::set<std::string> removed_blobs(report.blobs_removed().begin(), report.blobs_removed().end());
  EXPECT_TRUE(removed_blobs.contains(pushed.manifest_digest.ToString()));
  EXPECT_TRUE(removed_blobs.contains(pushed.layer_digests[0].ToString()));
  std::set<std::string> removed_snapshots(report.snapshots_removed().begin(), report.snapshots_removed().end());
  std::set<std::string> chain;
  for (const Digest& chain_id : oci::ChainIDs(pushed.diff_ids)) chain.insert(chain_id.ToString());
  EXPECT_EQ(removed_snapshots, chain);
  EXPECT_GT(report.bytes_freed(), 0);

  ASSERT_TRUE(Call(&v1::Images::Stub::GC, request, &report).ok());
  EXPECT_EQ(report.blobs_removed_size(), 0);
  EXPECT_EQ(report.snapshots_removed_size(), 0);
  EXPECT_EQ(report.blobs_kept(), 0);
}

}  // namespace
}  // namespace strata::daemon
