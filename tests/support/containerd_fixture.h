// A real containerd 1.6 for tests, with strata as its proxy snapshotter (and optionally its
// content store): root, state, sockets and config under one directory the caller owns; cri
// and the plugins that touch system paths disabled. ctr runs against it in a namespace of
// its own (also the cgroup parent runc creates). The destructor kills and deletes leftover
// tasks, stops containerd, kills the shims of this containerd (they outlive it) and removes
// the empty cgroups of the namespace and the /run/containerd dirs the shims made.
//
// Needs root and /usr/bin/containerd, ctr, runc (MissingContainerdTool says which is absent).
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "tests/support/process.h"

namespace strata::test_support {

struct ContainerdOptions {
  // Proxy snapshotter names pointing at strata (the first is the one strata serves).
  std::vector<std::string> snapshot_proxies = {"strata"};
  // Also use strata as the content store (built-in content plugin disabled).
  bool content_proxy = false;
  // containerd's log level ("debug" lets tests read what its GC removed).
  std::string log_level = "debug";
};

struct CtrResult {
  int code = -1;
  std::string output;  // stdout + stderr
  double seconds = 0;
};

// Whether a unix socket at `path` accepts a connection now (a daemon is listening).
bool UnixSocketAccepts(const std::filesystem::path& path);

// The first of containerd, ctr, runc (and docker-registry, which the tests that use this
// need too) that is not installed, or "" when all are.
std::string MissingContainerdTool();

class ContainerdFixture {
 public:
  // Starts containerd with its files under `dir` (created), its proxy plugins at
  // `strata_socket`, and waits until `ctr version` answers (Unavailable after 60 s, with the
  // log tail). `ctr_namespace` is the namespace Ctr uses.
  static Result<std::unique_ptr<ContainerdFixture>> Start(const std::filesystem::path& dir,
                                                          const std::filesystem::path& strata_socket,
                                                          std::string ctr_namespace, ContainerdOptions options = {});
  ~ContainerdFixture();
  ContainerdFixture(const ContainerdFixture&) = delete;
  ContainerdFixture& operator=(const ContainerdFixture&) = delete;

  std::filesystem::path socket() const { return dir_ / "containerd.sock"; }
  const std::string& ctr_namespace() const { return namespace_; }
  Child& child() { return child_; }
  std::string LogTail(size_t max_bytes = 16384) const { return child_.LogTail(max_bytes); }

  // ctr against this containerd, in its namespace. Thread-safe.
  CtrResult Ctr(const std::vector<std::string>& args,
                std::chrono::milliseconds timeout = std::chrono::seconds(120)) const;
  // The same with ctr's stdout written to `file` (binary output such as `snapshots diff`);
  // the returned output is stderr only.
  CtrResult CtrToFile(const std::vector<std::string>& args, const std::filesystem::path& file) const;

 private:
  ContainerdFixture(std::filesystem::path dir, std::string ctr_namespace)
      : dir_(std::move(dir)), namespace_(std::move(ctr_namespace)) {}
  CtrResult Run(std::vector<std::string> argv, std::chrono::milliseconds timeout) const;

  std::filesystem::path dir_;
  std::string namespace_;
  bool run_containerd_existed_ = true;
  bool run_containerd_s_existed_ = true;
  Child child_;
};

}  // namespace strata::test_support
