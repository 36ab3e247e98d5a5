#include "cli/app.h"

#include <unistd.h>

#include <cstdlib>

#include "base/log.h"
#include "cli/daemon_client.h"
#include "daemon/daemon.h"
#include "oci/reference.h"
#include "store/store.h"

namespace strata::cli {

std::filesystem::path DefaultRoot() {
  if (geteuid() == 0) return "/var/lib/strata";
  if (const char* xdg = std::getenv("XDG_DATA_HOME"); xdg && *xdg) {
    return std::filesystem::path(xdg) / "strata";
  }
  const char* home = std::getenv("HOME");
  return std::filesystem::path(home ? home : "/tmp") / ".local/share/strata";
}

void Die(const Error& error) {
  fmt::print(stderr, "strata: {}\n", error.message());
  throw CLI::RuntimeError(1);
}

std::unique_ptr<store::Store> OpenStoreOrDie(const GlobalOptions& options) {
  auto store = store::Store::Open(options.root);
  if (!store && store.error().code() == ErrorCode::kFailedPrecondition) {
    // A daemon holds the store while it serves it: say which, and what to do.
    if (auto socket = daemon::FindDaemonSocket(options.root)) {
      Die(Error(ErrorCode::kFailedPrecondition,
                fmt::format("{}: the strata daemon serving on {} holds it. Stop the daemon, or use the commands "
                            "that go through it ({})",
                            store.error().message(), socket->string(), kDaemonCommands)));
    }
  }
  return OrDie(std::move(store));
}

std::unique_ptr<snapshotter::OverlaySnapshotter> OpenSnapshotterOrDie(store::Store& store) {
  return OrDie(snapshotter::OverlaySnapshotter::Open(store.root(), store.db()));
}

store::Labels ParseLabelsOrDie(const std::vector<std::string>& pairs) {
  store::Labels labels;
  for (const auto& pair : pairs) {
    const size_t eq = pair.find('=');
    if (eq == std::string::npos || eq == 0) {
      Die(Error(ErrorCode::kInvalidArgument, fmt::format("label {:?} is not KEY=VALUE", pair)));
    }
    labels[pair.substr(0, eq)] = pair.substr(eq + 1);
  }
  return labels;
}

void AddWindowsVersionFlag(CLI::App* command, std::string& windows_version) {
  command
      ->add_option("--windows-version", windows_version,
                   "Windows host os.version (10.0.BUILD[.UBR]) to pick an index entry for when --platform names "
                   "windows without one: the newest build such a host runs, then the highest UBR. Unset: the "
                   "first windows entry of the right architecture")
      ->envname("STRATA_WINDOWS_HOST_VERSION");
}

oci::Platform PlatformFlagOrDie(const std::string& platform_text, const std::string& windows_version) {
  if (platform_text.empty()) return oci::Platform::Host();
  oci::Platform platform = OrDie(oci::Platform::Parse(platform_text));
  if (platform.os == "windows" && platform.os_version.empty() && !windows_version.empty()) {
    if (!oci::WindowsVersion::Parse(windows_version)) {
      Die(Error(ErrorCode::kInvalidArgument,
                fmt::format("--windows-version / STRATA_WINDOWS_HOST_VERSION {:?} is not major.minor.build[.UBR]",
                            windows_version)));
    }
    platform.os_version = windows_version;
  }
  return platform;
}

std::string NormalisedNameOrDie(const std::string& text) { return OrDie(oci::Reference::Parse(text)).String(); }

void BuildApp(CLI::App& app, GlobalOptions& options) {
  app.description(
      "strata: a layered image store and copy-on-write filesystem service.\n"
      "Pulls and pushes OCI and Docker images, keeps them in a content-addressed store,\n"
      "and composes their layers into root filesystems for containers.");
  app.require_subcommand(1);
  app.fallthrough();
  options.root = DefaultRoot();
  app.add_option("--root", options.root, "Store root directory")
      ->envname("STRATA_ROOT")
      ->default_str(options.root.string());
  app.add_option("--log-level", options.log_level, "Log level: trace|debug|info|warn|error|off")
      ->envname("STRATA_LOG_LEVEL")
      ->default_str(options.log_level);
  app.add_flag("--json", options.json, "Print machine-readable JSON where supported");
  app.parse_complete_callback([&options] {
    if (auto status = InitLogging(options.log_level); !status) {
      throw CLI::ValidationError("--log-level", status.error().message());
    }
  });

  AddVersionCommand(app, options);
  AddContentCommands(app, options);
  AddImageCommands(app, options);
  AddMaintenanceCommands(app, options);
  AddInspectCommand(app, options);
  AddPullCommand(app, options);
  AddPushCommands(app, options);
  AddTagsCommand(app, options);
  AddLoginCommands(app, options);
  AddSnapshotCommands(app, options);
  AddMountCommands(app, options);
  AddBrowseCommands(app, options);
  AddSaveLoadCommands(app, options);
  AddServeCommand(app, options);
}

}  // namespace strata::cli
