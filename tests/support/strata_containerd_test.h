// Base of the tests that run containerd with `strata serve` as its proxy snapshotter: the
// temp dir, the loopback registry, the strata child and the containerd they fill in, and
// one TearDown that stops them in reverse order of use (printing each log's tail when the
// test failed) and removes the temp dir (kept with STRATA_KEEP_TEST_DIRS=1).
#pragma once

#include <filesystem>
#include <memory>
#include <optional>

#include <gtest/gtest.h>

#include "tests/support/containerd_fixture.h"
#include "tests/support/process.h"
#include "tests/support/registry_fixture.h"
#include "tests/support/root.h"

namespace strata::test_support {

class StrataContainerdTest : public ::testing::Test {
 protected:
  void TearDown() override;

  std::filesystem::path dir() const { return temp_->path(); }
  std::filesystem::path strata_root() const { return dir() / "strata-root"; }
  std::filesystem::path strata_socket() const { return dir() / "strata.sock"; }
  std::filesystem::path proxy_snapshots_dir() const { return strata_root() / "proxy-snapshots" / "strata"; }

  std::optional<TempRoot> temp_;
  std::unique_ptr<RegistryFixture> registry_;
  std::unique_ptr<Child> strata_;
  std::unique_ptr<ContainerdFixture> containerd_;
};

}  // namespace strata::test_support
