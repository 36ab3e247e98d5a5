// Runs the real `strata` binary as a user would, isolated in a temp "home".
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace strata::test_support {

struct CommandRun {
  int code = -1;
  std::string output;  // stdout + stderr
};

// Runs `strata_bin --root <home>/store <args...>` to completion under `env` with HOME=<home>,
// XDG_CONFIG_HOME=<home>/config, DOCKER_CONFIG=<home>/docker,
// REGISTRY_AUTH_FILE=<home>/auth.json and STRATA_CERTS_DIR=<home>/certs.d, so that no
// file of the host's user (credentials, certs.d) is read or written. `prefix` runs first
// and is given the rest as its arguments (e.g. a shell feeding stdin). A failure to run at
// all fails the test and yields code -1.
CommandRun RunStrata(const std::filesystem::path& strata_bin, const std::filesystem::path& home,
                     const std::vector<std::string>& args, const std::vector<std::string>& prefix = {});

// The non-empty lines of a command's output, without their newlines.
std::vector<std::string> NonEmptyLines(const std::string& text);

}  // namespace strata::test_support
