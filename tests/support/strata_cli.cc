#include "tests/support/strata_cli.h"

#include <sstream>

#include <gtest/gtest.h>

#include "tests/support/process.h"

namespace strata::test_support {

CommandRun RunStrata(const std::filesystem::path& strata_bin, const std::filesystem::path& home,
                     const std::vector<std::string>& args, const std::vector<std::string>& prefix) {
  std::vector<std::string> argv = prefix;
  argv.insert(argv.end(), {"env", "HOME=" + home.string(), "XDG_CONFIG_HOME=" + (home / "config").string(),
                           "DOCKER_CONFIG=" + (home / "docker").string(),
                           "REGISTRY_AUTH_FILE=" + (home / "auth.json").string(),
                           "STRATA_CERTS_DIR=" + (home / "certs.d").string(), strata_bin.string(), "--root",
                           (home / "store").string()});
  argv.insert(argv.end(), args.begin(), args.end());
  CommandRun run;
  auto code = RunCommand(argv, &run.output);
  EXPECT_TRUE(code.has_value()) << code.error().ToString();
  run.code = code.value_or(-1);
  return run;
}

std::vector<std::string> NonEmptyLines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) lines.push_back(line);
  }
  return lines;
}

}  // namespace strata::test_support
