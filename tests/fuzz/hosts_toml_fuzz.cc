// The hosts.toml (mirror configuration) parser: HostsConfig::ParseHostsFile, what HostsFor
// runs on the file's text. Invariants: the upstream comes last, every host has an http(s)
// scheme and a host, and mirrors are marked as such.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "oci/reference.h"
#include "registry/hosts.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace strata;
  if (size > (256 << 10)) return 0;
  static const oci::Reference reference = *oci::Reference::Parse("docker.io/library/alpine:3");
  static const registry::HostsConfig config;
  auto hosts = config.ParseHostsFile(std::string_view(reinterpret_cast<const char*>(data), size),
                                     "hosts.toml", reference);
  if (!hosts) return 0;
  FUZZ_CHECK(!hosts->empty());
  FUZZ_CHECK(!hosts->back().mirror);
  for (size_t i = 0; i < hosts->size(); ++i) {
    const registry::RegistryHost& host = (*hosts)[i];
    FUZZ_CHECK(host.scheme == "http" || host.scheme == "https");
    FUZZ_CHECK(i + 1 == hosts->size() || host.mirror);
    (void)host.ApiUrl();
    (void)host.RepositoryUrl("library/alpine");
  }
  return 0;
}
