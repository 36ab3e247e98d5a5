// A fixed-size pool of worker threads for blocking work (layer downloads, unpacking,
// hashing). Tasks run in submission order, at most size() at a time.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace strata {

// Thread-safe: Submit and Wait may be called from any thread, concurrently. Tasks may
// Submit further tasks. The destructor runs every task already submitted, then joins the
// workers; no thread outlives the pool.
class ThreadPool {
 public:
  // REQUIRES: threads > 0.
  explicit ThreadPool(size_t threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;
  ThreadPool(ThreadPool&&) = delete;
  ThreadPool& operator=(ThreadPool&&) = delete;

  // Queues `task` (callable with no arguments) and returns a future for its result. An
  // exception thrown by the task is stored in the future and rethrown by get().
  template <class F>
  auto Submit(F&& task) -> std::future<std::invoke_result_t<std::decay_t<F>&>> {
    using R = std::invoke_result_t<std::decay_t<F>&>;
    std::packaged_task<R()> packaged(std::forward<F>(task));
    std::future<R> future = packaged.get_future();
    Enqueue(std::move_only_function<void()>(std::move(packaged)));
    return future;
  }

  // Blocks until every task submitted so far (and any they submit) has finished.
  // REQUIRES: not called from a task of this pool (it would wait for itself).
  void Wait();

  size_t size() const { return workers_.size(); }

 private:
  void Enqueue(std::move_only_function<void()> task);
  void WorkerLoop();

  std::mutex mutex_;
  std::condition_variable work_available_;  // signalled on new task or shutdown
  std::condition_variable idle_;            // signalled when unfinished_ drops to 0
  std::deque<std::move_only_function<void()>> queue_;  // guarded by mutex_
  size_t unfinished_ = 0;                              // queued + running; guarded by mutex_
  bool stopping_ = false;                              // guarded by mutex_
  std::vector<std::thread> workers_;
};

}  // namespace strata
