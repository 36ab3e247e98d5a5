// strata serve in-process: containerd's snapshots.v1 and content.v1 over the unix socket,
// checked the way containerd's proxy clients use them (codes, batching, the write
// protocol), the peer gate, and a graceful shutdown.
#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>

#include "base/digest.h"
#include "containerd/services/content/v1/content.grpc.pb.h"
#include "containerd/services/snapshots/v1/snapshots.grpc.pb.h"
#include "daemon/daemon.h"
#include "tests/support/assertions.h"
#include "tests/support/root.h"

namespace strata::daemon {
namespace {

namespace fs = std::filesystem;
namespace snapshots_api = containerd::services::snapshots::v1;
namespace content_api = containerd::services::content::v1;
using test_support::TempRoot;

class DaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    STRATA_REQUIRE_ROOT();  // overlay snapshots chown to their parent's owner
    ASSERT_OK_AND_ASSIGN(temp_, TempRoot::Create("strata-daemon"));
    Start({});
  }

  void Start(std::set<gid_t> allowed_groups) {
    DaemonOptions options;
    options.root = temp_->path() / "root";
    options.socket_path = temp_->path() / "strata.sock";
    options.allowed_groups = std::move(allowed_groups);
    options.snapshotters = {PersonalitySpec{.name = "strata"}, PersonalitySpec{.name = "other"}};
    options.shutdown_grace = std::chrono::seconds(5);
    ASSERT_OK_AND_ASSIGN(daemon_, Daemon::Start(std::move(options)));
    channel_ = grpc::CreateChannel("unix:" + socket().string(), grpc::InsecureChannelCredentials());
    snapshots_ = snapshots_api::Snapshots::NewStub(channel_);
    content_ = content_api::Content::NewStub(channel_);
  }

  fs::path socket() const { return temp_->path() / "strata.sock"; }

  grpc::Status Prepare(const std::string& key, const std::string& parent, std::map<std::string, std::string> labels = {},
                       const std::string& snapshotter = "strata") {
    grpc::ClientContext context;
    snapshots_api::PrepareSnapshotRequest request;
    request.set_snapshotter(snapshotter);
    request.set_key(key);
    request.set_parent(parent);
    request.mutable_labels()->insert(labels.begin(), labels.end());
    snapshots_api::PrepareSnapshotResponse response;
    return snapshots_->Prepare(&context, request, &response);
  }

  grpc::Status Commit(const std::string& name, const std::string& key, std::map<std::string, std::string> labels = {}) {
    grpc::ClientContext context;
    snapshots_api::CommitSnapshotRequest request;
    request.set_snapshotter("strata");
    request.set_name(name);
    request.set_key(key);
    request.mutable_labels()->insert(labels.begin(), labels.end());
    google::protobuf::Empty empty;
    return snapshots_->Commit(&context, request, &empty);
  }

  grpc::Status Remove(const std::string& key) {
    grpc::ClientContext context;
    snapshots_api::RemoveSnapshotRequest request;
    request.set_snapshotter("strata");
    request.set_key(key);
    google::protobuf::Empty empty;
    return snapshots_->Remove(&context, request, &empty);
  }

  std::optional<TempRoot> temp_;
  std::unique_ptr<Daemon> daemon_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<snapshots_api::Snapshots::Stub> snapshots_;
  std::unique_ptr<content_api::Content::Stub> content_;
};

TEST_F(DaemonTest, SocketIsGroupOnlyAndRecordedForTheCli) {
  struct stat st {};
  ASSERT_EQ(::stat(socket().c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  auto found = FindDaemonSocket(temp_->path() / "root");
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(*found, socket());
}

TEST_F(DaemonTest, PrepareCommitStatAcrossPersonalities) {
  ASSERT_TRUE(Prepare("ns/1/extract a b", "").ok());
  ASSERT_TRUE(Commit("ns/2/sha256:base", "ns/1/extract a b").ok());
  ASSERT_TRUE(Prepare("ns/3/container", "ns/2/sha256:base").ok());

  grpc::ClientContext context;
  snapshots_api::StatSnapshotRequest stat;
  stat.set_snapshotter("strata");
  stat.set_key("ns/3/container");
  snapshots_api::StatSnapshotResponse info;
  ASSERT_TRUE(snapshots_->Stat(&context, stat, &info).ok());
  EXPECT_EQ(info.info().kind(), snapshots_api::ACTIVE);
  EXPECT_EQ(info.info().parent(), "ns/2/sha256:base");
  EXPECT_GT(info.info().created_at().seconds(), 0);
  EXPECT_EQ(info.info().created_at().seconds(), info.info().updated_at().seconds());
  EXPECT_EQ(info.info().created_at().nanos(), info.info().updated_at().nanos());

  // Another personality is another namespace: the same key is free there, the parent is not.
  EXPECT_TRUE(Prepare("ns/3/container", "", {}, "other").ok());
  EXPECT_EQ(Prepare("ns/4/x", "ns/2/sha256:base", {}, "other").error_code(), grpc::StatusCode::NOT_FOUND);
  const grpc::Status unknown = Prepare("k", "", {}, "nope");
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(unknown.error_message().find("strata"), std::string::npos) << unknown.error_message();
}

TEST_F(DaemonTest, ErrorCodesAsContainerdExpectsThem) {
  ASSERT_TRUE(Prepare("active", "").ok());
  EXPECT_EQ(Prepare("active", "").error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(Prepare("child", "missing").error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Prepare("child", "active").error_code(), grpc::StatusCode::INVALID_ARGUMENT);  // parent not committed
  EXPECT_EQ(Prepare("big", "", {{"k", std::string(5000, 'v')}}).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Commit("name", "missing").error_code(), grpc::StatusCode::NOT_FOUND);
  ASSERT_TRUE(Commit("base", "active").ok());
  EXPECT_EQ(Commit("again", "base").error_code(), grpc::StatusCode::FAILED_PRECONDITION);  // not active
  ASSERT_TRUE(Prepare("child", "base").ok());
  EXPECT_EQ(Remove("base").error_code(), grpc::StatusCode::FAILED_PRECONDITION);  // has a child
  EXPECT_EQ(Remove("nothing").error_code(), grpc::StatusCode::NOT_FOUND);

  grpc::ClientContext context;
  snapshots_api::UpdateSnapshotRequest update;
  update.set_snapshotter("strata");
  update.mutable_info()->set_name("base");
  update.mutable_update_mask()->add_paths("parent");
  snapshots_api::UpdateSnapshotResponse updated;
  EXPECT_EQ(snapshots_->Update(&context, update, &updated).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(DaemonTest, ConcurrentPrepareOfOneKeySucceedsOnce) {
  constexpr int kClients = 8;
  std::vector<grpc::StatusCode> codes(kClients);
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] { codes[i] = Prepare("same-key", "").error_code(); });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(std::count(codes.begin(), codes.end(), grpc::StatusCode::OK), 1);
  EXPECT_EQ(std::count(codes.begin(), codes.end(), grpc::StatusCode::ALREADY_EXISTS), kClients - 1);
}

TEST_F(DaemonTest, TargetRefAnswersAlreadyExistsSoTheUnpackIsSkipped) {
  const std::map<std::string, std::string> target = {{"containerd.io/snapshot.ref", "sha256:chain1"}};
  ASSERT_TRUE(Prepare("ns/1/extract-1 sha256:chain1", "", target).ok());
  ASSERT_TRUE(Commit("ns/2/sha256:chain1", "ns/1/extract-1 sha256:chain1", target).ok());
  // Another namespace unpacking the same layer: the backend has it.
  EXPECT_EQ(Prepare("ns2/1/extract-2 sha256:chain1", "", target).error_code(), grpc::StatusCode::ALREADY_EXISTS);
  // Over another parent it is a different snapshot.
  ASSERT_TRUE(Prepare("p", "").ok());
  ASSERT_TRUE(Commit("other-parent", "p").ok());
  EXPECT_TRUE(Prepare("ns2/2/extract-3 sha256:chain1", "other-parent", target).ok());
}

TEST_F(DaemonTest, ListStreamsInBatchesAndStatWorksDuringIt) {
  constexpr int kCount = 250;
  for (int i = 0; i < kCount; ++i) ASSERT_TRUE(Prepare(fmt::format("key-{:03}", i), "").ok());
  grpc::ClientContext context;
  snapshots_api::ListSnapshotsRequest request;
  request.set_snapshotter("strata");
  auto reader = snapshots_->List(&context, request);
  snapshots_api::ListSnapshotsResponse batch;
  std::vector<int> sizes;
  while (reader->Read(&batch)) {
    sizes.push_back(batch.info_size());
    if (sizes.size() == 1) {  // a Stat while the stream is open must not block
      grpc::ClientContext stat_context;
      snapshots_api::StatSnapshotRequest stat;
      stat.set_snapshotter("strata");
      stat.set_key(batch.info(0).name());
      snapshots_api::StatSnapshotResponse info;
      ASSERT_TRUE(snapshots_->Stat(&stat_context, stat, &info).ok());
      EXPECT_EQ(info.info().SerializeAsString(), batch.info(0).SerializeAsString());
    }
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(sizes, (std::vector<int>{100, 100, 50}));

  grpc::ClientContext filtered_context;
  request.add_filters("name==key-007");
  request.add_filters("name~=^key-2[0-4]0$");
  auto filtered = snapshots_->List(&filtered_context, request);
  int matched = 0;
  while (filtered->Read(&batch)) matched += batch.info_size();
  ASSERT_TRUE(filtered->Finish().ok());
  EXPECT_EQ(matched, 1 + 5);
}

TEST_F(DaemonTest, RemoveIsMetadataOnlyAndCleanupReclaims) {
  ASSERT_TRUE(Prepare("doomed", "").ok());
  grpc::ClientContext mounts_context;
  snapshots_api::MountsRequest mounts_request;
  mounts_request.set_snapshotter("strata");
  mounts_request.set_key("doomed");
  snapshots_api::MountsResponse mounts;
  ASSERT_TRUE(snapshots_->Mounts(&mounts_context, mounts_request, &mounts).ok());
  ASSERT_EQ(mounts.mounts_size(), 1);
  EXPECT_EQ(mounts.mounts(0).type(), "bind");
  const fs::path fs_dir = mounts.mounts(0).source();
  ASSERT_TRUE(fs::is_directory(fs_dir));
  ASSERT_TRUE(Remove("doomed").ok());
  EXPECT_TRUE(fs::exists(fs_dir));

  grpc::ClientContext context;
  snapshots_api::CleanupRequest cleanup;
  cleanup.set_snapshotter("strata");
  google::protobuf::Empty empty;
  ASSERT_TRUE(snapshots_->Cleanup(&context, cleanup, &empty).ok());
  EXPECT_FALSE(fs::exists(fs_dir.parent_path()));
}

// The content write protocol as containerd's content/proxy writer drives it.
class ContentWriteSession {
 public:
  ContentWriteSession(content_api::Content::Stub& stub, std::string ref) : ref_(std::move(ref)) {
    stream_ = stub.Write(&context_);
  }
  content_api::WriteContentResponse Send(content_api::WriteAction action, std::string data = "", int64_t offset = 0,
                                         int64_t total = 0, std::string expected = "") {
    content_api::WriteContentRequest request;
    request.set_action(action);
    request.set_ref(ref_);
    request.set_data(std::move(data));
    request.set_offset(offset);
    request.set_total(total);
    request.set_expected(std::move(expected));
    content_api::WriteContentResponse response;
    ok_ = stream_->Write(request) && stream_->Read(&response);
    return response;
  }
  bool ok() const { return ok_; }
  grpc::Status Finish() {
    stream_->WritesDone();
    return stream_->Finish();
  }

 private:
  std::string ref_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<content_api::WriteContentRequest, content_api::WriteContentResponse>> stream_;
  bool ok_ = false;
};

TEST_F(DaemonTest, ContentWriteResumeCommitRead) {
  const std::string blob = std::string(3 << 20, 'x') + "tail";
  const Digest digest = Digest::Of(blob);
  const int64_t half = 1 << 20;
  {
    ContentWriteSession session(*content_, "ref-1");
    auto stat = session.Send(content_api::STAT, "", 0, static_cast<int64_t>(blob.size()), digest.ToString());
    ASSERT_TRUE(session.ok());
    EXPECT_EQ(stat.offset(), 0);
    auto wrote = session.Send(content_api::WRITE, blob.substr(0, half), 0);
    EXPECT_EQ(wrote.offset(), half);
    ASSERT_TRUE(session.Finish().ok());  // the client goes away mid-blob
  }
  {
    grpc::ClientContext context;
    content_api::StatusRequest request;
    request.set_ref("ref-1");
    content_api::StatusResponse status;
    ASSERT_TRUE(content_->Status(&context, request, &status).ok());
    EXPECT_EQ(status.status().offset(), half);
    EXPECT_EQ(status.status().total(), static_cast<int64_t>(blob.size()));
  }
  {
    ContentWriteSession session(*content_, "ref-1");
    auto stat = session.Send(content_api::STAT);
    EXPECT_EQ(stat.offset(), half);  // resume where it stopped
    EXPECT_EQ(session.Send(content_api::WRITE, "bad", 7).offset(), 0);  // wrong offset: the stream fails
    EXPECT_EQ(session.Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  {
    ContentWriteSession session(*content_, "ref-1");
    EXPECT_EQ(session.Send(content_api::STAT).offset(), half);
    EXPECT_EQ(session.Send(content_api::WRITE, blob.substr(half, half), half).offset(), 2 * half);
    auto committed = session.Send(content_api::COMMIT, blob.substr(2 * half), 2 * half,
                                  static_cast<int64_t>(blob.size()), digest.ToString());
    EXPECT_EQ(committed.offset(), static_cast<int64_t>(blob.size()));
    EXPECT_EQ(committed.digest(), digest.ToString());
    ASSERT_TRUE(session.Finish().ok());
  }
  {  // the same blob again: AlreadyExists tells the client to skip it
    ContentWriteSession session(*content_, "ref-2");
    session.Send(content_api::STAT, "", 0, static_cast<int64_t>(blob.size()), digest.ToString());
    EXPECT_EQ(session.Finish().error_code(), grpc::StatusCode::ALREADY_EXISTS);
  }
  {  // ranged read, streamed
    grpc::ClientContext context;
    content_api::ReadContentRequest request;
    request.set_digest(digest.ToString());
    request.set_offset(blob.size() - 10);
    request.set_size(6);
    auto reader = content_->Read(&context, request);
    content_api::ReadContentResponse chunk;
    std::string got;
    while (reader->Read(&chunk)) got += chunk.data();
    ASSERT_TRUE(reader->Finish().ok());
    EXPECT_EQ(got, blob.substr(blob.size() - 10, 6));
  }
  {  // whole read comes in chunks
    grpc::ClientContext context;
    content_api::ReadContentRequest request;
    request.set_digest(digest.ToString());
    auto reader = content_->Read(&context, request);
    content_api::ReadContentResponse chunk;
    std::string got;
    int chunks = 0;
    while (reader->Read(&chunk)) {
      EXPECT_EQ(chunk.offset(), static_cast<int64_t>(got.size()));
      got += chunk.data();
      ++chunks;
    }
    ASSERT_TRUE(reader->Finish().ok());
    EXPECT_EQ(got, blob);
    EXPECT_GE(chunks, 4);
  }
}

TEST_F(DaemonTest, ContentDigestMismatchPublishesNothing) {
  const std::string blob = "hello";
  const Digest wrong = Digest::Of("something else");
  ContentWriteSession session(*content_, "ref-bad");
  session.Send(content_api::COMMIT, blob, 0, static_cast<int64_t>(blob.size()), wrong.ToString());
  const grpc::Status status = session.Finish();
  EXPECT_NE(status.error_code(), grpc::StatusCode::OK);
  EXPECT_NE(status.error_message().find(wrong.ToString()), std::string::npos) << status.error_message();
  grpc::ClientContext context;
  content_api::InfoRequest info_request;
  info_request.set_digest(Digest::Of(blob).ToString());
  content_api::InfoResponse info;
  EXPECT_EQ(content_->Info(&context, info_request, &info).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(DaemonTest, ContentLabelsUpdateListAndAbort) {
  const std::string blob = "labelled";
  {
    ContentWriteSession session(*content_, "ref-l");
    session.Send(content_api::COMMIT, blob, 0, static_cast<int64_t>(blob.size()), Digest::Of(blob).ToString());
    ASSERT_TRUE(session.Finish().ok());
  }
  grpc::ClientContext context;
  content_api::UpdateRequest update;
  update.mutable_info()->set_digest(Digest::Of(blob).ToString());
  (*update.mutable_info()->mutable_labels())["containerd.io/gc.root"] = "yes";
  update.mutable_update_mask()->add_paths("labels.containerd.io/gc.root");
  content_api::UpdateResponse updated;
  ASSERT_TRUE(content_->Update(&context, update, &updated).ok());
  EXPECT_EQ(updated.info().labels().at("containerd.io/gc.root"), "yes");

  grpc::ClientContext list_context;
  content_api::ListContentRequest list;
  list.add_filters("labels.\"containerd.io/gc.root\"");
  auto reader = content_->List(&list_context, list);
  content_api::ListContentResponse batch;
  int listed = 0;
  while (reader->Read(&batch)) listed += batch.info_size();
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(listed, 1);

  {
    ContentWriteSession session(*content_, "ref-abandoned");
    session.Send(content_api::WRITE, "partial", 0, 100);
    ASSERT_TRUE(session.Finish().ok());
  }
  grpc::ClientContext statuses_context;
  content_api::ListStatusesRequest statuses_request;
  content_api::ListStatusesResponse statuses;
  ASSERT_TRUE(content_->ListStatuses(&statuses_context, statuses_request, &statuses).ok());
  ASSERT_EQ(statuses.statuses_size(), 1);
  EXPECT_EQ(statuses.statuses(0).ref(), "ref-abandoned");
  EXPECT_EQ(statuses.statuses(0).offset(), 7);
  grpc::ClientContext abort_context;
  content_api::AbortRequest abort;
  abort.set_ref("ref-abandoned");
  google::protobuf::Empty empty;
  ASSERT_TRUE(content_->Abort(&abort_context, abort, &empty).ok());
  grpc::ClientContext again_context;
  EXPECT_EQ(content_->Abort(&again_context, abort, &empty).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(DaemonTest, ShutdownLetsCallsFinishAndRemovesTheSocket) {
  // A List held open by a slow reader finishes during the shutdown grace period.
  for (int i = 0; i < 150; ++i) ASSERT_TRUE(Prepare(fmt::format("k{}", i), "").ok());
  grpc::ClientContext context;
  snapshots_api::ListSnapshotsRequest request;
  request.set_snapshotter("strata");
  auto reader = snapshots_->List(&context, request);
  snapshots_api::ListSnapshotsResponse batch;
  ASSERT_TRUE(reader->Read(&batch));
  std::thread stopper([&] { daemon_->Shutdown(); });
  int listed = batch.info_size();
  while (reader->Read(&batch)) listed += batch.info_size();
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(listed, 150);
  stopper.join();
  EXPECT_FALSE(fs::exists(socket()));
  EXPECT_FALSE(FindDaemonSocket(temp_->path() / "root").has_value());
}

// Runs this test binary as `uid`/`gid` (+ `groups`) with the filter below, so the call
// comes from another peer; returns the gRPC code it saw.
int CallAsPeer(const fs::path& socket, uid_t uid, gid_t gid, std::vector<gid_t> groups) {
  // Everything the child needs is built before fork: between fork and exec only
  // async-signal-safe calls (the parent has gRPC threads).
  const std::string env_socket = "STRATA_PEER_SOCKET=" + socket.string();
  char* const envp[] = {const_cast<char*>(env_socket.c_str()), nullptr};
  const pid_t child = ::fork();
  if (child == 0) {
    if (::setgroups(groups.size(), groups.data()) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0) ::_exit(100);
    ::execle("/proc/self/exe", "daemon_test", "--gtest_filter=PeerProbe.ReportsStatusCode", static_cast<char*>(nullptr),
             envp);
    ::_exit(101);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Not a test on its own: CallAsPeer's child. Exits with the code of one Stat call.
TEST(PeerProbe, ReportsStatusCode) {
  const char* socket = std::getenv("STRATA_PEER_SOCKET");
  if (socket == nullptr) GTEST_SKIP() << "runs only as CallAsPeer's child";
  auto channel = grpc::CreateChannel(std::string("unix:") + socket, grpc::InsecureChannelCredentials());
  auto stub = snapshots_api::Snapshots::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  snapshots_api::StatSnapshotRequest request;
  request.set_snapshotter("strata");
  request.set_key("absent");
  snapshots_api::StatSnapshotResponse response;
  std::_Exit(stub->Stat(&context, request, &response).error_code());
}

TEST_F(DaemonTest, OnlyRootAndAllowedGroupsMayCall) {
  constexpr gid_t kAllowed = 4242;
  daemon_.reset();  // releases the store for the next daemon
  Start({kAllowed});
  // Let everyone reach the socket so the gate, not the file mode, does the refusing.
  ASSERT_EQ(::chmod(socket().c_str(), 0666), 0);
  ASSERT_EQ(::chmod(temp_->path().c_str(), 0755), 0);
  EXPECT_EQ(CallAsPeer(socket(), 0, 0, {}), grpc::StatusCode::NOT_FOUND);  // root: allowed; the key is absent
  EXPECT_EQ(CallAsPeer(socket(), 65534, 65534, {}), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(CallAsPeer(socket(), 65534, 65534, {kAllowed}), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(CallAsPeer(socket(), 65534, kAllowed, {}), grpc::StatusCode::NOT_FOUND);
}

}  // namespace
}  // namespace strata::daemon
