#include "tests/support/root.h"

#include <sys/mount.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "base/mounts.h"

namespace strata::test_support {

std::vector<std::string> LoopsBackedUnder(const std::filesystem::path& dir) {
  std::vector<std::string> found;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/sys/block", ec)) {
    std::ifstream in(entry.path() / "loop" / "backing_file");
    std::string backing;
    if (std::getline(in, backing) && backing.starts_with(dir.string())) found.push_back(entry.path().filename());
  }
  return found;
}

Result<int> UnmountAllBeneath(const std::filesystem::path& dir) {
  STRATA_ASSIGN_OR_RETURN(auto targets, MountPointsAtOrBeneath(dir));
  // Deepest first; a path mounted several times is detached once per mount.
  int detached = 0;
  std::string failures;
  for (const auto& target : targets) {
    if (::umount2(target.c_str(), MNT_DETACH) == 0) {
      ++detached;
    } else if (errno != EINVAL && errno != ENOENT) {  // already gone with a parent
      failures += fmt::format(" {} ({})", target.string(), std::strerror(errno));
    }
  }
  if (!failures.empty()) return Fail(ErrorCode::kInternal, "could not unmount:{}", failures);
  return detached;
}

Result<TempRoot> TempRoot::Create(std::string_view prefix) {
  STRATA_ASSIGN_OR_RETURN(TempDir dir, TempDir::Create(prefix));
  return TempRoot(std::move(dir));
}

void TempRoot::Teardown() {
  if (!dir_ || dir_->path().empty()) return;
  // A mount that cannot be detached would let the recursive removal delete files of the
  // mounted filesystem, so the directory is kept instead (and named on stderr).
  if (Result<int> detached = UnmountAllBeneath(dir_->path()); !detached) {
    std::fprintf(stderr, "TempRoot: keeping %s: %s\n", dir_->path().c_str(), detached.error().ToString().c_str());
    dir_->Release();
  }
}

TempRoot::~TempRoot() { Teardown(); }

TempRoot& TempRoot::operator=(TempRoot&& other) noexcept {
  if (this != &other) {
    Teardown();
    dir_ = std::move(other.dir_);
  }
  return *this;
}

std::filesystem::path TempRoot::Release() {
  Teardown();
  return dir_->Release();
}

}  // namespace strata::test_support
