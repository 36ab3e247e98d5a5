#include "base/thread_pool.h"

#include <cstdio>
#include <cstdlib>

namespace strata {

ThreadPool::ThreadPool(size_t threads) {
  if (threads == 0) {
    std::fprintf(stderr, "strata: fatal: ThreadPool needs at least one thread\n");
    std::abort();
  }
  workers_.reserve(threads);
  for (size_t i = 0; i < threads; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  work_available_.notify_all();
  for (std::thread& worker : workers_) worker.join();
}

void ThreadPool::Enqueue(std::move_only_function<void()> task) {
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(std::move(task));
    ++unfinished_;
  }
  work_available_.notify_one();
}

void ThreadPool::Wait() {
  std::unique_lock lock(mutex_);
  idle_.wait(lock, [this] { return unfinished_ == 0; });
}

void ThreadPool::WorkerLoop() {
  std::unique_lock lock(mutex_);
  while (true) {
    work_available_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    // Drain before stopping: the destructor promises every submitted task runs.
    if (queue_.empty()) return;
    std::move_only_function<void()> task = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    task();  // a packaged_task: exceptions land in its future, never here
    task = nullptr;  // destroy captured state outside the lock
    lock.lock();
    if (--unfinished_ == 0) idle_.notify_all();
  }
}

}  // namespace strata
