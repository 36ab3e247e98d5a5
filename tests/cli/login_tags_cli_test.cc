// `strata login`, `strata logout` and `strata tags` as a user runs them: the real binary
// against a TLS docker-registry with htpasswd auth, credentials in a temp $XDG_CONFIG_HOME.
#include <sys/stat.h>

#include <algorithm>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "base/file.h"
#include "registry/credentials.h"
#include "tests/support/assertions.h"
#include "tests/support/image_builder.h"
#include "tests/support/registry_fixture.h"
#include "tests/support/strata_cli.h"

namespace strata::cli {
namespace {

namespace fs = std::filesystem;
using test_support::CommandRun;
using test_support::RegistryAuth;
using test_support::RegistryFixture;

class LoginTagsCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto home = TempDir::Create("strata-login-cli");
    ASSERT_TRUE(home) << home.error().ToString();
    home_ = std::make_unique<TempDir>(std::move(*home));
  }

  // A TLS registry with Basic auth whose CA the test's certs.d trusts; loopback hosts
  // default to plain HTTP, so hosts.toml names the https upstream.
  void StartRegistry() {
    auto registry = RegistryFixture::Start({.tls = true, .auth = RegistryAuth::kBasic});
    ASSERT_TRUE(registry) << registry.error().ToString();
    registry_ = std::move(*registry);
    fs::path host_dir = certs_dir() / registry_->host();
    fs::create_directories(host_dir);
    fs::copy_file(registry_->ca_cert_path(), host_dir / "ca.crt");
    ASSERT_OK(AtomicWriteFile(host_dir / "hosts.toml", fmt::format("server = \"{}\"\n", registry_->url())));
  }

  fs::path certs_dir() const { return home_->path() / "certs.d"; }
  fs::path auth_file() const { return home_->path() / "config" / "strata" / "auth.json"; }

  // `prefix` runs before the strata command (e.g. a shell feeding stdin).
  CommandRun Strata(std::vector<std::string> args, std::vector<std::string> prefix = {}) {
    return test_support::RunStrata(STRATA_BIN, home_->path(), args, prefix);
  }

  // A shell prefix that writes `line` and a newline to the command's stdin.
  static std::vector<std::string> WithStdin(const std::string& line) {
    return {"sh", "-c", "line=$1; shift; printf '%s\\n' \"$line\" | \"$@\"", "sh", line};
  }

  std::unique_ptr<TempDir> home_;
  std::unique_ptr<RegistryFixture> registry_;
};

TEST_F(LoginTagsCliTest, HelpListsTheCommands) {
  auto help = Strata({"--help"});
  EXPECT_EQ(help.code, 0) << help.output;
  for (const char* line : {"login", "Log in to a registry", "logout", "Remove saved credentials", "tags",
                           "List the tags of a repository"}) {
    EXPECT_NE(help.output.find(line), std::string::npos) << line << "\n" << help.output;
  }
}

TEST_F(LoginTagsCliTest, LoginTagsLogout) {
  ASSERT_NO_FATAL_FAILURE(StartRegistry());
  auto layer = test_support::LayerBuilder().File("hello.txt", "hello\n").Build();
  ASSERT_OK(layer);
  test_support::ImageBuilder builder(test_support::ManifestFormat::kOci);
  builder.AddLayer(std::move(*layer));
  for (const char* tag : {"1", "2", "latest"}) ASSERT_OK(builder.PushTo(*registry_, "team/app", tag));
  const std::string host = registry_->host();
  const std::string certs = "--certs-dir=" + certs_dir().string();

  // Anonymous: the registry wants credentials.
  auto anonymous = Strata({"tags", host + "/team/app", certs});
  EXPECT_EQ(anonymous.code, 1) << anonymous.output;
  EXPECT_NE(anonymous.output.find("unauthorized"), std::string::npos) << anonymous.output;

  // A wrong password is refused and nothing is saved.
  auto wrong = Strata({"login", host, "-u", "strata", "-p", "not-the-password", certs});
  EXPECT_EQ(wrong.code, 1) << wrong.output;
  EXPECT_NE(wrong.output.find("login to " + host + " failed"), std::string::npos) << wrong.output;
  EXPECT_NE(wrong.output.find("unauthorized"), std::string::npos) << wrong.output;
  EXPECT_NE(wrong.output.find("--password-stdin"), std::string::npos) << wrong.output;  // the -p warning
  EXPECT_FALSE(fs::exists(auth_file()));

  // The right one (from stdin) is saved, 0600, under the host key.
  auto login = Strata({"login", host, "-u", "strata", "--password-stdin", certs}, WithStdin("strata-password"));
  ASSERT_EQ(login.code, 0) << login.output;
  EXPECT_NE(login.output.find("Login Succeeded"), std::string::npos) << login.output;
  struct stat info {};
  ASSERT_EQ(::stat(auth_file().c_str(), &info), 0) << auth_file();
  EXPECT_EQ(info.st_mode & 0777, 0600u);
  ASSERT_OK_AND_ASSIGN(std::string saved, ReadFile(auth_file()));
  auto doc = nlohmann::json::parse(saved, nullptr, false);
  ASSERT_TRUE(doc.is_object()) << saved;
  EXPECT_EQ(doc["auths"][host]["auth"], registry::EncodeAuthField("strata", "strata-password")) << saved;

  // Later commands use the saved login.
  auto tags = Strata({"tags", host + "/team/app", certs, "--page-size", "2"});
  ASSERT_EQ(tags.code, 0) << tags.output;
  // distribution 2.8 lists tags in directory order: compare as sets.
  std::vector<std::string> lines;
  for (size_t start = 0, end; (end = tags.output.find('\n', start)) != std::string::npos; start = end + 1) {
    lines.push_back(tags.output.substr(start, end - start));
  }
  std::sort(lines.begin(), lines.end());
  EXPECT_EQ(lines, (std::vector<std::string>{"1", "2", "latest"})) << tags.output;
  auto json_tags = Strata({"--json", "tags", host + "/team/app", certs});
  ASSERT_EQ(json_tags.code, 0) << json_tags.output;
  auto listed = nlohmann::json::parse(json_tags.output, nullptr, false);
  ASSERT_TRUE(listed.is_array()) << json_tags.output;
  std::vector<std::string> json_lines = listed;
  std::sort(json_lines.begin(), json_lines.end());
  EXPECT_EQ(json_lines, (std::vector<std::string>{"1", "2", "latest"})) << json_tags.output;
  auto absent = Strata({"tags", host + "/team/absent", certs});
  EXPECT_EQ(absent.code, 1) << absent.output;
  EXPECT_NE(absent.output.find("not found"), std::string::npos) << absent.output;

  // Logout forgets it; a second logout says so.
  auto logout = Strata({"logout", host});
  ASSERT_EQ(logout.code, 0) << logout.output;
  EXPECT_NE(logout.output.find("Removed login credentials for " + host), std::string::npos) << logout.output;
  ASSERT_OK_AND_ASSIGN(std::string after, ReadFile(auth_file()));
  EXPECT_EQ(after.find(host), std::string::npos) << after;
  auto again = Strata({"logout", host});
  EXPECT_EQ(again.code, 1) << again.output;
  EXPECT_NE(again.output.find("not logged in to " + host), std::string::npos) << again.output;
  EXPECT_EQ(Strata({"tags", host + "/team/app", certs}).code, 1);
}

TEST_F(LoginTagsCliTest, LoginWithExplicitSchemeAndWithoutPassword) {
  ASSERT_NO_FATAL_FAILURE(StartRegistry());
  const std::string certs = "--certs-dir=" + certs_dir().string();
  fs::remove(certs_dir() / registry_->host() / "hosts.toml");  // the URL alone says https
  auto login = Strata({"login", registry_->url(), "-u", "strata", "-p", "strata-password", certs});
  ASSERT_EQ(login.code, 0) << login.output;
  ASSERT_OK_AND_ASSIGN(std::string saved, ReadFile(auth_file()));
  EXPECT_TRUE(nlohmann::json::parse(saved)["auths"].contains(registry_->host())) << saved;

  // No password and no terminal: an error, not a hang.
  auto no_password = Strata({"login", registry_->host(), "-u", "strata", certs}, {"sh", "-c", "\"$@\" </dev/null", "sh"});
  EXPECT_EQ(no_password.code, 1) << no_password.output;
  EXPECT_NE(no_password.output.find("no password"), std::string::npos) << no_password.output;
}

}  // namespace
}  // namespace strata::cli
