// Fetcher: copies blobs from a registry into the content store, as containerd's
// remotes.Fetcher + content.Writer do together.
//
// A blob streams from the network into an ingest (hashed as it is written) and is
// committed only when its size and digest match the descriptor, so no partial or wrong
// blob ever becomes visible. A dropped connection resumes with a Range request from the
// ingest's offset; an interrupted fetch (even across processes) resumes from the ingest
// the next time. Hosts are tried in order (mirrors, then the upstream), then the
// descriptor's foreign `urls` (or the urls first: FetcherOptions::foreign_urls_first).
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "base/error.h"
#include "oci/descriptor.h"
#include "oci/reference.h"
#include "registry/progress.h"
#include "registry/resolver.h"
#include "store/content_store.h"
#include "store/lease_manager.h"
#include "store/types.h"

namespace strata::registry {

struct FetchOptions {
  // Lease that holds the ingest and the blob until the caller is done ("" = none).
  std::string lease;
  // Labels set on the blob when this fetch commits it.
  store::Labels labels;
  BlobKind kind = BlobKind::kBlob;
  ProgressSink progress;
  // When set and it becomes true, the download stops with Canceled (the ingest is kept
  // for a later resume). Lets a pull stop its other layers once one has failed.
  const std::atomic<bool>* cancel = nullptr;
  // Tee of the blob's bytes as they arrive, for a consumer that streams them (unpack):
  // called from the fetching thread with each received chunk and its offset in the blob,
  // after the chunk is written to the ingest. Offsets may jump (a resumed ingest starts past
  // 0) or go back to 0 (a server ignored Range); the consumer detects that itself. An error
  // returned here stops the download and is returned by Fetch. Not called for a blob that
  // is already in the store.
  using DataTee = std::function<Status(int64_t offset, std::string_view bytes)>;
  DataTee on_data;
};

struct FetcherOptions {
  // For a blob whose descriptor has `urls` (foreign / non-distributable layers): try those
  // urls before the registry hosts, as older containerd does. Default: the registry first,
  // then the urls (as Docker does).
  bool foreign_urls_first = false;
};

enum class FetchOutcome {
  kFetched,  // this call downloaded and committed it
  kExists,   // it was in the store already, or a concurrent fetch of the same blob got it
};

// Thread-safe. Concurrent Fetch calls for one digest share a single download: the first
// fetches, the others wait for it (and report kExists). REQUIRES: `resolver`, `content` and
// `leases` (may be null) outlive the Fetcher.
class Fetcher {
 public:
  Fetcher(Resolver& resolver, store::ContentStore& content, store::LeaseManager* leases,
          FetcherOptions options = {});

  // Ensures `blob` (from `reference`'s repository) is committed in the content store and,
  // with options.lease, held by that lease. Errors: NotFound when no source has it;
  // FailedPrecondition when the bytes do not match the descriptor (the ingest is discarded;
  // the message names both digests or sizes); Unavailable after retries ran out;
  // auth and store errors. Every source's error is named when all failed.
  Result<FetchOutcome> Fetch(const oci::Reference& reference, const oci::Descriptor& blob,
                             const FetchOptions& options);

  // Bytes received from the network by this Fetcher, for reports and tests.
  int64_t bytes_received() const;

 private:
  struct Flight;
  struct Source;
  Result<FetchOutcome> FetchAsLeader(const oci::Reference& reference, const oci::Descriptor& blob,
                                     const FetchOptions& options);
  Result<FetchOutcome> FetchFrom(const Source& source, const oci::Reference& reference,
                                 const oci::Descriptor& blob, const FetchOptions& options);
  Status HoldWithLease(const std::string& lease, const Digest& digest);

  Resolver& resolver_;
  store::ContentStore& content_;
  store::LeaseManager* leases_;
  FetcherOptions options_;
  std::mutex mutex_;
  std::map<Digest, std::shared_ptr<Flight>> flights_;  // guarded by mutex_
  std::atomic<int64_t> bytes_received_{0};
};

// The ingest ref a fetch of `digest` writes to ("fetch-sha256:..."): one per digest, so
// an interrupted fetch resumes whoever retries it.
std::string FetchIngestRef(const Digest& digest);

}  // namespace strata::registry
