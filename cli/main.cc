#include <sys/resource.h>

#include <CLI/CLI.hpp>

#include "cli/app.h"

namespace {

// Unpacks and layer image builds keep hundreds of files open at once (a vm mount builds up
// to four images, each with up to 256 copies in flight): like containerd, take the hard
// limit on open files rather than the usual soft 1024.
void RaiseOpenFileLimit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    (void)::setrlimit(RLIMIT_NOFILE, &limit);
  }
}

}  // namespace

int main(int argc, char** argv) {
  RaiseOpenFileLimit();
  CLI::App app{"strata"};
  strata::cli::GlobalOptions options;
  strata::cli::BuildApp(app, options);
  CLI11_PARSE(app, argc, argv);
  return 0;
}
