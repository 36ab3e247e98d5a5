// strata-bench-snapshot-ops: the snapshots.v1 gRPC API, one small client loop against two
// servers in one run, round by round:
//
//   strata:     `strata serve --root FRESH --socket WORK/strata.sock --snapshotter strata`,
//               its root on a freshly made, loop-mounted ext4 (ScratchFilesystem);
//               requests name snapshotter "strata".
//   containerd: containerd 1.6 started for this run alone (ScratchContainerd: own config,
//               socket, root and state, CRI and the unneeded snapshotters disabled), its
//               root -- hence its overlayfs snapshotter's root and its metadata DB -- on a
//               fresh ext4 of the same kind; requests name snapshotter "overlayfs" and carry
//               the gRPC header `containerd-namespace: bench`.
//
// One cycle is Prepare(key_i, parent) -> Mounts(key_i) -> Commit(name_i, key_i) ->
// Remove(name_i), each a unary call awaited before the next. Two workloads: with a parent (a
// committed base snapshot holding a few files, made once per server) and without one. Every
// request carries the label containerd.io/gc.root, as containerd's metadata GC would
// otherwise collect an unreferenced snapshot between two calls of a cycle (ctr and the CRI
// hold a lease instead); strata gets the same requests.
//
// What is measured is what the client sees. containerd's Remove only deletes the metadata
// record; its GC removes the overlayfs directory afterwards, in the background. So after
// every batch the bench waits until the daemon's CPU time stops moving ("settled"), and
// reports the daemon's CPU per cycle including that tail, besides the client-side cycles/s;
// then counts the snapshot directories left (strata's Remove is metadata-only too, and
// leaves the directory to Cleanup) and times the Cleanup call that reclaims them.
// Each round runs every workload on both servers; who goes first alternates round by round.
// Before round 1 an untimed warm-up batch runs on each.
//
//   strata-bench-snapshot-ops [--rounds 5] [--cycles 500] [--quick] [--servers strata,containerd]
//                             [--strata PATH] [--work-dir DIR]
// Needs root (loop mounts, containerd). Everything lives in a fresh directory under
// --work-dir (default $TMPDIR or /tmp), removed at the end together with any mount left
// under it; only the processes started here are stopped, by pid.
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <grpcpp/grpcpp.h>

#include "base/error.h"
#include "base/file.h"
#include "bench/bench_util.h"
#include "bench/registry_bench_util.h"  // FileTail
#include "bench/test_data.h"            // MakeDirs
#include "bench/unpack_bench_util.h"    // ScratchFilesystem, ScratchContainerd, RemoveTree
#include "daemon/rpc_status.h"
#include "containerd/services/snapshots/v1/snapshots.grpc.pb.h"

namespace strata {
namespace {

namespace fs = std::filesystem;
namespace api = containerd::services::snapshots::v1;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kScratchBytes = 4ULL << 30;  // sparse
constexpr int kWarmupCycles = 20;
constexpr int kQuickCycles = 50;
constexpr int kQuickRounds = 3;
constexpr auto kRpcDeadline = std::chrono::seconds(60);
constexpr std::string_view kGcRootLabel = "containerd.io/gc.root";

std::atomic<bool> g_interrupted{false};
void OnSignal(int) { g_interrupted = true; }

struct Options {
  int rounds = 5;
  int cycles = 500;
  bool quick = false;
  std::vector<std::string> servers = {"strata", "containerd"};
  fs::path strata;
  fs::path work_dir;
};

Options ParseOptions(int argc, char** argv) {
  const bench::CommandLine command_line(
      "strata-bench-snapshot-ops",
      "[--rounds N] [--cycles N] [--quick] [--servers strata,containerd] [--strata PATH] [--work-dir DIR]");
  Options options;
  // --quick takes no value; CommandLine wants pairs, so it is taken out first.
  std::vector<char*> rest = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--quick") {
      options.quick = true;
    } else {
      rest.push_back(argv[i]);
    }
  }
  bool rounds_set = false, cycles_set = false;
  command_line.Parse(static_cast<int>(rest.size()), rest.data(), [&](std::string_view flag, std::string_view value) {
    if (flag == "--rounds") {
      options.rounds = command_line.Positive<int>(flag, value);
      rounds_set = true;
    } else if (flag == "--cycles") {
      options.cycles = command_line.Positive<int>(flag, value);
      cycles_set = true;
    } else if (flag == "--servers") {
      options.servers = command_line.Choices(flag, value, {"strata", "containerd"});
    } else if (flag == "--strata") {
      options.strata = fs::path(value);
    } else if (flag == "--work-dir") {
      options.work_dir = fs::path(value);
    } else {
      return false;
    }
    return true;
  });
  if (options.quick) {
    if (!cycles_set) options.cycles = kQuickCycles;
    if (!rounds_set) options.rounds = kQuickRounds;
  }
  if (options.strata.empty()) options.strata = bench::StrataNextToSelf();
  return options;
}

// ---- the client ----

enum Op { kPrepare = 0, kMounts, kCommit, kRemove, kOpCount };
constexpr std::array<std::string_view, kOpCount> kOpNames = {"Prepare", "Mounts", "Commit", "Remove"};

// The daemon's code mapping, with the call and key named.
Error FromGrpc(const grpc::Status& status, std::string_view rpc, std::string_view key) {
  const Error error = daemon::FromGrpcStatus(status);
  return Error(error.code(), fmt::format("{}({}): {} (grpc code {})", rpc, key, error.message(),
                                         static_cast<int>(status.error_code())));
}

// "overlay [index=off,workdir=…,upperdir=…,lowerdir=…]": a mount list, paths cut.
std::string DescribeMounts(const google::protobuf::RepeatedPtrField<containerd::types::Mount>& mounts) {
  std::vector<std::string> parts;
  for (const containerd::types::Mount& mount : mounts) {
    std::vector<std::string> options;
    for (const std::string& option : mount.options()) {
      const size_t eq = option.find('=');
      const bool path = eq != std::string::npos && option.find('/', eq) != std::string::npos;
      options.push_back(path ? option.substr(0, eq + 1) + "…" : option);
    }
    parts.push_back(fmt::format("{} [{}]", mount.type(), fmt::join(options, ",")));
  }
  return parts.empty() ? "(no mounts)" : fmt::format("{}", fmt::join(parts, "; "));
}

bool SameMounts(const google::protobuf::RepeatedPtrField<containerd::types::Mount>& a,
                const google::protobuf::RepeatedPtrField<containerd::types::Mount>& b) {
  if (a.size() != b.size()) return false;
  for (int i = 0; i < a.size(); ++i) {
    if (a[i].type() != b[i].type() || a[i].source() != b[i].source() ||
        !std::equal(a[i].options().begin(), a[i].options().end(), b[i].options().begin(), b[i].options().end())) {
      return false;
    }
  }
  return true;
}

// Unary snapshots.v1 calls on one server, each awaited; `snapshotter` goes in every
// request, `ns` (when set) in the containerd-namespace header.
class SnapshotClient {
 public:
  SnapshotClient(const fs::path& socket, std::string snapshotter, std::string ns)
      : channel_(grpc::CreateChannel("unix:" + socket.native(), grpc::InsecureChannelCredentials())),
        stub_(api::Snapshots::NewStub(channel_)),
        snapshotter_(std::move(snapshotter)),
        ns_(std::move(ns)) {}

  bool WaitConnected(std::chrono::seconds timeout) {
    return channel_->WaitForConnected(std::chrono::system_clock::now() + timeout);
  }

  Result<api::PrepareSnapshotResponse> Prepare(const std::string& key, const std::string& parent) {
    api::PrepareSnapshotRequest request;
    request.set_snapshotter(snapshotter_);
    request.set_key(key);
    request.set_parent(parent);
    (*request.mutable_labels())[std::string(kGcRootLabel)] = "bench";
    api::PrepareSnapshotResponse response;
    grpc::ClientContext context;
    Setup(context);
    if (grpc::Status status = stub_->Prepare(&context, request, &response); !status.ok()) {
      return std::unexpected(FromGrpc(status, "Prepare", key));
    }
    return response;
  }

  Result<api::MountsResponse> Mounts(const std::string& key) {
    api::MountsRequest request;
    request.set_snapshotter(snapshotter_);
    request.set_key(key);
    api::MountsResponse response;
    grpc::ClientContext context;
    Setup(context);
    if (grpc::Status status = stub_->Mounts(&context, request, &response); !status.ok()) {
      return std::unexpected(FromGrpc(status, "Mounts", key));
    }
    return response;
  }

  Status Commit(const std::string& name, const std::string& key) {
    api::CommitSnapshotRequest request;
    request.set_snapshotter(snapshotter_);
    request.set_name(name);
    request.set_key(key);
    (*request.mutable_labels())[std::string(kGcRootLabel)] = "bench";
    google::protobuf::Empty response;
    grpc::ClientContext context;
    Setup(context);
    if (grpc::Status status = stub_->Commit(&context, request, &response); !status.ok()) {
      return std::unexpected(FromGrpc(status, "Commit", key));
    }
    return {};
  }

  Status Remove(const std::string& key) {
    api::RemoveSnapshotRequest request;
    request.set_snapshotter(snapshotter_);
    request.set_key(key);
    google::protobuf::Empty response;
    grpc::ClientContext context;
    Setup(context);
    if (grpc::Status status = stub_->Remove(&context, request, &response); !status.ok()) {
      return std::unexpected(FromGrpc(status, "Remove", key));
    }
    return {};
  }

  // Status of Stat(key): NotFound is a normal answer here.
  Result<api::StatSnapshotResponse> Stat(const std::string& key) {
    api::StatSnapshotRequest request;
    request.set_snapshotter(snapshotter_);
    request.set_key(key);
    api::StatSnapshotResponse response;
    grpc::ClientContext context;
    Setup(context);
    if (grpc::Status status = stub_->Stat(&context, request, &response); !status.ok()) {
      return std::unexpected(FromGrpc(status, "Stat", key));
    }
    return response;
  }

  Status Cleanup() {
    api::CleanupRequest request;
    request.set_snapshotter(snapshotter_);
    google::protobuf::Empty response;
    grpc::ClientContext context;
    Setup(context);
    if (grpc::Status status = stub_->Cleanup(&context, request, &response); !status.ok()) {
      return std::unexpected(FromGrpc(status, "Cleanup", ""));
    }
    return {};
  }

  // Names of all snapshots (List, unfiltered).
  Result<std::vector<std::string>> List() {
    api::ListSnapshotsRequest request;
    request.set_snapshotter(snapshotter_);
    grpc::ClientContext context;
    Setup(context);
    std::unique_ptr<grpc::ClientReader<api::ListSnapshotsResponse>> reader = stub_->List(&context, request);
    std::vector<std::string> names;
    api::ListSnapshotsResponse batch;
    while (reader->Read(&batch)) {
      for (const api::Info& info : batch.info()) names.push_back(info.name());
    }
    if (grpc::Status status = reader->Finish(); !status.ok()) return std::unexpected(FromGrpc(status, "List", ""));
    return names;
  }

 private:
  void Setup(grpc::ClientContext& context) const {
    if (!ns_.empty()) context.AddMetadata("containerd-namespace", ns_);
    context.set_deadline(std::chrono::system_clock::now() + kRpcDeadline);
  }

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<api::Snapshots::Stub> stub_;
  std::string snapshotter_;
  std::string ns_;
};

// ---- the servers ----

// `strata serve` started here; the destructor stops it (SIGTERM, SIGKILL after 10 s).
class StrataDaemon {
 public:
  static Result<std::unique_ptr<StrataDaemon>> Start(const fs::path& strata, const fs::path& root,
                                                     const fs::path& socket, const fs::path& log) {
    std::unique_ptr<StrataDaemon> daemon(new StrataDaemon(log));
    STRATA_RETURN_IF_ERROR(bench::MakeDirs(root));
    STRATA_ASSIGN_OR_RETURN(UniqueFd log_fd, OpenFile(log, O_WRONLY | O_CREAT | O_APPEND));
    daemon->args_ = {strata.native(), "serve", "--root", root.native(), "--socket", socket.native(),
                     "--snapshotter", "strata"};
    daemon->pid_ = bench::SpawnTiedToThread(daemon->args_, log_fd.get());
    if (daemon->pid_ < 0) return ErrnoFail(errno, "fork");
    const auto deadline = Clock::now() + std::chrono::seconds(30);
    while (!fs::exists(socket)) {
      int status = 0;
      if (::waitpid(daemon->pid_, &status, WNOHANG) == daemon->pid_) {
        daemon->pid_ = -1;
        return Fail(ErrorCode::kUnavailable, "`{}` exited at start (status {:#x}): {}", fmt::join(daemon->args_, " "),
                    status, bench::FileTail(log));
      }
      if (Clock::now() >= deadline) {
        return Fail(ErrorCode::kUnavailable, "`{}` made no socket within 30 s: {}", fmt::join(daemon->args_, " "),
                    bench::FileTail(log));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return daemon;
  }
  ~StrataDaemon() { Stop(); }
  void Stop() { bench::StopChild(pid_, std::chrono::seconds(10)); }
  pid_t pid() const { return pid_; }
  std::string LogTail() const { return bench::FileTail(log_); }

 private:
  explicit StrataDaemon(fs::path log) : log_(std::move(log)) {}
  fs::path log_;
  std::vector<std::string> args_;
  pid_t pid_ = -1;
};

// utime + stime of a process, in seconds; negative when unknown.
double ProcessCpuSeconds(pid_t pid) {
  Result<std::string> stat = ReadFile(fmt::format("/proc/{}/stat", pid));
  if (!stat) return -1;
  // Fields after "(comm)": state is field 3; utime and stime are fields 14 and 15.
  const size_t paren = stat->rfind(')');
  if (paren == std::string::npos) return -1;
  const char* p = stat->c_str() + paren + 2;
  unsigned long long utime = 0, stime = 0;
  if (std::sscanf(p, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2) return -1;
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// VmHWM of a process in MB, 0 when unknown.
double PeakRssMb(pid_t pid) { return bench::KibToMb(bench::VmHwmKib(pid)); }

// Waits until `done()` holds and the daemon's CPU time has not moved for 300 ms (its
// deferred work done), at most 20 s. Returns the seconds waited.
double WaitSettled(pid_t pid, const std::function<bool()>& done) {
  const auto start = Clock::now();
  double last = ProcessCpuSeconds(pid);
  int still = 0;
  while ((still < 3 || !done()) && Clock::now() - start < std::chrono::seconds(20) && !g_interrupted) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const double now = ProcessCpuSeconds(pid);
    still = now == last ? still + 1 : 0;
    last = now;
  }
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Entries in a snapshotter's snapshots/ directory; -1 when it cannot be read.
long CountDirs(const fs::path& dir) {
  std::error_code ec;
  long count = 0;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) ++count;
  return ec ? -1 : count;
}

enum Workload { kWithParent = 0, kNoParent = 1, kWorkloadCount };
constexpr std::array<std::string_view, kWorkloadCount> kWorkloadNames = {"parent = base (3 files)",
                                                                         "no parent"};
constexpr std::array<std::string_view, kWorkloadCount> kWorkloadTags = {"p", "n"};

// One server's figures on one workload; each Samples entry is one batch (round).
struct WorkloadResults {
  bench::Samples cycles_per_second;
  std::array<bench::Samples, kOpCount> op_micros;  // mean latency per call in the batch
  bench::Samples daemon_cpu_ms_per_cycle;          // batch + settle + Cleanup
  bench::Samples settle_seconds;
  bench::Samples dirs_before_cleanup;  // snapshot dirs once settled (the base is one)
  bench::Samples cleanup_ms;           // the Cleanup call after the batch
  std::string mounts_seen;       // first cycle's Mounts answer, paths cut
  std::string checks;            // anything odd the checks saw
};

struct Server {
  std::string name;  // "strata" / "containerd"
  // Destroyed in reverse: client, daemons, then the filesystem (unmounted last).
  std::unique_ptr<bench::ScratchFilesystem> filesystem;
  std::unique_ptr<bench::ScratchContainerd> containerd;
  std::unique_ptr<StrataDaemon> strata;
  std::unique_ptr<SnapshotClient> client;
  // The backend's snapshots/ dir: where the base's directory is (its bind mount's source
  // is <snapshots>/<id>/fs, for both).
  fs::path backend_snapshots;
  bool reclaims_by_itself = false;  // containerd: its GC removes the directories
  bool cleanup_unimplemented = false;
  std::array<WorkloadResults, kWorkloadCount> results;
  std::optional<Error> error;  // set: skipped from then on
  double peak_rss_mb = 0;

  pid_t pid() const { return containerd ? containerd->pid() : strata ? strata->pid() : -1; }
  std::string LogTail() const { return containerd ? containerd->LogTail() : strata ? strata->LogTail() : ""; }
};

// The base every "with parent" cycle builds on: Prepare, a few files written through its
// mount, Commit as "base".
Status MakeBase(Server& server, const fs::path& scratch_mount) {
  STRATA_ASSIGN_OR_RETURN(const api::PrepareSnapshotResponse prepared, server.client->Prepare("base-active", ""));
  const auto& mounts = prepared.mounts();
  fs::path tree;
  bool mounted = false;
  const fs::path target = scratch_mount / "base-mnt";
  if (mounts.size() == 1 && mounts[0].type() == "bind") {
    tree = mounts[0].source();  // a parentless snapshot is a bind of its directory
    if (tree.filename() == "fs") server.backend_snapshots = tree.parent_path().parent_path();
  } else if (mounts.size() == 1) {
    STRATA_RETURN_IF_ERROR(bench::MakeDirs(target));
    std::vector<std::string> data;
    for (const std::string& option : mounts[0].options()) {
      if (option != "rw" && option != "rbind" && option != "bind") data.push_back(option);
    }
    const std::string joined = fmt::format("{}", fmt::join(data, ","));
    if (::mount(mounts[0].source().c_str(), target.c_str(), mounts[0].type().c_str(), 0, joined.c_str()) != 0) {
      return ErrnoFail(errno, fmt::format("mount {} [{}]", mounts[0].type(), joined), target);
    }
    mounted = true;
    tree = target;
  } else {
    return Fail(ErrorCode::kInternal, "Prepare(base-active) returned {}", DescribeMounts(mounts));
  }
  Status written = [&]() -> Status {
    STRATA_RETURN_IF_ERROR(bench::MakeDirs(tree / "etc"));
    STRATA_RETURN_IF_ERROR(bench::MakeDirs(tree / "usr" / "bin"));
    STRATA_RETURN_IF_ERROR(AtomicWriteFile(tree / "etc" / "os-release", "ID=bench\nVERSION_ID=1\n"));
    STRATA_RETURN_IF_ERROR(AtomicWriteFile(tree / "usr" / "bin" / "app", bench::MakeRandomBuffer(256 * 1024), 0755));
    STRATA_RETURN_IF_ERROR(AtomicWriteFile(tree / "usr" / "bin" / "tool", bench::MakeRandomBuffer(16 * 1024), 0755));
    return {};
  }();
  if (mounted) ::umount2(target.c_str(), MNT_DETACH);
  STRATA_RETURN_IF_ERROR(written);
  return server.client->Commit("base", "base-active");
}

// One batch of `cycles` cycles of `workload`, then settle, Cleanup and the checks (the first
// cycle's Prepare and Mounts answers agree; nothing but the base is left). `results` null:
// a warm-up, nothing recorded.
Status RunCycles(Server& server, Workload workload, int round, int cycles, WorkloadResults* results) {
  const std::string parent = workload == kWithParent ? "base" : "";
  std::array<double, kOpCount> op_seconds{};
  const double cpu_before = ProcessCpuSeconds(server.pid());
  const auto start = Clock::now();
  auto timed = [&](Op op, auto&& call) {
    const auto t0 = Clock::now();
    auto result = call();
    op_seconds[op] += std::chrono::duration<double>(Clock::now() - t0).count();
    return result;
  };
  std::string last_name;
  for (int i = 0; i < cycles; ++i) {
    if (g_interrupted) return Fail(ErrorCode::kCanceled, "interrupted");
    const std::string key = fmt::format("bench-active-{}-r{}-{}", kWorkloadTags[workload], round, i);
    const std::string name = fmt::format("bench-committed-{}-r{}-{}", kWorkloadTags[workload], round, i);
    STRATA_ASSIGN_OR_RETURN(const api::PrepareSnapshotResponse prepared,
                            timed(kPrepare, [&] { return server.client->Prepare(key, parent); }));
    STRATA_ASSIGN_OR_RETURN(const api::MountsResponse mounts, timed(kMounts, [&] { return server.client->Mounts(key); }));
    STRATA_RETURN_IF_ERROR(timed(kCommit, [&] { return server.client->Commit(name, key); }));
    STRATA_RETURN_IF_ERROR(timed(kRemove, [&] { return server.client->Remove(name); }));
    if (i == 0 && results && results->mounts_seen.empty()) {
      results->mounts_seen = DescribeMounts(mounts.mounts());
      if (!SameMounts(prepared.mounts(), mounts.mounts())) {
        results->checks += fmt::format("Prepare answered {} but Mounts {}; ", DescribeMounts(prepared.mounts()),
                                       DescribeMounts(mounts.mounts()));
      }
    }
    last_name = name;
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  // containerd's GC removes the directories on its own (scheduled up to a second or more
  // after the Remove): wait for it, so it does not run during the other server's batch.
  const double settle = WaitSettled(server.pid(), [&] {
    return !server.reclaims_by_itself || server.backend_snapshots.empty() || CountDirs(server.backend_snapshots) <= 1;
  });
  const long dirs_settled = server.backend_snapshots.empty() ? -1 : CountDirs(server.backend_snapshots);
  // Then what is left to reclaim, by Cleanup (strata's Remove leaves the directory to it;
  // containerd 1.6's service answers Unimplemented, as its GC does the work).
  const auto cleanup_start = Clock::now();
  if (Status cleaned = server.client->Cleanup(); !cleaned) {
    if (cleaned.error().code() != ErrorCode::kUnimplemented) return cleaned;
    server.cleanup_unimplemented = true;
  }
  const double cleanup_ms = std::chrono::duration<double, std::milli>(Clock::now() - cleanup_start).count();
  const double cpu_after = ProcessCpuSeconds(server.pid());
  if (!results) return {};  // warm-up
  if (dirs_settled >= 0) results->dirs_before_cleanup.Add(static_cast<double>(dirs_settled));
  if (!server.cleanup_unimplemented) results->cleanup_ms.Add(cleanup_ms);
  results->cycles_per_second.Add(cycles / seconds);
  for (int op = 0; op < kOpCount; ++op) results->op_micros[op].Add(op_seconds[op] / cycles * 1e6);
  if (cpu_before >= 0 && cpu_after >= 0) results->daemon_cpu_ms_per_cycle.Add((cpu_after - cpu_before) / cycles * 1e3);
  results->settle_seconds.Add(settle);
  // What is left: Stat of the last removed name must be NotFound, List only the base.
  if (Result<api::StatSnapshotResponse> stat = server.client->Stat(last_name);
      stat || stat.error().code() != ErrorCode::kNotFound) {
    results->checks += fmt::format("round {}: Stat({}) after Remove: {}; ", round + 1, last_name,
                                   stat ? "still there" : stat.error().ToString());
  }
  STRATA_ASSIGN_OR_RETURN(const std::vector<std::string> names, server.client->List());
  if (names != std::vector<std::string>{"base"}) {
    results->checks += fmt::format("round {}: List after the batch: {} snapshots ({}); ", round + 1, names.size(),
                                   fmt::join(names.begin(), names.begin() + std::min<size_t>(names.size(), 3), ", "));
  }
  if (!server.backend_snapshots.empty()) {
    if (const long dirs = CountDirs(server.backend_snapshots); dirs != 1) {
      results->checks += fmt::format("round {}: {} snapshot dirs left after Cleanup (expected the base's); ",
                                     round + 1, dirs);
    }
  }
  return {};
}

Status StartServer(Server& server, const Options& options, const fs::path& work) {
  const fs::path log = work / fmt::format("{}.log", server.name);
  STRATA_ASSIGN_OR_RETURN(server.filesystem,
                          bench::ScratchFilesystem::Create(work / ("fs-" + server.name), kScratchBytes, log));
  const fs::path mount = server.filesystem->mountpoint();
  if (server.name == "containerd") {
    STRATA_ASSIGN_OR_RETURN(server.containerd, bench::ScratchContainerd::Start(mount / "containerd"));
    server.reclaims_by_itself = true;
    server.client = std::make_unique<SnapshotClient>(server.containerd->socket(), "overlayfs", "bench");
  } else {
    const fs::path socket = work / "strata.sock";
    STRATA_ASSIGN_OR_RETURN(server.strata, StrataDaemon::Start(options.strata, mount / "root", socket, log));
    server.client = std::make_unique<SnapshotClient>(socket, "strata", "");
  }
  if (!server.client->WaitConnected(std::chrono::seconds(30))) {
    return Fail(ErrorCode::kUnavailable, "{}: no gRPC connection within 30 s: {}", server.name, server.LogTail());
  }
  if (Status made = MakeBase(server, mount); !made) {
    return Fail(made.error().WithContext(fmt::format("making the base snapshot: {}", server.LogTail())));
  }
  return {};
}

// The server's daemon, stopped; its filesystem unmounted and removed.
void StopServer(Server& server) {
  if (server.pid() > 0) server.peak_rss_mb = std::max(server.peak_rss_mb, PeakRssMb(server.pid()));
  server.client.reset();
  if (server.strata) server.strata->Stop();
  server.containerd.reset();  // stops it, removes its dir
  server.strata.reset();
  server.filesystem.reset();  // unmounts
}

// ---- report ----

std::string MedianAndRange(const bench::Samples& samples, int decimals) {
  if (samples.count() == 0) return "n/a";
  return fmt::format("{:.{}f} ({:.{}f}-{:.{}f})", samples.Median(), decimals, samples.Min(), decimals, samples.Max(),
                     decimals);
}
std::string Median(const bench::Samples& samples, int decimals) {
  return samples.count() ? fmt::format("{:.{}f}", samples.Median(), decimals) : "n/a";
}

// strata's rate / containerd's, round by round (each round runs both under the same load):
// median (min-max). n/a unless both have every round.
std::string PairedRatio(const bench::Samples& strata, const bench::Samples& containerd) {
  if (strata.count() == 0 || strata.count() != containerd.count()) return "n/a";
  bench::Samples ratios;
  for (size_t i = 0; i < strata.count(); ++i) ratios.Add(strata.values()[i] / containerd.values()[i]);
  return fmt::format("{:.2f}x ({:.2f}-{:.2f})", ratios.Median(), ratios.Min(), ratios.Max());
}

bool Report(const std::vector<std::unique_ptr<Server>>& servers, const Options& options) {
  using Align = bench::MarkdownTable::Align;
  const Server* strata = nullptr;
  const Server* containerd = nullptr;
  for (const auto& server : servers) (server->name == "strata" ? strata : containerd) = server.get();
  static const bench::Samples kNone;
  auto rate = [](const Server* server, int w) -> const bench::Samples& {
    return server ? server->results[w].cycles_per_second : kNone;
  };
  bench::MarkdownTable throughput({{"workload", Align::kLeft},
                                   {"strata cycles/s, median (min-max)"},
                                   {"containerd cycles/s"},
                                   {"strata/containerd (of medians)"},
                                   {"strata/containerd per round, median (min-max)"}});
  for (int w = 0; w < kWorkloadCount; ++w) {
    const bench::Samples& s = rate(strata, w);
    const bench::Samples& c = rate(containerd, w);
    throughput.AddRow({std::string(kWorkloadNames[w]), MedianAndRange(s, 0), MedianAndRange(c, 0),
                       s.count() && c.count() ? fmt::format("{:.2f}x", s.Median() / c.Median()) : "n/a",
                       PairedRatio(s, c)});
  }
  bench::MarkdownTable detail({{"server, workload", Align::kLeft},
                               {"Prepare µs"},
                               {"Mounts µs"},
                               {"Commit µs"},
                               {"Remove µs"},
                               {"daemon CPU ms/cycle"},
                               {"settle s"},
                               {"dirs left"},
                               {"Cleanup ms"}});
  std::string lines;
  bool ok = true;
  for (const auto& server : servers) {
    for (int w = 0; w < kWorkloadCount; ++w) {
      const WorkloadResults& r = server->results[w];
      detail.AddRow({fmt::format("{}, {}", server->name, kWorkloadNames[w]), Median(r.op_micros[kPrepare], 0),
                     Median(r.op_micros[kMounts], 0), Median(r.op_micros[kCommit], 0), Median(r.op_micros[kRemove], 0),
                     Median(r.daemon_cpu_ms_per_cycle, 2), Median(r.settle_seconds, 1),
                     Median(r.dirs_before_cleanup, 0),
                     server->cleanup_unimplemented ? "Unimplemented" : Median(r.cleanup_ms, 1)});
      if (!r.mounts_seen.empty()) {
        lines += fmt::format("{}, {}: Mounts -> {}\n", server->name, kWorkloadNames[w], r.mounts_seen);
      }
      if (!r.checks.empty()) lines += fmt::format("{}, {}: CHECK: {}\n", server->name, kWorkloadNames[w], r.checks);
    }
    if (server->peak_rss_mb > 0) lines += fmt::format("{}: daemon peak RSS (VmHWM) {:.0f} MB\n", server->name, server->peak_rss_mb);
    if (server->error) {
      lines += fmt::format("{}: FAILED: {}\n", server->name, server->error->ToString());
      ok = false;
    }
  }
  bench::PeakRssTable memory;
  for (const auto& server : servers) {
    if (server->peak_rss_mb <= 0) continue;
    bench::Samples rss;
    rss.Add(server->peak_rss_mb);
    memory.Add(fmt::format("snapshot ops ({} rounds x {} cycles x {} workloads)", options.rounds, options.cycles,
                           kWorkloadCount),
               server->name == "strata" ? "strata serve" : "containerd", rss, "VmHWM of the daemon at its stop");
  }
  fmt::print("### Cycles per second ({} cycles per batch, medians over {} rounds)\n\n{}\n"
             "### Per call (client-side mean µs per call); daemon CPU over batch + settle + Cleanup; snapshot "
             "dirs left once settled (base included) and the Cleanup that reclaims them\n\n{}\n{}\n{}",
             options.cycles, options.rounds, throughput.Render(), detail.Render(), memory.Render(), lines);
  return ok;
}

// ---- driver ----

void MarkFailed(Server& server, const Error& error) {
  std::fprintf(stderr, " FAILED\n%s\n", error.ToString().c_str());
  server.error = error.WithContext(fmt::format("{} (log: {})", server.name, server.LogTail()));
}

void RunRounds(std::vector<std::unique_ptr<Server>>& servers, const Options& options) {
  for (auto& server : servers) {
    for (int w = 0; w < kWorkloadCount && !server->error; ++w) {
      std::fprintf(stderr, "warm-up: %s, %s...", server->name.c_str(), std::string(kWorkloadNames[w]).c_str());
      if (Status warm = RunCycles(*server, static_cast<Workload>(w), -1, std::min(kWarmupCycles, options.cycles), nullptr);
          !warm) {
        MarkFailed(*server, warm.error());
      } else {
        std::fprintf(stderr, " ok\n");
      }
    }
  }
  for (int round = 0; round < options.rounds && !g_interrupted; ++round) {
    for (int k = 0; k < kWorkloadCount; ++k) {
      const auto workload = static_cast<Workload>((round + k) % kWorkloadCount);
      for (size_t j = 0; j < servers.size(); ++j) {
        Server& server = *servers[(round + j) % servers.size()];
        if (server.error || g_interrupted) continue;
        WorkloadResults& results = server.results[workload];
        std::fprintf(stderr, "round %d/%d: %s, %s...", round + 1, options.rounds, server.name.c_str(),
                     std::string(kWorkloadNames[workload]).c_str());
        if (Status ran = RunCycles(server, workload, round, options.cycles, &results); !ran) {
          MarkFailed(server, ran.error());
          continue;
        }
        std::fprintf(stderr, " %.0f cycles/s (settled in %.1f s)\n", results.cycles_per_second.values().back(),
                     results.settle_seconds.values().back());
      }
    }
  }
}

// Why strata cannot be measured, or "" when `strata serve --help` answers.
std::string StrataServeMissing(const fs::path& strata) {
  if (!fs::exists(strata)) return fmt::format("{} not found (pass --strata PATH)", strata.native());
  const std::optional<std::string> help = bench::RunCapturingStdout({strata.native(), "serve", "--help"});
  if (!help) return fmt::format("`{} serve --help` failed: this strata has no `serve` yet", strata.native());
  return {};
}

int Run(Options options) {
  const bench::MachineLoad load = bench::ReadMachineLoad();  // before we add to it
  if (::geteuid() != 0) {
    std::fprintf(stderr, "strata-bench-snapshot-ops needs root (loop mounts, containerd)\n");
    return 2;
  }
  std::string note;
  if (std::find(options.servers.begin(), options.servers.end(), "strata") != options.servers.end()) {
    note = StrataServeMissing(options.strata);
    if (!note.empty()) {
      std::fprintf(stderr, "note: %s; measuring containerd only\n", note.c_str());
      std::erase(options.servers, "strata");
    }
  }
  if (std::find(options.servers.begin(), options.servers.end(), "containerd") != options.servers.end()) {
    for (const char* tool : {"containerd", "ctr", "mkfs.ext4"}) {
      if (!bench::RunCapturingStdout({"sh", "-c", fmt::format("command -v {}", tool)})) {
        std::fprintf(stderr, "%s not found in PATH (scripts/setup installs it)\n", tool);
        return 2;
      }
    }
  }
  for (const int signal : {SIGINT, SIGTERM, SIGHUP}) {
    struct sigaction action {};
    action.sa_handler = OnSignal;
    ::sigaction(signal, &action, nullptr);
  }
  std::optional<TempDir> work = bench::CreateWorkDir("strata-bench-snapshot-ops", options.work_dir);
  if (!work) return 1;
  int status = 0;
  {
    // containerd first: strata's daemon is then forked before any gRPC thread exists.
    std::vector<std::unique_ptr<Server>> servers;
    for (const std::string_view name : {"containerd", "strata"}) {
      if (std::find(options.servers.begin(), options.servers.end(), name) == options.servers.end()) continue;
      auto server = std::make_unique<Server>();
      server->name = name;
      std::fprintf(stderr, "starting %s...", server->name.c_str());
      if (Status started = StartServer(*server, options, work->path()); !started) {
        MarkFailed(*server, started.error());
      } else {
        std::fprintf(stderr, " ok\n");
      }
      servers.push_back(std::move(server));
    }
    // Report strata first.
    std::sort(servers.begin(), servers.end(), [](const auto& a, const auto& b) { return a->name > b->name; });
    if (!g_interrupted) RunRounds(servers, options);
    for (auto& server : servers) StopServer(*server);
    if (g_interrupted) {
      std::fprintf(stderr, "interrupted; cleaned up\n");
      status = 130;
    } else {
      fmt::print("## strata-bench-snapshot-ops: Prepare -> Mounts -> Commit -> Remove over snapshots.v1 gRPC\n\n");
      fmt::print("{}; {} round(s) of {} cycles per server and workload; strata {}\n", load.Describe(), options.rounds,
                 options.cycles, options.strata.native());
      if (!note.empty()) fmt::print("note: {}\n", note);
      std::string version =
          bench::RunCapturingStdout({"containerd", "--version"}).value_or("containerd (version unknown)");
      while (!version.empty() && version.back() == '\n') version.pop_back();
      fmt::print("{}: snapshotter overlayfs, namespace bench, via its metadata store (Remove = metadata only; "
                 "its GC removes the directory later). Each server's state on a fresh loop-mounted ext4.\n\n",
                 version);
      status = Report(servers, options) ? 0 : 1;
    }
  }
  if (Status removed = bench::RemoveTree(work->path()); !removed) {
    std::fprintf(stderr, "cleanup: %s\n", removed.error().ToString().c_str());
  }
  return status;
}

}  // namespace
}  // namespace strata

int main(int argc, char** argv) { return strata::Run(strata::ParseOptions(argc, argv)); }
