#include "images/load.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <variant>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "archive/decompress.h"
#include "archive/tar_reader.h"
#include "base/file.h"
#include "base/io.h"
#include "images/pull.h"
#include "oci/image_config.h"
#include "oci/index.h"
#include "oci/manifest.h"
#include "oci/media_types.h"
#include "oci/reference.h"

namespace strata::images {
namespace {

constexpr int64_t kSmallFileLimit = 1 << 20;          // kept in memory below this size
constexpr int64_t kSmallFilesTotalLimit = 256 << 20;  // and no more than this in all
constexpr int64_t kDocumentLimit = 16 << 20;          // index.json, manifest.json, manifests, configs
constexpr size_t kChunk = 1 << 20;

struct BlobRef {
  Digest digest;
  int64_t size = 0;
};

// The digest a "blobs/<alg>/<hex>" path names, if it is one.
std::optional<Digest> DigestOfBlobPath(const std::string& path) {
  if (!path.starts_with("blobs/")) return std::nullopt;
  const std::string rest = path.substr(6);
  const size_t slash = rest.find('/');
  if (slash == std::string::npos) return std::nullopt;
  auto digest = Digest::Parse(rest.substr(0, slash) + ":" + rest.substr(slash + 1));
  return digest ? std::optional(*digest) : std::nullopt;
}

std::string BlobPath(const Digest& digest) {
  return fmt::format("blobs/{}/{}", digest.algorithm_name(), digest.hex());
}

// "./a//b" -> "a/b"; "" for names that climb out ("../x").
std::string CleanPath(std::string_view name) {
  std::string clean = std::filesystem::path(std::string(name)).lexically_normal().generic_string();
  while (clean.starts_with("/")) clean.erase(0, 1);
  if (clean.starts_with("./")) clean.erase(0, 2);
  if (clean.ends_with("/")) clean.pop_back();
  if (clean == "." || clean == ".." || clean.starts_with("../")) return "";
  return clean;
}

// Streams bytes into the content store through one ingest; commits when verified.
class BlobCommitter {
 public:
  BlobCommitter(store::Store& store, std::string lease, LoadResult& result)
      : store_(store), lease_(std::move(lease)), result_(result) {}

  // Writes everything `read` yields (it fills the buffer and returns the count, 0 at the
  // end) as one blob of `size` bytes; verified against `expected` when given.
  Result<BlobRef> Commit(int64_t size, const std::optional<Digest>& expected,
                         const std::function<Result<size_t>(std::span<char>)>& read, std::string_view what) {
    if (expected && store_.content().Info(*expected)) {  // skip the bytes; trust the store
      STRATA_RETURN_IF_ERROR(Hold(*expected));
      ++result_.blobs_present;
      return BlobRef{*expected, size};
    }
    STRATA_ASSIGN_OR_RETURN(std::unique_ptr<store::ContentWriter> writer,
                            store_.content().Writer(fmt::format("load-{}-{}", session_, ++count_),
                                                    {.total = size, .expected = expected, .lease = lease_}));
    Digester digester(expected ? expected->algorithm() : DigestAlgorithm::kSha256);
    std::vector<char> buffer(kChunk);
    int64_t written = 0;
    for (;;) {
      auto n = read(buffer);
      if (!n) return Fail(n.error().WithContext(std::string(what)));
      if (*n == 0) break;
      std::string_view chunk(buffer.data(), *n);
      if (!expected) digester.Update(chunk);
      STRATA_RETURN_IF_ERROR(writer->Write(chunk));
      written += static_cast<int64_t>(*n);
    }
    if (written != size) {
      return Fail(ErrorCode::kFailedPrecondition, "{}: {} bytes where {} were announced", what, written, size);
    }
    const Digest digest = expected ? *expected : digester.Finish();
    auto committed = writer->Commit(size, digest);
    if (!committed && committed.error().code() == ErrorCode::kAlreadyExists) {
      STRATA_RETURN_IF_ERROR(Hold(digest));
      ++result_.blobs_present;
      return BlobRef{digest, size};
    }
    if (!committed) return Fail(committed.error().WithContext(std::string(what)));
    ++result_.blobs_written;
    return BlobRef{digest, size};
  }

  Result<BlobRef> CommitBytes(std::string_view bytes, const std::optional<Digest>& expected, std::string_view what) {
    const Digest actual = Digest::Of(bytes, expected ? expected->algorithm() : DigestAlgorithm::kSha256);
    if (expected && actual != *expected) {
      return Fail(ErrorCode::kFailedPrecondition, "{}: content is {}, not {}", what, actual, *expected);
    }
    StringViewReader reader(bytes);
    return Commit(static_cast<int64_t>(bytes.size()), actual, [&](std::span<char> b) { return reader.Read(b); },
                  what);
  }

  const std::string& lease() const { return lease_; }

 private:
  Status Hold(const Digest& digest) { return store_.leases().AddResource(lease_, {"content", digest.ToString()}); }

  store::Store& store_;
  std::string lease_;
  LoadResult& result_;
  std::string session_ = fmt::format("{:08x}", std::random_device{}());
  int count_ = 0;
};

// What an archive holds, by cleaned path.
class ArchiveContents {
 public:
  virtual ~ArchiveContents() = default;
  virtual bool Has(const std::string& path) = 0;
  // A document (JSON) at `path`; NotFound naming it when absent.
  virtual Result<std::string> Document(const std::string& path) = 0;
  // The file at `path` committed to the store, verified against `expected` when given.
  virtual Result<BlobRef> Blob(const std::string& path, const std::optional<Digest>& expected) = 0;
};

// An OCI layout (or unpacked docker archive) directory: files are read on demand.
class DirectoryContents : public ArchiveContents {
 public:
  DirectoryContents(std::filesystem::path root, BlobCommitter& committer)
      : root_(std::move(root)), committer_(committer) {}

  bool Has(const std::string& path) override {
    struct stat st;
    return !path.empty() && ::lstat((root_ / path).c_str(), &st) == 0 && S_ISREG(st.st_mode);
  }

  Result<std::string> Document(const std::string& path) override {
    STRATA_ASSIGN_OR_RETURN(UniqueFd fd, Open(path));
    FdReader reader(fd.get());
    auto bytes = ReadAll(reader, kDocumentLimit);
    if (!bytes) return Fail(bytes.error().WithContext((root_ / path).string()));
    return bytes;
  }

  Result<BlobRef> Blob(const std::string& path, const std::optional<Digest>& expected) override {
    STRATA_ASSIGN_OR_RETURN(UniqueFd fd, Open(path));
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) return ErrnoFail(errno, "stat", root_ / path);
    FdReader reader(fd.get());
    return committer_.Commit(st.st_size, expected, [&](std::span<char> b) { return reader.Read(b); },
                             (root_ / path).string());
  }

 private:
  Result<UniqueFd> Open(const std::string& path) {
    if (path.empty()) return Fail(ErrorCode::kInvalidArgument, "empty path in {}", root_.string());
    STRATA_ASSIGN_OR_RETURN(std::filesystem::path full, SafeJoin(root_, path));
    auto fd = OpenFile(full, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (!fd && fd.error().code() == ErrorCode::kNotFound) {
      return Fail(ErrorCode::kNotFound, "{}: no such file in {}", path, root_.string());
    }
    return fd;
  }

  std::filesystem::path root_;
  BlobCommitter& committer_;
};

// A tar read in one pass: small files are kept in memory; larger ones are committed to the
// store as they stream by (under the digest their blobs/ path names, else the computed one).
class TarContents : public ArchiveContents {
 public:
  static Result<std::unique_ptr<TarContents>> Read(const std::filesystem::path& path, BlobCommitter& committer) {
    auto contents = std::unique_ptr<TarContents>(new TarContents(path, committer));
    STRATA_RETURN_IF_ERROR(contents->ReadAllEntries());
    return contents;
  }

  bool Has(const std::string& path) override { return Find(path) != nullptr; }

  Result<std::string> Document(const std::string& path) override {
    const Entry* entry = Find(path);
    if (entry == nullptr) return Fail(ErrorCode::kNotFound, "{}: no such entry in {}", path, path_.string());
    if (const auto* bytes = std::get_if<std::string>(entry)) return *bytes;
    const BlobRef& blob = std::get<BlobRef>(*entry);
    auto bytes = store::ReadBlob(committer_store(), blob.digest, kDocumentLimit);
    if (!bytes) return Fail(bytes.error().WithContext(fmt::format("{} entry {}", path_.string(), path)));
    return bytes;
  }

  Result<BlobRef> Blob(const std::string& path, const std::optional<Digest>& expected) override {
    const Entry* entry = Find(path);
    const std::string what = fmt::format("{} entry {}", path_.string(), path);
    if (entry == nullptr) return Fail(ErrorCode::kNotFound, "{}: no such entry", what);
    if (const auto* bytes = std::get_if<std::string>(entry)) return committer_.CommitBytes(*bytes, expected, what);
    const BlobRef& blob = std::get<BlobRef>(*entry);
    if (expected && blob.digest != *expected) {
      return Fail(ErrorCode::kFailedPrecondition, "{}: content is {}, not {}", what, blob.digest, *expected);
    }
    return blob;
  }

 private:
  using Entry = std::variant<std::string, BlobRef>;
  TarContents(std::filesystem::path path, BlobCommitter& committer) : path_(std::move(path)), committer_(committer) {}

  const store::ContentStore& committer_store() const { return *content_; }

  const Entry* Find(std::string path) const {
    for (int hops = 0; hops < 16; ++hops) {
      if (auto it = files_.find(path); it != files_.end()) return &it->second;
      auto link = links_.find(path);
      if (link == links_.end()) return nullptr;
      path = link->second;
    }
    return nullptr;
  }

  Status ReadAllEntries() {
    STRATA_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path_, O_RDONLY | O_CLOEXEC));
    FdReader file(fd.get());
    STRATA_ASSIGN_OR_RETURN(std::unique_ptr<ByteReader> input, archive::NewAutoDecompressingReader(file));
    archive::TarReader tar(*input);
    int64_t small_total = 0;
    for (;;) {
      auto next = tar.Next();
      if (!next) return Fail(next.error().WithContext(fmt::format("read {}", path_.string())));
      if (!*next) break;
      const archive::TarEntry& entry = **next;
      const std::string name = CleanPath(entry.name);
      if (name.empty()) continue;  // "./" itself, or a name climbing out: never referenced by a valid archive
      const std::string what = fmt::format("{} entry {}", path_.string(), entry.name);
      if (entry.type == archive::TarEntryType::kSymlink) {
        const std::string dir = std::filesystem::path(name).parent_path().generic_string();
        links_[name] = CleanPath(entry.linkname.starts_with("/") ? entry.linkname
                                                                   : (dir.empty() ? "" : dir + "/") + entry.linkname);
        continue;
      }
      if (entry.type == archive::TarEntryType::kHardLink) {
        links_[name] = CleanPath(entry.linkname);
        continue;
      }
      if (entry.type != archive::TarEntryType::kRegular) continue;
      const int64_t size = static_cast<int64_t>(entry.size);
      const std::optional<Digest> named = DigestOfBlobPath(name);
      auto read = [&](std::span<char> buffer) { return tar.ReadContent(buffer); };
      if (size < kSmallFileLimit && (small_total += size) <= kSmallFilesTotalLimit) {
        std::string bytes(static_cast<size_t>(size), '\0');
        for (size_t filled = 0; filled < bytes.size();) {
          auto n = tar.ReadContent(std::span<char>(bytes.data() + filled, bytes.size() - filled));
          if (!n) return Fail(n.error().WithContext(what));
          if (*n == 0) return Fail(ErrorCode::kInvalidArgument, "{}: truncated", what);
          filled += *n;
        }
        files_[name] = std::move(bytes);
        continue;
      }
      auto blob = committer_.Commit(size, named, read, what);
      if (!blob) return Fail(blob.error());
      files_[name] = *blob;
    }
    return {};
  }

 public:
  void set_content(const store::ContentStore* content) { content_ = content; }

 private:
  std::filesystem::path path_;
  BlobCommitter& committer_;
  const store::ContentStore* content_ = nullptr;
  std::map<std::string, Entry> files_;
  std::map<std::string, std::string> links_;
};

Result<nlohmann::json> ParseJson(const std::string& bytes, std::string_view what) {
  auto json = nlohmann::json::parse(bytes, nullptr, false);
  if (json.is_discarded()) return Fail(ErrorCode::kInvalidArgument, "{}: not valid JSON", what);
  return json;
}

class Loader {
 public:
  Loader(store::Store& store, ArchiveContents& contents, BlobCommitter& committer, std::string repository,
         LoadResult& result)
      : store_(store), contents_(contents), committer_(committer), repository_(std::move(repository)),
        result_(result) {}

  // index.json: every entry, recorded under its name.
  Status LoadOciIndex() {
    STRATA_ASSIGN_OR_RETURN(std::string bytes, contents_.Document("index.json"));
    STRATA_ASSIGN_OR_RETURN(oci::Index index, oci::Index::Parse(bytes));
    for (size_t i = 0; i < index.manifests.size(); ++i) {
      const oci::Descriptor& entry = index.manifests[i];
      auto loaded = LoadTree(entry);
      if (!loaded) return Fail(loaded.error().WithContext(fmt::format("index.json manifests[{}]", i)));
      STRATA_ASSIGN_OR_RETURN(std::string name, EntryName(entry));
      Record(name, entry);
    }
    return {};
  }

  // manifest.json: each image by its config; an OCI manifest from index.json for the same
  // config is used when the archive has one (Docker 25+), else one is written.
  Status LoadDockerManifest() {
    STRATA_ASSIGN_OR_RETURN(std::string bytes, contents_.Document("manifest.json"));
    STRATA_ASSIGN_OR_RETURN(nlohmann::json entries, ParseJson(bytes, "manifest.json"));
    if (!entries.is_array()) return Fail(ErrorCode::kInvalidArgument, "manifest.json: not an array");
    std::map<Digest, oci::Descriptor> oci_manifests = OciManifestsByConfig();
    for (size_t i = 0; i < entries.size(); ++i) {
      auto loaded = LoadDockerImage(entries[i], oci_manifests);
      if (!loaded) return Fail(loaded.error().WithContext(fmt::format("manifest.json [{}]", i)));
    }
    return {};
  }

  Status RecordAll() {
    for (const LoadedImage& image : result_.images) {
      STRATA_RETURN_IF_ERROR(store_.images().Put(store::Image{.name = image.name, .target = image.target}));
    }
    return {};
  }

 private:
  void Record(const std::string& name, const oci::Descriptor& target) {
    oci::Descriptor plain{.media_type = target.media_type, .digest = target.digest, .size = target.size};
    result_.images.push_back({name, plain});
  }

  Result<std::string> Verified(const oci::Descriptor& descriptor) {
    const std::string path = BlobPath(descriptor.digest);
    STRATA_ASSIGN_OR_RETURN(std::string bytes, contents_.Document(path));
    if (Digest::Of(bytes, descriptor.digest.algorithm()) != descriptor.digest) {
      return Fail(ErrorCode::kFailedPrecondition, "{}: content does not match its digest", path);
    }
    if (static_cast<int64_t>(bytes.size()) != descriptor.size) {
      return Fail(ErrorCode::kFailedPrecondition, "{}: {} bytes, descriptor says {}", path, bytes.size(),
                  descriptor.size);
    }
    return bytes;
  }

  Status CommitBlob(const oci::Descriptor& blob) {
    STRATA_ASSIGN_OR_RETURN(BlobRef ref, contents_.Blob(BlobPath(blob.digest), blob.digest));
    if (ref.size != blob.size) {
      return Fail(ErrorCode::kFailedPrecondition, "{}: {} bytes, descriptor says {}", BlobPath(blob.digest),
                  ref.size, blob.size);
    }
    return {};
  }

  Status LoadTree(const oci::Descriptor& top) {
    if (oci::IsIndex(top.media_type)) {
      STRATA_ASSIGN_OR_RETURN(std::string bytes, Verified(top));
      STRATA_ASSIGN_OR_RETURN(oci::Index index, oci::Index::Parse(bytes));
      int present = 0;
      for (const oci::Descriptor& child : index.manifests) {
        if (!contents_.Has(BlobPath(child.digest))) {
          result_.notes.push_back(fmt::format("index {}: {} ({}) is not in the archive", top.digest, child.digest,
                                              child.platform ? child.platform->String() : "no platform"));
          continue;
        }
        ++present;
        STRATA_RETURN_IF_ERROR(LoadTree(child));
      }
      if (present == 0) {
        return Fail(ErrorCode::kNotFound, "index {}: none of its {} manifests is in the archive", top.digest,
                    index.manifests.size());
      }
      STRATA_ASSIGN_OR_RETURN(BlobRef ref, committer_.CommitBytes(bytes, top.digest, BlobPath(top.digest)));
      return Label(ref.digest, bytes, IndexGcLabels(index.manifests));
    }
    if (!oci::IsManifest(top.media_type)) return CommitBlob(top);
    STRATA_ASSIGN_OR_RETURN(std::string bytes, Verified(top));
    STRATA_ASSIGN_OR_RETURN(oci::Manifest manifest, oci::Manifest::Parse(bytes));
    STRATA_RETURN_IF_ERROR(CommitBlob(manifest.config));
    for (const oci::Descriptor& layer : manifest.layers) {
      if (oci::IsForeignLayer(layer.media_type) && !contents_.Has(BlobPath(layer.digest))) {
        result_.notes.push_back(fmt::format("foreign layer {} is not in the archive (pull fetches it from its urls)",
                                            layer.digest));
        continue;
      }
      STRATA_RETURN_IF_ERROR(CommitBlob(layer));
    }
    STRATA_ASSIGN_OR_RETURN(BlobRef ref, committer_.CommitBytes(bytes, top.digest, BlobPath(top.digest)));
    return Label(ref.digest, bytes, ManifestGcLabels(manifest.config, manifest.layers));
  }

  // Sets the gc.ref labels (merged into an existing blob's).
  Status Label(const Digest& digest, std::string_view bytes, const store::Labels& labels) {
    auto written = store::WriteBlob(store_.content(), &store_.leases(), digest, bytes, labels, committer_.lease());
    if (!written) return Fail(written.error());
    return {};
  }

  std::map<Digest, oci::Descriptor> OciManifestsByConfig() {
    std::map<Digest, oci::Descriptor> by_config;
    if (!contents_.Has("index.json")) return by_config;
    auto bytes = contents_.Document("index.json");
    if (!bytes) return by_config;
    auto index = oci::Index::Parse(*bytes);
    if (!index) return by_config;
    for (const oci::Descriptor& entry : index->manifests) {
      if (!oci::IsManifest(entry.media_type) || !contents_.Has(BlobPath(entry.digest))) continue;
      auto manifest_bytes = Verified(entry);
      if (!manifest_bytes) continue;
      auto manifest = oci::Manifest::Parse(*manifest_bytes);
      if (manifest) by_config.emplace(manifest->config.digest, entry);
    }
    return by_config;
  }

  Status LoadDockerImage(const nlohmann::json& entry, const std::map<Digest, oci::Descriptor>& oci_manifests) {
    if (!entry.is_object() || !entry.contains("Config") || !entry["Config"].is_string() ||
        !entry.contains("Layers") || !entry["Layers"].is_array()) {
      return Fail(ErrorCode::kInvalidArgument, "needs Config (a path) and Layers (an array of paths)");
    }
    const std::string config_path = CleanPath(entry["Config"].get<std::string>());
    STRATA_ASSIGN_OR_RETURN(std::string config_bytes, contents_.Document(config_path));
    const Digest config_digest = Digest::Of(config_bytes);
    auto config = oci::ImageConfig::Parse(config_bytes);
    if (!config) return Fail(config.error().WithContext(config_path));
    const auto& layer_paths = entry["Layers"];
    if (layer_paths.size() != config->rootfs.diff_ids.size()) {
      return Fail(ErrorCode::kInvalidArgument, "{} layers listed but config {} has {} diff_ids", layer_paths.size(),
                  config_path, config->rootfs.diff_ids.size());
    }

    oci::Descriptor target;
    if (auto it = oci_manifests.find(config_digest); it != oci_manifests.end()) {
      STRATA_RETURN_IF_ERROR(LoadTree(it->second));  // Docker 25+: the archive's own manifest
      target = it->second;
    } else {
      STRATA_ASSIGN_OR_RETURN(target, WriteDockerManifest(entry, config_path, config_bytes, *config));
    }
    std::vector<std::string> names;
    if (entry.contains("RepoTags") && entry["RepoTags"].is_array()) {
      for (const auto& tag : entry["RepoTags"]) {
        if (!tag.is_string()) continue;
        auto reference = oci::Reference::Parse(tag.get<std::string>());
        if (!reference) return Fail(reference.error().WithContext("RepoTags"));
        names.push_back(reference->String());
      }
    }
    if (names.empty()) names.push_back(fmt::format("{}@{}", repository_, target.digest));
    for (const std::string& name : names) Record(name, target);
    return {};
  }

  // The old form: a Docker schema 2 manifest naming the uncompressed layers as stored.
  Result<oci::Descriptor> WriteDockerManifest(const nlohmann::json& entry, const std::string& config_path,
                                              const std::string& config_bytes, const oci::ImageConfig& config) {
    STRATA_ASSIGN_OR_RETURN(BlobRef config_ref, committer_.CommitBytes(config_bytes, std::nullopt, config_path));
    oci::Manifest manifest{.media_type = std::string(oci::media_type::kDockerManifest),
                           .config = {.media_type = std::string(oci::media_type::kDockerConfig),
                                      .digest = config_ref.digest, .size = config_ref.size}};
    const nlohmann::json* sources =
        entry.contains("LayerSources") && entry["LayerSources"].is_object() ? &entry["LayerSources"] : nullptr;
    for (size_t i = 0; i < entry["Layers"].size(); ++i) {
      if (!entry["Layers"][i].is_string()) return Fail(ErrorCode::kInvalidArgument, "Layers[{}]: not a path", i);
      const std::string path = CleanPath(entry["Layers"][i].get<std::string>());
      const Digest& diff_id = config.rootfs.diff_ids[i];
      STRATA_ASSIGN_OR_RETURN(BlobRef layer, contents_.Blob(path, std::nullopt));
      if (layer.digest != diff_id) {
        return Fail(ErrorCode::kFailedPrecondition,
                    "layer {} is {}, not the config's diff_id {} (docker archives hold uncompressed layers)", path,
                    layer.digest, diff_id);
      }
      bool foreign = false;
      if (sources && sources->contains(diff_id.ToString())) {
        const auto& source = (*sources)[diff_id.ToString()];
        foreign = source.is_object() && source.contains("mediaType") && source["mediaType"].is_string() &&
                  oci::IsForeignLayer(source["mediaType"].get<std::string>());
      }
      manifest.layers.push_back({.media_type = std::string(foreign ? oci::media_type::kDockerForeignLayer
                                                                   : oci::media_type::kDockerLayer),
                                 .digest = layer.digest, .size = layer.size});
    }
    const std::string bytes = manifest.Serialize();
    oci::Descriptor descriptor{.media_type = std::string(oci::media_type::kDockerManifest),
                               .digest = Digest::Of(bytes), .size = static_cast<int64_t>(bytes.size())};
    STRATA_RETURN_IF_ERROR(committer_.CommitBytes(bytes, descriptor.digest, "manifest written for " + config_path));
    STRATA_RETURN_IF_ERROR(Label(descriptor.digest, bytes, ManifestGcLabels(manifest.config, manifest.layers)));
    return descriptor;
  }

  Result<std::string> EntryName(const oci::Descriptor& entry) {
    if (auto it = entry.annotations.find(std::string(kContainerdImageNameAnnotation)); it != entry.annotations.end()) {
      if (auto reference = oci::Reference::Parse(it->second)) return reference->String();
    }
    auto it = entry.annotations.find(std::string(kRefNameAnnotation));
    if (it == entry.annotations.end()) return fmt::format("{}@{}", repository_, entry.digest);
    const std::string& ref_name = it->second;
    if (ref_name.find_first_of("/:@") != std::string::npos) {
      auto reference = oci::Reference::Parse(ref_name);
      if (!reference) return Fail(reference.error().WithContext(std::string(kRefNameAnnotation)));
      return reference->String();
    }
    STRATA_ASSIGN_OR_RETURN(oci::Reference repository, oci::Reference::Parse(repository_));
    auto tagged = repository.WithTag(ref_name);
    if (!tagged) return Fail(tagged.error().WithContext(std::string(kRefNameAnnotation)));
    return tagged->String();
  }

  store::Store& store_;
  ArchiveContents& contents_;
  BlobCommitter& committer_;
  std::string repository_;
  LoadResult& result_;
};

// "localhost/<stem>" from "/x/My Image.tar": lower case, runs of other characters as '-'.
std::string DefaultRepository(const std::filesystem::path& path) {
  std::string stem = std::filesystem::absolute(path).lexically_normal().filename().string();
  if (stem.empty()) stem = std::filesystem::absolute(path).lexically_normal().parent_path().filename().string();
  for (std::string_view ext : {".tar.gz", ".tgz", ".tar.zst", ".tar"}) {
    if (stem.ends_with(ext)) stem.resize(stem.size() - ext.size());
  }
  std::string name;
  for (char c : stem) {
    const char lower = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (std::isalnum(static_cast<unsigned char>(lower))) {
      name += lower;
    } else if (!name.empty() && name.back() != '-') {
      name += '-';
    }
  }
  while (!name.empty() && name.back() == '-') name.pop_back();
  return "localhost/" + (name.empty() ? std::string("image") : name);
}

}  // namespace

Result<LoadResult> LoadImages(store::Store& store, const std::filesystem::path& path, const LoadOptions& options) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || status.type() == std::filesystem::file_type::not_found) {
    return Fail(ErrorCode::kNotFound, "load: {}: no such file or directory", path.string());
  }
  const std::string repository = options.repository.empty() ? DefaultRepository(path) : options.repository;
  if (auto parsed = oci::Reference::Parse(repository); !parsed) return Fail(parsed.error().WithContext("--repository"));

  STRATA_ASSIGN_OR_RETURN(store::ScopedLease lease,
                          store::ScopedLease::Create(store.leases(), {{"strata.io/load", path.string()}},
                                                     std::chrono::hours(24)));
  LoadResult result;
  BlobCommitter committer(store, lease.id(), result);
  std::unique_ptr<ArchiveContents> contents;
  bool is_tar = false;
  if (std::filesystem::is_directory(status)) {
    contents = std::make_unique<DirectoryContents>(path, committer);
  } else {
    auto tar = TarContents::Read(path, committer);
    if (!tar) return Fail(tar.error().WithContext("load"));
    (*tar)->set_content(&store.content());
    contents = std::move(*tar);
    is_tar = true;
  }

  Loader loader(store, *contents, committer, repository, result);
  Status loaded;
  if (contents->Has("manifest.json")) {
    result.format = ArchiveFormat::kDockerArchive;
    loaded = loader.LoadDockerManifest();
  } else if (contents->Has("index.json")) {
    result.format = is_tar ? ArchiveFormat::kOciArchive : ArchiveFormat::kOciLayout;
    if (contents->Has("oci-layout")) {
      STRATA_ASSIGN_OR_RETURN(std::string layout, contents->Document("oci-layout"));
      auto json = nlohmann::json::parse(layout, nullptr, false);
      if (json.is_discarded() || !json.is_object() || !json.contains("imageLayoutVersion") ||
          !json["imageLayoutVersion"].is_string() || !json["imageLayoutVersion"].get<std::string>().starts_with("1.")) {
        return Fail(ErrorCode::kInvalidArgument, "load {}: oci-layout: unsupported or malformed: {}", path.string(),
                    layout.substr(0, 200));
      }
    }
    loaded = loader.LoadOciIndex();
  } else {
    return Fail(ErrorCode::kInvalidArgument,
                "load {}: neither manifest.json (docker archive) nor index.json (OCI layout) found", path.string());
  }
  if (!loaded) return Fail(loaded.error().WithContext(fmt::format("load {}", path.string())));
  if (result.images.empty()) return Fail(ErrorCode::kNotFound, "load {}: the archive names no image", path.string());
  STRATA_RETURN_IF_ERROR(loader.RecordAll());
  return result;
}

}  // namespace strata::images
