// `strata save` (images from the store to an OCI layout, oci-archive or docker-archive) and
// `strata load` (any of those, format detected, into the store). Both need the store to
// themselves (not while a daemon serves the root).
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/app.h"
#include "images/load.h"
#include "images/push.h"
#include "images/save.h"
#include "store/store.h"

namespace strata::cli {
namespace {

using json = nlohmann::ordered_json;

struct SaveArgs {
  std::string output;
  std::string format = "oci";
  std::string platform;
  std::string windows_version;
  std::vector<std::string> images;
};

void RunSave(const SaveArgs& args, const GlobalOptions& global) {
  images::SaveOptions options;
  options.format = OrDie(images::ParseArchiveFormat(args.format));
  options.platform = PlatformFlagOrDie(args.platform, args.windows_version);
  std::unique_ptr<store::Store> store = OpenStoreOrDie(global);
  std::vector<std::string> names;
  for (const std::string& image : args.images) names.push_back(images::StoredImageName(store->images(), image));
  images::SaveResult result = OrDie(images::SaveImages(*store, names, args.output, options));
  for (const std::string& note : result.notes) fmt::print(stderr, "strata: note: {}\n", note);
  if (global.json) {
    json out;
    out["status"] = "saved";
    out["path"] = args.output;
    out["format"] = images::ArchiveFormatName(options.format);
    out["blobs"] = result.blobs;
    out["bytes"] = result.bytes;
    out["images"] = json::array();
    for (const auto& image : result.images) {
      out["images"].push_back({{"name", image.name}, {"digest", image.descriptor.digest.ToString()},
                               {"mediaType", image.descriptor.media_type}});
    }
    fmt::print("{}\n", out.dump());
    return;
  }
  for (const auto& image : result.images) fmt::print("{} {}\n", image.name, image.descriptor.digest);
}

void RunLoad(const std::string& path, const std::string& repository, const GlobalOptions& global) {
  std::unique_ptr<store::Store> store = OpenStoreOrDie(global);
  images::LoadResult result = OrDie(images::LoadImages(*store, path, {.repository = repository}));
  for (const std::string& note : result.notes) fmt::print(stderr, "strata: note: {}\n", note);
  if (global.json) {
    json out;
    out["status"] = "loaded";
    out["format"] = images::ArchiveFormatName(result.format);
    out["blobs_written"] = result.blobs_written;
    out["blobs_present"] = result.blobs_present;
    out["images"] = json::array();
    for (const auto& image : result.images) {
      out["images"].push_back({{"name", image.name}, {"digest", image.target.digest.ToString()},
                               {"mediaType", image.target.media_type}});
    }
    fmt::print("{}\n", out.dump());
    return;
  }
  for (const auto& image : result.images) fmt::print("Loaded {} {}\n", image.name, image.target.digest);
}

}  // namespace

void AddSaveLoadCommands(CLI::App& app, const GlobalOptions& options) {
  auto save = std::make_shared<SaveArgs>();
  auto* save_cmd = app.add_subcommand(
      "save",
      "Write images from the store to an OCI image layout directory (oci), the same as a tar (oci-archive), or a "
      "`docker save` tar (docker-archive). oci and oci-archive keep every blob as stored (all digests survive); "
      "docker-archive holds one platform per image with uncompressed layers, keeping the config (image ID) and "
      "diffIDs but not the manifest digest. PATH must not exist; it appears only when complete.");
  save_cmd->add_option("-o,--output", save->output, "Directory (oci) or file to create")->required();
  save_cmd->add_option("--format", save->format, "oci | oci-archive | docker-archive")->capture_default_str();
  save_cmd->add_option("--platform", save->platform,
                       "docker-archive: the platform taken from an index (default: this host's)");
  AddWindowsVersionFlag(save_cmd, save->windows_version);
  save_cmd->add_option("images", save->images, "Images in the store (as `strata images` lists them)")->required();
  save_cmd->callback([save, &options] { RunSave(*save, options); });

  auto path = std::make_shared<std::string>();
  auto repository = std::make_shared<std::string>();
  auto* load_cmd = app.add_subcommand(
      "load",
      "Load the images of an OCI layout directory, an oci-archive, or a docker-archive (docker save, both the "
      "Docker 25+ and the older form; gzip/zstd compressed tars too) into the store, verifying every digest. "
      "Names come from io.containerd.image.name, org.opencontainers.image.ref.name or RepoTags.");
  load_cmd->add_option("path", *path, "Directory or tar file")->required();
  load_cmd->add_option("--repository", *repository,
                       "Repository for entries that name only a tag (skopeo's oci:DIR:TAG) or nothing; default "
                       "localhost/<file name>");
  load_cmd->callback([path, repository, &options] { RunLoad(*path, *repository, options); });
}

}  // namespace strata::cli
