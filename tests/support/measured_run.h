// A command run to its end under GNU time (/usr/bin/time, package `time`, which
// scripts/setup installs), for its exit code, output and peak RSS. GNU time measures the
// command alone: wait4's ru_maxrss of a child of ours would include the RSS of the (big,
// multi-threaded) test process it was forked from, until exec.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace strata::test_support {

struct MeasuredRun {
  int code = -1;            // exit code, 128+N for signal N; -1 when it did not start or timed out
  std::string output;       // stdout + stderr, all of it, and why it did not finish
  int64_t max_rss_kib = 0;  // the command's peak RSS (GNU time's %M); 0 = not measured
  std::chrono::milliseconds elapsed{0};
  double seconds() const { return std::chrono::duration<double>(elapsed).count(); }
};

// Runs argv (argv[0] a path) with `env` added, up to `timeout` (then killed, code -1).
MeasuredRun RunMeasured(const std::vector<std::string>& argv,
                        std::chrono::milliseconds timeout = std::chrono::minutes(5),
                        const std::map<std::string, std::string>& env = {});

}  // namespace strata::test_support
