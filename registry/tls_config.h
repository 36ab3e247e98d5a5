// Per-registry TLS settings from a certs.d directory, in the layout docker and containerd
// use:
//   <certs_dir>/<host:port>/ or <certs_dir>/<host>/
//     *.crt                 extra CA certificates (PEM), trusted on top of the system store
//     <name>.cert + <name>.key   a client certificate and its key (PEM)
#pragma once

#include <filesystem>
#include <string>

#include "base/error.h"
#include "registry/url.h"

namespace strata::registry {

struct HostTlsConfig {
  // The directory the settings came from; empty when there was none.
  std::filesystem::path dir;
  // Concatenated PEM of every *.crt file (sorted by name); empty = system store only.
  std::string extra_ca_pem;
  // Both set or both empty.
  std::filesystem::path client_cert;
  std::filesystem::path client_key;
};

// Reads the settings for `origin` from `certs_dir`: the "<host>:<port>" directory if it
// exists, else "<host>". A missing certs_dir or host directory yields an empty config.
// InvalidArgument for a .cert without its .key (or the reverse); Unavailable when a file
// cannot be read. Reads the files on every call (cheap; lets edits apply at once).
Result<HostTlsConfig> LoadHostTlsConfig(const std::filesystem::path& certs_dir, const UrlOrigin& origin);

}  // namespace strata::registry
