// The three-layer "every entry kind" image that our unpack (apply + overlay snapshotter, or a
// whole pull) is compared against umoci with: every entry kind and odd names, then
// modifications, replacements, whiteouts and an opaque dir, then type replacements both
// ways and a new hard-link group. Each layer stamps its own mtime, so a view showing the
// wrong layer's entry shows in mtimes too.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "tests/support/image_builder.h"
#include "tests/support/tree_compare.h"

namespace strata::test_support {

inline constexpr int64_t kEveryKindBaseMtime = kDefaultEntryMtime;
inline constexpr int64_t kEveryKindMiddleMtime = kEveryKindBaseMtime + 86'400;
inline constexpr int64_t kEveryKindTopMtime = kEveryKindBaseMtime + 2 * 86'400;

// The three layers (gzip), bottom first, and the image made of them.
struct EveryKindImage {
  std::vector<Layer> layers;
  BuiltImage image;
};
Result<EveryKindImage> BuildEveryKindImage();

// Scans `ours` (a view of the image) and `umoci_rootfs` (umoci's unpack of it) with the
// mtimes of every entry, directories too, and expects them equal except for the root's
// mtime (no layer names "./": umoci leaves rootfs/ at mtime 0, our view shows the top
// snapshot's fs dir as made). `ours_name` names our side in the failure message. Fatal
// failure when a tree cannot be scanned; our entries are left in `ours_entries` (the
// root's mtime set to umoci's).
// Call it with ASSERT_NO_FATAL_FAILURE.
void ExpectSameTreeAsUmoci(const std::filesystem::path& ours, const std::filesystem::path& umoci_rootfs,
                           std::string_view ours_name, std::vector<TreeEntry>& ours_entries);

// The comparison is only as good as what the trees hold: checks that the cases of the
// image really are in `entries`, a scan of a view of it. Call it with ASSERT_NO_FATAL_FAILURE.
void ExpectEveryKindCases(const std::vector<TreeEntry>& entries);

}  // namespace strata::test_support
