// strata-bench-mirror: serving throughput of one image to skopeo from strata's registry
// mirror (`strata serve --no-socket --registry`) vs from docker-registry (distribution 2.8)
// serving the same image, both on loopback over plain HTTP, both with the blobs in the page
// cache. Each round runs `skopeo copy docker://<server>/bench/img:1 dir:<fresh dir>` against
// each server, alternating who goes first.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "bench/bench_util.h"
#include "bench/registry_bench_util.h"

namespace strata {
namespace {

namespace fs = std::filesystem;

struct Options {
  size_t size_mib = 300;
  int rounds = 5;
  fs::path strata = bench::StrataNextToSelf();
  fs::path work_dir;
};

Options ParseOptions(int argc, char** argv) {
  Options options;
  bench::CommandLine cli("strata-bench-mirror", "[--size-mib N] [--rounds N] [--strata PATH] [--work-dir DIR]");
  cli.Parse(argc, argv, [&](std::string_view flag, std::string_view value) {
    if (flag == "--size-mib") options.size_mib = cli.Positive<size_t>(flag, value);
    else if (flag == "--rounds") options.rounds = cli.Positive<int>(flag, value);
    else if (flag == "--strata") options.strata = value;
    else if (flag == "--work-dir") options.work_dir = value;
    else return false;
    return true;
  });
  return options;
}

int FreePort() {
  for (int port = 20000 + (::getpid() % 20000);; ++port) {
    if (!bench::HttpStatus(port, "GET", "/v2/")) return port;
  }
}

int Run(const Options& options) {
  const bench::MachineLoad load = bench::ReadMachineLoad();
  std::optional<TempDir> work = bench::CreateWorkDir("strata-bench-mirror", options.work_dir);
  if (!work) return 1;
  const fs::path log = work->path() / "commands.log";
  auto fail = [&](std::string_view what) {
    std::fprintf(stderr, "%.*s failed: %s\n", static_cast<int>(what.size()), what.data(),
                 bench::FileTail(log).c_str());
    return 1;
  };

  auto registry = bench::LoopbackRegistry::Start(work->path() / "registry");
  if (!registry) return fail("docker-registry start: " + registry.error().ToString());
  std::fprintf(stderr, "generating a %zu MiB image...\n", options.size_mib);
  auto image = bench::WriteTestImageLayout(work->path() / "layout", options.size_mib, /*seed=*/options.size_mib);
  if (!image) return fail("image generation: " + image.error().ToString());
  const std::string source = (*registry)->host() + "/bench/img:1";
  if (!bench::RunLogged({"skopeo", "copy", "-q", "--dest-tls-verify=false",
                         "oci:" + (work->path() / "layout").string() + ":1", "docker://" + source},
                        log)) {
    return fail("push to docker-registry");
  }
  const fs::path root = work->path() / "strata-root";
  if (!bench::RunLogged({options.strata.string(), "--root", root.string(), "pull", "--no-unpack", "-q", source}, log)) {
    return fail("strata pull");
  }
  const int port = FreePort();
  const std::string mirror = fmt::format("127.0.0.1:{}", port);
  const int log_fd = ::open(log.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  pid_t server = bench::SpawnTiedToThread(
      {options.strata.string(), "--root", root.string(), "serve", "--no-socket", "--registry", mirror}, log_fd);
  for (int i = 0; i < 400; ++i) {
    auto status = bench::HttpStatus(port, "GET", "/v2/");
    if (status && *status == 200) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  bench::EnsureTreeCached((*registry)->storage_dir());
  bench::EnsureTreeCached(root / "blobs");

  struct Contender {
    std::string name;
    std::string reference;
    bench::Samples samples;
  };
  std::vector<Contender> contenders = {{"strata serve --registry", mirror + "/bench/img:1", {}},
                                       {"docker-registry 2.8", source, {}}};
  for (int round = 0; round < options.rounds; ++round) {
    for (int k = 0; k < 2; ++k) {
      Contender& c = contenders[(round + k) % 2];
      const fs::path target = work->path() / fmt::format("copy-{}-{}", round, k);
      bool ok = true;
      const double seconds = bench::TimeSeconds([&] {
        ok = bench::RunLogged({"skopeo", "copy", "-q", "--src-tls-verify=false", "docker://" + c.reference,
                               "dir:" + target.string()},
                              log);
      });
      fs::remove_all(target);
      if (!ok) {
        bench::StopChild(server, std::chrono::seconds(5));
        return fail("skopeo copy from " + c.name);
      }
      c.samples.Add(seconds);
    }
  }
  // Peak RSS since start: strata serve only served; docker-registry also took the push.
  const uint64_t strata_rss_kib = bench::VmHwmKib(server);
  const uint64_t registry_rss_kib = bench::VmHwmKib((*registry)->pid());
  bench::StopChild(server, std::chrono::seconds(5));
  ::close(log_fd);

  const double megabytes = static_cast<double>(image->compressed_bytes) / 1e6;
  fmt::print("skopeo copy docker://<server>/bench/img:1 dir:<fresh> — {} layers, {:.0f} MB of blobs, {} rounds "
             "alternating; {}\n\n",
             image->layers, megabytes, options.rounds, load.Describe());
  bench::MarkdownTable table({{"server", bench::MarkdownTable::Align::kLeft},
                              {"seconds, median (min-max)"},
                              {"MB/s (median)"}});
  for (const Contender& c : contenders) {
    table.AddRow({c.name,
                  fmt::format("{:.2f} ({:.2f}-{:.2f})", c.samples.Median(), c.samples.Min(), c.samples.Max()),
                  fmt::format("{:.0f}", megabytes / c.samples.Median())});
  }
  const double ratio = contenders[1].samples.Median() / contenders[0].samples.Median();
  fmt::print("{}\nstrata / docker-registry throughput: {:.2f}x (target >= 1.0: {})\n", table.Render(), ratio,
             ratio >= 1.0 ? "met" : "NOT met");
  bench::PeakRssTable memory;
  const std::string operation = fmt::format("serve {} MiB image to skopeo, {} rounds", options.size_mib, options.rounds);
  for (const auto& [name, kib, how] :
       {std::tuple{contenders[0].name, strata_rss_kib, "VmHWM of the server at its stop"},
        std::tuple{contenders[1].name, registry_rss_kib, "VmHWM of the server at the end (it also took the push)"}}) {
    if (kib == 0) continue;
    bench::Samples rss;
    rss.Add(bench::KibToMb(kib));
    memory.Add(operation, name, rss, how);
  }
  fmt::print("\n{}", memory.Render());
  return ratio >= 1.0 ? 0 : 1;
}

}  // namespace
}  // namespace strata

int main(int argc, char** argv) { return strata::Run(strata::ParseOptions(argc, argv)); }
