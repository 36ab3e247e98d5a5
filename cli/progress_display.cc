#include "cli/progress_display.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string_view>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/format.h"

namespace strata::cli {

namespace {

using registry::TransferState;
using namespace std::chrono_literals;

constexpr auto kMinRedrawInterval = 100ms;  // at most ~10 frames per second
constexpr auto kJsonProgressInterval = 500ms;
constexpr auto kSpeedWindow = 2s;
constexpr size_t kShortDigestLength = 12;
constexpr int64_t kBarWidth = 25;
constexpr int kDefaultWidth = 80;

bool IsTransferring(TransferState state) {
  return state == TransferState::kDownloading || state == TransferState::kUploading;
}

std::string ShortDigest(const Digest& digest) { return digest.hex().substr(0, kShortDigestLength); }

// Control characters (a newline in a server's error text, say) would break the
// one-item-one-line layout that both kTerminal and kLines rely on.
std::string OneLine(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  }
  return out;
}

// Cuts `line` to at most `columns` bytes without splitting a UTF-8 sequence.
void Truncate(std::string& line, size_t columns) {
  if (line.size() <= columns) return;
  size_t cut = columns;
  while (cut > 0 && (static_cast<unsigned char>(line[cut]) & 0xC0) == 0x80) --cut;
  line.resize(cut);
}

std::string Bar(int64_t done, int64_t total) {
  int64_t filled = std::clamp<int64_t>(done * kBarWidth / total, 0, kBarWidth);
  std::string bar = "[" + std::string(filled, '=');
  if (filled < kBarWidth) bar += '>' + std::string(kBarWidth - filled - 1, ' ');
  return bar + "]";
}

// "m:ss"; minutes are not capped.
std::string FormatEta(int64_t seconds) { return fmt::format("{}:{:02}", seconds / 60, seconds % 60); }

}  // namespace

ProgressMode ChooseProgressMode(FILE* out, bool quiet, bool json) {
  if (quiet) return ProgressMode::kQuiet;
  if (json) return ProgressMode::kJson;
  const char* term = std::getenv("TERM");
  bool dumb = term != nullptr && std::string_view(term) == "dumb";
  return isatty(fileno(out)) && !dumb ? ProgressMode::kTerminal : ProgressMode::kLines;
}

ProgressDisplay::ProgressDisplay(ProgressMode mode, FILE* out, std::function<Clock::time_point()> clock)
    : ProgressDisplay(mode, out, ProgressDisplayOptions{.clock = std::move(clock)}) {}

ProgressDisplay::ProgressDisplay(ProgressMode mode, FILE* out, ProgressDisplayOptions options)
    : mode_(mode), out_(out), options_(std::move(options)) {}

ProgressDisplay::~ProgressDisplay() { Finish(); }

registry::ProgressSink ProgressDisplay::Sink() {
  return [this](const registry::ProgressEvent& event) { OnEvent(event); };
}

void ProgressDisplay::OnEvent(const registry::ProgressEvent& event) {
  if (mode_ == ProgressMode::kQuiet) return;
  std::lock_guard lock(mu_);
  if (finished_) return;
  Clock::time_point now = options_.clock ? options_.clock() : Clock::now();

  auto [it, inserted] = index_.try_emplace(event.digest.ToString(), items_.size());
  if (inserted) items_.push_back(Item{.last = event});
  Item& item = items_[it->second];
  bool state_changed = inserted || item.last.state != event.state;
  item.last = event;

  switch (mode_) {
    case ProgressMode::kTerminal:
      if (state_changed) item.samples.clear();
      if (IsTransferring(event.state)) {
        // One sample per instant keeps the deque bounded when events come in bursts.
        if (!item.samples.empty() && item.samples.back().first == now) {
          item.samples.back().second = event.offset;
        } else {
          item.samples.emplace_back(now, event.offset);
        }
        // Keep one sample at or before the window's start so the window spans ~2 s.
        while (item.samples.size() > 2 && item.samples[1].first <= now - kSpeedWindow) {
          item.samples.pop_front();
        }
      }
      HandleTerminal(state_changed, now);
      break;
    case ProgressMode::kLines: HandleLines(item, state_changed); break;
    case ProgressMode::kJson: HandleJson(item, state_changed, now); break;
    case ProgressMode::kQuiet: break;
  }
}

void ProgressDisplay::Finish() {
  std::lock_guard lock(mu_);
  if (finished_) return;
  finished_ = true;
  if (mode_ == ProgressMode::kTerminal && redraw_pending_) {
    Redraw(options_.clock ? options_.clock() : Clock::now());
  }
  if (mode_ != ProgressMode::kQuiet) std::fflush(out_);
}

void ProgressDisplay::HandleTerminal(bool state_changed, Clock::time_point now) {
  redraw_pending_ = true;
  // Byte updates are rate-limited; a state change is drawn at once, since the next event
  // (and so the next chance to draw) may be far away, e.g. during a long verify.
  if (state_changed || !last_redraw_ || now - *last_redraw_ >= kMinRedrawInterval) Redraw(now);
}

void ProgressDisplay::Redraw(Clock::time_point now) {
  size_t columns = static_cast<size_t>(std::max(TerminalWidth() - 1, 1));
  std::string frame;
  // Back to the first line of the previous frame; items only get added, so the new frame
  // covers it entirely.
  if (lines_drawn_ > 0) frame += fmt::format("\x1b[{}A", lines_drawn_);
  for (const Item& item : items_) {
    std::string line = TerminalLine(item);
    // One column spare: writing the last column makes some terminals wrap early.
    Truncate(line, columns);
    frame += "\r\x1b[2K" + line + "\n";
  }
  std::fwrite(frame.data(), 1, frame.size(), out_);
  std::fflush(out_);
  lines_drawn_ = items_.size();
  last_redraw_ = now;
  redraw_pending_ = false;
}

std::string ProgressDisplay::TerminalLine(const Item& item) const {
  const registry::ProgressEvent& event = item.last;
  std::string line = fmt::format("{}  {:<8}  ", ShortDigest(event.digest), registry::BlobKindName(event.kind));
  std::string_view state = registry::TransferStateName(event.state);
  if (event.state == TransferState::kFailed) {
    return line + fmt::format("{}: {}", state, OneLine(event.error));
  }
  if (!IsTransferring(event.state)) return line + std::string(state);

  line += fmt::format("{:<11}  ", state);
  if (event.total > 0) {
    line += fmt::format("{} {}/{}", Bar(event.offset, event.total), HumanSize(event.offset), HumanSize(event.total));
  } else {
    line += HumanSize(event.offset);
  }
  if (item.samples.size() < 2) return line;
  const auto& [first_time, first_offset] = item.samples.front();
  const auto& [last_time, last_offset] = item.samples.back();
  double seconds = std::chrono::duration<double>(last_time - first_time).count();
  int64_t bytes = last_offset - first_offset;
  if (seconds <= 0 || bytes <= 0) return line;
  double speed = static_cast<double>(bytes) / seconds;
  line += fmt::format("  {}/s", HumanSize(static_cast<int64_t>(speed)));
  if (event.total > event.offset) {
    line += "  ETA " + FormatEta(static_cast<int64_t>(static_cast<double>(event.total - event.offset) / speed));
  }
  return line;
}

int ProgressDisplay::TerminalWidth() const {
  if (options_.width > 0) return options_.width;
  winsize size{};
  if (ioctl(fileno(out_), TIOCGWINSZ, &size) == 0 && size.ws_col > 0) return size.ws_col;
  return kDefaultWidth;
}

void ProgressDisplay::HandleLines(const Item& item, bool state_changed) {
  if (!state_changed) return;
  const registry::ProgressEvent& event = item.last;
  std::string line = fmt::format("{}: {} {}", ShortDigest(event.digest), registry::BlobKindName(event.kind),
                                 registry::TransferStateName(event.state));
  if (IsTransferring(event.state) && event.offset > 0) line += " from " + HumanSize(event.offset);
  if (event.state == TransferState::kDone || event.state == TransferState::kExists) {
    int64_t size = event.total > 0 ? event.total : event.offset;
    if (size > 0) line += " (" + HumanSize(size) + ")";
  }
  if (event.state == TransferState::kFailed && !event.error.empty()) line += ": " + OneLine(event.error);
  line += '\n';
  std::fwrite(line.data(), 1, line.size(), out_);
  std::fflush(out_);
}

void ProgressDisplay::HandleJson(Item& item, bool state_changed, Clock::time_point now) {
  const registry::ProgressEvent& event = item.last;
  bool due = now - item.last_json_write >= kJsonProgressInterval;
  if (!state_changed && !registry::IsFinalState(event.state) && !due) return;
  item.last_json_write = now;
  nlohmann::ordered_json json = {
      {"digest", event.digest.ToString()},
      {"kind", registry::BlobKindName(event.kind)},
      {"state", registry::TransferStateName(event.state)},
      {"offset", event.offset},
      {"total", event.total},
  };
  if (event.state == TransferState::kFailed) json["error"] = event.error;
  // Invalid UTF-8 in a server's error text must not throw out of a progress callback.
  std::string line = json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  std::fwrite(line.data(), 1, line.size(), out_);
  std::fflush(out_);
}

}  // namespace strata::cli
