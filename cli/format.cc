#include "cli/format.h"

#include <algorithm>

#include <fmt/format.h>

#include "base/byte_size.h"

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
  auto bytes = strata::ParseByteSize(text);
  if (!bytes) return Fail(bytes.error().WithContext(std::string(flag)));
  return bytes;
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
