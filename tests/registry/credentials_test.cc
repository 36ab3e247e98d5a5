#include "registry/credentials.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "base/file.h"

namespace strata::registry {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using namespace std::chrono_literals;

Credentials UserPass(std::string user, std::string pass) {
  return Credentials{.username = std::move(user), .password = std::move(pass)};
}

void WriteText(const fs::path& path, std::string_view text, mode_t mode = 0644) {
  fs::create_directories(path.parent_path());
  auto st = AtomicWriteFile(path, text, mode);
  ASSERT_TRUE(st) << st.error().ToString();
}

// Sets PATH for the lifetime of the object (tests run single-threaded).
class ScopedPath {
 public:
  explicit ScopedPath(const fs::path& first) {
    const char* old = std::getenv("PATH");
    if (old != nullptr) old_ = old;
    std::string value = first.string() + ":" + (old_ ? *old_ : std::string("/usr/bin:/bin"));
    ::setenv("PATH", value.c_str(), 1);
  }
  ~ScopedPath() {
    if (old_) {
      ::setenv("PATH", old_->c_str(), 1);
    } else {
      ::unsetenv("PATH");
    }
  }

 private:
  std::optional<std::string> old_;
};

// Processes in process group `pgid` that are not zombies, from /proc/<pid>/stat.
int LiveProcessesInGroup(pid_t pgid) {
  int live = 0;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    std::string name = entry.path().filename();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    auto stat = ReadFile(entry.path() / "stat");
    if (!stat) continue;  // exited meanwhile
    // "pid (comm) state ppid pgrp ...": comm may contain spaces, so parse after ')'.
    size_t close = stat->rfind(')');
    if (close == std::string::npos) continue;
    char state = 0;
    int ppid = 0, pgrp = 0;
    if (std::sscanf(stat->c_str() + close + 1, " %c %d %d", &state, &ppid, &pgrp) != 3) continue;
    if (pgrp == pgid && state != 'Z') ++live;
  }
  return live;
}

class CredentialStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = TempDir::Create("strata-cred-test");
    ASSERT_TRUE(dir) << dir.error().ToString();
    dir_.emplace(std::move(*dir));
    options_.strata_auth_file = root() / "config" / "strata" / "auth.json";
    options_.docker_config_file = root() / "docker" / "config.json";
    options_.podman_auth_file = root() / "run" / "containers" / "auth.json";
    options_.helper_timeout = 5s;
    bin_ = root() / "bin";
    fs::create_directories(bin_);
    path_.emplace(bin_);
  }

  const fs::path& root() const { return dir_->path(); }

  // Installs bin/docker-credential-<name> as a /bin/sh script with `body`.
  void WriteHelper(std::string_view name, std::string_view body) {
    WriteText(bin_ / fmt::format("docker-credential-{}", name),
              fmt::format("#!/bin/sh\n{}\n", body), 0755);
  }

  std::optional<Credentials> MustLookup(std::string_view host) {
    CredentialStore store(options_);
    auto result = store.Lookup(host);
    EXPECT_TRUE(result) << result.error().ToString();
    return result ? *result : std::nullopt;
  }

  std::optional<TempDir> dir_;
  CredentialStoreOptions options_;
  fs::path bin_;
  std::optional<ScopedPath> path_;
};

// ---- auth field ----

TEST(AuthFieldTest, DecodesUserAndPassword) {
  auto creds = DecodeAuthField("YWxpY2U6czNjcmV0");
  ASSERT_TRUE(creds) << creds.error().ToString();
  EXPECT_EQ(*creds, UserPass("alice", "s3cret"));
}

TEST(AuthFieldTest, PasswordMayContainColons) {
  auto creds = DecodeAuthField("dXNlcjpwYTpzcw==");  // "user:pa:ss"
  ASSERT_TRUE(creds) << creds.error().ToString();
  EXPECT_EQ(creds->username, "user");
  EXPECT_EQ(creds->password, "pa:ss");
}

TEST(AuthFieldTest, RoundTripsThroughEncode) {
  for (std::string pass : {"", "a", "ab", "abc", "p:a:s:s", "ünï©ode=/+"}) {
    auto creds = DecodeAuthField(EncodeAuthField("u", pass));
    ASSERT_TRUE(creds) << pass;
    EXPECT_EQ(*creds, UserPass("u", pass)) << pass;
  }
  EXPECT_EQ(EncodeAuthField("alice", "s3cret"), "YWxpY2U6czNjcmV0");
}

TEST(AuthFieldTest, RejectsBadBase64AndMissingColon) {
  for (std::string_view bad : {"!!!!", "YWxpY2U6czNjcmV", "YW=xpY2U6", "Y==="}) {
    auto creds = DecodeAuthField(bad);
    ASSERT_FALSE(creds) << bad;
    EXPECT_EQ(creds.error().code(), ErrorCode::kInvalidArgument) << bad;
  }
  auto no_colon = DecodeAuthField("bm9jb2xvbg==");  // "nocolon"
  ASSERT_FALSE(no_colon);
  EXPECT_EQ(no_colon.error().code(), ErrorCode::kInvalidArgument);
}

// ---- host keys ----

TEST(HostKeyTest, MatchesLikeDocker) {
  struct Case {
    std::string_view key;
    std::string_view host;
    bool match;
  };
  const Case cases[] = {
      {"registry.example", "registry.example", true},
      {"registry.example:5000", "registry.example:5000", true},
      {"registry.example:5000", "registry.example", false},
      {"registry.example", "registry.example:5000", false},
      {"https://registry.example", "registry.example", true},
      {"http://registry.example", "registry.example", true},
      {"https://registry.example/v1/", "registry.example", true},
      {"https://registry.example:5000/v2/", "registry.example:5000", true},
      {"HTTPS://Registry.Example", "registry.example", true},
      {"https://index.docker.io/v1/", "docker.io", true},
      {"index.docker.io", "docker.io", true},
      {"registry-1.docker.io", "docker.io", true},
      {"docker.io", "registry-1.docker.io", true},
      {"https://index.docker.io/v1/", "index.docker.io", true},
      {"docker.io", "quay.io", false},
      {"https://other.example", "registry.example", false},
      {"registry.example.evil", "registry.example", false},
      {"", "registry.example", false},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(AuthKeyMatchesHost(c.key, c.host), c.match) << "key " << c.key << " host " << c.host;
  }
  EXPECT_EQ(CanonicalRegistryHost("https://index.docker.io/v1/"), "docker.io");
  EXPECT_EQ(CanonicalRegistryHost("http://localhost:5000/v2/"), "localhost:5000");
}

// ---- options ----

TEST(CredentialStoreOptionsTest, DefaultsFromEnvironment) {
  auto env = [](std::map<std::string, std::string> vars) {
    return [vars](std::string_view name) -> std::optional<std::string> {
      auto it = vars.find(std::string(name));
      if (it == vars.end()) return std::nullopt;
      return it->second;
    };
  };
  auto home_only = CredentialStoreOptions::FromEnvironment(env({{"HOME", "/h"}}));
  EXPECT_EQ(home_only.strata_auth_file, "/h/.config/strata/auth.json");
  EXPECT_EQ(home_only.docker_config_file, "/h/.docker/config.json");
  EXPECT_EQ(home_only.podman_auth_file, fmt::format("/run/containers/{}/auth.json", ::getuid()));

  auto all = CredentialStoreOptions::FromEnvironment(env({{"HOME", "/h"},
                                                          {"XDG_CONFIG_HOME", "/x"},
                                                          {"DOCKER_CONFIG", "/d"},
                                                          {"XDG_RUNTIME_DIR", "/r"}}));
  EXPECT_EQ(all.strata_auth_file, "/x/strata/auth.json");
  EXPECT_EQ(all.docker_config_file, "/d/config.json");
  EXPECT_EQ(all.podman_auth_file, "/r/containers/auth.json");

  auto podman_file = CredentialStoreOptions::FromEnvironment(
      env({{"XDG_RUNTIME_DIR", "/r"}, {"REGISTRY_AUTH_FILE", "/p/auth.json"}}));
  EXPECT_EQ(podman_file.podman_auth_file, "/p/auth.json");
  EXPECT_TRUE(podman_file.strata_auth_file.empty());  // no HOME, no XDG_CONFIG_HOME
  EXPECT_TRUE(podman_file.docker_config_file.empty());
}

// ---- lookup ----

TEST_F(CredentialStoreTest, NoFilesMeansNoCredentials) {
  EXPECT_EQ(MustLookup("registry.example"), std::nullopt);
}

TEST_F(CredentialStoreTest, ReadsDockerAuthsWithIdentityToken) {
  WriteText(options_.docker_config_file, R"({
    "auths": {
      "https://index.docker.io/v1/": {"auth": "Ym9iOmh1Yg=="},
      "registry.example:5000": {"identitytoken": "refresh-123"},
      "old.example": {"username": "u", "password": "p"}
    },
    "unknown": {"kept": true}
  })");
  EXPECT_EQ(MustLookup("docker.io"), UserPass("bob", "hub"));
  EXPECT_EQ(MustLookup("registry-1.docker.io"), UserPass("bob", "hub"));
  EXPECT_EQ(MustLookup("registry.example:5000"), Credentials{.identity_token = "refresh-123"});
  EXPECT_EQ(MustLookup("old.example"), UserPass("u", "p"));
  EXPECT_EQ(MustLookup("registry.example"), std::nullopt);
}

TEST_F(CredentialStoreTest, ExactKeyWinsOverVariants) {
  WriteText(options_.docker_config_file, R"({"auths": {
    "https://registry.example": {"auth": "ZGF2ZTpkb2NrZXI="},
    "registry.example": {"auth": "YWxpY2U6czNjcmV0"}
  }})");
  EXPECT_EQ(MustLookup("registry.example"), UserPass("alice", "s3cret"));
  EXPECT_EQ(MustLookup("https://registry.example"), UserPass("dave", "docker"));
}

TEST_F(CredentialStoreTest, PrecedenceStrataThenDockerThenPodman) {
  WriteText(options_.strata_auth_file, R"({"auths": {"a.example": {"auth": "ZXZlOnN0cmF0YQ=="}}})");
  WriteText(options_.docker_config_file, R"({"auths": {
    "a.example": {"auth": "ZGF2ZTpkb2NrZXI="},
    "b.example": {"auth": "ZGF2ZTpkb2NrZXI="}}})");
  WriteText(options_.podman_auth_file, R"({"auths": {
    "a.example": {"auth": "Y2Fyb2w6cG9kbWFu"},
    "b.example": {"auth": "Y2Fyb2w6cG9kbWFu"},
    "c.example": {"auth": "Y2Fyb2w6cG9kbWFu"}}})");
  EXPECT_EQ(MustLookup("a.example"), UserPass("eve", "strata"));
  EXPECT_EQ(MustLookup("b.example"), UserPass("dave", "docker"));
  EXPECT_EQ(MustLookup("c.example"), UserPass("carol", "podman"));
  EXPECT_EQ(MustLookup("d.example"), std::nullopt);
}

TEST_F(CredentialStoreTest, CorruptFileNamesTheFile) {
  WriteText(options_.docker_config_file, R"({"auths": {"a.example": )");
  CredentialStore store(options_);
  auto result = store.Lookup("a.example");
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(result.error().message().find(options_.docker_config_file.string()), std::string::npos)
      << result.error().message();

  WriteText(options_.docker_config_file, R"({"auths": {"a.example": {"auth": "***"}}})");
  result = store.Lookup("a.example");
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(result.error().message().find(options_.docker_config_file.string()), std::string::npos)
      << result.error().message();

  WriteText(options_.docker_config_file, R"({"auths": []})");
  result = store.Lookup("a.example");
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kInvalidArgument);
}

TEST_F(CredentialStoreTest, EmptyFileIsAccepted) {
  WriteText(options_.docker_config_file, "");
  EXPECT_EQ(MustLookup("a.example"), std::nullopt);
}

// ---- helpers ----

// A helper that records its argument and stdin and answers for one server URL.
constexpr std::string_view kRecordingHelper = R"sh(
[ "$1" = get ] || { echo "unexpected args: $*" >&2; exit 3; }
url=$(cat)
echo "$url" > "$(dirname "$0")/../last-url-$(basename "$0")"
case "$url" in
  registry.example|https://index.docker.io/v1/)
    printf '{"ServerURL":"%s","Username":"%s","Secret":"pw:from:helper"}' "$url" "$HELPER_USER"
    ;;
  token.example)
    printf '{"ServerURL":"%s","Username":"<token>","Secret":"refresh-tok"}' "$url"
    ;;
  *)
    echo "credentials not found in native keychain"
    exit 1
    ;;
esac)sh";

TEST_F(CredentialStoreTest, HelperSuccessNotFoundAndToken) {
  WriteHelper("test", fmt::format("HELPER_USER=from-test\n{}", kRecordingHelper));
  WriteText(options_.docker_config_file, R"({"credsStore": "test",
    "auths": {"registry.example": {}, "other.example": {"auth": "ZGF2ZTpkb2NrZXI="}}})");
  WriteText(options_.podman_auth_file,
            R"({"auths": {"fallback.example": {"auth": "Y2Fyb2w6cG9kbWFu"}}})");

  EXPECT_EQ(MustLookup("registry.example"), UserPass("from-test", "pw:from:helper"));
  EXPECT_EQ(ReadFile(root() / "last-url-docker-credential-test").value_or(""),
            "registry.example\n");
  EXPECT_EQ(MustLookup("docker.io"), UserPass("from-test", "pw:from:helper"));
  EXPECT_EQ(ReadFile(root() / "last-url-docker-credential-test").value_or(""),
            "https://index.docker.io/v1/\n");
  EXPECT_EQ(MustLookup("token.example"), Credentials{.identity_token = "refresh-tok"});
  // Not found in the helper: not an error; docker's own auths entry is not used (as in
  // docker), but podman's file still is.
  EXPECT_EQ(MustLookup("other.example"), std::nullopt);
  EXPECT_EQ(MustLookup("fallback.example"), UserPass("carol", "podman"));
}

TEST_F(CredentialStoreTest, CredHelpersOverrideCredsStore) {
  WriteHelper("test", fmt::format("HELPER_USER=from-test\n{}", kRecordingHelper));
  WriteHelper("store", fmt::format("HELPER_USER=from-store\n{}", kRecordingHelper));
  WriteText(options_.docker_config_file, R"({"credsStore": "store",
    "credHelpers": {"https://registry.example": "test"}})");
  EXPECT_EQ(MustLookup("registry.example"), UserPass("from-test", "pw:from:helper"));
  EXPECT_EQ(MustLookup("docker.io"), UserPass("from-store", "pw:from:helper"));
}

TEST_F(CredentialStoreTest, HelperFailureNamesTheHelper) {
  WriteHelper("test", "echo 'keychain locked' >&2\nexit 2");
  WriteText(options_.docker_config_file, R"({"credHelpers": {"registry.example": "test"}})");
  CredentialStore store(options_);
  auto result = store.Lookup("registry.example");
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kInternal);
  EXPECT_NE(result.error().message().find("docker-credential-test"), std::string::npos)
      << result.error().message();
  EXPECT_NE(result.error().message().find("keychain locked"), std::string::npos)
      << result.error().message();
}

TEST_F(CredentialStoreTest, HelperBadOutputAndMissingHelper) {
  WriteHelper("test", "cat >/dev/null\necho not-json");
  WriteText(options_.docker_config_file, R"({"credHelpers": {"registry.example": "test",
    "missing.example": "absent-helper-xyz"}})");
  CredentialStore store(options_);
  auto bad = store.Lookup("registry.example");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("docker-credential-test"), std::string::npos);

  auto missing = store.Lookup("missing.example");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(missing.error().message().find("docker-credential-absent-helper-xyz"),
            std::string::npos);
}

TEST_F(CredentialStoreTest, HelperNotFoundOnStderr) {
  WriteHelper("test", "cat >/dev/null\necho 'credentials not found' >&2\nexit 1");
  WriteText(options_.docker_config_file, R"({"credsStore": "test"})");
  EXPECT_EQ(MustLookup("registry.example"), std::nullopt);
}

TEST_F(CredentialStoreTest, HelperThatIgnoresStdinAndExitsEarly) {
  // The helper may exit before we write the URL: no SIGPIPE may kill the test.
  WriteHelper("test", R"(printf '{"Username":"u","Secret":"s"}')");
  WriteText(options_.docker_config_file, R"({"credsStore": "test"})");
  for (int i = 0; i < 5; ++i) EXPECT_EQ(MustLookup("registry.example"), UserPass("u", "s"));
}

TEST_F(CredentialStoreTest, HelperTimeoutKillsAndReaps) {
  // The sleep is a grandchild holding stdout open: the whole process group must go.
  WriteHelper("test", fmt::format("echo $$ > '{}'\nsleep 30\necho done",
                                  (root() / "helper.pid").string()));
  WriteText(options_.docker_config_file, R"({"credsStore": "test"})");
  options_.helper_timeout = 1s;
  CredentialStore store(options_);
  auto start = std::chrono::steady_clock::now();
  auto result = store.Lookup("registry.example");
  auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kUnavailable);
  EXPECT_NE(result.error().message().find("docker-credential-test"), std::string::npos);
  EXPECT_GE(elapsed, 900ms);
  EXPECT_LT(elapsed, 10s);

  // Reaped: the pid is no longer our child (waitpid fails with ECHILD) and is gone.
  auto pid_text = ReadFile(root() / "helper.pid");
  ASSERT_TRUE(pid_text);
  pid_t pid = std::stoi(*pid_text);
  int status;
  EXPECT_EQ(::waitpid(pid, &status, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
  // The sleep in its group was killed too: no live (non-zombie) process is left in the
  // group. Orphaned zombies are reaped by init, on its own schedule.
  bool group_gone = false;
  for (int i = 0; i < 100 && !group_gone; ++i) {
    group_gone = LiveProcessesInGroup(pid) == 0;
    if (!group_gone) std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(group_gone);
}

// ---- store / erase ----

TEST_F(CredentialStoreTest, StoreAndEraseRoundTrip) {
  WriteText(options_.strata_auth_file, R"({
    "auths": {
      "keep.example": {"auth": "YWxpY2U6czNjcmV0", "email": "a@example"},
      "https://registry.example/v1/": {"auth": "ZGF2ZTpkb2NrZXI=", "email": "d@example"}
    },
    "credHelpers": {"x.example": "y"},
    "future": [1, 2, 3]
  })");
  CredentialStore store(options_);
  auto stored = store.Store("registry.example", UserPass("new", "pa:ss"));
  ASSERT_TRUE(stored) << stored.error().ToString();
  EXPECT_EQ(MustLookup("registry.example"), UserPass("new", "pa:ss"));

  auto text = ReadFile(options_.strata_auth_file);
  ASSERT_TRUE(text);
  Json doc = Json::parse(*text);
  EXPECT_EQ(doc["future"], Json::array({1, 2, 3}));
  EXPECT_EQ(doc["credHelpers"]["x.example"], "y");
  EXPECT_EQ(doc["auths"]["keep.example"]["email"], "a@example");
  EXPECT_FALSE(doc["auths"].contains("https://registry.example/v1/"));
  EXPECT_EQ(doc["auths"]["registry.example"]["email"], "d@example");  // unknown key kept
  EXPECT_EQ(doc["auths"]["registry.example"]["auth"], EncodeAuthField("new", "pa:ss"));

  struct stat st;
  ASSERT_EQ(::stat(options_.strata_auth_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  ASSERT_TRUE(store.Store("docker.io", Credentials{.identity_token = "tok"}));
  EXPECT_EQ(MustLookup("index.docker.io"), Credentials{.identity_token = "tok"});

  auto erased = store.Erase("https://registry.example");
  ASSERT_TRUE(erased) << erased.error().ToString();
  EXPECT_EQ(MustLookup("registry.example"), std::nullopt);
  EXPECT_EQ(MustLookup("keep.example"), UserPass("alice", "s3cret"));

  auto again = store.Erase("registry.example");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), ErrorCode::kNotFound);

  text = ReadFile(options_.strata_auth_file);
  ASSERT_TRUE(text);
  doc = Json::parse(*text);
  EXPECT_EQ(doc["future"], Json::array({1, 2, 3}));
  EXPECT_EQ(doc["auths"]["keep.example"]["email"], "a@example");
  ASSERT_EQ(::stat(options_.strata_auth_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(CredentialStoreTest, StoreCreatesPrivateDirectoryAndFile) {
  CredentialStore store(options_);
  ASSERT_FALSE(fs::exists(options_.strata_auth_file.parent_path()));
  auto erased = store.Erase("a.example");
  ASSERT_FALSE(erased);
  EXPECT_EQ(erased.error().code(), ErrorCode::kNotFound);

  ASSERT_TRUE(store.Store("a.example:5000", UserPass("u", "p")));
  struct stat st;
  ASSERT_EQ(::stat(options_.strata_auth_file.parent_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(::stat(options_.strata_auth_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(MustLookup("a.example:5000"), UserPass("u", "p"));
  EXPECT_EQ(MustLookup("a.example"), std::nullopt);
}

TEST_F(CredentialStoreTest, StoreRefusesToOverwriteCorruptFile) {
  WriteText(options_.strata_auth_file, "{not json");
  CredentialStore store(options_);
  auto stored = store.Store("a.example", UserPass("u", "p"));
  ASSERT_FALSE(stored);
  EXPECT_EQ(stored.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(stored.error().message().find(options_.strata_auth_file.string()), std::string::npos);
  EXPECT_EQ(ReadFile(options_.strata_auth_file).value_or(""), "{not json");
}

TEST_F(CredentialStoreTest, StoreRejectsInvalidUtf8AndEmptyCredentials) {
  CredentialStore store(options_);
  // The password travels base64-encoded, so any bytes are fine there; a raw token is not.
  auto bad = store.Store("a.example", Credentials{.identity_token = std::string("\xff\xfe", 2)});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::kInvalidArgument);
  auto empty = store.Store("a.example", Credentials{});
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_FALSE(fs::exists(options_.strata_auth_file));

  ASSERT_TRUE(store.Store("a.example", UserPass("u", std::string("\xff:\xfe", 3))));
  EXPECT_EQ(MustLookup("a.example"), UserPass("u", std::string("\xff:\xfe", 3)));
}

}  // namespace
}  // namespace strata::registry
