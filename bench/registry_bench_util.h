// What strata-bench-registry needs besides bench_util: deterministic test images written as
// OCI image layouts, a throwaway docker-registry on loopback, and a few HTTP probes.
// Benchmarks only; single-threaded driver, nothing here is thread-safe.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "bench/test_data.h"  // TestImage

namespace strata::bench {

// Writes an OCI image layout (oci-layout, index.json, blobs/sha256/...) at `layout` holding
// one linux/amd64 image tagged "1" whose gzip layers add up to about `compressed_mib` MiB:
// 5 layers of varying size up to 150 MiB, 8 above. Layer files mix seeded pseudo-random bytes
// with repetitive text so gzip reaches about 2:1, as real images do; the same arguments give
// the same digests. REQUIRES: `layout` does not exist yet.
Result<TestImage> WriteTestImageLayout(const std::filesystem::path& layout, size_t compressed_mib, uint64_t seed);

// A distribution registry (`docker-registry serve`) on 127.0.0.1 over plain HTTP, storing
// under `dir` (which it creates and removes again). The destructor stops the process it
// started (SIGTERM, SIGKILL after a grace period) and reaps it; no other process is ever
// signalled. The child also gets SIGKILL if this thread exits first (PR_SET_PDEATHSIG).
class LoopbackRegistry {
 public:
  // Starts the registry and waits until GET /v2/ answers 200; Unavailable (with the tail of
  // its log) when it does not within 30 s. Retries another port if the chosen one was taken.
  static Result<std::unique_ptr<LoopbackRegistry>> Start(const std::filesystem::path& dir);
  ~LoopbackRegistry();
  LoopbackRegistry(const LoopbackRegistry&) = delete;
  LoopbackRegistry& operator=(const LoopbackRegistry&) = delete;

  // "127.0.0.1:<port>".
  std::string host() const;
  int port() const { return port_; }
  pid_t pid() const { return pid_; }  // -1 once stopped
  const std::filesystem::path& storage_dir() const { return storage_dir_; }

 private:
  LoopbackRegistry(std::filesystem::path dir) : dir_(std::move(dir)) {}
  Status Launch();
  void Stop();
  std::string LogTail() const;

  std::filesystem::path dir_;
  std::filesystem::path storage_dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

// Status code of `method path` on http://127.0.0.1:port with the given Accept header (may be
// empty); Unavailable when nothing answers. One HTTP/1.1 request on a fresh connection.
Result<int> HttpStatus(int port, std::string_view method, std::string_view path, std::string_view accept = {});

// Runs args (argv[0] looked up in PATH) with stdout and stderr appended to `log`; true when it
// exits with status 0.
bool RunLogged(const std::vector<std::string>& args, const std::filesystem::path& log);

// Makes every regular file under `dir` resident in the page cache (see EnsureCached);
// returns the smallest resident fraction seen, negative when unknown.
double EnsureTreeCached(const std::filesystem::path& dir);

// The last `max_bytes` of a file, "" when it cannot be read.
std::string FileTail(const std::filesystem::path& path, size_t max_bytes = 2048);

}  // namespace strata::bench
