// Shows blob transfer progress (registry::ProgressEvent) for pull, push and copy, as
// `docker pull` does: a live table on a terminal, one line per state change in logs,
// one JSON object per line for scripts, or nothing.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "registry/progress.h"

namespace strata::cli {

enum class ProgressMode {
  kTerminal,  // one line per item, redrawn in place with ANSI escapes
  kLines,     // one plain line per state change (logs, CI, pipes)
  kQuiet,     // nothing
  kJson,      // one compact JSON object per line
};

// kQuiet when `quiet` (it wins over `json`), kJson when `json`; otherwise kTerminal when
// `out` is a tty whose TERM is not "dumb", else kLines.
ProgressMode ChooseProgressMode(FILE* out, bool quiet, bool json);

struct ProgressDisplayOptions {
  // Injected for tests; empty means std::chrono::steady_clock::now.
  std::function<std::chrono::steady_clock::time_point()> clock;
  // Terminal columns for kTerminal; 0 means ask the tty (TIOCGWINSZ) at each redraw,
  // falling back to 80.
  int width = 0;
};

// Thread-safe: OnEvent may be called from several threads at once; output from one event
// is written whole (never interleaved with another's). Writes only to `out`, which must
// outlive the display. Events that arrive after Finish() are dropped.
class ProgressDisplay {
 public:
  using Clock = std::chrono::steady_clock;

  ProgressDisplay(ProgressMode mode, FILE* out, std::function<Clock::time_point()> clock = {});
  ProgressDisplay(ProgressMode mode, FILE* out, ProgressDisplayOptions options);
  ~ProgressDisplay();  // calls Finish()

  ProgressDisplay(const ProgressDisplay&) = delete;
  ProgressDisplay& operator=(const ProgressDisplay&) = delete;

  void OnEvent(const registry::ProgressEvent& event);
  // A sink forwarding to OnEvent. REQUIRES: this display outlives every use of the sink.
  registry::ProgressSink Sink();
  // Final redraw (kTerminal) and flush. Idempotent.
  void Finish();

 private:
  struct Item {
    registry::ProgressEvent last;  // the latest event of this digest
    // (time, offset) samples of the current transfer, oldest first, for the speed.
    std::deque<std::pair<Clock::time_point, int64_t>> samples;
    Clock::time_point last_json_write{};
  };

  // Each REQUIRES mu_ held. `state_changed`: the event starts the item or changes its state.
  void HandleTerminal(bool state_changed, Clock::time_point now);
  void HandleLines(const Item& item, bool state_changed);
  void HandleJson(Item& item, bool state_changed, Clock::time_point now);
  void Redraw(Clock::time_point now);
  std::string TerminalLine(const Item& item) const;
  int TerminalWidth() const;

  const ProgressMode mode_;
  FILE* const out_;
  const ProgressDisplayOptions options_;

  std::mutex mu_;
  bool finished_ = false;
  std::vector<Item> items_;                             // in order of first appearance
  std::unordered_map<std::string, size_t> index_;       // digest string -> items_ index
  size_t lines_drawn_ = 0;                              // kTerminal: lines of the last frame
  bool redraw_pending_ = false;                         // kTerminal: updates not yet drawn
  std::optional<Clock::time_point> last_redraw_;
};

}  // namespace strata::cli
