#include "oci/platform.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <span>
#include <tuple>

#include "oci/json_parsers.h"

namespace strata::oci {
namespace {

constexpr std::string_view kKnownOses[] = {
    "aix",   "android", "darwin",  "dragonfly", "freebsd", "illumos", "ios",     "js",
    "linux", "netbsd",  "openbsd", "plan9",     "solaris", "wasip1",  "windows", "macos"};

constexpr std::string_view kKnownArchitectures[] = {
    "386",   "amd64",   "x86_64", "x86-64",  "i386",  "arm",     "armhf", "armel",    "arm64",   "aarch64",
    "ppc64", "ppc64le", "s390x",  "riscv64", "mips",  "mipsle",  "mips64", "mips64le", "loong64", "wasm",
    "armv7l", "armv6l"};

bool Contains(std::span<const std::string_view> list, std::string_view word) {
  return std::find(list.begin(), list.end(), word) != list.end();
}

std::string Lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool IsPlatformWordChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
         c == '.';
}

std::vector<std::string_view> Split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    size_t end = text.find(separator, start);
    parts.push_back(text.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return parts;
}

std::optional<uint32_t> ParseDecimal(std::string_view text) {
  if (text.empty() || text.size() > 10) return std::nullopt;
  uint32_t value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

}  // namespace

std::optional<WindowsVersion> WindowsVersion::Parse(std::string_view text) {
  std::vector<std::string_view> parts = Split(text, '.');
  if (parts.size() != 3 && parts.size() != 4) return std::nullopt;
  std::array<uint32_t, 4> numbers{};
  for (size_t i = 0; i < parts.size(); ++i) {
    std::optional<uint32_t> number = ParseDecimal(parts[i]);
    if (!number) return std::nullopt;
    numbers[i] = *number;
  }
  return WindowsVersion{numbers[0], numbers[1], numbers[2], numbers[3]};
}

bool WindowsHostCanRun(const WindowsVersion& host, const WindowsVersion& image) {
  if (host.major != image.major || host.minor != image.minor) return false;
  const uint32_t first_compat_ltsc = kWindowsCompatLtscBuilds[0];
  if (host.build < first_compat_ltsc) return host.build == image.build;
  uint32_t lowest_runnable = host.build;
  for (uint32_t ltsc : kWindowsCompatLtscBuilds) {
    if (ltsc < host.build) lowest_runnable = ltsc;
  }
  return lowest_runnable <= image.build && image.build <= host.build;
}

Result<Platform> Platform::Parse(std::string_view text) {
  auto invalid = [text](std::string_view reason) {
    return Fail(ErrorCode::kInvalidArgument, "invalid platform \"{}\": {}", text, reason);
  };
  if (text.empty()) return invalid("empty");

  Platform platform;
  std::string_view rest = text;
  // Trailing ":os_version" (our form) ...
  if (size_t colon = rest.find(':'); colon != std::string_view::npos) {
    platform.os_version = std::string(rest.substr(colon + 1));
    rest = rest.substr(0, colon);
    if (platform.os_version.empty()) return invalid("empty os version after ':'");
  }
  std::vector<std::string_view> parts = Split(rest, '/');
  // ... or containerd's "os(os_version)".
  if (size_t open = parts[0].find('('); open != std::string_view::npos) {
    if (!parts[0].ends_with(')')) return invalid("unbalanced '(' in os");
    if (!platform.os_version.empty()) return invalid("os version given twice");
    platform.os_version = std::string(parts[0].substr(open + 1, parts[0].size() - open - 2));
    parts[0] = parts[0].substr(0, open);
    if (platform.os_version.empty()) return invalid("empty os version in '()'");
  }
  if (parts.size() > 3) return invalid("expected os/arch[/variant]");
  for (std::string_view part : parts) {
    if (part.empty()) return invalid("empty component");
    if (!std::all_of(part.begin(), part.end(), IsPlatformWordChar)) {
      return invalid(fmt::format("invalid character in \"{}\"", part));
    }
  }
  if (!std::all_of(platform.os_version.begin(), platform.os_version.end(), IsPlatformWordChar)) {
    return invalid(fmt::format("invalid character in os version \"{}\"", platform.os_version));
  }

  if (parts.size() == 1) {
    std::string word = Lower(parts[0]);
    if (Contains(kKnownOses, word)) {
      Platform host = Host();
      platform.os = word;
      platform.architecture = host.architecture;
      platform.variant = host.variant;
    } else if (Contains(kKnownArchitectures, word)) {
      platform.os = "linux";
      platform.architecture = word;
    } else {
      return invalid("neither a known operating system nor a known architecture");
    }
  } else {
    platform.os = parts[0];
    platform.architecture = parts[1];
    if (parts.size() == 3) platform.variant = parts[2];
  }
  platform = platform.Normalized();
  if (platform.os == "windows" && !platform.os_version.empty() && !WindowsVersion::Parse(platform.os_version)) {
    return invalid(fmt::format("Windows os version \"{}\" is not major.minor.build[.revision]", platform.os_version));
  }
  return platform;
}

Platform Platform::Host() {
  Platform host;
  host.os = "linux";
#if defined(__x86_64__)
  host.architecture = "amd64";
#elif defined(__aarch64__)
  host.architecture = "arm64";
#elif defined(__arm__)
  host.architecture = "arm";
#if defined(__ARM_ARCH) && __ARM_ARCH >= 7
  host.variant = "v7";
#elif defined(__ARM_ARCH) && __ARM_ARCH == 6
  host.variant = "v6";
#else
  host.variant = "v5";
#endif
#elif defined(__i386__)
  host.architecture = "386";
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  host.architecture = "ppc64le";
#elif defined(__powerpc64__)
  host.architecture = "ppc64";
#elif defined(__s390x__)
  host.architecture = "s390x";
#elif defined(__riscv) && __riscv_xlen == 64
  host.architecture = "riscv64";
#elif defined(__loongarch64)
  host.architecture = "loong64";
#elif defined(__mips64) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  host.architecture = "mips64le";
#elif defined(__mips64)
  host.architecture = "mips64";
#else
#error "unknown architecture: teach Platform::Host() its GOARCH name"
#endif
  return host;
}

Platform Platform::Normalized() const {
  Platform out = *this;
  out.os = Lower(os);
  out.architecture = Lower(architecture);
  out.variant = Lower(variant);
  if (out.os == "macos") out.os = "darwin";

  std::string& arch = out.architecture;
  std::string& var = out.variant;
  if (arch == "i386") {
    arch = "386";
    var.clear();
  } else if (arch == "x86_64" || arch == "x86-64" || arch == "amd64") {
    arch = "amd64";
    if (var == "v1") var.clear();
  } else if (arch == "aarch64" || arch == "arm64") {
    arch = "arm64";
    if (var == "8" || var == "v8" || var == "v8.0") var.clear();
  } else if (arch == "armhf") {
    arch = "arm";
    var = "v7";
  } else if (arch == "armel") {
    arch = "arm";
    var = "v6";
  } else if (arch == "armv7l" || arch == "armv7") {
    arch = "arm";
    var = "v7";
  } else if (arch == "armv6l" || arch == "armv6") {
    arch = "arm";
    var = "v6";
  } else if (arch == "arm") {
    if (var.empty() || var == "7") {
      var = "v7";
    } else if (var == "5" || var == "6" || var == "8") {
      var = "v" + var;
    }
  }
  return out;
}

std::string Platform::String() const {
  std::string text = fmt::format("{}/{}", os, architecture);
  if (!variant.empty()) text += "/" + variant;
  if (!os_version.empty()) text += ":" + os_version;
  return text;
}

nlohmann::json Platform::ToJson() const {
  nlohmann::json json = nlohmann::json::object();
  json["architecture"] = architecture;
  json["os"] = os;
  if (!os_version.empty()) json["os.version"] = os_version;
  if (!os_features.empty()) json["os.features"] = os_features;
  if (!variant.empty()) json["variant"] = variant;
  internal::MergeUnknownFields(unknown_fields, json);
  return json;
}

Result<Platform> Platform::FromJson(const nlohmann::json& value, std::string_view where) {
  return internal::PlatformFromJson(value, internal::JsonPath(std::string(where)));
}

Result<Platform> internal::PlatformFromJson(const nlohmann::json& value, const JsonPath& path) {
  STRATA_ASSIGN_OR_RETURN(JsonObjectReader reader, JsonObjectReader::Open(value, path));
  Platform platform;
  STRATA_ASSIGN_OR_RETURN(platform.architecture, reader.RequiredString("architecture"));
  STRATA_ASSIGN_OR_RETURN(platform.os, reader.RequiredString("os"));
  STRATA_ASSIGN_OR_RETURN(platform.os_version, reader.StringOrEmpty("os.version"));
  STRATA_ASSIGN_OR_RETURN(platform.os_features, reader.StringList("os.features"));
  STRATA_ASSIGN_OR_RETURN(platform.variant, reader.StringOrEmpty("variant"));
  platform.unknown_fields = reader.UnknownFields();
  return platform;
}

PlatformMatcher::PlatformMatcher(const Platform& wanted) : wanted_(wanted.Normalized()) {
  if (wanted_.os == "windows" && !wanted_.os_version.empty()) {
    wanted_windows_version_ = WindowsVersion::Parse(wanted_.os_version);
  }
}

bool PlatformMatcher::Match(const Platform& candidate) const {
  Platform normalized = candidate.Normalized();
  if (normalized.os != wanted_.os || normalized.architecture != wanted_.architecture ||
      normalized.variant != wanted_.variant) {
    return false;
  }
  if (wanted_.os != "windows" || wanted_.os_version.empty()) return true;
  if (normalized.os_version.empty()) return true;
  // A wanted os_version that does not parse matches no versioned candidate.
  if (!wanted_windows_version_) return false;
  std::optional<WindowsVersion> image = WindowsVersion::Parse(normalized.os_version);
  return image && WindowsHostCanRun(*wanted_windows_version_, *image);
}

std::tuple<int, uint32_t, uint32_t> PlatformMatcher::Rank(const Platform& candidate) const {
  if (!wanted_windows_version_) return {0, 0, 0};
  std::optional<WindowsVersion> image = WindowsVersion::Parse(candidate.os_version);
  if (!image) return {0, 0, 0};
  return {1, image->build, image->revision};
}

bool PlatformMatcher::Less(const Platform& a, const Platform& b) const {
  bool a_matches = Match(a);
  bool b_matches = Match(b);
  if (a_matches != b_matches) return a_matches;
  if (!a_matches) return false;
  return Rank(a) > Rank(b);
}

std::optional<size_t> PlatformMatcher::Best(const std::vector<Platform>& candidates) const {
  std::optional<size_t> best;
  for (size_t i = 0; i < candidates.size(); ++i) {
    if (!Match(candidates[i])) continue;
    if (!best || Less(candidates[i], candidates[*best])) best = i;
  }
  return best;
}

}  // namespace strata::oci
