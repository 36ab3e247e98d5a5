#include "cli/progress_display.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <latch>
#include <map>
#include <memory>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace strata::cli {
namespace {

using namespace std::chrono_literals;
using registry::BlobKind;
using registry::ProgressEvent;
using registry::TransferState;
using Clock = std::chrono::steady_clock;

struct FileCloser {
  void operator()(FILE* file) const { std::fclose(file); }
};
using File = std::unique_ptr<FILE, FileCloser>;

File TempFile() {
  File file(std::tmpfile());
  EXPECT_NE(file, nullptr);
  return file;
}

std::string ReadAll(FILE* file) {
  std::fflush(file);
  std::rewind(file);
  std::string data;
  char buffer[4096];
  while (size_t n = std::fread(buffer, 1, sizeof buffer, file)) data.append(buffer, n);
  return data;
}

std::vector<std::string> SplitLines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t end; (end = text.find('\n', start)) != std::string::npos; start = end + 1) {
    lines.push_back(text.substr(start, end - start));
  }
  EXPECT_EQ(start, text.size()) << "output does not end with a newline: " << text;
  return lines;
}

size_t Count(const std::string& text, const std::string& needle) {
  size_t count = 0;
  for (size_t pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) ++count;
  return count;
}

// The text of each terminal line as a user sees it: what follows the last clear-line.
std::vector<std::string> VisibleLines(const std::string& output) {
  std::vector<std::string> lines;
  for (std::string line : SplitLines(output)) {
    size_t clear = line.rfind("\x1b[2K");
    lines.push_back(clear == std::string::npos ? line : line.substr(clear + 4));
  }
  return lines;
}

// Time stands still unless a test advances it.
struct FakeClock {
  Clock::time_point now = Clock::time_point{} + 1h;
  void Advance(Clock::duration d) { now += d; }
  std::function<Clock::time_point()> Function() {
    return [this] { return now; };
  }
};

Digest DigestOf(std::string_view name) { return Digest::Of(name); }
std::string Short(const Digest& digest) { return digest.hex().substr(0, 12); }

ProgressEvent Event(const Digest& digest, TransferState state, int64_t offset = 0, int64_t total = 0,
                    std::string error = "") {
  return ProgressEvent{.digest = digest, .kind = BlobKind::kLayer, .state = state, .offset = offset,
                       .total = total, .error = std::move(error)};
}

TEST(ChooseProgressMode, QuietWinsThenJsonThenLinesForNonTty) {
  File file = TempFile();
  EXPECT_EQ(ChooseProgressMode(file.get(), true, true), ProgressMode::kQuiet);
  EXPECT_EQ(ChooseProgressMode(file.get(), true, false), ProgressMode::kQuiet);
  EXPECT_EQ(ChooseProgressMode(file.get(), false, true), ProgressMode::kJson);
  EXPECT_EQ(ChooseProgressMode(file.get(), false, false), ProgressMode::kLines);
}

TEST(ProgressDisplayLines, OneLinePerStateChange) {
  File file = TempFile();
  Digest a = DigestOf("a"), b = DigestOf("b");
  {
    ProgressDisplay display(ProgressMode::kLines, file.get());
    display.OnEvent(Event(a, TransferState::kWaiting, 0, 3 << 20));
    display.OnEvent(Event(b, TransferState::kExists, 0, 2048));
    display.OnEvent(Event(a, TransferState::kDownloading, 0, 3 << 20));
    for (int64_t offset = 1024; offset < (3 << 20); offset += 100000) {
      display.OnEvent(Event(a, TransferState::kDownloading, offset, 3 << 20));
    }
    display.OnEvent(Event(a, TransferState::kVerifying, 3 << 20, 3 << 20));
    display.OnEvent(Event(a, TransferState::kVerifying, 3 << 20, 3 << 20));
    display.OnEvent(Event(a, TransferState::kDone, 3 << 20, 3 << 20));
  }
  std::vector<std::string> expected = {
      Short(a) + ": layer waiting",
      Short(b) + ": layer already exists (2.0 KiB)",
      Short(a) + ": layer downloading",
      Short(a) + ": layer verifying",
      Short(a) + ": layer done (3.0 MiB)",
  };
  EXPECT_EQ(SplitLines(ReadAll(file.get())), expected);
}

TEST(ProgressDisplayLines, ResumeSaysFromAndFailureSaysWhyOnOneLine) {
  File file = TempFile();
  Digest a = DigestOf("a"), b = DigestOf("b");
  {
    ProgressDisplay display(ProgressMode::kLines, file.get());
    display.OnEvent(Event(a, TransferState::kDownloading, 1536, 4096));
    display.OnEvent(Event(a, TransferState::kDownloading, 2048, 4096));
    display.OnEvent(Event(a, TransferState::kFailed, 2048, 4096, "connection reset\nby peer"));
    display.OnEvent(Event(b, TransferState::kUploading, 0, 4096));
    display.OnEvent(Event(b, TransferState::kUploading, 100, 4096));
  }
  std::vector<std::string> expected = {
      Short(a) + ": layer downloading from 1.5 KiB",
      Short(a) + ": layer failed: connection reset by peer",
      Short(b) + ": layer uploading",
  };
  EXPECT_EQ(SplitLines(ReadAll(file.get())), expected);
}

TEST(ProgressDisplayQuiet, PrintsNothing) {
  File file = TempFile();
  {
    ProgressDisplay display(ProgressMode::kQuiet, file.get());
    Digest a = DigestOf("a");
    display.OnEvent(Event(a, TransferState::kDownloading, 0, 10));
    display.OnEvent(Event(a, TransferState::kFailed, 5, 10, "boom"));
    display.Finish();
  }
  EXPECT_EQ(ReadAll(file.get()), "");
}

TEST(ProgressDisplayJson, EachLineIsAnObjectWithTheEventsFields) {
  File file = TempFile();
  Digest a = DigestOf("a");
  {
    ProgressDisplay display(ProgressMode::kJson, file.get());
    display.OnEvent(Event(a, TransferState::kDownloading, 7, 10));
    display.OnEvent(Event(a, TransferState::kFailed, 8, 10, "bad \"gateway\""));
  }
  std::vector<std::string> lines = SplitLines(ReadAll(file.get()));
  ASSERT_EQ(lines.size(), 2u);
  auto first = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(first, (nlohmann::json{{"digest", a.ToString()}, {"kind", "layer"}, {"state", "downloading"},
                                   {"offset", 7}, {"total", 10}}));
  auto second = nlohmann::json::parse(lines[1]);
  EXPECT_EQ(second["state"], "failed");
  EXPECT_EQ(second["error"], "bad \"gateway\"");
}

TEST(ProgressDisplayJson, ThrottlesByteProgressPerItemButNeverStateChanges) {
  File file = TempFile();
  FakeClock clock;
  Digest a = DigestOf("a"), b = DigestOf("b");
  {
    ProgressDisplay display(ProgressMode::kJson, file.get(), clock.Function());
    display.OnEvent(Event(a, TransferState::kDownloading, 0, 1000));  // printed: new
    display.OnEvent(Event(b, TransferState::kDownloading, 0, 1000));  // printed: new
    for (int step = 1; step <= 10; ++step) {                          // 100 ms apart
      clock.Advance(100ms);
      display.OnEvent(Event(a, TransferState::kDownloading, step * 10, 1000));  // at 500, 1000 ms
      display.OnEvent(Event(b, TransferState::kDownloading, step * 10, 1000));
    }
    display.OnEvent(Event(a, TransferState::kVerifying, 1000, 1000));  // same instant: printed
    display.OnEvent(Event(a, TransferState::kDone, 1000, 1000));       // same instant: printed
  }
  std::vector<std::string> lines = SplitLines(ReadAll(file.get()));
  std::vector<std::string> a_states;
  std::vector<int64_t> b_offsets;
  for (const std::string& line : lines) {
    auto json = nlohmann::json::parse(line);  // throws, failing the test, if malformed
    if (json["digest"] == a.ToString()) a_states.push_back(json["state"]);
    if (json["digest"] == b.ToString()) b_offsets.push_back(json["offset"]);
  }
  EXPECT_EQ(a_states, (std::vector<std::string>{"downloading", "downloading", "downloading", "verifying", "done"}));
  EXPECT_EQ(b_offsets, (std::vector<int64_t>{0, 50, 100}));
}

TEST(ProgressDisplayTerminal, RateLimitsByteUpdatesButDrawsStateChangesAtOnce) {
  File file = TempFile();
  FakeClock clock;
  Digest a = DigestOf("a");
  ProgressDisplay display(ProgressMode::kTerminal, file.get(), {.clock = clock.Function(), .width = 120});
  display.OnEvent(Event(a, TransferState::kDownloading, 0, 1 << 20));
  for (int i = 1; i <= 100; ++i) display.OnEvent(Event(a, TransferState::kDownloading, i * 1000, 1 << 20));
  std::string output = ReadAll(file.get());
  EXPECT_EQ(Count(output, "\x1b[2K"), 1u) << "100 updates at one instant must not redraw";
  EXPECT_EQ(Count(output, "\x1b[1A"), 0u);

  clock.Advance(150ms);
  display.OnEvent(Event(a, TransferState::kDownloading, 200000, 1 << 20));
  display.OnEvent(Event(a, TransferState::kDone, 1 << 20, 1 << 20));  // same instant, still drawn
  output = ReadAll(file.get());
  EXPECT_EQ(Count(output, "\x1b[2K"), 3u);
  EXPECT_EQ(Count(output, "\x1b[1A"), 2u) << "each redraw moves back over the one-line frame";
  EXPECT_EQ(VisibleLines(output).back(), Short(a) + "  layer     done");

  display.Finish();
  EXPECT_EQ(Count(ReadAll(file.get()), "\x1b[2K"), 3u) << "nothing pending, so no extra frame";
}

TEST(ProgressDisplayTerminal, FinishDrawsTheLastRateLimitedUpdate) {
  File file = TempFile();
  FakeClock clock;
  Digest a = DigestOf("a");
  {
    ProgressDisplay display(ProgressMode::kTerminal, file.get(), {.clock = clock.Function(), .width = 120});
    display.OnEvent(Event(a, TransferState::kUploading, 0, 4096));
    display.OnEvent(Event(a, TransferState::kUploading, 2048, 4096));
  }  // the destructor finishes
  std::vector<std::string> lines = VisibleLines(ReadAll(file.get()));
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_NE(lines.back().find("2.0 KiB/4.0 KiB"), std::string::npos) << lines.back();
}

TEST(ProgressDisplayTerminal, ShowsBarSpeedAndEtaWhileTransferring) {
  File file = TempFile();
  FakeClock clock;
  Digest a = DigestOf("a");
  ProgressDisplay display(ProgressMode::kTerminal, file.get(), {.clock = clock.Function(), .width = 200});
  display.OnEvent(Event(a, TransferState::kDownloading, 0, 10 << 20));
  clock.Advance(1s);
  display.OnEvent(Event(a, TransferState::kDownloading, 1 << 20, 10 << 20));
  std::string line = VisibleLines(ReadAll(file.get())).back();
  EXPECT_EQ(line, Short(a) + "  layer     downloading  [==>                      ] 1.0 MiB/10.0 MiB  1.0 MiB/s  ETA 0:09");

  // The window slides: after 4 more seconds at 3 MiB/s, the speed shows 3 MiB/s.
  for (int i = 1; i <= 4; ++i) {
    clock.Advance(1s);
    display.OnEvent(Event(a, TransferState::kDownloading, (1 + 3 * i) << 20, 16 << 20));
  }
  line = VisibleLines(ReadAll(file.get())).back();
  EXPECT_NE(line.find("  3.0 MiB/s  ETA 0:01"), std::string::npos) << line;
}

TEST(ProgressDisplayTerminal, FrameGrowsWithNewItemsAndMovesUpByItsHeight) {
  File file = TempFile();
  FakeClock clock;
  Digest a = DigestOf("a"), b = DigestOf("b"), c = DigestOf("c");
  ProgressDisplay display(ProgressMode::kTerminal, file.get(), {.clock = clock.Function(), .width = 120});
  display.OnEvent(Event(a, TransferState::kWaiting));
  display.OnEvent(Event(b, TransferState::kWaiting));
  display.OnEvent(Event(c, TransferState::kExists, 0, 10));
  std::string output = ReadAll(file.get());
  EXPECT_EQ(Count(output, "\x1b[1A"), 1u);
  EXPECT_EQ(Count(output, "\x1b[2A"), 1u);
  std::vector<std::string> lines = VisibleLines(output);
  ASSERT_GE(lines.size(), 3u);
  EXPECT_EQ(std::vector<std::string>(lines.end() - 3, lines.end()),
            (std::vector<std::string>{Short(a) + "  layer     waiting", Short(b) + "  layer     waiting",
                                      Short(c) + "  layer     already exists"}));
}

TEST(ProgressDisplayTerminal, TruncatesLinesToTheWidth) {
  File file = TempFile();
  FakeClock clock;
  constexpr size_t kWidth = 40;
  {
    ProgressDisplay display(ProgressMode::kTerminal, file.get(), {.clock = clock.Function(), .width = kWidth});
    display.OnEvent(Event(DigestOf("a"), TransferState::kDownloading, 0, 1 << 30));
    clock.Advance(1s);
    display.OnEvent(Event(DigestOf("a"), TransferState::kDownloading, 1 << 20, 1 << 30));
    display.OnEvent(Event(DigestOf("b"), TransferState::kFailed, 0, 0, std::string(200, 'x') + "\u00e9\u00e9"));
  }
  std::vector<std::string> lines = VisibleLines(ReadAll(file.get()));
  ASSERT_FALSE(lines.empty());
  for (const std::string& line : lines) {
    EXPECT_LE(line.size(), kWidth) << line;
    EXPECT_GE(line.size(), kWidth - 2) << "too short, so not a real truncation test: " << line;
  }
}

// Runs `items_per_thread` transfers (waiting, 21 byte updates, done) on each of 4 threads.
void FeedFromFourThreads(const registry::ProgressSink& sink, int items_per_thread) {
  std::latch start(4);  // all at once, so events really overlap
  std::vector<std::jthread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&sink, &start, t, items_per_thread] {
      start.arrive_and_wait();
      for (int i = 0; i < items_per_thread; ++i) {
        Digest digest = DigestOf(fmt::format("{}-{}", t, i));
        sink(Event(digest, TransferState::kWaiting, 0, 20));
        for (int u = 0; u <= 20; ++u) sink(Event(digest, TransferState::kDownloading, u, 20));
        sink(Event(digest, TransferState::kDone, 20, 20));
      }
    });
  }
}

TEST(ProgressDisplayConcurrency, JsonFromFourThreadsStaysOneObjectPerLine) {
  File file = TempFile();
  constexpr int kItemsPerThread = 300;
  {
    // A clock that never moves (and is safe to call from any thread) makes the count exact.
    ProgressDisplay display(ProgressMode::kJson, file.get(), [] { return Clock::time_point{} + 1h; });
    FeedFromFourThreads(display.Sink(), kItemsPerThread);
  }
  std::map<std::string, std::vector<std::string>> states;
  for (const std::string& line : SplitLines(ReadAll(file.get()))) {
    nlohmann::json json;
    ASSERT_NO_THROW(json = nlohmann::json::parse(line)) << line;
    states[json["digest"]].push_back(json["state"]);
  }
  EXPECT_EQ(states.size(), size_t{4 * kItemsPerThread});
  for (const auto& [digest, seen] : states) {
    EXPECT_EQ(seen, (std::vector<std::string>{"waiting", "downloading", "done"})) << digest;
  }
}

TEST(ProgressDisplayConcurrency, TerminalFramesFromFourThreadsAreWhole) {
  File file = TempFile();
  constexpr int kItemsPerThread = 25;
  {
    ProgressDisplay display(ProgressMode::kTerminal, file.get(),
                            {.clock = [] { return Clock::time_point{} + 1h; }, .width = 100});
    FeedFromFourThreads(display.Sink(), kItemsPerThread);
  }
  std::regex well_formed("[0-9a-f]{12}  layer     (waiting|done|downloading  \\[[=> ]{25}\\] \\d+ B/20 B)");
  std::vector<std::string> lines = VisibleLines(ReadAll(file.get()));
  for (const std::string& line : lines) ASSERT_TRUE(std::regex_match(line, well_formed)) << line;
  ASSERT_GE(lines.size(), size_t{4 * kItemsPerThread});
  for (size_t i = lines.size() - 4 * kItemsPerThread; i < lines.size(); ++i) {
    EXPECT_TRUE(lines[i].ends_with("  done")) << "last frame shows every item finished: " << lines[i];
  }
}

TEST(ProgressDisplayConcurrency, LinesFromFourThreadsAreWhole) {
  File file = TempFile();
  constexpr int kThreads = 4, kItemsPerThread = 50;
  {
    ProgressDisplay display(ProgressMode::kLines, file.get());
    std::vector<std::jthread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&display, t] {
        for (int i = 0; i < kItemsPerThread; ++i) {
          Digest digest = DigestOf(fmt::format("{}-{}", t, i));
          display.OnEvent(Event(digest, TransferState::kDownloading, 0, 4096));
          display.OnEvent(Event(digest, TransferState::kDone, 4096, 4096));
        }
      });
    }
  }
  std::regex well_formed("[0-9a-f]{12}: layer (downloading|done \\(4\\.0 KiB\\))");
  std::vector<std::string> lines = SplitLines(ReadAll(file.get()));
  EXPECT_EQ(lines.size(), size_t{2 * kThreads * kItemsPerThread});
  for (const std::string& line : lines) EXPECT_TRUE(std::regex_match(line, well_formed)) << line;
}

}  // namespace
}  // namespace strata::cli
