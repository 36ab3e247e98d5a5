#include "base/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>

namespace strata {
namespace {

using namespace std::chrono_literals;

TEST(ThreadPoolTest, RunsEveryTaskAndReturnsResults) {
  ThreadPool pool(4);
  EXPECT_EQ(pool.size(), 4u);
  std::vector<std::future<int>> futures;
  for (int i = 0; i < 1000; ++i) futures.push_back(pool.Submit([i] { return i * i; }));
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(futures[i].get(), i * i);
}

TEST(ThreadPoolTest, VoidTasksAndWait) {
  ThreadPool pool(3);
  std::atomic<int> ran = 0;
  for (int i = 0; i < 200; ++i) {
    pool.Submit([&ran] {
      std::this_thread::sleep_for(50us);
      ran.fetch_add(1);
    });
  }
  pool.Wait();
  EXPECT_EQ(ran.load(), 200);
  pool.Wait();  // idle: returns at once
}

TEST(ThreadPoolTest, UsesSeveralThreads) {
  ThreadPool pool(4);
  std::mutex mutex;
  std::set<std::thread::id> ids;
  std::atomic<int> arrived = 0;
  for (int i = 0; i < 4; ++i) {
    pool.Submit([&] {
      {
        std::lock_guard lock(mutex);
        ids.insert(std::this_thread::get_id());
      }
      // Hold every worker until all four tasks are running at once.
      arrived.fetch_add(1);
      while (arrived.load() < 4) std::this_thread::yield();
    });
  }
  pool.Wait();
  EXPECT_EQ(ids.size(), 4u);
  EXPECT_EQ(ids.count(std::this_thread::get_id()), 0u);
}

TEST(ThreadPoolTest, ExceptionsPropagateThroughTheFuture) {
  ThreadPool pool(2);
  std::future<int> failing = pool.Submit([]() -> int { throw std::runtime_error("layer 3 failed"); });
  std::future<std::string> fine = pool.Submit([] { return std::string("ok"); });
  try {
    failing.get();
    FAIL() << "expected an exception";
  } catch (const std::runtime_error& error) {
    EXPECT_STREQ(error.what(), "layer 3 failed");
  }
  EXPECT_EQ(fine.get(), "ok");  // the pool survives a throwing task
  EXPECT_EQ(pool.Submit([] { return 7; }).get(), 7);
}

TEST(ThreadPoolTest, AcceptsMoveOnlyTasksAndResults) {
  ThreadPool pool(1);
  auto box = std::make_unique<int>(41);
  std::future<std::unique_ptr<int>> future = pool.Submit([box = std::move(box)]() mutable {
    ++*box;
    return std::move(box);
  });
  EXPECT_EQ(*future.get(), 42);
}

TEST(ThreadPoolTest, TasksMaySubmitTasks) {
  ThreadPool pool(2);
  std::atomic<int> leaves = 0;
  for (int i = 0; i < 10; ++i) {
    pool.Submit([&] {
      for (int j = 0; j < 10; ++j) pool.Submit([&] { leaves.fetch_add(1); });
    });
  }
  pool.Wait();  // also covers the tasks submitted from inside the pool
  EXPECT_EQ(leaves.load(), 100);
}

TEST(ThreadPoolTest, DestructorRunsQueuedTasksAndJoins) {
  std::atomic<int> ran = 0;
  auto alive = std::make_shared<int>(0);
  std::weak_ptr<int> watch = alive;
  {
    ThreadPool pool(2);
    for (int i = 0; i < 50; ++i) {
      pool.Submit([&ran, alive] {
        std::this_thread::sleep_for(1ms);
        ran.fetch_add(1);
      });
    }
    alive.reset();
  }  // no Wait(): the destructor must drain the queue
  EXPECT_EQ(ran.load(), 50);
  EXPECT_TRUE(watch.expired());  // every task (and its captures) has been destroyed
}

TEST(ThreadPoolTest, ConcurrentSubmitters) {
  ThreadPool pool(4);
  std::atomic<int> sum = 0;
  std::vector<std::thread> submitters;
  for (int t = 0; t < 4; ++t) {
    submitters.emplace_back([&] {
      for (int i = 1; i <= 250; ++i) pool.Submit([&sum, i] { sum.fetch_add(i); });
    });
  }
  for (std::thread& t : submitters) t.join();
  pool.Wait();
  EXPECT_EQ(sum.load(), 4 * (250 * 251 / 2));
}

}  // namespace
}  // namespace strata
