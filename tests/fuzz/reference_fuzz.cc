// Reference::Parse over arbitrary text. Invariants: a parsed reference's normalised and
// familiar forms parse back to the same reference, and the name stays within 255 bytes.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "oci/reference.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using strata::oci::Reference;
  if (size > 4096) return 0;
  auto reference = Reference::Parse(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!reference) return 0;
  FUZZ_CHECK(reference->tag() || reference->digest());
  FUZZ_CHECK(reference->name().size() <= 255);
  auto again = Reference::Parse(reference->String());
  FUZZ_CHECK(again.has_value());
  FUZZ_CHECK(*again == *reference);
  auto familiar = Reference::Parse(reference->FamiliarString());
  FUZZ_CHECK(familiar.has_value());
  FUZZ_CHECK(*familiar == *reference);
  (void)reference->ApiHost();
  (void)reference->ManifestReference();
  return 0;
}
