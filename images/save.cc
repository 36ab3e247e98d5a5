#include "images/save.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "archive/decompress.h"
#include "archive/tar_writer.h"
#include "base/file.h"
#include "base/file_copy.h"
#include "base/io.h"
#include "images/image_mount.h"
#include "oci/image_config.h"
#include "oci/index.h"
#include "oci/manifest.h"
#include "oci/media_types.h"
#include "oci/reference.h"

namespace strata::images {

Result<ArchiveFormat> ParseArchiveFormat(std::string_view text) {
  if (text == "oci" || text == "oci-dir") return ArchiveFormat::kOciLayout;
  if (text == "oci-archive") return ArchiveFormat::kOciArchive;
  if (text == "docker-archive" || text == "docker") return ArchiveFormat::kDockerArchive;
  return Fail(ErrorCode::kInvalidArgument, "format {:?}: use oci, oci-archive or docker-archive", text);
}

std::string_view ArchiveFormatName(ArchiveFormat format) {
  switch (format) {
    case ArchiveFormat::kOciLayout: return "oci";
    case ArchiveFormat::kOciArchive: return "oci-archive";
    case ArchiveFormat::kDockerArchive: return "docker-archive";
  }
  return "?";
}

namespace {

constexpr size_t kCopyChunk = 1 << 20;

std::string BlobPath(const Digest& digest) {
  return fmt::format("blobs/{}/{}", digest.algorithm_name(), digest.hex());
}

// Reads a committed blob front to back (for the decompressor).
class BlobByteReader : public ByteReader {
 public:
  explicit BlobByteReader(const store::BlobReader& blob) : blob_(blob) {}
  Result<size_t> Read(std::span<char> buffer) override {
    STRATA_ASSIGN_OR_RETURN(size_t n, blob_.ReadAt(buffer.data(), buffer.size(), offset_));
    offset_ += static_cast<int64_t>(n);
    return n;
  }

 private:
  const store::BlobReader& blob_;
  int64_t offset_ = 0;
};

// Where a layout's files go: a directory tree or a tar stream. Paths are relative
// ("blobs/sha256/<hex>") and built by this file only.
class LayoutWriter {
 public:
  virtual ~LayoutWriter() = default;
  virtual Status AddFile(const std::string& path, std::string_view bytes) = 0;
  // Copies the first `size` bytes of `fd` (read with pread; the offset is not used).
  virtual Status AddFileFromFd(const std::string& path, int fd, int64_t size) = 0;
  virtual Status Finish() = 0;
};

class DirectoryLayoutWriter : public LayoutWriter {
 public:
  explicit DirectoryLayoutWriter(std::filesystem::path root) : root_(std::move(root)) {}

  Status AddFile(const std::string& path, std::string_view bytes) override {
    STRATA_ASSIGN_OR_RETURN(UniqueFd fd, Create(path));
    return WriteAll(fd.get(), bytes);
  }

  Status AddFileFromFd(const std::string& path, int source, int64_t size) override {
    STRATA_ASSIGN_OR_RETURN(UniqueFd fd, Create(path));
    // In the kernel (a reflink where the filesystem can), else read/write.
    if (auto copied = CopyFileBytes(source, 0, fd.get(), 0, static_cast<uint64_t>(size)); !copied) {
      return Fail(copied.error().WithContext((root_ / path).string()));
    }
    return {};
  }

  Status Finish() override { return SyncFilesystemOf(root_); }

 private:
  Result<UniqueFd> Create(const std::string& path) {
    const std::filesystem::path full = root_ / path;
    std::error_code ec;
    std::filesystem::create_directories(full.parent_path(), ec);
    if (ec) return Fail(ErrorCode::kInternal, "create directory {}: {}", full.parent_path().string(), ec.message());
    return OpenFile(full, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  }

  std::filesystem::path root_;
};

class TarLayoutWriter : public LayoutWriter {
 public:
  TarLayoutWriter(int fd, std::filesystem::path path)
      : fd_(fd), path_(std::move(path)), tar_([this](std::string_view bytes) -> Status {
          auto written = WriteAll(fd_, bytes);
          if (!written) return Fail(written.error().WithContext(fmt::format("write {}", path_.string())));
          return {};
        }) {}

  Status AddFile(const std::string& path, std::string_view bytes) override {
    STRATA_RETURN_IF_ERROR(AddParents(path));
    return tar_.WriteEntry(Entry(path, bytes.size()), bytes);
  }

  Status AddFileFromFd(const std::string& path, int source, int64_t size) override {
    STRATA_RETURN_IF_ERROR(AddParents(path));
    STRATA_RETURN_IF_ERROR(tar_.WriteHeader(Entry(path, static_cast<uint64_t>(size))));
    std::vector<char> buffer(kCopyChunk);
    for (int64_t offset = 0; offset < size;) {
      ssize_t n = ::pread(source, buffer.data(), std::min<int64_t>(buffer.size(), size - offset), offset);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return ErrnoFail(n < 0 ? errno : EIO, "read content for entry", path);
      STRATA_RETURN_IF_ERROR(tar_.WriteData(std::string_view(buffer.data(), static_cast<size_t>(n))));
      offset += n;
    }
    return {};
  }

  Status Finish() override {
    STRATA_RETURN_IF_ERROR(tar_.Finish());
    if (::fsync(fd_) != 0) return ErrnoFail(errno, "fsync", path_);
    return {};
  }

 private:
  static archive::TarEntry Entry(const std::string& path, uint64_t size) {
    return archive::TarEntry{.name = path, .mode = 0644, .size = size};
  }
  // Directory entries before the first file beneath them (tar tools and docker expect them).
  Status AddParents(const std::string& path) {
    for (size_t slash = path.find('/'); slash != std::string::npos; slash = path.find('/', slash + 1)) {
      std::string dir = path.substr(0, slash + 1);
      if (!dirs_.insert(dir).second) continue;
      STRATA_RETURN_IF_ERROR(
          tar_.WriteEntry(archive::TarEntry{.name = dir, .type = archive::TarEntryType::kDirectory, .mode = 0755}));
    }
    return {};
  }

  int fd_;
  std::filesystem::path path_;
  archive::TarWriter tar_;
  std::set<std::string> dirs_;
};

std::string RandomSuffix() {
  std::random_device random;
  return fmt::format("{:08x}", random());
}

struct IndexEntry {
  oci::Descriptor descriptor;
  std::string name;
};

class Saver {
 public:
  Saver(store::Store& store, LayoutWriter& writer, const std::filesystem::path& scratch_dir, SaveResult& result)
      : content_(store.content()), writer_(writer), scratch_dir_(scratch_dir), result_(result) {}

  // The blob as stored. NotFound naming it (and `what`) when absent.
  Status WriteStoredBlob(const oci::Descriptor& blob, std::string_view what) {
    if (written_.contains(blob.digest)) return {};
    auto reader = content_.Reader(blob.digest);
    if (!reader) return Fail(reader.error().WithContext(fmt::format("{} {}", what, blob.digest)));
    if (blob.size != (*reader)->size()) {
      return Fail(ErrorCode::kFailedPrecondition, "{} {}: stored size {} differs from descriptor size {}", what,
                  blob.digest, (*reader)->size(), blob.size);
    }
    STRATA_RETURN_IF_ERROR(writer_.AddFileFromFd(BlobPath(blob.digest), (*reader)->fd(), (*reader)->size()));
    Count(blob.digest, blob.size);
    return {};
  }

  Status WriteBytes(const Digest& digest, std::string_view bytes) {
    if (written_.contains(digest)) return {};
    STRATA_RETURN_IF_ERROR(writer_.AddFile(BlobPath(digest), bytes));
    Count(digest, static_cast<int64_t>(bytes.size()));
    return {};
  }

  // The index or manifest `top` and everything below it that the store has.
  Status WriteTree(const oci::Descriptor& top) {
    if (oci::IsIndex(top.media_type)) {
      STRATA_ASSIGN_OR_RETURN(std::string bytes, store::ReadBlob(content_, top.digest));
      STRATA_ASSIGN_OR_RETURN(oci::Index index, oci::Index::Parse(bytes));
      int present = 0;
      for (const oci::Descriptor& child : index.manifests) {
        if (!content_.Info(child.digest)) {
          result_.notes.push_back(fmt::format("index {}: {} {} ({}) is not in the store; left out", top.digest,
                                              child.media_type, child.digest,
                                              child.platform ? child.platform->String() : "no platform"));
          continue;
        }
        ++present;
        STRATA_RETURN_IF_ERROR(WriteTree(child));
      }
      if (present == 0) {
        return Fail(ErrorCode::kNotFound, "index {}: none of its {} manifests is in the store", top.digest,
                    index.manifests.size());
      }
      return WriteBytes(top.digest, bytes);
    }
    if (!oci::IsManifest(top.media_type)) return WriteStoredBlob(top, "blob");  // artifacts: as they are
    STRATA_ASSIGN_OR_RETURN(std::string bytes, store::ReadBlob(content_, top.digest));
    STRATA_ASSIGN_OR_RETURN(oci::Manifest manifest, oci::Manifest::Parse(bytes));
    STRATA_RETURN_IF_ERROR(WriteStoredBlob(manifest.config, "config"));
    for (const oci::Descriptor& layer : manifest.layers) {
      if (oci::IsForeignLayer(layer.media_type) && !content_.Info(layer.digest)) {
        result_.notes.push_back(fmt::format("foreign layer {} is not in the store; left out (its urls stay in "
                                            "manifest {})", layer.digest, top.digest));
        continue;
      }
      STRATA_RETURN_IF_ERROR(WriteStoredBlob(layer, "layer"));
    }
    return WriteBytes(top.digest, bytes);
  }

  // docker-archive: one platform's image with uncompressed layers; returns its manifest.json entry
  // and the descriptor of the manifest written for it.
  Result<std::pair<nlohmann::ordered_json, oci::Descriptor>> WriteDockerImage(const std::string& name,
                                                                             const oci::Descriptor& target,
                                                                             const oci::Platform& platform) {
    STRATA_ASSIGN_OR_RETURN(StoredManifest stored, ResolveStoredManifest(content_, target, platform));
    const oci::Manifest& manifest = stored.manifest;
    STRATA_ASSIGN_OR_RETURN(std::string config_bytes, store::ReadBlob(content_, manifest.config.digest));
    STRATA_ASSIGN_OR_RETURN(oci::ImageConfig config, oci::ImageConfig::Parse(config_bytes));
    if (config.rootfs.diff_ids.size() != manifest.layers.size()) {
      return Fail(ErrorCode::kFailedPrecondition, "image {}: manifest {} has {} layers but config {} has {} diff_ids",
                  name, stored.descriptor.digest, manifest.layers.size(), manifest.config.digest,
                  config.rootfs.diff_ids.size());
    }
    STRATA_RETURN_IF_ERROR(WriteStoredBlob(manifest.config, "config"));
    oci::Manifest rewritten{.media_type = std::string(oci::media_type::kOciManifest),
                            .config = manifest.config};
    rewritten.config.media_type = oci::media_type::kOciConfig;
    bool all_uncompressed = true;
    nlohmann::ordered_json entry;
    entry["Config"] = BlobPath(manifest.config.digest);
    entry["RepoTags"] = nlohmann::json::array();
    if (auto reference = oci::Reference::Parse(name); reference && reference->tag()) {
      entry["RepoTags"].push_back(reference->FamiliarName() + ":" + *reference->tag());
    }
    entry["Layers"] = nlohmann::json::array();
    nlohmann::ordered_json sources = nlohmann::ordered_json::object();
    for (size_t i = 0; i < manifest.layers.size(); ++i) {
      const oci::Descriptor& layer = manifest.layers[i];
      const Digest& diff_id = config.rootfs.diff_ids[i];
      if (!content_.Info(layer.digest)) {
        if (oci::IsForeignLayer(layer.media_type)) {
          return Fail(ErrorCode::kNotFound,
                      "image {}: foreign layer {} is not in the store, and a docker archive must hold every layer: "
                      "pull the image again (pull fetches foreign layers from their urls) or save as oci",
                      name, layer.digest);
        }
        return Fail(ErrorCode::kNotFound, "image {}: layer {} is not in the store", name, layer.digest);
      }
      STRATA_ASSIGN_OR_RETURN(oci::Compression compression, oci::LayerCompression(layer.media_type));
      STRATA_ASSIGN_OR_RETURN(int64_t size, WriteUncompressedLayer(layer, compression, diff_id));
      if (compression != oci::Compression::kNone) all_uncompressed = false;
      rewritten.layers.push_back(
          oci::Descriptor{.media_type = std::string(oci::media_type::kOciLayer), .digest = diff_id, .size = size});
      entry["Layers"].push_back(BlobPath(diff_id));
      if (oci::IsForeignLayer(layer.media_type)) sources[diff_id.ToString()] = nlohmann::ordered_json::parse(layer.Serialize());
    }
    if (!sources.empty()) entry["LayerSources"] = sources;

    oci::Descriptor written{.media_type = stored.descriptor.media_type, .digest = stored.descriptor.digest,
                            .size = stored.descriptor.size};
    if (all_uncompressed) {  // the stored manifest already names what the archive holds
      STRATA_RETURN_IF_ERROR(WriteStoredBlob(written, "manifest"));
    } else {
      const std::string bytes = rewritten.Serialize();
      written = oci::Descriptor{.media_type = std::string(oci::media_type::kOciManifest),
                                .digest = Digest::Of(bytes), .size = static_cast<int64_t>(bytes.size())};
      STRATA_RETURN_IF_ERROR(WriteBytes(written.digest, bytes));
    }
    return std::make_pair(std::move(entry), std::move(written));
  }

 private:
  void Count(const Digest& digest, int64_t size) {
    written_.insert(digest);
    ++result_.blobs;
    result_.bytes += size;
  }

  // Writes blobs/sha256/<diff_id> (once) and returns its size. A compressed layer is
  // decompressed into an unlinked scratch file first (the tar header needs the size).
  Result<int64_t> WriteUncompressedLayer(const oci::Descriptor& layer, oci::Compression compression,
                                         const Digest& diff_id) {
    if (compression == oci::Compression::kNone) {
      if (layer.digest != diff_id) {
        return Fail(ErrorCode::kFailedPrecondition, "uncompressed layer {} is not its config's diff_id {}",
                    layer.digest, diff_id);
      }
      STRATA_RETURN_IF_ERROR(WriteStoredBlob(layer, "layer"));
      return layer.size;
    }
    if (auto it = uncompressed_sizes_.find(diff_id); it != uncompressed_sizes_.end()) return it->second;
    STRATA_ASSIGN_OR_RETURN(std::unique_ptr<store::BlobReader> blob, content_.Reader(layer.digest));
    int raw = ::open(scratch_dir_.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (raw < 0) return ErrnoFail(errno, "create scratch file in", scratch_dir_);
    UniqueFd scratch(raw);
    BlobByteReader input(*blob);
    STRATA_ASSIGN_OR_RETURN(std::unique_ptr<ByteReader> tar, archive::NewDecompressingReader(input, compression));
    Digester digester(diff_id.algorithm());
    std::vector<char> buffer(kCopyChunk);
    int64_t size = 0;
    for (;;) {
      auto n = tar->Read(buffer);
      if (!n) return Fail(n.error().WithContext(fmt::format("decompress layer {}", layer.digest)));
      if (*n == 0) break;
      std::string_view chunk(buffer.data(), *n);
      digester.Update(chunk);
      STRATA_RETURN_IF_ERROR(WriteAll(scratch.get(), chunk));
      size += static_cast<int64_t>(*n);
    }
    const Digest actual = digester.Finish();
    if (actual != diff_id) {
      return Fail(ErrorCode::kFailedPrecondition, "layer {} decompresses to {}, not its config's diff_id {}",
                  layer.digest, actual, diff_id);
    }
    STRATA_RETURN_IF_ERROR(writer_.AddFileFromFd(BlobPath(diff_id), scratch.get(), size));
    Count(diff_id, size);
    uncompressed_sizes_[diff_id] = size;
    return size;
  }

  store::ContentStore& content_;
  LayoutWriter& writer_;
  std::filesystem::path scratch_dir_;
  SaveResult& result_;
  std::set<Digest> written_;
  std::map<Digest, int64_t> uncompressed_sizes_;
};

// index.json: ref.name is the tag, or the full name for every entry when tags collide.
std::string IndexJson(const std::vector<IndexEntry>& entries) {
  std::map<std::string, int> tag_uses;
  std::vector<std::optional<oci::Reference>> references;
  for (const IndexEntry& entry : entries) {
    auto reference = oci::Reference::Parse(entry.name);
    references.push_back(reference ? std::optional(*reference) : std::nullopt);
    if (reference && reference->tag()) ++tag_uses[*reference->tag()];
  }
  bool full_names = false;
  for (const auto& [tag, uses] : tag_uses) full_names |= uses > 1;
  nlohmann::ordered_json index;
  index["schemaVersion"] = 2;
  index["mediaType"] = oci::media_type::kOciIndex;
  index["manifests"] = nlohmann::json::array();
  for (size_t i = 0; i < entries.size(); ++i) {
    oci::Descriptor descriptor = entries[i].descriptor;
    descriptor.annotations[std::string(kContainerdImageNameAnnotation)] = entries[i].name;
    const auto& reference = references[i];
    if (reference && reference->tag()) {
      descriptor.annotations[std::string(kRefNameAnnotation)] =
          full_names ? reference->String() : *reference->tag();
    }
    index["manifests"].push_back(nlohmann::ordered_json::parse(descriptor.Serialize()));
  }
  return index.dump();
}

// Removes the temporary output unless released.
class ScratchOutput {
 public:
  explicit ScratchOutput(std::filesystem::path path) : path_(std::move(path)) {}
  ~ScratchOutput() {
    if (path_.empty()) return;
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  void Release() { path_.clear(); }

 private:
  std::filesystem::path path_;
};

}  // namespace

Result<SaveResult> SaveImages(store::Store& store, const std::vector<std::string>& image_names,
                              const std::filesystem::path& path, const SaveOptions& options) {
  if (image_names.empty()) return Fail(ErrorCode::kInvalidArgument, "save: no image named");
  std::error_code ec;
  if (std::filesystem::symlink_status(path, ec).type() != std::filesystem::file_type::not_found) {
    return Fail(ErrorCode::kAlreadyExists, "save: {} exists; choose a new path", path.string());
  }
  std::vector<store::Image> images;
  for (const std::string& name : image_names) {
    auto image = store.images().Get(name);
    if (!image) return Fail(image.error().WithContext("save"));
    images.push_back(std::move(*image));
  }

  const std::filesystem::path absolute = std::filesystem::absolute(path);
  const std::filesystem::path parent = absolute.parent_path();
  const std::filesystem::path scratch =
      parent / fmt::format(".{}.strata-save-{}", absolute.filename().string(), RandomSuffix());
  ScratchOutput cleanup(scratch);
  std::unique_ptr<LayoutWriter> writer;
  UniqueFd tar_fd;
  if (options.format == ArchiveFormat::kOciLayout) {
    if (::mkdir(scratch.c_str(), 0755) != 0) return ErrnoFail(errno, "mkdir", scratch);
    writer = std::make_unique<DirectoryLayoutWriter>(scratch);
  } else {
    STRATA_ASSIGN_OR_RETURN(tar_fd, OpenFile(scratch, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    writer = std::make_unique<TarLayoutWriter>(tar_fd.get(), absolute);
  }

  SaveResult result;
  Saver saver(store, *writer, parent, result);
  STRATA_RETURN_IF_ERROR(writer->AddFile("oci-layout", kOciLayoutFile));
  std::vector<IndexEntry> entries;
  nlohmann::ordered_json docker_manifest = nlohmann::json::array();
  nlohmann::ordered_json repositories = nlohmann::json::object();
  for (const store::Image& image : images) {
    if (options.format == ArchiveFormat::kDockerArchive) {
      auto written = saver.WriteDockerImage(image.name, image.target, options.platform);
      if (!written) return Fail(written.error().WithContext(fmt::format("save {}", image.name)));
      auto& [entry, descriptor] = *written;
      if (auto reference = oci::Reference::Parse(image.name); reference && reference->tag()) {
        repositories[reference->FamiliarName()][*reference->tag()] =
            descriptor.digest.hex();  // legacy file; docker and skopeo read manifest.json
      }
      docker_manifest.push_back(std::move(entry));
      entries.push_back({descriptor, image.name});
      result.images.push_back({image.name, descriptor});
    } else {
      auto written = saver.WriteTree(image.target);
      if (!written) return Fail(written.error().WithContext(fmt::format("save {}", image.name)));
      oci::Descriptor descriptor{.media_type = image.target.media_type, .digest = image.target.digest,
                                 .size = image.target.size};
      entries.push_back({descriptor, image.name});
      result.images.push_back({image.name, descriptor});
    }
  }
  STRATA_RETURN_IF_ERROR(writer->AddFile("index.json", IndexJson(entries)));
  if (options.format == ArchiveFormat::kDockerArchive) {
    STRATA_RETURN_IF_ERROR(writer->AddFile("manifest.json", docker_manifest.dump()));
    STRATA_RETURN_IF_ERROR(writer->AddFile("repositories", repositories.dump()));
  }
  STRATA_RETURN_IF_ERROR(writer->Finish());
  tar_fd.reset();
  if (::rename(scratch.c_str(), absolute.c_str()) != 0) return ErrnoFail(errno, "rename output to", absolute);
  cleanup.Release();
  STRATA_RETURN_IF_ERROR(FsyncDir(parent));
  return result;
}

}  // namespace strata::images
