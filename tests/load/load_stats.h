// Bookkeeping of the load test: commands run with their peak RSS, per-kind counters, the
// daemon's memory from /proc, and the summary printed at the end.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace strata::load {

// VmRSS and VmHWM (peak) of a live process, KiB; 0 when unreadable.
struct ProcStatus {
  long rss_kib = 0;
  long hwm_kib = 0;
};
ProcStatus ReadProcStatus(pid_t pid);

struct OpStats {
  int64_t ok = 0;
  int64_t failed = 0;
  double total_seconds = 0;
  double max_seconds = 0;
  long max_rss_kib = 0;
};

// Per-kind counters and the first errors. Thread-safe.
class Stats {
 public:
  // `error` is kept (the first 30) when !ok.
  void Record(const std::string& kind, bool ok, double seconds, long rss_kib, const std::string& error);
  std::map<std::string, OpStats> by_kind() const;
  std::vector<std::string> errors() const;
  int64_t error_count() const;
  // The highest peak RSS of any recorded command.
  long max_rss_kib() const;

 private:
  mutable std::mutex mutex_;
  std::map<std::string, OpStats> by_kind_;
  std::vector<std::string> errors_;
  int64_t error_count_ = 0;
};

struct GcTotals {
  size_t blobs_removed = 0;
  size_t snapshots_removed = 0;
  int64_t bytes_freed = 0;
  int runs_during_pulls = 0;
};

struct Summary {
  double seconds = 0;
  int generations_published = 0;
  int generations_completed = 0;
  int images_kept = 0;
  std::map<std::string, int> blob_gets;  // digest -> GETs at the registry
  int range_answers = 0;
  std::vector<std::string> fetched_twice;
  long daemon_rss_at_start_kib = 0;
  long daemon_peak_kib = 0;
  std::vector<std::pair<double, long>> rss_samples;  // (seconds, VmRSS KiB)
  GcTotals gc;
  size_t blob_files = 0;
  size_t snapshot_dirs = 0;
  size_t expected_snapshots = 0;
  bool fsck_clean = false;
};

// "[load] ..." lines on stderr (scripts/soak greps them) and the figures as test properties.
void PrintSummary(const Summary& summary, const Stats& stats);

}  // namespace strata::load
