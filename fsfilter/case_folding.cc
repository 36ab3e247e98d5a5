#include "fsfilter/case_folding.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <mutex>

#include "fsfilter/overlay_markers.h"

namespace strata::fsfilter {

namespace {

// A run of lower-case code points [first, last], every `stride`-th of which maps to itself
// plus `delta`. Generated from the Unicode 14 simple uppercase mappings of U+0000..U+052F
// (one-code-point results only). Sorted by `first`.
struct UpcaseRun {
  uint16_t first;
  uint16_t last;
  uint8_t stride;
  int32_t delta;
};

constexpr UpcaseRun kUpcaseRuns[] = {
    {0x0061, 0x007A, 1, -32}, {0x00B5, 0x00B5, 1, 743}, {0x00E0, 0x00F6, 1, -32}, {0x00F8, 0x00FE, 1, -32},
    {0x00FF, 0x00FF, 1, 121}, {0x0101, 0x012F, 2, -1}, {0x0131, 0x0131, 1, -232}, {0x0133, 0x0137, 2, -1},
    {0x013A, 0x0148, 2, -1}, {0x014B, 0x0177, 2, -1}, {0x017A, 0x017E, 2, -1}, {0x017F, 0x017F, 1, -300},
    {0x0180, 0x0180, 1, 195}, {0x0183, 0x0185, 2, -1}, {0x0188, 0x0188, 1, -1}, {0x018C, 0x018C, 1, -1},
    {0x0192, 0x0192, 1, -1}, {0x0195, 0x0195, 1, 97}, {0x0199, 0x0199, 1, -1}, {0x019A, 0x019A, 1, 163},
    {0x019E, 0x019E, 1, 130}, {0x01A1, 0x01A5, 2, -1}, {0x01A8, 0x01A8, 1, -1}, {0x01AD, 0x01AD, 1, -1},
    {0x01B0, 0x01B0, 1, -1}, {0x01B4, 0x01B6, 2, -1}, {0x01B9, 0x01B9, 1, -1}, {0x01BD, 0x01BD, 1, -1},
    {0x01BF, 0x01BF, 1, 56}, {0x01C5, 0x01C5, 1, -1}, {0x01C6, 0x01C6, 1, -2}, {0x01C8, 0x01C8, 1, -1},
    {0x01C9, 0x01C9, 1, -2}, {0x01CB, 0x01CB, 1, -1}, {0x01CC, 0x01CC, 1, -2}, {0x01CE, 0x01DC, 2, -1},
    {0x01DD, 0x01DD, 1, -79}, {0x01DF, 0x01EF, 2, -1}, {0x01F2, 0x01F2, 1, -1}, {0x01F3, 0x01F3, 1, -2},
    {0x01F5, 0x01F5, 1, -1}, {0x01F9, 0x021F, 2, -1}, {0x0223, 0x0233, 2, -1}, {0x023C, 0x023C, 1, -1},
    {0x023F, 0x0240, 1, 10815}, {0x0242, 0x0242, 1, -1}, {0x0247, 0x024F, 2, -1}, {0x0250, 0x0250, 1, 10783},
    {0x0251, 0x0251, 1, 10780}, {0x0252, 0x0252, 1, 10782}, {0x0253, 0x0253, 1, -210},
    {0x0254, 0x0254, 1, -206}, {0x0256, 0x0257, 1, -205}, {0x0259, 0x0259, 1, -202}, {0x025B, 0x025B, 1, -203},
    {0x025C, 0x025C, 1, 42319}, {0x0260, 0x0260, 1, -205}, {0x0261, 0x0261, 1, 42315},
    {0x0263, 0x0263, 1, -207}, {0x0265, 0x0265, 1, 42280}, {0x0266, 0x0266, 1, 42308},
    {0x0268, 0x0268, 1, -209}, {0x0269, 0x0269, 1, -211}, {0x026A, 0x026A, 1, 42308},
    {0x026B, 0x026B, 1, 10743}, {0x026C, 0x026C, 1, 42305}, {0x026F, 0x026F, 1, -211},
    {0x0271, 0x0271, 1, 10749}, {0x0272, 0x0272, 1, -213}, {0x0275, 0x0275, 1, -214},
    {0x027D, 0x027D, 1, 10727}, {0x0280, 0x0280, 1, -218}, {0x0282, 0x0282, 1, 42307},
    {0x0283, 0x0283, 1, -218}, {0x0287, 0x0287, 1, 42282}, {0x0288, 0x0288, 1, -218}, {0x0289, 0x0289, 1, -69},
    {0x028A, 0x028B, 1, -217}, {0x028C, 0x028C, 1, -71}, {0x0292, 0x0292, 1, -219}, {0x029D, 0x029D, 1, 42261},
    {0x029E, 0x029E, 1, 42258}, {0x0345, 0x0345, 1, 84}, {0x0371, 0x0373, 2, -1}, {0x0377, 0x0377, 1, -1},
    {0x037B, 0x037D, 1, 130}, {0x03AC, 0x03AC, 1, -38}, {0x03AD, 0x03AF, 1, -37}, {0x03B1, 0x03C1, 1, -32},
    {0x03C2, 0x03C2, 1, -31}, {0x03C3, 0x03CB, 1, -32}, {0x03CC, 0x03CC, 1, -64}, {0x03CD, 0x03CE, 1, -63},
    {0x03D0, 0x03D0, 1, -62}, {0x03D1, 0x03D1, 1, -57}, {0x03D5, 0x03D5, 1, -47}, {0x03D6, 0x03D6, 1, -54},
    {0x03D7, 0x03D7, 1, -8}, {0x03D9, 0x03EF, 2, -1}, {0x03F0, 0x03F0, 1, -86}, {0x03F1, 0x03F1, 1, -80},
    {0x03F2, 0x03F2, 1, 7}, {0x03F3, 0x03F3, 1, -116}, {0x03F5, 0x03F5, 1, -96}, {0x03F8, 0x03F8, 1, -1},
    {0x03FB, 0x03FB, 1, -1}, {0x0430, 0x044F, 1, -32}, {0x0450, 0x045F, 1, -80}, {0x0461, 0x0481, 2, -1},
    {0x048B, 0x04BF, 2, -1}, {0x04C2, 0x04CE, 2, -1}, {0x04CF, 0x04CF, 1, -15}, {0x04D1, 0x052F, 2, -1},
};

uint32_t UpcaseCodePoint(uint32_t c) {
  if (c >= 'a' && c <= 'z') return c - 32;
  if (c < 0xB5 || c > 0x52F) return c;
  const UpcaseRun* run = std::upper_bound(std::begin(kUpcaseRuns), std::end(kUpcaseRuns), c,
                                          [](uint32_t value, const UpcaseRun& r) { return value < r.first; });
  if (run == std::begin(kUpcaseRuns)) return c;
  --run;
  if (c > run->last || (c - run->first) % run->stride != 0) return c;
  return static_cast<uint32_t>(static_cast<int32_t>(c) + run->delta);
}

// Decodes one well-formed UTF-8 sequence (no overlongs, surrogates or values past
// U+10FFFF) at the start of `text`; returns its length, or 0 when the first byte does not
// start one.
size_t DecodeUtf8(std::string_view text, uint32_t& code_point) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(text[i]); };
  const uint8_t lead = byte(0);
  size_t length;
  uint32_t min;
  if (lead < 0x80) {
    code_point = lead;
    return 1;
  } else if ((lead & 0xE0) == 0xC0) {
    length = 2, min = 0x80, code_point = lead & 0x1F;
  } else if ((lead & 0xF0) == 0xE0) {
    length = 3, min = 0x800, code_point = lead & 0x0F;
  } else if ((lead & 0xF8) == 0xF0) {
    length = 4, min = 0x10000, code_point = lead & 0x07;
  } else {
    return 0;
  }
  if (text.size() < length) return 0;
  for (size_t i = 1; i < length; ++i) {
    if ((byte(i) & 0xC0) != 0x80) return 0;
    code_point = (code_point << 6) | (byte(i) & 0x3F);
  }
  if (code_point < min || code_point > 0x10FFFF || (code_point >= 0xD800 && code_point <= 0xDFFF)) return 0;
  return length;
}

void AppendUtf8(std::string& out, uint32_t c) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {  // every upcase result is in the BMP
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

// Calls `visit(name)` for each name of the directory `dir_fd` (O_PATH is enough) but ".",
// "..", and ".wh." markers, until it returns true. False when the directory is unreadable.
template <typename Visit>
bool ForEachName(int dir_fd, Visit visit) {
  const int fd = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;
  DIR* stream = ::fdopendir(fd);
  if (stream == nullptr) {
    ::close(fd);
    return false;
  }
  while (struct dirent* d = ::readdir(stream)) {
    const std::string_view name = d->d_name;
    if (name == "." || name == ".." || IsReservedName(name)) continue;
    if (visit(name)) break;
  }
  ::closedir(stream);
  return true;
}

bool SameTime(const struct timespec& a, const struct timespec& b) {
  return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

}  // namespace

std::string UpcaseName(std::string_view name) {
  std::string key;
  key.reserve(name.size());
  while (!name.empty()) {
    uint32_t c = 0;
    const size_t length = DecodeUtf8(name, c);
    if (length == 0) {  // not UTF-8: the byte stands for itself
      key.push_back(name.front());
      name.remove_prefix(1);
      continue;
    }
    const uint32_t upper = UpcaseCodePoint(c);
    if (upper == c) {
      key.append(name.substr(0, length));
    } else {
      AppendUtf8(key, upper);
    }
    name.remove_prefix(length);
  }
  return key;
}

CaseFoldingNameFilter::CaseFoldingNameFilter(Options options) : options_(options) {}
CaseFoldingNameFilter::~CaseFoldingNameFilter() = default;

std::optional<std::string> CaseFoldingNameFilter::MatchInLayer(int dir_fd, std::string_view name) const {
  const std::string exact(name);
  struct stat st{};
  if (::fstatat(dir_fd, exact.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) return exact;
  if (errno != ENOENT) return std::nullopt;
  const std::string key = UpcaseName(name);
  if (!options_.cache_directories) {
    std::optional<std::string> found;
    ForEachName(dir_fd, [&](std::string_view candidate) {
      if (UpcaseName(candidate) != key) return false;
      found.emplace(candidate);
      return true;
    });
    return found;
  }
  std::shared_ptr<const DirectoryNames> names = NamesOf(dir_fd);
  if (!names) return std::nullopt;
  auto it = names->find(key);
  if (it == names->end()) return std::nullopt;
  return it->second;
}

std::shared_ptr<const CaseFoldingNameFilter::DirectoryNames> CaseFoldingNameFilter::NamesOf(int dir_fd) const {
  struct stat st{};
  if (::fstat(dir_fd, &st) != 0) return nullptr;
  const std::pair<dev_t, ino_t> id{st.st_dev, st.st_ino};
  {
    std::shared_lock lock(cache_mutex_);
    auto it = cache_.find(id);
    if (it != cache_.end() && SameTime(it->second.ctime, st.st_ctim) && SameTime(it->second.mtime, st.st_mtim))
      return it->second.names;
  }
  auto names = std::make_shared<DirectoryNames>();
  if (!ForEachName(dir_fd, [&](std::string_view candidate) {
        names->emplace(UpcaseName(candidate), std::string(candidate));  // the first one wins
        return false;
      }))
    return nullptr;
  std::unique_lock lock(cache_mutex_);
  if (auto it = cache_.find(id); it != cache_.end()) {
    cached_names_ -= it->second.names->size();
    cache_.erase(it);
  }
  if (cached_names_ + names->size() > options_.max_cached_names) {
    cache_.clear();
    cached_names_ = 0;
  }
  cached_names_ += names->size();
  cache_[id] = CachedDirectory{st.st_ctim, st.st_mtim, names};
  return names;
}

}  // namespace strata::fsfilter
