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
#include <thread>

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

// Reads another reader on a thread of its own, `chunk_size` bytes at a time, into a
// BytePipe, so the work behind `inner` (decompression, hashing) runs on one core while the
// consumer (tar apply: mostly system calls) runs on another. Not thread-safe (one
// consumer). REQUIRES: `inner` outlives this reader and nobody else reads it meanwhile.
class ReadAheadReader : public ByteReader {
 public:
  explicit ReadAheadReader(ByteReader& inner, size_t chunk_size = static_cast<size_t>(256) << 10,
                           size_t capacity = static_cast<size_t>(4) << 20);
  ~ReadAheadReader() override;  // stops the thread (it sees the pipe closed) and joins it
  ReadAheadReader(const ReadAheadReader&) = delete;
  ReadAheadReader& operator=(const ReadAheadReader&) = delete;

  Result<size_t> Read(std::span<char> buffer) override;
  // Waits for the thread to end; its error, if any. REQUIRES: Read returned 0 or an error
  // (otherwise the thread may be waiting for room in the pipe).
  Status Join();

 private:
  BytePipe pipe_;
  std::optional<Error> error_;  // the thread's, set before it ends
  std::thread thread_;
};

}  // namespace strata
