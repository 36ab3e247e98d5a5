#include "tests/support/measured_run.h"

#include <sstream>

#include <fmt/format.h>

#include "base/file.h"
#include "tests/support/process.h"

namespace strata::test_support {

MeasuredRun RunMeasured(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                        const std::map<std::string, std::string>& env) {
  MeasuredRun run;
  auto temp = TempDir::Create("strata-run");
  if (!temp) {
    run.output = temp.error().ToString();
    return run;
  }
  const std::filesystem::path log = temp->path() / "output";
  const std::filesystem::path rss_file = temp->path() / "rss";
  std::vector<std::string> timed = {"/usr/bin/time", "-f", "%M", "-o", rss_file.string()};
  timed.insert(timed.end(), argv.begin(), argv.end());
  const auto start = std::chrono::steady_clock::now();
  auto child = Child::Start({.argv = timed, .env = env, .log_path = log});
  if (!child) {
    run.output = child.error().ToString();
    return run;
  }
  auto code = child->Wait(timeout);
  if (code) {
    run.code = *code;
  } else {
    child->Stop(std::chrono::milliseconds(0));
    run.output = fmt::format("timed out after {} ms (hung?)\n", timeout.count());
  }
  run.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  run.output += ReadFile(log).value_or("");
  // "%M\n", after "Command exited with non-zero status N\n" when it failed.
  std::istringstream rss(ReadFile(rss_file).value_or(""));
  for (std::string line; std::getline(rss, line);) {
    if (!line.empty() && line.find_first_not_of("0123456789") == std::string::npos) run.max_rss_kib = std::stoll(line);
  }
  if (run.max_rss_kib == 0) run.output += "\n(no peak RSS: /usr/bin/time did not report one)";
  return run;
}

}  // namespace strata::test_support
