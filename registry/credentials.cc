#include "registry/credentials.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/file.h"
#include "base/subprocess.h"

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
  auto ran = RunProgram(*binary, {program, "get"}, {.timeout = timeout, .input = server_url});
  if (!ran) return Fail(Error(ran.error().code(), "credential helper " + ran.error().message()));
  const std::string& stdout_text = ran->out;
  const std::string& stderr_text = ran->err;

  if (!ran->Succeeded()) {
    std::string_view out_msg = Trim(stdout_text);
    std::string_view err_msg = Trim(stderr_text);
    if (out_msg.find(kNotFoundAnswer) != std::string_view::npos ||
        err_msg.find(kNotFoundAnswer) != std::string_view::npos) {
      return std::nullopt;
    }
    const std::string how = ran->HowItEnded();
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
