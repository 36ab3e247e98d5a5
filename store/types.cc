#include "store/types.h"

#include <time.h>

#include <charconv>

namespace strata::store {

Timestamp Now() { return std::chrono::time_point_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now()); }

int64_t ToUnixNanos(Timestamp t) { return t.time_since_epoch().count(); }

Timestamp FromUnixNanos(int64_t nanos) { return Timestamp(std::chrono::nanoseconds(nanos)); }

std::string FormatTimestamp(Timestamp t) {
  int64_t nanos = ToUnixNanos(t);
  time_t secs = static_cast<time_t>(nanos / 1'000'000'000);
  int64_t frac = nanos % 1'000'000'000;
  if (frac < 0) {
    frac += 1'000'000'000;
    secs -= 1;
  }
  struct tm tm {};
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

Result<Timestamp> ParseTimestamp(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return Fail(ErrorCode::kInvalidArgument, "invalid RFC 3339 time {:?}: {}", text, why);
  };
  auto number = [&](size_t pos, size_t len, int& out) {
    if (pos + len > text.size()) return false;
    auto [ptr, ec] = std::from_chars(text.data() + pos, text.data() + pos + len, out);
    return ec == std::errc() && ptr == text.data() + pos + len;
  };
  struct tm tm {};
  int year, month, day, hour, minute, second;
  if (text.size() < 20 || !number(0, 4, year) || text[4] != '-' || !number(5, 2, month) ||
      text[7] != '-' || !number(8, 2, day) || (text[10] != 'T' && text[10] != 't') ||
      !number(11, 2, hour) || text[13] != ':' || !number(14, 2, minute) || text[16] != ':' ||
      !number(17, 2, second)) {
    return bad("expected YYYY-MM-DDTHH:MM:SS");
  }
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) {
    return bad("field out of range");
  }
  size_t pos = 19;
  int64_t frac_nanos = 0;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    int digits = 0;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      if (digits < 9) frac_nanos = frac_nanos * 10 + (text[pos] - '0');
      ++digits;
      ++pos;
    }
    if (digits == 0) return bad("empty fraction");
    for (int i = digits; i < 9; ++i) frac_nanos *= 10;
  }
  int64_t offset_secs = 0;
  if (pos < text.size() && (text[pos] == 'Z' || text[pos] == 'z')) {
    ++pos;
  } else if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
    int oh, om;
    if (!number(pos + 1, 2, oh) || pos + 3 >= text.size() || text[pos + 3] != ':' || !number(pos + 4, 2, om)) {
      return bad("bad zone offset");
    }
    offset_secs = (oh * 3600 + om * 60) * (text[pos] == '+' ? 1 : -1);
    pos += 6;
  } else {
    return bad("missing zone");
  }
  if (pos != text.size()) return bad("trailing characters");
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  int64_t secs = static_cast<int64_t>(timegm(&tm)) - offset_secs;
  return FromUnixNanos(secs * 1'000'000'000 + frac_nanos);
}

Status ValidateLabels(const Labels& labels) {
  for (const auto& [key, value] : labels) {
    if (key.empty()) return Fail(ErrorCode::kInvalidArgument, "label key must not be empty");
    if (key.size() + value.size() > kMaxLabelSize) {
      return Fail(ErrorCode::kInvalidArgument, "label {:?}: key and value are {} bytes, more than {}",
                  key.substr(0, 64), key.size() + value.size(), kMaxLabelSize);
    }
  }
  return {};
}

Status ApplyLabelUpdate(Labels& current, const Labels& update, const std::vector<std::string>& fieldpaths,
                        std::string_view what) {
  STRATA_RETURN_IF_ERROR(ValidateLabels(update));
  Labels result = current;
  if (fieldpaths.empty()) result = update;
  for (const auto& path : fieldpaths) {
    if (path == "labels") {
      result = update;
    } else if (path.starts_with("labels.")) {
      const std::string key = path.substr(7);
      auto it = update.find(key);
      if (it == update.end() || it->second.empty()) {
        result.erase(key);
      } else {
        result[key] = it->second;
      }
    } else {
      return Fail(ErrorCode::kInvalidArgument, "cannot update field {:?} of {}: only labels are mutable", path, what);
    }
  }
  STRATA_RETURN_IF_ERROR(ValidateLabels(result));
  current = std::move(result);
  return {};
}

}  // namespace strata::store
