#include "cli/format.h"

#include <algorithm>
#include <cctype>
#include <charconv>

#include <fmt/format.h>

namespace strata::cli {

std::string HumanSize(int64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  if (bytes < 1024) return fmt::format("{} B", bytes);
  double value = static_cast<double>(bytes);
  size_t unit = 0;
  while (value >= 1024 && unit + 1 < std::size(kUnits)) {
    value /= 1024;
    ++unit;
  }
  return fmt::format("{:.1f} {}", value, kUnits[unit]);
}

Result<uint64_t> ParseByteSize(std::string_view flag, std::string_view text) {
  auto bad = [&] { return Fail(ErrorCode::kInvalidArgument, "{} {:?}: not a size (e.g. 4096, 512M, 20G)", flag, text); };
  uint64_t number = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), number);
  if (error != std::errc() || end == text.data()) return bad();
  std::string unit(end, text.data() + text.size());
  for (char& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (unit.ends_with("IB")) unit.resize(unit.size() - 2);
  else if (unit.size() == 2 && unit.back() == 'B') unit.pop_back();
  int shift = 0;
  if (unit == "K") shift = 10;
  else if (unit == "M") shift = 20;
  else if (unit == "G") shift = 30;
  else if (unit == "T") shift = 40;
  else if (!unit.empty() && unit != "B") return bad();
  if (shift > 0 && number > (~uint64_t{0} >> shift)) return bad();
  return number << shift;
}

std::string Age(store::Timestamp t) {
  auto seconds = std::chrono::duration_cast<std::chrono::seconds>(store::Now() - t).count();
  if (seconds < 0) seconds = 0;
  auto plural = [](int64_t n, const char* unit) { return fmt::format("{} {}{}", n, unit, n == 1 ? "" : "s"); };
  if (seconds < 120) return plural(seconds, "second");
  if (seconds < 7200) return plural(seconds / 60, "minute");
  if (seconds < 172800) return plural(seconds / 3600, "hour");
  return plural(seconds / 86400, "day");
}

std::string FormatLabels(const store::Labels& labels) {
  if (labels.empty()) return "-";
  std::string out;
  for (const auto& [key, value] : labels) {
    if (!out.empty()) out += ',';
    out += key + "=" + value;
  }
  return out;
}

void PrintTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 3, ' ');
    }
    fmt::print("{}\n", line);
  }
}

}  // namespace strata::cli
