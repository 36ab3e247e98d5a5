// Behaviour parity of a union-filesystem mount program with kernel overlayfs (issue 7's
// acceptance suite). Three lower layers in overlay form (whiteouts = 0/0 char devices,
// opaque dirs = trusted.overlay.opaque=y) are built twice, identically; one copy is mounted
// with kernel overlayfs, the other with the program under test (`strata-fsfilter`, or
// `fuse-overlayfs` as the reference peer), both with the same -o lowerdir=,upperdir=,workdir=
// command line. The same scripted scenario runs on each mount; then
//   - every step's outcome (errno, and the state of the path it touched) must match,
//   - the merged views must be equal (mounted), before and after the scenario,
//   - the upper dirs must be equal (unmounted), opaque markers included,
//   - the lower layers must be untouched, and the program's daemon must exit on umount.
// A program may differ from the kernel only where its entry in Programs() lists the
// difference with a one-line reason; strata-fsfilter has no such entries.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <regex>
#include <set>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "base/error.h"
#include "base/file.h"
#include "base/mounts.h"
#include "tests/support/process.h"
#include "tests/support/root.h"
#include "tests/support/tree_compare.h"

#ifndef STRATA_FSFILTER_BIN
#error "STRATA_FSFILTER_BIN must name the strata-fsfilter binary (tests/fsfilter/CMakeLists.txt)"
#endif

namespace strata {
namespace {

namespace fs = std::filesystem;
using test_support::TreeEntry;

constexpr size_t kMiB = 1024 * 1024;
constexpr int kManyFiles = 5000;  // the lower 5k-file dir and the fresh one
constexpr size_t kLowerBigBytes = 16 * kMiB;
constexpr size_t kNewBigBytes = 64 * kMiB;
// A whole test takes ~5 s with fuse-overlayfs; far beyond this, the program is hung.
constexpr std::chrono::seconds kTestTimeLimit{120};

// ---- the programs under test ----

// A difference from kernel overlayfs a program may show in a tree comparison: a line of
// test_support::CompareEntries' output (A = kernel, B = the program) matching `line`.
struct AllowedTreeDifference {
  std::string view;  // "merged" (mounted, after the scenario) or "upper" (unmounted)
  std::string line;  // ECMAScript regex, matched against the whole line
  std::string reason;
};

struct ProgramUnderTest {
  std::string name;  // gtest parameter name
  fs::path path;
  // Step outcomes allowed to differ from kernel overlayfs: step name -> why.
  std::map<std::string, std::string> allowed_step_differences;
  std::vector<AllowedTreeDifference> allowed_tree_differences;
  // xattr name prefixes of the program's own bookkeeping, ignored in its upper dir: prefix -> why.
  std::map<std::string, std::string> own_upper_xattr_prefixes;
  // When not empty: trusted.overlay.opaque=y in the upper dir on a directory the program
  // created where no lower layer has a directory (so the marker hides nothing) is allowed,
  // for this reason.
  std::string new_dirs_opaque_reason;
  // When not empty: extra opaque markers (a `.wh..wh..opq` file, a `.wh..opq` whiteout)
  // inside directories the program marked opaque with the xattr are allowed, for this reason.
  std::string opaque_marker_entries_reason;
};

std::vector<ProgramUnderTest> Programs() {
  // fuse-overlayfs shares one inode among the names of a lower hard-link group.
  const std::string shared_hardlinks =
      "fuse-overlayfs keeps a lower hard-link group as one inode: a write or setxattr through one name of "
      "usr/bin/{tool,hard} copies up under whichever name it looked up first, and both names show the change; "
      "the kernel (index=off) copies up the name written and breaks the link";
  const std::string shared_hardlink_nlink =
      "the nlink fuse-overlayfs reports for usr/share/misc/pair-a after unlinking pair-b or linking pair-a (1 or 2) "
      "depends on which name of the group its shared inode was looked up by; the kernel reports the file's own "
      "st_nlink";
  return {
      // The program this suite accepts: no allowed differences.
      {.name = "strata_fsfilter", .path = STRATA_FSFILTER_BIN},
      // The peer, run for reference; its known differences from the kernel, each with why.
      {.name = "fuse_overlayfs",
       .path = "/usr/bin/fuse-overlayfs",
       .allowed_step_differences =
           {{"append_hardlinked_lower_file", shared_hardlinks},
            {"setxattr_replace_on_other_hardlink_name", shared_hardlinks},
            {"unlink_one_name_of_lower_hardlink", shared_hardlink_nlink},
            {"link_lower_hardlinked_file", shared_hardlink_nlink}},
       .allowed_tree_differences =
           {{"merged", "usr/bin/(hard|tool): .*", shared_hardlinks},
            {"merged", "hard-link groups differ at usr/bin/(hard|tool): .*", shared_hardlinks},
            {"upper", "usr/bin/(hard|tool): .*", shared_hardlinks},
            {"upper", "only in [AB]: usr/bin/(hard|tool) \\(f\\)", shared_hardlinks},
            {"upper", "only in B: etc/hosts \\(f\\)",
             "fuse-overlayfs copies a file up before a removexattr that then fails with ENODATA; the kernel "
             "checks the lower xattr first"}},
       .own_upper_xattr_prefixes = {{"user.fuseoverlayfs.",
                                     "fuse-overlayfs records the origin of copied-up files "
                                     "(user.fuseoverlayfs.origin); invisible in the merged view"}},
       .new_dirs_opaque_reason = "fuse-overlayfs 1.10 marks every directory it creates opaque "
                                 "(create_directory_opaque), whether or not a lower layer has one there",
       .opaque_marker_entries_reason = "fuse-overlayfs 1.10 also writes a `.wh..wh..opq` file and a `.wh..opq` "
                                       "whiteout into each directory it makes opaque (besides the xattr)"},
  };
}

// gtest prints the parameter by its name.
void PrintTo(const ProgramUnderTest& program, std::ostream* out) { *out << program.name; }

// ---- small helpers ----

std::string ErrnoName(int errnum) {
  const char* name = ::strerrorname_np(errnum);
  return name ? name : fmt::format("errno {}", errnum);
}
// "ok" for rc == 0, else errno's name.
std::string Rc(int rc) { return rc == 0 ? "ok" : ErrnoName(errno); }

// Deterministic bytes (splitmix64) for file contents.
class Bytes {
 public:
  explicit Bytes(uint64_t seed) : state_(seed) {}
  std::string Next(size_t size) {
    std::string out(size, '\0');
    for (size_t i = 0; i < size; i += 8) {
      uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      z ^= z >> 31;
      std::memcpy(out.data() + i, &z, std::min<size_t>(8, size - i));
    }
    return out;
  }

 private:
  uint64_t state_;
};

// Writes `data` to an open fd in 1 MiB pieces; "ok" or the errno name.
std::string WriteFd(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), std::min(data.size(), kMiB));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoName(errno);
    data.remove_prefix(static_cast<size_t>(n));
  }
  return "ok";
}

// open(flags) + write + close: "ok" or the name of the first failing call's errno.
std::string WriteFile(const fs::path& path, int flags, std::string_view data, mode_t mode = 0644) {
  UniqueFd fd(::open(path.c_str(), flags | O_CLOEXEC, mode));
  if (!fd) return "open: " + ErrnoName(errno);
  std::string wrote = WriteFd(fd.get(), data);
  if (wrote != "ok") return "write: " + wrote;
  if (::close(fd.release()) != 0) return "close: " + ErrnoName(errno);
  return "ok";
}

// The user.* xattrs of `path` ("user.a=1 user.b=2"), or the errno name.
std::string UserXattrs(const fs::path& path) {
  char names[4096];
  ssize_t size = ::llistxattr(path.c_str(), names, sizeof names);
  if (size < 0) return "llistxattr: " + ErrnoName(errno);
  std::set<std::string> sorted;
  for (ssize_t pos = 0; pos < size;) {
    std::string name(names + pos);
    pos += static_cast<ssize_t>(name.size()) + 1;
    if (!name.starts_with("user.")) continue;
    char value[256];
    ssize_t n = ::lgetxattr(path.c_str(), name.c_str(), value, sizeof value);
    sorted.insert(n < 0 ? name + "=<" + ErrnoName(errno) + ">"
                        : name + "=" + std::string(value, static_cast<size_t>(n)));
  }
  std::string out;
  for (const auto& item : sorted) out += (out.empty() ? "" : " ") + item;
  return out.empty() ? "(no user xattrs)" : out;
}

// What lstat says about `path`, compactly: "f 0644 0:0 size=6 nlink=1", "d 0755 0:0",
// "l 0777 0:0 -> target", "c 0644 0:0 dev=1:3", or "ENOENT". Directory nlink and sizes are
// left out (kernel overlayfs reports nlink 1 for merged dirs; sizes are fs-specific).
std::string Describe(const fs::path& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return ErrnoName(errno);
  std::string out;
  switch (st.st_mode & S_IFMT) {
    case S_IFREG:
      out = "f";
      break;
    case S_IFDIR:
      out = "d";
      break;
    case S_IFLNK:
      out = "l";
      break;
    case S_IFCHR:
      out = "c";
      break;
    case S_IFBLK:
      out = "b";
      break;
    case S_IFIFO:
      out = "p";
      break;
    default:
      out = "?";
      break;
  }
  out += fmt::format(" {:04o} {}:{}", st.st_mode & 07777, st.st_uid, st.st_gid);
  if (S_ISREG(st.st_mode)) out += fmt::format(" size={} nlink={}", st.st_size, st.st_nlink);
  if (S_ISLNK(st.st_mode)) {
    std::error_code ec;
    out += " -> " + fs::read_symlink(path, ec).string();
  }
  if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
    out += fmt::format(" dev={}:{}", major(st.st_rdev), minor(st.st_rdev));
  }
  return out;
}

// Sorted names in a directory ("a b c"), or the errno name.
std::string List(const fs::path& dir) {
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
  if (!d) return ErrnoName(errno);
  std::set<std::string> names;
  errno = 0;
  while (dirent* entry = ::readdir(d.get())) {
    std::string name = entry->d_name;
    if (name != "." && name != "..") names.insert(name);
  }
  if (errno != 0) return "readdir: " + ErrnoName(errno);
  std::string out;
  for (const auto& name : names) out += (out.empty() ? "" : " ") + name;
  return out.empty() ? "(empty)" : out;
}

// ---- building the layers (overlay form) ----

// Writes entries under one layer dir; keeps the first failure. Parents are made 0755 root.
class LayerBuilder {
 public:
  explicit LayerBuilder(fs::path root) : root_(std::move(root)) {}

  void Dir(const std::string& rel, mode_t mode = 0755, uid_t uid = 0, gid_t gid = 0) {
    const fs::path p = root_ / rel;
    Parents(rel);
    if (::mkdir(p.c_str(), 0700) != 0 && errno != EEXIST) return Failed("mkdir", rel);
    Own(rel, uid, gid, mode);
  }
  void File(const std::string& rel, std::string_view content, mode_t mode = 0644, uid_t uid = 0, gid_t gid = 0) {
    Parents(rel);
    std::string wrote = WriteFile(root_ / rel, O_WRONLY | O_CREAT | O_TRUNC, content, 0600);
    if (wrote != "ok") return Failed("write (" + wrote + ")", rel);
    Own(rel, uid, gid, mode);
  }
  void Symlink(const std::string& rel, const std::string& target, uid_t uid = 0, gid_t gid = 0) {
    Parents(rel);
    if (::symlink(target.c_str(), (root_ / rel).c_str()) != 0) return Failed("symlink", rel);
    if (::lchown((root_ / rel).c_str(), uid, gid) != 0) Failed("lchown", rel);
  }
  void HardLink(const std::string& rel, const std::string& existing) {
    Parents(rel);
    if (::link((root_ / existing).c_str(), (root_ / rel).c_str()) != 0) Failed("link", rel);
  }
  void Fifo(const std::string& rel, mode_t mode) {
    Parents(rel);
    if (::mkfifo((root_ / rel).c_str(), 0600) != 0) return Failed("mkfifo", rel);
    Own(rel, 0, 0, mode);
  }
  void CharDevice(const std::string& rel, unsigned major_number, unsigned minor_number, mode_t mode = 0600) {
    Parents(rel);
    if (::mknod((root_ / rel).c_str(), S_IFCHR | 0600, makedev(major_number, minor_number)) != 0) {
      return Failed("mknod", rel);
    }
    Own(rel, 0, 0, mode);
  }
  // Overlay form of an OCI `.wh.<name>`.
  void Whiteout(const std::string& rel) { CharDevice(rel, 0, 0, 0); }
  // Overlay form of `.wh..wh..opq` in the directory `rel`.
  void Opaque(const std::string& rel) { Xattr(rel, "trusted.overlay.opaque", "y"); }
  void Xattr(const std::string& rel, const std::string& name, const std::string& value) {
    if (::lsetxattr((root_ / rel).c_str(), name.c_str(), value.data(), value.size(), 0) != 0) {
      Failed("lsetxattr " + name, rel);
    }
  }

  const std::optional<std::string>& error() const { return error_; }

 private:
  void Parents(const std::string& rel) {
    fs::path parent = fs::path(rel).parent_path();
    if (parent.empty() || fs::exists(root_ / parent)) return;
    Parents(parent.string());
    if (::mkdir((root_ / parent).c_str(), 0755) != 0 && errno != EEXIST) return Failed("mkdir", parent.string());
    Own(parent.string(), 0, 0, 0755);
  }
  // chown before chmod: chown clears setuid/setgid.
  void Own(const std::string& rel, uid_t uid, gid_t gid, mode_t mode) {
    if (::lchown((root_ / rel).c_str(), uid, gid) != 0) return Failed("lchown", rel);
    if (::chmod((root_ / rel).c_str(), mode) != 0) Failed("chmod", rel);
  }
  void Failed(const std::string& what, const std::string& rel) {
    if (!error_) error_ = fmt::format("{} {}: {}", what, (root_ / rel).string(), std::strerror(errno));
  }

  fs::path root_;
  std::optional<std::string> error_;
};

// The base layer: a small root filesystem with every kind of entry.
void BuildBase(LayerBuilder& b) {
  Bytes bytes(1);
  b.Dir("etc");
  b.File("etc/passwd", "root:x:0:0:root:/root:/bin/bash\n");
  b.File("etc/hosts", "127.0.0.1 localhost\n");
  b.File("etc/group", "root:x:0:\nshadow:x:42:\n");
  b.File("etc/shadow", "root:*:19000:0:99999:7:::\n", 0640, 0, 42);
  b.File("etc/secret", "no one may read this\n", 0000);
  b.File("etc/motd", "welcome from base\n");
  b.Dir("etc/ssl");
  b.Xattr("etc/ssl", "user.dir", "base");
  b.File("etc/ssl/openssl.cnf", bytes.Next(4096));
  b.File("etc/ssl/certs/ca.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
  b.File("usr/bin/tool", "#!/bin/sh\necho tool\n", 0755);
  b.Xattr("usr/bin/tool", "user.comment", "base tool");
  b.HardLink("usr/bin/hard", "usr/bin/tool");
  b.File("usr/bin/suid", "#!/bin/sh\nid\n", 04755);
  b.Symlink("usr/bin/link-to-tool", "tool");
  b.File("usr/lib/libx.so.1", bytes.Next(20000), 0755);
  b.Xattr("usr/lib/libx.so.1", "user.a", "1");
  b.Xattr("usr/lib/libx.so.1", "user.b", "2");
  b.Symlink("usr/lib/libx.so", "libx.so.1");
  b.File("usr/share/misc/magic", bytes.Next(3000));
  b.File("usr/share/misc/pair-a", "a pair of names\n");
  b.HardLink("usr/share/misc/pair-b", "usr/share/misc/pair-a");
  b.File("usr/share/doc/pkgA/README", "pkgA readme\n");
  b.File("usr/share/doc/pkgA/copyright", "GPL-2\n");
  b.Xattr("usr/share/doc/pkgA/copyright", "user.lic", "GPL");
  b.File("usr/share/doc/pkgB/README", "pkgB readme\n");
  b.File("usr/share/doc/pkgB/changelog", "pkgB changes\n");
  b.File("usr/share/doc/pkgC/deep/er/still/file", "deep\n");
  b.Symlink("usr/share/doc/pkgC/link", "deep/er");
  b.File("usr/share/doc/pkgD/x", "pkgD x\n");
  b.Dir("var/empty");
  b.File("var/log/app.log", "base log line\n", 0640);
  b.File("var/lib/data/a.db", "a.db from base\n");
  b.File("var/lib/data/b.db", "b.db from base\n");
  b.File("opt/big.bin", bytes.Next(kLowerBigBytes));
  for (int i = 0; i < kManyFiles; ++i) b.File(fmt::format("opt/many/f{:04d}", i), fmt::format("file {}\n", i));
  b.File("opt/ghost/x", "hidden by the middle layer\n");
  b.Dir("home/user", 0700, 1000, 1000);
  b.File("home/user/.profile", "export PS1='$ '\n", 0600, 1000, 1000);
  b.Fifo("run/fifo", 0644);
  b.CharDevice("dev/null", 1, 3, 0666);
  b.Dir("tmp", 01777);
}

// The middle layer: whiteouts of files and dirs, an opaque dir, changes.
void BuildMiddle(LayerBuilder& b) {
  b.Whiteout("etc/hosts");
  b.File("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nmid:x:1:1::/:/bin/false\n");
  b.File("usr/lib/libmid.so", "libmid\n", 0755);
  b.Whiteout("usr/share/doc/pkgB");
  b.Whiteout("usr/share/doc/pkgD");
  b.Dir("var/log");
  b.Opaque("var/log");
  b.File("var/log/new.log", "middle log line\n", 0640);
  b.File("var/lib/data/mid.db", "mid.db from middle\n");
  b.Whiteout("opt/ghost/x");
  b.Whiteout("opt/many/f0007");
  b.File("srv/www/index.html", "<html>middle</html>\n");
  b.File("srv/www/style.css", "body {}\n");
}

// The top layer: a file over a whiteout, a dir over a dir whiteout, metadata changes.
void BuildTop(LayerBuilder& b) {
  b.File("etc/passwd", "root:x:0:0:root:/root:/bin/sh\ntop:x:2:2::/:/bin/false\n");
  b.File("etc/hosts", "10.0.0.1 top\n");
  b.Dir("etc/ssl", 0750);
  b.Xattr("etc/ssl", "user.dir", "top");
  b.Whiteout("usr/lib/libx.so");
  b.File("usr/local/bin/app", "#!/bin/sh\necho app\n", 0755);
  b.File("usr/bin/python3", "#!/bin/false\n", 0755);
  b.Symlink("usr/bin/python", "python3");
  b.File("usr/share/doc/pkgB/README", "pkgB reborn in top\n");
  b.File("var/log/top.log", "top log line\n");
}

// ---- one side: layers, upper, work, mount point ----

struct Side {
  fs::path dir;
  fs::path base() const { return dir / "layers/base"; }
  fs::path middle() const { return dir / "layers/middle"; }
  fs::path top() const { return dir / "layers/top"; }
  fs::path upper() const { return dir / "upper"; }
  fs::path work() const { return dir / "work"; }
  fs::path merged() const { return dir / "merged"; }

  // lowerdir=TOP:MIDDLE:BASE (topmost first), plus upperdir/workdir unless read-only.
  std::string Options(bool read_only) const {
    std::string options = fmt::format("lowerdir={}:{}:{}", top().string(), middle().string(), base().string());
    if (!read_only) options += fmt::format(",upperdir={},workdir={}", upper().string(), work().string());
    return options;
  }
};

std::optional<std::string> BuildSide(const Side& side) {
  for (const fs::path& dir : {side.upper(), side.work(), side.merged()}) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return fmt::format("mkdir {}: {}", dir.string(), ec.message());
  }
  for (auto [dir, build] :
       {std::pair{side.base(), &BuildBase}, {side.middle(), &BuildMiddle}, {side.top(), &BuildTop}}) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return fmt::format("mkdir {}: {}", dir.string(), ec.message());
    LayerBuilder builder(dir);
    build(builder);
    if (builder.error()) return builder.error();
  }
  return std::nullopt;
}

// Pids of processes whose argv holds `mountpoint` as a whole argument: the program's daemon
// (it daemonised, so it is no child of ours). The mount point lies in a fresh mkdtemp dir,
// so no unrelated process names it.
std::vector<pid_t> DaemonPids(const fs::path& mountpoint) {
  std::vector<pid_t> pids;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    std::ifstream in(entry.path() / "cmdline", std::ios::binary);
    std::string cmdline((std::istreambuf_iterator<char>(in)), {});
    for (size_t pos = 0; pos < cmdline.size();) {
      const std::string arg(cmdline.c_str() + pos);
      pos += arg.size() + 1;
      if (arg == mountpoint.string()) {
        pids.push_back(std::stoi(name));
        break;
      }
    }
  }
  return pids;
}

// Gone or a zombie (reparented, so not ours to reap).
bool Exited(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string stat((std::istreambuf_iterator<char>(in)), {});
  if (stat.empty()) return true;
  const size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'Z';
}

bool IsMountPoint(const fs::path& dir) {
  Result<std::vector<fs::path>> mounts = MountPointsAtOrBeneath(dir);
  if (!mounts) return false;
  const fs::path canonical = fs::weakly_canonical(dir);
  return std::find(mounts->begin(), mounts->end(), canonical) != mounts->end();
}

// One union mount, unmounted on destruction (and its daemon, if any, awaited).
class UnionMount {
 public:
  // Kernel overlayfs with the options containerd uses (no index, no redirect_dir, no
  // metacopy): renaming a lower dir then gives EXDEV, as a FUSE union view does.
  static Result<UnionMount> Kernel(const fs::path& mountpoint, const std::string& options) {
    const std::string data = options + ",index=off,redirect_dir=off,metacopy=off";
    if (::mount("overlay", mountpoint.c_str(), "overlay", 0, data.c_str()) != 0) {
      return ErrnoFail(errno, "mount -t overlay -o " + data, mountpoint);
    }
    return UnionMount(mountpoint, {});
  }

  // `program -o OPTIONS MOUNTPOINT`, which must daemonise once mounted.
  static Result<UnionMount> Program(const fs::path& program, const fs::path& mountpoint, const std::string& options) {
    std::string output;
    Result<int> code = test_support::RunCommand({program.string(), "-o", options, mountpoint.string()}, &output,
                                                std::chrono::seconds(30));
    if (!code) {
      return Fail(code.error().WithContext(fmt::format("{} did not return (daemonise) within 30 s", program.string())));
    }
    if (*code != 0) {
      return Fail(ErrorCode::kInternal, "{} -o {} {} exited {}: {}", program.string(), options, mountpoint.string(),
                  *code, output);
    }
    if (!IsMountPoint(mountpoint)) {
      return Fail(ErrorCode::kInternal, "{} exited 0 but {} is not a mount point: {}", program.string(),
                  mountpoint.string(), output);
    }
    return UnionMount(mountpoint, DaemonPids(mountpoint));
  }

  UnionMount(UnionMount&& other) noexcept
      : mountpoint_(std::exchange(other.mountpoint_, {})), daemon_pids_(std::move(other.daemon_pids_)) {}
  UnionMount& operator=(UnionMount&&) = delete;
  ~UnionMount() {
    if (!mountpoint_.empty()) (void)Unmount();
  }

  // `umount MNT` (detaching lazily if still busy after 2 s), then waits up to 10 s for the
  // daemon to exit; a daemon that does not is sent SIGTERM, by pid, and reported.
  // Returns "" or what went wrong.
  std::string Unmount() {
    if (mountpoint_.empty()) return "";
    std::string problems;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (::umount2(mountpoint_.c_str(), 0) != 0) {
      if (errno != EBUSY || std::chrono::steady_clock::now() > deadline) {
        problems += fmt::format("umount {}: {}; ", mountpoint_.string(), ErrnoName(errno));
        if (::umount2(mountpoint_.c_str(), MNT_DETACH) != 0 && errno != EINVAL) {
          problems += fmt::format("umount -l: {}; ", ErrnoName(errno));
        }
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    for (pid_t pid : daemon_pids_) {
      const auto stop_by = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (!Exited(pid) && std::chrono::steady_clock::now() < stop_by) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      if (!Exited(pid)) {
        problems += fmt::format("daemon pid {} still running 10 s after umount (sent SIGTERM); ", pid);
        ::kill(pid, SIGTERM);
      }
    }
    mountpoint_.clear();
    return problems;
  }

  const std::vector<pid_t>& daemon_pids() const { return daemon_pids_; }

 private:
  UnionMount(fs::path mountpoint, std::vector<pid_t> pids)
      : mountpoint_(std::move(mountpoint)), daemon_pids_(std::move(pids)) {}
  fs::path mountpoint_;
  std::vector<pid_t> daemon_pids_;
};

// Kills the program's daemon (by pid) if the test has not finished within `limit`: a hung
// FUSE request would otherwise block the test, and its teardown, until ctest's timeout.
// Killing the daemon aborts the connection, so blocked calls fail with ENOTCONN and the
// teardown can unmount. Joined on destruction.
class Watchdog {
 public:
  Watchdog(std::vector<pid_t> pids, std::chrono::seconds limit)
      : thread_([pids = std::move(pids), limit, this](std::stop_token stop) {
          std::unique_lock lock(mutex_);
          if (wake_.wait_for(lock, stop, limit, [] { return false; })) return;
          if (stop.stop_requested()) return;
          fired_ = true;
          for (pid_t pid : pids) ::kill(pid, SIGKILL);
        }) {}
  bool fired() const { return fired_; }

 private:
  std::mutex mutex_;
  std::condition_variable_any wake_;
  std::atomic<bool> fired_{false};
  std::jthread thread_;  // last: starts after the members it uses exist
};

// ---- the scenario ----

// A step performs its operation in a statement of its own and only then describes the
// paths: the operands of `a + b` are unsequenced, so a description built in the same
// expression might be taken before the operation.
struct Step {
  std::string name;
  std::function<std::string(const fs::path& m)> run;  // outcome, compared across mounts
};

// "<result> | <state of path>"
std::string Then(const std::string& result, const fs::path& path) { return result + " | " + Describe(path); }

std::vector<Step> Scenario() {
  std::vector<Step> s;
  auto add = [&](std::string name, std::function<std::string(const fs::path&)> run) {
    s.push_back({std::move(name), std::move(run)});
  };
  // Lookup and readdir of the untouched view.
  add("list_initial", [](const fs::path& m) {
    std::string out;
    for (const char* dir : {".", "etc", "etc/ssl", "usr/lib", "usr/bin", "usr/share/doc", "usr/share/doc/pkgB",
                            "var/log", "var/lib/data", "opt/ghost", "srv/www"}) {
      out += fmt::format("[{}: {}] ", dir, List(m / dir));
    }
    return out;
  });
  add("stat_initial", [](const fs::path& m) {
    std::string out;
    for (const char* path : {"etc/hosts", "etc/passwd", "etc/ssl", "etc/shadow", "etc/secret", "usr/lib/libx.so",
                             "opt/many/f0007", "opt/many/f0008", "usr/bin/hard", "usr/bin/suid", "usr/bin/python",
                             "dev/null", "run/fifo", "tmp", "home/user", "var/log/app.log", "usr/share/doc/pkgD"}) {
      out += fmt::format("[{}: {}] ", path, Describe(m / path));
    }
    return out + UserXattrs(m / "etc/ssl") + " / " + UserXattrs(m / "usr/bin/tool");
  });
  add("read_lower_files", [](const fs::path& m) {
    std::string out;
    for (const char* path : {"etc/passwd", "etc/hosts", "usr/share/doc/pkgB/README", "var/log/new.log"}) {
      Result<std::string> text = ReadFile(m / path);
      out += fmt::format("[{}: {}] ", path, text ? *text : text.error().ToString());
    }
    return out;
  });

  // create
  add("create_root_file", [](const fs::path& m) {
    const std::string result = WriteFile(m / "newfile", O_WRONLY | O_CREAT | O_EXCL, "hello\n");
    return Then(result, m / "newfile");
  });
  add("create_in_lower_dir", [](const fs::path& m) {
    const std::string result = WriteFile(m / "etc/new.conf", O_WRONLY | O_CREAT | O_EXCL, "new=1\n", 0600);
    return Then(result, m / "etc/new.conf");
  });
  add("create_in_deep_lower_dir", [](const fs::path& m) {
    const fs::path p = m / "usr/share/doc/pkgA/NEWS";
    const std::string result = WriteFile(p, O_WRONLY | O_CREAT | O_EXCL, "news\n");
    return Then(result, p) + " | " + Describe(m / "usr/share/doc/pkgA");
  });
  add("create_exclusive_existing_lower", [](const fs::path& m) {
    const std::string result = WriteFile(m / "etc/passwd", O_WRONLY | O_CREAT | O_EXCL, "x");
    return Then(result, m / "etc/passwd");
  });
  add("create_over_top_whiteout", [](const fs::path& m) {
    const std::string result = WriteFile(m / "usr/lib/libx.so", O_WRONLY | O_CREAT | O_EXCL, "now a file\n");
    return Then(result, m / "usr/lib/libx.so");
  });
  add("create_name_hidden_by_opaque_dir", [](const fs::path& m) {
    const std::string result = WriteFile(m / "var/log/app.log", O_WRONLY | O_CREAT | O_EXCL, "fresh\n");
    return Then(result, m / "var/log/app.log");
  });

  // append / truncate (copy-up)
  add("append_top_file", [](const fs::path& m) {
    const std::string result = WriteFile(m / "etc/passwd", O_WRONLY | O_APPEND, "new:x:3:3::/:/bin/false\n");
    return Then(result, m / "etc/passwd");
  });
  add("append_base_file", [](const fs::path& m) {
    const fs::path p = m / "usr/share/doc/pkgA/README";
    const std::string result = WriteFile(p, O_WRONLY | O_APPEND, "more\n");
    return Then(result, p);
  });
  add("append_hardlinked_lower_file", [](const fs::path& m) {
    const std::string result = WriteFile(m / "usr/bin/tool", O_WRONLY | O_APPEND, "echo more\n");
    return Then(result, m / "usr/bin/tool") + " | " + Describe(m / "usr/bin/hard") + " | " +
           UserXattrs(m / "usr/bin/tool");
  });
  add("truncate_lower_shrink", [](const fs::path& m) {
    const fs::path p = m / "etc/ssl/openssl.cnf";
    const std::string result = Rc(::truncate(p.c_str(), 10));
    return Then(result, p);
  });
  add("truncate_lower_via_open_trunc", [](const fs::path& m) {
    const std::string result = WriteFile(m / "usr/lib/libx.so.1", O_WRONLY | O_TRUNC, "");
    return Then(result, m / "usr/lib/libx.so.1") + " | " + UserXattrs(m / "usr/lib/libx.so.1");
  });
  add("truncate_lower_extend", [](const fs::path& m) {
    const fs::path p = m / "etc/group";
    const std::string result = Rc(::truncate(p.c_str(), 100000));
    return Then(result, p);
  });

  // chmod / chown
  add("chmod_lower_file", [](const fs::path& m) {
    const std::string result = Rc(::chmod((m / "etc/shadow").c_str(), 0600));
    return Then(result, m / "etc/shadow");
  });
  add("chmod_lower_dir", [](const fs::path& m) {
    const std::string result = Rc(::chmod((m / "usr/share/misc").c_str(), 0700));
    return Then(result, m / "usr/share/misc");
  });
  add("chmod_drop_setuid", [](const fs::path& m) {
    const std::string result = Rc(::chmod((m / "usr/bin/suid").c_str(), 0755));
    return Then(result, m / "usr/bin/suid");
  });
  add("chmod_zero_mode_file", [](const fs::path& m) {
    const std::string result = Rc(::chmod((m / "etc/secret").c_str(), 0444));
    return Then(result, m / "etc/secret");
  });
  add("chown_lower_file", [](const fs::path& m) {
    const std::string result = Rc(::chown((m / "home/user/.profile").c_str(), 1234, 5678));
    return Then(result, m / "home/user/.profile");
  });
  add("lchown_lower_symlink", [](const fs::path& m) {
    const std::string result = Rc(::lchown((m / "usr/bin/link-to-tool").c_str(), 42, 43));
    return Then(result, m / "usr/bin/link-to-tool");
  });
  add("chown_middle_dir", [](const fs::path& m) {
    const std::string result = Rc(::chown((m / "srv/www").c_str(), 33, 33));
    return Then(result, m / "srv/www");
  });

  // xattrs (user.*)
  add("setxattr_lower_file", [](const fs::path& m) {
    const fs::path p = m / "usr/lib/libmid.so";
    const std::string result = Rc(::lsetxattr(p.c_str(), "user.new", "v", 1, 0));
    return Then(result, p) + " | " + UserXattrs(p);
  });
  add("setxattr_lower_dir", [](const fs::path& m) {
    const fs::path p = m / "var/lib";
    const std::string result = Rc(::lsetxattr(p.c_str(), "user.k", "dir value", 9, 0));
    return Then(result, p) + " | " + UserXattrs(p);
  });
  add("setxattr_replace_on_other_hardlink_name", [](const fs::path& m) {
    const fs::path p = m / "usr/bin/hard";
    const std::string result = Rc(::lsetxattr(p.c_str(), "user.comment", "changed", 7, XATTR_REPLACE));
    return Then(result, p) + " | " + UserXattrs(p) + " | " + UserXattrs(m / "usr/bin/tool");
  });
  add("setxattr_create_existing", [](const fs::path& m) {
    const fs::path p = m / "etc/ssl";
    const std::string result = Rc(::lsetxattr(p.c_str(), "user.dir", "again", 5, XATTR_CREATE));
    return Then(result, p) + " | " + UserXattrs(p);
  });
  add("removexattr_lower", [](const fs::path& m) {
    const fs::path p = m / "usr/share/doc/pkgA/copyright";
    const std::string result = Rc(::lremovexattr(p.c_str(), "user.lic"));
    return Then(result, p) + " | " + UserXattrs(p);
  });
  add("removexattr_missing", [](const fs::path& m) {
    const fs::path p = m / "etc/hosts";
    const std::string result = Rc(::lremovexattr(p.c_str(), "user.nothing"));
    return Then(result, p);
  });
  add("setxattr_user_on_symlink", [](const fs::path& m) {
    const fs::path p = m / "usr/bin/python";
    const std::string result = Rc(::lsetxattr(p.c_str(), "user.x", "1", 1, 0));
    return Then(result, p);
  });

  // unlink
  add("unlink_base_file", [](const fs::path& m) {
    const std::string result = Rc(::unlink((m / "usr/share/doc/pkgA/copyright").c_str()));
    return Then(result, m / "usr/share/doc/pkgA/copyright");
  });
  add("unlink_middle_file", [](const fs::path& m) {
    const std::string result = Rc(::unlink((m / "usr/lib/libmid.so").c_str()));
    return Then(result, m / "usr/lib/libmid.so");
  });
  add("unlink_top_file", [](const fs::path& m) {
    const std::string result = Rc(::unlink((m / "usr/local/bin/app").c_str()));
    return Then(result, m / "usr/local/bin/app");
  });
  add("unlink_whited_out_name", [](const fs::path& m) {
    const std::string result = Rc(::unlink((m / "opt/many/f0007").c_str()));
    return Then(result, m / "opt/many/f0007");
  });
  add("unlink_one_name_of_lower_hardlink", [](const fs::path& m) {
    const std::string result = Rc(::unlink((m / "usr/share/misc/pair-b").c_str()));
    return Then(result, m / "usr/share/misc/pair-b") + " | " + Describe(m / "usr/share/misc/pair-a");
  });
  add("unlink_lower_symlink", [](const fs::path& m) {
    const std::string result = Rc(::unlink((m / "usr/bin/python").c_str()));
    return Then(result, m / "usr/bin/python") + " | " + Describe(m / "usr/bin/python3");
  });
  add("unlink_dir", [](const fs::path& m) {
    const std::string result = Rc(::unlink((m / "srv/www").c_str()));
    return Then(result, m / "srv/www");
  });

  // rmdir + mkdir
  add("rmdir_lower_empty", [](const fs::path& m) {
    const std::string result = Rc(::rmdir((m / "var/empty").c_str()));
    return Then(result, m / "var/empty");
  });
  add("rmdir_lower_nonempty", [](const fs::path& m) {
    const std::string result = Rc(::rmdir((m / "etc").c_str()));
    return Then(result, m / "etc");
  });
  add("rmdir_dir_whose_children_are_whited_out", [](const fs::path& m) {
    const std::string result = Rc(::rmdir((m / "opt/ghost").c_str()));
    return Then(result, m / "opt/ghost");
  });
  add("mkdir_where_lower_dir_was_removed", [](const fs::path& m) {
    const std::string result = Rc(::mkdir((m / "var/empty").c_str(), 0711));
    return Then(result, m / "var/empty") + " | " + List(m / "var/empty");
  });
  add("mkdir_over_removed_nonempty_lower_dir", [](const fs::path& m) {
    const std::string made = Rc(::mkdir((m / "opt/ghost").c_str(), 0755));
    const std::string wrote = WriteFile(m / "opt/ghost/y", O_WRONLY | O_CREAT, "y\n");
    return Then(made, m / "opt/ghost") + " | " + wrote + " | " + List(m / "opt/ghost");
  });
  add("mkdir_over_middle_dir_whiteout", [](const fs::path& m) {
    const std::string result = Rc(::mkdir((m / "usr/share/doc/pkgD").c_str(), 0755));
    return Then(result, m / "usr/share/doc/pkgD") + " | " + List(m / "usr/share/doc/pkgD");
  });
  add("mkdir_new_tree", [](const fs::path& m) {
    std::string out = Rc(::mkdir((m / "newdir").c_str(), 0755));
    out += " " + Rc(::mkdir((m / "newdir/sub").c_str(), 0750));
    out += " " + Rc(::mkdir((m / "etc/newsub").c_str(), 0755));
    return Then(out, m / "newdir/sub") + " | " + Describe(m / "etc/newsub");
  });
  add("mkdir_existing_lower", [](const fs::path& m) {
    const std::string result = Rc(::mkdir((m / "usr").c_str(), 0755));
    return Then(result, m / "usr");
  });

  // rename
  add("rename_upper_file", [](const fs::path& m) {
    const std::string result = Rc(::rename((m / "etc/new.conf").c_str(), (m / "etc/renamed.conf").c_str()));
    return Then(result, m / "etc/renamed.conf") + " | " + Describe(m / "etc/new.conf");
  });
  add("rename_lower_file", [](const fs::path& m) {
    const fs::path from = m / "etc/ssl/certs/ca.pem", to = m / "etc/ssl/certs/ca-renamed.pem";
    const std::string result = Rc(::rename(from.c_str(), to.c_str()));
    return Then(result, to) + " | " + Describe(from);
  });
  add("rename_upper_file_over_lower_file", [](const fs::path& m) {
    const fs::path from = m / "newfile", to = m / "etc/motd";
    const std::string result = Rc(::rename(from.c_str(), to.c_str()));
    return Then(result, to) + " | " + Describe(from);
  });
  add("rename_lower_file_over_lower_file", [](const fs::path& m) {
    const fs::path from = m / "var/lib/data/a.db", to = m / "var/lib/data/mid.db";
    const std::string result = Rc(::rename(from.c_str(), to.c_str()));
    return Then(result, to) + " | " + Describe(from);
  });
  add("rename_lower_file_across_dirs", [](const fs::path& m) {
    const fs::path from = m / "etc/group", to = m / "var/lib/group.moved";
    const std::string result = Rc(::rename(from.c_str(), to.c_str()));
    return Then(result, to) + " | " + Describe(from);
  });
  add("rename_noreplace_onto_existing", [](const fs::path& m) {
    const fs::path from = m / "etc/hosts", to = m / "etc/passwd";
    const std::string result = Rc(::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE));
    return Then(result, to);
  });
  add("rename_exchange_lower_files", [](const fs::path& m) {
    const fs::path a = m / "var/lib/data/b.db", b = m / "srv/www/style.css";
    const std::string result = Rc(::renameat2(AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_EXCHANGE));
    return Then(result, a) + " | " + Describe(b);
  });
  add("rename_base_dir", [](const fs::path& m) {
    const fs::path from = m / "var/lib/data", to = m / "var/lib/data2";
    const std::string result = Rc(::rename(from.c_str(), to.c_str()));
    return Then(result, to) + " | " + Describe(from);
  });
  add("rename_middle_dir", [](const fs::path& m) {
    const fs::path from = m / "srv/www", to = m / "srv/web";
    const std::string result = Rc(::rename(from.c_str(), to.c_str()));
    return Then(result, to) + " | " + Describe(from);
  });
  add("rename_merged_dir", [](const fs::path& m) {
    const fs::path from = m / "usr/lib", to = m / "usr/lib64";
    const std::string result = Rc(::rename(from.c_str(), to.c_str()));
    return Then(result, to) + " | " + Describe(from);
  });
  add("rename_upper_dir", [](const fs::path& m) {
    const fs::path from = m / "newdir", to = m / "newdir2";
    const std::string result = Rc(::rename(from.c_str(), to.c_str()));
    return Then(result, to) + " | " + Describe(from) + " | " + List(to);
  });

  // hard links
  add("link_lower_file", [](const fs::path& m) {
    const fs::path from = m / "usr/share/misc/magic", to = m / "usr/share/misc/magic.link";
    const std::string result = Rc(::link(from.c_str(), to.c_str()));
    return Then(result, to) + " | " + Describe(from);
  });
  add("link_lower_file_across_dirs", [](const fs::path& m) {
    const fs::path from = m / "usr/share/misc/magic", to = m / "magic.root";
    const std::string result = Rc(::link(from.c_str(), to.c_str()));
    return Then(result, to) + " | " + Describe(from);
  });
  add("link_lower_hardlinked_file", [](const fs::path& m) {
    const fs::path from = m / "usr/share/misc/pair-a", to = m / "usr/share/misc/pair-c";
    const std::string result = Rc(::link(from.c_str(), to.c_str()));
    return Then(result, to) + " | " + Describe(from);
  });
  add("link_onto_existing", [](const fs::path& m) {
    const std::string result = Rc(::link((m / "etc/hosts").c_str(), (m / "etc/passwd").c_str()));
    return Then(result, m / "etc/passwd");
  });
  add("link_dir", [](const fs::path& m) {
    const std::string result = Rc(::link((m / "etc").c_str(), (m / "etc2").c_str()));
    return Then(result, m / "etc2");
  });

  // symlinks, fifos, devices
  add("symlink_new", [](const fs::path& m) {
    const std::string result = Rc(::symlink("../etc/passwd", (m / "newdir2/pw").c_str()));
    return Then(result, m / "newdir2/pw");
  });
  add("symlink_in_lower_dir", [](const fs::path& m) {
    const std::string result = Rc(::symlink("/usr/bin/tool", (m / "usr/local/bin/tool").c_str()));
    return Then(result, m / "usr/local/bin/tool");
  });
  add("symlink_onto_existing", [](const fs::path& m) {
    const std::string result = Rc(::symlink("x", (m / "etc/passwd").c_str()));
    return Then(result, m / "etc/passwd");
  });
  add("mkfifo_new", [](const fs::path& m) {
    const std::string result = Rc(::mkfifo((m / "newfifo").c_str(), 0640));
    return Then(result, m / "newfifo");
  });
  add("mkfifo_in_lower_dir", [](const fs::path& m) {
    const std::string result = Rc(::mkfifo((m / "run/fifo2").c_str(), 0600));
    return Then(result, m / "run/fifo2");
  });
  add("mknod_char_device", [](const fs::path& m) {
    const std::string result = Rc(::mknod((m / "dev/zero").c_str(), S_IFCHR | 0666, makedev(1, 5)));
    return Then(result, m / "dev/zero");
  });

  // big files
  add("write_64MiB_file_fsync", [](const fs::path& m) {
    const fs::path p = m / "big.bin";
    UniqueFd fd(::open(p.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (!fd) return "open: " + ErrnoName(errno);
    Bytes bytes(64);
    for (size_t done = 0; done < kNewBigBytes; done += kMiB) {
      std::string wrote = WriteFd(fd.get(), bytes.Next(kMiB));
      if (wrote != "ok") return "write: " + wrote;
    }
    const std::string result = Rc(::fsync(fd.get()));
    return Then(result, p);
  });
  add("append_to_large_lower_file", [](const fs::path& m) {
    const fs::path p = m / "opt/big.bin";
    const std::string result = WriteFile(p, O_WRONLY | O_APPEND, Bytes(65).Next(kMiB));
    return Then(result, p);
  });

  // directories of many files
  add("fresh_5k_file_dir", [](const fs::path& m) {
    std::string out = Rc(::mkdir((m / "fresh5k").c_str(), 0755));
    for (int i = 0; i < kManyFiles && out == "ok"; ++i) {
      std::string wrote =
          WriteFile(m / fmt::format("fresh5k/f{:04d}", i), O_WRONLY | O_CREAT | O_EXCL, fmt::format("{}\n", i));
      if (wrote != "ok") out = fmt::format("file {}: {}", i, wrote);
    }
    std::error_code ec;
    size_t count = 0;
    for (auto it = fs::directory_iterator(m / "fresh5k", ec); !ec && it != fs::directory_iterator(); it.increment(ec))
      ++count;
    return fmt::format("{} | {} entries", out, count);
  });
  add("list_lower_5k_dir", [](const fs::path& m) {
    std::error_code ec;
    size_t count = 0;
    for (auto it = fs::directory_iterator(m / "opt/many", ec); !ec && it != fs::directory_iterator(); it.increment(ec))
      ++count;
    return fmt::format("{} entries{}", count, ec ? " (" + ec.message() + ")" : "");
  });

  // rm -rf of lower trees
  auto rm_rf = [](const fs::path& p) {
    std::error_code ec;
    const std::uintmax_t removed = fs::remove_all(p, ec);
    const std::string result = ec ? ErrnoName(ec.value()) : fmt::format("ok, {} removed", removed);
    return Then(result, p);
  };
  add("rm_rf_lower_tree", [rm_rf](const fs::path& m) { return rm_rf(m / "usr/share/doc"); });
  add("rm_rf_lower_5k_dir", [rm_rf](const fs::path& m) { return rm_rf(m / "opt/many"); });
  add("mkdir_after_rm_rf", [](const fs::path& m) {
    const std::string made = Rc(::mkdir((m / "usr/share/doc").c_str(), 0755));
    return Then(made, m / "usr/share/doc") + " | " + List(m / "usr/share/doc") + " | " +
           Describe(m / "usr/share/doc/pkgA/README");
  });

  add("list_final", [](const fs::path& m) {
    std::string out;
    for (const char* dir : {".", "etc", "usr/lib", "usr/bin", "usr/share", "usr/share/misc", "var/log", "var/lib/data",
                            "opt", "srv/www", "run", "dev"}) {
      out += fmt::format("[{}: {}] ", dir, List(m / dir));
    }
    return out;
  });
  return s;
}

// ---- comparing ----

// Kernel bookkeeping xattrs that do not change what the upper dir means; the opaque marker
// (trusted.overlay.opaque) is kept and compared.
test_support::TreeCompareOptions UpperCompareOptions() {
  test_support::TreeCompareOptions options;
  options.ignore_xattr_prefixes = {"trusted.overlay.origin",   "trusted.overlay.impure",   "trusted.overlay.nlink",
                                   "trusted.overlay.upper",    "trusted.overlay.uuid",     "trusted.overlay.redirect",
                                   "trusted.overlay.metacopy", "trusted.overlay.protattr", "security.selinux"};
  return options;
}

std::string JoinLines(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& line : lines) out += "  " + line + "\n";
  return out;
}

// A directory exists at `rel` in some lower layer of `side`.
bool LowerHasDir(const Side& side, const std::string& rel) {
  for (const fs::path& layer : {side.top(), side.middle(), side.base()}) {
    struct stat st;
    if (::lstat((layer / rel).c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return true;
  }
  return false;
}

class ParityTest : public ::testing::TestWithParam<ProgramUnderTest> {
 protected:
  void SetUp() override {
    STRATA_REQUIRE_ROOT();
    program_ = GetParam();
    if (!fs::exists(program_.path)) {
      GTEST_SKIP() << program_.path.string() << " does not exist (not built / not installed yet): "
                   << "nothing to compare with kernel overlayfs";
    }
    Result<test_support::TempRoot> root = test_support::TempRoot::Create("strata-parity");
    ASSERT_TRUE(root) << root.error().ToString();
    root_.emplace(std::move(*root));
    // Everything on a tmpfs of the test's own (TempRoot detaches it): it has trusted.* and
    // user.* xattrs and whiteouts, and creates the ~20k files of a run in well under a
    // second, where the shared ext4 disk (no journal, churned) takes ~0.6 ms per file.
    const fs::path scratch = *root_ / "fs";
    fs::create_directories(scratch);
    ASSERT_EQ(::mount("tmpfs", scratch.c_str(), "tmpfs", 0, "size=2g,mode=0755"), 0)
        << "mount -t tmpfs " << scratch << ": " << std::strerror(errno);
    kernel_.dir = scratch / "kernel";
    program_side_.dir = scratch / "program";
    for (const Side* side : {&kernel_, &program_side_}) {
      std::optional<std::string> failed = BuildSide(*side);
      ASSERT_FALSE(failed) << "building layers: " << *failed;
    }
  }

  // Unmounts before the temp root goes (TempRoot would detach them anyway).
  void TearDown() override {
    StopWatchdog();
    program_mount_.reset();
    kernel_mount_.reset();
    root_.reset();
  }

  void Mount(bool read_only) {
    Result<UnionMount> kernel = UnionMount::Kernel(kernel_.merged(), kernel_.Options(read_only));
    ASSERT_TRUE(kernel) << kernel.error().ToString();
    kernel_mount_.emplace(std::move(*kernel));
    Result<UnionMount> program =
        UnionMount::Program(program_.path, program_side_.merged(), program_side_.Options(read_only));
    ASSERT_TRUE(program) << program.error().ToString();
    program_mount_.emplace(std::move(*program));
    EXPECT_FALSE(program_mount_->daemon_pids().empty())
        << "no process names " << program_side_.merged() << " in its argv after mounting";
    watchdog_.emplace(program_mount_->daemon_pids(), kTestTimeLimit);
  }

  // Merged views (mounted). With `allow`, the program's documented merged-view differences
  // are reported, not failed.
  void ExpectMergedViewsEqual(const std::string& when, bool allow) {
    const test_support::TreeCompareOptions options;
    CompareScans("merged", when, test_support::ScanTree(kernel_.merged(), options),
                 test_support::ScanTree(program_side_.merged(), options), options, allow);
  }

  // Compares two scans after the normalisation both sides get; lines the program's
  // allowances cover (when `allow`) are printed, the rest fail the test.
  void CompareScans(const std::string& view, const std::string& when, Result<std::vector<TreeEntry>> kernel,
                    Result<std::vector<TreeEntry>> program, const test_support::TreeCompareOptions& options,
                    bool allow) {
    ASSERT_TRUE(kernel) << kernel.error().ToString();
    ASSERT_TRUE(program) << program.error().ToString();
    // Kernel overlayfs makes every whiteout a hard link of one shared whiteout inode
    // (since 5.8); which whiteouts share an inode means nothing.
    for (auto* entries : {&*kernel, &*program}) {
      for (TreeEntry& entry : *entries) {
        if (entry.type == 'c' && entry.rdev_major == 0 && entry.rdev_minor == 0) entry.hardlink_group.clear();
      }
    }
    if (view == "upper") NormaliseOpaqueMarkers(*kernel, *program);
    std::vector<std::string> failures;
    for (const std::string& line : test_support::CompareEntries(*kernel, *program, options)) {
      const AllowedTreeDifference* allowed = nullptr;
      for (const AllowedTreeDifference& candidate : program_.allowed_tree_differences) {
        if (allow && candidate.view == view && std::regex_match(line, std::regex(candidate.line))) allowed = &candidate;
      }
      if (allowed) {
        std::printf("[allowed difference] %s, %s view: %s (%s)\n", program_.name.c_str(), view.c_str(), line.c_str(),
                    allowed->reason.c_str());
      } else {
        failures.push_back(line);
      }
    }
    EXPECT_TRUE(failures.empty()) << view << " views " << when << " differ (A = kernel overlayfs, B = " << program_.name
                                  << "):\n"
                                  << JoinLines(failures);
  }

  // The program's documented opaque-marker differences in its upper dir, removed from its scan.
  void NormaliseOpaqueMarkers(const std::vector<TreeEntry>& kernel, std::vector<TreeEntry>& program) {
    std::map<std::string, const TreeEntry*> kernel_by_path;
    for (const TreeEntry& entry : kernel) kernel_by_path[entry.path] = &entry;
    std::set<std::string> opaque_dirs;
    for (const TreeEntry& entry : program) {
      if (entry.type == 'd' && entry.xattrs.contains("trusted.overlay.opaque")) opaque_dirs.insert(entry.path);
    }
    if (!program_.opaque_marker_entries_reason.empty()) {
      std::vector<std::string> dropped;
      std::erase_if(program, [&](const TreeEntry& entry) {
        const fs::path path(entry.path);
        const std::string name = path.filename().string();
        const bool marker = (name == ".wh..wh..opq" && entry.type == 'f') ||
                            (name == ".wh..opq" && entry.type == 'c' && entry.rdev_major == 0 && entry.rdev_minor == 0);
        const std::string parent = path.parent_path().empty() ? "." : path.parent_path().string();
        if (!marker || !opaque_dirs.contains(parent) || kernel_by_path.contains(entry.path)) return false;
        dropped.push_back(entry.path);
        return true;
      });
      if (!dropped.empty()) {
        std::printf("[allowed difference] %s, upper view: %zu extra opaque-marker entries (%s):\n%s",
                    program_.name.c_str(), dropped.size(), program_.opaque_marker_entries_reason.c_str(),
                    JoinLines(dropped).c_str());
      }
    }
    if (!program_.new_dirs_opaque_reason.empty()) {
      std::vector<std::string> dropped;
      for (TreeEntry& entry : program) {
        if (!opaque_dirs.contains(entry.path)) continue;
        auto k = kernel_by_path.find(entry.path);
        const bool kernel_opaque = k != kernel_by_path.end() && k->second->xattrs.contains("trusted.overlay.opaque");
        if (!kernel_opaque && !LowerHasDir(program_side_, entry.path)) {
          entry.xattrs.erase("trusted.overlay.opaque");
          dropped.push_back(entry.path);
        }
      }
      if (!dropped.empty()) {
        std::printf(
            "[allowed difference] %s, upper view: trusted.overlay.opaque on %zu new dirs no lower layer "
            "has (%s):\n%s",
            program_.name.c_str(), dropped.size(), program_.new_dirs_opaque_reason.c_str(), JoinLines(dropped).c_str());
      }
    }
  }

  // Runs the scenario on both mounts; every outcome must match unless allowed.
  // Returns the kernel's outcomes by step name.
  std::map<std::string, std::string> RunScenario(const std::vector<Step>& steps) {
    std::vector<std::string> kernel_outcomes, program_outcomes;
    for (const Step& step : steps) kernel_outcomes.push_back(step.run(kernel_.merged()));
    for (const Step& step : steps) program_outcomes.push_back(step.run(program_side_.merged()));
    for (size_t i = 0; i < steps.size(); ++i) {
      if (kernel_outcomes[i] == program_outcomes[i]) continue;
      auto allowed = program_.allowed_step_differences.find(steps[i].name);
      if (allowed != program_.allowed_step_differences.end()) {
        std::printf("[allowed difference] %s, step %s (%s):\n  kernel:  %s\n  %s: %s\n", program_.name.c_str(),
                    steps[i].name.c_str(), allowed->second.c_str(), kernel_outcomes[i].c_str(), program_.name.c_str(),
                    program_outcomes[i].c_str());
        continue;
      }
      ADD_FAILURE() << "step " << steps[i].name << " differs\n  kernel overlayfs: " << kernel_outcomes[i] << "\n  "
                    << program_.name << ": " << program_outcomes[i];
    }
    std::map<std::string, std::string> by_name;
    for (size_t i = 0; i < steps.size(); ++i) by_name[steps[i].name] = kernel_outcomes[i];
    return by_name;
  }

  // Upper dirs (unmounted), opaque markers included, kernel bookkeeping xattrs and the
  // program's documented own ones left out.
  void ExpectUpperDirsEqual() {
    test_support::TreeCompareOptions options = UpperCompareOptions();
    for (const auto& [prefix, reason] : program_.own_upper_xattr_prefixes) {
      std::printf("[allowed difference] %s, upper view: xattrs %s* ignored (%s)\n", program_.name.c_str(),
                  prefix.c_str(), reason.c_str());
      options.ignore_xattr_prefixes.push_back(prefix);
    }
    CompareScans("upper", "after unmounting", test_support::ScanTree(kernel_.upper(), options),
                 test_support::ScanTree(program_side_.upper(), options), options, /*allow=*/true);
  }

  void ExpectLowersUntouched() {
    for (auto [a, b] : {std::pair{kernel_.base(), program_side_.base()},
                        {kernel_.middle(), program_side_.middle()},
                        {kernel_.top(), program_side_.top()}}) {
      test_support::TreeCompareOptions options;
      options.ignore_xattr_prefixes = {"security.selinux"};  // opaque markers included
      EXPECT_TRUE(test_support::TreesEqual(a, b, options))
          << "lower layer " << b.filename() << " changed under " << program_.name << " (A = kernel's copy)";
    }
  }

  // Before the daemon exits (its pid could then be reused), never after.
  void StopWatchdog() {
    if (watchdog_ && watchdog_->fired()) {
      ADD_FAILURE() << program_.name << " did not finish within " << kTestTimeLimit.count()
                    << " s (a request hung?): its daemon was killed";
    }
    watchdog_.reset();
  }

  void UnmountBoth() {
    StopWatchdog();
    const std::string program_problems = program_mount_ ? program_mount_->Unmount() : "";
    EXPECT_EQ(program_problems, "") << program_.name;
    const std::string kernel_problems = kernel_mount_ ? kernel_mount_->Unmount() : "";
    EXPECT_EQ(kernel_problems, "") << "kernel overlayfs";
    EXPECT_FALSE(IsMountPoint(program_side_.merged())) << program_side_.merged() << " still mounted";
  }

  ProgramUnderTest program_;
  std::optional<test_support::TempRoot> root_;
  Side kernel_, program_side_;
  std::optional<UnionMount> kernel_mount_, program_mount_;
  std::optional<Watchdog> watchdog_;
};

TEST_P(ParityTest, ScenarioMatchesKernelOverlayfs) {
  ASSERT_NO_FATAL_FAILURE(Mount(/*read_only=*/false));
  ExpectMergedViewsEqual("before the scenario", /*allow=*/false);
  const std::map<std::string, std::string> kernel = RunScenario(Scenario());
  // The reference itself: without redirect_dir, renaming a dir that has lower parts is EXDEV.
  for (const char* step : {"rename_base_dir", "rename_middle_dir", "rename_merged_dir"}) {
    EXPECT_TRUE(kernel.at(step).starts_with("EXDEV")) << "kernel overlayfs, " << step << ": " << kernel.at(step);
  }
  ExpectMergedViewsEqual("after the scenario", /*allow=*/true);
  UnmountBoth();
  ExpectUpperDirsEqual();
  ExpectLowersUntouched();
}

// lowerdir only: a read-only view; every write fails with EROFS on both.
TEST_P(ParityTest, LowerdirOnlyIsReadOnly) {
  ASSERT_NO_FATAL_FAILURE(Mount(/*read_only=*/true));
  ExpectMergedViewsEqual("(read-only)", /*allow=*/false);
  std::vector<Step> steps;
  steps.push_back({"create", [](const fs::path& m) { return WriteFile(m / "new", O_WRONLY | O_CREAT, "x"); }});
  steps.push_back({"append", [](const fs::path& m) { return WriteFile(m / "etc/passwd", O_WRONLY | O_APPEND, "x"); }});
  steps.push_back({"chmod", [](const fs::path& m) { return Rc(::chmod((m / "etc/passwd").c_str(), 0600)); }});
  steps.push_back({"unlink", [](const fs::path& m) { return Rc(::unlink((m / "etc/passwd").c_str())); }});
  steps.push_back({"mkdir", [](const fs::path& m) { return Rc(::mkdir((m / "d").c_str(), 0755)); }});
  steps.push_back(
      {"setxattr", [](const fs::path& m) { return Rc(::lsetxattr((m / "etc/passwd").c_str(), "user.x", "1", 1, 0)); }});
  steps.push_back({"read", [](const fs::path& m) {
                     Result<std::string> text = ReadFile(m / "etc/passwd");
                     return text ? *text : text.error().ToString();
                   }});
  RunScenario(steps);
  ExpectMergedViewsEqual("(read-only, after the attempts)", /*allow=*/false);
  UnmountBoth();
  ExpectLowersUntouched();
}

INSTANTIATE_TEST_SUITE_P(Programs, ParityTest, ::testing::ValuesIn(Programs()),
                         [](const ::testing::TestParamInfo<ProgramUnderTest>& info) { return info.param.name; });

}  // namespace
}  // namespace strata
