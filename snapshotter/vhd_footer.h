// The fixed VHD footer: 512 bytes appended to a raw disk image so Hyper-V tooling (and
// tar2ext4-style consumers, qemu's "vpc" driver) accept it as a fixed VHD, the data
// unchanged before it. Layout: ../shared/reference/windows-layers.md ("Fixed VHD footer").
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>

#include "base/error.h"

namespace strata::snapshotter {

inline constexpr size_t kVhdFooterSize = 512;

struct VhdFooter {
  uint64_t data_size = 0;              // original = current size: the bytes before the footer
  uint32_t timestamp = 0;              // seconds since 2000-01-01 UTC (0, as hcsshim writes)
  std::array<uint8_t, 16> unique_id{};  // random per image
};

// Cylinders/heads/sectors per track as the VHD specification derives them from the size
// (capped at 65535/16/255). Hyper-V reads the size fields and ignores it; Virtual PC-era
// readers (qemu's vpc driver, unless told force_size_calc=current_size) size the disk by
// it, which rounds down to whole cylinders.
struct VhdGeometry {
  uint16_t cylinders = 0;
  uint8_t heads = 0;
  uint8_t sectors_per_track = 0;
  uint64_t Bytes() const { return uint64_t{cylinders} * heads * sectors_per_track * 512; }
};
VhdGeometry VhdGeometryFor(uint64_t data_size);

// The 512 footer bytes of `footer` (big-endian fields, disk type fixed, the geometry from
// the size, checksum set).
std::array<uint8_t, kVhdFooterSize> EncodeVhdFooter(const VhdFooter& footer);

// Parses a fixed-disk footer. InvalidArgument naming what is wrong: cookie, file format
// version, disk type other than fixed, a data offset other than -1, or a checksum mismatch.
Result<VhdFooter> DecodeVhdFooter(const std::array<uint8_t, kVhdFooterSize>& bytes);

// Appends a footer (random unique id) to the raw image at `path`, whose size must be a
// multiple of 512 (InvalidArgument otherwise), and fsyncs it. AlreadyExists when the file
// already ends with a valid fixed VHD footer describing the bytes before it.
Status AppendVhdFooter(const std::filesystem::path& path);

// The footer at the end of `path`, checked against the file size (the data size must be
// the file size minus 512). InvalidArgument for a file without a valid one.
Result<VhdFooter> ReadVhdFooter(const std::filesystem::path& path);

// Creates `path` (which must not exist: AlreadyExists) as a sparse fixed VHD with
// `data_size` zero bytes of data (a multiple of 512) — an unformatted scratch disk that
// takes no space until written. Written to a temp name and renamed: a crash leaves no
// half-made disk under `path`.
Status CreateSparseFixedVhd(const std::filesystem::path& path, uint64_t data_size);

}  // namespace strata::snapshotter
