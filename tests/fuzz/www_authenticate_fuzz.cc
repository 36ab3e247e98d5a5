// ParseChallenges (registry/auth.h) over WWW-Authenticate values: the input's lines are the
// header values of one response. Malformed parts are skipped by contract, never a crash.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "registry/auth.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > (64 << 10)) return 0;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> values;
  while (true) {
    size_t newline = text.find('\n');
    values.push_back(text.substr(0, newline));
    if (newline == std::string_view::npos) break;
    text.remove_prefix(newline + 1);
  }
  std::vector<strata::registry::Challenge> challenges = strata::registry::ParseChallenges(values);
  FUZZ_CHECK(challenges.size() <= size);
  for (const auto& challenge : challenges) {
    for (char c : challenge.scheme) FUZZ_CHECK(!(c >= 'A' && c <= 'Z'));
    for (const auto& [name, value] : challenge.params) {
      for (char c : name) FUZZ_CHECK(!(c >= 'A' && c <= 'Z'));
    }
  }
  return 0;
}
