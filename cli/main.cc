#include <CLI/CLI.hpp>

#include "cli/app.h"

int main(int argc, char** argv) {
  CLI::App app{"strata"};
  strata::cli::GlobalOptions options;
  strata::cli::BuildApp(app, options);
  CLI11_PARSE(app, argc, argv);
  return 0;
}
