#include "tests/support/registry_fixture.h"

#include <arpa/inet.h>
#include <crypt.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/rand.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include <nlohmann/json.hpp>

#include "tests/support/test_crypto.h"

namespace strata::test_support {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

constexpr int kPortAttempts = 5;

// A YAML double-quoted scalar (JSON string syntax is valid YAML).
std::string Quote(std::string_view text) { return nlohmann::json(std::string(text)).dump(); }

std::string RandomHex(size_t bytes) {
  std::string raw(bytes, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(bytes));
  std::string hex;
  for (unsigned char c : raw) hex += fmt::format("{:02x}", c);
  return hex;
}

}  // namespace

Result<int> PickFreeLoopbackPort() {
  UniqueFd socket_fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!socket_fd) return Fail(ErrorCode::kInternal, "socket: {}", std::strerror(errno));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(socket_fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    return Fail(ErrorCode::kUnavailable, "bind 127.0.0.1:0: {}", std::strerror(errno));
  }
  socklen_t length = sizeof(address);
  if (::getsockname(socket_fd.get(), reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    return Fail(ErrorCode::kInternal, "getsockname: {}", std::strerror(errno));
  }
  return static_cast<int>(ntohs(address.sin_port));
}

Status WriteHtpasswd(const std::filesystem::path& path, const std::map<std::string, std::string>& users, int cost) {
  std::string content;
  auto data = std::make_unique<crypt_data>();
  for (const auto& [user, password] : users) {
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    if (crypt_gensalt_rn("$2y$", static_cast<unsigned long>(cost), nullptr, 0, setting, sizeof(setting)) == nullptr) {
      return Fail(ErrorCode::kInternal, "crypt_gensalt_rn($2y$, {}): {}", cost, std::strerror(errno));
    }
    *data = crypt_data{};
    const char* hash = crypt_r(password.c_str(), setting, data.get());
    if (hash == nullptr || hash[0] == '*') {
      return Fail(ErrorCode::kInternal, "bcrypt of the password of {} failed", user);
    }
    content += fmt::format("{}:{}\n", user, hash);
  }
  return AtomicWriteFile(path, content, 0600);
}

Result<std::unique_ptr<RegistryFixture>> RegistryFixture::Start(RegistryOptions options) {
  STRATA_ASSIGN_OR_RETURN(TempDir dir, TempDir::Create("strata-registry"));
  std::unique_ptr<RegistryFixture> fixture(new RegistryFixture(std::move(options), std::move(dir)));
  RegistryOptions& opts = fixture->options_;
  fixture->http_secret_ = RandomHex(16);

  if (opts.tls) {
    STRATA_ASSIGN_OR_RETURN(TestCertificateAuthority ca, TestCertificateAuthority::Create("strata test registry CA"));
    STRATA_ASSIGN_OR_RETURN(PemCertificate server, ca.IssueServerCertificate({"localhost"}, {"127.0.0.1", "::1"}));
    fixture->ca_cert_path_ = fixture->dir() / "ca.pem";
    STRATA_RETURN_IF_ERROR(AtomicWriteFile(fixture->ca_cert_path_, ca.cert_pem()));
    STRATA_RETURN_IF_ERROR(AtomicWriteFile(fixture->dir() / "server.pem", server.cert_pem));
    STRATA_RETURN_IF_ERROR(AtomicWriteFile(fixture->dir() / "server-key.pem", server.key_pem, 0600));
  }
  if (opts.auth == RegistryAuth::kBasic) {
    STRATA_RETURN_IF_ERROR(WriteHtpasswd(fixture->dir() / "htpasswd", {{opts.username, opts.password}}));
  }
  if (opts.auth == RegistryAuth::kToken) {
    TokenServerOptions token = opts.token;
    if (!opts.username.empty()) token.users.emplace(opts.username, opts.password);
    STRATA_ASSIGN_OR_RETURN(fixture->token_server_, TokenServer::Start(std::move(token)));
    STRATA_RETURN_IF_ERROR(AtomicWriteFile(fixture->dir() / "token-signer.pem",
                                           fixture->token_server_->signing_cert_pem()));
  }

  std::string failures;
  for (int attempt = 1; attempt <= kPortAttempts; ++attempt) {
    STRATA_ASSIGN_OR_RETURN(fixture->port_, PickFreeLoopbackPort());
    STRATA_RETURN_IF_ERROR(fixture->WriteConfig());
    bool port_taken = false;
    Status launched = fixture->Launch(&port_taken);
    if (launched) return fixture;
    if (!port_taken) return Fail(launched.error());
    failures += fmt::format(" {}", fixture->port_);
  }
  return Fail(ErrorCode::kUnavailable, "docker-registry: ports{} were all taken when it started", failures);
}

RegistryFixture::~RegistryFixture() {
  child_.Stop(milliseconds(3000));
  token_server_.reset();
  if (std::getenv("STRATA_KEEP_TEST_DIRS") != nullptr) {
    std::fprintf(stderr, "RegistryFixture: keeping %s\n", dir_.Release().c_str());
  }
}

std::string RegistryFixture::host() const { return fmt::format("127.0.0.1:{}", port_); }

std::string RegistryFixture::url() const { return fmt::format("{}://{}", options_.tls ? "https" : "http", host()); }

std::string RegistryFixture::V2Url(std::string_view path) const { return fmt::format("{}/v2/{}", url(), path); }

TestHttpClientOptions RegistryFixture::AnonymousClientOptions() const {
  return TestHttpClientOptions{.ca_file = ca_cert_path_};
}

TestHttpClientOptions RegistryFixture::ClientOptions() const {
  TestHttpClientOptions client = AnonymousClientOptions();
  if (options_.auth != RegistryAuth::kNone) {
    client.username = options_.username;
    client.password = options_.password;
  }
  return client;
}

Status RegistryFixture::WriteConfig() const {
  std::string yaml = fmt::format(
      "version: 0.1\n"
      "log:\n"
      "  level: info\n"
      "  formatter: text\n"
      "storage:\n"
      "  filesystem:\n"
      "    rootdirectory: {}\n"
      "  delete:\n"
      "    enabled: true\n"
      "  maintenance:\n"
      "    uploadpurging:\n"
      "      enabled: false\n"
      "http:\n"
      "  addr: {}\n"
      "  secret: {}\n",
      Quote(storage_dir().native()), Quote(host()), Quote(http_secret_));
  if (options_.tls) {
    yaml += fmt::format("  tls:\n    certificate: {}\n    key: {}\n", Quote((dir() / "server.pem").native()),
                        Quote((dir() / "server-key.pem").native()));
  }
  switch (options_.auth) {
    case RegistryAuth::kNone:
      break;
    case RegistryAuth::kBasic:
      yaml += fmt::format("auth:\n  htpasswd:\n    realm: {}\n    path: {}\n", Quote("strata-test-registry"),
                          Quote((dir() / "htpasswd").native()));
      break;
    case RegistryAuth::kToken:
      yaml += fmt::format(
          "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
          Quote(token_server_->realm()), Quote(token_server_->options().service),
          Quote(token_server_->options().issuer), Quote((dir() / "token-signer.pem").native()));
      break;
  }
  if (!options_.extra_config_yaml.empty()) {
    yaml += options_.extra_config_yaml;
    if (yaml.back() != '\n') yaml += '\n';
  }
  return AtomicWriteFile(config_path(), yaml);
}

Status RegistryFixture::Launch(bool* port_taken) {
  *port_taken = false;
  // Separate the attempts in the one log file, so LogTail shows the latest.
  {
    STRATA_ASSIGN_OR_RETURN(UniqueFd log, OpenFile(log_path(), O_WRONLY | O_CREAT | O_APPEND));
    STRATA_RETURN_IF_ERROR(WriteAll(log.get(), fmt::format("=== strata test fixture: starting on {}\n", host())));
  }
  std::map<std::string, std::string> env = options_.env;
  if (!options_.client_ca_file.empty()) {
    env["REGISTRY_HTTP_TLS_CLIENTCAS"] = fmt::format("[{}]", options_.client_ca_file.native());
  }
  ChildOptions child_options{
      .argv = {"docker-registry", "serve", config_path().native()},
      .env = std::move(env),
      .log_path = log_path(),
      .working_dir = dir(),
  };
  STRATA_ASSIGN_OR_RETURN(child_, Child::Start(std::move(child_options)));

  TestHttpClientOptions probe_options = AnonymousClientOptions();
  probe_options.timeout_seconds = 2;
  probe_options.handle_auth = false;
  probe_options.client_cert = options_.probe_client_cert;
  probe_options.client_key = options_.probe_client_key;
  TestHttpClient probe(probe_options);
  auto deadline = steady_clock::now() + options_.start_timeout;
  std::string last_probe = "no answer yet";
  while (true) {
    if (!child_.Running()) {
      std::string log = LogTail(16384);
      size_t this_attempt = log.rfind("=== strata test fixture");
      *port_taken = log.find("address already in use", this_attempt == std::string::npos ? 0 : this_attempt) !=
                    std::string::npos;
      return Fail(ErrorCode::kUnavailable, "docker-registry exited with code {} before serving {}; log {}:\n{}",
                  ExitCodeOf(child_.wait_status().value_or(0)), url(), log_path().native(), LogTail());
    }
    Result<HttpResponse> answer = probe.SendOnce({.url = V2Url("")});
    if (answer && (answer->status == 200 || answer->status == 401)) return {};
    last_probe = answer ? fmt::format("HTTP {}", answer->status) : answer.error().message();
    if (steady_clock::now() >= deadline) {
      child_.Stop(milliseconds(2000));
      return Fail(ErrorCode::kUnavailable, "docker-registry did not answer {} within {} ms (last probe: {}); log {}:\n{}",
                  V2Url(""), options_.start_timeout.count(), last_probe, log_path().native(), LogTail());
    }
    std::this_thread::sleep_for(milliseconds(25));
  }
}

std::vector<RegistryRequest> RegistryFixture::Requests() const {
  std::vector<RegistryRequest> requests;
  Result<std::string> log = ReadFile(log_path());
  if (!log) return requests;
  // Access log lines: 127.0.0.1 - - [date] "GET /v2/ HTTP/1.1" 200 2 "" ""
  std::string_view rest = *log;
  while (!rest.empty()) {
    size_t newline = rest.find('\n');
    std::string_view line = rest.substr(0, newline);
    rest.remove_prefix(newline == std::string_view::npos ? rest.size() : newline + 1);
    if (line.starts_with("time=")) continue;
    size_t open = line.find("] \"");
    if (open == std::string_view::npos) continue;
    std::string_view request = line.substr(open + 3);
    size_t close = request.find('"');
    if (close == std::string_view::npos) continue;
    std::string_view request_line = request.substr(0, close);
    size_t space = request_line.find(' ');
    size_t last_space = request_line.rfind(' ');
    if (space == std::string_view::npos || last_space <= space) continue;
    RegistryRequest entry{.method = std::string(request_line.substr(0, space)),
                          .uri = std::string(request_line.substr(space + 1, last_space - space - 1))};
    std::string_view after = request.substr(close + 1);
    while (after.starts_with(" ")) after.remove_prefix(1);
    entry.status = std::atoi(std::string(after.substr(0, after.find(' '))).c_str());
    requests.push_back(std::move(entry));
  }
  return requests;
}

int RegistryFixture::CountRequests(std::string_view method, std::string_view uri_prefix) const {
  int count = 0;
  for (const RegistryRequest& request : Requests()) {
    if (request.method == method && std::string_view(request.uri).starts_with(uri_prefix)) ++count;
  }
  return count;
}

Status RegistryFixture::Restart() {
  child_.Stop(milliseconds(3000));
  // The port was ours a moment ago; give the kernel a few tries to release it.
  for (int attempt = 0;; ++attempt) {
    bool port_taken = false;
    Status launched = Launch(&port_taken);
    if (launched || !port_taken || attempt >= 20) return launched;
    std::this_thread::sleep_for(milliseconds(100));
  }
}

}  // namespace strata::test_support
