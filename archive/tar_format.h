// The ustar header layout (POSIX.1-2001), shared by the tar reader and writer. Internal to
// archive/.
#pragma once

#include <cstddef>

namespace strata::archive::tar_format {

inline constexpr size_t kBlockSize = 512;

// Offset and width of one header field.
struct Field {
  size_t offset;
  size_t width;
};
inline constexpr Field kName{0, 100};
inline constexpr Field kMode{100, 8};
inline constexpr Field kUid{108, 8};
inline constexpr Field kGid{116, 8};
inline constexpr Field kSize{124, 12};
inline constexpr Field kMtime{136, 12};
inline constexpr Field kChecksum{148, 8};
inline constexpr Field kTypeflag{156, 1};
inline constexpr Field kLinkname{157, 100};
inline constexpr Field kMagic{257, 6};
inline constexpr Field kVersion{263, 2};
inline constexpr Field kUname{265, 32};
inline constexpr Field kGname{297, 32};
inline constexpr Field kDevmajor{329, 8};
inline constexpr Field kDevminor{337, 8};
inline constexpr Field kPrefix{345, 155};

}  // namespace strata::archive::tar_format
