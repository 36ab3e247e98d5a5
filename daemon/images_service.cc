#include "daemon/images_service.h"

#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "daemon/images_proto.h"
#include "daemon/rpc_status.h"
#include "images/collect_garbage.h"
#include "images/image_mount.h"
#include "images/pull.h"
#include "images/push.h"
#include "oci/platform.h"
#include "oci/reference.h"
#include "registry/fetcher.h"
#include "registry/pusher.h"
#include "registry/session.h"

namespace strata::daemon {

namespace v1 = strata::v1;
namespace fs = std::filesystem;

namespace {

constexpr int kDefaultParallelism = 4;
constexpr double kDefaultMaxRatio = 200;
// A transferring blob's byte counts go out at most this often (state changes always do).
constexpr auto kProgressInterval = std::chrono::milliseconds(100);

// Forwards progress events to a server stream. Thread-safe: a pull's fetches report from
// several threads, and gRPC allows one Write at a time. Once the client is gone, events
// are dropped and the operation runs to its end.
template <typename Event>
class ProgressStream {
 public:
  explicit ProgressStream(grpc::ServerWriter<Event>* writer) : writer_(writer) {}

  registry::ProgressSink Sink() {
    return [this](const registry::ProgressEvent& event) { OnEvent(event); };
  }

  void OnEvent(const registry::ProgressEvent& event) {
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard lock(mutex_);
    auto [it, first] = last_.try_emplace(event.digest.ToString(), Last{event.state, now});
    const bool transferring = event.state == registry::TransferState::kDownloading ||
                              event.state == registry::TransferState::kUploading;
    if (!first) {
      if (it->second.state == event.state && transferring && now - it->second.at < kProgressInterval) return;
      it->second = Last{event.state, now};
    }
    Event message;
    ToProto(event, message.mutable_progress());
    WriteLocked(message);
  }

  void Write(const Event& message) {
    std::lock_guard lock(mutex_);
    WriteLocked(message);
  }

 private:
  struct Last {
    registry::TransferState state;
    std::chrono::steady_clock::time_point at;
  };
  void WriteLocked(const Event& message) {
    if (!gone_ && !writer_->Write(message)) gone_ = true;
  }

  grpc::ServerWriter<Event>* const writer_;
  std::mutex mutex_;
  std::map<std::string, Last> last_;  // by digest; guarded by mutex_
  bool gone_ = false;                 // guarded by mutex_
};

// An image name as the store records it; InvalidArgument naming `field` when it is empty
// or not a reference.
Result<std::string> NormalisedName(const std::string& text, std::string_view field) {
  if (text.empty()) return Fail(ErrorCode::kInvalidArgument, "{}: no image name given", field);
  auto reference = oci::Reference::Parse(text);
  if (!reference) return Fail(ErrorCode::kInvalidArgument, "{}: {}", field, reference.error().message());
  return reference->String();
}

Result<oci::Reference> ParseReference(const std::string& text, std::string_view field) {
  if (text.empty()) return Fail(ErrorCode::kInvalidArgument, "{}: no reference given", field);
  auto reference = oci::Reference::Parse(text);
  if (!reference) return Fail(ErrorCode::kInvalidArgument, "{}: {}", field, reference.error().message());
  return *reference;
}

Result<oci::Platform> ParsePlatform(const std::string& text) {
  if (text.empty()) return oci::Platform::Host();
  auto platform = oci::Platform::Parse(text);
  if (!platform) return Fail(ErrorCode::kInvalidArgument, "platform: {}", platform.error().message());
  return *platform;
}

Result<int> Parallelism(int32_t requested) {
  if (requested == 0) return kDefaultParallelism;
  if (requested < 1 || requested > 64) {
    return Fail(ErrorCode::kInvalidArgument, "parallelism {} is out of range (1-64, or 0 for {})", requested,
                kDefaultParallelism);
  }
  return requested;
}

// Where the daemon looks credentials up: its own user's files (see RegistryOptions in the
// proto). A service manager may start it without $HOME; the passwd entry stands in.
registry::CredentialStoreOptions DaemonCredentials() {
  return registry::CredentialStoreOptions::FromEnvironment([](std::string_view name) -> std::optional<std::string> {
    if (const char* value = std::getenv(std::string(name).c_str()); value != nullptr && *value != '\0') return value;
    if (name == "HOME") {
      if (const passwd* entry = ::getpwuid(::geteuid()); entry != nullptr && entry->pw_dir != nullptr) {
        return entry->pw_dir;
      }
    }
    return std::nullopt;
  });
}

Result<registry::SessionOptions> SessionOptionsFrom(const v1::RegistryOptions& registry) {
  registry::SessionOptions options;
  options.plain_http = registry.plain_http();
  if (!registry.certs_dir().empty() && !fs::path(registry.certs_dir()).is_absolute()) {
    return Fail(ErrorCode::kInvalidArgument, "registry.certs_dir {:?} is not an absolute path", registry.certs_dir());
  }
  options.certs_dir = registry.certs_dir();
  if (registry.stall_timeout_seconds() < 0) {
    return Fail(ErrorCode::kInvalidArgument, "registry.stall_timeout_seconds {} is negative",
                registry.stall_timeout_seconds());
  }
  if (registry.stall_timeout_seconds() > 0) options.stall_timeout = std::chrono::seconds(registry.stall_timeout_seconds());
  options.credentials = DaemonCredentials();
  return options;
}

// A directory given to Mount/Unmount, as the daemon (root) acts on it for a caller who may
// not be root: absolute (the daemon's working directory means nothing to the caller) and
// canonical — no ".", "..", or symlink on the way (the CLI resolves those before it asks),
// so the directory checked is the one mounted on; neither the store root, inside it, nor
// above it. For Mount, a caller other than root must own it (so a group member cannot
// mount over root's directories, e.g. an empty cron spool). Mount also wants it empty: nothing the
// host keeps there is hidden. Known limit: a caller owning a parent directory could swap
// the target between this check and the mount.
Status CheckTarget(const std::string& target, const fs::path& store_root, const PeerCredentials& caller,
                   bool must_be_empty) {
  const fs::path path(target);
  if (!path.is_absolute()) return Fail(ErrorCode::kInvalidArgument, "target {:?} is not an absolute path", target);
  std::error_code ec;
  const fs::path canonical = fs::canonical(path, ec);
  if (ec) return Fail(ErrorCode::kInvalidArgument, "target {:?}: {}", target, ec.message());
  if (canonical != path) {
    return Fail(ErrorCode::kInvalidArgument, "target {:?} is not canonical (it resolves to {:?}): give the path without "
                "symlinks, \".\" or \"..\"", target, canonical.string());
  }
  const fs::path root = fs::weakly_canonical(store_root);
  auto within = [](const fs::path& inner, const fs::path& outer) {
    auto [end, _] = std::mismatch(outer.begin(), outer.end(), inner.begin(), inner.end());
    return end == outer.end();
  };
  if (within(canonical, root) || within(root, canonical)) {
    return Fail(ErrorCode::kInvalidArgument, "target {:?} overlaps the store root {}", target, root.string());
  }
  struct stat st {};
  if (::lstat(target.c_str(), &st) != 0) return ErrnoFail(errno, "stat mount point", target);
  if (!S_ISDIR(st.st_mode)) return Fail(ErrorCode::kInvalidArgument, "mount point {} is not a directory", target);
  if (caller.uid != 0 && st.st_uid != caller.uid) {
    return Fail(ErrorCode::kFailedPrecondition, "mount point {} belongs to uid {}, not to the caller (uid {})", target,
                st.st_uid, caller.uid);
  }
  if (must_be_empty && !fs::is_empty(path, ec)) {
    return Fail(ErrorCode::kInvalidArgument, "mount point {} is not empty", target);
  }
  return {};
}

}  // namespace

grpc::Status ImagesService::Pull(grpc::ServerContext* context, const v1::PullRequest* request,
                                 grpc::ServerWriter<v1::PullEvent>* writer) {
  return Guarded(gate_, context, "images.Pull", [&]() -> Status {
    STRATA_ASSIGN_OR_RETURN(oci::Reference reference, ParseReference(request->reference(), "reference"));
    images::PullOptions options;
    STRATA_ASSIGN_OR_RETURN(options.platform, ParsePlatform(request->platform()));
    STRATA_ASSIGN_OR_RETURN(options.parallelism, Parallelism(request->parallelism()));
    options.all_platforms = request->all_platforms();
    const bool unpack = !request->no_unpack() && !request->all_platforms();
    if (unpack) {
      options.unpack_into = &snapshots_;
      options.unpack_limits.max_ratio = request->has_max_ratio() ? request->max_ratio() : kDefaultMaxRatio;
      if (options.unpack_limits.max_ratio < 0) {
        return Fail(ErrorCode::kInvalidArgument, "max_ratio {} is negative", request->max_ratio());
      }
    }
    STRATA_ASSIGN_OR_RETURN(registry::SessionOptions session_options, SessionOptionsFrom(request->registry()));
    STRATA_ASSIGN_OR_RETURN(auto session, registry::Session::Open(session_options, {reference}));
    registry::Fetcher fetcher(session->resolver(), store_.content(), &store_.leases(),
                              {.foreign_urls_first = request->foreign_urls_first()});
    ProgressStream<v1::PullEvent> stream(writer);
    options.progress = stream.Sink();

    std::shared_lock lock(engine_mutex_);
    spdlog::info("images.Pull {} (unpack: {})", reference.String(), unpack);
    STRATA_ASSIGN_OR_RETURN(images::PullResult result,
                            images::Pull(session->resolver(), fetcher, store_, reference, options));
    v1::PullEvent event;
    ToProto(result, unpack, event.mutable_result());
    stream.Write(event);
    return {};
  });
}

grpc::Status ImagesService::Push(grpc::ServerContext* context, const v1::PushRequest* request,
                                 grpc::ServerWriter<v1::PushEvent>* writer) {
  return Guarded(gate_, context, "images.Push", [&]() -> Status {
    if (request->source().empty()) return Fail(ErrorCode::kInvalidArgument, "source: no image name given");
    STRATA_ASSIGN_OR_RETURN(const int parallelism, Parallelism(request->parallelism()));
    std::shared_lock lock(engine_mutex_);
    const std::string image_name = images::StoredImageName(store_.images(), request->source());
    STRATA_ASSIGN_OR_RETURN(
        oci::Reference target,
        ParseReference(request->destination().empty() ? image_name : request->destination(), "destination"));
    STRATA_ASSIGN_OR_RETURN(registry::SessionOptions session_options, SessionOptionsFrom(request->registry()));
    STRATA_ASSIGN_OR_RETURN(auto session, registry::Session::Open(session_options, {target}));
    registry::Pusher pusher(session->resolver());
    ProgressStream<v1::PushEvent> stream(writer);
    spdlog::info("images.Push {} to {}", image_name, target.String());
    STRATA_ASSIGN_OR_RETURN(images::PushImageResult result,
                            images::PushImage(pusher, store_, image_name, target,
                                              {.parallelism = parallelism,
                                               .chunk_size = request->chunk_size(),
                                               .allow_nondistributable = request->allow_nondistributable(),
                                               .progress = stream.Sink()}));
    v1::PushEvent event;
    ToProto(result, target.String(), event.mutable_result());
    stream.Write(event);
    return {};
  });
}

grpc::Status ImagesService::List(grpc::ServerContext* context, const v1::ListImagesRequest* request,
                                 v1::ListImagesResponse* response) {
  return Guarded(gate_, context, "images.List", [&]() -> Status {
    STRATA_ASSIGN_OR_RETURN(store::Filter filter,
                            store::Filter::Parse({request->filters().begin(), request->filters().end()}));
    spdlog::debug("images.List ({} filters)", request->filters_size());
    STRATA_ASSIGN_OR_RETURN(std::vector<store::Image> list, store_.images().List(filter));
    for (const store::Image& image : list) ToProto(image, response->add_images());
    return {};
  });
}

grpc::Status ImagesService::Get(grpc::ServerContext* context, const v1::GetImageRequest* request,
                                v1::GetImageResponse* response) {
  return Guarded(gate_, context, "images.Get", [&]() -> Status {
    STRATA_ASSIGN_OR_RETURN(std::string name, NormalisedName(request->name(), "name"));
    STRATA_ASSIGN_OR_RETURN(store::Image image, store_.images().Get(name));
    ToProto(image, response->mutable_image());
    return {};
  });
}

grpc::Status ImagesService::Remove(grpc::ServerContext* context, const v1::RemoveImageRequest* request,
                                   v1::RemoveImageResponse* response) {
  return Guarded(gate_, context, "images.Remove", [&]() -> Status {
    STRATA_ASSIGN_OR_RETURN(std::string name, NormalisedName(request->name(), "name"));
    std::shared_lock lock(engine_mutex_);
    spdlog::info("images.Remove {}", name);
    STRATA_RETURN_IF_ERROR(store_.images().Delete(name));
    response->set_name(name);
    return {};
  });
}

grpc::Status ImagesService::Tag(grpc::ServerContext* context, const v1::TagImageRequest* request,
                                v1::TagImageResponse* response) {
  return Guarded(gate_, context, "images.Tag", [&]() -> Status {
    STRATA_ASSIGN_OR_RETURN(std::string source, NormalisedName(request->source(), "source"));
    STRATA_ASSIGN_OR_RETURN(std::string target, NormalisedName(request->target(), "target"));
    std::shared_lock lock(engine_mutex_);
    spdlog::info("images.Tag {} as {}", source, target);
    STRATA_ASSIGN_OR_RETURN(store::Image image, store_.images().Get(source));
    image.name = target;
    STRATA_ASSIGN_OR_RETURN(store::Image tagged, store_.images().Put(std::move(image)));
    ToProto(tagged, response->mutable_image());
    return {};
  });
}

grpc::Status ImagesService::Mount(grpc::ServerContext* context, const v1::MountImageRequest* request,
                                  v1::MountImageResponse* response) {
  return Guarded(gate_, context, "images.Mount", [&]() -> Status {
    if (request->isolation() != v1::ISOLATION_PROCESS && request->isolation() != v1::ISOLATION_VM) {
      return Fail(ErrorCode::kInvalidArgument, "isolation {} is unknown", static_cast<int>(request->isolation()));
    }
    STRATA_ASSIGN_OR_RETURN(std::string name, NormalisedName(request->image(), "image"));
    images::MountOptions options{.writable = request->rw()};
    options.isolation = request->isolation() == v1::ISOLATION_VM ? images::Isolation::kVm : images::Isolation::kProcess;
    options.scratch_bytes = request->scratch_size();
    STRATA_ASSIGN_OR_RETURN(options.platform, ParsePlatform(request->platform()));
    STRATA_ASSIGN_OR_RETURN(options.union_mount, snapshotter::ParseUnionMount(request->driver()));
    response->set_image(name);
    response->set_rw(request->rw());

    std::shared_lock lock(engine_mutex_);
    if (request->target().empty()) {
      spdlog::info("images.Mount {} ({}) under a lease", name, request->rw() ? "rw" : "ro");
      STRATA_ASSIGN_OR_RETURN(images::LeasedImage leased,
                              images::PrepareLeasedImage(store_, snapshots_, name, options));
      ToProto(leased.prepared.mounts, response->mutable_mounts());
      response->set_lease(leased.lease);
      response->set_snapshot(leased.key);
      ToProto(leased.prepared.manifest.descriptor, response->mutable_manifest());
      response->set_layers(static_cast<int32_t>(leased.prepared.chain_ids.size()));
      return {};
    }
    // Already strata's mount: say so (the emptiness check below would only see a full dir).
    if (fs::path(request->target()).is_absolute() && snapshots_.Stat(images::MountKey(request->target()))) {
      return Fail(ErrorCode::kAlreadyExists, "strata already has a mount at {}", request->target());
    }
    STRATA_ASSIGN_OR_RETURN(PeerCredentials caller, gate_.CredentialsOf(*context));
    STRATA_RETURN_IF_ERROR(CheckTarget(request->target(), store_.root(), caller, /*must_be_empty=*/true));
    spdlog::info("images.Mount {} ({}) on {}", name, request->rw() ? "rw" : "ro", request->target());
    STRATA_ASSIGN_OR_RETURN(images::MountedImage mounted,
                            images::MountImage(store_, snapshots_, name, request->target(), options));
    ToProto(mounted.mounts, response->mutable_mounts());
    response->set_snapshot(mounted.key);
    ToProto(mounted.manifest.descriptor, response->mutable_manifest());
    response->set_layers(static_cast<int32_t>(mounted.chain_ids.size()));
    response->set_target(images::MountTarget(request->target()));
    return {};
  });
}

grpc::Status ImagesService::Unmount(grpc::ServerContext* context, const v1::UnmountImageRequest* request,
                                    v1::UnmountImageResponse*) {
  return Guarded(gate_, context, "images.Unmount", [&]() -> Status {
    std::shared_lock lock(engine_mutex_);
    switch (request->what_case()) {
      case v1::UnmountImageRequest::kLease: {
        if (request->lease().empty()) return Fail(ErrorCode::kInvalidArgument, "lease: empty lease id");
        spdlog::info("images.Unmount lease {}", request->lease());
        return images::ReleaseLeasedImage(store_, snapshots_, request->lease());
      }
      case v1::UnmountImageRequest::kTarget: {
        // The mounted directory now shows the image's root (owned by whoever the image says),
        // so ownership cannot be checked here: any allowed caller may unmount a strata mount.
        STRATA_RETURN_IF_ERROR(CheckTarget(request->target(), store_.root(), PeerCredentials{.uid = 0},
                                           /*must_be_empty=*/false));
        // Only what strata mounted: a target no Mount recorded (a host mount) stays.
        if (auto mounted = snapshots_.Stat(images::MountKey(request->target())); !mounted) {
          if (mounted.error().code() != ErrorCode::kNotFound) return Fail(mounted.error());
          return Fail(ErrorCode::kNotFound, "strata has no mount at {}", request->target());
        }
        spdlog::info("images.Unmount {}", request->target());
        return images::UnmountImage(snapshots_, request->target());
      }
      default:
        return Fail(ErrorCode::kInvalidArgument, "unmount: give a lease or a target");
    }
  });
}

grpc::Status ImagesService::Save(grpc::ServerContext* context, const v1::SaveImagesRequest*, v1::SaveImagesResponse*) {
  return Guarded(gate_, context, "images.Save", []() -> Status {
    return Fail(ErrorCode::kUnimplemented, "images.Save: saving images arrives with issue 10");
  });
}

grpc::Status ImagesService::Load(grpc::ServerContext* context, const v1::LoadImagesRequest*, v1::LoadImagesResponse*) {
  return Guarded(gate_, context, "images.Load", []() -> Status {
    return Fail(ErrorCode::kUnimplemented, "images.Load: loading images arrives with issue 10");
  });
}

grpc::Status ImagesService::GC(grpc::ServerContext* context, const v1::GCRequest* request, v1::GCResponse* response) {
  return Guarded(gate_, context, "images.GC", [&]() -> Status {
    std::unique_lock lock(engine_mutex_);
    spdlog::info("images.GC{}", request->dry_run() ? " (dry run)" : "");
    STRATA_ASSIGN_OR_RETURN(images::GarbageReport report,
                            images::CollectGarbage(store_, snapshots_, request->dry_run()));
    ToProto(report, request->dry_run(), response);
    return {};
  });
}

}  // namespace strata::daemon
