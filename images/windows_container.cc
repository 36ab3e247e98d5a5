#include "images/windows_container.h"

#include <nlohmann/json.hpp>

#include "base/file.h"
#include "snapshotter/overlay_layout.h"
#include "snapshotter/vhd_footer.h"

namespace strata::images {

namespace fs = std::filesystem;

namespace {

// A lowerdir= list item: ':' and ',' separate items and options, so they (and '\') are
// escaped as strata-fsfilter's option parser expects.
std::string EscapeLowerDir(const std::string& dir) {
  std::string out;
  for (char c : dir) {
    if (c == ':' || c == ',' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

std::string ChainJson(const std::vector<fs::path>& layer_dirs) {
  nlohmann::json chain = nlohmann::json::array();
  for (const fs::path& dir : layer_dirs) chain.push_back(dir.string());
  return chain.dump();
}

}  // namespace

snapshotter::Mount WindowsViewMount(const std::vector<fs::path>& layer_dirs) {
  std::string lower = "lowerdir=";
  for (size_t i = 0; i < layer_dirs.size(); ++i) {
    if (i > 0) lower += ':';
    lower += EscapeLowerDir(layer_dirs[i].string());
  }
  return {.type = std::string(snapshotter::kFsfilterMountType), .source = "strata-windows",
          .options = {"ro", "windows", std::move(lower)}};
}

Result<snapshotter::Mount> WriteWindowsContainerDir(const fs::path& container_dir,
                                                    const std::vector<fs::path>& layer_dirs, uint64_t scratch_bytes) {
  if (scratch_bytes == 0 || scratch_bytes % 512 != 0) {
    return Fail(ErrorCode::kInvalidArgument, "scratch size {} is not a positive multiple of 512 bytes", scratch_bytes);
  }
  const std::string chain = ChainJson(layer_dirs);
  STRATA_RETURN_IF_ERROR(snapshotter::CreateSparseFixedVhd(container_dir / kSandboxDiskName, scratch_bytes));
  // layerchain.json last, as a layer dir's marker of completeness.
  STRATA_RETURN_IF_ERROR(AtomicWriteFile(container_dir / "layerchain.json", chain));
  return snapshotter::Mount{.type = std::string(kWindowsLayerMountType), .source = container_dir.string(),
                            .options = {"rw", "parentLayerPaths=" + chain}};
}

snapshotter::Mount HostMountOf(const snapshotter::Mount& mount) {
  if (mount.type != kWindowsLayerMountType) return mount;
  return {.type = "bind", .source = mount.source, .options = {"rbind", "rw"}};
}

}  // namespace strata::images
