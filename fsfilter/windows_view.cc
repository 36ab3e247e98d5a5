#include "fsfilter/windows_view.h"

#include <fcntl.h>
#include <malloc.h>
#include <linux/limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "archive/windows_layer.h"
#include "base/file.h"
#include "fsfilter/case_folding.h"
#include "fsfilter/layer_chain.h"
#include "fsfilter/xattr_source.h"

namespace strata::fsfilter {

namespace {

constexpr std::string_view kFilesPrefix = "Files/";
constexpr std::string_view kStreamDataSuffix = ":$DATA";
constexpr std::string_view kEaRecordPrefix = "MSWINDOWS.xattr.";

// Standard base64 with padding (whitespace not allowed); nullopt when malformed.
std::optional<std::string> DecodeBase64(std::string_view text) {
  auto value_of = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  if (text.size() % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    const bool final_group = i + 4 == text.size();
    int v[4];
    int padding = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = text[i + k];
      if (c == '=' && final_group && k >= 2) {
        v[k] = 0;
        ++padding;
        continue;
      }
      if (padding > 0) return std::nullopt;  // data after '='
      v[k] = value_of(c);
      if (v[k] < 0) return std::nullopt;
    }
    const uint32_t bits = (v[0] << 18) | (v[1] << 12) | (v[2] << 6) | v[3];
    out.push_back(static_cast<char>(bits >> 16));
    if (padding < 2) out.push_back(static_cast<char>((bits >> 8) & 0xFF));
    if (padding < 1) out.push_back(static_cast<char>(bits & 0xFF));
  }
  return out;
}

// The xattrs of Windows layer entries, from each layer's index. Immutable after loading,
// so lookups need no lock.
class WindowsIndexXattrs final : public XattrSource {
 public:
  // Adds the next layer (layer index = number of layers added before).
  Status AddLayer(const std::filesystem::path& layer_dir, const std::vector<archive::WindowsLayerEntry>& entries) {
    Layer layer;
    const int fd = ::open(layer_dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return ErrnoFail(errno, "open windows layer dir", layer_dir);
    layer.dir = UniqueFd(fd);
    std::unordered_set<std::string> links;  // paths of symlinks and junctions
    for (const archive::WindowsLayerEntry& entry : entries) {
      const std::string& name = entry.header.name;
      if (!name.starts_with(kFilesPrefix) && name != "Files") continue;
      std::string path = name.size() > kFilesPrefix.size() ? name.substr(kFilesPrefix.size()) : ".";
      while (path.size() > 1 && path.back() == '/') path.pop_back();
      const size_t slash = path.rfind('/');
      const std::string_view base = std::string_view(path).substr(slash == std::string::npos ? 0 : slash + 1);
      if (base.starts_with(".wh.")) continue;
      const size_t colon = base.find(':');
      if (!entry.stream.empty() && colon != std::string_view::npos) {
        std::string_view stream_name = base.substr(colon + 1);
        if (stream_name.ends_with(kStreamDataSuffix)) stream_name.remove_suffix(kStreamDataSuffix.size());
        const std::string owner = path.substr(0, path.size() - base.size() + colon);
        Item item;
        item.name = Intern(XattrName(kWindowsXattrStreamPrefix, stream_name, links.contains(owner)));
        item.stream = Intern(entry.stream);
        item.stream_size = entry.header.size;
        Add(layer, owner, item);
        continue;
      }
      const bool link = entry.header.type == archive::TarEntryType::kSymlink;
      if (link) links.insert(path);
      for (const auto& [key, value] : entry.header.pax_records) {
        std::string_view xattr;
        std::optional<std::string> decoded;
        if (key == "MSWINDOWS.fileattr") {
          xattr = kWindowsXattrFileAttr;
        } else if (key == "MSWINDOWS.rawsd") {
          xattr = kWindowsXattrRawSd;
          decoded = DecodeBase64(value);
        } else if (key == "MSWINDOWS.sd") {
          xattr = kWindowsXattrSddl;
        } else if (key == "LIBARCHIVE.creationtime") {
          xattr = kWindowsXattrCreationTime;
        } else if (key == "MSWINDOWS.mountpoint") {
          xattr = kWindowsXattrMountPoint;
        } else if (key.starts_with(kEaRecordPrefix)) {
          decoded = DecodeBase64(value);
          Item item;
          item.name = Intern(XattrName(kWindowsXattrEaPrefix, key.substr(kEaRecordPrefix.size()), link));
          item.value = Intern(decoded ? *decoded : value);
          Add(layer, path, item);
          continue;
        } else {
          continue;
        }
        Add(layer, path, Item{Intern(XattrName(xattr, "", link)), Intern(decoded ? *decoded : value), {}, 0});
      }
    }
    layers_.push_back(std::move(layer));
    return {};
  }

  std::vector<std::string> List(int layer, std::string_view path) const override {
    std::vector<std::string> names;
    if (const auto* items = Find(layer, path)) {
      for (const Item& item : *items) names.emplace_back(item.name);
    }
    return names;
  }

  SysResult<std::string> Get(int layer, std::string_view path, std::string_view name) const override {
    const auto* items = Find(layer, path);
    if (items == nullptr) return SysFail(ENODATA);
    for (const Item& item : *items) {
      if (item.name != name) continue;
      if (item.stream.empty()) return std::string(item.value);
      if (item.stream_size > XATTR_SIZE_MAX) return SysFail(E2BIG);
      return ReadStream(layers_[layer].dir.get(), item);
    }
    return SysFail(ENODATA);
  }

 private:
  struct Item {
    std::string_view name;    // interned
    std::string_view value;   // interned; inline values
    std::string_view stream;  // interned; streams: data file relative to the layer dir
    uint64_t stream_size = 0;
  };
  struct Layer {
    UniqueFd dir;
    std::unordered_map<std::string, std::vector<Item>> entries;  // path in Files/ -> xattrs
  };

  // `prefix` + `suffix`, in the trusted.* namespace for a symlink or junction (Linux allows
  // user.* xattrs on regular files and directories only).
  static std::string XattrName(std::string_view prefix, std::string_view suffix, bool link) {
    std::string name = link ? "trusted." + std::string(prefix.substr(prefix.find('.') + 1)) : std::string(prefix);
    name.append(suffix);
    return name;
  }

  // Names, security descriptors and attribute values repeat across entries: keep one copy.
  // (unordered_set elements never move, so the views stay valid.)
  std::string_view Intern(std::string text) { return *strings_.insert(std::move(text)).first; }

  static void Add(Layer& layer, const std::string& path, const Item& item) {
    if (item.name.size() > XATTR_NAME_MAX) return;  // getxattr(2) could not ask for it
    std::vector<Item>& items = layer.entries[path];
    for (Item& existing : items) {
      if (existing.name == item.name) {  // a later record replaces an earlier one
        existing = item;
        return;
      }
    }
    items.push_back(item);
  }

  const std::vector<Item>* Find(int layer, std::string_view path) const {
    if (layer < 0 || layer >= static_cast<int>(layers_.size())) return nullptr;
    const auto& entries = layers_[layer].entries;
    auto it = entries.find(std::string(path));
    return it == entries.end() ? nullptr : &it->second;
  }

  static SysResult<std::string> ReadStream(int layer_dir, const Item& item) {
    SysResult<UniqueFd> fd = OpenBeneath(layer_dir, std::string(item.stream), O_RDONLY);
    if (!fd) return SysFail(EIO);
    std::string data(item.stream_size + 1, '\0');  // one more byte notices growth
    size_t filled = 0;
    while (filled < data.size()) {
      const ssize_t n = ::pread(fd->get(), data.data() + filled, data.size() - filled, static_cast<off_t>(filled));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return SysFail(EIO);
      if (n == 0) break;
      filled += static_cast<size_t>(n);
    }
    if (filled != item.stream_size) return SysFail(EIO);  // changed since the index was written
    data.resize(filled);
    return data;
  }

  std::unordered_set<std::string> strings_;
  std::vector<Layer> layers_;
};

}  // namespace

Result<std::unique_ptr<UnionFilesystem>> OpenWindowsLayerView(const std::vector<std::filesystem::path>& layer_dirs) {
  if (layer_dirs.empty()) return Fail(ErrorCode::kInvalidArgument, "a windows layer view needs at least one layer dir");
  auto xattrs = std::make_unique<WindowsIndexXattrs>();
  LayerChainConfig config;
  for (const std::filesystem::path& dir : layer_dirs) {
    STRATA_ASSIGN_OR_RETURN(std::vector<archive::WindowsLayerEntry> entries, archive::ReadWindowsLayerEntries(dir));
    const std::filesystem::path files = dir / "Files";
    struct stat st{};
    if (::lstat(files.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return Fail(ErrorCode::kFailedPrecondition, "windows layer dir {} has no Files/ directory", dir.string());
    }
    STRATA_RETURN_IF_ERROR(xattrs->AddLayer(dir, entries));
    config.lower_dirs.push_back(files);
  }
  ::malloc_trim(0);  // the decoded indexes were large and short-lived: give their pages back
  CaseFoldingNameFilter::Options names;
  names.cache_directories = true;  // the layers are read-only lowers
  return UnionFilesystem::Open(config, std::make_unique<CaseFoldingNameFilter>(names), std::move(xattrs));
}

}  // namespace strata::fsfilter
