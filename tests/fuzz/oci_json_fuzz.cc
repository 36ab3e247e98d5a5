// The image model's JSON documents: Manifest, Index and ImageConfig parse the same bytes.
// Invariants: Parse never throws or crashes; a document that parses serialises to one that
// parses back to an equal value (what we push must be what we pulled).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "oci/image_config.h"
#include "oci/index.h"
#include "oci/manifest.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

template <typename Document>
void RoundTrip(std::string_view json) {
  auto parsed = Document::Parse(json);
  if (!parsed) return;
  std::string serialized = parsed->Serialize();
  auto again = Document::Parse(serialized);
  FUZZ_CHECK(again.has_value());
  FUZZ_CHECK(*again == *parsed);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > (1 << 20)) return 0;
  std::string_view json(reinterpret_cast<const char*>(data), size);
  RoundTrip<strata::oci::Manifest>(json);
  RoundTrip<strata::oci::Index>(json);
  (void)strata::oci::ImageConfig::Parse(json);
  return 0;
}
