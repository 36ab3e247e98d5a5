#include "tests/load/load_stats.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>


namespace strata::load {

ProcStatus ReadProcStatus(pid_t pid) {
  ProcStatus status;
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("VmRSS:")) status.rss_kib = std::stol(line.substr(6));
    if (line.starts_with("VmHWM:")) status.hwm_kib = std::stol(line.substr(6));
  }
  return status;
}

void Stats::Record(const std::string& kind, bool ok, double seconds, long rss_kib, const std::string& error) {
  std::lock_guard lock(mutex_);
  OpStats& stats = by_kind_[kind];
  (ok ? stats.ok : stats.failed)++;
  stats.total_seconds += seconds;
  stats.max_seconds = std::max(stats.max_seconds, seconds);
  stats.max_rss_kib = std::max(stats.max_rss_kib, rss_kib);
  if (ok) return;
  ++error_count_;
  if (errors_.size() < 30) errors_.push_back(fmt::format("[{}] {}", kind, error.substr(0, 4000)));
  std::fprintf(stderr, "[load] error (%s): %s\n", kind.c_str(), error.substr(0, 2000).c_str());
}

std::map<std::string, OpStats> Stats::by_kind() const {
  std::lock_guard lock(mutex_);
  return by_kind_;
}

std::vector<std::string> Stats::errors() const {
  std::lock_guard lock(mutex_);
  return errors_;
}

int64_t Stats::error_count() const {
  std::lock_guard lock(mutex_);
  return error_count_;
}

long Stats::max_rss_kib() const {
  std::lock_guard lock(mutex_);
  long peak = 0;
  for (const auto& [kind, stats] : by_kind_) peak = std::max(peak, stats.max_rss_kib);
  return peak;
}

namespace {

std::string MiB(long kib) { return fmt::format("{:.1f} MiB", static_cast<double>(kib) / 1024); }

void Line(const std::string& text) { std::fprintf(stderr, "[load] %s\n", text.c_str()); }

}  // namespace

void PrintSummary(const Summary& summary, const Stats& stats) {
  Line(fmt::format("ran {:.0f} s: generations published {}, completed {}; images kept at the end {}",
                   summary.seconds, summary.generations_published, summary.generations_completed,
                   summary.images_kept));
  for (const auto& [kind, op] : stats.by_kind()) {
    const int64_t runs = op.ok + op.failed;
    std::string text = fmt::format("op {:<16} {:>6} ok {:>4} failed", kind, op.ok, op.failed);
    if (op.total_seconds > 0) {
      text += fmt::format("  avg {:.2f} s  max {:.2f} s", op.total_seconds / static_cast<double>(runs), op.max_seconds);
    }
    if (op.max_rss_kib > 0) text += "  peak RSS " + MiB(op.max_rss_kib);
    Line(text);
  }
  int gets = 0;
  for (const auto& [digest, count] : summary.blob_gets) gets += count;
  Line(fmt::format("registry: {} blob GETs for {} distinct blobs; fetched twice: {}; Range (206) answers: {}", gets,
                   summary.blob_gets.size(), summary.fetched_twice.size(), summary.range_answers));
  for (const std::string& twice : summary.fetched_twice) Line("  fetched twice: " + twice);
  Line(fmt::format("gc: {} runs completed while pulls ran; removed {} blobs, {} snapshots, {:.1f} MiB in all",
                   summary.gc.runs_during_pulls, summary.gc.blobs_removed, summary.gc.snapshots_removed,
                   static_cast<double>(summary.gc.bytes_freed) / (1 << 20)));
  Line(fmt::format("store after the last gc: {} blob files, {} snapshot dirs ({} chain snapshots needed)",
                   summary.blob_files, summary.snapshot_dirs, summary.expected_snapshots));
  // The RSS trend at tenths of the run: flat means bounded.
  std::vector<std::string> trend;
  for (int tenth = 1; tenth <= 10 && !summary.rss_samples.empty(); ++tenth) {
    const double at = summary.seconds * tenth / 10;
    auto sample = std::find_if(summary.rss_samples.begin(), summary.rss_samples.end(),
                               [&](const auto& s) { return s.first >= at; });
    if (sample == summary.rss_samples.end()) sample = std::prev(summary.rss_samples.end());
    trend.push_back(MiB(sample->second));
  }
  Line(fmt::format("daemon RSS: {} at start, peak (VmHWM) {}; VmRSS at each tenth of the run: {}",
                   MiB(summary.daemon_rss_at_start_kib), MiB(summary.daemon_peak_kib), fmt::join(trend, ", ")));
  Line(fmt::format("CLI peak RSS (any command): {}",
                   stats.max_rss_kib() > 0 ? MiB(stats.max_rss_kib()) : "not measured (needs GNU time)"));
  Line(fmt::format("errors: {}", stats.error_count()));
  Line(fmt::format("fsck: {}", summary.fsck_clean ? "clean" : "NOT CLEAN"));
  ::testing::Test::RecordProperty("daemon_peak_rss_kib", std::to_string(summary.daemon_peak_kib));
  ::testing::Test::RecordProperty("cli_peak_rss_kib", std::to_string(stats.max_rss_kib()));
  ::testing::Test::RecordProperty("blobs_fetched_twice", std::to_string(summary.fetched_twice.size()));
  ::testing::Test::RecordProperty("errors", std::to_string(stats.error_count()));
}

}  // namespace strata::load
