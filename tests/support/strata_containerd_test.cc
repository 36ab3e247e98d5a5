#include "tests/support/strata_containerd_test.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace strata::test_support {

void StrataContainerdTest::TearDown() {
  constexpr size_t kLogTail = 16384;
  if (containerd_) {
    if (HasFailure()) std::fprintf(stderr, "---- containerd log (tail) ----\n%s\n", containerd_->LogTail(kLogTail).c_str());
    containerd_.reset();  // tasks, containerd, its shims, cgroups, /run/containerd dirs
  }
  if (strata_) {
    strata_->Stop(std::chrono::seconds(10));
    if (HasFailure()) std::fprintf(stderr, "---- strata log (tail) ----\n%s\n", strata_->LogTail(kLogTail).c_str());
    strata_.reset();
  }
  registry_.reset();
  if (temp_) {
    if (const char* keep = std::getenv("STRATA_KEEP_TEST_DIRS"); keep != nullptr && std::string(keep) == "1") {
      std::fprintf(stderr, "keeping %s\n", temp_->Release().c_str());
    }
    temp_.reset();  // detaches every mount beneath it, then removes it
  }
}

}  // namespace strata::test_support
