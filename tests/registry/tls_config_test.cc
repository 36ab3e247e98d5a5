#include "registry/tls_config.h"

#include <filesystem>

#include <gtest/gtest.h>

#include "base/file.h"

namespace strata::registry {
namespace {

namespace fs = std::filesystem;

TEST(TlsConfigTest, ReadsHostPortThenHostDirectory) {
  auto dir = TempDir::Create("strata-certs");
  ASSERT_TRUE(dir) << dir.error().ToString();
  const fs::path root = dir->path();
  fs::create_directories(root / "reg.example:5000");
  fs::create_directories(root / "reg.example");
  ASSERT_TRUE(AtomicWriteFile(root / "reg.example:5000" / "ca.crt", "PEM-A"));
  ASSERT_TRUE(AtomicWriteFile(root / "reg.example:5000" / "extra.crt", "PEM-B\n"));
  ASSERT_TRUE(AtomicWriteFile(root / "reg.example:5000" / "client.cert", "CERT"));
  ASSERT_TRUE(AtomicWriteFile(root / "reg.example:5000" / "client.key", "KEY"));
  ASSERT_TRUE(AtomicWriteFile(root / "reg.example" / "ca.crt", "PEM-C\n"));

  Result<HostTlsConfig> with_port = LoadHostTlsConfig(root, {"https", "reg.example", 5000});
  ASSERT_TRUE(with_port) << with_port.error().ToString();
  EXPECT_EQ(with_port->dir, root / "reg.example:5000");
  EXPECT_EQ(with_port->extra_ca_pem, "PEM-A\nPEM-B\n");
  EXPECT_EQ(with_port->client_cert, root / "reg.example:5000" / "client.cert");
  EXPECT_EQ(with_port->client_key, root / "reg.example:5000" / "client.key");

  Result<HostTlsConfig> default_port = LoadHostTlsConfig(root, {"https", "reg.example", 443});
  ASSERT_TRUE(default_port) << default_port.error().ToString();
  EXPECT_EQ(default_port->extra_ca_pem, "PEM-C\n");
  EXPECT_TRUE(default_port->client_cert.empty());

  Result<HostTlsConfig> none = LoadHostTlsConfig(root, {"https", "other.example", 443});
  ASSERT_TRUE(none) << none.error().ToString();
  EXPECT_TRUE(none->dir.empty());
  EXPECT_TRUE(LoadHostTlsConfig(root / "missing", {"https", "reg.example", 443}));
}

TEST(TlsConfigTest, CertWithoutKeyIsAnError) {
  auto dir = TempDir::Create("strata-certs");
  ASSERT_TRUE(dir) << dir.error().ToString();
  fs::create_directories(dir->path() / "reg.example");
  ASSERT_TRUE(AtomicWriteFile(dir->path() / "reg.example" / "client.cert", "CERT"));
  Result<HostTlsConfig> config = LoadHostTlsConfig(dir->path(), {"https", "reg.example", 443});
  ASSERT_FALSE(config);
  EXPECT_EQ(config.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(config.error().message().find("client.key"), std::string::npos) << config.error().message();
}

}  // namespace
}  // namespace strata::registry
