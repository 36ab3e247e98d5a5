// strata-bench-union: the union-view workloads of shared/reference/peers.md on three union
// mount programs over the same three layer dirs, round by round:
//
//   kernel:         mount -t overlay overlay -o lowerdir=C:B:A,upperdir=U,workdir=W,index=off MNT
//   fuse-overlayfs: fuse-overlayfs -o lowerdir=C:B:A,upperdir=U,workdir=W MNT
//   strata:         strata-fsfilter -o lowerdir=C:B:A,upperdir=U,workdir=W MNT (same command line)
//
// The layers are a generated python3-like image (seeded, so the same bytes every time; built
// once and cached under --cache-dir): "base", a Debian-like root of ~4.9k entries (binaries,
// libraries and their symlinks, docs, man pages, locales, zoneinfo, dpkg info); "python", ~2k
// entries of python3.11 modules, byte code and extension modules, some into base's dirs;
// "change", a change layer with whiteouts of files and dirs, an opaque dir, replaced files,
// hard links, symlinks, user xattrs, a fifo, setuid and 0000 modes and a 32 MiB random file.
// About 7k entries merged. The cache also holds the tar of 3k files the create workload
// unpacks.
//
// Workloads, each timed on a fresh mount over a fresh upper dir:
//   walk cold / warm   lstat every entry of the view (what `find -printf '%s %m %u'` costs)
//   read cold / warm   read every regular file through (what `tar cf - . | wc -c` costs)
//   copy-up            append one byte to 500 lower .py files
//   create             `tar -xf` 3k files of usr/share into the view
//   rm -rf             remove two lower trees (usr/share/man, usr/share/zoneinfo): whiteouts
//   write + fsync      write 1 GiB to a new file, then fsync
// "cold" runs drop the page cache (sync; echo 3 > /proc/sys/vm/drop_caches) after mounting;
// the others first walk the view once untimed (read warm reads it all; copy-up reads its 500
// files, create its tar), as a container that has been running a while would have it cached. By default each
// run's upper and work dirs live on a freshly made, loop-mounted ext4 (--fresh-fs 1), so no
// program pays for the disk churn of the runs before it. Each round runs every workload on
// every program; the order of the programs rotates round by round.
//
//   strata-bench-union [--rounds 5] [--quick] [--programs kernel,fuse-overlayfs,strata]
//                      [--strata-fsfilter PATH] [--strata-options OPTS] [--cache-dir DIR] [--work-dir DIR] [--fresh-fs 1|0]
//                      [--workloads walk-cold,walk-warm,read-cold,read-warm,copy-up,create,rm,write]
// Needs root (mounts, drop_caches). Everything temporary lives in a fresh directory under
// --work-dir (default $TMPDIR or /tmp), removed at the end together with any mount left under
// it; SIGINT/SIGTERM stop the rounds and still clean up. A FUSE daemon is awaited by pid after
// its umount, and killed by pid only if a run hangs for 300 s (the workload is then reported
// as failed for that program and not run again; the others go on).
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "base/error.h"
#include "base/file.h"
#include "bench/bench_util.h"
#include "bench/registry_bench_util.h"  // RunLogged, FileTail
#include "bench/test_data.h"            // SeededRandom, WriteMixedContent, MakeDirs
#include "bench/unpack_bench_util.h"    // DropCaches, RemoveTree, ScratchFilesystem

namespace strata {
namespace {

namespace fs = std::filesystem;
using bench::kMiB;

constexpr uint64_t kTreeSeed = 0x51A7A;
constexpr std::string_view kTreeVersion = "union-tree-v1";
constexpr int kCopyUpFiles = 500;
// The create workload's tar: 100 existing lower dirs get 10 files each, 100 new dirs 20 each.
constexpr int kCreateDirs = 100;
constexpr int kCreateIntoLowerDir = 10;
constexpr int kCreateIntoNewDir = 20;
constexpr size_t kWriteMib = 1024;
constexpr size_t kQuickWriteMib = 256;
constexpr int kQuickRounds = 2;
constexpr uint64_t kScratchBytes = 4ULL << 30;  // sparse; holds the 1 GiB write
constexpr std::chrono::seconds kRunTimeLimit{300};  // one run takes seconds; beyond this it hangs
const std::array<std::string, 2> kRemovedTrees = {"usr/share/man", "usr/share/zoneinfo"};

std::atomic<bool> g_interrupted{false};
void OnSignal(int) { g_interrupted = true; }

struct Options {
  int rounds = 5;
  bool quick = false;
  std::vector<std::string> programs = {"kernel", "fuse-overlayfs", "strata"};
  std::vector<std::string> workloads;  // keys of kWorkloadKeys; empty: all
  fs::path strata_fsfilter;
  std::string strata_options;  // appended to strata-fsfilter's -o (e.g. passthrough=all)
  fs::path cache_dir = "/var/tmp/strata-bench-cache";
  fs::path work_dir;
  bool fresh_fs = true;
  size_t write_mib = kWriteMib;
};

Options ParseOptions(int argc, char** argv) {
  const bench::CommandLine command_line(
      "strata-bench-union",
      "[--rounds N] [--quick] [--programs kernel,fuse-overlayfs,strata] [--strata-fsfilter PATH] [--strata-options OPTS] "
      "[--cache-dir DIR] [--work-dir DIR] [--fresh-fs 1|0] [--workloads walk-cold,walk-warm,read-cold,read-warm,"
      "copy-up,create,rm,write]");
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
  bool rounds_set = false;
  command_line.Parse(static_cast<int>(rest.size()), rest.data(), [&](std::string_view flag, std::string_view value) {
    if (flag == "--rounds") {
      options.rounds = command_line.Positive<int>(flag, value);
      rounds_set = true;
    } else if (flag == "--programs") {
      options.programs = command_line.Choices(flag, value, {"kernel", "fuse-overlayfs", "strata"});
    } else if (flag == "--workloads") {
      options.workloads = command_line.Choices(
          flag, value, {"walk-cold", "walk-warm", "read-cold", "read-warm", "copy-up", "create", "rm", "write"});
    } else if (flag == "--strata-fsfilter") {
      options.strata_fsfilter = fs::path(value);
    } else if (flag == "--strata-options") {
      options.strata_options = std::string(value);
    } else if (flag == "--cache-dir") {
      options.cache_dir = fs::path(value);
    } else if (flag == "--work-dir") {
      options.work_dir = fs::path(value);
    } else if (flag == "--fresh-fs") {
      if (value != "0" && value != "1") return false;
      options.fresh_fs = value == "1";
    } else {
      return false;
    }
    return true;
  });
  if (options.quick) {
    if (!rounds_set) options.rounds = kQuickRounds;
    options.write_mib = kQuickWriteMib;
  }
  if (options.strata_fsfilter.empty()) {
    options.strata_fsfilter = bench::StrataNextToSelf().parent_path() / "strata-fsfilter";
  }
  return options;
}

Status Interrupted() {
  if (g_interrupted) return Fail(ErrorCode::kCanceled, "interrupted");
  return {};
}

// ---- the generated layers ----

// Writes one layer dir; every entry root-owned unless said otherwise.
class LayerWriter {
 public:
  LayerWriter(fs::path root, bench::SeededRandom& random) : root_(std::move(root)), random_(random) {}

  // A file of `size` mixed bytes (half random, half text lines: like binaries and text).
  Status File(const std::string& rel, uint64_t size, mode_t mode = 0644) {
    STRATA_RETURN_IF_ERROR(Parent(rel));
    STRATA_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(root_ / rel, O_WRONLY | O_CREAT | O_TRUNC, 0600));
    static constexpr bench::MixedContent kMix{
        .block_size = 64 * 1024, .random_share = 0.5, .lines = bench::kTextLines, .whole_blocks = false};
    STRATA_RETURN_IF_ERROR(bench::WriteMixedContent(random_, size, kMix, block_,
                                                    [&](std::string_view data) { return WriteAll(fd.get(), data); }));
    if (::fchmod(fd.get(), mode) != 0) return ErrnoFail(errno, "chmod", root_ / rel);
    ++files_;
    bytes_ += size;
    return {};
  }
  // `size` incompressible bytes.
  Status RandomFile(const std::string& rel, uint64_t size) {
    STRATA_RETURN_IF_ERROR(Parent(rel));
    STRATA_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(root_ / rel, O_WRONLY | O_CREAT | O_TRUNC, 0644));
    block_.resize(kMiB);
    for (uint64_t done = 0; done < size; done += kMiB) {
      random_.Fill(block_.data(), kMiB);
      STRATA_RETURN_IF_ERROR(
          WriteAll(fd.get(), std::string_view(block_.data(), std::min<uint64_t>(kMiB, size - done))));
    }
    ++files_;
    bytes_ += size;
    return {};
  }
  Status Dir(const std::string& rel, mode_t mode = 0755) {
    STRATA_RETURN_IF_ERROR(bench::MakeDirs(root_ / rel));
    if (::chmod((root_ / rel).c_str(), mode) != 0) return ErrnoFail(errno, "chmod", root_ / rel);
    return {};
  }
  Status Symlink(const std::string& rel, const std::string& target) {
    STRATA_RETURN_IF_ERROR(Parent(rel));
    if (::symlink(target.c_str(), (root_ / rel).c_str()) != 0) return ErrnoFail(errno, "symlink", root_ / rel);
    return {};
  }
  Status HardLink(const std::string& rel, const std::string& existing) {
    STRATA_RETURN_IF_ERROR(Parent(rel));
    if (::link((root_ / existing).c_str(), (root_ / rel).c_str()) != 0) return ErrnoFail(errno, "link", root_ / rel);
    return {};
  }
  Status Whiteout(const std::string& rel) {
    STRATA_RETURN_IF_ERROR(Parent(rel));
    if (::mknod((root_ / rel).c_str(), S_IFCHR | 0, makedev(0, 0)) != 0) return ErrnoFail(errno, "mknod", root_ / rel);
    return {};
  }
  Status Xattr(const std::string& rel, const std::string& name, const std::string& value) {
    if (::lsetxattr((root_ / rel).c_str(), name.c_str(), value.data(), value.size(), 0) != 0) {
      return ErrnoFail(errno, "setxattr " + name, root_ / rel);
    }
    return {};
  }
  Status Fifo(const std::string& rel) {
    STRATA_RETURN_IF_ERROR(Parent(rel));
    if (::mkfifo((root_ / rel).c_str(), 0644) != 0) return ErrnoFail(errno, "mkfifo", root_ / rel);
    return {};
  }
  uint64_t Size(uint64_t low, uint64_t high) { return random_.LogUniform(low, high); }
  uint64_t files() const { return files_; }
  uint64_t bytes() const { return bytes_; }

 private:
  Status Parent(const std::string& rel) {
    const fs::path parent = (root_ / rel).parent_path();
    std::error_code ec;
    if (fs::is_directory(parent, ec)) return {};
    return bench::MakeDirs(parent);  // mode from the umask (0755 usually): the tree is built once
  }
  fs::path root_;
  bench::SeededRandom& random_;
  std::string block_;
  uint64_t files_ = 0, bytes_ = 0;
};

// `count` files named prefix + index + suffix in `dir`, sizes log-uniform in [low, high).
Status Files(LayerWriter& layer, const std::string& dir, int count, std::string_view prefix, std::string_view suffix,
             uint64_t low, uint64_t high, mode_t mode = 0644, int first = 0) {
  for (int i = first; i < first + count; ++i) {
    STRATA_RETURN_IF_ERROR(Interrupted());
    STRATA_RETURN_IF_ERROR(
        layer.File(fmt::format("{}/{}{:03d}{}", dir, prefix, i, suffix), layer.Size(low, high), mode));
  }
  return {};
}

Status WriteBase(LayerWriter& b) {
  STRATA_RETURN_IF_ERROR(Files(b, "usr/bin", 300, "tool", "", 4096, kMiB, 0755));
  for (int i = 0; i < 40; ++i)
    STRATA_RETURN_IF_ERROR(b.Symlink(fmt::format("usr/bin/alias{:03d}", i), fmt::format("tool{:03d}", i * 7)));
  STRATA_RETURN_IF_ERROR(Files(b, "usr/sbin", 80, "daemon", "", 4096, 512 * 1024, 0755));
  STRATA_RETURN_IF_ERROR(Files(b, "usr/lib/x86_64-linux-gnu", 350, "lib", ".so.1", 16 * 1024, kMiB));
  for (int i = 0; i < 200; ++i) {
    STRATA_RETURN_IF_ERROR(
        b.Symlink(fmt::format("usr/lib/x86_64-linux-gnu/lib{:03d}.so", i), fmt::format("lib{:03d}.so.1", i)));
  }
  STRATA_RETURN_IF_ERROR(Files(b, "usr/lib/x86_64-linux-gnu/gconv", 250, "CP", ".so", 4096, 64 * 1024));
  for (int p = 0; p < 180; ++p) {
    const std::string dir = fmt::format("usr/share/doc/pkg{:03d}", p);
    STRATA_RETURN_IF_ERROR(b.File(dir + "/copyright", b.Size(1024, 8192)));
    STRATA_RETURN_IF_ERROR(b.File(dir + "/changelog.Debian.gz", b.Size(1024, 32 * 1024)));
  }
  for (int s = 1; s <= 3; ++s)
    STRATA_RETURN_IF_ERROR(
        Files(b, fmt::format("usr/share/man/man{}", s * 3 - 2), 250, "page", ".gz", 1024, 16 * 1024));
  for (int l = 0; l < 60; ++l) {
    STRATA_RETURN_IF_ERROR(
        Files(b, fmt::format("usr/share/locale/l{:02d}/LC_MESSAGES", l), 8, "domain", ".mo", 2048, 64 * 1024));
  }
  for (int r = 0; r < 12; ++r)
    STRATA_RETURN_IF_ERROR(Files(b, fmt::format("usr/share/zoneinfo/Region{:02d}", r), 50, "City", "", 100, 4096));
  for (int m = 0; m < 20; ++m)
    STRATA_RETURN_IF_ERROR(
        Files(b, fmt::format("usr/share/perl5/Mod{:02d}/Sub", m), 15, "Part", ".pm", 1024, 32 * 1024));
  STRATA_RETURN_IF_ERROR(Files(b, "etc", 40, "conf", "", 100, 8192));
  for (int d = 0; d < 10; ++d)
    STRATA_RETURN_IF_ERROR(Files(b, fmt::format("etc/d{:02d}.d", d), 11, "item", ".conf", 100, 8192));
  STRATA_RETURN_IF_ERROR(Files(b, "var/lib/dpkg/info", 700, "pkg", ".list", 100, 16 * 1024));
  STRATA_RETURN_IF_ERROR(b.Dir("tmp", 01777));
  return b.Dir("root", 0700);
}

Status WritePython(LayerWriter& p) {
  for (int k = 0; k < 40; ++k) {
    const std::string pkg = fmt::format("usr/lib/python3.11/pkg{:02d}", k);
    STRATA_RETURN_IF_ERROR(Files(p, pkg, 12, "mod", ".py", 512, 64 * 1024));
    STRATA_RETURN_IF_ERROR(Files(p, pkg + "/__pycache__", 12, "mod", ".cpython-311.pyc", 512, 64 * 1024));
    STRATA_RETURN_IF_ERROR(Files(p, pkg + "/sub1", 10, "mod", ".py", 512, 64 * 1024));
    STRATA_RETURN_IF_ERROR(Files(p, pkg + "/sub2", 10, "mod", ".py", 512, 64 * 1024));
  }
  STRATA_RETURN_IF_ERROR(
      Files(p, "usr/lib/python3.11/lib-dynload", 60, "ext", ".cpython-311-x86_64-linux-gnu.so", 16 * 1024, 512 * 1024));
  STRATA_RETURN_IF_ERROR(p.File("usr/bin/python3.11", 6 * kMiB, 0755));
  STRATA_RETURN_IF_ERROR(p.Symlink("usr/bin/python3", "python3.11"));
  for (int d = 0; d < 5; ++d) {
    STRATA_RETURN_IF_ERROR(Files(p, fmt::format("usr/share/doc/python3.11-part{}", d), 3, "doc", "", 1024, 16 * 1024));
  }
  STRATA_RETURN_IF_ERROR(Files(p, "var/lib/dpkg/info", 60, "python", ".list", 100, 16 * 1024));
  return Files(p, "usr/share/man/man1", 10, "python", ".1.gz", 1024, 16 * 1024);
}

Status WriteChange(LayerWriter& c) {
  for (int i = 0; i < 40; ++i)
    STRATA_RETURN_IF_ERROR(c.Whiteout(fmt::format("var/lib/dpkg/info/pkg{:03d}.list", i * 17)));
  STRATA_RETURN_IF_ERROR(c.Whiteout("usr/share/locale/l00"));
  STRATA_RETURN_IF_ERROR(c.Whiteout("usr/share/locale/l01"));
  STRATA_RETURN_IF_ERROR(c.Whiteout("usr/lib/python3.11/pkg39"));
  STRATA_RETURN_IF_ERROR(c.Dir("etc/d00.d"));
  STRATA_RETURN_IF_ERROR(c.Xattr("etc/d00.d", "trusted.overlay.opaque", "y"));
  STRATA_RETURN_IF_ERROR(Files(c, "etc/d00.d", 3, "replaced", ".conf", 100, 4096));
  for (int i = 0; i < 30; ++i)
    STRATA_RETURN_IF_ERROR(c.File(fmt::format("usr/bin/tool{:03d}", i * 9), c.Size(4096, 256 * 1024), 0755));
  for (int i = 0; i < 10; ++i) {
    STRATA_RETURN_IF_ERROR(c.File(fmt::format("opt/app/lib/data{:02d}", i), c.Size(1024, 64 * 1024)));
    STRATA_RETURN_IF_ERROR(
        c.HardLink(fmt::format("opt/app/share/data{:02d}", i), fmt::format("opt/app/lib/data{:02d}", i)));
    STRATA_RETURN_IF_ERROR(c.Xattr(fmt::format("opt/app/lib/data{:02d}", i), "user.note", fmt::format("item {}", i)));
  }
  for (int i = 0; i < 20; ++i) {
    STRATA_RETURN_IF_ERROR(
        c.Symlink(fmt::format("opt/app/bin/link{:02d}", i), fmt::format("../lib/data{:02d}", i % 10)));
  }
  STRATA_RETURN_IF_ERROR(c.Fifo("opt/app/run/control"));
  STRATA_RETURN_IF_ERROR(c.File("opt/app/bin/helper", 8192, 04755));
  STRATA_RETURN_IF_ERROR(c.File("opt/app/secret", 100, 0000));
  return c.RandomFile("opt/app/data/blob.bin", 32 * kMiB);
}

// The 3k files the create workload unpacks: 1000 into base's usr/share/doc/pkgNNN dirs (so
// their dirs are copied up), 2000 into new dirs under usr/share/newpkg.
Status WriteCreateSource(LayerWriter& t) {
  for (int p = 0; p < kCreateDirs; ++p) {
    STRATA_RETURN_IF_ERROR(
        Files(t, fmt::format("usr/share/doc/pkg{:03d}", p), kCreateIntoLowerDir, "extra", "", 256, 64 * 1024));
  }
  for (int d = 0; d < kCreateDirs; ++d) {
    STRATA_RETURN_IF_ERROR(
        Files(t, fmt::format("usr/share/newpkg/d{:03d}", d), kCreateIntoNewDir, "file", ".dat", 256, 64 * 1024));
  }
  return {};
}

struct Tree {
  fs::path dir;  // <cache>/<kTreeVersion>
  fs::path base() const { return dir / "base"; }
  fs::path python() const { return dir / "python"; }
  fs::path change() const { return dir / "change"; }
  fs::path create_tar() const { return dir / "create.tar"; }
  std::string summary;  // what the generator made
  // lowerdir= value, topmost first.
  std::string Lowerdir() const {
    return fmt::format("{}:{}:{}", change().native(), python().native(), base().native());
  }
};

// The cached tree, generated (into a temp dir, then renamed) when missing.
Result<Tree> PrepareTree(const Options& options, const fs::path& log) {
  Tree tree{.dir = options.cache_dir / kTreeVersion};
  if (Result<std::string> summary = ReadFile(tree.dir / "summary.txt")) {
    tree.summary = *summary;
    return tree;
  }
  STRATA_RETURN_IF_ERROR(bench::MakeDirs(options.cache_dir));
  const fs::path build = options.cache_dir / fmt::format(".{}-{}", kTreeVersion, ::getpid());
  STRATA_RETURN_IF_ERROR(bench::RemoveTree(build));
  std::fprintf(stderr, "generating the 3-layer tree (once; cached as %s)...", tree.dir.c_str());
  bench::SeededRandom random(kTreeSeed);
  std::string summary;
  auto write_layer = [&](std::string_view name, Status (*write)(LayerWriter&)) -> Status {
    LayerWriter layer(build / name, random);
    STRATA_RETURN_IF_ERROR(bench::MakeDirs(build / name));
    STRATA_RETURN_IF_ERROR(write(layer));
    summary += fmt::format("{}{}: {} files, {:.0f} MB", summary.empty() ? "" : "; ", name, layer.files(),
                           static_cast<double>(layer.bytes()) / 1e6);
    return {};
  };
  Status made = write_layer("base", &WriteBase);
  if (made) made = write_layer("python", &WritePython);
  if (made) made = write_layer("change", &WriteChange);
  if (made) made = write_layer("create-src", &WriteCreateSource);
  if (made && !bench::RunLogged({"tar", "--numeric-owner", "-cf", (build / "create.tar").native(), "-C",
                                 (build / "create-src").native(), "usr"},
                                log)) {
    made = Fail(ErrorCode::kInternal, "tar -cf create.tar failed: {}", bench::FileTail(log));
  }
  if (made) made = bench::RemoveTree(build / "create-src");
  if (made) made = AtomicWriteFile(build / "summary.txt", summary);
  if (made) {
    std::error_code ec;
    fs::rename(build, tree.dir, ec);
    if (ec) made = Fail(ErrorCode::kInternal, "rename {} -> {}: {}", build.native(), tree.dir.native(), ec.message());
  }
  if (!made) {
    (void)bench::RemoveTree(build);
    return Fail(made.error());
  }
  std::fprintf(stderr, " done\n");
  tree.summary = summary;
  return tree;
}

// ---- walking and reading a view ----

struct WalkTotals {
  uint64_t entries = 0;     // everything below the root
  uint64_t file_bytes = 0;  // st_size of regular files
  uint64_t bytes_read = 0;  // when reading
};

// lstat (fstatat AT_SYMLINK_NOFOLLOW) of every entry under the open dir `fd`; with `read`,
// every regular file is also read through in 1 MiB reads.
Status WalkDir(int fd, const fs::path& path, bool read, std::string& buffer, WalkTotals& totals) {
  STRATA_RETURN_IF_ERROR(Interrupted());
  DIR* dir = ::fdopendir(fd);
  if (dir == nullptr) {
    ::close(fd);
    return ErrnoFail(errno, "fdopendir", path);
  }
  std::unique_ptr<DIR, int (*)(DIR*)> owned(dir, ::closedir);
  for (errno = 0; dirent* entry = ::readdir(dir); errno = 0) {
    const std::string_view name = entry->d_name;
    if (name == "." || name == "..") continue;
    struct stat st;
    if (::fstatat(::dirfd(dir), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      return ErrnoFail(errno, "lstat", path / name);
    }
    ++totals.entries;
    if (S_ISREG(st.st_mode)) {
      totals.file_bytes += static_cast<uint64_t>(st.st_size);
      if (read) {
        UniqueFd file(::openat(::dirfd(dir), entry->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
        if (!file) return ErrnoFail(errno, "open", path / name);
        for (;;) {
          const ssize_t n = ::read(file.get(), buffer.data(), buffer.size());
          if (n < 0 && errno == EINTR) continue;
          if (n < 0) return ErrnoFail(errno, "read", path / name);
          if (n == 0) break;
          totals.bytes_read += static_cast<uint64_t>(n);
        }
      }
    } else if (S_ISDIR(st.st_mode)) {
      const int child = ::openat(::dirfd(dir), entry->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
      if (child < 0) return ErrnoFail(errno, "open", path / name);
      STRATA_RETURN_IF_ERROR(WalkDir(child, path / name, read, buffer, totals));
    }
  }
  if (errno != 0) return ErrnoFail(errno, "readdir", path);
  return {};
}

Result<WalkTotals> Walk(const fs::path& root, bool read) {
  const int fd = ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoFail(errno, "open", root);
  std::string buffer(read ? kMiB : 0, '\0');
  WalkTotals totals;
  STRATA_RETURN_IF_ERROR(WalkDir(fd, root, read, buffer, totals));
  return totals;
}

// The 500 lower .py files copy-up appends to: every other module of the python layer (not
// under __pycache__), in name order, spread over all its packages.
std::vector<std::string> CopyUpFiles(const Tree& tree) {
  std::vector<std::string> modules;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(tree.python(), ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    const std::string rel = fs::relative(it->path(), tree.python()).native();
    if (it->is_regular_file() && rel.ends_with(".py") && rel.find("__pycache__") == std::string::npos &&
        rel.find("/pkg39/") == std::string::npos) {  // pkg39 is whited out by the change layer
      modules.push_back(rel);
    }
  }
  std::sort(modules.begin(), modules.end());
  std::vector<std::string> chosen;
  for (size_t i = 0; i < modules.size() && chosen.size() < kCopyUpFiles; i += 2) chosen.push_back(modules[i]);
  return chosen;
}

// ---- the mount programs ----

// Pids of processes whose argv holds `mountpoint` as a whole argument: the FUSE program's
// daemon, which left our process tree when it daemonised. The mount point is in this run's
// fresh work dir, so no unrelated process names it.
std::vector<pid_t> DaemonPids(const fs::path& mountpoint) {
  std::vector<pid_t> pids;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().native();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    Result<std::string> cmdline = ReadFile(entry.path() / "cmdline");
    if (!cmdline) continue;
    for (size_t pos = 0; pos < cmdline->size();) {
      const std::string arg(cmdline->c_str() + pos);
      pos += arg.size() + 1;
      if (arg == mountpoint.native()) {
        pids.push_back(std::stoi(name));
        break;
      }
    }
  }
  return pids;
}

// Gone, or a zombie left to its new parent.
bool Exited(pid_t pid) {
  Result<std::string> stat = ReadFile(fmt::format("/proc/{}/stat", pid));
  if (!stat || stat->empty()) return true;
  const size_t paren = stat->rfind(')');
  return paren != std::string::npos && paren + 2 < stat->size() && (*stat)[paren + 2] == 'Z';
}

struct Program {
  std::string key;    // as in --programs
  std::string title;  // for the report
  fs::path binary;    // FUSE programs only
  std::string extra_options;  // appended to -o
};

// One mounted view; unmounted (and its daemon awaited) on destruction.
class UnionMount {
 public:
  static Result<std::unique_ptr<UnionMount>> Mount(const Program& program, const Tree& tree, const fs::path& upper,
                                                   const fs::path& work, const fs::path& mountpoint,
                                                   const fs::path& log) {
    const std::string options =
        fmt::format("lowerdir={},upperdir={},workdir={}", tree.Lowerdir(), upper.native(), work.native());
    std::unique_ptr<UnionMount> mount(new UnionMount(mountpoint));
    if (program.key == "kernel") {
      // containerd's options: index=off (redirect_dir and metacopy are off by default).
      const std::string data = options + ",index=off";
      if (::mount("overlay", mountpoint.c_str(), "overlay", 0, data.c_str()) != 0) {
        return ErrnoFail(errno, "mount -t overlay", mountpoint);
      }
    } else {
      // The program daemonises once the mount is up; its first process exits then.
      const std::string all_options = program.extra_options.empty() ? options : options + "," + program.extra_options;
      if (!bench::RunLogged({program.binary.native(), "-o", all_options, mountpoint.native()}, log)) {
        return Fail(ErrorCode::kInternal, "{} -o {} {} failed: {}", program.binary.native(), options,
                    mountpoint.native(), bench::FileTail(log));
      }
      mount->daemon_pids_ = DaemonPids(mountpoint);
    }
    mount->mounted_ = true;
    return mount;
  }

  ~UnionMount() { (void)Unmount(); }
  UnionMount(const UnionMount&) = delete;
  UnionMount& operator=(const UnionMount&) = delete;

  const std::vector<pid_t>& daemon_pids() const { return daemon_pids_; }
  // The FUSE daemon's peak RSS (VmHWM, summed over its processes) as Unmount found it just
  // before unmounting; 0 for the kernel or before Unmount.
  uint64_t daemon_peak_rss_kib() const { return daemon_peak_rss_kib_; }

  // umount (lazily if still busy after 2 s); then waits up to 10 s for the daemon to exit.
  Status Unmount() {
    if (!mounted_) return {};
    mounted_ = false;
    for (const pid_t pid : daemon_pids_) daemon_peak_rss_kib_ += bench::VmHwmKib(pid);
    Status status;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (::umount2(mountpoint_.c_str(), 0) != 0) {
      if (errno != EBUSY || std::chrono::steady_clock::now() > deadline) {
        status = ErrnoFail(errno, "umount", mountpoint_);
        ::umount2(mountpoint_.c_str(), MNT_DETACH);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    for (const pid_t pid : daemon_pids_) {
      const auto stop_by = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (!Exited(pid) && std::chrono::steady_clock::now() < stop_by) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      if (!Exited(pid) && status) {
        status =
            Fail(ErrorCode::kInternal, "daemon pid {} still running 10 s after umount {}", pid, mountpoint_.native());
      }
    }
    return status;
  }

 private:
  explicit UnionMount(fs::path mountpoint) : mountpoint_(std::move(mountpoint)) {}
  fs::path mountpoint_;
  std::vector<pid_t> daemon_pids_;
  uint64_t daemon_peak_rss_kib_ = 0;
  bool mounted_ = false;
};

// Kills the FUSE daemon (by pid) if a run has not finished within `limit`: a hung request
// would otherwise stop the benchmark for good. Killing the daemon aborts the connection, so
// blocked calls fail (ENOTCONN) and the run is reported as failed. Joined on destruction.
class RunWatchdog {
 public:
  RunWatchdog(std::vector<pid_t> pids, std::chrono::seconds limit)
      : thread_([pids = std::move(pids), limit, this](std::stop_token stop) {
          std::unique_lock lock(mutex_);
          wake_.wait_for(lock, stop, limit, [] { return false; });
          if (stop.stop_requested()) return;
          fired_ = true;
          for (const pid_t pid : pids) ::kill(pid, SIGKILL);
        }) {}
  bool fired() const { return fired_; }

 private:
  std::mutex mutex_;
  std::condition_variable_any wake_;
  std::atomic<bool> fired_{false};
  std::jthread thread_;  // last: starts once the members it uses exist
};

// ---- workloads ----

enum Workload { kWalkCold = 0, kWalkWarm, kReadCold, kReadWarm, kCopyUp, kCreate, kRmRf, kWrite, kWorkloadCount };
constexpr std::array<std::string_view, kWorkloadCount> kWorkloadNames = {
    "walk, cold cache",
    "walk, warm",
    "read all files, cold",
    "read all files, warm",
    "copy-up: append a byte to 500 lower .py files",
    "create: untar 3k files into usr/share",
    "rm -rf two lower trees (whiteouts)",
    "write 1 GiB + fsync"};
// What --workloads calls them.
constexpr std::array<std::string_view, kWorkloadCount> kWorkloadKeys = {
    "walk-cold", "walk-warm", "read-cold", "read-warm", "copy-up", "create", "rm", "write"};

bool Selected(const Options& options, int workload) {
  return options.workloads.empty() ||
         std::ranges::find(options.workloads, kWorkloadKeys[workload]) != options.workloads.end();
}

std::string WorkloadName(Workload workload, const Options& options) {
  if (workload == kWrite && options.write_mib != kWriteMib) {
    return fmt::format("write {} MiB + fsync", options.write_mib);
  }
  return std::string(kWorkloadNames[workload]);
}

bool IsCold(Workload workload) { return workload == kWalkCold || workload == kReadCold; }

struct Bench {
  Options options;
  Tree tree;
  std::vector<std::string> copy_up_files;
  fs::path work;
  fs::path log;
  std::string write_buffer;
  int run_number = 0;
};

// What a run saw, for checking the programs agree.
struct RunResult {
  double seconds = 0;
  std::string check;  // e.g. "6987 entries, 201.3 MB": equal across programs
  double daemon_peak_rss_mb = 0;  // FUSE programs: the daemon's VmHWM before umount
};

// The untimed preparation of a warm run.
Status Prepare(Bench& bench, Workload workload, const fs::path& view) {
  if (IsCold(workload)) return {};
  STRATA_RETURN_IF_ERROR(Walk(view, /*read=*/workload == kReadWarm));
  if (workload == kCopyUp) {
    for (const std::string& rel : bench.copy_up_files) STRATA_RETURN_IF_ERROR(ReadFile(view / rel));
  }
  if (workload == kCreate) STRATA_RETURN_IF_ERROR(ReadFile(bench.tree.create_tar()));
  return {};
}

Result<std::string> Body(Bench& bench, Workload workload, const fs::path& view) {
  switch (workload) {
    case kWalkCold:
    case kWalkWarm: {
      STRATA_ASSIGN_OR_RETURN(const WalkTotals totals, Walk(view, false));
      return fmt::format("{} entries, {:.1f} MB in files", totals.entries,
                         static_cast<double>(totals.file_bytes) / 1e6);
    }
    case kReadCold:
    case kReadWarm: {
      STRATA_ASSIGN_OR_RETURN(const WalkTotals totals, Walk(view, true));
      return fmt::format("{} entries, {:.1f} MB read", totals.entries, static_cast<double>(totals.bytes_read) / 1e6);
    }
    case kCopyUp: {
      for (const std::string& rel : bench.copy_up_files) {
        STRATA_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(view / rel, O_WRONLY | O_APPEND));
        STRATA_RETURN_IF_ERROR(WriteAll(fd.get(), "\n"));
      }
      return fmt::format("{} files appended to", bench.copy_up_files.size());
    }
    case kCreate: {
      if (!bench::RunLogged({"tar", "-xf", bench.tree.create_tar().native(), "-C", view.native()}, bench.log)) {
        return Fail(ErrorCode::kInternal, "tar -xf into {} failed: {}", view.native(), bench::FileTail(bench.log));
      }
      return std::string("untarred");
    }
    case kRmRf: {
      uint64_t removed = 0;
      for (const std::string& rel : kRemovedTrees) {
        std::error_code ec;
        removed += fs::remove_all(view / rel, ec);
        if (ec) return Fail(ErrorCode::kInternal, "rm -rf {}: {}", (view / rel).native(), ec.message());
      }
      return fmt::format("{} entries removed", removed);
    }
    case kWrite: {
      STRATA_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(view / "written.bin", O_WRONLY | O_CREAT | O_EXCL));
      for (size_t i = 0; i < bench.options.write_mib; ++i) {
        STRATA_RETURN_IF_ERROR(Interrupted());
        STRATA_RETURN_IF_ERROR(WriteAll(fd.get(), bench.write_buffer));
      }
      if (::fsync(fd.get()) != 0) return ErrnoFail(errno, "fsync", view / "written.bin");
      return fmt::format("{} MiB written", bench.options.write_mib);
    }
    case kWorkloadCount:
      break;
  }
  return Fail(ErrorCode::kInternal, "unknown workload");
}

// One timed run on a fresh upper dir and a fresh mount.
Result<RunResult> RunOnce(Bench& bench, const Program& program, Workload workload) {
  const fs::path dir = bench.work / fmt::format("run-{}", ++bench.run_number);
  STRATA_RETURN_IF_ERROR(bench::MakeDirs(dir / "mnt"));
  std::unique_ptr<bench::ScratchFilesystem> scratch;
  fs::path state = dir / "state";
  if (bench.options.fresh_fs) {
    STRATA_ASSIGN_OR_RETURN(scratch, bench::ScratchFilesystem::Create(dir / "scratch", kScratchBytes, bench.log));
    state = scratch->mountpoint();
  }
  STRATA_RETURN_IF_ERROR(bench::MakeDirs(state / "upper"));
  STRATA_RETURN_IF_ERROR(bench::MakeDirs(state / "work"));
  RunResult result;
  {
    STRATA_ASSIGN_OR_RETURN(
        std::unique_ptr<UnionMount> mount,
        UnionMount::Mount(program, bench.tree, state / "upper", state / "work", dir / "mnt", bench.log));
    Result<std::string> check;
    {
      RunWatchdog watchdog(mount->daemon_pids(), kRunTimeLimit);
      STRATA_RETURN_IF_ERROR(Prepare(bench, workload, dir / "mnt"));
      if (IsCold(workload)) STRATA_RETURN_IF_ERROR(bench::DropCaches());
      result.seconds = bench::TimeSeconds([&] { check = Body(bench, workload, dir / "mnt"); });
      if (watchdog.fired()) {
        return Fail(ErrorCode::kUnavailable, "{} hung: no end after {} s; its daemon was killed", program.title,
                    kRunTimeLimit.count());
      }
    }
    if (!check) return Fail(check.error());
    result.check = *check;
    STRATA_RETURN_IF_ERROR(mount->Unmount());
    result.daemon_peak_rss_mb = bench::KibToMb(mount->daemon_peak_rss_kib());
  }
  scratch.reset();
  STRATA_RETURN_IF_ERROR(bench::RemoveTree(dir));
  return result;
}

// ---- report ----

struct ProgramResults {
  Program program;
  std::array<bench::Samples, kWorkloadCount> seconds;
  std::array<std::string, kWorkloadCount> checks;
  std::array<bench::Samples, kWorkloadCount> daemon_rss_mb;  // FUSE programs only
  // A workload that failed once is not run again for this program; the others go on.
  std::array<std::optional<Error>, kWorkloadCount> errors;
};

// "median (min-max)", plus "[n of N runs]" when some runs failed.
std::string MedianAndRange(const bench::Samples& samples, int rounds) {
  if (samples.count() == 0) return "n/a";
  const int decimals = samples.Median() < 1 ? 3 : 2;
  std::string out = fmt::format("{:.{}f} ({:.{}f}-{:.{}f})", samples.Median(), decimals, samples.Min(), decimals,
                                samples.Max(), decimals);
  if (static_cast<int>(samples.count()) < rounds) out += fmt::format(" [{} of {} runs]", samples.count(), rounds);
  return out;
}

std::string Ratio(const bench::Samples& a, const bench::Samples& b) {
  if (a.count() == 0 || b.count() == 0) return "n/a";
  return fmt::format("{:.2f}x", a.Median() / b.Median());
}

void Report(const std::vector<ProgramResults>& results, const Bench& bench) {
  using Align = bench::MarkdownTable::Align;
  static const bench::Samples kNone;
  auto samples = [&](std::string_view key, int w) -> const bench::Samples& {
    for (const auto& r : results) {
      if (r.program.key == key) return r.seconds[w];
    }
    return kNone;
  };
  std::vector<bench::MarkdownTable::Column> columns = {{"workload", Align::kLeft}};
  for (const auto& r : results) columns.push_back({r.program.title + " s, median (min-max)"});
  columns.push_back({"strata/fuse-overlayfs"});
  columns.push_back({"strata/kernel"});
  columns.push_back({"fuse-overlayfs/kernel"});
  bench::MarkdownTable table(columns);
  std::string checks;
  for (int w = 0; w < kWorkloadCount; ++w) {
    if (!Selected(bench.options, w)) continue;
    std::vector<std::string> row = {WorkloadName(static_cast<Workload>(w), bench.options)};
    for (const auto& r : results) row.push_back(MedianAndRange(r.seconds[w], bench.options.rounds));
    row.push_back(Ratio(samples("strata", w), samples("fuse-overlayfs", w)));
    row.push_back(Ratio(samples("strata", w), samples("kernel", w)));
    row.push_back(Ratio(samples("fuse-overlayfs", w), samples("kernel", w)));
    table.AddRow(std::move(row));
    std::string first;
    for (const auto& r : results) {
      if (r.checks[w].empty()) continue;
      if (first.empty()) first = r.checks[w];
      if (r.checks[w] != first) {
        checks += fmt::format("CHECK: {}: the programs disagree:", kWorkloadNames[w]);
        for (const auto& s : results) checks += fmt::format(" {}: {};", s.program.title, s.checks[w]);
        checks += "\n";
        break;
      }
    }
  }
  fmt::print("{}\n", table.Render());
  for (int w : {kWalkCold, kReadCold, kCopyUp, kRmRf}) {
    for (const auto& r : results) {
      if (!r.checks[w].empty()) {
        fmt::print("{}: {}\n", kWorkloadNames[w], r.checks[w]);
        break;
      }
    }
  }
  fmt::print("{}", checks);
  bench::PeakRssTable memory;
  for (int w = 0; w < kWorkloadCount; ++w) {
    for (const auto& r : results) {
      memory.Add("union view: " + WorkloadName(static_cast<Workload>(w), bench.options), r.program.title,
                 r.daemon_rss_mb[w], "VmHWM of the FUSE daemon before umount");
    }
  }
  if (const std::string rendered = memory.Render(); !rendered.empty()) fmt::print("\n{}\n", rendered);
  for (const auto& r : results) {
    for (int w = 0; w < kWorkloadCount; ++w) {
      if (r.errors[w]) fmt::print("{}: {}: FAILED: {}\n", r.program.title, kWorkloadNames[w], r.errors[w]->ToString());
    }
  }
}

// ---- driver ----

void RunRounds(Bench& bench, std::vector<ProgramResults>& results) {
  for (int round = 0; round < bench.options.rounds && !g_interrupted; ++round) {
    for (int w = 0; w < kWorkloadCount && !g_interrupted; ++w) {
      if (!Selected(bench.options, w)) continue;
      for (size_t j = 0; j < results.size() && !g_interrupted; ++j) {
        ProgramResults& r = results[(round + j) % results.size()];
        if (r.errors[w]) continue;
        std::fprintf(stderr, "round %d/%d: %s, %s...", round + 1, bench.options.rounds, r.program.title.c_str(),
                     WorkloadName(static_cast<Workload>(w), bench.options).c_str());
        Result<RunResult> run = RunOnce(bench, r.program, static_cast<Workload>(w));
        if (!run) {
          std::fprintf(stderr, " FAILED\n%s\nlog tail:\n%s\n", run.error().ToString().c_str(),
                       bench::FileTail(bench.log, 1024).c_str());
          if (!g_interrupted) r.errors[w] = run.error();
          continue;
        }
        r.seconds[w].Add(run->seconds);
        r.checks[w] = run->check;
        if (run->daemon_peak_rss_mb > 0) r.daemon_rss_mb[w].Add(run->daemon_peak_rss_mb);
        std::fprintf(stderr, " %.3f s (%s)\n", run->seconds, run->check.c_str());
      }
    }
  }
}

std::string FirstLine(std::string text) {
  text = text.substr(0, text.find('\n'));
  return text;
}

int Run(Options options) {
  const bench::MachineLoad load = bench::ReadMachineLoad();  // before we add to it
  if (::geteuid() != 0) {
    std::fprintf(stderr, "strata-bench-union needs root (mounts, drop_caches)\n");
    return 2;
  }
  std::vector<Program> programs;
  std::string note;
  for (const std::string& key : options.programs) {
    if (key == "kernel") {
      programs.push_back({"kernel", "kernel overlayfs", {}});
    } else if (key == "fuse-overlayfs") {
      const std::optional<std::string> path = bench::RunCapturingStdout({"sh", "-c", "command -v fuse-overlayfs"});
      if (!path) {
        std::fprintf(stderr, "fuse-overlayfs not found in PATH (scripts/setup installs it)\n");
        return 2;
      }
      programs.push_back({"fuse-overlayfs", "fuse-overlayfs", FirstLine(*path)});
    } else if (!fs::exists(options.strata_fsfilter)) {
      note = fmt::format("{} not found (not built yet, or pass --strata-fsfilter PATH): strata not measured",
                         options.strata_fsfilter.native());
      std::fprintf(stderr, "note: %s\n", note.c_str());
    } else {
      programs.push_back({"strata",
                          options.strata_options.empty() ? "strata-fsfilter" : "strata-fsfilter -o " + options.strata_options,
                          options.strata_fsfilter, options.strata_options});
    }
  }
  if (programs.empty()) {
    std::fprintf(stderr, "no program to measure\n");
    return 2;
  }
  for (const int signal : {SIGINT, SIGTERM, SIGHUP}) {
    struct sigaction action {};
    action.sa_handler = OnSignal;
    ::sigaction(signal, &action, nullptr);
  }
  std::optional<TempDir> work = bench::CreateWorkDir("strata-bench-union", options.work_dir);
  if (!work) return 1;
  int status = 0;
  {
    Bench bench{.options = options, .work = work->path(), .log = work->path() / "log.txt"};
    Result<Tree> tree = PrepareTree(options, bench.log);
    if (!tree) {
      std::fprintf(stderr, "\n%s\n", tree.error().ToString().c_str());
      status = g_interrupted ? 130 : 1;
    } else {
      bench.tree = *tree;
      bench.copy_up_files = CopyUpFiles(bench.tree);
      bench.write_buffer = bench::MakeRandomBuffer(kMiB);
      std::vector<ProgramResults> results;
      for (const Program& program : programs) results.push_back({.program = program});
      RunRounds(bench, results);
      if (g_interrupted) {
        std::fprintf(stderr, "interrupted; cleaning up\n");
        status = 130;
      } else {
        fmt::print("## strata-bench-union: union view workloads over a generated 3-layer python3-like tree\n\n");
        fmt::print("{}; {} round(s), a fresh mount over a fresh upper dir per run{}; tree {} ({})\n", load.Describe(),
                   options.rounds, options.fresh_fs ? " on a freshly made loop-mounted ext4" : " in the work dir",
                   bench.tree.dir.native(), bench.tree.summary);
        std::string version =
            bench::RunCapturingStdout({"sh", "-c", "fuse-overlayfs --version 2>/dev/null | grep -i fuse-overlayfs"})
                .value_or("");
        fmt::print(
            "programs: {}; kernel with index=off; fuse programs with just -o lowerdir=,upperdir=,workdir=\n", [&] {
              std::string out;
              for (const Program& p : programs)
                out += (out.empty() ? "" : ", ") + p.title + (p.binary.empty() ? "" : " (" + p.binary.native() + ")");
              return out;
            }());
        if (!version.empty()) fmt::print("{}\n", FirstLine(version));
        if (!note.empty()) fmt::print("note: {}\n", note);
        fmt::print("\n");
        Report(results, bench);
        for (const auto& r : results) {
          for (const auto& error : r.errors) {
            if (error) status = 1;
          }
        }
      }
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
