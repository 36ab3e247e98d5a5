// `strata pull REF`: fetch an image's manifest, config and layers into the store and unpack
// the layers into overlay snapshots as they stream in, with a progress display. While a
// daemon serves the root, it pulls (same engine call) and streams the progress here.
#include <cstdio>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/app.h"
#include "cli/daemon_client.h"
#include "cli/format.h"
#include "cli/progress_display.h"
#include "cli/registry_session.h"
#include "images/pull.h"
#include "store/store.h"

namespace strata::cli {
namespace {

namespace v1 = strata::v1;

struct PullArgs {
  std::string reference;
  std::string platform;  // "" = this host's
  std::string windows_version;  // for a windows --platform without os.version
  bool foreign_urls_first = false;
  bool no_unpack = false;
  bool all_platforms = false;
  double max_ratio = 200;
  int parallel = 4;
  bool quiet = false;
  RegistryFlags registry;
};

void PrintPulled(const PullArgs& args, const GlobalOptions& global, const images::PullResult& pulled, bool unpacked) {
  if (global.json) {
    nlohmann::ordered_json out;
    out["status"] = "pulled";
    out["name"] = pulled.image_name;
    out["digest"] = pulled.target.digest.ToString();
    out["mediaType"] = pulled.target.media_type;
    out["manifest"] = pulled.manifest.digest.ToString();
    out["blobsFetched"] = pulled.blobs_fetched;
    out["blobsPresent"] = pulled.blobs_present;
    out["bytesReceived"] = pulled.bytes_received;
    out["layersUnpacked"] = pulled.layers_unpacked;
    if (!pulled.chain_ids.empty()) out["snapshot"] = pulled.chain_ids.back().ToString();
    fmt::print("{}\n", JsonText(out));
    return;
  }
  if (!args.quiet) {
    fmt::print("{}: {} blobs fetched ({}), {} already present", pulled.image_name, pulled.blobs_fetched,
               HumanSize(pulled.bytes_received), pulled.blobs_present);
    if (unpacked) fmt::print("; {} of {} layers unpacked", pulled.layers_unpacked, pulled.chain_ids.size());
    fmt::print("\n");
  }
  fmt::print("{}\n", pulled.target.digest);
}

// Through a running daemon: it pulls into the store it holds, streaming progress back.
void PullThroughDaemon(DaemonClient& client, const PullArgs& args, const GlobalOptions& global) {
  v1::PullRequest request;
  request.set_reference(args.reference);
  // The effective platform, so the daemon applies this command's --windows-version.
  request.set_platform(args.platform.empty() ? "" : PlatformFlagOrDie(args.platform, args.windows_version).String());
  request.set_foreign_urls_first(args.foreign_urls_first);
  request.set_all_platforms(args.all_platforms);
  request.set_no_unpack(args.no_unpack);
  request.set_max_ratio(args.max_ratio);
  request.set_parallelism(args.parallel);
  ToProto(args.registry, request.mutable_registry());
  FILE* progress_out = global.json ? stdout : stderr;
  ProgressDisplay display(ChooseProgressMode(progress_out, args.quiet, global.json), progress_out);
  auto result = client.Pull(request, display.Sink());
  display.Finish();
  PrintPulled(args, global, OrDie(std::move(result)), !args.no_unpack && !args.all_platforms);
}

void RunPull(const PullArgs& args, const GlobalOptions& global) {
  oci::Reference reference = OrDie(oci::Reference::Parse(args.reference));
  images::PullOptions options;
  options.platform = PlatformFlagOrDie(args.platform, args.windows_version);
  options.parallelism = args.parallel;
  options.all_platforms = args.all_platforms;
  if (auto client = DaemonClient::Find(global)) return PullThroughDaemon(*client, args, global);

  std::unique_ptr<store::Store> store = OpenStoreOrDie(global);
  std::unique_ptr<snapshotter::OverlaySnapshotter> snapshotter;
  if (!args.no_unpack && !args.all_platforms) {
    snapshotter = OpenSnapshotterOrDie(*store);
    options.unpack_into = snapshotter.get();
    options.unpack_limits.max_ratio = args.max_ratio;
  }
  std::unique_ptr<RegistrySession> session = OpenRegistrySessionOrDie(args.registry, {reference});
  registry::Fetcher fetcher(session->resolver(), store->content(), &store->leases(),
                           {.foreign_urls_first = args.foreign_urls_first});

  // Progress goes to stderr (stdout carries the result), JSON events to stdout.
  FILE* progress_out = global.json ? stdout : stderr;
  ProgressDisplay display(ChooseProgressMode(progress_out, args.quiet, global.json), progress_out);
  options.progress = display.Sink();
  auto result = images::Pull(session->resolver(), fetcher, *store, reference, options);
  display.Finish();
  PrintPulled(args, global, OrDie(std::move(result)), options.unpack_into != nullptr);
}

}  // namespace

void AddPullCommand(CLI::App& app, const GlobalOptions& options) {
  auto args = std::make_shared<PullArgs>();
  auto* cmd = app.add_subcommand("pull", "Fetch an image from a registry into the store");
  cmd->add_option("reference", args->reference, "Image reference, e.g. alpine:3.19 or host:5000/team/app:1")
      ->required();
  cmd->add_option("--platform", args->platform,
                  "Platform to pull from an index (default: this host's), os/arch[/variant][:os_version], e.g. "
                  "windows/amd64:10.0.20348");
  AddWindowsVersionFlag(cmd, args->windows_version);
  cmd->add_flag("--foreign-urls-first", args->foreign_urls_first,
                "Fetch foreign (non-distributable) layers from their urls before asking the registry; by default "
                "the registry is asked first");
  cmd->add_flag("--all-platforms", args->all_platforms,
                "For an index, fetch every platform's manifest, config and layers (so push keeps the index)");
  cmd->add_flag("--no-unpack", args->no_unpack,
                "Only fetch blobs into the content store; by default each layer is also unpacked into a "
                "snapshot as it downloads, in overlay form (a Windows layer dir for Windows images) "
                "(--all-platforms implies this)");
  cmd->add_option("--max-ratio", args->max_ratio,
                  "Refuse a layer whose tar outgrows its compressed size by more than this factor "
                  "(plus 256 MiB): a decompression-bomb guard; 0 = off")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("-j,--parallel", args->parallel, "Layers downloaded at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  cmd->add_flag("-q,--quiet", args->quiet, "No progress display; print only the image digest");
  AddRegistryFlags(cmd, args->registry);
  cmd->callback([args, &options] { RunPull(*args, options); });
}

}  // namespace strata::cli
