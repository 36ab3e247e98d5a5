#include "tests/support/root.h"

#include <sys/mount.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace strata::test_support {
namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo octal.
std::string UnescapeMountPath(std::string_view escaped) {
  std::string out;
  for (size_t i = 0; i < escaped.size(); ++i) {
    if (escaped[i] == '\\' && i + 3 < escaped.size()) {
      std::string_view digits = escaped.substr(i + 1, 3);
      if (std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '7'; })) {
        out += static_cast<char>(std::stoi(std::string(digits), nullptr, 8));
        i += 3;
        continue;
      }
    }
    out += escaped[i];
  }
  return out;
}

bool IsAtOrBeneath(const std::string& path, const std::string& dir) {
  if (path == dir) return true;
  return path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/';
}

}  // namespace

Result<int> UnmountAllBeneath(const std::filesystem::path& dir) {
  std::error_code ec;
  std::string root = std::filesystem::weakly_canonical(dir, ec).native();
  if (ec) root = dir.lexically_normal().native();
  while (root.size() > 1 && root.back() == '/') root.pop_back();

  std::ifstream mountinfo("/proc/self/mountinfo");
  if (!mountinfo) return Fail(ErrorCode::kInternal, "cannot read /proc/self/mountinfo");
  std::vector<std::string> targets;
  std::string line;
  while (std::getline(mountinfo, line)) {
    // "<id> <parent> <major:minor> <root> <mount point> ..."
    std::istringstream fields(line);
    std::string id, parent, devno, mount_root, mount_point;
    if (!(fields >> id >> parent >> devno >> mount_root >> mount_point)) continue;
    std::string target = UnescapeMountPath(mount_point);
    if (IsAtOrBeneath(target, root)) targets.push_back(std::move(target));
  }
  // Deepest first; a path mounted several times appears once per mount and is detached
  // once per mount.
  std::stable_sort(targets.begin(), targets.end(), [](const std::string& a, const std::string& b) {
    return std::count(a.begin(), a.end(), '/') > std::count(b.begin(), b.end(), '/');
  });
  int detached = 0;
  std::string failures;
  for (const std::string& target : targets) {
    if (::umount2(target.c_str(), MNT_DETACH) == 0) {
      ++detached;
    } else if (errno != EINVAL && errno != ENOENT) {  // already gone with a parent
      failures += fmt::format(" {} ({})", target, std::strerror(errno));
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
