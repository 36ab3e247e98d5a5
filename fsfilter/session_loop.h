// The request loop of a mounted libfuse session: a leader/follower pool.
//
// One thread at a time (the leader) reads /dev/fuse. A quick request — one answered from
// memory or a cached inode: GETATTR, an OPEN for reading, RELEASE, FORGET, STATFS, ... —
// is answered by the leader itself, which then reads on. Any other request first hands the
// reading to an idle thread (starting one, up to max_threads), so requests that may wait on
// the disk or on other requests still run side by side.
//
// Why not libfuse's pool: there every idle thread blocks in read(), and the kernel wakes
// /dev/fuse readers oldest first, so consecutive requests of one process go from thread to
// thread, a context switch and a cold cache each. Reading a tree through the view (open,
// stat, release per file) was 15-20% slower for it than a single thread.
#pragma once

#include <functional>

struct fuse_session;

namespace strata::fsfilter {

// Serves `session` (mounted, signal handlers installed by the caller) until it is
// unmounted or fuse_session_exit is called (SIGINT/SIGTERM/SIGHUP through libfuse's
// handlers). The calling thread supervises and serves nothing. `may_answer_inline` is asked
// before a quick request is answered by the leader: false (say, a writer holds a lock that
// request needs) hands it to a worker like a slow one. Uses SIGUSR2 internally to wake the
// leader from read() when stopping. Returns 0, or -errno of a failed read of the device.
int ServeSession(fuse_session* session, unsigned max_threads, std::function<bool()> may_answer_inline);

}  // namespace strata::fsfilter
