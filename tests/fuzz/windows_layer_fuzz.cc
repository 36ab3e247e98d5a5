// ApplyWindowsLayer over arbitrary tars: the path MSWINDOWS.* records (fileattr, rawsd,
// mountpoint, creationtime), alternate data streams, junctions and hard links take into a
// layer directory, then the export back to a tar and the index read. The first byte picks a
// base layer (odd) or a layer over an empty parent (even); the rest is the tar.
// Each input gets a fresh directory under a private temp dir, removed afterwards.
#include <stdlib.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string_view>

#include "archive/windows_layer.h"
#include "base/io.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

struct Scratch {
  std::filesystem::path root;
  Scratch() {
    char pattern[] = "/tmp/strata-fuzz-windows-XXXXXX";
    FUZZ_CHECK(mkdtemp(pattern) != nullptr);
    root = pattern;
    std::filesystem::create_directories(root / "parent" / "Files");
  }
  ~Scratch() {
    std::error_code ec;
    std::filesystem::remove_all(root, ec);
  }
};

constexpr uint64_t kMaxExportBytes = uint64_t{64} << 20;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace strata;
  if (size < 1 || size > (1 << 20)) return 0;
  static Scratch scratch;
  const std::filesystem::path layer = scratch.root / "layer";
  std::error_code ec;
  std::filesystem::remove_all(layer, ec);
  std::filesystem::create_directory(layer);

  archive::WindowsLayerOptions options;
  options.is_base = (data[0] & 1) != 0;
  if (!options.is_base) options.parent_layers.push_back(scratch.root / "parent");
  StringViewReader tar(std::string_view(reinterpret_cast<const char*>(data + 1), size - 1));
  auto applied = archive::ApplyWindowsLayer(tar, layer, options);
  if (applied) {
    uint64_t exported = 0;
    auto written = archive::WriteWindowsLayer(layer, [&](std::string_view bytes) -> Status {
      exported += bytes.size();
      if (exported > kMaxExportBytes) return Fail(ErrorCode::kFailedPrecondition, "export too large");
      return {};
    });
    if (written) FUZZ_CHECK(written->entries == applied->entries);
    auto entries = archive::ReadWindowsLayerEntries(layer);
    FUZZ_CHECK(entries.has_value());
  }
  std::filesystem::remove_all(layer, ec);
  return 0;
}
