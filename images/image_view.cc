#include "images/image_view.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <deque>

#include <fmt/format.h>

#include "fsfilter/union_filesystem.h"
#include "fsfilter/windows_view.h"

namespace strata::images {

namespace {

constexpr int kMaxSymlinkHops = 40;  // as the kernel's path walk

// The components of `path`, in order ("" and "." dropped; ".." kept).
std::deque<std::string> Components(std::string_view path) {
  std::deque<std::string> parts;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view part = path.substr(start, end - start);
    if (!part.empty() && part != ".") parts.emplace_back(part);
    start = end + 1;
  }
  return parts;
}

Error PathError(std::string_view path, int errnum) {
  const ErrorCode code = errnum == ENOENT ? ErrorCode::kNotFound
                         : (errnum == ENOTDIR || errnum == ELOOP || errnum == EISDIR || errnum == EINVAL)
                             ? ErrorCode::kInvalidArgument
                             : ErrorCode::kInternal;
  return Error(code, fmt::format("{}: {}", path.empty() ? "/" : path, std::strerror(errnum)));
}

}  // namespace

// One lookup reference on a node of the view, dropped on destruction (the root needs none).
class ImageView::NodeRef {
 public:
  NodeRef(fsfilter::UnionFilesystem* fs, fsfilter::Node* node) : fs_(fs), node_(node) {}
  NodeRef(NodeRef&& other) noexcept : fs_(other.fs_), node_(std::exchange(other.node_, nullptr)) {}
  NodeRef& operator=(NodeRef&& other) noexcept {
    if (this != &other) {
      Drop();
      fs_ = other.fs_;
      node_ = std::exchange(other.node_, nullptr);
    }
    return *this;
  }
  ~NodeRef() { Drop(); }
  fsfilter::Node* get() const { return node_; }

 private:
  void Drop() {
    if (node_ != nullptr) fs_->view().Forget(node_, 1);
    node_ = nullptr;
  }
  fsfilter::UnionFilesystem* fs_;
  fsfilter::Node* node_;
};

ImageView::~ImageView() = default;

Result<std::unique_ptr<ImageView>> ImageView::Open(store::Store& store, snapshotter::OverlaySnapshotter& snapshots,
                                                   const std::string& image_name, const MountOptions& options) {
  STRATA_ASSIGN_OR_RETURN(store::Image image, store.images().Get(image_name));
  std::unique_ptr<ImageView> view(new ImageView());
  STRATA_ASSIGN_OR_RETURN(view->manifest_, ResolveStoredManifest(store.content(), image.target, options.platform));
  STRATA_ASSIGN_OR_RETURN(const LayerFormat format,
                          StoredImageLayerFormat(store.content(), view->manifest_.manifest.config));
  STRATA_ASSIGN_OR_RETURN(std::vector<Digest> chain_ids,
                          UnpackStored(store.content(), snapshots, view->manifest_.manifest, options.limits));
  if (chain_ids.empty()) return Fail(ErrorCode::kFailedPrecondition, "image {} has no layers", image_name);
  view->layers_ = chain_ids.size();
  if (format == LayerFormat::kWindows) {
    STRATA_ASSIGN_OR_RETURN(std::vector<std::filesystem::path> layer_dirs,
                            ChainLayerDirs(snapshots, chain_ids.back().ToString()));
    STRATA_ASSIGN_OR_RETURN(view->union_, fsfilter::OpenWindowsLayerView(layer_dirs));
    return view;
  }
  fsfilter::LayerChainConfig config;
  for (auto it = chain_ids.rbegin(); it != chain_ids.rend(); ++it) {  // topmost first
    STRATA_ASSIGN_OR_RETURN(snapshotter::SnapshotRecord record, snapshots.records().Get(it->ToString()));
    config.lower_dirs.push_back(snapshots.layout().FsDir(record.id));
  }
  STRATA_ASSIGN_OR_RETURN(view->union_, fsfilter::UnionFilesystem::Open(config));
  return view;
}

Result<ImageView::NodeRef> ImageView::Resolve(std::string_view path, bool follow_last) const {
  fsfilter::UnionFilesystem* fs = union_.get();
  std::vector<NodeRef> walked;  // from the root down; empty = at the root
  std::deque<std::string> parts = Components(path);
  int hops = 0;
  while (!parts.empty()) {
    const std::string name = std::move(parts.front());
    parts.pop_front();
    if (name == "..") {
      if (!walked.empty()) walked.pop_back();
      continue;
    }
    fsfilter::Node* parent = walked.empty() ? fs->root() : walked.back().get();
    auto found = fs->view().Lookup(parent, name);
    if (!found) return Fail(PathError(path, found.error()));
    NodeRef child(fs, found->node);
    if (S_ISLNK(found->attr.st_mode) && (!parts.empty() || follow_last)) {
      if (++hops > kMaxSymlinkHops) return Fail(PathError(path, ELOOP));
      auto target = fs->view().ReadLink(child.get());
      if (!target) return Fail(PathError(path, target.error()));
      std::deque<std::string> through = Components(*target);
      parts.insert(parts.begin(), through.begin(), through.end());
      if (target->starts_with('/')) walked.clear();
      continue;
    }
    if (!parts.empty() && !S_ISDIR(found->attr.st_mode)) return Fail(PathError(path, ENOTDIR));
    walked.push_back(std::move(child));
  }
  if (walked.empty()) return NodeRef(fs, nullptr);  // the root
  return std::move(walked.back());
}

Result<ImageView::Entry> ImageView::Describe(const NodeRef& node, std::string name, std::string_view path) const {
  fsfilter::Node* target = node.get() != nullptr ? node.get() : union_->root();
  Entry entry{.name = std::move(name)};
  auto st = union_->view().GetAttr(target);
  if (!st) return Fail(PathError(path, st.error()));
  entry.st = *st;
  if (S_ISLNK(entry.st.st_mode)) {
    auto link = union_->view().ReadLink(target);
    if (!link) return Fail(PathError(path, link.error()));
    entry.symlink_target = std::move(*link);
  }
  return entry;
}

Result<ImageView::Entry> ImageView::Stat(std::string_view path, bool follow_last) const {
  STRATA_ASSIGN_OR_RETURN(NodeRef node, Resolve(path, follow_last));
  std::deque<std::string> parts = Components(path);
  return Describe(node, parts.empty() ? "/" : parts.back(), path);
}

Result<std::vector<ImageView::Entry>> ImageView::List(std::string_view path) const {
  STRATA_ASSIGN_OR_RETURN(NodeRef dir, Resolve(path, /*follow_last=*/true));
  fsfilter::Node* node = dir.get() != nullptr ? dir.get() : union_->root();
  auto names = union_->view().ListDir(node);
  if (!names) return Fail(PathError(path, names.error()));
  std::vector<Entry> entries;
  for (const fsfilter::DirEntry& name : *names) {
    if (name.name == "." || name.name == "..") continue;
    auto found = union_->view().Lookup(node, name.name);
    if (!found) return Fail(PathError(fmt::format("{}/{}", path, name.name), found.error()));
    NodeRef child(union_.get(), found->node);
    STRATA_ASSIGN_OR_RETURN(Entry entry, Describe(child, name.name, path));
    entries.push_back(std::move(entry));
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.name < b.name; });
  return entries;
}

Status ImageView::Read(std::string_view path, const std::function<Status(std::string_view)>& sink) const {
  STRATA_ASSIGN_OR_RETURN(NodeRef file, Resolve(path, /*follow_last=*/true));
  STRATA_ASSIGN_OR_RETURN(Entry entry, Describe(file, "", path));
  if (!S_ISREG(entry.st.st_mode)) {
    return Fail(ErrorCode::kInvalidArgument, "{}: not a regular file", path.empty() ? "/" : path);
  }
  auto fd = union_->Open(file.get(), O_RDONLY);
  if (!fd) return Fail(PathError(path, fd.error()));
  std::string buffer(1 << 20, '\0');
  while (true) {
    const ssize_t got = ::read(fd->get(), buffer.data(), buffer.size());
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return Fail(PathError(path, errno));
    if (got == 0) return {};
    STRATA_RETURN_IF_ERROR(sink(std::string_view(buffer.data(), static_cast<size_t>(got))));
  }
}

Result<std::map<std::string, std::string>> ImageView::Xattrs(std::string_view path) const {
  STRATA_ASSIGN_OR_RETURN(NodeRef node, Resolve(path, /*follow_last=*/false));
  fsfilter::Node* target = node.get() != nullptr ? node.get() : union_->root();
  auto names = union_->view().ListXattr(target, 1 << 16);
  if (!names) return Fail(PathError(path, names.error()));
  std::map<std::string, std::string> xattrs;
  for (size_t start = 0; start < names->size();) {
    const size_t end = names->find('\0', start);
    const std::string name = names->substr(start, end == std::string::npos ? std::string::npos : end - start);
    start = end == std::string::npos ? names->size() : end + 1;
    if (name.empty()) continue;
    auto value = union_->view().GetXattr(target, name, 1 << 16);
    if (!value) return Fail(PathError(fmt::format("{} (xattr {})", path, name), value.error()));
    xattrs[name] = std::move(*value);
  }
  return xattrs;
}

}  // namespace strata::images
