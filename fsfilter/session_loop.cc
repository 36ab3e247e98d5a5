#define FUSE_USE_VERSION 312
#include "fsfilter/session_loop.h"

#include <fuse_lowlevel.h>
#include <linux/fuse.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace strata::fsfilter {
namespace {

constexpr int kWakeSignal = SIGUSR2;

void IgnoreWake(int) {}

// The request in `buf` for `is_quick`; a spliced request (a large WRITE, its data still in
// a pipe) is never quick.
bool IsQuick(const fuse_buf& buf, const QuickRequest& is_quick) {
  if ((buf.flags & FUSE_BUF_IS_FD) != 0) return false;
  if (buf.size < sizeof(fuse_in_header)) return true;  // libfuse refuses it at once
  fuse_in_header header;
  std::memcpy(&header, buf.mem, sizeof(header));
  const std::string_view arg(static_cast<const char*>(buf.mem) + sizeof(header), buf.size - sizeof(header));
  return is_quick(header.opcode, header.nodeid, arg);
}

class LeaderFollowerLoop {
 public:
  LeaderFollowerLoop(fuse_session* session, unsigned max_threads, QuickRequest is_quick)
      : session_(session), max_threads_(max_threads == 0 ? 1 : max_threads), is_quick_(std::move(is_quick)) {}

  int Run() {
    done_event_ = ::eventfd(0, EFD_CLOEXEC);
    if (done_event_ < 0) return -errno;
    struct sigaction wake{};
    wake.sa_handler = IgnoreWake;  // no SA_RESTART: the leader's read() returns EINTR
    sigemptyset(&wake.sa_mask);
    struct sigaction old_wake{};
    ::sigaction(kWakeSignal, &wake, &old_wake);
    // The supervisor takes SIGINT/SIGTERM/SIGHUP (libfuse's handlers end the session) only
    // inside ppoll, so none slips in between a check and the wait.
    sigset_t stop_signals, original, supervising;
    sigemptyset(&stop_signals);
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&stop_signals, sig);
    pthread_sigmask(SIG_BLOCK, &stop_signals, &original);
    supervising = original;
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigdelset(&supervising, sig);

    {
      std::unique_lock lock(mutex_);
      StartThreadLocked();
    }
    bool stop_sent = false;
    for (;;) {
      {
        std::unique_lock lock(mutex_);
        if (running_ == 0) break;
        if (!stopping_ && fuse_session_exited(session_)) stopping_ = true;
        if (stopping_) {
          if (!stop_sent) followers_.notify_all();
          stop_sent = true;
          // Resent until the leader is out: it may have checked just before blocking.
          if (leader_thread_) ::pthread_kill(*leader_thread_, kWakeSignal);
        }
      }
      pollfd done{done_event_, POLLIN, 0};
      const timespec resend{0, 20'000'000};
      if (::ppoll(&done, 1, stop_sent ? &resend : nullptr, &supervising) > 0) {
        uint64_t count;
        (void)!::read(done_event_, &count, sizeof(count));  // rearm: wait for the next exit
      }
    }
    for (std::thread& thread : threads_) thread.join();
    pthread_sigmask(SIG_SETMASK, &original, nullptr);
    ::sigaction(kWakeSignal, &old_wake, nullptr);
    ::close(done_event_);
    return error_;
  }

 private:
  // Workers take no signal but the wake signal, so a stop signal always reaches the
  // supervisor. The mask is inherited: set around the creation.
  void StartThreadLocked() {
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    threads_.emplace_back([this] { Work(); });
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    ++running_;
  }

  void Work() {
    sigset_t wake;
    sigemptyset(&wake);
    sigaddset(&wake, kWakeSignal);
    pthread_sigmask(SIG_UNBLOCK, &wake, nullptr);
    fuse_buf buf{};
    std::unique_lock lock(mutex_);
    for (;;) {
      ++idle_;
      followers_.wait(lock, [&] { return stopping_ || !leader_thread_; });
      --idle_;
      if (stopping_) break;
      leader_thread_ = ::pthread_self();
      // Lead: read and answer quick requests until one needs a worker of its own.
      bool lead = true;
      while (lead && !stopping_) {
        lock.unlock();
        buf.flags = static_cast<fuse_buf_flags>(0);  // libfuse sets FUSE_BUF_IS_FD again for a spliced request
        const int received = fuse_session_receive_buf(session_, &buf);
        const bool quick = received > 0 && IsQuick(buf, is_quick_);
        lock.lock();
        if (received == -EINTR) {
          if (stopping_) break;
          continue;
        }
        if (received <= 0) {  // unmounted (0), exited, or the device failed
          if (received < 0) {
            error_ = received;
            fuse_session_exit(session_);
          }
          stopping_ = true;
          break;
        }
        if (!quick) {
          lead = false;
          leader_thread_.reset();
          if (idle_ > 0) {
            followers_.notify_one();
          } else if (threads_.size() < max_threads_) {
            StartThreadLocked();
          }
        }
        lock.unlock();
        fuse_session_process_buf(session_, &buf);
        lock.lock();
      }
      if (stopping_) break;
    }
    if (leader_thread_ && pthread_equal(*leader_thread_, ::pthread_self())) leader_thread_.reset();
    followers_.notify_all();
    --running_;
    const uint64_t one = 1;
    (void)!::write(done_event_, &one, sizeof(one));
    lock.unlock();
    std::free(buf.mem);
  }

  fuse_session* const session_;
  const unsigned max_threads_;
  const QuickRequest is_quick_;
  int done_event_ = -1;

  std::mutex mutex_;  // guards everything below
  std::condition_variable followers_;
  std::vector<std::thread> threads_;
  unsigned running_ = 0;
  unsigned idle_ = 0;
  std::optional<pthread_t> leader_thread_;  // the thread reading /dev/fuse, if any
  bool stopping_ = false;
  int error_ = 0;
};

}  // namespace

int ServeSession(fuse_session* session, unsigned max_threads, QuickRequest is_quick) {
  LeaderFollowerLoop loop(session, max_threads, std::move(is_quick));
  return loop.Run();
}

}  // namespace strata::fsfilter
