// The wire contract with containerd: the generated services answer on containerd's method
// paths, and every field has containerd's number (../shared/reference/containerd-api.md).
// A renumbered field or renamed package would still compile; this catches it.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "containerd/services/content/v1/content.grpc.pb.h"
#include "containerd/services/snapshots/v1/snapshots.grpc.pb.h"
#include "containerd/types/mount.pb.h"

namespace strata {
namespace {

using google::protobuf::Descriptor;

// "name=number" for each field, in declaration order.
std::vector<std::string> Fields(const Descriptor* message) {
  std::vector<std::string> out;
  for (int i = 0; i < message->field_count(); ++i) {
    out.push_back(message->field(i)->name() + "=" + std::to_string(message->field(i)->number()));
  }
  return out;
}

std::vector<std::string> Methods(const google::protobuf::ServiceDescriptor* service) {
  std::vector<std::string> out;
  for (int i = 0; i < service->method_count(); ++i) {
    const auto* method = service->method(i);
    out.push_back("/" + service->full_name() + "/" + method->name() + (method->client_streaming() ? " <-stream" : "") +
                  (method->server_streaming() ? " ->stream" : ""));
  }
  return out;
}

TEST(ApiWireTest, MountMatchesContainerdTypes) {
  EXPECT_EQ(containerd::types::Mount::descriptor()->full_name(), "containerd.types.Mount");
  EXPECT_EQ(Fields(containerd::types::Mount::descriptor()),
            (std::vector<std::string>{"type=1", "source=2", "target=3", "options=4"}));
}

TEST(ApiWireTest, SnapshotsServiceMatchesContainerd) {
  namespace snapshots = containerd::services::snapshots::v1;
  EXPECT_STREQ(snapshots::Snapshots::service_full_name(), "containerd.services.snapshots.v1.Snapshots");
  EXPECT_EQ(Methods(snapshots::PrepareSnapshotRequest::descriptor()->file()->FindServiceByName("Snapshots")),
            (std::vector<std::string>{
                "/containerd.services.snapshots.v1.Snapshots/Prepare", "/containerd.services.snapshots.v1.Snapshots/View",
                "/containerd.services.snapshots.v1.Snapshots/Mounts", "/containerd.services.snapshots.v1.Snapshots/Commit",
                "/containerd.services.snapshots.v1.Snapshots/Remove", "/containerd.services.snapshots.v1.Snapshots/Stat",
                "/containerd.services.snapshots.v1.Snapshots/Update",
                "/containerd.services.snapshots.v1.Snapshots/List ->stream",
                "/containerd.services.snapshots.v1.Snapshots/Usage",
                "/containerd.services.snapshots.v1.Snapshots/Cleanup"}));
  using V = std::vector<std::string>;
  EXPECT_EQ(Fields(snapshots::PrepareSnapshotRequest::descriptor()), (V{"snapshotter=1", "key=2", "parent=3", "labels=4"}));
  EXPECT_EQ(Fields(snapshots::ViewSnapshotRequest::descriptor()), (V{"snapshotter=1", "key=2", "parent=3", "labels=4"}));
  EXPECT_EQ(Fields(snapshots::PrepareSnapshotResponse::descriptor()), (V{"mounts=1"}));
  EXPECT_EQ(Fields(snapshots::MountsRequest::descriptor()), (V{"snapshotter=1", "key=2"}));
  EXPECT_EQ(Fields(snapshots::CommitSnapshotRequest::descriptor()),
            (V{"snapshotter=1", "name=2", "key=3", "labels=4", "parent=5"}));
  EXPECT_EQ(Fields(snapshots::Info::descriptor()),
            (V{"name=1", "parent=2", "kind=3", "created_at=4", "updated_at=5", "labels=6"}));
  EXPECT_EQ(Fields(snapshots::UpdateSnapshotRequest::descriptor()), (V{"snapshotter=1", "info=2", "update_mask=3"}));
  EXPECT_EQ(Fields(snapshots::ListSnapshotsRequest::descriptor()), (V{"snapshotter=1", "filters=2"}));
  EXPECT_EQ(Fields(snapshots::ListSnapshotsResponse::descriptor()), (V{"info=1"}));
  EXPECT_EQ(Fields(snapshots::UsageResponse::descriptor()), (V{"size=1", "inodes=2"}));
  EXPECT_EQ(Fields(snapshots::CleanupRequest::descriptor()), (V{"snapshotter=1"}));
  EXPECT_EQ(snapshots::VIEW, 1);
  EXPECT_EQ(snapshots::ACTIVE, 2);
  EXPECT_EQ(snapshots::COMMITTED, 3);
}

TEST(ApiWireTest, ContentServiceMatchesContainerd) {
  namespace content = containerd::services::content::v1;
  EXPECT_STREQ(content::Content::service_full_name(), "containerd.services.content.v1.Content");
  EXPECT_EQ(Methods(content::InfoRequest::descriptor()->file()->FindServiceByName("Content")),
            (std::vector<std::string>{
                "/containerd.services.content.v1.Content/Info", "/containerd.services.content.v1.Content/Update",
                "/containerd.services.content.v1.Content/List ->stream",
                "/containerd.services.content.v1.Content/Delete",
                "/containerd.services.content.v1.Content/Read ->stream",
                "/containerd.services.content.v1.Content/Status",
                "/containerd.services.content.v1.Content/ListStatuses",
                "/containerd.services.content.v1.Content/Write <-stream ->stream",
                "/containerd.services.content.v1.Content/Abort"}));
  using V = std::vector<std::string>;
  EXPECT_EQ(Fields(content::Info::descriptor()), (V{"digest=1", "size=2", "created_at=3", "updated_at=4", "labels=5"}));
  EXPECT_EQ(Fields(content::ReadContentRequest::descriptor()), (V{"digest=1", "offset=2", "size=3"}));
  EXPECT_EQ(Fields(content::ReadContentResponse::descriptor()), (V{"offset=1", "data=2"}));
  EXPECT_EQ(Fields(content::Status::descriptor()),
            (V{"started_at=1", "updated_at=2", "ref=3", "offset=4", "total=5", "expected=6"}));
  EXPECT_EQ(Fields(content::WriteContentRequest::descriptor()),
            (V{"action=1", "ref=2", "total=3", "expected=4", "offset=5", "data=6", "labels=7"}));
  EXPECT_EQ(Fields(content::WriteContentResponse::descriptor()),
            (V{"action=1", "started_at=2", "updated_at=3", "offset=4", "total=5", "digest=6"}));
  EXPECT_EQ(content::STAT, 0);
  EXPECT_EQ(content::WRITE, 1);
  EXPECT_EQ(content::COMMIT, 2);
}

}  // namespace
}  // namespace strata
