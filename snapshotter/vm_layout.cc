#include "snapshotter/vm_layout.h"

#include <sys/stat.h>
#include <unistd.h>

#include <system_error>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "archive/apply.h"
#include "archive/diff.h"
#include "base/byte_pipe.h"
#include "base/file.h"
#include "base/mounts.h"
#include "snapshotter/erofs_layer.h"
#include "snapshotter/loop_mount.h"
#include "snapshotter/scratch_disk.h"

namespace strata::snapshotter {

namespace fs = std::filesystem;

namespace {

std::string Template(size_t index) { return fmt::format("{{{{ mount {} }}}}", index); }

// `text` with every "{{ mount N }}" replaced by where mount N went.
Result<std::string> FillTemplates(const std::string& text, const std::vector<fs::path>& mounted) {
  std::string out;
  size_t pos = 0;
  while (true) {
    const size_t open = text.find("{{", pos);
    if (open == std::string::npos) break;
    const size_t close = text.find("}}", open);
    if (close == std::string::npos) break;
    out.append(text, pos, open - pos);
    std::string inner = text.substr(open + 2, close - open - 2);
    unsigned index = 0;
    if (std::sscanf(inner.c_str(), " mount %u ", &index) != 1 || index >= mounted.size()) {
      return Fail(ErrorCode::kInvalidArgument, "mount option {:?}: template {{{{{}}}}} names no earlier mount", text,
                  inner);
    }
    out += mounted[index].string();
    pos = close + 2;
  }
  out.append(text, pos);
  return out;
}

bool IsMountPoint(const fs::path& dir) {
  struct stat st {}, parent {};
  return ::stat(dir.c_str(), &st) == 0 && ::stat(dir.parent_path().c_str(), &parent) == 0 && st.st_dev != parent.st_dev;
}

bool HasOption(const Mount& mount, std::string_view option) {
  return std::find(mount.options.begin(), mount.options.end(), option) != mount.options.end();
}

// Mounts one of VmMountsFor's mounts on `target`.
Status MountOne(const Mount& mount, const std::vector<fs::path>& mounted, const fs::path& target) {
  if (mount.type.starts_with(kFormatMountPrefix)) {
    Mount filled{.type = mount.type.substr(kFormatMountPrefix.size())};
    STRATA_ASSIGN_OR_RETURN(filled.source, FillTemplates(mount.source, mounted));
    for (const std::string& option : mount.options) {
      STRATA_ASSIGN_OR_RETURN(std::string value, FillTemplates(option, mounted));
      filled.options.push_back(std::move(value));
    }
    return MountAt(filled, target);
  }
  if (HasOption(mount, "loop")) {
    const bool read_only = HasOption(mount, "ro");
    return MountLoopImage(mount.source, mount.type, target,
                          {.read_only_device = read_only, .read_only_mount = read_only});
  }
  return MountAt(mount, target);
}

}  // namespace

Result<std::vector<Mount>> VmMountsFor(const OverlayLayout& layout, const SnapshotStore& records,
                                       const SnapshotRecord& record) {
  const SnapshotInfo& info = record.info;
  if (info.kind == Kind::kCommitted) {
    return Fail(ErrorCode::kFailedPrecondition, "snapshot {:?} is committed: only active and view snapshots mount",
                info.name);
  }
  const bool view = info.kind == Kind::kView;
  std::vector<Mount> mounts;
  // The parents' layer images, nearest first (the order of lowerdir=).
  std::vector<LayerImageSource> parents;
  std::string parent = info.parent;
  for (uint64_t id : record.parent_ids) {
    STRATA_ASSIGN_OR_RETURN(SnapshotRecord layer, records.Get(parent));
    if (layer.id != id) {
      return Fail(ErrorCode::kInternal, "snapshot {:?}: parent chain changed while listing it", info.name);
    }
    parents.push_back({.snapshot_dir = layout.SnapshotDir(id), .uuid_seed = layer.info.name});
    parent = layer.info.parent;
  }
  STRATA_ASSIGN_OR_RETURN(std::vector<fs::path> images, EnsureLayerImages(parents));
  for (const fs::path& image : images) mounts.push_back({.type = "erofs", .source = image.string(), .options = {"ro", "loop"}});
  const size_t layers = mounts.size();
  if (view) {
    if (layers == 0) return std::vector<Mount>{{.type = "bind", .source = layout.FsDir(record.id).string(), .options = {"ro", "rbind"}}};
    if (layers == 1) return mounts;
  } else {
    const fs::path scratch = layout.SnapshotDir(record.id) / kScratchImageName;
    if (!fs::exists(scratch)) {
      return Fail(ErrorCode::kNotFound, "snapshot {:?}: scratch disk {} is missing", info.name, scratch.string());
    }
    mounts.push_back({.type = "ext4", .source = scratch.string(), .options = {"rw", "loop"}});
    if (layers == 0) {
      mounts.push_back({.type = "format/bind", .source = Template(0) + "/upper", .options = {"rw", "rbind"}});
      return mounts;
    }
  }
  std::string lower = "lowerdir=";
  for (size_t i = 0; i < layers; ++i) lower += (i == 0 ? "" : ":") + Template(i);
  Mount overlay{.type = "format/overlay", .source = "overlay"};
  if (view) {
    overlay.options = {"ro", lower};
  } else {
    overlay.options = {"upperdir=" + Template(layers) + "/upper", "workdir=" + Template(layers) + "/work", lower};
  }
  mounts.push_back(std::move(overlay));
  return mounts;
}

Status PrepareVmScratch(const OverlayLayout& layout, const SnapshotRecord& record, uint64_t bytes) {
  return CreateScratchDisk(layout.SnapshotDir(record.id) / kScratchImageName, bytes);
}

Status MountVmComposition(const std::vector<Mount>& mounts, const fs::path& staging_dir, const fs::path& target) {
  if (mounts.empty()) return Fail(ErrorCode::kInvalidArgument, "mount on {}: no mounts", target.string());
  std::vector<fs::path> mounted;
  auto composed = [&]() -> Status {
    if (mounts.size() > 1 && ::mkdir(staging_dir.c_str(), 0700) != 0 && errno != EEXIST) {
      return ErrnoFail(errno, "mkdir", staging_dir);
    }
    for (size_t i = 0; i + 1 < mounts.size(); ++i) {
      const fs::path at = staging_dir / std::to_string(i);
      if (::mkdir(at.c_str(), 0700) != 0 && errno != EEXIST) return ErrnoFail(errno, "mkdir", at);
      STRATA_RETURN_IF_ERROR(MountOne(mounts[i], mounted, at));
      mounted.push_back(at);
    }
    return MountOne(mounts.back(), mounted, target);
  }();
  if (!composed) (void)UnmountVmStaging(staging_dir);
  return composed;
}

Status UnmountVmStaging(const fs::path& staging_dir) {
  std::error_code ec;
  if (!fs::exists(staging_dir, ec)) return {};
  STRATA_ASSIGN_OR_RETURN(std::vector<fs::path> points, MountPointsAtOrBeneath(staging_dir));
  for (const fs::path& point : points) {  // deepest first
    Status status = UnmountAt(point);
    if (!status && status.error().code() != ErrorCode::kNotFound) return status;
  }
  fs::remove_all(staging_dir, ec);
  if (ec) return Fail(ErrorCode::kInternal, "remove {}: {}", staging_dir.string(), ec.message());
  return {};
}

Status WithScratchUpper(const OverlayLayout& layout, const SnapshotRecord& record,
                        const std::function<Status(const fs::path& upper)>& fn) {
  const fs::path dir = layout.SnapshotDir(record.id);
  const fs::path scratch = dir / kScratchImageName;
  if (!fs::exists(scratch)) {
    return Fail(ErrorCode::kNotFound, "snapshot {:?} has no scratch disk {}", record.info.name, scratch.string());
  }
  // The host composition mounts the scratch disk right after the k layers.
  const fs::path host_mounted = dir / kVmStagingDirName / std::to_string(record.parent_ids.size());
  if (IsMountPoint(host_mounted)) return fn(host_mounted / "upper");
  const fs::path at = dir / ".scratch-read";
  if (::mkdir(at.c_str(), 0700) != 0 && errno != EEXIST) return ErrnoFail(errno, "mkdir", at);
  STRATA_RETURN_IF_ERROR(MountLoopImage(scratch, "ext4", at, {.read_only_device = false, .read_only_mount = true}));
  Status result = fn(at / "upper");
  Status unmounted = UnmountAt(at);
  ::rmdir(at.c_str());
  if (!result) return result;
  return unmounted;
}

Status CopyScratchChanges(const OverlayLayout& layout, const SnapshotRecord& record) {
  const fs::path fs_dir = layout.FsDir(record.id);
  return WithScratchUpper(layout, record, [&](const fs::path& upper) -> Status {
    BytePipe pipe;
    Status diffed;
    std::thread producer([&] {
      auto stats = archive::WriteOverlayDiff(upper, [&](std::string_view bytes) { return pipe.Write(bytes); });
      if (stats) {
        pipe.CloseWrite();
      } else {
        diffed = Fail(stats.error());
        pipe.CloseWrite(diffed);
      }
    });
    auto applied = archive::ApplyLayer(pipe, fs_dir, {.overlay_whiteouts = true});
    if (!applied) pipe.CloseRead(applied.error());
    producer.join();
    if (!diffed) return Fail(diffed.error().WithContext(fmt::format("commit of {:?}: diff of {}", record.info.name, upper.string())));
    if (!applied) return Fail(applied.error().WithContext(fmt::format("commit of {:?}: copy into {}", record.info.name, fs_dir.string())));
    return {};
  });
}

}  // namespace strata::snapshotter
