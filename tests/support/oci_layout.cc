#include "tests/support/oci_layout.h"

#include <chrono>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/file.h"
#include "tests/support/process.h"

namespace strata::test_support {

namespace fs = std::filesystem;

Status WriteOciLayout(const BuiltImage& image, const fs::path& dir, std::string_view tag) {
  std::error_code ec;
  fs::create_directories(dir / "blobs" / "sha256", ec);
  if (ec) return Fail(ErrorCode::kInternal, "create OCI layout \"{}\": {}", dir.string(), ec.message());
  auto write_blob = [&](const Blob& blob) -> Status {
    return AtomicWriteFile(dir / "blobs" / "sha256" / blob.digest.hex(), blob.data, 0444);
  };
  STRATA_RETURN_IF_ERROR(write_blob(image.manifest));
  STRATA_RETURN_IF_ERROR(write_blob(image.config));
  for (const Blob& layer : image.layers) STRATA_RETURN_IF_ERROR(write_blob(layer));

  nlohmann::ordered_json descriptor = image.manifest.Descriptor();
  descriptor["annotations"] = {{"org.opencontainers.image.ref.name", std::string(tag)}};
  nlohmann::ordered_json index = {
      {"schemaVersion", 2},
      {"mediaType", "application/vnd.oci.image.index.v1+json"},
      {"manifests", nlohmann::ordered_json::array({descriptor})},
  };
  STRATA_RETURN_IF_ERROR(AtomicWriteFile(dir / "oci-layout", R"({"imageLayoutVersion":"1.0.0"})"));
  return AtomicWriteFile(dir / "index.json", index.dump());
}

Result<fs::path> UmociUnpack(const fs::path& layout, std::string_view tag, const fs::path& bundle) {
  std::string output;
  std::vector<std::string> argv = {std::string(kUmociPath), "unpack", "--image",
                                   layout.string() + ":" + std::string(tag), bundle.string()};
  STRATA_ASSIGN_OR_RETURN(int code, RunCommand(argv, &output, std::chrono::minutes(2)));
  if (code != 0) {
    return Fail(ErrorCode::kInternal, "umoci unpack {}:{} exited {}: {}", layout.string(), tag, code, output);
  }
  return bundle / "rootfs";
}

}  // namespace strata::test_support
