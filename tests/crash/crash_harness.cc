#include "tests/crash/crash_harness.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "base/digest.h"
#include "base/file.h"
#include "tests/support/process.h"
#include "tests/support/root.h"

namespace strata::crash {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using test_support::CommandRun;
using test_support::NonEmptyLines;

std::optional<uint64_t> ParseNumber(std::string_view text) {
  uint64_t value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr != text.data() + text.size()) return std::nullopt;
  return value;
}

// The kind of an fsck problem line ("orphan-file: blobs/sha256/..: ..." -> "orphan-file").
std::string ProblemKind(const std::string& line) { return line.substr(0, line.find(':')); }

// Runs the command as pid 1 of a new pid namespace; SIGKILL of unshare reaches it.
const std::vector<std::string> kSamePidPrefix = {"unshare", "--pid", "--fork", "--kill-child"};

std::string Tail(const std::string& text, size_t max = 2000) {
  return text.size() <= max ? text : "..." + text.substr(text.size() - max);
}

// Waits until no process holds the store's lock (store/store.cc: flock on <root>/lock).
Status WaitForStoreUnlocked(const fs::path& store) {
  auto fd = OpenFile(store / "lock", O_RDONLY);
  if (!fd) return {};  // killed before it made the lock file
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (flock(fd->get(), LOCK_EX | LOCK_NB) != 0) {
    if (Clock::now() > deadline) return Fail(ErrorCode::kInternal, "store {} stays locked after the kill", store.string());
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  flock(fd->get(), LOCK_UN);
  return {};
}

}  // namespace

std::vector<uint64_t> SeedsFromEnv(size_t default_count) {
  std::vector<uint64_t> seeds;
  const char* env = std::getenv("STRATA_CRASH_SEEDS");
  if (env == nullptr || *env == '\0') {
    for (uint64_t s = 0; s < default_count; ++s) seeds.push_back(s);
    return seeds;
  }
  std::string_view rest(env);
  while (!rest.empty()) {
    size_t comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? "" : rest.substr(comma + 1);
    size_t dash = item.find('-');
    auto first = ParseNumber(item.substr(0, dash));
    auto last = dash == std::string_view::npos ? first : ParseNumber(item.substr(dash + 1));
    if (!first || !last || *last < *first) {
      fmt::print(stderr, "STRATA_CRASH_SEEDS: ignoring {:?} (want N, N-M or a comma list)\n", item);
      continue;
    }
    for (uint64_t s = *first; s <= *last; ++s) seeds.push_back(s);
  }
  return seeds;
}

double DelayFraction(uint64_t seed) {
  std::mt19937_64 random(seed * 0x9e3779b97f4a7c15ull + 1);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  const double u = unit(random);
  switch (seed % 8) {
    case 0: return 0.03 * u;         // very early: startup, opening the store, first requests
    case 7: return 0.92 + 0.08 * u;  // very late: final commits, image record
    default: return u;
  }
}

bool SamePidSeed(uint64_t seed) { return seed % 4 == 3; }

void CrashSummary::Add(const SeedOutcome& outcome) {
  ++seeds;
  killed_mid_op += outcome.killed_mid_op ? 1 : 0;
  fsck_clean += outcome.fsck_clean ? 1 : 0;
  fsck_repaired += outcome.fsck_repaired ? 1 : 0;
  completed += outcome.completed ? 1 : 0;
  bytes_refetched += outcome.bytes_refetched;
  bytes_resumed += outcome.bytes_resumed;
  std::set<std::string> kinds;
  for (const std::string& line : outcome.problems) kinds.insert(ProblemKind(line));
  for (const std::string& kind : kinds) ++problem_kinds[kind];
  if (!outcome.error.empty()) failed_seeds.push_back(outcome.seed);
}

std::string CrashSummary::Row() const {
  std::string problems;
  for (const auto& [kind, count] : problem_kinds) {
    problems += fmt::format("{}{}x{}", problems.empty() ? "" : ",", kind, count);
  }
  return fmt::format("{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}", op, duration.count() / 1000, seeds, killed_mid_op,
                     fsck_clean, fsck_repaired, completed, bytes_refetched, bytes_resumed,
                     problems.empty() ? "-" : problems, failed_seeds.empty() ? "-" : fmt::format("{}", fmt::join(failed_seeds, ",")));
}

void AppendReport(const CrashSummary& summary) {
  const char* path = std::getenv("STRATA_CRASH_REPORT");
  if (path == nullptr || *path == '\0') return;
  std::ofstream out(path, std::ios::app);
  out << summary.Row() << "\n";
}

CrashRunner::CrashRunner(fs::path strata_bin, fs::path work_dir, CrashOperation& op)
    : strata_bin_(std::move(strata_bin)), work_dir_(std::move(work_dir)), op_(op) {
  op_.runner_ = this;
}

CommandRun CrashRunner::Strata(const fs::path& home, const std::vector<std::string>& args) const {
  return test_support::RunStrata(strata_bin_, home, args);
}

std::map<std::string, std::string> CrashRunner::ChildEnv(const fs::path& home) const {
  // As test_support::RunStrata sets it up: nothing of the host user's is read.
  return {{"HOME", home.string()},
          {"XDG_CONFIG_HOME", (home / "config").string()},
          {"DOCKER_CONFIG", (home / "docker").string()},
          {"REGISTRY_AUTH_FILE", (home / "auth.json").string()},
          {"STRATA_CERTS_DIR", (home / "certs.d").string()}};
}

Status CrashRunner::CopyTemplate(const fs::path& home) const {
  std::string output;
  STRATA_ASSIGN_OR_RETURN(int code, test_support::RunCommand({"cp", "-a", "--reflink=auto",
                                                              (work_dir_ / "template" / ".").string(), home.string()},
                                                             &output));
  if (code != 0) return Fail(ErrorCode::kInternal, "copy the template home into {}: {}", home.string(), output);
  return {};
}

Status CrashRunner::Setup() {
  const fs::path template_home = work_dir_ / "template";
  std::error_code ec;
  fs::create_directories(template_home, ec);
  if (ec) return Fail(ErrorCode::kInternal, "create {}: {}", template_home.string(), ec.message());
  STRATA_RETURN_IF_ERROR(op_.PrepareTemplate(template_home));

  // Uncrashed runs, timed exactly as the killed runs are (exec to exit); the first one runs
  // with cold caches, so the median of three is the duration.
  std::vector<std::chrono::microseconds> durations;
  for (int run = 0; run < 3; ++run) {
    STRATA_ASSIGN_OR_RETURN(auto duration, MeasureOnce(run));
    durations.push_back(duration);
  }
  std::sort(durations.begin(), durations.end());
  duration_ = durations[1];
  return {};
}

Result<std::chrono::microseconds> CrashRunner::MeasureOnce(int run) {
  STRATA_ASSIGN_OR_RETURN(auto root, test_support::TempRoot::Create("strata-crash-" + op_.name()));
  const fs::path home = root.path();
  STRATA_RETURN_IF_ERROR(CopyTemplate(home));
  STRATA_RETURN_IF_ERROR(op_.PrepareSeed(home, 0));
  STRATA_RETURN_IF_ERROR(op_.BeforeKilledRun(home, 0));
  std::vector<std::string> argv{strata_bin_.string(), "--root", (home / "store").string()};
  for (std::string& arg : op_.Args(home, 0)) argv.push_back(std::move(arg));
  const fs::path log = work_dir_ / fmt::format("{}-measure-{}.log", op_.name(), run);
  const auto start = Clock::now();
  STRATA_ASSIGN_OR_RETURN(auto child, test_support::Child::Start({.argv = argv, .env = ChildEnv(home), .log_path = log}));
  STRATA_ASSIGN_OR_RETURN(int code, child.Wait(std::chrono::minutes(5)));
  const auto duration = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start);
  if (code != 0) {
    return Fail(ErrorCode::kInternal, "uncrashed `strata {}` exited {}: {}", fmt::join(op_.Args(home, 0), " "), code,
                child.LogTail());
  }
  Status verified = op_.Verify(home, 0, nullptr);
  if (!verified) return Fail(verified.error().WithContext("uncrashed run"));
  return duration;
}

SeedOutcome CrashRunner::RunSeed(uint64_t seed) {
  SeedOutcome outcome{.seed = seed, .fraction = DelayFraction(seed), .same_pid = SamePidSeed(seed)};
  outcome.delay = std::chrono::microseconds(static_cast<int64_t>(outcome.fraction * duration_.count()));
  auto root = test_support::TempRoot::Create(fmt::format("strata-crash-{}-{}", op_.name(), seed));
  if (!root) {
    outcome.error = root.error().ToString();
    return outcome;
  }
  Status status = RunSeedChecked(seed, root->path(), outcome);
  if (!status) {
    outcome.completed = false;
    outcome.error = status.error().ToString();
    if (std::getenv("STRATA_KEEP_TEST_DIRS") != nullptr) {
      fmt::print(stderr, "kept {} for post-mortem\n", root->Release().string());
    }
  }
  return outcome;
}

Status CrashRunner::RunSeedChecked(uint64_t seed, const fs::path& home, SeedOutcome& outcome) {
  STRATA_RETURN_IF_ERROR(CopyTemplate(home));
  STRATA_RETURN_IF_ERROR(op_.PrepareSeed(home, seed));
  STRATA_ASSIGN_OR_RETURN(std::set<std::string> blobs_before, ListBlobs(*this, home));
  STRATA_ASSIGN_OR_RETURN(auto images_before, ListImages(*this, home));
  const std::set<std::string> must_survive = op_.MustSurvive(blobs_before);
  STRATA_RETURN_IF_ERROR(op_.BeforeKilledRun(home, seed));

  // The killed run. In a pid namespace, killing `unshare` kills strata (--kill-child).
  const std::vector<std::string> prefix = outcome.same_pid ? kSamePidPrefix : std::vector<std::string>{};
  std::vector<std::string> argv = prefix;
  for (std::string arg : {strata_bin_.string(), std::string("--root"), (home / "store").string()}) argv.push_back(arg);
  for (std::string& arg : op_.Args(home, seed)) argv.push_back(std::move(arg));
  const fs::path log = home / "killed-run.log";
  const auto start = Clock::now();
  STRATA_ASSIGN_OR_RETURN(auto child, test_support::Child::Start({.argv = argv, .env = ChildEnv(home), .log_path = log}));
  std::this_thread::sleep_until(start + outcome.delay);
  // Signals only our own child; if it already exited it is a zombie until Wait reaps it,
  // so the pid cannot have been reused.
  if (::kill(child.pid(), SIGKILL) != 0) return ErrnoFail(errno, fmt::format("kill pid {}", child.pid()));
  STRATA_ASSIGN_OR_RETURN(int code, child.Wait(std::chrono::seconds(30)));
  outcome.killed_mid_op = code == 128 + SIGKILL;
  // With unshare in between, strata dies a moment after unshare: gone once its lock is.
  STRATA_RETURN_IF_ERROR(WaitForStoreUnlocked(home / "store"));
  if (!outcome.killed_mid_op && code != 0) {
    return Fail(ErrorCode::kInternal, "the run before the kill failed by itself (exit {}): {}", code, child.LogTail());
  }

  // fsck: clean, or repaired to clean.
  CommandRun fsck = Strata(home, {"fsck"});
  if (fsck.code == 0) {
    outcome.fsck_clean = true;
  } else {
    for (const std::string& line : NonEmptyLines(fsck.output)) {
      if (!line.starts_with("checked ")) outcome.problems.push_back(line);
    }
    CommandRun repair = Strata(home, {"fsck", "--repair"});
    CommandRun again = Strata(home, {"fsck"});
    if (again.code != 0) {
      return Fail(ErrorCode::kInternal, "fsck after the kill: {}\nfsck --repair: {}\nfsck is still not clean: {}",
                  Tail(fsck.output), Tail(repair.output), Tail(again.output));
    }
    outcome.fsck_repaired = true;
  }
  if (Status preserved = CheckPreserved(home, must_survive, images_before); !preserved) {
    return Fail(preserved.error().WithContext("after the kill and fsck"));
  }

  // The rerun finishes the operation.
  STRATA_RETURN_IF_ERROR(op_.BeforeRerun(home, seed));
  CommandRun rerun = test_support::RunStrata(strata_bin_, home, op_.Args(home, seed), prefix);
  if (rerun.code != 0) {
    return Fail(ErrorCode::kInternal, "rerun of `strata {}` after the kill exited {}: {}",
                fmt::join(op_.Args(home, seed), " "), rerun.code, Tail(rerun.output));
  }
  STRATA_RETURN_IF_ERROR(op_.Verify(home, seed, &outcome));
  CommandRun final_fsck = Strata(home, {"fsck"});
  if (final_fsck.code != 0) {
    return Fail(ErrorCode::kInternal, "fsck after the rerun is not clean: {}", Tail(final_fsck.output));
  }
  outcome.completed = true;
  return {};
}

Status CrashRunner::CheckPreserved(const fs::path& home, const std::set<std::string>& blobs,
                                   const std::map<std::string, std::string>& images) const {
  STRATA_ASSIGN_OR_RETURN(std::set<std::string> blobs_now, ListBlobs(*this, home));
  for (const std::string& digest : blobs) {
    if (!blobs_now.contains(digest)) return Fail(ErrorCode::kFailedPrecondition, "committed blob {} was lost", digest);
    STRATA_RETURN_IF_ERROR(VerifyBlobFile(home, digest));
  }
  STRATA_ASSIGN_OR_RETURN(auto images_now, ListImages(*this, home));
  for (const auto& [name, target] : images) {
    auto now = images_now.find(name);
    if (now == images_now.end()) return Fail(ErrorCode::kFailedPrecondition, "image {} was lost", name);
    if (now->second != target) {
      return Fail(ErrorCode::kFailedPrecondition, "image {} names {} instead of {}", name, now->second, target);
    }
  }
  return {};
}

Result<std::set<std::string>> ListBlobs(const CrashRunner& runner, const fs::path& home) {
  CommandRun run = runner.Strata(home, {"content", "ls", "-q"});
  if (run.code != 0) return Fail(ErrorCode::kInternal, "strata content ls: {}", Tail(run.output));
  std::set<std::string> digests;
  for (const std::string& line : NonEmptyLines(run.output)) {
    if (line.starts_with("sha256:") || line.starts_with("sha512:")) digests.insert(line);
  }
  return digests;
}

Result<std::map<std::string, std::string>> ListImages(const CrashRunner& runner, const fs::path& home) {
  CommandRun run = runner.Strata(home, {"--json", "images"});
  if (run.code != 0) return Fail(ErrorCode::kInternal, "strata images: {}", Tail(run.output));
  auto list = nlohmann::json::parse(run.output.substr(std::min(run.output.find('['), run.output.size())), nullptr,
                                    /*allow_exceptions=*/false);
  if (!list.is_array()) return Fail(ErrorCode::kInternal, "strata --json images printed no array: {}", Tail(run.output));
  std::map<std::string, std::string> images;
  for (const auto& image : list) {
    images[image.value("name", "")] = image.contains("target") ? image["target"].value("digest", "") : "";
  }
  return images;
}

Status VerifyBlobFile(const fs::path& home, const std::string& digest_text) {
  STRATA_ASSIGN_OR_RETURN(Digest digest, Digest::Parse(digest_text));
  const fs::path path = home / "store" / "blobs" / std::string(digest.algorithm_name()) / digest.hex();
  STRATA_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  Digester digester(digest.algorithm());
  digester.Update(bytes.data(), bytes.size());
  Digest actual = digester.Finish();
  if (actual != digest) {
    return Fail(ErrorCode::kFailedPrecondition, "blob file {} hashes to {}", path.string(), actual);
  }
  return {};
}

}  // namespace strata::crash
