// Who may call the daemon: root, and members of the allowed groups. The daemon accepts
// connections itself, reads each one's SO_PEERCRED, and only then hands the fd to gRPC;
// handlers ask the gate about the call's connection (gRPC names fd channels "fd:<n>").
// Refused peers still get an answer — PermissionDenied — rather than a dropped connection.
#pragma once

#include <sys/types.h>

#include <map>
#include <mutex>
#include <set>
#include <string>

#include <grpcpp/server_context.h>

#include "base/error.h"

namespace strata::daemon {

struct PeerCredentials {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  std::set<gid_t> groups;  // supplementary groups, read at accept time
};

// SO_PEERCRED of a connected unix socket, plus the peer's supplementary groups.
Result<PeerCredentials> ReadPeerCredentials(int fd);

class PeerGate {
 public:
  explicit PeerGate(std::set<gid_t> allowed_groups) : allowed_groups_(std::move(allowed_groups)) {}

  // Records the credentials of the connection on `fd` (replacing whatever an earlier,
  // closed connection with the same fd number left).
  void Admit(int fd, PeerCredentials credentials);
  bool Allows(const PeerCredentials& credentials) const;
  // OK when the call's connection was admitted and its peer is allowed.
  Status Check(const grpc::ServerContext& context) const;
  // The credentials of the call's connection (FailedPrecondition for an unknown peer), for
  // handlers whose rules depend on who calls (Images.Mount targets).
  Result<PeerCredentials> CredentialsOf(const grpc::ServerContext& context) const;

 private:
  std::set<gid_t> allowed_groups_;
  mutable std::mutex mutex_;
  std::map<std::string, PeerCredentials> by_peer_;  // "fd:<n>" -> credentials
};

}  // namespace strata::daemon
