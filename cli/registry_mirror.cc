#include "cli/registry_mirror.h"

#include "cli/app.h"
#include "oci/reference.h"

namespace strata::cli {

void AddMirrorFlags(CLI::App* command, MirrorFlags& flags) {
  command->add_option("--registry", flags.address,
                      "Also serve the store as a read-only OCI registry (distribution API: manifests, blobs with "
                      "Range, tags, catalog) on HOST:PORT, e.g. 127.0.0.1:5000 or 0.0.0.0:5000. An image stored "
                      "as docker.io/library/alpine:3 is served as library/alpine:3 (and under its full name)");
  command->add_option("--upstream", flags.upstream,
                      "Pull-through for --registry: tags, manifests and blobs the store lacks are fetched from "
                      "this registry (http://HOST:PORT, https://HOST, or a domain such as docker.io), stored and "
                      "served; each blob is downloaded once however many clients ask");
  command->add_option("--registry-workers", flags.workers, "Connections --registry serves at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  AddRegistryFlags(command, flags.registry);
}

Result<std::pair<std::string, bool>> ParseUpstream(const std::string& url) {
  std::string rest = url;
  bool plain_http = false;
  if (rest.starts_with("http://")) {
    plain_http = true;
    rest.erase(0, 7);
  } else if (rest.starts_with("https://")) {
    rest.erase(0, 8);
  }
  while (rest.ends_with("/")) rest.pop_back();
  if (rest == "registry-1.docker.io" || rest == "index.docker.io") rest = std::string(oci::kDockerHubDomain);
  if (rest.empty() || rest.find('/') != std::string::npos || !oci::Reference::Parse(rest + "/probe:latest")) {
    return Fail(ErrorCode::kInvalidArgument, "--upstream {:?}: use http://HOST[:PORT], https://HOST[:PORT] or HOST",
                url);
  }
  return std::make_pair(rest, plain_http);
}

RunningMirror::~RunningMirror() {
  if (server_) server_->Stop();
  server_.reset();
}

std::unique_ptr<RunningMirror> StartMirrorOrDie(const MirrorFlags& flags, store::Store& store) {
  auto running = std::unique_ptr<RunningMirror>(new RunningMirror());
  mirror::RegistryServerOptions options;
  if (!flags.upstream.empty()) {
    auto [domain, plain_http] = OrDie(ParseUpstream(flags.upstream));
    RegistryFlags registry_flags = flags.registry;
    registry_flags.plain_http = registry_flags.plain_http || plain_http;
    running->session_ = OpenRegistrySessionOrDie(registry_flags, {OrDie(oci::Reference::Parse(domain + "/x:latest"))});
    running->fetcher_ =
        std::make_unique<registry::Fetcher>(running->session_->resolver(), store.content(), &store.leases());
    options.upstream = mirror::Upstream{
        .domain = domain, .resolver = &running->session_->resolver(), .fetcher = running->fetcher_.get()};
  }
  running->registry_ = std::make_unique<mirror::RegistryServer>(store, std::move(options));
  mirror::RegistryServer* handler = running->registry_.get();
  running->server_ = OrDie(mirror::HttpServer::Start(
      {.address = flags.address, .workers = flags.workers},
      [handler](const mirror::HttpServerRequest& request, mirror::HttpResponseWriter& response) {
        handler->Handle(request, response);
      }));
  return running;
}

}  // namespace strata::cli
