// Helpers shared by the store tests.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "store/store.h"
#include "tests/support/assertions.h"
#include "tests/support/root.h"

namespace strata::store::testing {

// Ingests `data` under `ref` and commits it; fails the test on error.
inline ContentInfo Ingest(ContentStore& content, const std::string& data, const std::string& ref,
                          Labels labels = {}) {
  auto writer = content.Writer(ref, {});
  EXPECT_TRUE(writer.has_value()) << writer.error().ToString();
  EXPECT_TRUE((*writer)->Write(data).has_value());
  auto info = (*writer)->Commit(static_cast<int64_t>(data.size()), Digest::Of(data), std::move(labels));
  EXPECT_TRUE(info.has_value()) << info.error().ToString();
  return *info;
}

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto root = test_support::TempRoot::Create("strata-store-test");
    ASSERT_TRUE(root.has_value()) << root.error().ToString();
    root_.emplace(std::move(*root));
    Reopen();
  }
  void Reopen() {
    store_.reset();
    auto store = Store::Open(root_->path());
    ASSERT_TRUE(store.has_value()) << store.error().ToString();
    store_ = std::move(*store);
  }
  const std::filesystem::path& root() const { return root_->path(); }
  ContentStore& content() { return store_->content(); }

  std::optional<test_support::TempRoot> root_;
  std::unique_ptr<Store> store_;
};

}  // namespace strata::store::testing
