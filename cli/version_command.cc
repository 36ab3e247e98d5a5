// `strata version`: strata's version and the versions of the libraries it runs on, so a
// bug report says exactly what was built.
#include <openssl/crypto.h>
#include <rocksdb/version.h>
#include <xxhash.h>
#include <zstd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/app.h"
#include "cli/version.h"

namespace strata::cli {
namespace {

nlohmann::ordered_json VersionInfo() {
  nlohmann::ordered_json info;
  info["version"] = STRATA_VERSION;
  info["commit"] = STRATA_GIT_COMMIT;
  info["libraries"] = {
      {"openssl", OpenSSL_version(OPENSSL_VERSION_STRING)},
      {"rocksdb", fmt::format("{}.{}.{}", ROCKSDB_MAJOR, ROCKSDB_MINOR, ROCKSDB_PATCH)},
      {"zstd", ZSTD_versionString()},
      {"xxhash", fmt::format("{}.{}.{}", XXH_VERSION_MAJOR, XXH_VERSION_MINOR, XXH_VERSION_RELEASE)},
  };
  return info;
}

}  // namespace

void AddVersionCommand(CLI::App& app, const GlobalOptions& options) {
  auto* cmd = app.add_subcommand("version", "Print strata's version and its libraries' versions");
  cmd->callback([&options] {
    auto info = VersionInfo();
    if (options.json) {
      fmt::print("{}\n", info.dump(2));
      return;
    }
    fmt::print("strata {} ({})\n", info["version"].get<std::string>(),
               info["commit"].get<std::string>());
    for (const auto& [name, version] : info["libraries"].items()) {
      fmt::print("  {:<8} {}\n", name, version.get<std::string>());
    }
  });
}

}  // namespace strata::cli
