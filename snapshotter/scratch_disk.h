// Scratch disks: the writable layer of a VM-isolated container, a sparse ext4 image file
// (snapshots/<id>/scratch.img of its active snapshot) holding upper/ and work/ for the
// guest's overlayfs.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string_view>

#include "base/error.h"
#include "store/types.h"

namespace strata::snapshotter {

inline constexpr std::string_view kScratchImageName = "scratch.img";
// Label of a Prepare asking for a scratch size: bytes, or a number with K/M/G/T (binary units).
inline constexpr std::string_view kLabelScratchSize = "strata.io/scratch-size";
// Sparse, so the default costs a few MiB until the container writes.
inline constexpr uint64_t kDefaultScratchDiskBytes = uint64_t{10} << 30;
inline constexpr uint64_t kMinScratchDiskBytes = uint64_t{16} << 20;

// The size `labels` ask for (kLabelScratchSize), else `fallback`. InvalidArgument naming the
// label's text when it is not a size.
Result<uint64_t> ScratchBytesFromLabels(const store::Labels& labels, uint64_t fallback = kDefaultScratchDiskBytes);

// Creates `image`, a sparse ext4 filesystem of `bytes` (>= kMinScratchDiskBytes and a
// multiple of 4096: InvalidArgument otherwise) whose root (owned 0:0) holds empty upper/ and
// work/ (0755, 0:0). Made by mke2fs -t ext4 -d (nothing is mounted); inode tables are zeroed
// now (lazy_itable_init=0: on a fresh sparse file that is a hole punch, so it costs no space,
// and the guest kernel never starts its lazy-init thread writing them later), the journal is
// not (lazy_journal_init=1: a hole already reads as zeros). Written under a temp name and
// renamed, so `image` is never half-made. Errors name the file and mke2fs' message.
Status CreateScratchDisk(const std::filesystem::path& image, uint64_t bytes);

}  // namespace strata::snapshotter
