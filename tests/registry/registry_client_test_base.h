// A test base for the registry client's tests: an HttpClient whose certs.d is a fresh temp
// dir (never the host's /etc/strata), and registries whose CA that certs.d trusts.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "base/file.h"
#include "oci/reference.h"
#include "registry/auth.h"
#include "registry/http_client.h"
#include "registry/resolver.h"
#include "tests/support/registry_fixture.h"

namespace strata::registry {

class RegistryClientTest : public ::testing::Test {
 public:
  // Parses `text`, failing the test (not aborting it) when it is not a valid reference.
  // Public so that fixtures not derived from this one can use it too.
  static oci::Reference Ref(const std::string& text) {
    auto reference = oci::Reference::Parse(text);
    EXPECT_TRUE(reference) << reference.error().ToString();
    return *reference;
  }

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

  // A resolver with fixed credentials (none by default) and fast retries, kept in
  // resolver_ (replacing the previous one) with its authorizer in authorizer_.
  Resolver& MakeResolver(std::optional<Credentials> credentials = std::nullopt) {
    using namespace std::chrono_literals;
    authorizer_ = std::make_unique<Authorizer>(*client_, Fixed(credentials));
    resolver_ = std::make_unique<Resolver>(
        *authorizer_, ResolverOptions{.retry = {.max_attempts = 3, .initial_backoff = 10ms, .jitter = 0}});
    return *resolver_;
  }

  // Declaration order matters: the authorizer uses client_ and the resolver the authorizer,
  // so they are destroyed first.
  std::unique_ptr<TempDir> certs_;
  std::unique_ptr<HttpClient> client_;
  std::unique_ptr<Authorizer> authorizer_;
  std::unique_ptr<Resolver> resolver_;
};

}  // namespace strata::registry
