// TarReader over arbitrary bytes: headers (ustar, GNU, v7), PAX extended and global records
// (MSWINDOWS.*, SCHILY.xattr.*, LIBARCHIVE.xattr.*), GNU long names and sparse maps.
// Invariants: no crash or sanitizer report; content read matches the entry's size; errors
// are sticky. Work is bounded (entries, content bytes) so a slow input shows as a finding
// (libFuzzer -timeout) rather than hanging.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "archive/tar_reader.h"
#include "base/io.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

constexpr int kMaxEntries = 10000;
constexpr uint64_t kMaxContentBytes = uint64_t{16} << 20;  // per input, holes included

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace strata;
  StringViewReader input(std::string_view(reinterpret_cast<const char*>(data), size));
  archive::TarReader reader(input, archive::TarReaderOptions{
                                       .max_pax_header_bytes = 64 << 10,
                                       .max_entry_size = uint64_t{1} << 32,
                                   });
  std::array<char, 8192> buffer;
  uint64_t content = 0;
  bool failed = false;
  for (int i = 0; i < kMaxEntries; ++i) {
    auto entry = reader.Next();
    if (!entry) {
      failed = true;
      break;
    }
    if (!*entry) break;
    const archive::TarEntry& e = **entry;
    FUZZ_CHECK((e.mode & ~07777u) == 0);
    if (e.type == archive::TarEntryType::kDirectory) FUZZ_CHECK(!e.name.empty() && e.name.back() == '/');
    if (e.type != archive::TarEntryType::kRegular) FUZZ_CHECK(e.size == 0);
    uint64_t read = 0;
    bool complete = false;
    while (content < kMaxContentBytes) {
      auto n = reader.ReadContent(buffer);
      if (!n) {
        failed = true;
        break;
      }
      FUZZ_CHECK(*n <= buffer.size());
      if (*n == 0) {
        complete = true;
        break;
      }
      read += *n;
      content += *n;
    }
    if (failed) break;
    FUZZ_CHECK(read <= e.size);
    if (complete) FUZZ_CHECK(read == e.size);
    if (content >= kMaxContentBytes) break;
  }
  if (failed) {
    // After an error every call fails.
    FUZZ_CHECK(!reader.Next());
    FUZZ_CHECK(!reader.ReadContent(buffer));
  }
  FUZZ_CHECK(reader.offset() <= size);
  return 0;
}
