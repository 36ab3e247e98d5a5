// Crash consistency harness: runs one `strata` operation in a child process, SIGKILLs it
// after a seeded delay, then checks that the store recovers and the operation finishes.
//
// For every seed the runner
//   1. copies the operation's template home (prepared once) into a fresh TempRoot and lets
//      the operation add per-seed state (a --rw mount, ...);
//   2. records the blobs and images (name -> target) committed before the operation;
//   3. starts `strata --root <home>/store <args>`, sleeps DelayFraction(seed) x the
//      duration of one uncrashed run, and sends SIGKILL;
//   4. runs `strata fsck`; if it is not clean, `fsck --repair`, and fsck must then be clean;
//      every blob the operation must preserve is still recorded and hashes to its digest,
//      and every image still names what it named;
//   5. reruns the operation, which must succeed, and lets the operation verify the result
//      (and count bytes transferred again); fsck must be clean at the end.
// The seed alone picks the delay (as a fraction of the measured duration), so a failing
// seed reruns alone with STRATA_CRASH_SEEDS=<seed> (see SeedsFromEnv).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "base/error.h"
#include "tests/support/strata_cli.h"

namespace strata::crash {

// What one seed saw. `error` is empty when every check passed.
struct SeedOutcome {
  uint64_t seed = 0;
  double fraction = 0;                   // of the measured duration
  std::chrono::microseconds delay{0};    // from exec to SIGKILL
  bool killed_mid_op = false;            // still running when the signal came
  bool fsck_clean = false;               // clean right after the kill
  bool fsck_repaired = false;            // not clean, and --repair made it clean
  std::vector<std::string> problems;     // fsck's problem lines after the kill
  bool same_pid = false;                 // killed run and rerun in fresh pid namespaces
  bool completed = false;                // the rerun succeeded and verified
  int64_t bytes_refetched = 0;           // transferred twice across kill + rerun (op-defined)
  int64_t bytes_resumed = 0;             // bytes the rerun did not transfer thanks to resume
  std::string error;
};

class CrashRunner;

// One operation under test. The runner owns the sequencing; an operation only prepares
// state, names its command and checks results. Paths: `home` is the per-seed directory,
// the store is home / "store" (test_support::RunStrata's layout).
class CrashOperation {
 public:
  virtual ~CrashOperation() = default;
  virtual std::string name() const = 0;
  // Once: everything seeds share (store content, archives), into `template_home`.
  virtual Status PrepareTemplate(const std::filesystem::path& template_home) = 0;
  // Per seed, after the template was copied into `home` (e.g. a --rw mount).
  virtual Status PrepareSeed(const std::filesystem::path& /*home*/, uint64_t /*seed*/) { return {}; }
  // The subcommand and its arguments (after `strata --root <home>/store`).
  virtual std::vector<std::string> Args(const std::filesystem::path& home, uint64_t seed) const = 0;
  // The blobs that must survive the crash, out of those committed before the operation
  // (default: all of them; gc keeps only what images reference).
  virtual std::set<std::string> MustSurvive(const std::set<std::string>& committed_before) const {
    return committed_before;
  }
  // Just before the operation's first (killed) start; e.g. snapshot transfer counters.
  virtual Status BeforeKilledRun(const std::filesystem::path& /*home*/, uint64_t /*seed*/) { return {}; }
  // After the kill and fsck, before the rerun.
  virtual Status BeforeRerun(const std::filesystem::path& /*home*/, uint64_t /*seed*/) { return {}; }
  // After a successful run: the result is whole. After a rerun `outcome` is set and the
  // operation may fill in bytes_refetched/resumed; after the uncrashed measuring run it is null.
  virtual Status Verify(const std::filesystem::path& home, uint64_t seed, SeedOutcome* outcome) = 0;

 protected:
  // The runner driving this operation (set by its constructor), for `strata` commands.
  const CrashRunner& runner() const { return *runner_; }

 private:
  friend class CrashRunner;
  const CrashRunner* runner_ = nullptr;
};

// The seeds to run: $STRATA_CRASH_SEEDS as "17", "3,17,40" or "0-49" (ranges and lists
// mix: "0-9,17"); unset = 0..default_count-1.
std::vector<uint64_t> SeedsFromEnv(size_t default_count);

// Where in the operation seed `seed` kills, as a fraction of one uncrashed run: every
// 8th seed very early (0..3%), every 8th very late (92..100%), the rest uniform in [0, 1).
double DelayFraction(uint64_t seed);

// Whether seed `seed` runs the killed process and its rerun each in a fresh pid namespace
// (every 4th seed): both then have the same pid, as CLI runs in containers often do, so
// nothing may assume a crashed process's pid is not reused.
bool SamePidSeed(uint64_t seed);

// Aggregate of a run of seeds, one row of scripts/crash's table.
struct CrashSummary {
  std::string op;
  std::chrono::microseconds duration{0};
  int seeds = 0;
  int killed_mid_op = 0;
  int fsck_clean = 0;
  int fsck_repaired = 0;
  int completed = 0;
  int64_t bytes_refetched = 0;
  int64_t bytes_resumed = 0;
  std::map<std::string, int> problem_kinds;  // fsck problem kind -> seeds that had it
  std::vector<uint64_t> failed_seeds;
  void Add(const SeedOutcome& outcome);
  // "op seeds killed clean repaired completed refetched resumed problems" tab-separated.
  std::string Row() const;
};

class CrashRunner {
 public:
  // `work_dir` holds the template home and per-op logs; it must outlive the runner.
  CrashRunner(std::filesystem::path strata_bin, std::filesystem::path work_dir, CrashOperation& op);

  // PrepareTemplate, then three uncrashed runs on fresh copies: the median is the duration.
  Status Setup();
  std::chrono::microseconds duration() const { return duration_; }

  // One seed, start to finish. Never throws; failures land in outcome.error.
  SeedOutcome RunSeed(uint64_t seed);

  // `strata <args>` on `home`'s store (test_support::RunStrata), exit code and output.
  test_support::CommandRun Strata(const std::filesystem::path& home, const std::vector<std::string>& args) const;

 private:
  // One uncrashed run on a fresh copy of the template: its duration, verified.
  Result<std::chrono::microseconds> MeasureOnce(int run);
  Status RunSeedChecked(uint64_t seed, const std::filesystem::path& home, SeedOutcome& outcome);
  Status CopyTemplate(const std::filesystem::path& home) const;
  std::map<std::string, std::string> ChildEnv(const std::filesystem::path& home) const;
  Status CheckPreserved(const std::filesystem::path& home, const std::set<std::string>& blobs,
                        const std::map<std::string, std::string>& images) const;

  std::filesystem::path strata_bin_;
  std::filesystem::path work_dir_;
  CrashOperation& op_;
  std::chrono::microseconds duration_{0};
};

// Blob digests recorded in the store (`strata content ls -q`).
Result<std::set<std::string>> ListBlobs(const CrashRunner& runner, const std::filesystem::path& home);
// Image names and the digests they point at (`strata --json images`).
Result<std::map<std::string, std::string>> ListImages(const CrashRunner& runner, const std::filesystem::path& home);
// Rehashes <home>/store/blobs/<alg>/<hex>; FailedPrecondition naming the blob on mismatch.
Status VerifyBlobFile(const std::filesystem::path& home, const std::string& digest);

// Appends `summary.Row()` to $STRATA_CRASH_REPORT when set (scripts/crash collects them).
void AppendReport(const CrashSummary& summary);

}  // namespace strata::crash
