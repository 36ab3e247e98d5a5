// The `strata` command line: global options and the registry of subcommands.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "base/error.h"
#include "oci/platform.h"
#include "snapshotter/overlay_snapshotter.h"
#include "store/types.h"

namespace strata::store {
class Store;
}

namespace strata::cli {

// Options every subcommand sees. Filled in by CLI11 before a subcommand's callback runs.
struct GlobalOptions {
  std::filesystem::path root;   // store root (--root, $STRATA_ROOT, default below)
  std::string log_level = "warn";
  bool json = false;            // machine-readable output where a command supports it
};

// Where the store lives when --root and $STRATA_ROOT are unset: /var/lib/strata for root,
// $XDG_DATA_HOME/strata (or ~/.local/share/strata) for other users.
std::filesystem::path DefaultRoot();

// Builds the application with every subcommand attached. `options` must outlive the app.
// A subcommand signals failure by throwing CLI::RuntimeError(exit_code) after printing
// its error, so main() stays the one place that turns errors into exit codes.
void BuildApp(CLI::App& app, GlobalOptions& options);

// Prints "strata: <message>" to stderr and ends the command with exit status 1.
[[noreturn]] void Die(const Error& error);
// Unwraps a Result or Die()s with its error.
template <typename T>
T OrDie(Result<T> result) {
  if (!result) Die(result.error());
  if constexpr (!std::is_void_v<T>) return std::move(*result);
}

// Opens the store at options.root (Die()s on failure).
std::unique_ptr<store::Store> OpenStoreOrDie(const GlobalOptions& options);
// The overlay snapshotter of an open store (Die()s on failure).
std::unique_ptr<snapshotter::OverlaySnapshotter> OpenSnapshotterOrDie(store::Store& store);
// "KEY=VALUE" flags (--label) as labels; Die()s naming a malformed one.
store::Labels ParseLabelsOrDie(const std::vector<std::string>& pairs);
// Image names are stored normalised ("docker.io/library/alpine:3.19"); users may type the
// familiar form ("alpine:3.19").
std::string NormalisedNameOrDie(const std::string& text);

// Adds --windows-version (default $STRATA_WINDOWS_HOST_VERSION) to a command that takes
// --platform: the Windows host version assumed when --platform names windows without one.
void AddWindowsVersionFlag(CLI::App* command, std::string& windows_version);
// The platform `platform_text` (--platform) asks for; "" = this host's. A windows platform
// without an os_version gets `windows_version` when it is set, so an index entry is chosen
// by the rules for such a host (oci::PlatformMatcher). Die()s on malformed text.
oci::Platform PlatformFlagOrDie(const std::string& platform_text, const std::string& windows_version);

// Subcommand registrars, one per file.
void AddVersionCommand(CLI::App& app, const GlobalOptions& options);
void AddContentCommands(CLI::App& app, const GlobalOptions& options);
void AddImageCommands(CLI::App& app, const GlobalOptions& options);
void AddMaintenanceCommands(CLI::App& app, const GlobalOptions& options);
void AddInspectCommand(CLI::App& app, const GlobalOptions& options);
void AddPullCommand(CLI::App& app, const GlobalOptions& options);
void AddPushCommands(CLI::App& app, const GlobalOptions& options);
void AddTagsCommand(CLI::App& app, const GlobalOptions& options);
void AddLoginCommands(CLI::App& app, const GlobalOptions& options);
void AddSnapshotCommands(CLI::App& app, const GlobalOptions& options);
void AddMountCommands(CLI::App& app, const GlobalOptions& options);
void AddServeCommand(CLI::App& app, const GlobalOptions& options);
void AddSaveLoadCommands(CLI::App& app, const GlobalOptions& options);
void AddBrowseCommands(CLI::App& app, const GlobalOptions& options);

}  // namespace strata::cli
