// The entry index of a Windows layer directory: see windows_layer_index.h.
#include "archive/windows_layer_index.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <optional>

#include <fmt/format.h>

#include "archive/tar_reader_records.h"
#include "base/file.h"

namespace strata::archive::windows_index {
namespace {

constexpr std::string_view kPreamble = "strata-windows-layer-index 1\n";

std::unexpected<Error> Damaged(std::string_view what) {
  return Fail(ErrorCode::kInvalidArgument, "windows layer index: {}", what);
}

template <typename T>
std::optional<T> ParseInteger(std::string_view text) {
  T value{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return value;
}

}  // namespace

std::string IndexPreamble() { return std::string(kPreamble); }

std::string EncodeIndexEntry(const IndexEntry& entry, uint64_t position) {
  const TarEntry& h = entry.header;
  std::string out;
  out += PaxRecord("entry", std::to_string(position));
  out += PaxRecord("name", h.name);
  out += PaxRecord("type", std::string_view(reinterpret_cast<const char*>(&h.type), 1));
  out += PaxRecord("mode", std::to_string(h.mode));
  out += PaxRecord("uid", std::to_string(h.uid));
  out += PaxRecord("gid", std::to_string(h.gid));
  if (!h.uname.empty()) out += PaxRecord("uname", h.uname);
  if (!h.gname.empty()) out += PaxRecord("gname", h.gname);
  out += PaxRecord("size", std::to_string(h.size));
  out += PaxRecord("mtime", fmt::format("{} {}", h.mtime.seconds, h.mtime.nanoseconds));
  if (!h.linkname.empty()) out += PaxRecord("linkname", h.linkname);
  if (!entry.stream.empty()) out += PaxRecord("stream", entry.stream);
  for (const auto& [key, value] : h.pax_records) out += PaxRecord("pax:" + key, value);
  for (const auto& [key, value] : h.xattrs) out += PaxRecord("xattr:" + key, value);
  return out;
}

Result<std::vector<IndexEntry>> DecodeIndex(std::string_view data) {
  if (!data.starts_with(kPreamble)) return Damaged("missing preamble (not a strata Windows layer index)");
  data.remove_prefix(kPreamble.size());
  auto records = tar_internal::ParsePaxRecords(data);
  if (!records) return Fail(records.error().WithContext("windows layer index"));
  std::vector<IndexEntry> entries;
  for (auto& [key, value] : *records) {
    if (key == "entry") {
      auto position = ParseInteger<uint64_t>(value);
      if (!position || *position != entries.size()) return Damaged(fmt::format("entry position {:?} out of sequence", value));
      entries.emplace_back();
      continue;
    }
    if (entries.empty()) return Damaged(fmt::format("record {:?} before the first entry", key));
    IndexEntry& entry = entries.back();
    TarEntry& h = entry.header;
    auto number = [&]<typename T>(T& field) -> Status {
      auto parsed = ParseInteger<T>(value);
      if (!parsed) return Damaged(fmt::format("entry {}: bad {} {:?}", entries.size() - 1, key, value));
      field = *parsed;
      return {};
    };
    if (key == "name") {
      h.name = std::move(value);
    } else if (key == "type") {
      if (value.size() != 1) return Damaged(fmt::format("entry {}: bad type {:?}", entries.size() - 1, value));
      h.type = static_cast<TarEntryType>(value[0]);
    } else if (key == "mode") {
      STRATA_RETURN_IF_ERROR(number(h.mode));
    } else if (key == "uid") {
      STRATA_RETURN_IF_ERROR(number(h.uid));
    } else if (key == "gid") {
      STRATA_RETURN_IF_ERROR(number(h.gid));
    } else if (key == "uname") {
      h.uname = std::move(value);
    } else if (key == "gname") {
      h.gname = std::move(value);
    } else if (key == "size") {
      STRATA_RETURN_IF_ERROR(number(h.size));
    } else if (key == "mtime") {
      size_t space = value.find(' ');
      auto seconds = ParseInteger<int64_t>(std::string_view(value).substr(0, space));
      std::optional<uint32_t> nanos;
      if (space != std::string::npos) nanos = ParseInteger<uint32_t>(std::string_view(value).substr(space + 1));
      if (!seconds || !nanos || *nanos >= 1'000'000'000) {
        return Damaged(fmt::format("entry {}: bad mtime {:?}", entries.size() - 1, value));
      }
      h.mtime = TarTime{*seconds, *nanos};
    } else if (key == "linkname") {
      h.linkname = std::move(value);
    } else if (key == "stream") {
      entry.stream = std::move(value);
    } else if (key.starts_with("pax:")) {
      h.pax_records[key.substr(4)] = std::move(value);
    } else if (key.starts_with("xattr:")) {
      h.xattrs[key.substr(6)] = std::move(value);
    } else {
      return Damaged(fmt::format("entry {}: unknown record {:?}", entries.size() - 1, key));
    }
  }
  for (size_t i = 0; i < entries.size(); ++i) {
    if (entries[i].header.name.empty()) return Damaged(fmt::format("entry {} has no name", i));
  }
  return entries;
}

using apply_detail::Components;
using apply_detail::Join;

std::unexpected<Error> EntryRefuse(std::string_view name, std::string_view reason) {
  return Fail(ErrorCode::kInvalidArgument, "windows layer entry {:?}: {}", name, reason);
}

std::unexpected<Error> EntryFail(std::string_view name, int errnum, std::string_view op, std::string_view path) {
  return Fail(ErrnoFail(errnum, op, path).error().WithContext(fmt::format("windows layer entry {:?}", name)));
}

// Opens directory `comps[0..count)` below `root` without following symlinks, creating
// missing components (0755) when `create`. Errors name `entry`.
Result<UniqueFd> OpenDirBeneath(int root, const Components& comps, size_t count, bool create, std::string_view entry) {
  if (count == 0) {
    int fd = ::fcntl(root, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) return EntryFail(entry, errno, "dup", ".");
    return UniqueFd(fd);
  }
  std::string rel = Join(comps, count);
  for (int attempt = 0; attempt < 3; ++attempt) {
    long fd = apply_detail::Openat2(root, rel.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC,
                                    RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS);
    if (fd >= 0) return UniqueFd(static_cast<int>(fd));
    if (errno != EAGAIN) break;
  }
  // ENOSYS, or a component missing / a symlink / not a directory: walk component by
  // component, creating what is missing and naming the offending component.
  int dup = ::fcntl(root, F_DUPFD_CLOEXEC, 0);
  if (dup < 0) return EntryFail(entry, errno, "dup", ".");
  UniqueFd cur(dup);
  for (size_t i = 0; i < count; ++i) {
    const std::string& comp = comps[i];
    int fd = ::openat(cur.get(), comp.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && create) {
      if (::mkdirat(cur.get(), comp.c_str(), 0755) != 0 && errno != EEXIST) {
        return EntryFail(entry, errno, "mkdir", Join(comps, i + 1));
      }
      fd = ::openat(cur.get(), comp.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (fd < 0) {
      int error = errno;
      struct stat st{};
      if ((error == ENOTDIR || error == ELOOP) && ::fstatat(cur.get(), comp.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (S_ISLNK(st.st_mode)) {
          return EntryRefuse(entry, fmt::format("path component {:?} is a symlink (never followed)", Join(comps, i + 1)));
        }
        return EntryRefuse(entry, fmt::format("path component {:?} is not a directory", Join(comps, i + 1)));
      }
      return EntryFail(entry, error, "open", Join(comps, i + 1));
    }
    cur.reset(fd);
  }
  return cur;
}

}  // namespace strata::archive::windows_index
