// `strata ls REF [PATH]` and `strata cat REF PATH...`: an image's files read in-process
// through the union engine (images/image_view.h) — no mount, no privileges beyond the store.
#include <sys/sysmacros.h>
#include <unistd.h>

#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/file.h"
#include "cli/app.h"
#include "cli/format.h"
#include "images/image_view.h"
#include "oci/platform.h"
#include "store/store.h"

namespace strata::cli {
namespace {

using json = nlohmann::ordered_json;

struct BrowseArgs {
  std::string image;
  std::vector<std::string> paths;
  std::string platform;
};

// "drwxr-xr-x" as ls -l prints it (setuid/setgid/sticky included).
std::string ModeString(mode_t mode) {
  std::string text = "?rwxrwxrwx";
  switch (mode & S_IFMT) {
    case S_IFREG: text[0] = '-'; break;
    case S_IFDIR: text[0] = 'd'; break;
    case S_IFLNK: text[0] = 'l'; break;
    case S_IFCHR: text[0] = 'c'; break;
    case S_IFBLK: text[0] = 'b'; break;
    case S_IFIFO: text[0] = 'p'; break;
    case S_IFSOCK: text[0] = 's'; break;
  }
  for (int bit = 0; bit < 9; ++bit) {
    if ((mode & (0400 >> bit)) == 0) text[1 + bit] = '-';
  }
  auto special = [&](mode_t flag, int position, char set_exec, char set_no_exec) {
    if (mode & flag) text[position] = text[position] == '-' ? set_no_exec : set_exec;
  };
  special(S_ISUID, 3, 's', 'S');
  special(S_ISGID, 6, 's', 'S');
  special(S_ISVTX, 9, 't', 'T');
  return text;
}

std::string TypeName(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG: return "file";
    case S_IFDIR: return "dir";
    case S_IFLNK: return "symlink";
    case S_IFCHR: return "char";
    case S_IFBLK: return "block";
    case S_IFIFO: return "fifo";
    case S_IFSOCK: return "socket";
  }
  return "unknown";
}

std::string MtimeUtc(const struct stat& st) {
  std::tm tm{};
  const time_t seconds = st.st_mtim.tv_sec;
  gmtime_r(&seconds, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M", &tm);
  return text;
}

json EntryJson(const images::ImageView::Entry& entry) {
  json out = {{"name", entry.name},
              {"type", TypeName(entry.st.st_mode)},
              {"mode", fmt::format("{:04o}", entry.st.st_mode & 07777)},
              {"uid", entry.st.st_uid},
              {"gid", entry.st.st_gid},
              {"size", S_ISREG(entry.st.st_mode) ? entry.st.st_size : 0},
              {"mtime", entry.st.st_mtim.tv_sec}};
  if (S_ISLNK(entry.st.st_mode)) out["target"] = entry.symlink_target;
  if (S_ISCHR(entry.st.st_mode) || S_ISBLK(entry.st.st_mode)) {
    out["major"] = major(entry.st.st_rdev);
    out["minor"] = minor(entry.st.st_rdev);
  }
  return out;
}

std::vector<std::string> EntryRow(const images::ImageView::Entry& entry) {
  const bool device = S_ISCHR(entry.st.st_mode) || S_ISBLK(entry.st.st_mode);
  std::string name = entry.name;
  if (S_ISLNK(entry.st.st_mode)) name += " -> " + entry.symlink_target;
  return {ModeString(entry.st.st_mode), std::to_string(entry.st.st_uid), std::to_string(entry.st.st_gid),
          device ? fmt::format("{}, {}", major(entry.st.st_rdev), minor(entry.st.st_rdev))
                 : std::to_string(S_ISREG(entry.st.st_mode) ? entry.st.st_size : 0),
          MtimeUtc(entry.st), name};
}

std::unique_ptr<images::ImageView> OpenViewOrDie(store::Store& store, const BrowseArgs& args) {
  images::MountOptions options;
  if (!args.platform.empty()) options.platform = OrDie(oci::Platform::Parse(args.platform));
  auto snapshots = OpenSnapshotterOrDie(store);
  // The view holds the layer directories open; the snapshotter's records are not needed after.
  return OrDie(images::ImageView::Open(store, *snapshots, NormalisedNameOrDie(args.image), options));
}

void RunLs(const BrowseArgs& args, const GlobalOptions& global) {
  auto store = OpenStoreOrDie(global);
  auto view = OpenViewOrDie(*store, args);
  const std::string path = args.paths.empty() ? "/" : args.paths.front();
  // A directory (or a symlink to one) lists its entries; anything else lists itself.
  auto followed = view->Stat(path, /*follow_last=*/true);
  std::vector<images::ImageView::Entry> entries;
  if (followed && S_ISDIR(followed->st.st_mode)) {
    entries = OrDie(view->List(path));
  } else {
    entries.push_back(OrDie(view->Stat(path, /*follow_last=*/false)));
  }
  if (global.json) {
    json out = json::array();
    for (const auto& entry : entries) out.push_back(EntryJson(entry));
    fmt::print("{}\n", JsonText(out));
    return;
  }
  std::vector<std::vector<std::string>> rows = {{"MODE", "UID", "GID", "SIZE", "MODIFIED (UTC)", "NAME"}};
  for (const auto& entry : entries) rows.push_back(EntryRow(entry));
  PrintTable(rows);
}

void RunCat(const BrowseArgs& args, const GlobalOptions& global) {
  auto store = OpenStoreOrDie(global);
  auto view = OpenViewOrDie(*store, args);
  std::fflush(stdout);
  for (const std::string& path : args.paths) {
    OrDie(view->Read(path, [](std::string_view chunk) { return WriteAll(STDOUT_FILENO, chunk); }));
  }
}

}  // namespace

void AddBrowseCommands(CLI::App& app, const GlobalOptions& options) {
  auto args = std::make_shared<BrowseArgs>();
  auto* ls = app.add_subcommand(
      "ls", "List a directory of an image's root filesystem (or one entry), read in-process: no mount, no root");
  ls->add_option("image", args->image, "Image in the store, e.g. alpine:3.19")->required();
  ls->add_option("path", args->paths, "Path inside the image (default /)")->expected(0, 1);
  ls->add_option("--platform", args->platform, "Platform of an index to read (default: this host's)");
  ls->callback([args, &options] { RunLs(*args, options); });

  auto* cat = app.add_subcommand("cat", "Write files of an image's root filesystem to stdout, read in-process");
  cat->add_option("image", args->image, "Image in the store, e.g. alpine:3.19")->required();
  cat->add_option("path", args->paths, "Path(s) of regular files inside the image (symlinks followed)")->required();
  cat->add_option("--platform", args->platform, "Platform of an index to read (default: this host's)");
  cat->callback([args, &options] { RunCat(*args, options); });
}

}  // namespace strata::cli
