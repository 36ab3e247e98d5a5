// The seam through which every name in the union view is matched: lookup asks it which
// entry of a layer directory a requested name refers to, and readdir merges layers by its
// key. The default matches bytes exactly (Linux semantics). A case-folding filter for
// Windows layers (NTFS-style case-insensitive lookup, one merged entry per folded name)
// plugs in here without touching lookup, whiteouts or copy-up.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace strata::fsfilter {

class NameFilter {
 public:
  virtual ~NameFilter() = default;

  // The on-disk name in the layer directory `dir_fd` that `name` refers to, or nullopt
  // when no entry can match (the caller then treats the name as absent in that layer).
  // May read the directory; must not follow symlinks. Thread-safe.
  virtual std::optional<std::string> MatchInLayer(int dir_fd, std::string_view name) const = 0;

  // The key under which readdir merges entries of different layers and whiteouts hide
  // lower entries: two names with the same key are the same entry of the merged view.
  virtual std::string MergeKey(std::string_view name) const = 0;

  // True when MatchInLayer returns `name` unchanged for every directory (lets lookup skip
  // the call and stat `name` directly).
  virtual bool IsIdentity() const { return false; }
};

// Byte-exact names: MatchInLayer returns the name itself, MergeKey is the name.
class ExactNameFilter final : public NameFilter {
 public:
  std::optional<std::string> MatchInLayer(int, std::string_view name) const override { return std::string(name); }
  std::string MergeKey(std::string_view name) const override { return std::string(name); }
  bool IsIdentity() const override { return true; }
};

}  // namespace strata::fsfilter
