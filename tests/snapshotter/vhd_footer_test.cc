// The fixed VHD footer: encoding against the reference layout, validation of damaged
// footers, appending to raw images, sparse scratch disks, and qemu-img (a real VHD reader)
// accepting what we write.
#include "snapshotter/vhd_footer.h"

#include <sys/stat.h>

#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "base/file.h"
#include "base/subprocess.h"
#include "tests/support/assertions.h"

namespace strata::snapshotter {
namespace {

namespace fs = std::filesystem;

uint64_t Big(const std::array<uint8_t, kVhdFooterSize>& b, size_t at, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | b[at + i];
  return v;
}

void WriteBytes(const fs::path& path, const std::string& data) {
  std::ofstream(path, std::ios::binary) << data;
}

std::string Pattern(size_t size) {
  std::string data(size, '\0');
  for (size_t i = 0; i < size; ++i) data[i] = static_cast<char>((i * 131 + i / 512) & 0xff);
  return data;
}

TEST(VhdFooterTest, EncodesTheReferenceLayout) {
  VhdFooter footer{.data_size = 3 * 1024 * 1024, .timestamp = 0, .unique_id = {}};
  for (size_t i = 0; i < footer.unique_id.size(); ++i) footer.unique_id[i] = static_cast<uint8_t>(i + 1);
  const auto bytes = EncodeVhdFooter(footer);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(bytes.data()), 8), "conectix");
  EXPECT_EQ(Big(bytes, 8, 4), 0x00000002u);
  EXPECT_EQ(Big(bytes, 12, 4), 0x00010000u);
  EXPECT_EQ(Big(bytes, 16, 8), 0xFFFFFFFFFFFFFFFFull);
  EXPECT_EQ(Big(bytes, 32, 4), 0x000A0000u);
  EXPECT_EQ(Big(bytes, 40, 8), footer.data_size);
  EXPECT_EQ(Big(bytes, 48, 8), footer.data_size);
  EXPECT_EQ(Big(bytes, 60, 4), 2u);
  EXPECT_EQ(bytes[68], 1);
  EXPECT_EQ(bytes[83], 16);
  EXPECT_EQ(bytes[84], 0);
  // The checksum: one's complement of the sum of every other byte.
  uint32_t sum = 0;
  for (size_t i = 0; i < bytes.size(); ++i) {
    if (i < 64 || i >= 68) sum += bytes[i];
  }
  EXPECT_EQ(Big(bytes, 64, 4), static_cast<uint32_t>(~sum));
  ASSERT_OK_AND_ASSIGN(const VhdFooter decoded, DecodeVhdFooter(bytes));
  EXPECT_EQ(decoded.data_size, footer.data_size);
  EXPECT_EQ(decoded.unique_id, footer.unique_id);
}

TEST(VhdFooterTest, GeometryFollowsTheSpecification) {
  // 3 MiB: 6144 sectors -> 17 sectors/track, 4 heads, 90 cylinders.
  VhdGeometry g = VhdGeometryFor(3 << 20);
  EXPECT_EQ(g.sectors_per_track, 17);
  EXPECT_EQ(g.heads, 4);
  EXPECT_EQ(g.cylinders, 90);
  // 20 GiB: 41943040 sectors -> 63 sectors/track, 16 heads, 41610 cylinders.
  g = VhdGeometryFor(uint64_t{20} << 30);
  EXPECT_EQ(g.sectors_per_track, 63);
  EXPECT_EQ(g.heads, 16);
  EXPECT_EQ(g.cylinders, 41610);
  // Beyond ~127 GiB the geometry is capped.
  g = VhdGeometryFor(uint64_t{1} << 40);
  EXPECT_EQ(g.sectors_per_track, 255);
  EXPECT_EQ(g.heads, 16);
  EXPECT_EQ(g.cylinders, 65535);
}

TEST(VhdFooterTest, DamagedFootersAreNamed) {
  const auto good = EncodeVhdFooter({.data_size = 4096});
  auto flipped = good;
  flipped[100] ^= 1;
  auto result = DecodeVhdFooter(flipped);
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message().find("checksum"), std::string::npos) << result.error().message();
  auto no_cookie = good;
  no_cookie[0] = 'x';
  result = DecodeVhdFooter(no_cookie);
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message().find("cookie"), std::string::npos) << result.error().message();
  auto dynamic = good;
  dynamic[63] = 3;
  result = DecodeVhdFooter(dynamic);
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message().find("not fixed"), std::string::npos) << result.error().message();
}

TEST(VhdFooterTest, AppendKeepsTheDataAndIsRefusedTwice) {
  ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::Create("vhd-test"));
  const fs::path image = dir.path() / "layer.img";
  const std::string data = Pattern(1024 * 1024);
  WriteBytes(image, data);
  ASSERT_OK(AppendVhdFooter(image));
  EXPECT_EQ(fs::file_size(image), data.size() + kVhdFooterSize);
  ASSERT_OK_AND_ASSIGN(const VhdFooter footer, ReadVhdFooter(image));
  EXPECT_EQ(footer.data_size, data.size());
  ASSERT_OK_AND_ASSIGN(const std::string back, ReadFile(image));
  EXPECT_EQ(back.substr(0, data.size()), data);
  const Status again = AppendVhdFooter(image);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), ErrorCode::kAlreadyExists);

  const fs::path odd = dir.path() / "odd.img";
  WriteBytes(odd, std::string(1000, 'x'));
  const Status refused = AppendVhdFooter(odd);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(refused.error().message().find("512"), std::string::npos) << refused.error().message();
  EXPECT_EQ(fs::file_size(odd), 1000u);
  // A footer whose size disagrees with the file is not taken for ours.
  const fs::path truncated = dir.path() / "truncated.img";
  fs::copy_file(image, truncated);
  fs::resize_file(truncated, fs::file_size(truncated) + 512);
  EXPECT_FALSE(ReadVhdFooter(truncated));
}

TEST(VhdFooterTest, SparseScratchDiskTakesNoSpace) {
  ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::Create("vhd-test"));
  const fs::path disk = dir.path() / "sandbox.vhd";
  constexpr uint64_t kSize = uint64_t{20} << 30;  // 20 GiB, Windows' default sandbox size
  ASSERT_OK(CreateSparseFixedVhd(disk, kSize));
  struct stat st{};
  ASSERT_EQ(::stat(disk.c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), kSize + kVhdFooterSize);
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, uint64_t{1} << 20);
  ASSERT_OK_AND_ASSIGN(const VhdFooter footer, ReadVhdFooter(disk));
  EXPECT_EQ(footer.data_size, kSize);
  const Status twice = CreateSparseFixedVhd(disk, kSize);
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error().code(), ErrorCode::kAlreadyExists);
  EXPECT_FALSE(CreateSparseFixedVhd(dir.path() / "bad.vhd", 1000));
  EXPECT_FALSE(fs::exists(dir.path() / "bad.vhd"));
}

TEST(VhdFooterTest, QemuImgReadsItAsAFixedVhd) {
  const auto qemu_img = FindInPath("qemu-img");
  if (!qemu_img) GTEST_SKIP() << "qemu-img not installed (Debian package qemu-utils)";
  ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::Create("vhd-test"));
  const fs::path image = dir.path() / "layer.vhd";
  const std::string data = Pattern(3 * 1024 * 1024);
  WriteBytes(image, data);
  ASSERT_OK(AppendVhdFooter(image));

  // Hyper-V sizes a disk by the footer's current size; qemu does so when told to, and
  // then reads exactly our data.
  const std::string as_hyperv = "driver=vpc,force_size_calc=current_size,file.filename=" + image.string();
  ASSERT_OK_AND_ASSIGN(auto info, RunProgram(*qemu_img, {"qemu-img", "info", "--output=json", "--image-opts", as_hyperv}));
  ASSERT_TRUE(info.Succeeded()) << info.HowItEnded() << ": " << info.err;
  auto json = nlohmann::json::parse(info.out);
  EXPECT_EQ(json.value("format", ""), "vpc");
  EXPECT_EQ(json.value("virtual-size", uint64_t{0}), data.size()) << info.out;

  const fs::path raw = dir.path() / "back.raw";
  ASSERT_OK_AND_ASSIGN(auto convert, RunProgram(*qemu_img, {"qemu-img", "convert", "--image-opts", as_hyperv, "-O",
                                                            "raw", raw.string()}));
  ASSERT_TRUE(convert.Succeeded()) << convert.HowItEnded() << ": " << convert.err;
  ASSERT_OK_AND_ASSIGN(const std::string back, ReadFile(raw));
  EXPECT_TRUE(back == data) << "qemu-img read " << back.size() << " bytes, not the image's data";

  // Left to itself qemu sizes it by the CHS geometry, as Virtual PC did.
  ASSERT_OK_AND_ASSIGN(info, RunProgram(*qemu_img, {"qemu-img", "info", "--output=json", "-f", "vpc", image.string()}));
  ASSERT_TRUE(info.Succeeded()) << info.HowItEnded() << ": " << info.err;
  json = nlohmann::json::parse(info.out);
  const VhdGeometry chs = VhdGeometryFor(data.size());
  EXPECT_EQ(json.value("virtual-size", uint64_t{0}), chs.Bytes()) << info.out;
  EXPECT_LE(chs.Bytes(), data.size());
  EXPECT_GT(chs.Bytes(), data.size() * 9 / 10);
}

}  // namespace
}  // namespace strata::snapshotter
