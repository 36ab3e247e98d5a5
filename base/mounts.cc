#include "base/mounts.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>

namespace strata {
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
  if (path == dir || dir == "/") return true;
  return path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/';
}

}  // namespace

Result<std::vector<std::filesystem::path>> MountPointsAtOrBeneath(const std::filesystem::path& dir) {
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
  std::stable_sort(targets.begin(), targets.end(), [](const std::string& a, const std::string& b) {
    return std::count(a.begin(), a.end(), '/') > std::count(b.begin(), b.end(), '/');
  });
  return std::vector<std::filesystem::path>(targets.begin(), targets.end());
}

}  // namespace strata
