// BytePipe: a bounded in-memory pipe between a pushing producer (a download's body
// callback) and a pulling consumer (decompressor -> tar apply), so one layer streams from
// the network into its snapshot in a single pass, each side on its own thread.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "base/error.h"
#include "base/io.h"

namespace strata {

// Thread-safe between one producer and one consumer. The producer blocks in Write while
// `capacity` bytes wait unread; the consumer blocks in Read until bytes arrive or the
// producer closes. Either side can end the stream early with an error, which the other
// side then gets from its next call.
class BytePipe : public ByteReader {
 public:
  explicit BytePipe(size_t capacity = static_cast<size_t>(8) << 20) : capacity_(capacity) {}

  // Producer: queues a copy of `bytes`. Returns the consumer's error once it has stopped
  // reading (CloseRead), so a download can stop feeding a failed unpack.
  Status Write(std::string_view bytes);
  // Producer: no more bytes. With an error, the consumer's next Read returns it (after the
  // queued bytes are NOT delivered: a failed stream is failed as soon as it is known).
  void CloseWrite(Status status = {});

  // Consumer (ByteReader): 0 at the end of a cleanly closed stream.
  Result<size_t> Read(std::span<char> buffer) override;
  // Consumer: stops reading; pending and later Writes fail with `error`.
  void CloseRead(Error error);

 private:
  const size_t capacity_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<std::string> chunks_;  // guarded by mutex_
  size_t front_offset_ = 0;         // bytes of chunks_.front() already read
  size_t buffered_ = 0;             // unread bytes queued
  bool write_closed_ = false;
  std::optional<Error> write_error_;  // set by CloseWrite(error)
  std::optional<Error> read_error_;   // set by CloseRead
};

}  // namespace strata
