// NTFS-style names for Windows layer views: case-insensitive, case-preserving. Two names are
// the same entry when their upper-cased forms are equal (NTFS compares through its upcase
// table; we use the Unicode simple 1:1 uppercase mappings of U+0000..U+052F: ASCII, Latin-1,
// Latin Extended-A/B, IPA, Greek, Cyrillic; no locale, no multi-character mappings, so "ß"
// stays "ß"). Bytes that are not valid UTF-8 are kept as they are.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <map>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "fsfilter/name_filter.h"

namespace strata::fsfilter {

// `name` with every code point in the ranges above upper-cased; other bytes unchanged.
std::string UpcaseName(std::string_view name);

class CaseFoldingNameFilter final : public NameFilter {
 public:
  struct Options {
    // Remember each scanned directory's key -> name map, keyed by (st_dev, st_ino) and
    // checked against the directory's ctime/mtime on every use. REQUIRES: the layer dirs
    // are not modified while the view is open (ctime has coarse granularity), as for the
    // read-only lowers of a Windows layer view.
    bool cache_directories = false;
    // Cached names in total; past it the cache starts over.
    size_t max_cached_names = 1 << 20;
  };

  CaseFoldingNameFilter() : CaseFoldingNameFilter(Options{}) {}
  explicit CaseFoldingNameFilter(Options options);
  ~CaseFoldingNameFilter() override;

  // `name` itself when it exists (lstat), else the first entry of the directory (readdir
  // order; ".wh." names excepted) whose key equals UpcaseName(name); nullopt when none.
  std::optional<std::string> MatchInLayer(int dir_fd, std::string_view name) const override;
  std::string MergeKey(std::string_view name) const override { return UpcaseName(name); }

 private:
  using DirectoryNames = std::unordered_map<std::string, std::string>;  // key -> on-disk name
  struct CachedDirectory {
    struct timespec ctime{};
    struct timespec mtime{};
    std::shared_ptr<const DirectoryNames> names;
  };

  // The key -> name map of `dir_fd`, from the cache when valid. Null when unreadable.
  std::shared_ptr<const DirectoryNames> NamesOf(int dir_fd) const;

  Options options_;
  mutable std::shared_mutex cache_mutex_;
  mutable std::map<std::pair<dev_t, ino_t>, CachedDirectory> cache_;
  mutable size_t cached_names_ = 0;
};

}  // namespace strata::fsfilter
