// Load: 16 concurrent `strata pull`s of images that share layers, through one `strata serve`,
// while containerd (with strata as its proxy snapshotter on the same socket) cycles
// Prepare/Mounts/Commit/View/Remove and pulls, runs and removes images of its own, and
// `strata gc` runs every few seconds, all at once. Images come in generations (load_images.h):
// a generation is removed (`strata rmi`) once the next one is completely pulled, so GC has
// real garbage to collect while pulls of newer content are in flight.
//
// What must hold: every operation succeeds (each pull is verified by mounting the image
// and hashing its files), GC completes while pulls run, no blob is GET from the registry
// twice (its access log is the judge), the store holds exactly what the remaining images
// need after a last GC, `strata fsck` is clean after the daemon stopped, and the daemon's
// peak RSS stays under a bound. A summary (operations per kind, errors, GC latencies, peak
// RSS of the daemon and of the CLI processes, blobs fetched twice) goes to stderr as
// "[load] ..." lines.
//
// Run length: $STRATA_LOAD_SECONDS (default 120); scripts/soak runs it for an hour. Needs
// root, containerd, ctr, runc and docker-registry; skips otherwise. STRATA_KEEP_TEST_DIRS=1
// keeps the temp dir (logs of strata, containerd and the registry).
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "oci/chain_id.h"
#include "tests/load/load_images.h"
#include "tests/load/load_stats.h"
#include "tests/support/assertions.h"
#include "tests/support/containerd_fixture.h"
#include "tests/support/measured_run.h"
#include "tests/support/strata_containerd_test.h"
#include "tests/support/process.h"
#include "tests/support/registry_fixture.h"
#include "tests/support/root.h"

namespace strata::load {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using test_support::MeasuredRun;
using test_support::RunMeasured;
using namespace std::chrono_literals;
using test_support::Child;
using test_support::ChildOptions;
using test_support::ContainerdFixture;
using test_support::CtrResult;
using test_support::RegistryFixture;
using test_support::TempRoot;

constexpr int kPullers = kImagesPerGeneration;
constexpr auto kGcInterval = 3s;
// A call that takes longer than this is reported as hung (and killed).
constexpr auto kCommandTimeout = 600s;
// Bounds a leak would break: the daemon never needs more than a few hundred MiB here (one
// pull holds buffers of a few MiB per layer in flight), the CLI a few tens.
constexpr long kDaemonRssBoundKib = 1024 * 1024;
constexpr long kCliRssBoundKib = 256 * 1024;

// The strata binary: $STRATA_BIN (scripts/soak runs a private copy, so that a rebuild of
// build/bin/strata during a long run does not pull the binary from under it), else the build's.
std::string StrataBin() {
  const char* bin = std::getenv("STRATA_BIN");
  return bin != nullptr && *bin != '\0' ? bin : STRATA_BIN;
}

std::chrono::seconds LoadDuration() {
  if (const char* text = std::getenv("STRATA_LOAD_SECONDS"); text != nullptr && *text != '\0') {
    return std::chrono::seconds(std::max(10L, std::strtol(text, nullptr, 10)));
  }
  return 120s;
}

double SecondsSince(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// Paths under `dir` named in a `ctr snapshots mounts` line (options such as
// upperdir=<path>,lowerdir=<a>:<b> or a bind source), in order.
std::vector<fs::path> PathsUnder(const std::string& text, const fs::path& dir) {
  std::vector<fs::path> paths;
  const std::string prefix = dir.string() + "/";
  for (size_t at = text.find(prefix); at != std::string::npos; at = text.find(prefix, at + 1)) {
    const size_t end = text.find_first_of(",: \n'\"", at);
    paths.emplace_back(text.substr(at, end == std::string::npos ? std::string::npos : end - at));
    if (end == std::string::npos) break;
    at = end - 1;
  }
  return paths;
}

class LoadTest : public test_support::StrataContainerdTest {
 protected:
  void SetUp() override {
    STRATA_REQUIRE_ROOT();
    if (std::string missing = test_support::MissingContainerdTool(); !missing.empty()) {
      GTEST_SKIP() << missing << " is not installed";
    }
    ASSERT_EQ(::access(StrataBin().c_str(), X_OK), 0) << StrataBin() << " is not built";
    ASSERT_OK_AND_ASSIGN(temp_, TempRoot::Create("strata-load"));
    for (const char* sub : {"home", "certs.d", "cmd", "mnt", "fifo", "runc"}) fs::create_directories(dir() / sub);
    ASSERT_OK_AND_ASSIGN(registry_, RegistryFixture::Start());
  }


  // Environment of every strata process: nothing of the host user's (credentials, certs.d).
  std::map<std::string, std::string> StrataEnv() const {
    const fs::path home = dir() / "home";
    return {{"HOME", home.string()},
            {"XDG_CONFIG_HOME", (home / "config").string()},
            {"DOCKER_CONFIG", (home / "docker").string()},
            {"REGISTRY_AUTH_FILE", (home / "auth.json").string()},
            {"STRATA_CERTS_DIR", (dir() / "certs.d").string()}};
  }

  void StartStrata() {
    ChildOptions options{.argv = {StrataBin(), "--root", strata_root().string(), "--log-level", "info", "serve",
                                  "--socket", strata_socket().string(), "--snapshotter", "strata",
                                  "--shutdown-grace", "30"},
                         .env = StrataEnv(),
                         .log_path = dir() / "strata.log"};
    ASSERT_OK_AND_ASSIGN(auto child, Child::Start(std::move(options)));
    strata_ = std::make_unique<Child>(std::move(child));
    const auto deadline = Clock::now() + 30s;
    while (!test_support::UnixSocketAccepts(strata_socket()) || !fs::exists(strata_root() / "daemon.json")) {
      ASSERT_TRUE(strata_->Running()) << "strata serve exited:\n" << strata_->LogTail();
      ASSERT_LT(Clock::now(), deadline) << "strata serve did not listen:\n" << strata_->LogTail();
      std::this_thread::sleep_for(20ms);
    }
  }

  // Runs `strata --root <root> <args>` (through the daemon while it serves the root) and
  // records it under `kind`; a failure is recorded with its output.
  MeasuredRun Strata(const std::string& kind, const std::vector<std::string>& args) {
    std::vector<std::string> argv = {StrataBin(), "--root", strata_root().string()};
    argv.insert(argv.end(), args.begin(), args.end());
    MeasuredRun outcome = RunMeasured(argv, kCommandTimeout, StrataEnv());
    stats_.Record(kind, outcome.code == 0, outcome.seconds(), outcome.max_rss_kib,
                  outcome.code == 0 ? "" : fmt::format("strata {}: exit {}: {}", fmt::join(args, " "), outcome.code,
                                                       outcome.output));
    return outcome;
  }

  // `ctr` recorded under `kind`.
  CtrResult Ctr(const std::string& kind, const std::vector<std::string>& args) {
    CtrResult run = containerd_->Ctr(args, kCommandTimeout);
    stats_.Record(kind, run.code == 0, run.seconds, 0,
                  run.code == 0 ? "" : fmt::format("ctr {}: exit {}: {}", fmt::join(args, " "), run.code, run.output));
    return run;
  }

  void Puller(int index);
  void Producer();
  void Collector();
  void SnapshotCycler();
  void ContainerdImageCycler(const std::vector<std::string>& refs);
  void RssSampler();
  // Removes generation `generation` from the store (its successor is complete).
  void Retire(int generation);
  bool stopping() {
    std::lock_guard lock(mutex_);
    return stop_;
  }
  // Sleeps up to `period`; false once stop was requested.
  bool Pause(std::chrono::milliseconds period) {
    std::unique_lock lock(mutex_);
    return !changed_.wait_for(lock, period, [&] { return stop_; });
  }

  Stats stats_;
  Clock::time_point started_;
  Clock::time_point deadline_;

  std::mutex mutex_;
  std::condition_variable changed_;
  bool stop_ = false;                              // guarded by mutex_
  std::vector<std::vector<LoadImage>> generations_;  // published; guarded by mutex_
  std::vector<int> pulled_per_generation_;         // guarded by mutex_
  int completed_generations_ = 0;                  // guarded by mutex_
  std::set<int> retired_;                          // guarded by mutex_
  std::set<std::pair<int, int>> pulled_;           // (generation, index) pulled and verified; guarded by mutex_
  std::vector<std::pair<double, long>> rss_samples_;  // (seconds, VmRSS KiB); guarded by mutex_
  GcTotals gc_totals_;                             // guarded by mutex_
};

void LoadTest::Producer() {
  for (int generation = 1;; ++generation) {
    {
      std::unique_lock lock(mutex_);
      // Stay at most two generations ahead of the pulls.
      changed_.wait_until(lock, deadline_, [&] {
        return stop_ || static_cast<int>(generations_.size()) < completed_generations_ + 2;
      });
      if (stop_ || Clock::now() >= deadline_) return;
    }
    const auto start = Clock::now();
    Result<std::vector<LoadImage>> images = PushGeneration(*registry_, generation);
    stats_.Record("push generation", images.has_value(), SecondsSince(start), 0,
                  images ? "" : "push generation: " + images.error().ToString());
    if (!images) return;
    std::lock_guard lock(mutex_);
    generations_.push_back(std::move(*images));
    pulled_per_generation_.push_back(0);
    changed_.notify_all();
  }
}

void LoadTest::Puller(int index) {
  const fs::path mount_point = dir() / "mnt" / fmt::format("puller{}", index);
  fs::create_directories(mount_point);
  for (int generation = 0;; ++generation) {
    std::string ref;
    ExpectedTree expected;
    {
      std::unique_lock lock(mutex_);
      changed_.wait_until(lock, deadline_,
                          [&] { return stop_ || static_cast<int>(generations_.size()) > generation; });
      if (stop_ || Clock::now() >= deadline_ || static_cast<int>(generations_.size()) <= generation) return;
      const LoadImage& image = generations_[generation][index];
      ref = registry_->host() + "/" + image.repository + ":" + image.tag;
      expected = image.expected;
    }
    bool ok = Strata("pull", {"pull", "-q", ref}).code == 0;
    ok = ok && Strata("mount", {"mount", ref, mount_point.string()}).code == 0;
    if (ok) {
      const std::string difference = CompareTree(mount_point.string(), expected);
      stats_.Record("verify", difference.empty(), 0, 0, difference.empty() ? "" : ref + ": " + difference);
      ok = Strata("umount", {"umount", mount_point.string()}).code == 0 && difference.empty();
    }
    int retire = -1;
    {
      std::lock_guard lock(mutex_);
      if (ok) pulled_.emplace(generation, index);
      if (++pulled_per_generation_[generation] == kImagesPerGeneration) {
        completed_generations_ = generation + 1;
        retire = generation - 1;  // every image of `generation` is in: the one before can go
        changed_.notify_all();
      }
    }
    if (retire >= 0) Retire(retire);
    if (!ok) return;  // the failure is recorded; this puller stops (its later generations never complete)
  }
}

void LoadTest::Retire(int generation) {
  std::vector<std::string> args = {"rmi"};
  {
    std::lock_guard lock(mutex_);
    for (const LoadImage& image : generations_[generation]) {
      args.push_back(registry_->host() + "/" + image.repository + ":" + image.tag);
    }
  }
  if (Strata("rmi", args).code != 0) return;
  std::lock_guard lock(mutex_);
  retired_.insert(generation);
}

void LoadTest::Collector() {
  while (Pause(kGcInterval)) {
    MeasuredRun gc = Strata("gc", {"--json", "gc"});
    if (gc.code != 0) continue;
    nlohmann::json report = nlohmann::json::parse(gc.output.substr(std::min(gc.output.find('{'), gc.output.size())),
                                                  nullptr, false);
    std::lock_guard lock(mutex_);
    if (report.is_object()) {
      gc_totals_.blobs_removed += report.value("blobs_removed", nlohmann::json::array()).size();
      gc_totals_.snapshots_removed += report.value("snapshots_removed", nlohmann::json::array()).size();
      gc_totals_.bytes_freed += report.value("bytes_freed", int64_t{0});
    }
    gc_totals_.runs_during_pulls += stop_ ? 0 : 1;
  }
}

void LoadTest::SnapshotCycler() {
  for (int i = 0; !stopping(); ++i) {
    const std::string active = fmt::format("cycle{}-active", i);
    const std::string committed = fmt::format("cycle{}-committed", i);
    const std::string child = fmt::format("cycle{}-child", i);
    const std::string marker = fmt::format("cycle-{}", i);
    if (Ctr("ctr prepare", {"snapshots", "--snapshotter", "strata", "prepare", active}).code != 0) return;
    // Write through the snapshot's writable dir, as a container would through the mount.
    CtrResult mounts = Ctr("ctr mounts", {"snapshots", "--snapshotter", "strata", "mounts", "/unused", active});
    if (mounts.code != 0) return;
    std::vector<fs::path> paths = PathsUnder(mounts.output, proxy_snapshots_dir());
    auto upper = std::find_if(paths.begin(), paths.end(), [](const fs::path& p) { return p.filename() == "fs"; });
    const bool wrote = upper != paths.end() && static_cast<bool>(std::ofstream(*upper / marker) << "x\n");
    stats_.Record("ctr write", wrote, 0, 0, wrote ? "" : "no writable dir in: " + mounts.output);
    if (Ctr("ctr commit", {"snapshots", "--snapshotter", "strata", "commit", committed, active}).code != 0) return;
    // A child of the committed snapshot sees the write in its lower dir. (Not a view: ctr
    // labels only what it prepares as a gc.root, and containerd's GC may take a view, leaving
    // its parent with a child record that blocks the parent's removal.)
    CtrResult prepared =
        Ctr("ctr prepare", {"snapshots", "--snapshotter", "strata", "prepare", "--mounts", child, committed});
    if (prepared.code != 0) return;
    bool seen = false;
    for (const fs::path& path : PathsUnder(prepared.output, proxy_snapshots_dir())) {
      seen = seen || fs::exists(path / marker);
    }
    stats_.Record("ctr verify child", seen, 0, 0, seen ? "" : marker + " not visible to the child: " + prepared.output);
    if (Ctr("ctr remove", {"snapshots", "--snapshotter", "strata", "rm", child}).code != 0) return;
    if (Ctr("ctr remove", {"snapshots", "--snapshotter", "strata", "rm", committed}).code != 0) return;
  }
}

void LoadTest::ContainerdImageCycler(const std::vector<std::string>& refs) {
  for (int i = 0; !stopping(); ++i) {
    const std::string& ref = refs[i % refs.size()];
    if (Ctr("ctr pull", {"images", "pull", "--plain-http", "--snapshotter", "strata", ref}).code != 0) return;
    // The check runs inside the container and answers through the exit status (ctr run
    // returns the task's), not through stdout: one soak saw a `ctr run` exit 0 with no output,
    // which stdout alone cannot tell apart from an empty file.
    const std::string expected = "hello from " + ref.substr(ref.find('/') + 1, ref.rfind(':') - ref.find('/') - 1);
    CtrResult run = Ctr("ctr run", {"run", "--rm", "--fifo-dir", (dir() / "fifo").string(), "--runc-root",
                                    (dir() / "runc").string(), "--snapshotter", "strata", ref,
                                    fmt::format("load-run-{}", i), "/bin/sh", "-c",
                                    fmt::format("test \"$(cat /data/hello)\" = \"{}\"", expected)});
    if (run.code != 0) return;
    if (Ctr("ctr rmi", {"images", "rm", "--sync", ref}).code != 0) return;
  }
}

void LoadTest::RssSampler() {
  const pid_t pid = strata_->pid();
  do {
    const ProcStatus status = ReadProcStatus(pid);
    std::lock_guard lock(mutex_);
    rss_samples_.emplace_back(SecondsSince(started_), status.rss_kib);
  } while (Pause(500ms));
}

TEST_F(LoadTest, ConcurrentPullsContainerdAndGcHoldUp) {
  const std::chrono::seconds duration = LoadDuration();
  ASSERT_NO_FATAL_FAILURE(StartStrata());
  ASSERT_OK_AND_ASSIGN(containerd_, ContainerdFixture::Start(dir() / "containerd", strata_socket(),
                                                             fmt::format("strata-load-{}", ::getpid()),
                                                             {.log_level = "info"}));
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> containerd_refs, PushContainerdImages(*registry_));
  ASSERT_OK_AND_ASSIGN(std::vector<LoadImage> first, PushGeneration(*registry_, 0));
  generations_.push_back(std::move(first));
  pulled_per_generation_.push_back(0);
  const long daemon_rss_at_start = ReadProcStatus(strata_->pid()).rss_kib;

  started_ = Clock::now();
  deadline_ = started_ + duration;
  std::fprintf(stderr, "[load] running %lld s: %d pullers, gc every %lld s, containerd cycling snapshots and images\n",
               static_cast<long long>(duration.count()), kPullers, static_cast<long long>(kGcInterval.count()));
  {
    std::vector<std::thread> pullers;
    for (int i = 0; i < kPullers; ++i) pullers.emplace_back([this, i] { Puller(i); });
    std::vector<std::thread> others;
    others.emplace_back([this] { Producer(); });
    others.emplace_back([this] { Collector(); });
    others.emplace_back([this] { SnapshotCycler(); });
    others.emplace_back([this, &containerd_refs] { ContainerdImageCycler(containerd_refs); });
    others.emplace_back([this] { RssSampler(); });
    for (std::thread& thread : pullers) thread.join();
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
      changed_.notify_all();
    }
    for (std::thread& thread : others) thread.join();
  }
  const double load_seconds = SecondsSince(started_);

  // Quiet now: a last GC, then the store must hold exactly what the remaining images need.
  std::set<std::string> expected_blobs;
  std::set<std::string> expected_snapshots;
  int images_kept = 0;
  for (const auto& [generation, index] : pulled_) {
    if (retired_.contains(generation)) continue;
    const LoadImage& image = generations_[generation][index];
    ++images_kept;
    expected_blobs.insert(image.pushed.manifest_digest.hex());
    for (const Digest& blob : image.blobs()) expected_blobs.insert(blob.hex());
    for (const Digest& chain_id : oci::ChainIDs(image.pushed.diff_ids)) expected_snapshots.insert(chain_id.ToString());
  }
  MeasuredRun last_gc = Strata("gc", {"gc"});
  EXPECT_EQ(last_gc.code, 0) << last_gc.output;
  std::set<std::string> blob_files;
  for (const auto& entry : fs::directory_iterator(strata_root() / "blobs" / "sha256")) {
    blob_files.insert(entry.path().filename().string());
  }
  EXPECT_EQ(blob_files, expected_blobs) << "after the last gc the store holds other blobs than its images need";
  const size_t snapshot_dirs = std::distance(fs::directory_iterator(strata_root() / "snapshots"), fs::directory_iterator());
  const ProcStatus daemon_status = ReadProcStatus(strata_->pid());

  containerd_.reset();
  const int serve_exit = strata_->Stop(60s);
  EXPECT_EQ(serve_exit, 0) << strata_->LogTail(8192);
  MeasuredRun fsck = Strata("fsck", {"fsck"});
  EXPECT_EQ(fsck.code, 0) << fsck.output;

  // The registry's access log: GETs of the load images' blobs, per digest.
  std::map<std::string, int> gets;
  int range_answers = 0;
  for (const test_support::RegistryRequest& request : registry_->Requests()) {
    if (request.method != "GET" || !request.uri.starts_with("/v2/load/")) continue;
    const size_t at = request.uri.find("/blobs/");
    if (at == std::string::npos) continue;
    ++gets[request.uri.substr(at + 7)];
    if (request.status == 206) ++range_answers;
  }
  std::vector<std::string> fetched_twice;
  for (const auto& [digest, count] : gets) {
    if (count > 1) fetched_twice.push_back(fmt::format("{} ({} GETs)", digest, count));
  }

  Summary summary{.seconds = load_seconds,
                  .generations_published = static_cast<int>(generations_.size()),
                  .generations_completed = completed_generations_,
                  .images_kept = images_kept,
                  .blob_gets = gets,
                  .range_answers = range_answers,
                  .fetched_twice = fetched_twice,
                  .daemon_rss_at_start_kib = daemon_rss_at_start,
                  .daemon_peak_kib = daemon_status.hwm_kib,
                  .rss_samples = rss_samples_,
                  .gc = gc_totals_,
                  .blob_files = blob_files.size(),
                  .snapshot_dirs = snapshot_dirs,
                  .expected_snapshots = expected_snapshots.size(),
                  .fsck_clean = fsck.code == 0};
  PrintSummary(summary, stats_);

  EXPECT_EQ(stats_.error_count(), 0) << "first errors:\n" << fmt::format("{}", fmt::join(stats_.errors(), "\n"));
  EXPECT_TRUE(fetched_twice.empty()) << fmt::format("{}", fmt::join(fetched_twice, "\n"));
  EXPECT_GE(completed_generations_, 2) << "the pulls made too little progress to exercise retirement and GC";
  EXPECT_GE(gc_totals_.runs_during_pulls, 2) << "GC did not complete while pulls ran";
  EXPECT_GT(gc_totals_.blobs_removed, 0u) << "GC never had retired images to collect";
  EXPECT_LE(daemon_status.hwm_kib, kDaemonRssBoundKib);
  EXPECT_LE(stats_.max_rss_kib(), kCliRssBoundKib);
  EXPECT_EQ(snapshot_dirs, expected_snapshots.size()) << "snapshot dirs after the last gc";
}

}  // namespace
}  // namespace strata::load
