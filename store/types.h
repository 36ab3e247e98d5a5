// Small value types shared by the store's records: labels and timestamps.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace strata::store {

using Labels = std::map<std::string, std::string>;
// Wall-clock time with nanosecond resolution (containerd's timestamps are exact to the ns).
using Timestamp = std::chrono::time_point<std::chrono::system_clock, std::chrono::nanoseconds>;

Timestamp Now();
int64_t ToUnixNanos(Timestamp t);
Timestamp FromUnixNanos(int64_t nanos);
// RFC 3339 with nanoseconds in UTC ("2026-11-22T06:10:00.123456789Z").
std::string FormatTimestamp(Timestamp t);
// Parses RFC 3339 ("Z" or "+hh:mm" offsets, optional fraction). InvalidArgument otherwise.
Result<Timestamp> ParseTimestamp(std::string_view text);

// containerd's limit: a label's key plus value must not exceed 4096 bytes; keys non-empty.
inline constexpr size_t kMaxLabelSize = 4096;
Status ValidateLabels(const Labels& labels);

// containerd's label update by field paths, applied to `current`: no paths or "labels" =
// replace all with `update`; "labels.<k>" = set k from `update` (or delete it when absent
// or ""). Any other path is InvalidArgument "cannot update field <path> of <what>: only
// labels are mutable". The result is validated (ValidateLabels).
Status ApplyLabelUpdate(Labels& current, const Labels& update, const std::vector<std::string>& fieldpaths,
                        std::string_view what);

// Labels with GC meaning, as containerd names them.
inline constexpr std::string_view kLabelGcRoot = "containerd.io/gc.root";
inline constexpr std::string_view kLabelGcRefContentPrefix = "containerd.io/gc.ref.content";
inline constexpr std::string_view kLabelGcRefSnapshotPrefix = "containerd.io/gc.ref.snapshot.";
inline constexpr std::string_view kLabelGcExpire = "containerd.io/gc.expire";

}  // namespace strata::store
