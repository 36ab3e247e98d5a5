// The daemon's socket against callers it must refuse: `strata serve` in-process on a store
// holding one pulled image, called by this binary re-executed as other users (setuid
// before exec) and by root with hostile paths.
//  - With the default mode (0660 root:root) `nobody` cannot even connect; with the socket
//    opened to everyone the peer gate answers PermissionDenied to every method of
//    snapshots.v1, content.v1 and strata.v1.Images.
//  - Snapshot keys and names are opaque: path syntax in them creates nothing outside the
//    store, and every path in the mounts handed out lies under the store root.
//  - Images.Mount/Unmount refuse relative, non-canonical (.., symlinks), non-empty and
//    store-overlapping targets; a non-root caller only mounts on a directory it owns;
//    Unmount never touches a mount strata did not make.
//  - content.v1 has no read-by-path: no request field names a path, and digests with path
//    syntax are refused; Images.Load/Save of host paths are refused for a non-root caller.
#include <grp.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <google/protobuf/descriptor.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "containerd/services/content/v1/content.grpc.pb.h"
#include "containerd/services/snapshots/v1/snapshots.grpc.pb.h"
#include "daemon/daemon.h"
#include "strata/v1/images.grpc.pb.h"
#include "tests/hostile/hostile_support.h"
#include "tests/support/assertions.h"
#include "tests/support/image_builder.h"
#include "tests/support/registry_fixture.h"
#include "tests/support/root.h"

namespace strata::hostile {
namespace {

namespace fs = std::filesystem;
namespace snapshots_api = containerd::services::snapshots::v1;
namespace content_api = containerd::services::content::v1;
namespace images_api = strata::v1;

constexpr uid_t kNobody = 65534;
constexpr gid_t kAllowedGroup = 4343;

// One call of each method, by name, returning its status (streams: the status at their end).
using Call = std::function<grpc::Status(const std::shared_ptr<grpc::Channel>&, const std::string& arg)>;

const std::map<std::string, Call>& Calls() {
  static const auto* calls = new std::map<std::string, Call>([] {
    std::map<std::string, Call> c;
    using SnapStub = snapshots_api::Snapshots::Stub;
    using ContentStub = content_api::Content::Stub;
    using ImagesStub = images_api::Images::Stub;
    auto deadline = [](grpc::ClientContext& context) {
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    };
#define STRATA_UNARY(NAME, STUB, METHOD, REQUEST, RESPONSE, FILL)                          \
  c[NAME] = [=](const std::shared_ptr<grpc::Channel>& channel, const std::string& arg) {  \
    (void)arg;                                                                             \
    STUB stub(channel);                                                                    \
    grpc::ClientContext context;                                                           \
    deadline(context);                                                                     \
    REQUEST request;                                                                       \
    FILL;                                                                                  \
    RESPONSE response;                                                                     \
    return stub.METHOD(&context, request, &response);                                      \
  }
#define STRATA_STREAM(NAME, STUB, METHOD, REQUEST, RESPONSE, FILL)                         \
  c[NAME] = [=](const std::shared_ptr<grpc::Channel>& channel, const std::string& arg) {  \
    (void)arg;                                                                             \
    STUB stub(channel);                                                                    \
    grpc::ClientContext context;                                                           \
    deadline(context);                                                                     \
    REQUEST request;                                                                       \
    FILL;                                                                                  \
    auto reader = stub.METHOD(&context, request);                                          \
    RESPONSE response;                                                                     \
    while (reader->Read(&response)) {                                                      \
    }                                                                                      \
    return reader->Finish();                                                               \
  }
    STRATA_UNARY("snapshots.Prepare", SnapStub, Prepare, snapshots_api::PrepareSnapshotRequest,
                 snapshots_api::PrepareSnapshotResponse, (request.set_snapshotter("strata"), request.set_key("probe")));
    STRATA_UNARY("snapshots.View", SnapStub, View, snapshots_api::ViewSnapshotRequest, snapshots_api::ViewSnapshotResponse,
                 (request.set_snapshotter("strata"), request.set_key("probe-view"), request.set_parent(arg)));
    STRATA_UNARY("snapshots.Mounts", SnapStub, Mounts, snapshots_api::MountsRequest, snapshots_api::MountsResponse,
                 (request.set_snapshotter("strata"), request.set_key(arg)));
    STRATA_UNARY("snapshots.Commit", SnapStub, Commit, snapshots_api::CommitSnapshotRequest, google::protobuf::Empty,
                 (request.set_snapshotter("strata"), request.set_name("n"), request.set_key(arg)));
    STRATA_UNARY("snapshots.Remove", SnapStub, Remove, snapshots_api::RemoveSnapshotRequest, google::protobuf::Empty,
                 (request.set_snapshotter("strata"), request.set_key(arg)));
    STRATA_UNARY("snapshots.Stat", SnapStub, Stat, snapshots_api::StatSnapshotRequest, snapshots_api::StatSnapshotResponse,
                 (request.set_snapshotter("strata"), request.set_key(arg)));
    STRATA_UNARY("snapshots.Update", SnapStub, Update, snapshots_api::UpdateSnapshotRequest,
                 snapshots_api::UpdateSnapshotResponse,
                 (request.set_snapshotter("strata"), request.mutable_info()->set_name(arg)));
    STRATA_STREAM("snapshots.List", SnapStub, List, snapshots_api::ListSnapshotsRequest, snapshots_api::ListSnapshotsResponse,
                  request.set_snapshotter("strata"));
    STRATA_UNARY("snapshots.Usage", SnapStub, Usage, snapshots_api::UsageRequest, snapshots_api::UsageResponse,
                 (request.set_snapshotter("strata"), request.set_key(arg)));
    STRATA_UNARY("snapshots.Cleanup", SnapStub, Cleanup, snapshots_api::CleanupRequest, google::protobuf::Empty,
                 request.set_snapshotter("strata"));
    STRATA_UNARY("content.Info", ContentStub, Info, content_api::InfoRequest, content_api::InfoResponse,
                 request.set_digest(arg));
    STRATA_UNARY("content.Update", ContentStub, Update, content_api::UpdateRequest, content_api::UpdateResponse,
                 request.mutable_info()->set_digest(arg));
    STRATA_STREAM("content.List", ContentStub, List, content_api::ListContentRequest, content_api::ListContentResponse, {});
    STRATA_UNARY("content.Delete", ContentStub, Delete, content_api::DeleteContentRequest, google::protobuf::Empty,
                 request.set_digest(arg));
    STRATA_STREAM("content.Read", ContentStub, Read, content_api::ReadContentRequest, content_api::ReadContentResponse,
                  request.set_digest(arg));
    STRATA_UNARY("content.Status", ContentStub, Status, content_api::StatusRequest, content_api::StatusResponse,
                 request.set_ref(arg));
    STRATA_UNARY("content.ListStatuses", ContentStub, ListStatuses, content_api::ListStatusesRequest,
                 content_api::ListStatusesResponse, {});
    STRATA_UNARY("content.Abort", ContentStub, Abort, content_api::AbortRequest, google::protobuf::Empty,
                 request.set_ref(arg));
    c["content.Write"] = [=](const std::shared_ptr<grpc::Channel>& channel, const std::string& arg) {
      ContentStub stub(channel);
      grpc::ClientContext context;
      deadline(context);
      auto stream = stub.Write(&context);
      content_api::WriteContentRequest request;
      request.set_action(content_api::COMMIT);
      request.set_ref(arg);
      request.set_data("pwned\n");
      request.set_total(6);
      stream->Write(request);
      stream->WritesDone();
      content_api::WriteContentResponse response;
      while (stream->Read(&response)) {
      }
      return stream->Finish();
    };
    STRATA_STREAM("images.Pull", ImagesStub, Pull, images_api::PullRequest, images_api::PullEvent,
                  request.set_reference(arg));
    STRATA_STREAM("images.Push", ImagesStub, Push, images_api::PushRequest, images_api::PushEvent,
                  request.set_source(arg));
    STRATA_UNARY("images.List", ImagesStub, List, images_api::ListImagesRequest, images_api::ListImagesResponse, {});
    STRATA_UNARY("images.Get", ImagesStub, Get, images_api::GetImageRequest, images_api::GetImageResponse,
                 request.set_name(arg));
    STRATA_UNARY("images.Remove", ImagesStub, Remove, images_api::RemoveImageRequest, images_api::RemoveImageResponse,
                 request.set_name(arg));
    STRATA_UNARY("images.Tag", ImagesStub, Tag, images_api::TagImageRequest, images_api::TagImageResponse,
                 (request.set_source(arg), request.set_target("example.com/stolen:1")));
    STRATA_UNARY("images.Mount", ImagesStub, Mount, images_api::MountImageRequest, images_api::MountImageResponse,
                 (request.set_image(std::getenv("STRATA_PROBE_IMAGE") ? std::getenv("STRATA_PROBE_IMAGE") : "x"),
                  request.set_target(arg)));
    STRATA_UNARY("images.Unmount", ImagesStub, Unmount, images_api::UnmountImageRequest, images_api::UnmountImageResponse,
                 request.set_target(arg));
    STRATA_UNARY("images.Save", ImagesStub, Save, images_api::SaveImagesRequest, images_api::SaveImagesResponse,
                 (request.add_names("x"), request.set_path(arg)));
    STRATA_UNARY("images.Load", ImagesStub, Load, images_api::LoadImagesRequest, images_api::LoadImagesResponse,
                 request.set_path(arg));
    STRATA_UNARY("images.GC", ImagesStub, GC, images_api::GCRequest, images_api::GCResponse, {});
#undef STRATA_UNARY
#undef STRATA_STREAM
    return c;
  }());
  return *calls;
}

// Not a test on its own: CallAs's child. Makes one call and exits with its gRPC code.
TEST(SocketProbe, Call) {
  const char* socket = std::getenv("STRATA_PROBE_SOCKET");
  if (socket == nullptr) GTEST_SKIP() << "runs only as CallAs's child";
  auto channel = grpc::CreateChannel(std::string("unix:") + socket, grpc::InsecureChannelCredentials());
  const grpc::Status status = Calls().at(std::getenv("STRATA_PROBE_CALL"))(channel, std::getenv("STRATA_PROBE_ARG"));
  std::_Exit(status.error_code());
}

// Runs this binary as uid/gid (+ groups) making call `name` with `arg`; its gRPC code.
int CallAs(const fs::path& socket, uid_t uid, gid_t gid, std::vector<gid_t> groups, const std::string& name,
           const std::string& arg, const std::string& image = "x") {
  // Built before fork: the parent has gRPC threads, so the child only makes async-signal-safe calls.
  std::vector<std::string> env = {"STRATA_PROBE_SOCKET=" + socket.string(), "STRATA_PROBE_CALL=" + name,
                                  "STRATA_PROBE_ARG=" + arg, "STRATA_PROBE_IMAGE=" + image};
  std::vector<char*> envp;
  for (std::string& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  const pid_t child = ::fork();
  if (child == 0) {
    if (::setgroups(groups.size(), groups.data()) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0) ::_exit(100);
    ::execle("/proc/self/exe", "socket_test", "--gtest_filter=SocketProbe.Call", static_cast<char*>(nullptr),
             envp.data());
    ::_exit(101);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

class SocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    STRATA_REQUIRE_ROOT();
    ASSERT_OK_AND_ASSIGN(auto temp, test_support::TempRoot::Create("strata-socket"));
    temp_.emplace(std::move(temp));
    ASSERT_EQ(::chmod(temp_->path().c_str(), 0755), 0);  // others reach the socket; the gate decides
    ASSERT_OK_AND_ASSIGN(auto sentinel, Sentinel::Create(temp_->path() / "sentinel"));
    sentinel_.emplace(std::move(sentinel));
    // One image in the store, pulled before the daemon holds it.
    ASSERT_OK_AND_ASSIGN(auto registry, test_support::RegistryFixture::Start());
    ASSERT_OK_AND_ASSIGN(auto layer, test_support::LayerBuilder().File("hello", "hello\n").Build());
    test_support::ImageBuilder image;
    image.AddLayer(layer);
    ASSERT_OK(image.PushTo(*registry, "socket/image", "1"));
    image_ = registry->host() + "/socket/image:1";
    fs::create_directories(temp_->path() / "home");
    MeasuredRun pull = RunStrataMeasured(temp_->path() / "home", {"pull", "-q", image_});
    ASSERT_EQ(pull.code, 0) << pull.output;

    daemon::DaemonOptions options;
    options.root = store_root();
    options.socket_path = socket();
    options.allowed_groups = {kAllowedGroup};
    options.shutdown_grace = std::chrono::seconds(5);
    ASSERT_OK_AND_ASSIGN(daemon_, daemon::Daemon::Start(std::move(options)));
    channel_ = grpc::CreateChannel("unix:" + socket().string(), grpc::InsecureChannelCredentials());
  }

  void TearDown() override {
    daemon_.reset();
    if (sentinel_) {
      EXPECT_EQ(sentinel_->Changes(), "") << "the sentinel next to the store changed";
    }
  }

  fs::path socket() const { return temp_->path() / "strata.sock"; }
  fs::path store_root() const { return temp_->path() / "home" / "store"; }

  grpc::Status Call(const std::string& name, const std::string& arg) { return Calls().at(name)(channel_, arg); }

  // An empty directory under the temp root owned by uid.
  fs::path EmptyDir(const std::string& name, uid_t uid = 0) {
    const fs::path dir = temp_->path() / name;
    fs::create_directories(dir);
    EXPECT_EQ(::chown(dir.c_str(), uid, uid), 0);
    return dir;
  }

  std::optional<test_support::TempRoot> temp_;
  std::optional<Sentinel> sentinel_;
  std::string image_;
  std::unique_ptr<daemon::Daemon> daemon_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(SocketTest, NobodyCannotConnectToTheDefaultSocket) {
  struct stat st {};
  ASSERT_EQ(::stat(socket().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  EXPECT_EQ(CallAs(socket(), kNobody, kNobody, {}, "snapshots.List", ""), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(CallAs(socket(), 0, 0, {}, "snapshots.List", ""), grpc::StatusCode::OK);
}

TEST_F(SocketTest, EveryMethodRefusesAPeerOutsideTheAllowedGroups) {
  ASSERT_EQ(::chmod(socket().c_str(), 0666), 0);
  std::vector<std::string> not_refused;
  for (const auto& [name, call] : Calls()) {
    const int code = CallAs(socket(), kNobody, kNobody, {}, name, "/etc/passwd", image_);
    if (code != grpc::StatusCode::PERMISSION_DENIED) not_refused.push_back(fmt::format("{} -> {}", name, code));
  }
  EXPECT_TRUE(not_refused.empty()) << fmt::format("{}", fmt::join(not_refused, "\n"));
  std::cerr << "[ info ] " << Calls().size() << " methods refused to uid " << kNobody << " (PermissionDenied)\n";
  // The allowed group gets through (the key is absent).
  EXPECT_EQ(CallAs(socket(), kNobody, kNobody, {kAllowedGroup}, "snapshots.Stat", "absent"), grpc::StatusCode::NOT_FOUND);
}

TEST_F(SocketTest, SnapshotKeysWithPathSyntaxStayInsideTheStore) {
  snapshots_api::Snapshots::Stub stub(channel_);
  const fs::path root = fs::canonical(store_root());
  for (const std::string key : {"../../../sentinel/pwned", "/etc/cron.d/pwned", "a/../../../../b", "..", "."}) {
    SCOPED_TRACE(key);
    grpc::ClientContext context;
    snapshots_api::PrepareSnapshotRequest request;
    request.set_snapshotter("strata");
    request.set_key(key);
    snapshots_api::PrepareSnapshotResponse response;
    ASSERT_TRUE(stub.Prepare(&context, request, &response).ok());
    for (const auto& mount : response.mounts()) {
      std::vector<std::string> paths = {mount.source()};
      for (const std::string& option : mount.options()) {
        const size_t eq = option.find('=');
        if (eq == std::string::npos) continue;
        for (size_t start = eq + 1; start <= option.size();) {
          const size_t colon = std::min(option.find(':', start), option.size());
          paths.push_back(option.substr(start, colon - start));
          start = colon + 1;
        }
      }
      for (const std::string& path : paths) {
        if (path.empty() || path[0] != '/') continue;  // "overlay", "none"
        EXPECT_TRUE(fs::weakly_canonical(path).string().starts_with(root.string() + "/"))
            << "mount path outside the store: " << path;
      }
    }
    grpc::ClientContext commit_context;
    snapshots_api::CommitSnapshotRequest commit;
    commit.set_snapshotter("strata");
    commit.set_name(key + "/committed/../../../x");
    commit.set_key(key);
    google::protobuf::Empty empty;
    EXPECT_TRUE(stub.Commit(&commit_context, commit, &empty).ok());
  }
  // A parent named like a path is just an unknown key.
  EXPECT_EQ(Call("snapshots.View", "../../../../etc").error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_FALSE(fs::exists("/etc/cron.d/pwned"));
  std::vector<std::string> top;
  for (const auto& entry : fs::directory_iterator(temp_->path())) top.push_back(entry.path().filename().string());
  std::ranges::sort(top);
  EXPECT_EQ(top, (std::vector<std::string>{"home", "sentinel", "strata.sock"}));
}

TEST_F(SocketTest, ImageMountTargetsAreChecked) {
  auto mount = [&](const std::string& target) {
    images_api::Images::Stub stub(channel_);
    grpc::ClientContext context;
    images_api::MountImageRequest request;
    request.set_image(image_);
    request.set_target(target);
    images_api::MountImageResponse response;
    return stub.Mount(&context, request, &response);
  };
  const fs::path empty = EmptyDir("empty");
  fs::create_symlink(empty, temp_->path() / "link");
  const std::vector<std::pair<std::string, std::string>> refused = {
      {"relative/dir", "not an absolute path"},
      {(empty / ".." / "empty").string(), "not canonical"},
      {(temp_->path() / "link").string(), "not canonical"},
      {(empty.string() + "/"), "not canonical"},
      {sentinel_->path().string(), "not empty"},
      {(store_root() / "blobs").string(), "overlaps the store root"},
      {temp_->path().string(), "overlaps the store root"},
      {"/", "overlaps the store root"},
      {(sentinel_->path() / "keep").string(), "not a directory"},
      {(temp_->path() / "missing").string(), "No such file"},
  };
  for (const auto& [target, reason] : refused) {
    const grpc::Status status = mount(target);
    EXPECT_FALSE(status.ok()) << target << " was mounted";
    EXPECT_NE(status.error_message().find(reason), std::string::npos) << target << ": " << status.error_message();
    std::cerr << "[ info ] Images.Mount on " << target << ": " << status.error_message() << "\n";
  }
  // A good target works (and goes again).
  const grpc::Status mounted = mount(empty.string());
  ASSERT_TRUE(mounted.ok()) << mounted.error_message();
  EXPECT_EQ(ReadFile(empty / "hello").value_or(""), "hello\n");
  EXPECT_TRUE(Call("images.Unmount", empty.string()).ok());
  EXPECT_FALSE(fs::exists(empty / "hello"));

  // A member of the allowed group mounts only on a directory it owns.
  const fs::path roots = EmptyDir("roots-dir", 0);
  const fs::path own = EmptyDir("own-dir", kNobody);
  EXPECT_EQ(CallAs(socket(), kNobody, kNobody, {kAllowedGroup}, "images.Mount", roots.string(), image_),
            grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_FALSE(fs::exists(roots / "hello"));
  EXPECT_EQ(CallAs(socket(), kNobody, kNobody, {kAllowedGroup}, "images.Mount", own.string(), image_), grpc::StatusCode::OK);
  EXPECT_EQ(ReadFile(own / "hello").value_or(""), "hello\n");
  EXPECT_EQ(CallAs(socket(), kNobody, kNobody, {kAllowedGroup}, "images.Unmount", own.string()), grpc::StatusCode::OK);
  EXPECT_FALSE(fs::exists(own / "hello"));
  // ... and reads no host file by path.
  EXPECT_NE(CallAs(socket(), kNobody, kNobody, {kAllowedGroup}, "images.Load", "/etc/shadow"), grpc::StatusCode::OK);
  EXPECT_NE(CallAs(socket(), kNobody, kNobody, {kAllowedGroup}, "images.Save", (own / "out.tar").string()),
            grpc::StatusCode::OK);
}

TEST_F(SocketTest, UnmountLeavesMountsStrataDidNotMake) {
  const fs::path host_mount = EmptyDir("host-mount");
  ASSERT_EQ(::mount("tmpfs", host_mount.c_str(), "tmpfs", 0, "size=1m"), 0);
  ASSERT_OK(AtomicWriteFile(host_mount / "marker", "host\n"));
  const grpc::Status status = Call("images.Unmount", host_mount.string());
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND) << status.error_message();
  EXPECT_NE(status.error_message().find("strata has no mount at"), std::string::npos) << status.error_message();
  EXPECT_TRUE(fs::exists(host_mount / "marker")) << "Unmount removed a host mount";
  ::umount2(host_mount.c_str(), MNT_DETACH);
}

TEST_F(SocketTest, ContentHasNoReadByPath) {
  // No request of content.v1 has a field that could name a file.
  const auto* service =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(content_api::Content::service_full_name());
  ASSERT_NE(service, nullptr);
  for (int m = 0; m < service->method_count(); ++m) {
    const auto* input = service->method(m)->input_type();
    for (int f = 0; f < input->field_count(); ++f) {
      const std::string& field = input->field(f)->name();
      EXPECT_TRUE(field.find("path") == std::string::npos && field.find("file") == std::string::npos)
          << service->method(m)->name() << " takes " << field;
    }
  }
  // Digests with path syntax are refused by name; a ref with path syntax is only a key.
  for (const std::string digest : {"sha256:../../../../etc/passwd", "/etc/passwd", "sha256:/etc/passwd", "../blobs"}) {
    for (const std::string call : {"content.Info", "content.Read", "content.Delete"}) {
      const grpc::Status status = Call(call, digest);
      EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << call << " " << digest << ": " << status.error_message();
    }
  }
  const grpc::Status write = Call("content.Write", "../../../../sentinel/pwned");
  EXPECT_TRUE(write.ok()) << write.error_message();
  EXPECT_FALSE(fs::exists(sentinel_->path() / "pwned"));
  EXPECT_TRUE(Call("content.Info", Digest::Of("pwned\n").ToString()).ok()) << "the write went nowhere";
}

}  // namespace
}  // namespace strata::hostile
