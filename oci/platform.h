// Platform: the os/architecture an image is built for, and the rules that pick the image
// variant a host should run.
//
// Text form (Parse / String): "os/arch[/variant][:os_version]", e.g. "linux/amd64",
// "linux/arm/v7", "windows/amd64:10.0.20348.2762". containerd's "os(os_version)/arch" form is
// also read.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.h"

namespace strata::oci {

struct Platform {
  std::string os;            // "linux", "windows"
  std::string architecture;  // GOARCH spelling: "amd64", "arm64", "arm", "386", ...
  std::string variant;       // "v7" for arm; "" when none
  std::string os_version;    // Windows: "10.0.20348.2762" (major.minor.build.UBR)
  std::vector<std::string> os_features;  // Windows: e.g. "win32k"
  // JSON keys of an index entry's platform this struct does not model, kept for re-serialising.
  nlohmann::json unknown_fields = nlohmann::json::object();

  // Parses and normalises (see Normalized) the text form. Also accepts a single word: a known
  // OS ("windows") gets the host's architecture, a known architecture ("arm64") gets "linux".
  // InvalidArgument naming the input for empty parts, characters outside [A-Za-z0-9_.-], or
  // a Windows os_version that is not major.minor.build[.UBR].
  static Result<Platform> Parse(std::string_view text);

  // The platform this process runs as (compile-time architecture, os "linux").
  static Platform Host();

  // Lower-case os and architecture, then the spellings containerd treats as the same platform:
  // x86_64/x86-64 -> amd64 (variant v1 -> ""), aarch64 -> arm64 (variant v8/8 -> ""),
  // armhf -> arm/v7, armel -> arm/v6, arm without variant -> arm/v7, "7" -> "v7", i386 -> 386,
  // macos -> darwin. os_version and os_features are kept as they are.
  Platform Normalized() const;

  // "os/arch[/variant][:os_version]" of the fields as stored (not normalised).
  std::string String() const;

  // JSON of an OCI descriptor's "platform" (keys architecture, os, os.version, os.features,
  // variant). FromJson requires os and architecture; `where` prefixes error messages.
  nlohmann::json ToJson() const;
  static Result<Platform> FromJson(const nlohmann::json& value, std::string_view where = "platform");

  bool operator==(const Platform&) const = default;
};

// A Windows os.version "major.minor.build[.revision]"; revision is the UBR.
struct WindowsVersion {
  uint32_t major = 0;
  uint32_t minor = 0;
  uint32_t build = 0;
  uint32_t revision = 0;

  // nullopt unless three or four dot-separated decimal numbers.
  static std::optional<WindowsVersion> Parse(std::string_view text);
  auto operator<=>(const WindowsVersion&) const = default;
};

// Windows LTSC builds whose containers later hosts keep running (Server 2022, Server 2025),
// sorted. Hosts older than the first entry have no such promise.
inline constexpr uint32_t kWindowsCompatLtscBuilds[] = {20348, 26100};

// True when a Windows host of `host` can run a process-isolated container built for `image`:
//  - major and minor must be equal;
//  - host build < 20348 (Server 2019 and older): builds must be equal;
//  - otherwise the image build must lie in [previous LTSC, host build], where the previous
//    LTSC is the greatest kWindowsCompatLtscBuilds entry below the host build, or the host
//    build itself when the host is the first entry. So: host 20348 -> 20348 only; host 22621
//    -> 20348..22621; host 26100 -> 20348..26100; host 26200 -> 26100..26200.
// Revisions (UBR) never decide compatibility.
bool WindowsHostCanRun(const WindowsVersion& host, const WindowsVersion& image);

// Decides which candidate platforms satisfy a wanted platform, and which of several is best.
// Both sides are compared in normalised form. Immutable and thread-safe after construction.
//
// Match: os, architecture and variant equal (no fallback: arm/v7 does not accept arm/v6,
// amd64 does not accept 386). For Windows with a wanted os_version, additionally
// WindowsHostCanRun(wanted, candidate); a candidate without os_version still matches (as in
// containerd) but ranks below every candidate that has one. os_features are not compared.
//
// Ranking among Windows matches: higher build first (an exact build match beats a lower
// compatible build), then higher revision compared numerically (.1000 beats .999). Without a
// wanted os_version, or for other OSes, all matches rank equal.
class PlatformMatcher {
 public:
  explicit PlatformMatcher(const Platform& wanted);

  const Platform& wanted() const { return wanted_; }

  bool Match(const Platform& candidate) const;

  // True when `a` is a strictly better choice than `b` (containerd's MatchComparer.Less):
  // a match beats a non-match; among matches the ranking above. A strict weak ordering.
  bool Less(const Platform& a, const Platform& b) const;

  // Index of the best matching candidate (the first of equally good ones), nullopt if none.
  std::optional<size_t> Best(const std::vector<Platform>& candidates) const;

 private:
  // Larger is better; only meaningful for matching candidates.
  std::tuple<int, uint32_t, uint32_t> Rank(const Platform& candidate) const;

  Platform wanted_;  // normalised
  std::optional<WindowsVersion> wanted_windows_version_;
};

}  // namespace strata::oci
