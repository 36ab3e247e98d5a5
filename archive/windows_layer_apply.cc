// ApplyWindowsLayer: see windows_layer.h. Every write is relative to a directory fd reached
// from the layer root without following symlinks (openat2 RESOLVE_BENEATH, as ApplyLayer).
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "archive/apply_paths.h"
#include "archive/tar_reader.h"
#include "archive/windows_layer.h"
#include "archive/windows_layer_index.h"
#include "base/file.h"

namespace strata::archive {
namespace {

namespace fs = std::filesystem;
using apply_detail::Components;
using apply_detail::Join;
using windows_index::IndexEntry;
using windows_index::OpenDirBeneath;

constexpr size_t kCopyBuffer = size_t{1} << 20;
constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kDataSuffix = ":$DATA";
constexpr std::string_view kRequiredHives[] = {"DEFAULT", "SAM", "SECURITY", "SOFTWARE", "SYSTEM"};

std::unexpected<Error> Refuse(std::string_view name, std::string_view reason) {
  return windows_index::EntryRefuse(name, reason);
}
std::unexpected<Error> SysFail(std::string_view name, int errnum, std::string_view op, std::string_view path) {
  return windows_index::EntryFail(name, errnum, op, path);
}

std::string Lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

timespec ToTimespec(const TarTime& t) {
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(t.seconds);
  ts.tv_nsec = static_cast<long>(t.nanoseconds);
  return ts;
}

// A non-negative PAX time "secs[.frac]"; nullopt for anything else.
std::optional<TarTime> ParseRecordTime(std::string_view text) {
  size_t dot = text.find('.');
  std::string_view secs = text.substr(0, dot);
  std::string_view frac = dot == std::string_view::npos ? std::string_view() : text.substr(dot + 1);
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if (secs.empty() || secs.size() > 18 || !std::all_of(secs.begin(), secs.end(), digit)) return std::nullopt;
  if (!std::all_of(frac.begin(), frac.end(), digit)) return std::nullopt;
  TarTime time{std::stoll(std::string(secs)), 0};
  for (size_t i = 0; i < 9; ++i) time.nanoseconds = time.nanoseconds * 10 + (i < frac.size() ? frac[i] - '0' : 0);
  return time;
}

// What this layer put at a path (cleaned, "/"-joined).
enum class Kind { kDirectory, kFile, kLink, kWhiteout };

class WindowsApplier {
 public:
  WindowsApplier(ByteReader& tar, const fs::path& layer_dir, const WindowsLayerOptions& options)
      : reader_(tar), layer_dir_(layer_dir), options_(options) {}

  Result<WindowsLayerStats> Run() {
    STRATA_RETURN_IF_ERROR(CheckOptions());
    int fd = ::open(layer_dir_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return ErrnoFail(errno, "open layer dir", layer_dir_);
    root_.reset(fd);
    STRATA_ASSIGN_OR_RETURN(auto listing, apply_detail::ListDirAt(root_.get(), ".", "(layer dir)", layer_dir_.string()));
    if (!listing.children.empty()) {
      return Fail(ErrorCode::kFailedPrecondition, "windows layer dir {} is not empty", layer_dir_.string());
    }
    for (std::string_view dir : {windows_index::kMetadataDir, windows_index::kStreamsDir}) {
      if (::mkdirat(root_.get(), std::string(dir).c_str(), 0755) != 0) {
        return ErrnoFail(errno, "mkdir", layer_dir_ / dir);
      }
    }
    buffer_.resize(kCopyBuffer);
    index_ = windows_index::IndexPreamble();
    std::string previous;
    while (true) {
      auto next = reader_.Next();
      if (!next) {
        return Fail(next.error().WithContext(previous.empty() ? std::string("reading windows layer")
                                                              : fmt::format("reading windows layer after entry {:?}", previous)));
      }
      if (!next->has_value()) break;
      IndexEntry entry{std::move(**next), {}};
      previous = entry.header.name;
      STRATA_RETURN_IF_ERROR(ApplyEntry(entry));
      index_ += windows_index::EncodeIndexEntry(entry, stats_.entries);
      ++stats_.entries;
    }
    if (options_.is_base) STRATA_RETURN_IF_ERROR(CheckBaseHives());
    if (::mkdirat(root_.get(), "Files", 0755) != 0 && errno != EEXIST) return ErrnoFail(errno, "mkdir", layer_dir_ / "Files");
    STRATA_RETURN_IF_ERROR(ApplyDirTimes());
    STRATA_RETURN_IF_ERROR(AtomicWriteFile(layer_dir_ / windows_index::kIndexFile, index_));
    // Last: its presence marks a complete layer.
    STRATA_RETURN_IF_ERROR(AtomicWriteFile(layer_dir_ / windows_index::kLayerChainFile, LayerChainJson()));
    return stats_;
  }

 private:
  Status CheckOptions() const {
    if (options_.is_base && !options_.parent_layers.empty()) {
      return Fail(ErrorCode::kInvalidArgument, "windows base layer {} cannot have parent layers", layer_dir_.string());
    }
    if (!options_.is_base && options_.parent_layers.empty()) {
      return Fail(ErrorCode::kInvalidArgument, "windows layer {} is not a base layer but has no parent layers",
                  layer_dir_.string());
    }
    for (const auto& parent : options_.parent_layers) {
      if (!parent.is_absolute()) {
        return Fail(ErrorCode::kInvalidArgument, "parent layer dir {:?} is not absolute", parent.string());
      }
    }
    return {};
  }

  static void AppendJsonString(std::string& out, std::string_view text) {
    out += '"';
    for (char c : text) {
      if (c == '"' || c == '\\') {
        out += '\\';
        out += c;
      } else if (static_cast<unsigned char>(c) < 0x20) {
        out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
      } else {
        out += c;
      }
    }
    out += '"';
  }

  std::string LayerChainJson() const {
    if (options_.is_base) return "null";
    std::string out = "[";
    for (size_t i = 0; i < options_.parent_layers.size(); ++i) {
      if (i > 0) out += ',';
      AppendJsonString(out, options_.parent_layers[i].string());
    }
    return out + "]";
  }

  // The area rules of windows_layer.h on a cleaned name. Returns whether the entry may be a
  // hard link or a hard-link target (under Files/ or UtilityVM/Files/, not a top dir).
  Result<bool> CheckArea(std::string_view name, const Components& comps, TarEntryType type) const {
    const bool is_dir = type == TarEntryType::kDirectory;
    if (comps[0] == "Files") {
      if (comps.size() == 1 && !is_dir) return Refuse(name, "\"Files\" must be a directory");
      return comps.size() > 1;
    }
    if (comps[0] == "Hives") {
      if (options_.is_base) return Refuse(name, "a base layer cannot have Hives/");
      if (comps.size() == 1 && !is_dir) return Refuse(name, "\"Hives\" must be a directory");
      return false;
    }
    if (comps[0] == "UtilityVM") {
      if (comps.size() == 1) {
        if (!is_dir) return Refuse(name, "\"UtilityVM\" must be a directory");
        return false;
      }
      if (comps[1] == "Files") {
        if (comps.size() == 2 && !is_dir) return Refuse(name, "\"UtilityVM/Files\" must be a directory");
        return comps.size() > 2;
      }
    }
    return Refuse(name, "outside Files/, Hives/ and UtilityVM/Files/");
  }

  Status ApplyEntry(IndexEntry& index_entry) {
    TarEntry& entry = index_entry.header;
    const std::string& name = entry.name;
    STRATA_ASSIGN_OR_RETURN(Components comps, apply_detail::CleanName(name, name, "name"));
    if (comps.empty()) return Refuse(name, "names the layer root");
    for (size_t i = 0; i < comps.size(); ++i) {
      if (comps[i].find('\\') != std::string::npos) return Refuse(name, "backslash in name (a Windows path separator)");
      if (i + 1 < comps.size() && comps[i].find(':') != std::string::npos) {
        return Refuse(name, "':' in a directory component");
      }
    }
    STRATA_ASSIGN_OR_RETURN(const bool linkable, CheckArea(name, comps, entry.type));
    const std::string& base = comps.back();
    if (base.starts_with(kWhiteoutPrefix)) return ApplyWhiteout(entry, comps);
    if (base.find(':') != std::string::npos) return ApplyStream(index_entry, comps);

    const std::string rel = Join(comps);
    if (seen_.contains(rel)) return Refuse(name, "duplicate entry (the path is already in this layer)");
    switch (entry.type) {
      case TarEntryType::kDirectory: {
        STRATA_ASSIGN_OR_RETURN(UniqueFd parent, OpenDirBeneath(root_.get(), comps, comps.size() - 1, true, name));
        if (::mkdirat(parent.get(), base.c_str(), 0755) != 0) {
          struct stat st{};
          if (errno != EEXIST || ::fstatat(parent.get(), base.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
              !S_ISDIR(st.st_mode)) {
            return SysFail(name, EEXIST, "mkdir", rel);
          }
        }
        seen_[rel] = Kind::kDirectory;
        dir_times_[rel] = Times(entry);
        return {};
      }
      case TarEntryType::kRegular: {
        STRATA_ASSIGN_OR_RETURN(UniqueFd parent, OpenDirBeneath(root_.get(), comps, comps.size() - 1, true, name));
        int fd = ::openat(parent.get(), base.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0) return SysFail(name, errno, "create", rel);
        seen_[rel] = Kind::kFile;
        return WriteContent(UniqueFd(fd), entry, rel);
      }
      case TarEntryType::kSymlink: {
        if (entry.linkname.empty()) return Refuse(name, "link with an empty target");
        if (entry.linkname.find('\0') != std::string::npos) return Refuse(name, "NUL byte in link target");
        STRATA_ASSIGN_OR_RETURN(UniqueFd parent, OpenDirBeneath(root_.get(), comps, comps.size() - 1, true, name));
        if (::symlinkat(entry.linkname.c_str(), parent.get(), base.c_str()) != 0) {
          return SysFail(name, errno, "symlink", rel);
        }
        seen_[rel] = Kind::kLink;
        return SetTimesAt(parent.get(), base, entry, rel);
      }
      case TarEntryType::kHardLink:
        if (!linkable) return Refuse(name, "hard links are allowed only under Files/ and UtilityVM/Files/");
        return ApplyHardLink(entry, comps);
      default:
        return Refuse(name, fmt::format("unsupported entry type {:?} in a Windows layer", static_cast<char>(entry.type)));
    }
  }

  // mtime, and atime from the "atime" record when it parses (else mtime).
  static std::pair<TarTime, TarTime> Times(const TarEntry& entry) {
    TarTime atime = entry.mtime;
    if (auto it = entry.pax_records.find("atime"); it != entry.pax_records.end()) {
      if (auto parsed = ParseRecordTime(it->second)) atime = *parsed;
    }
    return {entry.mtime, atime};
  }

  Status SetTimesAt(int dirfd, const std::string& base, const TarEntry& entry, const std::string& rel) {
    auto [mtime, atime] = Times(entry);
    timespec times[2] = {ToTimespec(atime), ToTimespec(mtime)};
    if (::utimensat(dirfd, base.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
      return SysFail(entry.name, errno, "utimensat", rel);
    }
    return {};
  }

  // Copies the current entry's content into `fd` and sets its times.
  Status WriteContent(UniqueFd fd, const TarEntry& entry, const std::string& display) {
    while (true) {
      auto got = reader_.ReadContent(std::span<char>(buffer_.data(), buffer_.size()));
      if (!got) return Fail(got.error().WithContext(fmt::format("windows layer entry {:?}", entry.name)));
      if (*got == 0) break;
      auto written = WriteAll(fd.get(), std::string_view(buffer_.data(), *got));
      if (!written) return Fail(written.error().WithContext(fmt::format("windows layer entry {:?}", entry.name)));
      stats_.bytes += *got;
    }
    auto [mtime, atime] = Times(entry);
    timespec times[2] = {ToTimespec(atime), ToTimespec(mtime)};
    if (::futimens(fd.get(), times) != 0) return SysFail(entry.name, errno, "utimens", display);
    return {};
  }

  // "<path>:<stream>" or "<path>:<stream>:$DATA": the data goes to .strata/streams/<n>.
  Status ApplyStream(IndexEntry& index_entry, const Components& comps) {
    const TarEntry& entry = index_entry.header;
    const std::string& name = entry.name;
    const std::string& last = comps.back();
    const size_t colon = last.find(':');
    std::string_view stream = std::string_view(last).substr(colon + 1);
    if (stream.ends_with(kDataSuffix)) stream.remove_suffix(kDataSuffix.size());
    if (colon == 0 || stream.empty() || stream.find(':') != std::string_view::npos) {
      return Refuse(name, "malformed alternate data stream name (want <file>:<stream>[:$DATA])");
    }
    if (entry.type != TarEntryType::kRegular) return Refuse(name, "an alternate data stream must be a regular entry");
    Components file = comps;
    file.back() = last.substr(0, colon);
    const std::string file_rel = Join(file);
    auto owner = seen_.find(file_rel);
    if (owner == seen_.end() || owner->second == Kind::kWhiteout) {
      return Refuse(name, fmt::format("alternate data stream of {:?}, which is not an earlier entry of this layer", file_rel));
    }
    const std::string stream_key = Join(comps) + (last.ends_with(kDataSuffix) ? "" : std::string(kDataSuffix));
    if (!streams_seen_.insert(stream_key).second) return Refuse(name, "duplicate alternate data stream");
    index_entry.stream = fmt::format("{}/{}", windows_index::kStreamsDir, stats_.entries);
    int fd = ::openat(root_.get(), index_entry.stream.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) return SysFail(name, errno, "create", index_entry.stream);
    ++stats_.streams;
    return WriteContent(UniqueFd(fd), entry, index_entry.stream);
  }

  // ".wh.<name>": an overlay-style whiteout device <name> (0/0 char device).
  Status ApplyWhiteout(const TarEntry& entry, const Components& comps) {
    const std::string& name = entry.name;
    if (options_.is_base) return Refuse(name, "base layer cannot have tombstones");
    if (entry.type != TarEntryType::kRegular || entry.size != 0) {
      return Refuse(name, "a whiteout must be an empty regular entry");
    }
    std::string target = comps.back().substr(kWhiteoutPrefix.size());
    if (target.empty() || target == "." || target == ".." || target.starts_with(kWhiteoutPrefix) ||
        target.find(':') != std::string::npos) {
      return Refuse(name, fmt::format("whiteout of {:?} refused", target));
    }
    Components target_comps = comps;
    target_comps.back() = target;
    const std::string rel = Join(target_comps);
    if (seen_.contains(rel)) return Refuse(name, fmt::format("whiteout of {:?}, which this layer writes", rel));
    if (!seen_.emplace(Join(comps), Kind::kWhiteout).second) return Refuse(name, "duplicate entry");
    STRATA_ASSIGN_OR_RETURN(UniqueFd parent, OpenDirBeneath(root_.get(), comps, comps.size() - 1, true, name));
    if (::mknodat(parent.get(), target.c_str(), S_IFCHR | 0, makedev(0, 0)) != 0) {
      return SysFail(name, errno, "mknod whiteout", rel);
    }
    seen_[rel] = Kind::kWhiteout;
    ++stats_.whiteouts;
    return SetTimesAt(parent.get(), target, entry, rel);
  }

  Status ApplyHardLink(const TarEntry& entry, const Components& comps) {
    const std::string& name = entry.name;
    const std::string rel = Join(comps);
    STRATA_ASSIGN_OR_RETURN(Components target, apply_detail::CleanName(name, entry.linkname, "hard link target"));
    const bool target_linkable = (target.size() > 1 && target[0] == "Files") ||
                                 (target.size() > 2 && target[0] == "UtilityVM" && target[1] == "Files");
    if (!target_linkable) {
      return Refuse(name, fmt::format("hard link to {:?} outside Files/ and UtilityVM/Files/", entry.linkname));
    }
    const std::string target_rel = Join(target);
    for (const auto& comp : target) {
      if (comp.find(':') != std::string::npos || comp.find('\\') != std::string::npos) {
        return Refuse(name, fmt::format("hard link to {:?}, which is not a file path", entry.linkname));
      }
    }
    STRATA_ASSIGN_OR_RETURN(UniqueFd parent, OpenDirBeneath(root_.get(), comps, comps.size() - 1, true, name));
    if (auto it = seen_.find(target_rel); it != seen_.end()) {
      if (it->second == Kind::kDirectory) return Refuse(name, fmt::format("hard link to directory {:?}", entry.linkname));
      if (it->second == Kind::kWhiteout) return Refuse(name, fmt::format("hard link to deleted {:?}", entry.linkname));
      STRATA_ASSIGN_OR_RETURN(UniqueFd target_dir, OpenDirBeneath(root_.get(), target, target.size() - 1, false, name));
      if (::linkat(target_dir.get(), target.back().c_str(), parent.get(), comps.back().c_str(), 0) != 0) {
        return SysFail(name, errno, "link", rel);
      }
      seen_[rel] = Kind::kFile;
      return {};
    }
    if (options_.is_base) {
      return Refuse(name, fmt::format("hard link to {:?}, which is not an earlier entry of this base layer", entry.linkname));
    }
    STRATA_RETURN_IF_ERROR(CopyFromParents(entry, target, parent.get(), comps.back(), rel));
    seen_[rel] = Kind::kFile;
    return {};
  }

  // A hard link to a parent layer's file: its data (or symlink) is copied to our path.
  Status CopyFromParents(const TarEntry& entry, const Components& target, int dest_dir, const std::string& dest,
                         const std::string& rel) {
    const std::string& name = entry.name;
    for (const auto& parent_layer : options_.parent_layers) {
      int raw = ::open(parent_layer.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
      if (raw < 0) return SysFail(name, errno, "open parent layer", parent_layer.string());
      UniqueFd layer_root(raw);
      auto dir = OpenDirBeneath(layer_root.get(), target, target.size() - 1, false, name);
      if (!dir) {
        if (dir.error().code() == ErrorCode::kNotFound) continue;
        return Fail(dir.error().WithContext(fmt::format("resolving hard link target in parent layer {}", parent_layer.string())));
      }
      const char* base = target.back().c_str();
      struct stat st{};
      if (::fstatat(dir->get(), base, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) continue;
        return SysFail(name, errno, "stat hard link target", (parent_layer / Join(target)).string());
      }
      if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) {
        return Refuse(name, fmt::format("hard link to {:?}, deleted in parent layer {}", entry.linkname, parent_layer.string()));
      }
      if (S_ISLNK(st.st_mode)) {
        std::string link(PATH_MAX, '\0');
        ssize_t n = ::readlinkat(dir->get(), base, link.data(), link.size());
        if (n < 0) return SysFail(name, errno, "readlink hard link target", (parent_layer / Join(target)).string());
        link.resize(static_cast<size_t>(n));
        if (::symlinkat(link.c_str(), dest_dir, dest.c_str()) != 0) return SysFail(name, errno, "symlink", rel);
        return SetTimesAt(dest_dir, dest, entry, rel);
      }
      if (!S_ISREG(st.st_mode)) {
        return Refuse(name, fmt::format("hard link to {:?}, not a file in parent layer {}", entry.linkname, parent_layer.string()));
      }
      int in = ::openat(dir->get(), base, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
      if (in < 0) return SysFail(name, errno, "open hard link target", (parent_layer / Join(target)).string());
      UniqueFd source(in);
      int out = ::openat(dest_dir, dest.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
      if (out < 0) return SysFail(name, errno, "create", rel);
      UniqueFd copy(out);
      while (true) {
        ssize_t n = ::read(source.get(), buffer_.data(), buffer_.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return SysFail(name, errno, "read hard link target", (parent_layer / Join(target)).string());
        if (n == 0) break;
        auto written = WriteAll(copy.get(), std::string_view(buffer_.data(), static_cast<size_t>(n)));
        if (!written) return Fail(written.error().WithContext(fmt::format("windows layer entry {:?}", name)));
        stats_.bytes += static_cast<uint64_t>(n);
      }
      auto [mtime, atime] = Times(entry);
      timespec times[2] = {ToTimespec(atime), ToTimespec(mtime)};
      if (::futimens(copy.get(), times) != 0) return SysFail(name, errno, "utimens", rel);
      return {};
    }
    return Refuse(name, fmt::format("hard link target {:?} is in neither this layer nor its parents", entry.linkname));
  }

  Status CheckBaseHives() const {
    std::map<std::string, bool> present;
    for (std::string_view hive : kRequiredHives) present[Lower(fmt::format("Files/Windows/System32/config/{}", hive))] = false;
    for (const auto& [rel, kind] : seen_) {
      if (kind != Kind::kFile) continue;
      if (auto it = present.find(Lower(rel)); it != present.end()) it->second = true;
    }
    for (std::string_view hive : kRequiredHives) {
      if (!present[Lower(fmt::format("Files/Windows/System32/config/{}", hive))]) {
        return Fail(ErrorCode::kInvalidArgument, "windows base layer lacks Files/Windows/System32/config/{}", hive);
      }
    }
    return {};
  }

  // Directory times, deepest first, after everything beneath them (whiteouts included).
  Status ApplyDirTimes() {
    std::vector<std::pair<std::string, std::pair<TarTime, TarTime>>> dirs(dir_times_.begin(), dir_times_.end());
    auto depth = [](const std::string& s) { return std::count(s.begin(), s.end(), '/'); };
    std::stable_sort(dirs.begin(), dirs.end(), [&](const auto& a, const auto& b) { return depth(a.first) > depth(b.first); });
    for (const auto& [rel, times] : dirs) {
      STRATA_ASSIGN_OR_RETURN(Components comps, apply_detail::CleanName(rel, rel, "name"));
      STRATA_ASSIGN_OR_RETURN(UniqueFd dir, OpenDirBeneath(root_.get(), comps, comps.size(), false, rel));
      timespec ts[2] = {ToTimespec(times.second), ToTimespec(times.first)};
      // O_PATH fds cannot futimens: go through the /proc link of the directory we opened.
      std::string path = fmt::format("/proc/self/fd/{}", dir.get());
      if (::utimensat(AT_FDCWD, path.c_str(), ts, 0) != 0) return SysFail(rel, errno, "utimensat", rel);
    }
    return {};
  }

  TarReader reader_;
  const fs::path& layer_dir_;
  const WindowsLayerOptions& options_;
  UniqueFd root_;
  std::vector<char> buffer_;
  WindowsLayerStats stats_;
  std::string index_;
  std::map<std::string, Kind> seen_;
  std::set<std::string> streams_seen_;
  std::map<std::string, std::pair<TarTime, TarTime>> dir_times_;  // rel -> (mtime, atime)
};

}  // namespace

Result<WindowsLayerStats> ApplyWindowsLayer(ByteReader& tar, const std::filesystem::path& layer_dir,
                                            const WindowsLayerOptions& options) {
  WindowsApplier applier(tar, layer_dir, options);
  return applier.Run();
}

}  // namespace strata::archive
