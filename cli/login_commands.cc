// `strata login [SERVER]` and `strata logout [SERVER]`: credentials in strata's own auth file
// ($XDG_CONFIG_HOME/strata/auth.json), checked against the registry before they are saved.
#include <strings.h>
#include <termios.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include <fmt/format.h>

#include "cli/app.h"
#include "cli/registry_session.h"
#include "oci/reference.h"
#include "registry/auth.h"
#include "registry/credentials.h"
#include "registry/hosts.h"
#include "registry/url.h"

namespace strata::cli {
namespace {

constexpr std::string_view kDefaultServer = "docker.io";

struct LoginArgs {
  std::string server = std::string(kDefaultServer);
  std::string username;
  std::string password;
  bool password_stdin = false;
  RegistryFlags registry;
};

struct LogoutArgs {
  std::string server = std::string(kDefaultServer);
};

// What SERVER names: the credential store's key ("docker.io", "host:5000") and the scheme
// if the user wrote one ("https://host:5000").
struct LoginServer {
  std::string key;
  std::optional<std::string> scheme;
};

LoginServer ParseServer(std::string_view server) {
  LoginServer parsed;
  for (std::string_view scheme : {"https", "http"}) {
    std::string prefix = std::string(scheme) + "://";
    if (server.size() > prefix.size() && strncasecmp(server.data(), prefix.data(), prefix.size()) == 0) {
      parsed.scheme = std::string(scheme);
      break;
    }
  }
  parsed.key = registry::CanonicalRegistryHost(server);
  if (parsed.key.empty() || parsed.key.find_first_of(" \t@") != std::string::npos) {
    Die(Error(ErrorCode::kInvalidArgument, fmt::format("invalid registry server \"{}\"", server)));
  }
  return parsed;
}

// Where the login request goes: the SERVER's scheme when given, else the registry's upstream
// as hosts.toml (`server`) and --plain-http decide — the host pulls and pushes reach last.
registry::RegistryHost UpstreamHost(const LoginServer& server, const RegistryFlags& flags,
                                    std::unique_ptr<RegistrySession>& session) {
  // A reference on the registry, to reuse HostsConfig (hosts.toml, Docker Hub's API host).
  auto reference = oci::Reference::Parse(server.key + "/strata/login");
  if (reference && reference->domain() == server.key) {
    session = OpenRegistrySessionOrDie(flags, {*reference});
    if (server.scheme) {
      return registry::RegistryHost{.scheme = *server.scheme, .host = reference->ApiHost()};
    }
    std::vector<registry::RegistryHost> hosts = OrDie(session->resolver().options().hosts.HostsFor(*reference));
    return hosts.back();  // HostsFor ends with the upstream
  }
  // A name references cannot hold as a domain ("myregistry"): talk to it as written.
  session = OpenRegistrySessionOrDie(flags, {});
  registry::RegistryHost host{.host = server.key};
  bool plain = flags.plain_http || registry::DefaultsToPlainHttp(server.key);
  host.scheme = server.scheme.value_or(plain ? "http" : "https");
  return host;
}

// Restores the terminal's echo on scope exit.
class EchoOff {
 public:
  EchoOff() {
    if (tcgetattr(STDIN_FILENO, &saved_) == 0) {
      termios quiet = saved_;
      quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
      active_ = tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) == 0;
    }
  }
  ~EchoOff() {
    if (active_) tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_);
  }
  EchoOff(const EchoOff&) = delete;
  EchoOff& operator=(const EchoOff&) = delete;

 private:
  termios saved_{};
  bool active_ = false;
};

// One line of stdin without its line ending; nullopt at end of input.
std::optional<std::string> ReadLine() {
  std::string line;
  if (!std::getline(std::cin, line) && line.empty()) return std::nullopt;
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
  return line;
}

std::string Prompt(std::string_view label, bool secret) {
  fmt::print(stderr, "{}: ", label);
  std::fflush(stderr);
  std::optional<std::string> line;
  if (secret) {
    EchoOff echo_off;
    line = ReadLine();
    fmt::print(stderr, "\n");
  } else {
    line = ReadLine();
  }
  if (!line) Die(Error(ErrorCode::kInvalidArgument, fmt::format("no {} given", label)));
  return *line;
}

// Fills in username and password from the flags, stdin or a terminal prompt.
registry::Credentials GatherCredentials(const LoginArgs& args) {
  registry::Credentials credentials{.username = args.username, .password = args.password};
  const bool terminal = isatty(STDIN_FILENO) != 0;
  if (args.password_stdin) {
    if (credentials.username.empty()) {
      Die(Error(ErrorCode::kInvalidArgument, "--password-stdin needs --username (-u)"));
    }
    std::optional<std::string> line = ReadLine();
    if (!line) Die(Error(ErrorCode::kInvalidArgument, "--password-stdin: no password on stdin"));
    credentials.password = std::move(*line);
  } else if (!credentials.password.empty()) {
    fmt::print(stderr, "WARNING! Using --password on the command line is insecure; use --password-stdin.\n");
  }
  if (credentials.username.empty()) {
    if (!terminal) Die(Error(ErrorCode::kInvalidArgument, "no username given: pass -u (stdin is not a terminal)"));
    credentials.username = Prompt("Username", /*secret=*/false);
  }
  if (credentials.password.empty() && !args.password_stdin) {
    if (!terminal) {
      Die(Error(ErrorCode::kInvalidArgument,
                "no password given: pass --password-stdin or -p (stdin is not a terminal)"));
    }
    credentials.password = Prompt("Password", /*secret=*/true);
  }
  if (credentials.username.empty() || credentials.password.empty()) {
    Die(Error(ErrorCode::kInvalidArgument, "username and password must not be empty"));
  }
  return credentials;
}

void RunLogin(const LoginArgs& args) {
  LoginServer server = ParseServer(args.server);
  registry::Credentials credentials = GatherCredentials(args);
  std::unique_ptr<RegistrySession> session;
  registry::RegistryHost host = UpstreamHost(server, args.registry, session);

  // Only these credentials, whatever the stores hold: a 200 from /v2/ proves they work
  // (a registry without auth accepts anything, as with docker login).
  registry::Authorizer authorizer(session->client(),
                                  [credentials](std::string_view) -> Result<std::optional<registry::Credentials>> {
                                    return credentials;
                                  });
  auto fail = [&](std::string_view why) {
    Die(Error(ErrorCode::kFailedPrecondition, fmt::format("login to {} failed: {}", server.key, why)));
  };
  auto response = authorizer.Send(registry::HttpRequest{.method = "GET", .url = host.ApiUrl()}, {});
  if (!response) {
    Die(Error(response.error().code(), fmt::format("login to {} failed: {}", server.key, response.error().message())));
  }
  if (response->status == 401 || response->status == 403) {
    fail(fmt::format("unauthorized: {} answered {} for {}", host.host, response->status, host.ApiUrl()));
  }
  if (response->status != 200) fail(fmt::format("{} answered {} for {}", host.host, response->status, host.ApiUrl()));

  OrDie(session->credentials().Store(server.key, credentials));
  fmt::print("Login Succeeded\n");
}

void RunLogout(const LogoutArgs& args) {
  LoginServer server = ParseServer(args.server);
  registry::CredentialStore store(registry::CredentialStoreOptions::FromEnvironment());
  auto erased = store.Erase(server.key);
  if (!erased && erased.error().code() == ErrorCode::kNotFound) {
    Die(Error(ErrorCode::kNotFound, fmt::format("not logged in to {}", server.key)));
  }
  OrDie(std::move(erased));
  fmt::print("Removed login credentials for {}\n", server.key);
}

}  // namespace

void AddLoginCommands(CLI::App& app, const GlobalOptions& /*options*/) {
  auto login_args = std::make_shared<LoginArgs>();
  auto* login = app.add_subcommand("login", "Log in to a registry (checks and saves the credentials)");
  login->add_option("server", login_args->server, "Registry, e.g. host:5000 (default: docker.io)");
  login->add_option("-u,--username", login_args->username, "Username");
  auto* password = login->add_option("-p,--password", login_args->password, "Password (prefer --password-stdin)");
  login->add_flag("--password-stdin", login_args->password_stdin, "Read the password from stdin (one line)")
      ->excludes(password);
  AddRegistryFlags(login, login_args->registry);
  login->callback([login_args] { RunLogin(*login_args); });

  auto logout_args = std::make_shared<LogoutArgs>();
  auto* logout = app.add_subcommand("logout", "Remove saved credentials for a registry");
  logout->add_option("server", logout_args->server, "Registry, e.g. host:5000 (default: docker.io)");
  logout->callback([logout_args] { RunLogout(*logout_args); });
}

}  // namespace strata::cli
