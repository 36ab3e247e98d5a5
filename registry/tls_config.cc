#include "registry/tls_config.h"

#include <algorithm>
#include <system_error>
#include <vector>

#include "base/file.h"

namespace strata::registry {

namespace fs = std::filesystem;

Result<HostTlsConfig> LoadHostTlsConfig(const fs::path& certs_dir, const UrlOrigin& origin) {
  HostTlsConfig config;
  if (certs_dir.empty()) return config;
  std::error_code ec;
  for (const std::string& name : {origin.HostPort(), origin.host}) {
    fs::path candidate = certs_dir / name;
    if (fs::is_directory(candidate, ec)) {
      config.dir = candidate;
      break;
    }
  }
  if (config.dir.empty()) return config;

  std::vector<fs::path> files;
  for (fs::directory_iterator it(config.dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_regular_file(ec)) files.push_back(it->path());
  }
  if (ec) return Fail(ErrorCode::kUnavailable, "cannot list {}: {}", config.dir.string(), ec.message());
  std::sort(files.begin(), files.end());

  for (const fs::path& file : files) {
    std::string ext = file.extension().string();
    if (ext == ".crt") {
      STRATA_ASSIGN_OR_RETURN(std::string pem, ReadFile(file));
      config.extra_ca_pem += pem;
      if (!pem.empty() && pem.back() != '\n') config.extra_ca_pem += '\n';
    } else if (ext == ".cert") {
      fs::path key = file;
      key.replace_extension(".key");
      if (!fs::exists(key, ec)) {
        return Fail(ErrorCode::kInvalidArgument, "client certificate {} has no key {}", file.string(), key.string());
      }
      if (config.client_cert.empty()) {
        config.client_cert = file;
        config.client_key = key;
      }
    } else if (ext == ".key") {
      fs::path cert = file;
      cert.replace_extension(".cert");
      if (!fs::exists(cert, ec)) {
        return Fail(ErrorCode::kInvalidArgument, "client key {} has no certificate {}", file.string(), cert.string());
      }
    }
  }
  return config;
}

}  // namespace strata::registry
