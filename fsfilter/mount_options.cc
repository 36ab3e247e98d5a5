#include "fsfilter/mount_options.h"

#include <algorithm>
#include <array>
#include <string_view>

namespace strata::fsfilter {

namespace {

// Splits on `separator` unless escaped with a backslash; removes the escapes.
std::vector<std::string> SplitEscaped(std::string_view text, char separator) {
  std::vector<std::string> parts(1);
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 1 < text.size()) {
      parts.back().push_back(text[++i]);
    } else if (text[i] == separator) {
      parts.emplace_back();
    } else {
      parts.back().push_back(text[i]);
    }
  }
  return parts;
}

// Splits an -o list on ',' keeping "\," escapes for the option's own parser.
std::vector<std::string> SplitOptionList(std::string_view text) {
  std::vector<std::string> parts(1);
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 1 < text.size()) {
      parts.back().push_back(text[i]);
      parts.back().push_back(text[++i]);
    } else if (text[i] == ',') {
      parts.emplace_back();
    } else {
      parts.back().push_back(text[i]);
    }
  }
  return parts;
}

std::string Unescape(std::string_view text) { return SplitEscaped(text, '\0').front(); }

// Mount flags the kernel understands; passed through to the FUSE mount.
constexpr std::array kForwardedFlags = {"nosuid", "suid", "nodev", "dev", "noexec", "exec", "noatime", "atime",
                                        "relatime", "norelatime", "strictatime", "nodiratime", "diratime",
                                        "lazytime", "nolazytime", "sync", "async", "dirsync"};

// Accepted for compatibility (fuse-overlayfs, mount(8), kernel overlay) and ignored.
constexpr std::array kIgnoredOptions = {"rw", "defaults", "auto", "noauto", "user", "nouser", "users", "_netdev",
                                        "nofail", "static_nlink", "noacl", "userxattr", "volatile", "allow_root",
                                        "fast_ino", "threaded", "fsync", "timeout", "xattr_permissions",
                                        "redirect_dir", "index", "metacopy", "xino", "nfs_export", "context",
                                        "fscontext", "defcontext", "rootcontext", "comment", "max_idle_threads",
                                        "plugins", "uuid", "clone_fd"};

constexpr std::array kUnsupportedOptions = {"uidmapping", "gidmapping", "squash_to_root", "squash_to_uid",
                                            "squash_to_gid", "noxattrs"};

template <size_t N>
bool Contains(const std::array<const char*, N>& list, std::string_view key) {
  return std::any_of(list.begin(), list.end(), [&](const char* item) { return key == item; });
}

Status ApplyOption(const std::string& option, CommandLine& line) {
  const size_t eq = option.find('=');
  const std::string key = option.substr(0, eq);
  const std::string value = eq == std::string::npos ? "" : option.substr(eq + 1);
  const bool has_value = eq != std::string::npos;
  auto need_value = [&]() -> Status {
    if (!has_value || value.empty()) return Fail(ErrorCode::kInvalidArgument, "option \"{}\" needs a value", key);
    return {};
  };
  if (key.empty()) return {};
  if (key == "lowerdir") {
    STRATA_RETURN_IF_ERROR(need_value());
    line.layers.lower_dirs.clear();
    for (const std::string& dir : SplitEscaped(value, ':')) {
      if (dir.empty()) return Fail(ErrorCode::kInvalidArgument, "lowerdir=\"{}\" has an empty directory", value);
      line.layers.lower_dirs.emplace_back(dir);
    }
  } else if (key == "upperdir") {
    STRATA_RETURN_IF_ERROR(need_value());
    line.layers.upper_dir = Unescape(value);
  } else if (key == "workdir") {
    STRATA_RETURN_IF_ERROR(need_value());
    line.layers.work_dir = Unescape(value);
  } else if (key == "fsname") {
    STRATA_RETURN_IF_ERROR(need_value());
    line.mount.fsname = value;
  } else if (key == "windows" && !has_value) {
    line.windows_layers = true;
  } else if (key == "subtype") {
    // always strata-fsfilter
  } else if (key == "allow_other") {
    line.mount.allow_other = true;
  } else if (key == "default_permissions") {
    line.mount.default_permissions = true;
  } else if (key == "ro") {
    line.mount.read_only = true;
  } else if (key == "debug") {
    line.mount.debug = true;
    line.foreground = true;
  } else if (key == "writeback") {
    line.mount.writeback_cache = value != "0" && value != "false";
  } else if (key == "passthrough") {
    if (value == "0" || value == "false" || value == "off") {
      line.mount.passthrough = FusePassthroughMode::kOff;
    } else if (value == "all") {
      line.mount.passthrough = FusePassthroughMode::kAll;
    } else if (value.empty() || value == "1" || value == "true" || value == "on") {
      line.mount.passthrough = FusePassthroughMode::kOn;
    } else {
      return Fail(ErrorCode::kInvalidArgument, "passthrough=\"{}\": use 0, 1 or all", value);
    }
  } else if (key == "splice") {
    line.mount.splice = value != "0" && value != "false";
  } else if (key == "threads") {
    STRATA_RETURN_IF_ERROR(need_value());
    try {
      line.mount.max_threads = static_cast<unsigned>(std::clamp(std::stoi(value), 1, 256));
    } catch (const std::exception&) {
      return Fail(ErrorCode::kInvalidArgument, "threads=\"{}\" is not a number", value);
    }
  } else if (Contains(kForwardedFlags, key) && !has_value) {
    line.mount.mount_flags.push_back(key);
  } else if (Contains(kIgnoredOptions, key) || key.starts_with("x-")) {
    // compatibility only
  } else if (Contains(kUnsupportedOptions, key)) {
    return Fail(ErrorCode::kInvalidArgument, "option \"{}\" (fuse-overlayfs) is not supported by strata-fsfilter",
                key);
  } else {
    return Fail(ErrorCode::kInvalidArgument, "unknown option \"{}\"", option);
  }
  return {};
}

}  // namespace

Result<CommandLine> ParseCommandLine(const std::vector<std::string>& args) {
  CommandLine line;
  std::vector<std::string> positional;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "-o" || arg.starts_with("-o")) {
      std::string list;
      if (arg == "-o") {
        if (i + 1 >= args.size()) return Fail(ErrorCode::kInvalidArgument, "-o needs an option list");
        list = args[++i];
      } else {
        list = arg.substr(2);
      }
      for (const std::string& option : SplitOptionList(list)) STRATA_RETURN_IF_ERROR(ApplyOption(option, line));
    } else if (arg == "-f") {
      line.foreground = true;
    } else if (arg == "-d" || arg == "--debug") {
      line.foreground = true;
      line.mount.debug = true;
    } else if (arg == "-s") {
      line.mount.max_threads = 1;
    } else if (arg == "-h" || arg == "--help") {
      line.help = true;
    } else if (arg == "-V" || arg == "--version") {
      line.version = true;
    } else if (arg.starts_with("-") && arg != "-") {
      return Fail(ErrorCode::kInvalidArgument, "unknown argument \"{}\"", arg);
    } else {
      positional.push_back(arg);
    }
  }
  if (line.help || line.version) return line;
  if (positional.empty()) return Fail(ErrorCode::kInvalidArgument, "missing mount point");
  if (positional.size() > 2)
    return Fail(ErrorCode::kInvalidArgument, "unexpected argument \"{}\" (usage: [SOURCE] MOUNTPOINT)", positional[2]);
  line.mount.mountpoint = positional.back();
  if (positional.size() == 2 && line.mount.fsname == "strata-fsfilter") line.mount.fsname = positional.front();
  if (line.layers.lower_dirs.empty()) return Fail(ErrorCode::kInvalidArgument, "missing -o lowerdir=DIR[:DIR...]");
  if (line.windows_layers && !line.layers.upper_dir.empty())
    return Fail(ErrorCode::kInvalidArgument, "upperdir=\"{}\": windows layer views are read-only",
                line.layers.upper_dir.string());
  if (!line.layers.upper_dir.empty() && line.layers.work_dir.empty())
    return Fail(ErrorCode::kInvalidArgument, "upperdir=\"{}\" needs workdir=", line.layers.upper_dir.string());
  if (line.layers.upper_dir.empty() && !line.layers.work_dir.empty())
    return Fail(ErrorCode::kInvalidArgument, "workdir=\"{}\" needs upperdir=", line.layers.work_dir.string());
  if (line.mount.fsname.find_first_of(",\\") != std::string::npos) line.mount.fsname = "strata-fsfilter";
  return line;
}

std::string UsageText() {
  return "usage: strata-fsfilter [-f] [-d] -o lowerdir=DIR[:DIR...][,upperdir=DIR,workdir=DIR][,OPTS] MOUNTPOINT\n"
         "       strata-fsfilter SOURCE MOUNTPOINT -o OPTS   (as run by mount -t fuse3.strata-fsfilter)\n"
         "\n"
         "A userspace union filesystem with kernel overlayfs semantics; the upper dir is left in\n"
         "overlay form. lowerdir alone gives a read-only view.\n"
         "\n"
         "options:\n"
         "  lowerdir=A:B       read-only layers, topmost first (escape ':' or ',' with '\\')\n"
         "  upperdir=U         writable layer; needs workdir=W on the same filesystem\n"
         "  windows            lowerdir= entries are Windows layer dirs (made by strata): a read-only\n"
         "                     view of their Files/ trees with case-insensitive names and the Windows\n"
         "                     metadata as user.windows.* xattrs (see fsfilter/README.md)\n"
         "  allow_other        let other users in (turns on default_permissions)\n"
         "  default_permissions, ro, nosuid, nodev, noexec, noatime, ...\n"
         "  writeback=0        disable the kernel writeback cache\n"
         "  passthrough=0|1|all  kernel FUSE passthrough (as root on Linux 6.9+): reads and writes of\n"
         "                     open files bypass the daemon, the writeback cache is then off. 1 (default):\n"
         "                     upper-layer files and read-only views; all: lower files of writable views\n"
         "                     too (a write needing copy-up while the lower file is open: ETXTBSY); 0: off\n"
         "  threads=N          request threads (default 16); one reads /dev/fuse and answers quick\n"
         "                     requests itself, the rest go to the others\n"
         "  -f                 stay in the foreground;  -d  foreground with FUSE request tracing\n"
         "Accepted and ignored for fuse-overlayfs compatibility: rw, threaded=, fsync=, static_nlink,\n"
         "noacl, timeout=, xattr_permissions=, redirect_dir=, index=, metacopy=, x-*.\n";
}

}  // namespace strata::fsfilter
