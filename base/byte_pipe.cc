#include "base/byte_pipe.h"

#include <algorithm>
#include <cstring>

namespace strata {

Status BytePipe::Write(std::string_view bytes) {
  std::unique_lock lock(mutex_);
  if (write_closed_) return Fail(ErrorCode::kInternal, "byte pipe: write after close");
  // Waits for room, but always admits a chunk into an empty pipe so a chunk larger than
  // the capacity cannot block forever.
  changed_.wait(lock, [&] { return read_error_ || buffered_ == 0 || buffered_ + bytes.size() <= capacity_; });
  if (read_error_) return std::unexpected(*read_error_);
  if (bytes.empty()) return {};
  chunks_.emplace_back(bytes);
  buffered_ += bytes.size();
  changed_.notify_all();
  return {};
}

void BytePipe::CloseWrite(Status status) {
  std::lock_guard lock(mutex_);
  write_closed_ = true;
  if (!status) write_error_ = status.error();
  changed_.notify_all();
}

Result<size_t> BytePipe::Read(std::span<char> buffer) {
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [&] { return buffered_ > 0 || write_closed_ || read_error_; });
  if (read_error_) return std::unexpected(*read_error_);
  if (write_error_) return std::unexpected(*write_error_);
  size_t copied = 0;
  while (copied < buffer.size() && !chunks_.empty()) {
    const std::string& front = chunks_.front();
    const size_t n = std::min(buffer.size() - copied, front.size() - front_offset_);
    std::memcpy(buffer.data() + copied, front.data() + front_offset_, n);
    copied += n;
    front_offset_ += n;
    if (front_offset_ == front.size()) {
      chunks_.pop_front();
      front_offset_ = 0;
    }
  }
  buffered_ -= copied;
  if (copied > 0) changed_.notify_all();
  return copied;  // 0 only when closed cleanly and drained
}

void BytePipe::CloseRead(Error error) {
  std::lock_guard lock(mutex_);
  if (!read_error_) read_error_ = std::move(error);
  chunks_.clear();
  buffered_ = 0;
  front_offset_ = 0;
  changed_.notify_all();
}

ReadAheadReader::ReadAheadReader(ByteReader& inner, size_t chunk_size, size_t capacity) : pipe_(capacity) {
  thread_ = std::thread([this, &inner, chunk_size] {
    std::string chunk(chunk_size, '\0');
    for (;;) {
      Result<size_t> n = inner.Read(chunk);
      if (!n) {
        error_ = n.error();
        pipe_.CloseWrite(std::unexpected(n.error()));
        return;
      }
      if (*n == 0) break;
      if (Status written = pipe_.Write(std::string_view(chunk.data(), *n)); !written) return;  // consumer gone
    }
    pipe_.CloseWrite();
  });
}

ReadAheadReader::~ReadAheadReader() {
  pipe_.CloseRead(Error(ErrorCode::kCanceled, "read-ahead abandoned"));
  if (thread_.joinable()) thread_.join();
}

Result<size_t> ReadAheadReader::Read(std::span<char> buffer) { return pipe_.Read(buffer); }

Status ReadAheadReader::Join() {
  if (thread_.joinable()) thread_.join();
  if (error_) return std::unexpected(*error_);
  return {};
}

}  // namespace strata
