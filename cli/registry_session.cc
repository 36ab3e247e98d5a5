#include "cli/registry_session.h"

#include "cli/app.h"

namespace strata::cli {

void AddRegistryFlags(CLI::App* command, RegistryFlags& flags) {
  command->add_flag("--plain-http", flags.plain_http,
                    "Talk to the registry over plain HTTP (loopback registries always may)");
  command->add_option("--certs-dir", flags.certs_dir,
                      "Per-registry TLS files and hosts.toml mirrors (default: $STRATA_CERTS_DIR or "
                      "/etc/strata/certs.d)");
  command->add_option("--stall-timeout", flags.stall_timeout_seconds,
                      "Fail a transfer after this many seconds without data")
      ->capture_default_str();
}

registry::SessionOptions SessionOptionsFrom(const RegistryFlags& flags) {
  registry::SessionOptions options;
  options.plain_http = flags.plain_http;
  options.certs_dir = flags.certs_dir.empty() ? registry::DefaultCertsDir() : std::filesystem::path(flags.certs_dir);
  options.stall_timeout = std::chrono::seconds(std::max(1, flags.stall_timeout_seconds));
  return options;
}

std::unique_ptr<RegistrySession> OpenRegistrySessionOrDie(const RegistryFlags& flags,
                                                          const std::vector<oci::Reference>& references) {
  return OrDie(registry::Session::Open(SessionOptionsFrom(flags), references));
}

}  // namespace strata::cli
