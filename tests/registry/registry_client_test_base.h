// A test base for the registry client's tests: an HttpClient whose certs.d is a fresh temp
// dir (never the host's /etc/strata), and registries whose CA that certs.d trusts.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <optional>

#include "base/file.h"
#include "registry/auth.h"
#include "registry/http_client.h"
#include "tests/support/registry_fixture.h"

namespace strata::registry {

class RegistryClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto certs = TempDir::Create("strata-certs");
    ASSERT_TRUE(certs) << certs.error().ToString();
    certs_ = std::make_unique<TempDir>(std::move(*certs));
    auto client = HttpClient::Create({.certs_dir = certs_->path()});
    ASSERT_TRUE(client) << client.error().ToString();
    client_ = std::move(*client);
  }

  // Starts a registry; a TLS one's CA goes into this test's certs.d. Null on failure (and
  // the test has failed).
  std::unique_ptr<test_support::RegistryFixture> StartTrustedRegistry(test_support::RegistryOptions options = {}) {
    auto registry = test_support::RegistryFixture::Start(std::move(options));
    EXPECT_TRUE(registry) << registry.error().ToString();
    if (registry && !(*registry)->ca_cert_path().empty()) {
      std::filesystem::path host_dir = certs_->path() / (*registry)->host();
      std::filesystem::create_directories(host_dir);
      std::filesystem::copy_file((*registry)->ca_cert_path(), host_dir / "ca.crt");
    }
    return registry ? std::move(*registry) : nullptr;
  }

  // A credentials lookup that answers `credentials` for every host.
  static CredentialsLookup Fixed(std::optional<Credentials> credentials) {
    return [credentials](std::string_view) -> Result<std::optional<Credentials>> { return credentials; };
  }

  std::unique_ptr<TempDir> certs_;
  std::unique_ptr<HttpClient> client_;
};

}  // namespace strata::registry
