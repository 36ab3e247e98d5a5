// The PAX record parser and what applies records to an entry (tar_reader_records.h), fed
// directly so the fuzzer need not build a valid tar header around them: lengths that lie,
// overflow or point past the end, keys without '=', binary values, GNU.sparse.* maps,
// SCHILY/LIBARCHIVE xattrs (base64, %-encoded names), MSWINDOWS.* records, and header
// numbers (octal / base-256).
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "archive/tar_reader_records.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace strata::archive;
  std::string_view text(reinterpret_cast<const char*>(data), size);

  // Header number fields are 8 or 12 bytes; try the first few bytes as one.
  (void)tar_internal::ParseNumber(text.substr(0, 12));
  (void)tar_internal::ParseDecimal(text.substr(0, 24));

  auto records = tar_internal::ParsePaxRecords(text);
  if (!records) return 0;
  std::map<std::string, std::string> map;
  for (const auto& [key, value] : *records) {
    FUZZ_CHECK(key.size() + value.size() <= size);
    map[key] = value;
  }
  TarEntry entry;
  uint64_t entry_size = 0;
  tar_internal::PaxSparse sparse;
  if (tar_internal::ApplyPaxRecords(map, *records, entry, entry_size, sparse)) {
    FUZZ_CHECK(sparse.map.size() <= size);
  }
  return 0;
}
