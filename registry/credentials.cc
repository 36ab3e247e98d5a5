#include "registry/credentials.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/file.h"

extern char** environ;

namespace strata::registry {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;

constexpr std::string_view kDockerHubHost = "docker.io";
// The key docker writes for Docker Hub and the server URL it gives helpers for it.
constexpr std::string_view kDockerHubServerUrl = "https://index.docker.io/v1/";
constexpr std::string_view kHelperPrefix = "docker-credential-";
constexpr std::string_view kNotFoundAnswer = "credentials not found";

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// ---- base64 (standard alphabet, padding required, as Go's StdEncoding) ----

constexpr std::string_view kBase64Alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string Base64Encode(std::string_view data) {
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= data.size(); i += 3) {
    uint32_t n = (uint8_t(data[i]) << 16) | (uint8_t(data[i + 1]) << 8) | uint8_t(data[i + 2]);
    for (int shift : {18, 12, 6, 0}) out.push_back(kBase64Alphabet[(n >> shift) & 63]);
  }
  if (size_t rest = data.size() - i; rest > 0) {
    uint32_t n = uint8_t(data[i]) << 16;
    if (rest == 2) n |= uint8_t(data[i + 1]) << 8;
    out.push_back(kBase64Alphabet[(n >> 18) & 63]);
    out.push_back(kBase64Alphabet[(n >> 12) & 63]);
    out.push_back(rest == 2 ? kBase64Alphabet[(n >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

std::optional<std::string> Base64Decode(std::string_view in) {
  if (in.size() % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(in.size() / 4 * 3);
  for (size_t i = 0; i < in.size(); i += 4) {
    uint32_t n = 0;
    int pad = 0;
    for (size_t j = 0; j < 4; ++j) {
      char c = in[i + j];
      uint32_t v = 0;
      if (c == '=') {
        // Padding only in the last quantum, only in its last two places, and contiguous.
        if (i + 4 != in.size() || j < 2) return std::nullopt;
        ++pad;
      } else {
        if (pad > 0) return std::nullopt;
        size_t pos = kBase64Alphabet.find(c);
        if (pos == std::string_view::npos) return std::nullopt;
        v = static_cast<uint32_t>(pos);
      }
      n = (n << 6) | v;
    }
    out.push_back(static_cast<char>((n >> 16) & 0xff));
    if (pad < 2) out.push_back(static_cast<char>((n >> 8) & 0xff));
    if (pad < 1) out.push_back(static_cast<char>(n & 0xff));
  }
  return out;
}

// ---- config files ----

// Reads and parses one config file. A missing file (or an empty one, which docker accepts)
// gives an empty object.
Result<Json> LoadConfig(const fs::path& path) {
  auto text = ReadFile(path);
  if (!text) {
    if (text.error().code() == ErrorCode::kNotFound) return Json::object();
    return Fail(text.error());
  }
  if (Trim(*text).empty()) return Json::object();
  Json doc = Json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    return Fail(ErrorCode::kInvalidArgument, "credentials file {} is not valid JSON",
                path.string());
  }
  if (!doc.is_object()) {
    return Fail(ErrorCode::kInvalidArgument, "credentials file {}: top level is not a JSON object",
                path.string());
  }
  for (const char* member : {"auths", "credHelpers"}) {
    if (doc.contains(member) && !doc[member].is_object() && !doc[member].is_null()) {
      return Fail(ErrorCode::kInvalidArgument, "credentials file {}: \"{}\" is not an object",
                  path.string(), member);
    }
  }
  if (doc.contains("credsStore") && !doc["credsStore"].is_string() &&
      !doc["credsStore"].is_null()) {
    return Fail(ErrorCode::kInvalidArgument, "credentials file {}: \"credsStore\" is not a string",
                path.string());
  }
  return doc;
}

// The key of `object` that best names `host`, or nullptr. Preference: the argument as
// given, then the canonical host, then docker's Docker Hub URL, then any other variant
// (first in key order, so the choice is stable).
const std::string* FindKey(const Json& object, std::string_view requested, std::string_view host) {
  if (!object.is_object()) return nullptr;
  const std::string* best = nullptr;
  int best_rank = 4;
  for (auto it = object.begin(); it != object.end(); ++it) {
    const std::string& key = it.key();
    if (CanonicalRegistryHost(key) != host) continue;
    int rank = key == requested                                          ? 0
               : key == host                                             ? 1
               : (host == kDockerHubHost && key == kDockerHubServerUrl) ? 2
                                                                         : 3;
    if (rank < best_rank) {
      best_rank = rank;
      best = &key;
    }
  }
  return best;
}

std::string GetString(const Json& object, const char* member) {
  if (!object.is_object()) return {};
  auto it = object.find(member);
  if (it == object.end() || !it->is_string()) return {};
  return it->get<std::string>();
}

// Credentials from the `auths` entry for `host` in `doc`, if it holds any.
Result<std::optional<Credentials>> FromAuths(const Json& doc, const fs::path& path,
                                             std::string_view requested, std::string_view host) {
  auto auths = doc.find("auths");
  if (auths == doc.end()) return std::nullopt;
  const std::string* key = FindKey(*auths, requested, host);
  if (key == nullptr) return std::nullopt;
  const Json& entry = (*auths)[*key];
  if (!entry.is_object()) {
    return Fail(ErrorCode::kInvalidArgument, "credentials file {}: auths entry \"{}\" is not an object",
                path.string(), *key);
  }
  Credentials creds;
  if (std::string auth = GetString(entry, "auth"); !auth.empty()) {
    auto decoded = DecodeAuthField(auth);
    if (!decoded) {
      return Fail(decoded.error().WithContext(
          fmt::format("credentials file {}: auths entry \"{}\"", path.string(), *key)));
    }
    creds = std::move(*decoded);
  } else {
    // Older files and podman's may spell the fields out.
    creds.username = GetString(entry, "username");
    creds.password = GetString(entry, "password");
  }
  creds.identity_token = GetString(entry, "identitytoken");
  if (creds.empty()) return std::nullopt;
  return creds;
}

// The helper suffix docker's config names for `host`: credHelpers[host], else credsStore.
std::string HelperFor(const Json& doc, std::string_view requested, std::string_view host) {
  if (auto helpers = doc.find("credHelpers"); helpers != doc.end()) {
    if (const std::string* key = FindKey(*helpers, requested, host)) {
      if (std::string suffix = GetString(*helpers, key->c_str()); !suffix.empty()) return suffix;
    }
  }
  return GetString(doc, "credsStore");
}

// The server URL docker hands a helper: its Hub URL for Docker Hub, else host[:port].
std::string HelperServerUrl(std::string_view host) {
  return host == kDockerHubHost ? std::string(kDockerHubServerUrl) : std::string(host);
}

// ---- helper processes ----

// Searches PATH like execvp, returning the first executable regular file.
std::optional<fs::path> FindInPath(std::string_view program) {
  const char* path_env = std::getenv("PATH");
  std::string_view path = path_env != nullptr ? path_env : "/usr/local/bin:/usr/bin:/bin";
  while (true) {
    size_t colon = path.find(':');
    std::string_view dir = path.substr(0, colon);
    fs::path candidate = fs::path(dir.empty() ? "." : std::string(dir)) / program;
    struct stat st;
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        ::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
    if (colon == std::string_view::npos) break;
    path.remove_prefix(colon + 1);
  }
  return std::nullopt;
}

struct Pipe {
  UniqueFd read;
  UniqueFd write;
};

Result<Pipe> MakePipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return Fail(ErrorCode::kInternal, "pipe2: {}", std::strerror(errno));
  }
  return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

// Writes `data` (short: at most PIPE_BUF, so one write never blocks) to a pipe whose reader
// may already be gone, without letting SIGPIPE kill the process: the signal is blocked for
// this thread and a SIGPIPE we caused is consumed before unblocking.
void WriteIgnoringSigpipe(int fd, std::string_view data) {
  sigset_t pipe_set, old_set, pending;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
  sigpending(&pending);
  bool was_pending = sigismember(&pending, SIGPIPE) == 1;
  ssize_t n;
  do {
    n = ::write(fd, data.data(), data.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0 && errno == EPIPE && !was_pending) {
    struct timespec zero = {0, 0};
    while (sigtimedwait(&pipe_set, nullptr, &zero) < 0 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &old_set, nullptr);
}

// Owns a spawned helper: kills its process group and reaps it unless it was reaped.
class HelperProcess {
 public:
  explicit HelperProcess(pid_t pid) : pid_(pid) {}
  ~HelperProcess() {
    // Timeout or error: the leader is alive or an unreaped zombie, so -pid_ is still its group.
    if (pid_ > 0) {
      ::kill(-pid_, SIGKILL);
      int status;
      while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
    }
  }
  HelperProcess(const HelperProcess&) = delete;
  HelperProcess& operator=(const HelperProcess&) = delete;

  // Waits for the helper to exit, kills whatever it left running in its group, reaps it
  // and returns the wait status. The leader stays a zombie until the group is killed, so
  // its pid (the group id) cannot be reused by an unrelated process in between.
  int Wait() {
    siginfo_t info;
    while (::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOWAIT) < 0 &&
           errno == EINTR) {
    }
    ::kill(-pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    return status;
  }

 private:
  pid_t pid_;
};

// RAII for posix_spawn attribute objects.
struct SpawnSetup {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  SpawnSetup() {
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
  }
  ~SpawnSetup() {
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
};

}  // namespace

// ---- public helpers ----

std::string CanonicalRegistryHost(std::string_view key) {
  key = Trim(key);
  for (std::string_view scheme : {"https://", "http://"}) {
    if (key.size() >= scheme.size() &&
        std::equal(scheme.begin(), scheme.end(), key.begin(),
                   [](char a, char b) { return a == std::tolower(static_cast<unsigned char>(b)); })) {
      key.remove_prefix(scheme.size());
      break;
    }
  }
  key = key.substr(0, key.find('/'));
  std::string host(key);
  std::transform(host.begin(), host.end(), host.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (host == "index.docker.io" || host == "registry-1.docker.io") host = kDockerHubHost;
  return host;
}

bool AuthKeyMatchesHost(std::string_view key, std::string_view registry_host) {
  std::string host = CanonicalRegistryHost(registry_host);
  return !host.empty() && CanonicalRegistryHost(key) == host;
}

Result<Credentials> DecodeAuthField(std::string_view auth) {
  auto decoded = Base64Decode(Trim(auth));
  if (!decoded) return Fail(ErrorCode::kInvalidArgument, "\"auth\" is not valid base64");
  size_t colon = decoded->find(':');
  if (colon == std::string::npos) {
    return Fail(ErrorCode::kInvalidArgument, "\"auth\" does not decode to \"user:password\"");
  }
  Credentials creds;
  creds.username = decoded->substr(0, colon);
  creds.password = decoded->substr(colon + 1);
  return creds;
}

std::string EncodeAuthField(std::string_view username, std::string_view password) {
  std::string plain;
  plain.reserve(username.size() + 1 + password.size());
  plain.append(username).append(":").append(password);
  return Base64Encode(plain);
}

Result<std::optional<Credentials>> RunCredentialHelper(std::string_view suffix,
                                                       std::string_view server_url,
                                                       std::chrono::milliseconds timeout) {
  std::string program = std::string(kHelperPrefix) + std::string(suffix);
  if (suffix.empty() || suffix.find('/') != std::string_view::npos) {
    return Fail(ErrorCode::kInvalidArgument, "invalid credential helper name \"{}\"", program);
  }
  if (server_url.size() + 1 > PIPE_BUF) {
    return Fail(ErrorCode::kInvalidArgument, "server URL too long for credential helper {}",
                program);
  }
  std::optional<fs::path> binary = FindInPath(program);
  if (!binary) {
    return Fail(ErrorCode::kFailedPrecondition, "credential helper {} not found in PATH", program);
  }

  STRATA_ASSIGN_OR_RETURN(Pipe in, MakePipe());
  STRATA_ASSIGN_OR_RETURN(Pipe out, MakePipe());
  STRATA_ASSIGN_OR_RETURN(Pipe err, MakePipe());

  SpawnSetup setup;
  // dup2 onto 0/1/2 clears close-on-exec there; every other fd of ours is O_CLOEXEC.
  posix_spawn_file_actions_adddup2(&setup.actions, in.read.get(), STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&setup.actions, out.write.get(), STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&setup.actions, err.write.get(), STDERR_FILENO);
  // Own process group (so a timeout kills what it started too), default signal handling
  // and an empty mask whatever the caller's thread has.
  sigset_t empty, defaults;
  sigemptyset(&empty);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setflags(&setup.attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                            POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&setup.attr, 0);
  posix_spawnattr_setsigmask(&setup.attr, &empty);
  posix_spawnattr_setsigdefault(&setup.attr, &defaults);

  std::string arg0 = program;
  std::string arg1 = "get";
  char* argv[] = {arg0.data(), arg1.data(), nullptr};
  pid_t pid = -1;
  int rc = posix_spawn(&pid, binary->c_str(), &setup.actions, &setup.attr, argv, environ);
  if (rc != 0) {
    return Fail(ErrorCode::kInternal, "cannot run credential helper {} ({}): {}", program,
                binary->string(), std::strerror(rc));
  }
  HelperProcess helper(pid);
  in.read.reset();
  out.write.reset();
  err.write.reset();

  WriteIgnoringSigpipe(in.write.get(), server_url);
  in.write.reset();  // EOF tells the helper the URL is complete

  // Collect stdout and stderr until both close or the deadline passes.
  std::string stdout_text, stderr_text;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::array<pollfd, 2> fds = {pollfd{out.read.get(), POLLIN, 0}, pollfd{err.read.get(), POLLIN, 0}};
  std::array<std::string*, 2> sinks = {&stdout_text, &stderr_text};
  constexpr size_t kMaxOutput = 1 << 20;
  while (fds[0].fd >= 0 || fds[1].fd >= 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return Fail(ErrorCode::kUnavailable, "credential helper {} timed out after {} ms", program,
                  timeout.count());
    }
    int n = ::poll(fds.data(), fds.size(), static_cast<int>(left.count()) + 1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Fail(ErrorCode::kInternal, "poll on credential helper {}: {}", program,
                  std::strerror(errno));
    }
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        fds[i].fd = -1;  // EOF or error: stop watching (poll ignores negative fds)
        continue;
      }
      if (sinks[i]->size() + got > kMaxOutput) {
        return Fail(ErrorCode::kInternal, "credential helper {} wrote more than {} bytes", program,
                    kMaxOutput);
      }
      sinks[i]->append(buf, static_cast<size_t>(got));
    }
  }
  int status = helper.Wait();

  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string_view out_msg = Trim(stdout_text);
    std::string_view err_msg = Trim(stderr_text);
    if (out_msg.find(kNotFoundAnswer) != std::string_view::npos ||
        err_msg.find(kNotFoundAnswer) != std::string_view::npos) {
      return std::nullopt;
    }
    std::string how = WIFEXITED(status) ? fmt::format("exit status {}", WEXITSTATUS(status))
                                        : fmt::format("signal {}", WTERMSIG(status));
    std::string_view detail = !err_msg.empty() ? err_msg : out_msg;
    return Fail(ErrorCode::kInternal, "credential helper {} get failed ({}){}{}", program, how,
                detail.empty() ? "" : ": ", detail.substr(0, 512));
  }

  Json answer = Json::parse(stdout_text, nullptr, /*allow_exceptions=*/false);
  if (answer.is_discarded() || !answer.is_object()) {
    return Fail(ErrorCode::kInternal, "credential helper {} printed an answer that is not a JSON object",
                program);
  }
  std::string username = GetString(answer, "Username");
  std::string secret = GetString(answer, "Secret");
  Credentials creds;
  if (username == "<token>") {
    creds.identity_token = std::move(secret);
  } else {
    creds.username = std::move(username);
    creds.password = std::move(secret);
  }
  if (creds.empty()) return std::nullopt;
  return creds;
}

// ---- CredentialStore ----

CredentialStoreOptions CredentialStoreOptions::FromEnvironment(const GetEnv& getenv_fn) {
  auto get = [&](std::string_view name) -> std::optional<std::string> {
    std::optional<std::string> value;
    if (getenv_fn) {
      value = getenv_fn(name);
    } else if (const char* v = std::getenv(std::string(name).c_str())) {
      value = v;
    }
    if (value && value->empty()) value.reset();  // unset and empty mean the same, as in Go
    return value;
  };
  std::optional<std::string> home = get("HOME");
  CredentialStoreOptions options;
  if (auto xdg = get("XDG_CONFIG_HOME")) {
    options.strata_auth_file = fs::path(*xdg) / "strata" / "auth.json";
  } else if (home) {
    options.strata_auth_file = fs::path(*home) / ".config" / "strata" / "auth.json";
  }
  if (auto docker = get("DOCKER_CONFIG")) {
    options.docker_config_file = fs::path(*docker) / "config.json";
  } else if (home) {
    options.docker_config_file = fs::path(*home) / ".docker" / "config.json";
  }
  if (auto file = get("REGISTRY_AUTH_FILE")) {
    options.podman_auth_file = *file;
  } else if (auto runtime = get("XDG_RUNTIME_DIR")) {
    options.podman_auth_file = fs::path(*runtime) / "containers" / "auth.json";
  } else {
    options.podman_auth_file = fs::path(fmt::format("/run/containers/{}", ::getuid())) / "auth.json";
  }
  return options;
}

Result<std::optional<Credentials>> CredentialStore::Lookup(std::string_view registry_host) const {
  std::string host = CanonicalRegistryHost(registry_host);
  if (host.empty()) {
    return Fail(ErrorCode::kInvalidArgument, "no registry host in \"{}\"", registry_host);
  }
  std::string_view requested = Trim(registry_host);

  if (!options_.strata_auth_file.empty()) {
    STRATA_ASSIGN_OR_RETURN(Json doc, LoadConfig(options_.strata_auth_file));
    STRATA_ASSIGN_OR_RETURN(auto creds, FromAuths(doc, options_.strata_auth_file, requested, host));
    if (creds) return creds;
  }
  // A config file answers through the helper it names for the host, else its auths.
  auto from_config = [&](const Json& doc, const std::filesystem::path& path,
                         const std::string& helper) -> Result<std::optional<Credentials>> {
    if (!helper.empty()) return RunCredentialHelper(helper, HelperServerUrl(host), options_.helper_timeout);
    return FromAuths(doc, path, requested, host);
  };
  if (!options_.docker_config_file.empty()) {
    STRATA_ASSIGN_OR_RETURN(Json doc, LoadConfig(options_.docker_config_file));
    STRATA_ASSIGN_OR_RETURN(auto creds,
                            from_config(doc, options_.docker_config_file, HelperFor(doc, requested, host)));
    if (creds) return creds;
  }
  if (!options_.podman_auth_file.empty()) {
    STRATA_ASSIGN_OR_RETURN(Json doc, LoadConfig(options_.podman_auth_file));
    // containers-auth.json(5) has credHelpers too (no credsStore).
    std::string helper;
    if (auto helpers = doc.find("credHelpers"); helpers != doc.end()) {
      if (const std::string* key = FindKey(*helpers, requested, host)) {
        helper = GetString(*helpers, key->c_str());
      }
    }
    STRATA_ASSIGN_OR_RETURN(auto creds, from_config(doc, options_.podman_auth_file, helper));
    if (creds) return creds;
  }
  return std::nullopt;
}

namespace {

// Writes strata's auth file atomically, mode 0600, creating its directory with 0700.
Status WriteAuthFile(const fs::path& path, const Json& doc) {
  std::string text;
  try {
    text = doc.dump(1, '\t') + "\n";
  } catch (const Json::exception& e) {
    // Only strings we were given can be bad: what we parsed was valid UTF-8.
    return Fail(ErrorCode::kInvalidArgument, "cannot write {}: {}", path.string(), e.what());
  }
  fs::path dir = path.parent_path();
  if (!dir.empty()) {
    std::error_code ec;
    if (!fs::exists(dir, ec)) {
      // Only the directories we create get 0700; an existing parent keeps its mode.
      fs::path parent = dir.parent_path();
      if (!parent.empty()) {
        fs::create_directories(parent, ec);
        if (ec) {
          return Fail(ErrorCode::kInternal, "create directory {}: {}", parent.string(),
                      ec.message());
        }
      }
      if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
        return Fail(ErrorCode::kInternal, "create directory {}: {}", dir.string(),
                    std::strerror(errno));
      }
    }
  }
  return AtomicWriteFile(path, text, 0600);
}

}  // namespace

Status CredentialStore::Store(std::string_view registry_host, const Credentials& credentials) const {
  if (options_.strata_auth_file.empty()) {
    return Fail(ErrorCode::kFailedPrecondition, "no strata auth file configured");
  }
  std::string host = CanonicalRegistryHost(registry_host);
  if (host.empty()) {
    return Fail(ErrorCode::kInvalidArgument, "no registry host in \"{}\"", registry_host);
  }
  if (credentials.empty()) {
    return Fail(ErrorCode::kInvalidArgument, "no credentials to store for {}", host);
  }
  const fs::path& path = options_.strata_auth_file;
  STRATA_ASSIGN_OR_RETURN(Json doc, LoadConfig(path));
  Json& auths = doc["auths"];
  if (auths.is_null()) auths = Json::object();

  // Keep unknown members of an existing entry for this host (e.g. "email"), whatever
  // variant of the key it was stored under; drop the other variants.
  Json entry = Json::object();
  if (const std::string* key = FindKey(auths, host, host); key != nullptr) {
    if (auths[*key].is_object()) entry = auths[*key];
  }
  std::vector<std::string> variants;
  for (auto it = auths.begin(); it != auths.end(); ++it) {
    if (CanonicalRegistryHost(it.key()) == host) variants.push_back(it.key());
  }
  for (const std::string& key : variants) auths.erase(key);

  entry.erase("username");
  entry.erase("password");
  entry.erase("auth");
  entry.erase("identitytoken");
  if (!credentials.username.empty() || !credentials.password.empty()) {
    entry["auth"] = EncodeAuthField(credentials.username, credentials.password);
  }
  if (!credentials.identity_token.empty()) entry["identitytoken"] = credentials.identity_token;
  auths[host] = std::move(entry);
  return WriteAuthFile(path, doc);
}

Status CredentialStore::Erase(std::string_view registry_host) const {
  if (options_.strata_auth_file.empty()) {
    return Fail(ErrorCode::kFailedPrecondition, "no strata auth file configured");
  }
  std::string host = CanonicalRegistryHost(registry_host);
  if (host.empty()) {
    return Fail(ErrorCode::kInvalidArgument, "no registry host in \"{}\"", registry_host);
  }
  const fs::path& path = options_.strata_auth_file;
  STRATA_ASSIGN_OR_RETURN(Json doc, LoadConfig(path));
  std::vector<std::string> variants;
  if (auto auths = doc.find("auths"); auths != doc.end() && auths->is_object()) {
    for (auto it = auths->begin(); it != auths->end(); ++it) {
      if (CanonicalRegistryHost(it.key()) == host) variants.push_back(it.key());
    }
    for (const std::string& key : variants) auths->erase(key);
  }
  if (variants.empty()) {
    return Fail(ErrorCode::kNotFound, "no credentials for {} in {}", host, path.string());
  }
  return WriteAuthFile(path, doc);
}

}  // namespace strata::registry
