#include "tests/support/image_builder.h"

#include <random>

#include <sys/utsname.h>

#include <algorithm>

#include "base/file.h"

namespace strata::test_support {
namespace {

using archive::TarEntry;
using archive::TarEntryType;
using nlohmann::ordered_json;

std::string StripLeadingSlashes(std::string path) {
  size_t start = path.find_first_not_of('/');
  return start == std::string::npos ? std::string() : path.substr(start);
}

// "a/b/c" -> ("a/b/", "c"); "c" -> ("", "c").
std::pair<std::string, std::string> SplitParent(const std::string& path) {
  std::string trimmed = path;
  while (trimmed.size() > 1 && trimmed.back() == '/') trimmed.pop_back();
  size_t slash = trimmed.rfind('/');
  if (slash == std::string::npos) return {"", trimmed};
  return {trimmed.substr(0, slash + 1), trimmed.substr(slash + 1)};
}

std::string LayerMediaType(ManifestFormat format, Compression compression) {
  switch (compression) {
    case Compression::kNone:
      return std::string(format == ManifestFormat::kOci ? media_types::kOciLayer : media_types::kDockerLayer);
    case Compression::kGzip:
      return std::string(format == ManifestFormat::kOci ? media_types::kOciLayerGzip : media_types::kDockerLayerGzip);
    case Compression::kZstd:
      // Docker schema 2 has no zstd type of its own; Docker itself pushes the OCI one.
      return std::string(media_types::kOciLayerZstd);
  }
  return std::string(media_types::kOciLayer);
}

ordered_json PlatformJson(const Platform& platform) {
  ordered_json json = {{"architecture", platform.architecture.empty() ? HostArchitecture() : platform.architecture},
                       {"os", platform.os}};
  if (!platform.os_version.empty()) json["os.version"] = platform.os_version;
  if (!platform.os_features.empty()) json["os.features"] = platform.os_features;
  if (!platform.variant.empty()) json["variant"] = platform.variant;
  return json;
}

}  // namespace

std::string ManifestAcceptHeader() {
  return fmt::format("{}, {}, {}, {}", media_types::kOciManifest, media_types::kOciIndex, media_types::kDockerManifest,
                     media_types::kDockerManifestList);
}

std::string HostArchitecture() {
  utsname name{};
  ::uname(&name);
  std::string_view machine = name.machine;
  if (machine == "x86_64") return "amd64";
  if (machine == "aarch64" || machine == "arm64") return "arm64";
  if (machine.starts_with("arm")) return "arm";
  if (machine == "i386" || machine == "i686") return "386";
  if (machine == "ppc64le") return "ppc64le";
  if (machine == "s390x") return "s390x";
  if (machine == "riscv64") return "riscv64";
  return std::string(machine);
}

// ---- LayerBuilder ----

LayerBuilder& LayerBuilder::Add(TarEntryType type, std::string path, EntryAttrs attrs, uint32_t default_mode,
                                std::string content, std::string linkname) {
  TarEntry entry{
      .name = StripLeadingSlashes(std::move(path)),
      .type = type,
      .mode = attrs.mode.value_or(default_mode),
      .uid = attrs.uid,
      .gid = attrs.gid,
      .size = content.size(),
      .mtime = attrs.mtime,
      .linkname = std::move(linkname),
      .xattrs = std::move(attrs.xattrs),
  };
  entries_.emplace_back(std::move(entry), std::move(content));
  return *this;
}

LayerBuilder& LayerBuilder::File(std::string path, std::string content, EntryAttrs attrs) {
  return Add(TarEntryType::kRegular, std::move(path), std::move(attrs), 0644, std::move(content));
}
LayerBuilder& LayerBuilder::Dir(std::string path, EntryAttrs attrs) {
  return Add(TarEntryType::kDirectory, std::move(path), std::move(attrs), 0755);
}
LayerBuilder& LayerBuilder::Symlink(std::string path, std::string target, EntryAttrs attrs) {
  return Add(TarEntryType::kSymlink, std::move(path), std::move(attrs), 0777, {}, std::move(target));
}
LayerBuilder& LayerBuilder::Hardlink(std::string path, std::string target, EntryAttrs attrs) {
  return Add(TarEntryType::kHardLink, std::move(path), std::move(attrs), 0644, {},
             StripLeadingSlashes(std::move(target)));
}
LayerBuilder& LayerBuilder::Whiteout(std::string path) {
  auto [parent, name] = SplitParent(StripLeadingSlashes(std::move(path)));
  return File(parent + ".wh." + name, "", {.mode = 0644});
}
LayerBuilder& LayerBuilder::OpaqueDir(std::string dir) {
  std::string parent = StripLeadingSlashes(std::move(dir));
  if (!parent.empty() && parent.back() != '/') parent += '/';
  return File(parent + ".wh..wh..opq", "", {.mode = 0644});
}
LayerBuilder& LayerBuilder::Fifo(std::string path, EntryAttrs attrs) {
  return Add(TarEntryType::kFifo, std::move(path), std::move(attrs), 0644);
}
LayerBuilder& LayerBuilder::CharDevice(std::string path, uint32_t major, uint32_t minor, EntryAttrs attrs) {
  Add(TarEntryType::kCharDevice, std::move(path), std::move(attrs), 0666);
  entries_.back().first.devmajor = major;
  entries_.back().first.devminor = minor;
  return *this;
}
LayerBuilder& LayerBuilder::BlockDevice(std::string path, uint32_t major, uint32_t minor, EntryAttrs attrs) {
  Add(TarEntryType::kBlockDevice, std::move(path), std::move(attrs), 0660);
  entries_.back().first.devmajor = major;
  entries_.back().first.devminor = minor;
  return *this;
}
LayerBuilder& LayerBuilder::Entry(TarEntry entry, std::string content) {
  entry.size = content.size();
  entries_.emplace_back(std::move(entry), std::move(content));
  return *this;
}

Result<std::string> LayerBuilder::Tar() const {
  std::string tar;
  archive::TarWriter writer([&tar](std::string_view bytes) -> Status {
    tar.append(bytes);
    return {};
  });
  for (const auto& [entry, content] : entries_) {
    STRATA_RETURN_IF_ERROR(writer.WriteHeader(entry));
    STRATA_RETURN_IF_ERROR(writer.WriteData(content));
  }
  STRATA_RETURN_IF_ERROR(writer.Finish());
  return tar;
}

Result<Layer> LayerBuilder::Build(Compression compression) const {
  STRATA_ASSIGN_OR_RETURN(std::string tar, Tar());
  STRATA_ASSIGN_OR_RETURN(std::string blob, Compress(tar, compression));
  Digest digest = Digest::Of(blob);
  Digest diff_id = Digest::Of(tar);
  return Layer{.compression = compression,
               .tar = std::move(tar),
               .blob = std::move(blob),
               .digest = std::move(digest),
               .diff_id = std::move(diff_id)};
}

Result<LayerBuilder> BusyboxLayer(const std::filesystem::path& busybox) {
  STRATA_ASSIGN_OR_RETURN(std::string binary, ReadFile(busybox));
  LayerBuilder layer;
  for (const char* dir : {"bin", "dev", "etc", "proc", "run", "sys", "usr", "usr/bin", "var"}) layer.Dir(dir);
  layer.Dir("root", {.mode = 0700});
  layer.Dir("tmp", {.mode = 01777});
  layer.File("bin/busybox", std::move(binary), {.mode = 0755});
  for (const char* applet : {"sh", "ls", "cat", "echo", "true", "false", "sleep", "env", "id", "mkdir", "rm", "test",
                             "touch", "stat", "wc", "head", "uname", "pwd", "hostname", "mount"}) {
    layer.Symlink(fmt::format("bin/{}", applet), "busybox");
  }
  layer.File("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n");
  layer.File("etc/group", "root:x:0:\nnogroup:x:65534:\n");
  return layer;
}

// ---- Blob ----

Blob Blob::Of(std::string media_type, std::string data) {
  Digest digest = Digest::Of(data);
  return Blob{.media_type = std::move(media_type), .data = std::move(data), .digest = std::move(digest)};
}

ordered_json Blob::Descriptor() const {
  return {{"mediaType", media_type}, {"digest", digest.ToString()}, {"size", data.size()}};
}

// ---- ImageBuilder ----

ImageBuilder& ImageBuilder::SetPlatform(Platform platform) {
  platform_ = std::move(platform);
  return *this;
}
ImageBuilder& ImageBuilder::AddLayer(Layer layer, LayerOptions options) {
  layers_.push_back({std::move(layer), std::move(options)});
  return *this;
}
ImageBuilder& ImageBuilder::AddEmptyLayerHistory(std::string created_by) {
  empty_history_.emplace_back(layers_.size(), std::move(created_by));
  return *this;
}
ImageBuilder& ImageBuilder::Cmd(std::vector<std::string> cmd) {
  container_config_["Cmd"] = std::move(cmd);
  return *this;
}
ImageBuilder& ImageBuilder::Entrypoint(std::vector<std::string> entrypoint) {
  container_config_["Entrypoint"] = std::move(entrypoint);
  return *this;
}
ImageBuilder& ImageBuilder::Env(std::string key_equals_value) {
  if (!container_config_.contains("Env")) container_config_["Env"] = ordered_json::array();
  container_config_["Env"].push_back(std::move(key_equals_value));
  return *this;
}
ImageBuilder& ImageBuilder::WorkingDir(std::string dir) {
  container_config_["WorkingDir"] = std::move(dir);
  return *this;
}
ImageBuilder& ImageBuilder::User(std::string user) {
  container_config_["User"] = std::move(user);
  return *this;
}
ImageBuilder& ImageBuilder::Label(std::string key, std::string value) {
  container_config_["Labels"][key] = std::move(value);
  return *this;
}
ImageBuilder& ImageBuilder::Annotation(std::string key, std::string value) {
  annotations_[std::move(key)] = std::move(value);
  return *this;
}
ImageBuilder& ImageBuilder::Created(std::string rfc3339) {
  created_ = std::move(rfc3339);
  return *this;
}
ImageBuilder& ImageBuilder::EditConfig(std::function<void(ordered_json&)> edit) {
  config_edits_.push_back(std::move(edit));
  return *this;
}

Result<BuiltImage> ImageBuilder::Build() const {
  Platform platform = platform_;
  if (platform.architecture.empty()) platform.architecture = HostArchitecture();

  ordered_json diff_ids = ordered_json::array();
  ordered_json history = ordered_json::array();
  auto add_empty_history = [&](size_t position) {
    for (const auto& [at, text] : empty_history_) {
      if (at == position) history.push_back({{"created", created_}, {"created_by", text}, {"empty_layer", true}});
    }
  };
  for (size_t i = 0; i < layers_.size(); ++i) {
    add_empty_history(i);
    const auto& [layer, options] = layers_[i];
    diff_ids.push_back(layer.diff_id.ToString());
    std::string created_by = options.created_by.empty() ? fmt::format("strata test layer {}", i) : options.created_by;
    history.push_back({{"created", created_}, {"created_by", created_by}});
  }
  add_empty_history(layers_.size());

  ordered_json config = {{"created", created_}};
  ordered_json platform_json = PlatformJson(platform);
  for (const auto& [key, value] : platform_json.items()) config[key] = value;
  config["config"] = container_config_;
  config["rootfs"] = {{"type", "layers"}, {"diff_ids", diff_ids}};
  config["history"] = history;
  for (const auto& edit : config_edits_) edit(config);

  bool oci = format_ == ManifestFormat::kOci;
  Blob config_blob =
      Blob::Of(std::string(oci ? media_types::kOciConfig : media_types::kDockerConfig), config.dump());

  BuiltImage image{.format = format_, .platform = platform, .manifest = Blob::Of("", ""), .config = config_blob};
  ordered_json layer_descriptors = ordered_json::array();
  for (const auto& [layer, options] : layers_) {
    std::string media_type = options.media_type.empty() ? LayerMediaType(format_, layer.compression) : options.media_type;
    Blob blob = Blob::Of(std::move(media_type), layer.blob);
    ordered_json descriptor = blob.Descriptor();
    if (!options.urls.empty()) descriptor["urls"] = options.urls;
    if (!options.annotations.empty()) descriptor["annotations"] = options.annotations;
    layer_descriptors.push_back(std::move(descriptor));
    image.layers.push_back(std::move(blob));
    image.diff_ids.push_back(layer.diff_id);
    image.push_layer.push_back(options.push_blob);
  }

  ordered_json manifest = {
      {"schemaVersion", 2},
      {"mediaType", oci ? media_types::kOciManifest : media_types::kDockerManifest},
      {"config", config_blob.Descriptor()},
      {"layers", layer_descriptors},
  };
  if (!annotations_.empty()) manifest["annotations"] = annotations_;
  image.manifest = Blob::Of(std::string(oci ? media_types::kOciManifest : media_types::kDockerManifest),
                            manifest.dump(3));
  return image;
}

// ---- IndexBuilder ----

IndexBuilder& IndexBuilder::Add(BuiltImage image) {
  images_.push_back(std::move(image));
  return *this;
}
IndexBuilder& IndexBuilder::Annotation(std::string key, std::string value) {
  annotations_[std::move(key)] = std::move(value);
  return *this;
}

Result<BuiltIndex> IndexBuilder::Build() const {
  if (images_.empty()) return Fail(ErrorCode::kInvalidArgument, "an index needs at least one image");
  bool oci = format_ == ManifestFormat::kOci;
  ordered_json manifests = ordered_json::array();
  for (const BuiltImage& image : images_) {
    ordered_json descriptor = image.manifest.Descriptor();
    descriptor["platform"] = PlatformJson(image.platform);
    manifests.push_back(std::move(descriptor));
  }
  std::string media_type(oci ? media_types::kOciIndex : media_types::kDockerManifestList);
  ordered_json index = {{"schemaVersion", 2}, {"mediaType", media_type}, {"manifests", manifests}};
  if (!annotations_.empty()) index["annotations"] = annotations_;
  return BuiltIndex{.format = format_, .index = Blob::Of(media_type, index.dump(3)), .images = images_};
}

std::string RandomBytes(size_t size, uint32_t seed) {
  std::mt19937 random(seed);
  std::string bytes(size, '\0');
  for (char& c : bytes) c = static_cast<char>(random() & 0xff);
  return bytes;
}

}  // namespace strata::test_support
