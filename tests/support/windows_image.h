// Windows test images for registries: per Windows Server build an image of the
// WindowsBaseLayer() + WindowsDeltaLayer() tars with a windows/amd64 config carrying
// os.version, an index of several builds plus linux/amd64, and a foreign-layer variant whose
// base layer lives only behind a second loopback HTTP server (ForeignBlobServer).
//
// Deterministic like ImageBuilder: the same spec gives the same digests. Every image of
// every build shares the same two layers; manifests differ by their configs (os.version).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/digest.h"
#include "base/error.h"
#include "tests/support/compression.h"
#include "tests/support/image_builder.h"
#include "tests/support/loopback_server.h"
#include "tests/support/registry_fixture.h"

namespace strata::test_support {

// Windows Server builds (os.version "10.0.<build>.<UBR>") and the UBRs the images carry.
inline constexpr uint32_t kWindowsServer2019Build = 17763;  // ltsc2019
inline constexpr uint32_t kWindowsServer2019Ubr = 6414;
inline constexpr uint32_t kWindowsServer2022Build = 20348;  // ltsc2022, first "compat LTSC"
inline constexpr uint32_t kWindowsServer2022Ubr = 2762;
inline constexpr uint32_t kWindowsServer2025Build = 26100;  // ltsc2025
inline constexpr uint32_t kWindowsServer2025Ubr = 2314;
// A client build between the two compat LTSCs (Windows 11 23H2): runs 20348 images.
inline constexpr uint32_t kWindows11Build = 22631;
// A build no image of the index fits (Windows 10 2004: < 20348, so exact match only).
inline constexpr uint32_t kWindows10Build = 19041;

// The foreign-layer media types (Docker foreign; OCI non-distributable, deprecated).
inline constexpr std::string_view kOciNondistributableLayerGzip =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";

// "10.0.<build>.<ubr>", or "10.0.<build>" without a UBR.
std::string WindowsOsVersion(uint32_t build, uint32_t ubr);
std::string WindowsOsVersion(uint32_t build);

struct WindowsImageSpec {
  uint32_t build = kWindowsServer2022Build;
  uint32_t ubr = kWindowsServer2022Ubr;
  std::vector<std::string> os_features;  // e.g. {"win32k"}
  ManifestFormat format = ManifestFormat::kDocker;
  Compression compression = Compression::kGzip;
  // Non-empty: the base layer is foreign (Docker foreign type, or OCI non-distributable for
  // an OCI manifest) with these descriptor urls, and its blob is left out of the push
  // unless push_foreign_blob.
  std::vector<std::string> foreign_base_urls;
  bool push_foreign_blob = false;

  std::string os_version() const { return WindowsOsVersion(build, ubr); }
};

// WindowsBaseLayer() / WindowsDeltaLayer() as finished layers (tar, blob, digests).
Result<Layer> BuildWindowsBaseLayer(Compression compression = Compression::kGzip);
Result<Layer> BuildWindowsDeltaLayer(Compression compression = Compression::kGzip);

// The image of `spec`: layers base then delta; config os "windows", os.version,
// architecture "amd64", os.features when given, rootfs.diff_ids of both tars.
Result<BuiltImage> BuildWindowsImage(const WindowsImageSpec& spec);

// Server 2019, 2022 (os.features ["win32k"]) and 2025, in that order, in `format`.
std::vector<WindowsImageSpec> StandardWindowsImageSpecs(ManifestFormat format = ManifestFormat::kDocker);

// A small linux/amd64 image (one layer) in `format`: the non-Windows entry of the index.
Result<BuiltImage> BuildLinuxAmd64Image(ManifestFormat format = ManifestFormat::kDocker);

// An index (OCI) or manifest list (Docker) of the images of `specs`, in order, followed by
// the linux/amd64 image when `with_linux`. Entries carry platform os.version/os.features.
// images[i] is specs[i]'s image; images.back() is the Linux one when with_linux.
Result<BuiltIndex> BuildWindowsIndex(const std::vector<WindowsImageSpec>& specs,
                                     ManifestFormat format = ManifestFormat::kDocker, bool with_linux = true);

// BuildWindowsIndex(StandardWindowsImageSpecs(format), format) pushed to `registry`.
Result<PushedIndex> PushStandardWindowsIndex(RegistryFixture& registry, std::string_view repository,
                                             std::string_view tag, ManifestFormat format = ManifestFormat::kDocker);

// Registry options whose config lets manifests refer to foreign urls on 127.0.0.1
// (validation.manifests.urls.allow); distribution rejects such manifests otherwise.
RegistryOptions AllowLoopbackForeignUrls(RegistryOptions options = {});

// A second HTTP server on loopback that serves exactly one blob at
// /foreign/<digest> (GET and HEAD; 404 for any other path) and counts requests. One
// request per connection ("Connection: close"); no Range support (blobs are small).
// Thread-safe counters; the destructor stops the server thread.
class ForeignBlobServer {
 public:
  static Result<std::unique_ptr<ForeignBlobServer>> Start(std::string blob);

  // "http://127.0.0.1:<port>/foreign/<digest>": what a descriptor's urls names.
  std::string url() const;
  const Digest& digest() const { return digest_; }
  // GETs of url()'s path answered so far (HEADs are not counted).
  int blob_gets() const { return blob_gets_.load(); }
  // Every request, any path or method.
  int requests() const { return requests_.load(); }

 private:
  explicit ForeignBlobServer(std::string blob) : blob_(std::move(blob)), digest_(Digest::Of(blob_)) {}
  std::string Answer(const std::string& request_head);

  std::string blob_;
  Digest digest_;
  std::atomic<int> blob_gets_{0};
  std::atomic<int> requests_{0};
  std::unique_ptr<OneShotHttpServer> server_;  // last: stops before the members it uses go
};

// The foreign-layer variant of the standard index: every Windows image's base layer is a
// foreign layer whose urls name `server` (which serves BuildWindowsBaseLayer's blob).
struct ForeignWindowsIndex {
  std::unique_ptr<ForeignBlobServer> server;
  Layer base_layer;  // the foreign blob
  BuiltIndex built;
  PushedIndex pushed;
};

// Starts the blob server, builds the foreign variant and pushes it to `registry`, which
// must allow loopback urls (AllowLoopbackForeignUrls). `registry_has_blob`: also upload
// the base blob to the registry (a registry that mirrors foreign layers), so both sources
// can serve it.
Result<ForeignWindowsIndex> PushForeignWindowsIndex(RegistryFixture& registry, std::string_view repository,
                                                    std::string_view tag, bool registry_has_blob = false,
                                                    ManifestFormat format = ManifestFormat::kDocker);

}  // namespace strata::test_support
