// The CLI's way to a running `strata serve`. While a daemon serves the root, it holds the
// store, so the commands that go through it (pull, push, images, tag, rmi, mount, umount,
// gc) call its strata.v1.Images API instead of opening the store, get back the engine's own
// result types, and print them exactly as they print their own.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "base/error.h"
#include "cli/app.h"
#include "cli/registry_session.h"
#include "images/collect_garbage.h"
#include "images/pull.h"
#include "images/push.h"
#include "registry/progress.h"
#include "store/image_store.h"
#include "strata/v1/images.grpc.pb.h"

namespace strata::cli {

// The commands that go through a running daemon (for help texts and errors).
inline constexpr std::string_view kDaemonCommands = "pull, push, images, tag, rmi, mount, umount, gc";

class DaemonClient {
 public:
  // A client of the daemon serving options.root (daemon::FindDaemonSocket); nullptr when
  // no live daemon serves it.
  static std::unique_ptr<DaemonClient> Find(const GlobalOptions& options);

  const std::filesystem::path& socket() const { return socket_; }

  // Pull and Push feed each progress event to `progress` (may be null) as it arrives and
  // return the final result. Errors are the daemon's, as the engine gave them.
  Result<images::PullResult> Pull(const strata::v1::PullRequest& request, const registry::ProgressSink& progress);
  struct Pushed {
    std::string name;  // the normalised destination
    images::PushImageResult result;
  };
  Result<Pushed> Push(const strata::v1::PushRequest& request, const registry::ProgressSink& progress);
  Result<std::vector<store::Image>> List(const std::vector<std::string>& filters);
  Result<store::Image> Tag(const std::string& source, const std::string& target);
  Result<std::string> Remove(const std::string& name);
  Result<strata::v1::MountImageResponse> Mount(const strata::v1::MountImageRequest& request);
  // Unmounts a directory the daemon mounted (absolute path).
  Status Unmount(const std::string& target);
  Result<images::GarbageReport> CollectGarbage(bool dry_run);

 private:
  explicit DaemonClient(std::filesystem::path socket);
  std::filesystem::path socket_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<strata::v1::Images::Stub> stub_;
};

// The registry flags as a request's RegistryOptions (certs dir resolved here, so the daemon
// reads the one this command would have read).
void ToProto(const RegistryFlags& flags, strata::v1::RegistryOptions* out);

}  // namespace strata::cli
