// A real distribution 2.8 registry (`docker-registry serve`) on 127.0.0.1 for tests, in
// plain HTTP or TLS, without auth, with htpasswd Basic auth, or with token auth backed by a
// TokenServer the fixture runs itself. Everything it creates lives under one temp dir and
// goes away with the fixture: the registry process (stopped by pid), the token server
// thread, the files. Set STRATA_KEEP_TEST_DIRS=1 to keep the directory (config, log,
// storage) for post-mortem; its path is printed on stderr.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "base/file.h"
#include "tests/support/http_client.h"
#include "tests/support/process.h"
#include "tests/support/token_server.h"

namespace strata::test_support {

enum class RegistryAuth {
  kNone,
  kBasic,  // htpasswd (bcrypt) with `username`/`password`
  kToken,  // bearer tokens from the fixture's TokenServer
};

struct RegistryOptions {
  // Serve https with a certificate for 127.0.0.1 and localhost from a fresh CA
  // (RegistryFixture::ca_cert_path()).
  bool tls = false;
  RegistryAuth auth = RegistryAuth::kNone;
  // The htpasswd account (kBasic), or an account of the token server (kToken).
  std::string username = "strata";
  std::string password = "strata-password";
  // Token server settings (kToken). `username`/`password` are added to token.users; more
  // users and per-user grants go here. token.service/issuer also go into the config.
  TokenServerOptions token;
  // YAML appended verbatim at the top level of config.yml, for sections the fixture does
  // not write itself, e.g. "validation:\n  manifests:\n    urls:\n      allow: ['^http://']\n"
  // or "proxy:\n  remoteurl: http://...\n". The fixture writes version, log, storage, http
  // and auth; override those through `env` (REGISTRY_STORAGE_DELETE_ENABLED=false) instead.
  std::string extra_config_yaml;
  // Extra environment of the registry process; distribution maps REGISTRY_<PATH> to config.
  std::map<std::string, std::string> env;
  // With tls: require client certificates signed by this CA (PEM). The readiness probe then
  // presents probe_client_cert/probe_client_key.
  std::filesystem::path client_ca_file;
  std::filesystem::path probe_client_cert;
  std::filesystem::path probe_client_key;
  // How long to wait for /v2/ to answer.
  std::chrono::milliseconds start_timeout = std::chrono::seconds(30);
};

// One line of the registry's access log.
struct RegistryRequest {
  std::string method;
  std::string uri;  // path and query, as requested
  int status = 0;
};

class RegistryFixture {
 public:
  // Starts the registry (and token server) and waits until GET /v2/ answers 200 or 401.
  // Unavailable on timeout or early exit, with the tail of the registry's log in the
  // message. Retries on another port if the chosen one was taken meanwhile. The registry
  // process is killed if the calling thread exits (ChildOptions::kill_with_parent), so
  // start it from the thread that owns the fixture.
  static Result<std::unique_ptr<RegistryFixture>> Start(RegistryOptions options = {});
  ~RegistryFixture();
  RegistryFixture(const RegistryFixture&) = delete;
  RegistryFixture& operator=(const RegistryFixture&) = delete;

  // "127.0.0.1:<port>".
  std::string host() const;
  // "http://127.0.0.1:<port>" or "https://...".
  std::string url() const;
  int port() const { return port_; }
  pid_t pid() const { return child_.pid(); }
  const RegistryOptions& options() const { return options_; }

  // url() + "/v2/" + path, e.g. V2Url("library/busybox/manifests/latest").
  std::string V2Url(std::string_view path) const;

  const std::filesystem::path& dir() const { return dir_.path(); }
  std::filesystem::path storage_dir() const { return dir() / "storage"; }
  std::filesystem::path config_path() const { return dir() / "config.yml"; }
  std::filesystem::path log_path() const { return dir() / "registry.log"; }
  // PEM of the CA that signed the server certificate; empty path unless options.tls.
  const std::filesystem::path& ca_cert_path() const { return ca_cert_path_; }
  // The token server (kToken), else nullptr.
  TokenServer* token_server() const { return token_server_.get(); }
  // Token requests the token server has answered (0 unless kToken).
  int token_requests() const { return token_server_ ? token_server_->token_requests() : 0; }

  // Requests the registry has logged, oldest first, parsed from its access log (all runs
  // since Start, restarts included). The registry logs a request just after answering it,
  // so the newest one may show up a few milliseconds after the client got its response.
  std::vector<RegistryRequest> Requests() const;
  // How many logged requests have this method and a uri starting with `uri_prefix`.
  int CountRequests(std::string_view method, std::string_view uri_prefix) const;

  // The last `max_bytes` of the registry log.
  std::string LogTail(size_t max_bytes = 8192) const { return child_.LogTail(max_bytes); }

  // Client options with this registry's credentials and CA; AnonymousClientOptions has
  // only the CA.
  TestHttpClientOptions ClientOptions() const;
  TestHttpClientOptions AnonymousClientOptions() const;
  TestHttpClient Client() const { return TestHttpClient(ClientOptions()); }
  TestHttpClient AnonymousClient() const { return TestHttpClient(AnonymousClientOptions()); }

  // Stops the registry and starts it again on the same port with the same storage and
  // config (e.g. to test a client riding over a restart).
  Status Restart();

 private:
  RegistryFixture(RegistryOptions options, TempDir dir) : options_(std::move(options)), dir_(std::move(dir)) {}
  Status WriteConfig() const;
  // Launches the process on port_ and waits for /v2/. Sets *port_taken when the registry
  // died because the port was in use.
  Status Launch(bool* port_taken);

  RegistryOptions options_;
  TempDir dir_;
  std::filesystem::path ca_cert_path_;
  std::string http_secret_;
  int port_ = 0;
  std::unique_ptr<TokenServer> token_server_;
  Child child_;  // declared last: stopped first
};

// Writes an htpasswd file with one bcrypt ($2y$) entry per user, as distribution's
// htpasswd auth requires. `cost` 4..31; the minimum keeps per-request checks fast.
Status WriteHtpasswd(const std::filesystem::path& path, const std::map<std::string, std::string>& users, int cost = 4);

// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0 and released).
Result<int> PickFreeLoopbackPort();

}  // namespace strata::test_support
