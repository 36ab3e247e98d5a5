// `strata serve` as a process, as systemd and containerd run it: health, SIGTERM, socket
// activation, one server per socket.
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include "base/file.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "tests/support/assertions.h"
#include "tests/support/process.h"
#include "tests/support/root.h"

namespace strata {
namespace {

namespace fs = std::filesystem;
using test_support::Child;
using test_support::TempRoot;

// grpc.health.v1 Check of the server on `socket`; nullopt when nothing answers in time.
std::optional<grpc::health::v1::HealthCheckResponse::ServingStatus> Health(const fs::path& socket) {
  auto channel = grpc::CreateChannel("unix:" + socket.string(), grpc::InsecureChannelCredentials());
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  if (!stub->Check(&context, request, &response).ok()) return std::nullopt;
  return response.status();
}

bool WaitServing(const fs::path& socket, Child& child) {
  for (int i = 0; i < 100; ++i) {
    if (!child.Running()) return false;
    if (Health(socket) == grpc::health::v1::HealthCheckResponse::SERVING) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

class ServeCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    STRATA_REQUIRE_ROOT();
    ASSERT_OK_AND_ASSIGN(temp_, TempRoot::Create("strata-serve"));
  }
  Result<Child> Serve(const fs::path& root, std::vector<std::string> extra, std::vector<std::string> prefix = {}) {
    std::vector<std::string> argv = std::move(prefix);
    for (std::string arg : {std::string(STRATA_BIN), std::string("--root"), root.string(), std::string("serve")}) {
      argv.push_back(arg);
    }
    argv.insert(argv.end(), extra.begin(), extra.end());
    return Child::Start({.argv = argv, .log_path = temp_->path() / "serve.log"});
  }
  std::optional<TempRoot> temp_;
};

TEST_F(ServeCliTest, ServesHealthAndStopsCleanlyOnSigterm) {
  const fs::path socket = temp_->path() / "run" / "strata.sock";
  ASSERT_OK_AND_ASSIGN(Child server, Serve(temp_->path() / "root", {"--socket", socket.string()}));
  ASSERT_TRUE(WaitServing(socket, server)) << server.LogTail();
  ASSERT_OK_AND_ASSIGN(std::string record, ReadFile(temp_->path() / "root" / "daemon.json"));
  EXPECT_EQ(nlohmann::json::parse(record)["socket"], socket.string());

  // A second server for the same socket (another root) refuses to steal it.
  ASSERT_OK_AND_ASSIGN(Child second, Serve(temp_->path() / "root2", {"--socket", socket.string()}));
  ASSERT_OK_AND_ASSIGN(int second_code, second.Wait(std::chrono::seconds(20)));
  EXPECT_EQ(second_code, 1);
  EXPECT_NE(second.LogTail().find("another server answers on " + socket.string()), std::string::npos)
      << second.LogTail();
  EXPECT_EQ(Health(socket), grpc::health::v1::HealthCheckResponse::SERVING);

  EXPECT_EQ(server.Stop(std::chrono::seconds(20)), 0) << server.LogTail();
  EXPECT_FALSE(fs::exists(socket));
  EXPECT_FALSE(fs::exists(temp_->path() / "root" / "daemon.json"));
}

TEST_F(ServeCliTest, UnknownSnapshotterDriverIsRefusedAtStart) {
  ASSERT_OK_AND_ASSIGN(Child server, Serve(temp_->path() / "root", {"--socket", (temp_->path() / "s.sock").string(),
                                                                     "--snapshotter", "strata-vm=blockfile"}));
  ASSERT_OK_AND_ASSIGN(int code, server.Wait(std::chrono::seconds(20)));
  EXPECT_EQ(code, 1);
  EXPECT_NE(server.LogTail().find("unknown driver \"blockfile\""), std::string::npos) << server.LogTail();
}

TEST_F(ServeCliTest, SocketActivation) {
  const fs::path socket = temp_->path() / "activated.sock";
  if (!fs::exists("/usr/bin/systemd-socket-activate")) GTEST_SKIP() << "systemd-socket-activate is not installed";
  ASSERT_OK_AND_ASSIGN(Child server, Serve(temp_->path() / "root", {},
                                           {"/usr/bin/systemd-socket-activate", "-l", socket.string()}));
  // The first connection starts strata with the listener on fd 3.
  ASSERT_TRUE(WaitServing(socket, server)) << server.LogTail();
  ASSERT_OK_AND_ASSIGN(std::string record, ReadFile(temp_->path() / "root" / "daemon.json"));
  EXPECT_EQ(nlohmann::json::parse(record)["socket"], socket.string());
  EXPECT_EQ(server.Stop(std::chrono::seconds(20)), 0) << server.LogTail();
}

}  // namespace
}  // namespace strata
