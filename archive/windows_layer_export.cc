// WriteWindowsLayer: see windows_layer.h. The index drives the output (order, headers,
// records); the tree and .strata/streams supply the data.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "archive/apply_paths.h"
#include "archive/windows_layer.h"
#include "archive/windows_layer_index.h"
#include "base/file.h"

namespace strata::archive {
namespace {

namespace fs = std::filesystem;
using windows_index::IndexEntry;

constexpr size_t kChunkSize = size_t{1} << 20;

bool IsWhiteoutName(std::string_view name) {
  size_t slash = name.rfind('/');
  return name.substr(slash == std::string_view::npos ? 0 : slash + 1).starts_with(".wh.");
}

// Opens the data of `entry` read-only below `root` without following symlinks.
Result<UniqueFd> OpenData(int root, const IndexEntry& entry) {
  const std::string& name = entry.header.name;
  STRATA_ASSIGN_OR_RETURN(apply_detail::Components comps,
                          apply_detail::CleanName(name, entry.stream.empty() ? name : entry.stream, "data path"));
  if (comps.empty()) return windows_index::EntryRefuse(name, "index names the layer root as data");
  STRATA_ASSIGN_OR_RETURN(UniqueFd dir, windows_index::OpenDirBeneath(root, comps, comps.size() - 1, false, name));
  int fd = ::openat(dir.get(), comps.back().c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return windows_index::EntryFail(name, errno, "open", apply_detail::Join(comps));
  return UniqueFd(fd);
}

// The decoded index of a complete layer dir opened as `root`.
Result<std::vector<IndexEntry>> LoadIndex(int root, const fs::path& layer_dir) {
  if (::faccessat(root, std::string(windows_index::kLayerChainFile).c_str(), F_OK, AT_SYMLINK_NOFOLLOW) != 0) {
    return Fail(ErrorCode::kFailedPrecondition, "windows layer dir {} is incomplete (no {})", layer_dir.string(),
                windows_index::kLayerChainFile);
  }
  auto index = ReadFile(layer_dir / windows_index::kIndexFile);
  if (!index) {
    if (index.error().code() == ErrorCode::kNotFound) {
      return Fail(ErrorCode::kFailedPrecondition, "{} is not a strata Windows layer dir (no {})", layer_dir.string(),
                  windows_index::kIndexFile);
    }
    return Fail(index.error());
  }
  auto entries = windows_index::DecodeIndex(*index);
  if (!entries) return Fail(entries.error().WithContext(layer_dir.string()));
  return entries;
}

Result<UniqueFd> OpenLayerDir(const fs::path& layer_dir) {
  int fd = ::open(layer_dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoFail(errno, "open layer dir", layer_dir);
  return UniqueFd(fd);
}

class WindowsExporter {
 public:
  WindowsExporter(const fs::path& layer_dir, const ByteSink& sink) : layer_dir_(layer_dir), writer_(sink) {}

  Result<WindowsLayerStats> Run() {
    STRATA_ASSIGN_OR_RETURN(root_, OpenLayerDir(layer_dir_));
    STRATA_ASSIGN_OR_RETURN(std::vector<IndexEntry> entries, LoadIndex(root_.get(), layer_dir_));
    buffer_.resize(kChunkSize);
    for (const IndexEntry& entry : entries) {
      STRATA_RETURN_IF_ERROR(WriteEntry(entry));
      ++stats_.entries;
    }
    STRATA_RETURN_IF_ERROR(writer_.Finish());
    return stats_;
  }

 private:
  Status WriteEntry(const IndexEntry& entry) {
    const TarEntry& header = entry.header;
    const bool whiteout = IsWhiteoutName(header.name);
    if (whiteout) ++stats_.whiteouts;
    if (!entry.stream.empty()) ++stats_.streams;
    if (header.type != TarEntryType::kRegular || (whiteout && entry.stream.empty())) {
      if (header.size != 0) return windows_index::EntryRefuse(header.name, "index gives data to an entry without content");
      return writer_.WriteHeader(header);
    }
    STRATA_ASSIGN_OR_RETURN(UniqueFd data, OpenData(root_.get(), entry));
    struct stat st{};
    if (::fstat(data.get(), &st) != 0) return windows_index::EntryFail(header.name, errno, "stat", header.name);
    if (!S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) != header.size) {
      return Fail(ErrorCode::kFailedPrecondition, "windows layer entry {:?}: file changed (size {} on disk, {} in the index)",
                  header.name, st.st_size, header.size);
    }
    STRATA_RETURN_IF_ERROR(writer_.WriteHeader(header));
    uint64_t left = header.size;
    while (left > 0) {
      ssize_t n = ::read(data.get(), buffer_.data(), std::min<uint64_t>(left, buffer_.size()));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return windows_index::EntryFail(header.name, errno, "read", header.name);
      if (n == 0) {
        return Fail(ErrorCode::kFailedPrecondition, "windows layer entry {:?}: file changed (shorter than {} bytes)",
                    header.name, header.size);
      }
      STRATA_RETURN_IF_ERROR(writer_.WriteData(std::string_view(buffer_.data(), static_cast<size_t>(n))));
      left -= static_cast<uint64_t>(n);
      stats_.bytes += static_cast<uint64_t>(n);
    }
    return {};
  }

  const fs::path& layer_dir_;
  TarWriter writer_;
  UniqueFd root_;
  std::vector<char> buffer_;
  WindowsLayerStats stats_;
};

}  // namespace

Result<std::vector<WindowsLayerEntry>> ReadWindowsLayerEntries(const std::filesystem::path& layer_dir) {
  STRATA_ASSIGN_OR_RETURN(UniqueFd root, OpenLayerDir(layer_dir));
  return LoadIndex(root.get(), layer_dir);
}

Result<WindowsLayerStats> WriteWindowsLayer(const std::filesystem::path& layer_dir, const ByteSink& sink) {
  WindowsExporter exporter(layer_dir, sink);
  return exporter.Run();
}

}  // namespace strata::archive
