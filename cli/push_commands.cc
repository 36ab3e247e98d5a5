// `strata push SRC [DST]` (an image in the store to a registry) and `strata copy SRC DST`
// (registry to registry, like skopeo copy, staged through the content store and never
// unpacked). Both show per-blob progress and print the pushed digest. While a daemon serves
// the root, push goes through it (copy needs the store to itself).
#include <cstdio>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/app.h"
#include "cli/daemon_client.h"
#include "cli/progress_display.h"
#include "cli/registry_session.h"
#include "images/push.h"
#include "registry/fetcher.h"
#include "registry/pusher.h"
#include "store/store.h"

namespace strata::cli {
namespace {

namespace v1 = strata::v1;

struct TransferArgs {
  std::string source;
  std::string destination;
  std::string platform;  // copy: "" = this host's
  std::string windows_version;  // copy: for a windows --platform without os.version
  bool all_platforms = false;
  int parallel = 4;
  uint64_t chunk_size = 0;
  bool allow_nondistributable = false;
  bool quiet = false;
  RegistryFlags registry;
};

void AddTransferFlags(CLI::App* cmd, TransferArgs& args) {
  cmd->add_option("-j,--parallel", args.parallel, "Blobs transferred at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  cmd->add_option("--chunk-size", args.chunk_size,
                  "Upload in chunks of this many bytes (PATCH), resuming from the registry's offset; 0 = one PUT "
                  "per blob")
      ->capture_default_str();
  cmd->add_flag("--allow-nondistributable", args.allow_nondistributable,
                "Also upload non-distributable (foreign) layers, which are skipped by default");
  cmd->add_flag("-q,--quiet", args.quiet, "No progress display; print only the pushed digest");
  AddRegistryFlags(cmd, args.registry);
}

void PrintResult(const GlobalOptions& global, const TransferArgs& args, std::string_view verb,
                 const std::string& target, const images::PushImageResult& result) {
  if (!result.note.empty()) fmt::print(stderr, "strata: note: {}\n", result.note);
  if (global.json) {
    nlohmann::ordered_json out;
    out["status"] = verb;
    out["name"] = target;
    out["digest"] = result.pushed.digest.ToString();
    out["mediaType"] = result.pushed.media_type;
    out["uploaded"] = result.uploaded;
    out["existed"] = result.existed;
    out["mounted"] = result.mounted;
    out["skipped"] = result.skipped;
    fmt::print("{}\n", out.dump());
    return;
  }
  if (!args.quiet) {
    fmt::print("{}: {} blobs uploaded, {} already there, {} mounted, {} skipped\n", target, result.uploaded,
               result.existed, result.mounted, result.skipped);
  }
  fmt::print("{}\n", result.pushed.digest);
}

void RunPush(const TransferArgs& args, const GlobalOptions& global) {
  if (!args.destination.empty()) OrDie(oci::Reference::Parse(args.destination));
  FILE* progress_out = global.json ? stdout : stderr;
  if (auto client = DaemonClient::Find(global)) {  // the daemon pushes from the store it holds
    v1::PushRequest request;
    request.set_source(args.source);
    request.set_destination(args.destination);
    request.set_parallelism(args.parallel);
    request.set_chunk_size(args.chunk_size);
    request.set_allow_nondistributable(args.allow_nondistributable);
    ToProto(args.registry, request.mutable_registry());
    ProgressDisplay display(ChooseProgressMode(progress_out, args.quiet, global.json), progress_out);
    auto pushed = client->Push(request, display.Sink());
    display.Finish();
    if (!pushed) Die(pushed.error());
    return PrintResult(global, args, "pushed", pushed->name, pushed->result);
  }
  std::unique_ptr<store::Store> store = OpenStoreOrDie(global);
  // SRC names an image in the store; it is normalised the way pull recorded it.
  const std::string image_name = images::StoredImageName(store->images(), args.source);
  oci::Reference target = OrDie(oci::Reference::Parse(args.destination.empty() ? image_name : args.destination));
  std::unique_ptr<RegistrySession> session = OpenRegistrySessionOrDie(args.registry, {target});
  registry::Pusher pusher(session->resolver());

  ProgressDisplay display(ChooseProgressMode(progress_out, args.quiet, global.json), progress_out);
  auto result = images::PushImage(pusher, *store, image_name, target,
                                  {.parallelism = args.parallel,
                                   .chunk_size = args.chunk_size,
                                   .allow_nondistributable = args.allow_nondistributable,
                                   .progress = display.Sink()});
  display.Finish();
  PrintResult(global, args, "pushed", target.String(), OrDie(std::move(result)));
}

void RunCopy(const TransferArgs& args, const GlobalOptions& global) {
  oci::Reference source = OrDie(oci::Reference::Parse(args.source));
  oci::Reference target = OrDie(oci::Reference::Parse(args.destination));
  images::CopyOptions options;
  options.platform = PlatformFlagOrDie(args.platform, args.windows_version);
  options.all_platforms = args.all_platforms;
  options.parallelism = args.parallel;
  options.chunk_size = args.chunk_size;
  options.allow_nondistributable = args.allow_nondistributable;

  std::unique_ptr<store::Store> store = OpenStoreOrDie(global);
  std::unique_ptr<RegistrySession> session = OpenRegistrySessionOrDie(args.registry, {source, target});
  registry::Fetcher fetcher(session->resolver(), store->content(), &store->leases());
  registry::Pusher pusher(session->resolver());

  FILE* progress_out = global.json ? stdout : stderr;
  ProgressDisplay display(ChooseProgressMode(progress_out, args.quiet, global.json), progress_out);
  options.progress = display.Sink();
  auto result = images::CopyImage(session->resolver(), fetcher, pusher, *store, source, target, options);
  display.Finish();
  PrintResult(global, args, "copied", target.String(), OrDie(std::move(result)));
}

}  // namespace

void AddPushCommands(CLI::App& app, const GlobalOptions& options) {
  auto push = std::make_shared<TransferArgs>();
  auto* push_cmd = app.add_subcommand("push", "Upload an image from the store to a registry");
  push_cmd->add_option("source", push->source, "Image in the store (as `strata images` lists it)")->required();
  push_cmd->add_option("destination", push->destination, "Reference to push to (default: the source's name)");
  AddTransferFlags(push_cmd, *push);
  push_cmd->callback([push, &options] { RunPush(*push, options); });

  auto copy = std::make_shared<TransferArgs>();
  auto* copy_cmd = app.add_subcommand(
      "copy", "Copy an image from one registry to another without unpacking (blobs are staged in the store)");
  copy_cmd->add_option("source", copy->source, "Reference to copy from")->required();
  copy_cmd->add_option("destination", copy->destination, "Reference to copy to")->required();
  copy_cmd->add_flag("-a,--all", copy->all_platforms,
                     "Copy every platform of an index and the index itself (byte-identical)");
  copy_cmd->add_option("--platform", copy->platform,
                       "Platform to copy from an index without --all (default: this host's), "
                       "os/arch[/variant][:os_version]");
  AddWindowsVersionFlag(copy_cmd, copy->windows_version);
  AddTransferFlags(copy_cmd, *copy);
  copy_cmd->callback([copy, &options] { RunCopy(*copy, options); });
}

}  // namespace strata::cli
