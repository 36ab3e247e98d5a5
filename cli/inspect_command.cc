// `strata inspect REF`: what a registry serves for a reference, without pulling layers —
// the manifest (or index and the chosen platform's manifest), the config and the layers,
// as JSON; or with --raw the exact manifest bytes.
#include <cstdio>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/app.h"
#include "oci/media_types.h"
#include "oci/platform.h"
#include "oci/reference.h"
#include "cli/registry_session.h"
#include "registry/resolver.h"

namespace strata::cli {
namespace {

struct InspectArgs {
  std::string reference;
  std::string platform;  // "" = this host's
  bool raw = false;
  RegistryFlags registry;
};

nlohmann::ordered_json DescriptorJson(const oci::Descriptor& descriptor) {
  nlohmann::ordered_json out;
  out["mediaType"] = descriptor.media_type;
  out["digest"] = descriptor.digest.ToString();
  out["size"] = descriptor.size;
  return out;
}

// The summary printed by default. totalSize = config + layers (what a pull downloads
// besides the manifests).
nlohmann::ordered_json Summary(const oci::Reference& reference, const registry::ResolvedImage& image) {
  nlohmann::ordered_json out;
  out["name"] = reference.String();
  out["digest"] = image.top.descriptor.digest.ToString();
  out["mediaType"] = image.top.descriptor.media_type;
  out["size"] = image.top.descriptor.size;
  if (image.index) {
    nlohmann::ordered_json platforms = nlohmann::ordered_json::array();
    for (const oci::Descriptor& entry : image.index->manifests) {
      if (entry.platform) platforms.push_back(entry.platform->String());
    }
    out["platforms"] = std::move(platforms);
  }
  out["platform"] = image.config.platform().String();
  out["os"] = image.config.os;
  out["architecture"] = image.config.architecture;
  if (!image.config.variant.empty()) out["variant"] = image.config.variant;
  if (!image.config.os_version.empty()) out["osVersion"] = image.config.os_version;
  out["manifest"] = DescriptorJson(image.manifest_descriptor);
  out["config"] = DescriptorJson(image.manifest.config);
  int64_t total = image.manifest.config.size;
  nlohmann::ordered_json layers = nlohmann::ordered_json::array();
  for (const oci::Descriptor& layer : image.manifest.layers) {
    layers.push_back(DescriptorJson(layer));
    total += layer.size;
  }
  out["layers"] = std::move(layers);
  out["totalSize"] = total;
  return out;
}

void RunInspect(const InspectArgs& args) {
  oci::Reference reference = OrDie(oci::Reference::Parse(args.reference));
  oci::Platform platform = args.platform.empty() ? oci::Platform::Host() : OrDie(oci::Platform::Parse(args.platform));

  std::unique_ptr<RegistrySession> session = OpenRegistrySessionOrDie(args.registry, {reference});
  registry::Resolver& resolver = session->resolver();

  if (args.raw && args.platform.empty()) {
    // The bytes the reference names, whatever they are (an index stays an index).
    registry::Resolved resolved = OrDie(resolver.Resolve(reference));
    std::fwrite(resolved.manifest.data(), 1, resolved.manifest.size(), stdout);
    std::fflush(stdout);
    return;
  }
  registry::ResolvedImage image = OrDie(resolver.ResolvePlatform(reference, platform));
  if (args.raw) {
    // --platform given: the chosen platform's manifest.
    std::fwrite(image.manifest_bytes.data(), 1, image.manifest_bytes.size(), stdout);
    std::fflush(stdout);
    return;
  }
  fmt::print("{}\n", Summary(reference, image).dump(2));
}

}  // namespace

void AddInspectCommand(CLI::App& app, const GlobalOptions& /*options*/) {
  auto args = std::make_shared<InspectArgs>();
  auto* cmd = app.add_subcommand("inspect", "Show what a registry serves for an image reference (JSON)");
  cmd->add_option("reference", args->reference, "Image reference, e.g. alpine:3.19 or host:5000/team/app:1")
      ->required();
  cmd->add_option("--platform", args->platform, "Platform to describe in an index (default: this host's), os/arch[/variant]");
  cmd->add_flag("--raw", args->raw,
                "Print the manifest bytes exactly as served (with --platform: that platform's manifest)");
  AddRegistryFlags(cmd, args->registry);
  cmd->callback([args] { RunInspect(*args); });
}

}  // namespace strata::cli
