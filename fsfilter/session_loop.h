// The request loop of a mounted libfuse session: a leader/follower pool.
//
// One thread at a time (the leader) reads /dev/fuse. A quick request (the caller decides:
// one answered from memory or a cached inode) is answered by the leader itself, which then
// reads on. Any other request first hands the reading to an idle thread (starting one, up to
// max_threads), so requests that may wait on the disk or on each other still run side by side.
//
// Why not libfuse's pool: there every idle thread blocks in read(), and the kernel wakes
// /dev/fuse readers oldest first, so consecutive requests of one process go from thread to
// thread, a context switch and a cold cache each. Reading a tree through the view (open,
// stat, release per file) was 15-20% slower for it than a single thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string_view>

struct fuse_session;

namespace strata::fsfilter {

// Whether the leader may answer a request itself: it must not wait on the disk (beyond
// inodes the kernel has looked up) nor on other requests. Gets the opcode, the node id and
// the argument bytes after the header. Called by the leader, before libfuse sees the request.
using QuickRequest = std::function<bool(uint32_t opcode, uint64_t nodeid, std::string_view arg)>;

// Serves `session` (mounted, signal handlers installed by the caller) until it is
// unmounted or fuse_session_exit is called (SIGINT/SIGTERM/SIGHUP through libfuse's
// handlers). The calling thread supervises and serves nothing. Uses SIGUSR2 internally to
// wake the leader from read() when stopping. Returns 0, or -errno of a failed device read.
int ServeSession(fuse_session* session, unsigned max_threads, QuickRequest is_quick);

}  // namespace strata::fsfilter
