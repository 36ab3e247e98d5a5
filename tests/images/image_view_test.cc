// ImageView (strata ls / cat): an image's files read in-process through fsfilter's union
// engine must be what a kernel overlayfs mount of the same image shows, entry for entry
// (the every-entry-kind image: whiteouts, an opaque dir, hard links, devices, xattrs,
// mtimes); paths resolve like a chroot's (symlinks inside the image, ".." stops at its
// root) and bad paths get errors naming them. With --driver fsfilter, a mount made by
// strata-fsfilter shows the same tree.
#include "images/image_view.h"

#include <sys/sysmacros.h>

#include <cstdlib>
#include <map>

#include <gtest/gtest.h>

#include "base/digest.h"
#include "tests/images/unpack_fixture.h"
#include "tests/support/assertions.h"
#include "tests/support/every_kind_image.h"
#include "tests/support/http_client.h"
#include "tests/support/image_builder.h"
#include "tests/support/tree_compare.h"

namespace strata::images {
namespace {

namespace fs = std::filesystem;
using test_support::TreeEntry;

class ImageViewTest : public UnpackFixture {
 protected:
  ImageViewTest() : UnpackFixture("strata-image-view") {}
  void SetUpStrata() override {
    MakeFastResolver(4);
    OpenRoot(strata_, "store");
  }

  Result<std::unique_ptr<ImageView>> OpenView(const std::string& name) {
    return ImageView::Open(*strata_.store, *strata_.snapshots, name, MountOptions{});
  }

  // Every entry of the view as ScanTree would list a mount of it (hard-link groups by the
  // view's st_ino), read only through ImageView.
  static void Walk(const ImageView& view, const std::string& rel, std::vector<TreeEntry>& out,
                   std::map<ino_t, std::vector<size_t>>& inodes) {
    const std::string path = rel == "." ? "/" : rel;
    ASSERT_OK_AND_ASSIGN(ImageView::Entry entry, view.Stat(path, /*follow_last=*/false));
    TreeEntry tree{.path = rel, .type = test_support::TreeEntryType(entry.st.st_mode),
                   .mode = static_cast<uint32_t>(entry.st.st_mode & 07777), .uid = entry.st.st_uid,
                   .gid = entry.st.st_gid};
    tree.mtime_ns = static_cast<int64_t>(entry.st.st_mtim.tv_sec) * 1'000'000'000 + entry.st.st_mtim.tv_nsec;
    if (tree.type == 'f') {
      tree.size = static_cast<uint64_t>(entry.st.st_size);
      Digester digester;
      ASSERT_OK(view.Read(path, [&](std::string_view chunk) -> Status {
        digester.Update(chunk);
        return {};
      }));
      tree.content_sha256 = digester.Finish().hex();
    } else if (tree.type == 'l') {
      tree.symlink_target = entry.symlink_target;
    } else if (tree.type == 'c' || tree.type == 'b') {
      tree.rdev_major = major(entry.st.st_rdev);
      tree.rdev_minor = minor(entry.st.st_rdev);
    }
    ASSERT_OK_AND_ASSIGN(tree.xattrs, view.Xattrs(path));
    std::erase_if(tree.xattrs, [](const auto& kv) { return kv.first.starts_with("security.selinux"); });
    if (tree.type != 'd') inodes[entry.st.st_ino].push_back(out.size());
    out.push_back(tree);
    if (tree.type != 'd') return;
    ASSERT_OK_AND_ASSIGN(std::vector<ImageView::Entry> children, view.List(path));
    for (const ImageView::Entry& child : children) {
      ASSERT_NO_FATAL_FAILURE(Walk(view, rel == "." ? child.name : rel + "/" + child.name, out, inodes));
    }
  }

  static std::vector<TreeEntry> Scan(const ImageView& view) {
    std::vector<TreeEntry> entries;
    std::map<ino_t, std::vector<size_t>> inodes;
    Walk(view, ".", entries, inodes);
    for (const auto& [ino, indexes] : inodes) {
      if (indexes.size() < 2) continue;
      std::string leader = entries[indexes[0]].path;
      for (size_t index : indexes) leader = std::min(leader, entries[index].path);
      for (size_t index : indexes) entries[index].hardlink_group = leader;
    }
    std::ranges::sort(entries, {}, &TreeEntry::path);
    return entries;
  }

  StrataRoot strata_;
};

TEST_F(ImageViewTest, InProcessViewEqualsTheKernelMountEntryForEntry) {
  ASSERT_OK_AND_ASSIGN(auto every_kind, test_support::BuildEveryKindImage());
  test_support::TestHttpClient http(registry_->ClientOptions());
  ASSERT_OK(test_support::PushImage(http, registry_->url(), "every/kind", "1", every_kind.image));
  const std::string name = registry_->host() + "/every/kind:1";
  // Fetch only: the view unpacks what no pull did, as mount does.
  ASSERT_OK(PullInto(strata_, name, /*unpack=*/false));

  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ImageView> view, OpenView(name));
  EXPECT_EQ(view->layers(), 3u);
  std::vector<TreeEntry> ours;
  ASSERT_NO_FATAL_FAILURE(ours = Scan(*view));
  ASSERT_NO_FATAL_FAILURE(test_support::ExpectEveryKindCases(ours));

  MountGuard guard;
  ASSERT_OK(MountAt(strata_, guard, name, "merged"));
  const test_support::TreeCompareOptions options{.compare_mtimes = true, .compare_dir_mtimes = true};
  ASSERT_OK_AND_ASSIGN(std::vector<TreeEntry> kernel, test_support::ScanTree(root_->path() / "merged", options));
  const std::vector<std::string> differences = test_support::CompareEntries(ours, kernel, options);
  EXPECT_TRUE(differences.empty()) << "in-process view (A) vs kernel overlay mount (B):\n"
                                   << fmt::format("{}", fmt::join(differences, "\n"));
}

TEST_F(ImageViewTest, PathsResolveInsideTheImageAndBadPathsAreNamed) {
  ASSERT_OK_AND_ASSIGN(auto base, test_support::LayerBuilder()
                                      .File("etc/os-release", "ID=strata\n")
                                      .Dir("usr/lib")
                                      .File("usr/lib/data", "lib data\n")
                                      .Symlink("lib", "usr/lib")
                                      .Symlink("abs", "/etc/os-release")
                                      .Symlink("up", "../../../etc")
                                      .Symlink("loop", "loop")
                                      .File("gone", "x")
                                      .Build());
  ASSERT_OK_AND_ASSIGN(auto top, test_support::LayerBuilder().Whiteout("gone").File("new", "new\n").Build());
  test_support::ImageBuilder builder;
  builder.AddLayer(base);
  builder.AddLayer(top);
  ASSERT_OK(builder.PushTo(*registry_, "paths", "1"));
  const std::string name = registry_->host() + "/paths:1";
  ASSERT_OK(PullInto(strata_, name));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ImageView> view, OpenView(name));

  auto read = [&](std::string_view path) -> Result<std::string> {
    std::string content;
    STRATA_RETURN_IF_ERROR(view->Read(path, [&](std::string_view chunk) -> Status {
      content.append(chunk);
      return {};
    }));
    return content;
  };
  EXPECT_EQ(read("/etc/os-release").value_or("?"), "ID=strata\n");
  EXPECT_EQ(read("lib/data").value_or("?"), "lib data\n");          // through a relative symlink
  EXPECT_EQ(read("/abs").value_or("?"), "ID=strata\n");             // an absolute target stays inside
  EXPECT_EQ(read("up/os-release").value_or("?"), "ID=strata\n");    // ".." stops at the image's root
  EXPECT_EQ(read("../../etc/os-release").value_or("?"), "ID=strata\n");
  EXPECT_EQ(read("new").value_or("?"), "new\n");

  ASSERT_OK_AND_ASSIGN(ImageView::Entry link, view->Stat("lib", /*follow_last=*/false));
  EXPECT_TRUE(S_ISLNK(link.st.st_mode));
  EXPECT_EQ(link.symlink_target, "usr/lib");
  ASSERT_OK_AND_ASSIGN(ImageView::Entry followed, view->Stat("lib", /*follow_last=*/true));
  EXPECT_TRUE(S_ISDIR(followed.st.st_mode));

  ASSERT_OK_AND_ASSIGN(std::vector<ImageView::Entry> root, view->List("/"));
  std::vector<std::string> names;
  for (const auto& entry : root) names.push_back(entry.name);
  EXPECT_EQ(names, (std::vector<std::string>{"abs", "etc", "lib", "loop", "new", "up", "usr"}));  // "gone" is whited out

  auto gone = view->Stat("gone", false);
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(gone.error().message().find("gone: No such file or directory"), std::string::npos) << gone.error().message();
  auto through_file = view->Stat("etc/os-release/x", false);
  ASSERT_FALSE(through_file);
  EXPECT_EQ(through_file.error().code(), ErrorCode::kInvalidArgument);
  auto looping = read("loop");
  ASSERT_FALSE(looping);
  EXPECT_NE(looping.error().message().find("loop: Too many levels of symbolic links"), std::string::npos)
      << looping.error().message();
  auto directory = read("usr");
  ASSERT_FALSE(directory);
  EXPECT_NE(directory.error().message().find("usr: not a regular file"), std::string::npos) << directory.error().message();
  auto not_dir = view->List("etc/os-release");
  ASSERT_FALSE(not_dir);
  EXPECT_EQ(not_dir.error().code(), ErrorCode::kInvalidArgument);

  auto unknown = OpenView(registry_->host() + "/never/pulled:1");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code(), ErrorCode::kNotFound);
}

// `strata mount --driver fsfilter`: the same image mounted by strata-fsfilter (FUSE) shows
// what the kernel mount shows.
TEST_F(ImageViewTest, FsfilterMountOfAnImageEqualsTheKernelMount) {
  const fs::path bin_dir = fs::path(STRATA_BIN_DIR);
  if (!fs::exists(bin_dir / "strata-fsfilter")) GTEST_SKIP() << "strata-fsfilter is not built in " << bin_dir;
  const std::string path = bin_dir.string() + ":" + (std::getenv("PATH") ? std::getenv("PATH") : "/usr/bin:/bin");
  ::setenv("PATH", path.c_str(), 1);  // MountAt finds the FUSE program in PATH

  ASSERT_OK_AND_ASSIGN(auto every_kind, test_support::BuildEveryKindImage());
  test_support::TestHttpClient http(registry_->ClientOptions());
  ASSERT_OK(test_support::PushImage(http, registry_->url(), "every/kind", "1", every_kind.image));
  const std::string name = registry_->host() + "/every/kind:1";
  ASSERT_OK(PullInto(strata_, name));

  MountGuard kernel_guard, fuse_guard;
  ASSERT_OK(MountAt(strata_, kernel_guard, name, "kernel"));
  fs::create_directories(root_->path() / "fuse");
  ASSERT_OK_AND_ASSIGN(MountedImage mounted,
                       MountImage(*strata_.store, *strata_.snapshots, name, root_->path() / "fuse",
                                  MountOptions{.union_mount = snapshotter::UnionMount::kFsfilter}));
  fuse_guard.snapshots = strata_.snapshots.get();
  fuse_guard.dir = root_->path() / "fuse";
  ASSERT_EQ(mounted.mounts.size(), 1u);
  EXPECT_EQ(mounted.mounts[0].type, "fuse3.strata-fsfilter");
  const test_support::TreeCompareOptions options{.compare_mtimes = true, .compare_dir_mtimes = true};
  EXPECT_TRUE(test_support::TreesEqual(root_->path() / "fuse", root_->path() / "kernel", options));
}

}  // namespace
}  // namespace strata::images
