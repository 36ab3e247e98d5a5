// BackgroundDigester: a Digester that hashes on its own thread, so a writer can copy data
// into the page cache on one core while the hash runs on the other. On a 2-core machine
// this makes hash + write cost about as much as the write alone.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/digest.h"

namespace strata {

// Update() copies the bytes into a recycled buffer and returns; a worker thread started on
// the first full buffer hashes them in order. At most `max_buffered` bytes wait at a time
// (Update blocks beyond that). Content smaller than one buffer never starts a thread.
// Not thread-safe (one producer); the worker is joined by Finish() or the destructor.
class BackgroundDigester {
 public:
  explicit BackgroundDigester(DigestAlgorithm algorithm = DigestAlgorithm::kSha256,
                              size_t buffer_size = 1 << 20, size_t max_buffered = 8 << 20);
  ~BackgroundDigester();
  BackgroundDigester(const BackgroundDigester&) = delete;
  BackgroundDigester& operator=(const BackgroundDigester&) = delete;

  void Update(std::string_view data);
  uint64_t bytes() const { return bytes_; }
  DigestAlgorithm algorithm() const { return algorithm_; }
  // Hashes what is still queued and returns the digest. REQUIRES: called at most once.
  Digest Finish();

 private:
  void Enqueue();  // hands the fill buffer to the worker
  void Run();      // the worker's loop
  void StopWorker();

  DigestAlgorithm algorithm_;
  size_t buffer_size_;
  size_t max_buffers_;
  Digester digester_;  // touched only by the worker while it runs, else by the producer
  uint64_t bytes_ = 0;
  std::string fill_;   // the producer's current buffer

  std::mutex mu_;
  std::condition_variable changed_;
  std::deque<std::string> queued_;  // full buffers, oldest first
  std::vector<std::string> free_;   // hashed buffers for reuse
  size_t outstanding_ = 0;          // buffers queued or being hashed
  bool stopping_ = false;
  std::thread worker_;
};

}  // namespace strata
