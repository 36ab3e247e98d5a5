#include "daemon/peer_gate.h"

#include <sys/socket.h>

#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "base/file.h"

namespace strata::daemon {

namespace {

std::set<gid_t> SupplementaryGroups(pid_t pid) {
  std::set<gid_t> groups;
  std::ifstream status(fmt::format("/proc/{}/status", pid));
  std::string line;
  while (std::getline(status, line)) {
    if (!line.starts_with("Groups:")) continue;
    std::istringstream in(line.substr(7));
    gid_t gid;
    while (in >> gid) groups.insert(gid);
  }
  return groups;
}

}  // namespace

Result<PeerCredentials> ReadPeerCredentials(int fd) {
  struct ucred cred {};
  socklen_t len = sizeof(cred);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return ErrnoFail(errno, "SO_PEERCRED of a new connection");
  return PeerCredentials{.pid = cred.pid, .uid = cred.uid, .gid = cred.gid, .groups = SupplementaryGroups(cred.pid)};
}

void PeerGate::Admit(int fd, PeerCredentials credentials) {
  std::lock_guard lock(mutex_);
  by_peer_[fmt::format("fd:{}", fd)] = std::move(credentials);
}

bool PeerGate::Allows(const PeerCredentials& credentials) const {
  if (credentials.uid == 0) return true;
  if (allowed_groups_.contains(credentials.gid)) return true;
  for (gid_t gid : credentials.groups) {
    if (allowed_groups_.contains(gid)) return true;
  }
  return false;
}

Result<PeerCredentials> PeerGate::CredentialsOf(const grpc::ServerContext& context) const {
  const std::string peer = context.peer();
  std::lock_guard lock(mutex_);
  auto it = by_peer_.find(peer);
  if (it == by_peer_.end()) return Fail(ErrorCode::kFailedPrecondition, "unknown peer {}", peer);
  return it->second;
}

Status PeerGate::Check(const grpc::ServerContext& context) const {
  STRATA_ASSIGN_OR_RETURN(PeerCredentials credentials, CredentialsOf(context));
  if (!Allows(credentials)) {
    return Fail(ErrorCode::kFailedPrecondition, "peer pid {} uid {} gid {} is not root nor in an allowed group",
                credentials.pid, credentials.uid, credentials.gid);
  }
  return {};
}

}  // namespace strata::daemon
