// `strata mount REF DIR [--rw]`, `strata umount DIR`, `strata commit DIR|KEY NEW-REF`: an
// image as a root filesystem, and a container's changes back into an image. While a daemon
// serves the root, mount and umount go through it (commit needs the store to itself).
#include <filesystem>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/app.h"
#include "cli/daemon_client.h"
#include "cli/format.h"
#include "images/commit.h"
#include "images/image_mount.h"
#include "images/windows_container.h"
#include "oci/platform.h"
#include "store/store.h"

namespace strata::cli {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

struct MountArgs {
  std::string image;
  std::string dir;
  bool writable = false;
  std::string platform;
  std::string driver = "overlay";
  std::string isolation = "process";
  std::string scratch_size = "20G";
  std::string target;  // commit: DIR or snapshot key
  std::string new_name;
  std::string compression = "gzip";
  std::string message;
};

void PrintMounted(const MountArgs& args, const GlobalOptions& global, const std::string& name,
                  const std::string& manifest, const std::string& key, size_t layers, bool windows) {
  if (global.json) {
    json out = {{"image", name},
                {"manifest", manifest},
                {"snapshot", key},
                {"target", images::MountTarget(args.dir)},
                {"writable", args.writable},
                {"isolation", args.isolation},
                {"layers", layers}};
    fmt::print("{}\n", JsonText(out));
    return;
  }
  if (args.isolation == "vm" && windows) {
    fmt::print("{}: container layer dir for a VM runtime on {} (layerchain.json over {} layers, sandbox.vhd)\n", name,
               args.dir, layers);
    return;
  }
  if (args.isolation == "vm") {
    fmt::print("{} mounted {} on {} as a VM would see it ({} erofs layer images{})\n", name,
               args.writable ? "read-write" : "read-only", args.dir, layers,
               args.writable ? " + scratch ext4 disk" : "");
    return;
  }
  fmt::print("{} mounted {} on {} ({} layers)\n", name, args.writable ? "read-write" : "read-only", args.dir, layers);
}

void RunMount(const MountArgs& args, const GlobalOptions& global) {
  const std::string name = NormalisedNameOrDie(args.image);
  if (!fs::is_directory(args.dir)) {
    Die(Error(ErrorCode::kInvalidArgument, fmt::format("mount point {} is not a directory", args.dir)));
  }
  images::MountOptions options{.writable = args.writable};
  if (!args.platform.empty()) options.platform = OrDie(oci::Platform::Parse(args.platform));
  options.union_mount = OrDie(snapshotter::ParseUnionMount(args.driver));
  options.isolation = OrDie(images::ParseIsolation(args.isolation));
  options.scratch_bytes = OrDie(ParseByteSize("--scratch-size", args.scratch_size));
  if (auto client = DaemonClient::Find(global)) {  // the daemon mounts (it runs as root)
    strata::v1::MountImageRequest request;
    request.set_image(name);
    request.set_rw(args.writable);
    request.set_isolation(options.isolation == images::Isolation::kVm ? strata::v1::ISOLATION_VM
                                                                      : strata::v1::ISOLATION_PROCESS);
    request.set_scratch_size(options.scratch_bytes);
    // The daemon takes canonical targets only (no symlink it could be redirected through).
    request.set_target(images::MountTarget(std::filesystem::weakly_canonical(std::filesystem::absolute(args.dir))));
    request.set_platform(args.platform);
    request.set_driver(args.driver);
    auto mounted = OrDie(client->Mount(request));
    const bool windows = mounted.mounts_size() > 0 && mounted.mounts(0).type() == images::kWindowsLayerMountType;
    return PrintMounted(args, global, name, mounted.manifest().digest(), mounted.snapshot(), mounted.layers(), windows);
  }
  auto store = OpenStoreOrDie(global);
  auto snapshotter = OpenSnapshotterOrDie(*store);
  auto mounted = OrDie(images::MountImage(*store, *snapshotter, name, args.dir, options));
  const bool windows = !mounted.mounts.empty() && mounted.mounts.front().type == images::kWindowsLayerMountType;
  PrintMounted(args, global, name, mounted.manifest.descriptor.digest.ToString(), mounted.key,
               mounted.chain_ids.size(), windows);
}

void RunCommit(const MountArgs& args, const GlobalOptions& global) {
  const std::string name = NormalisedNameOrDie(args.new_name);
  images::CommitOptions options;
  if (args.compression == "gzip") {
    options.compression = oci::Compression::kGzip;
  } else if (args.compression == "zstd") {
    options.compression = oci::Compression::kZstd;
  } else if (args.compression == "none") {
    options.compression = oci::Compression::kNone;
  } else {
    Die(Error(ErrorCode::kInvalidArgument, fmt::format("--compression {:?}: use gzip, zstd or none", args.compression)));
  }
  if (!args.message.empty()) options.comment = args.message;
  // A directory names the mount strata made there; anything else is a snapshot key.
  const std::string key = fs::is_directory(args.target) ? images::MountKey(args.target) : args.target;
  auto store = OpenStoreOrDie(global);
  auto snapshotter = OpenSnapshotterOrDie(*store);
  auto committed = OrDie(images::CommitContainer(*store, *snapshotter, key, name, options));
  if (global.json) {
    json out = {{"name", name},
                {"manifest", committed.manifest.digest.ToString()},
                {"layer", committed.layer.digest.ToString()},
                {"layerSize", committed.layer.size},
                {"diffID", committed.diff_id.ToString()},
                {"entries", committed.entries}};
    fmt::print("{}\n", JsonText(out));
    return;
  }
  fmt::print("{}: new layer {} ({}, {} entries)\n{}\n", name, committed.layer.digest,
             HumanSize(committed.layer.size), committed.entries, committed.manifest.digest);
}

}  // namespace

void AddMountCommands(CLI::App& app, const GlobalOptions& options) {
  auto args = std::make_shared<MountArgs>();
  auto* mount = app.add_subcommand(
      "mount", "Mount an image's root filesystem on DIR (unpacking it first if needed); read-only unless --rw");
  mount->add_option("image", args->image, "Image in the store, e.g. alpine:3.19")->required();
  mount->add_option("dir", args->dir, "Existing directory to mount on")->required();
  mount->add_flag("--rw", args->writable,
                  "Writable: changes go to a container snapshot (keep them with `strata commit DIR NEW-REF` "
                  "before `strata umount`)");
  mount->add_option("--platform", args->platform, "Platform of an index to mount (default: this host's)");
  mount->add_option("--driver", args->driver,
                    "How the layers are composed: overlay (kernel overlayfs) or fsfilter (strata's FUSE union "
                    "view, strata-fsfilter)")
      ->capture_default_str();
  mount->add_option("--isolation", args->isolation,
                    "process: the merged root filesystem on DIR; vm: as a VM runtime gets it — Linux images: "
                    "each layer as a read-only EROFS image (layer.erofs, built once) loop-mounted, with --rw a "
                    "sparse ext4 scratch disk for the changes, composed by overlayfs on DIR; Windows images: DIR "
                    "gets the container's layer dir, layerchain.json (the image's layer dirs) and sandbox.vhd")
      ->capture_default_str();
  mount->add_option("--scratch-size", args->scratch_size,
                    "--isolation vm: size of the sparse scratch disk (Windows sandbox.vhd; Linux with --rw, "
                    "scratch.img ext4) (e.g. 20G)")
      ->capture_default_str();
  mount->callback([args, &options] { RunMount(*args, options); });

  auto* umount = app.add_subcommand("umount", "Unmount DIR and release its snapshot (a --rw mount's changes go too)");
  umount->add_option("dir", args->dir, "Directory strata mounted an image on")->required();
  umount->callback([args, &options] {
    if (auto client = DaemonClient::Find(options)) {
      OrDie(client->Unmount(images::MountTarget(std::filesystem::weakly_canonical(std::filesystem::absolute(args->dir)))));
    } else {
      auto store = OpenStoreOrDie(options);
      auto snapshotter = OpenSnapshotterOrDie(*store);
      OrDie(images::UnmountImage(*snapshotter, args->dir));
    }
    if (!options.json) fmt::print("unmounted {}\n", args->dir);
  });

  auto* commit = app.add_subcommand(
      "commit", "Store the changes of a --rw mount (DIR, or its snapshot key) as a new image on top of its base");
  commit->add_option("target", args->target, "Mount directory, or snapshot key")->required();
  commit->add_option("new-ref", args->new_name, "Name of the new image, e.g. localhost:5000/app:2")->required();
  commit->add_option("--compression", args->compression, "Layer compression: gzip, zstd or none")->capture_default_str();
  commit->add_option("-m,--message", args->message, "Comment recorded in the image history");
  commit->callback([args, &options] { RunCommit(*args, options); });
}

}  // namespace strata::cli
