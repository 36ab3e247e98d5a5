// An image's merged root filesystem read in-process through fsfilter's union engine — what
// `strata ls` and `strata cat` show: no mount, so nothing beyond read access to the store
// is needed, and nothing is left mounted. The view is what a read-only mount of the image
// shows (whiteouts and opaque directories applied, overlay xattrs hidden).
#pragma once

#include <sys/stat.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "images/image_mount.h"

namespace strata::fsfilter {
class UnionFilesystem;
struct Node;
}  // namespace strata::fsfilter

namespace strata::images {

class ImageView {
 public:
  struct Entry {
    std::string name;            // the last path component ("/" for the root)
    struct stat st {};           // as the view reports it (lstat semantics)
    std::string symlink_target;  // symlinks only
  };

  // The view of image `image_name` for options.platform (options.writable and
  // options.union_mount are ignored). Layers no pull unpacked are unpacked first, as
  // `strata mount` does. A Windows image shows fsfilter's Windows layer view (its merged
  // Files/ trees, case-insensitive; fsfilter/windows_view.h). NotFound for an unknown image
  // or platform.
  static Result<std::unique_ptr<ImageView>> Open(store::Store& store, snapshotter::OverlaySnapshotter& snapshots,
                                                 const std::string& image_name, const MountOptions& options);
  ~ImageView();
  ImageView(const ImageView&) = delete;
  ImageView& operator=(const ImageView&) = delete;

  const StoredManifest& manifest() const { return manifest_; }
  size_t layers() const { return layers_; }

  // Paths are taken relative to the image's root whether or not they start with "/".
  // Symlinks on the way are followed inside the image (an absolute target starts at the
  // image's root; ".." never climbs above it), the last component's only when
  // `follow_last`. Errors name the path: NotFound (no such entry), InvalidArgument (a
  // non-directory on the way, or more than 40 symlinks).
  Result<Entry> Stat(std::string_view path, bool follow_last) const;
  // The entries of directory `path` (symlinks followed), sorted by name, "." and ".." left
  // out. InvalidArgument when it is not a directory.
  Result<std::vector<Entry>> List(std::string_view path) const;
  // Streams the regular file at `path` (symlinks followed) to `sink`, in chunks.
  // InvalidArgument when it is not a regular file; the sink's error stops the read.
  Status Read(std::string_view path, const std::function<Status(std::string_view)>& sink) const;
  // The extended attributes of the entry at `path` (not following a last symlink).
  Result<std::map<std::string, std::string>> Xattrs(std::string_view path) const;

 private:
  class NodeRef;
  ImageView() = default;
  Result<NodeRef> Resolve(std::string_view path, bool follow_last) const;
  Result<Entry> Describe(const NodeRef& node, std::string name, std::string_view path) const;

  std::unique_ptr<fsfilter::UnionFilesystem> union_;
  StoredManifest manifest_;
  size_t layers_ = 0;
};

}  // namespace strata::images
