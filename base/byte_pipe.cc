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

}  // namespace strata
