#include "base/byte_size.h"

#include <cctype>
#include <charconv>
#include <string>

namespace strata {

Result<uint64_t> ParseByteSize(std::string_view text) {
  auto bad = [&] { return Fail(ErrorCode::kInvalidArgument, "{:?} is not a size (e.g. 4096, 512M, 20G)", text); };
  uint64_t number = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), number);
  if (error != std::errc() || end == text.data()) return bad();
  std::string unit(end, text.data() + text.size());
  for (char& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (unit.size() > 1 && unit.back() == 'B') unit.pop_back();  // "GB", "GIB"
  if (unit.size() > 1 && unit.back() == 'I') unit.pop_back();  // "GI"
  int shift;
  if (unit.empty() || unit == "B") shift = 0;
  else if (unit == "K") shift = 10;
  else if (unit == "M") shift = 20;
  else if (unit == "G") shift = 30;
  else if (unit == "T") shift = 40;
  else return bad();
  if (shift > 0 && number > (~uint64_t{0} >> shift)) return bad();
  return number << shift;
}

}  // namespace strata
