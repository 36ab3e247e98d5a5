#include "base/background_digester.h"

#include <algorithm>

namespace strata {

BackgroundDigester::BackgroundDigester(DigestAlgorithm algorithm, size_t buffer_size, size_t max_buffered)
    : algorithm_(algorithm),
      buffer_size_(buffer_size),
      max_buffers_(std::max<size_t>(1, max_buffered / buffer_size)),
      digester_(algorithm) {
  fill_.reserve(buffer_size_);
}

BackgroundDigester::~BackgroundDigester() { StopWorker(); }

void BackgroundDigester::StopWorker() {
  if (!worker_.joinable()) return;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  changed_.notify_all();
  worker_.join();
}

void BackgroundDigester::Update(std::string_view data) {
  bytes_ += data.size();
  while (!data.empty()) {
    size_t take = std::min(data.size(), buffer_size_ - fill_.size());
    fill_.append(data.data(), take);
    data.remove_prefix(take);
    if (fill_.size() == buffer_size_) Enqueue();
  }
}

void BackgroundDigester::Enqueue() {
  if (!worker_.joinable()) worker_ = std::thread([this] { Run(); });
  std::string next;
  {
    std::unique_lock lock(mu_);
    changed_.wait(lock, [&] { return outstanding_ < max_buffers_; });
    ++outstanding_;
    queued_.push_back(std::move(fill_));
    if (!free_.empty()) {
      next = std::move(free_.back());
      free_.pop_back();
    }
  }
  changed_.notify_all();
  next.clear();
  next.reserve(buffer_size_);
  fill_ = std::move(next);
}

void BackgroundDigester::Run() {
  std::unique_lock lock(mu_);
  while (true) {
    changed_.wait(lock, [&] { return !queued_.empty() || stopping_; });
    if (queued_.empty()) return;  // stopping, and everything is hashed
    std::string buffer = std::move(queued_.front());
    queued_.pop_front();
    lock.unlock();
    digester_.Update(buffer);
    lock.lock();
    free_.push_back(std::move(buffer));
    --outstanding_;
    changed_.notify_all();
  }
}

Digest BackgroundDigester::Finish() {
  StopWorker();  // drains the queue first: the worker exits only when it is empty
  digester_.Update(fill_);
  fill_.clear();
  return digester_.Finish();
}

}  // namespace strata
