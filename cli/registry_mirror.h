// `strata serve --registry ADDR [--upstream URL]`: the read-only registry mirror endpoint
// (mirror/registry_server.h) and, with an upstream, the registry session it pulls through.
#pragma once

#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "cli/registry_session.h"
#include "mirror/http_server.h"
#include "mirror/registry_server.h"
#include "store/store.h"

namespace strata::cli {

struct MirrorFlags {
  std::string address;   // "" = no registry endpoint
  std::string upstream;  // "" = no pull-through
  int workers = 32;
  RegistryFlags registry;  // for the upstream
};

// Adds --registry, --upstream, --registry-workers and the upstream's registry flags.
void AddMirrorFlags(CLI::App* command, MirrorFlags& flags);

// The upstream's domain as references name it, and whether it speaks plain HTTP:
// "http://127.0.0.1:5000" -> {"127.0.0.1:5000", true}; "https://registry-1.docker.io" and
// "docker.io" -> {"docker.io", false}. InvalidArgument for anything else than [scheme://]host[:port].
Result<std::pair<std::string, bool>> ParseUpstream(const std::string& url);

// A running mirror endpoint and what it is built on. Stops (and joins) on destruction.
class RunningMirror {
 public:
  ~RunningMirror();
  const std::string& address() const { return server_->address(); }
  void Stop() { server_->Stop(); }

 private:
  friend std::unique_ptr<RunningMirror> StartMirrorOrDie(const MirrorFlags& flags, store::Store& store);
  RunningMirror() = default;
  std::unique_ptr<registry::Session> session_;
  std::unique_ptr<registry::Fetcher> fetcher_;
  std::unique_ptr<mirror::RegistryServer> registry_;
  std::unique_ptr<mirror::HttpServer> server_;  // declared last: stopped first
};

// REQUIRES: flags.address is set; `store` outlives the mirror. Die()s on errors.
std::unique_ptr<RunningMirror> StartMirrorOrDie(const MirrorFlags& flags, store::Store& store);

}  // namespace strata::cli
