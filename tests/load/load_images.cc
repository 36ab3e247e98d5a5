#include "tests/load/load_images.h"

#include <array>
#include <filesystem>

#include <fmt/format.h>

#include "base/file.h"

namespace strata::load {
namespace {

using test_support::ImageBuilder;
using test_support::Layer;
using test_support::LayerBuilder;
using test_support::RandomBytes;

// Text of small file `n` of a layer: distinct per layer so a file from the wrong layer shows.
std::string SmallFile(std::string_view layer, int n) { return fmt::format("{} file {}\n", layer, n); }

// A layer and the files it contributes to an image.
struct BuiltLayer {
  Layer layer;
  std::map<std::string, Digest> files;
};

class LayerFiles {
 public:
  LayerFiles& File(const std::string& path, std::string content) {
    files_.emplace(path, Digest::Of(content));
    builder_.File(path, std::move(content));
    return *this;
  }
  LayerFiles& Dir(const std::string& path) {
    builder_.Dir(path);
    return *this;
  }
  LayerFiles& Whiteout(const std::string& path) {
    builder_.Whiteout(path);
    return *this;
  }
  Result<BuiltLayer> Build() {
    STRATA_ASSIGN_OR_RETURN(Layer layer, builder_.Build());
    return BuiltLayer{std::move(layer), std::move(files_)};
  }

 private:
  LayerBuilder builder_;
  std::map<std::string, Digest> files_;
};

// The os layers every image starts with (built once: they are the same in every generation).
Result<std::array<BuiltLayer, 2>> OsLayers() {
  LayerFiles os0;
  os0.Dir("os0").File("os0/big", RandomBytes(1 << 20, 1));
  for (int n = 0; n < 150; ++n) os0.File(fmt::format("os0/f{}", n), SmallFile("os0", n));
  LayerFiles os1;
  os1.Dir("os1")
      .File("os1/keep", "kept\n")
      .File("os1/remove-me", "whited out by even images\n")
      .File("os1/big", RandomBytes(512 << 10, 2));
  STRATA_ASSIGN_OR_RETURN(BuiltLayer first, os0.Build());
  STRATA_ASSIGN_OR_RETURN(BuiltLayer second, os1.Build());
  return std::array<BuiltLayer, 2>{std::move(first), std::move(second)};
}

Result<BuiltLayer> GenerationLayer(int generation, int j) {
  const std::string dir = fmt::format("gen{}/b{}", generation, j);
  LayerFiles files;
  files.Dir(fmt::format("gen{}", generation)).Dir(dir);
  files.File(dir + "/big", RandomBytes((256 << 10) + j * (96 << 10), static_cast<uint32_t>(generation * 100 + j + 10)));
  for (int n = 0; n < 10; ++n) files.File(fmt::format("{}/s{}", dir, n), SmallFile(dir, n));
  return files.Build();
}

// Which generation layers image `index` stacks, bottom up.
std::array<int, 3> GenerationLayersOf(int index) {
  const int a = index % kLayersPerGeneration;
  const int b = (index + 1) % kLayersPerGeneration;
  const int c = (index + 3) % kLayersPerGeneration;
  if (index < kLayersPerGeneration) return {a, b, c};
  return {a, c, b};  // same blobs as image index-8, same first chain snapshot, other order above
}

}  // namespace

std::vector<Digest> LoadImage::blobs() const {
  std::vector<Digest> digests = {pushed.config_digest};
  digests.insert(digests.end(), pushed.layer_digests.begin(), pushed.layer_digests.end());
  return digests;
}

Result<std::vector<LoadImage>> PushGeneration(test_support::RegistryFixture& registry, int generation) {
  static const Result<std::array<BuiltLayer, 2>> os_layers = OsLayers();
  if (!os_layers) return Fail(os_layers.error());
  std::vector<BuiltLayer> layers;
  for (int j = 0; j < kLayersPerGeneration; ++j) {
    STRATA_ASSIGN_OR_RETURN(BuiltLayer layer, GenerationLayer(generation, j));
    layers.push_back(std::move(layer));
  }
  std::vector<LoadImage> images;
  for (int index = 0; index < kImagesPerGeneration; ++index) {
    const std::string repository = "load/app";  // one repository: each blob is uploaded once
    const std::string tag = fmt::format("g{}-i{}", generation, index);
    ExpectedTree expected;
    ImageBuilder builder;
    for (const BuiltLayer& os : *os_layers) {
      builder.AddLayer(os.layer);
      expected.files.insert(os.files.begin(), os.files.end());
    }
    for (int j : GenerationLayersOf(index)) {
      builder.AddLayer(layers[j].layer);
      expected.files.insert(layers[j].files.begin(), layers[j].files.end());
    }
    LayerFiles top;
    top.File("image", fmt::format("generation {} image {}\n", generation, index));
    if (index % 2 == 0) {
      top.Whiteout("os1/remove-me");
      expected.files.erase("os1/remove-me");
      expected.absent.push_back("os1/remove-me");
    }
    STRATA_ASSIGN_OR_RETURN(BuiltLayer built_top, top.Build());
    expected.files.insert(built_top.files.begin(), built_top.files.end());
    builder.AddLayer(built_top.layer).Cmd({"/bin/sh"});
    STRATA_ASSIGN_OR_RETURN(test_support::PushedImage pushed, builder.PushTo(registry, repository, tag));
    images.push_back(LoadImage{.generation = generation,
                               .index = index,
                               .repository = repository,
                               .tag = tag,
                               .pushed = std::move(pushed),
                               .expected = std::move(expected)});
  }
  return images;
}

Result<std::vector<std::string>> PushContainerdImages(test_support::RegistryFixture& registry) {
  STRATA_ASSIGN_OR_RETURN(LayerBuilder busybox, test_support::BusyboxLayer());
  STRATA_ASSIGN_OR_RETURN(Layer base, busybox.Build());
  std::vector<std::string> refs;
  for (const std::string repository : {"ctr/app1", "ctr/app2"}) {
    STRATA_ASSIGN_OR_RETURN(Layer data, LayerBuilder()
                                            .Dir("data")
                                            .File("data/hello", fmt::format("hello from {}\n", repository))
                                            .Build());
    ImageBuilder builder;
    builder.AddLayer(base).AddLayer(data).Cmd({"/bin/sh"});
    STRATA_RETURN_IF_ERROR(builder.PushTo(registry, repository, "1"));
    refs.push_back(registry.host() + "/" + repository + ":1");
  }
  return refs;
}

std::string CompareTree(const std::string& root, const ExpectedTree& expected) {
  for (const auto& [path, digest] : expected.files) {
    Result<std::string> bytes = ReadFile(std::filesystem::path(root) / path);
    if (!bytes) return fmt::format("{}: {}", path, bytes.error().message());
    if (Digest::Of(*bytes) != digest) return fmt::format("{}: content differs ({} bytes)", path, bytes->size());
  }
  for (const std::string& path : expected.absent) {
    std::error_code ec;
    if (std::filesystem::exists(std::filesystem::path(root) / path, ec)) return fmt::format("{}: should be absent", path);
  }
  return "";
}

}  // namespace strata::load
