// strata-fsfilter's command line: the fuse-overlayfs and mount.fuse3 forms.
#include <gtest/gtest.h>

#include "fsfilter/mount_options.h"

namespace strata::fsfilter {
namespace {

TEST(CommandLineTest, FuseOverlayfsForm) {
  auto line = ParseCommandLine({"-o", "lowerdir=/a:/b\\:c,upperdir=/u,workdir=/w", "/mnt"});
  ASSERT_TRUE(line.has_value()) << line.error().ToString();
  ASSERT_EQ(line->layers.lower_dirs.size(), 2u);
  EXPECT_EQ(line->layers.lower_dirs[0], "/a");
  EXPECT_EQ(line->layers.lower_dirs[1], "/b:c");
  EXPECT_EQ(line->layers.upper_dir, "/u");
  EXPECT_EQ(line->layers.work_dir, "/w");
  EXPECT_EQ(line->mount.mountpoint, "/mnt");
  EXPECT_FALSE(line->foreground);
}

TEST(CommandLineTest, MountHelperFormAndCompatibilityOptions) {
  auto line = ParseCommandLine({"overlay", "/mnt", "-o",
                                "rw,dev,suid,nosuid,allow_other,default_permissions,noatime,threaded=1,fsync=0,"
                                "lowerdir=/l,x-systemd.automount",
                                "-f"});
  ASSERT_TRUE(line.has_value()) << line.error().ToString();
  EXPECT_EQ(line->mount.fsname, "overlay");
  EXPECT_EQ(line->mount.mountpoint, "/mnt");
  EXPECT_TRUE(line->mount.allow_other);
  EXPECT_TRUE(line->foreground);
  EXPECT_TRUE(line->layers.upper_dir.empty());
  EXPECT_EQ(line->mount.mount_flags, (std::vector<std::string>{"dev", "suid", "nosuid", "noatime"}));
}

TEST(CommandLineTest, ErrorsNameTheOffender) {
  auto unknown = ParseCommandLine({"-o", "lowerdir=/l,bogus=1", "/mnt"});
  ASSERT_FALSE(unknown.has_value());
  EXPECT_NE(unknown.error().message().find("bogus=1"), std::string::npos);
  auto unsupported = ParseCommandLine({"-o", "lowerdir=/l,squash_to_root", "/mnt"});
  ASSERT_FALSE(unsupported.has_value());
  EXPECT_NE(unsupported.error().message().find("squash_to_root"), std::string::npos);
  EXPECT_NE(ParseCommandLine({"-o", "lowerdir=/l"}).error().message().find("mount point"), std::string::npos);
  EXPECT_NE(ParseCommandLine({"/mnt"}).error().message().find("lowerdir"), std::string::npos);
  EXPECT_NE(ParseCommandLine({"-o", "lowerdir=/l,upperdir=/u", "/mnt"}).error().message().find("workdir"),
            std::string::npos);
  EXPECT_NE(ParseCommandLine({"-o", "lowerdir=/a::/b", "/mnt"}).error().message().find("empty"), std::string::npos);
}

}  // namespace
}  // namespace strata::fsfilter
