// Deterministic test images for the strata-bench-* programs: a seeded generator, file
// contents that gzip to about 2:1 (seeded random bytes mixed with text lines), and the
// pieces of an OCI image layout (gzip layer blobs, config, manifest, index.json).
// The same arguments always give the same bytes, hence the same digests.
// Benchmarks only; nothing here is thread-safe.
#pragma once

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/digest.h"
#include "base/error.h"
#include "base/file.h"

namespace strata::bench {

// splitmix64: seedable, so every image gets its own stream (bench_util's RandomBytes has one
// fixed seed).
class SeededRandom {
 public:
  explicit SeededRandom(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  uint64_t Below(uint64_t bound) { return Next() % bound; }
  double Unit() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  // Log-uniform in [low, high): file sizes spread like real trees'.
  uint64_t LogUniform(uint64_t low, uint64_t high) {
    return static_cast<uint64_t>(static_cast<double>(low) *
                                 std::exp(Unit() * std::log(static_cast<double>(high) / static_cast<double>(low))));
  }
  void Fill(char* out, size_t size) {
    for (size_t i = 0; i < size; i += 8) {
      const uint64_t word = Next();
      std::memcpy(out + i, &word, std::min<size_t>(8, size - i));
    }
  }

 private:
  uint64_t state_;
};

// Lines like those images are full of (config, scripts, licences); a small vocabulary picked
// at random compresses well but not absurdly. Generators pick from a prefix of it
// (MixedContent::lines), so each keeps the vocabulary, and thus the bytes, it was made with.
inline constexpr std::array<std::string_view, 20> kTextLines = {
    "#include <stdio.h>\n", "    return EXIT_SUCCESS;\n", "export PATH=/usr/local/sbin:/usr/local/bin:$PATH\n",
    "Permission is hereby granted, free of charge, to any person obtaining a copy\n",
    "  if (result != 0) { perror(\"open\"); goto fail; }\n", "[Unit]\nDescription=Example service\n",
    "msgid \"Could not open file\"\nmsgstr \"\"\n", "def main(argv):\n    parser = argparse.ArgumentParser()\n",
    "ENV LANG=C.UTF-8 LC_ALL=C.UTF-8\n", "    \"version\": \"1.2.3\",\n", "</div>\n<div class=\"row\">\n",
    "WARNING: THIS SOFTWARE IS PROVIDED \"AS IS\" WITHOUT WARRANTY OF ANY KIND\n",
    "ldconfig -p | grep libssl\n", "    for (i = 0; i < n; ++i) sum += a[i];\n",
    "Package: libc6\nStatus: install ok installed\n", "}\n\n", "import os, sys, json\n",
    "  <key>CFBundleVersion</key>\n", "static const char *const names[] = {\n", "\tmovq %rsp, %rbp\n"};

// How WriteMixedContent makes file content: blocks of `block_size` bytes, each a random
// part (`random_share` of it, rounded down to 8 bytes) and then text lines drawn from
// `lines`. The random share sets the gzip ratio: random bytes do not compress, the text
// compresses ~10:1.
struct MixedContent {
  size_t block_size;
  double random_share;
  std::span<const std::string_view> lines;
  // true: every block is generated in full and a short last piece is a prefix of it;
  // false: only the bytes written are generated (the split scaled to the short piece).
  bool whole_blocks;
};

// Writes `size` bytes of file content through `write`, in pieces of mix.block_size; `block`
// is scratch space the caller may reuse across calls.
Status WriteMixedContent(SeededRandom& random, uint64_t size, const MixedContent& mix, std::string& block,
                         const std::function<Status(std::string_view)>& write);

inline constexpr std::string_view kOciManifestType = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view kOciConfigType = "application/vnd.oci.image.config.v1+json";
inline constexpr std::string_view kOciLayerGzipType = "application/vnd.oci.image.layer.v1.tar+gzip";

struct BlobRef {
  Digest digest = Digest::Of("");
  uint64_t size = 0;
};

// A finished gzip layer blob.
struct GzipLayer {
  BlobRef blob;
  Digest diff_id = Digest::Of("");  // sha256 of the uncompressed tar
  uint64_t tar_bytes = 0;
};

// A gzip stream into a file, hashing both sides: the blob digest and the diffID.
class GzipBlobWriter {
 public:
  // `level` as zlib's (1 = `gzip -1`, 6 = gzip's default).
  static Result<std::unique_ptr<GzipBlobWriter>> Open(const std::filesystem::path& path, int level);
  ~GzipBlobWriter();
  GzipBlobWriter(const GzipBlobWriter&) = delete;
  GzipBlobWriter& operator=(const GzipBlobWriter&) = delete;

  Status Write(std::string_view data);
  uint64_t compressed_bytes() const { return compressed_.bytes(); }
  // Ends the stream. REQUIRES: called once, no Write after it.
  Result<GzipLayer> Finish();

 private:
  explicit GzipBlobWriter(UniqueFd fd) : fd_(std::move(fd)), out_(256 * 1024) {}
  Status Deflate(std::string_view data, int flush);

  UniqueFd fd_;
  std::vector<char> out_;
  z_stream stream_{};
  bool initialised_ = false;
  Digester compressed_;
  Digester uncompressed_;
};

// create_directories, as a Status.
Status MakeDirs(const std::filesystem::path& dir);

// Moves the finished blob `partial` to its digest name in `blobs`.
Status CommitBlob(const std::filesystem::path& blobs, const std::filesystem::path& partial, const Digest& digest);

// {"mediaType":...,"digest":...,"size":...}
std::string DescriptorJson(std::string_view media_type, const BlobRef& blob);

// Writes `json` as a blob named by its digest.
Result<BlobRef> WriteJsonBlob(const std::filesystem::path& blobs, std::string_view json);

// What an image written as an OCI layout adds up to.
struct TestImage {
  Digest manifest_digest = Digest::Of("");
  int layers = 0;
  uint64_t compressed_bytes = 0;  // sum of the gzip layer blobs
  uint64_t tar_bytes = 0;         // sum of the uncompressed layer tars
};

// Completes the OCI image layout at `layout` whose gzip `layers` are already in
// blobs/sha256: a linux/amd64 config with `container_config` as its "config" object
// ("{}" for none), the manifest, oci-layout and index.json with the image tagged "1".
// Sets every field of `image`.
Status FinishLayout(const std::filesystem::path& layout, std::span<const GzipLayer> layers,
                    std::string_view container_config, TestImage& image);

}  // namespace strata::bench
