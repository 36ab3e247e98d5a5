// containerd end to end: `strata serve` as containerd 1.6's proxy snapshotter and as its
// content store, driven with ctr the way a user would. Each test starts its own loopback
// docker-registry, `strata serve` and containerd (root, state, sockets, runc root and IO
// fifos all under one temp dir; cri and the plugins that touch system paths disabled) and
// tears them down again, mounts included, even when an assertion fails.
//
// Needs root and /usr/bin/containerd, ctr, runc and docker-registry; skips otherwise.
// Step timings are printed as "[timing] ..." lines on stderr and recorded as test
// properties. STRATA_KEEP_TEST_DIRS=1 keeps the temp dir (logs, configs) for post-mortem.
#include <dirent.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "base/digest.h"
#include "base/file.h"
#include "oci/chain_id.h"
#include "tests/support/assertions.h"
#include "tests/support/containerd_fixture.h"
#include "tests/support/strata_cli.h"
#include "tests/support/strata_containerd_test.h"
#include "tests/support/http_client.h"
#include "tests/support/image_builder.h"
#include "tests/support/process.h"
#include "tests/support/registry_fixture.h"
#include "tests/support/root.h"

namespace strata {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using test_support::Child;
using test_support::ChildOptions;
using test_support::ContainerdFixture;
using test_support::ContainerdOptions;
using test_support::CtrResult;
using test_support::NonEmptyLines;
using test_support::RegistryFixture;
using test_support::TempRoot;

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// First whitespace-separated word of each line but the header (`ctr ... ls` tables).
std::set<std::string> FirstColumn(const std::string& table) {
  std::set<std::string> words;
  std::vector<std::string> lines = NonEmptyLines(table);
  for (size_t i = 1; i < lines.size(); ++i) {
    std::istringstream in(lines[i]);
    std::string word;
    if (in >> word) words.insert(word);
  }
  return words;
}

size_t CountEntries(const fs::path& dir) {
  std::error_code ec;
  size_t count = 0;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) ++count;
  return count;
}

void Timing(const std::string& step, double seconds) {
  std::fprintf(stderr, "[timing] %s: %.3f s\n", step.c_str(), seconds);
  ::testing::Test::RecordProperty("seconds: " + step, fmt::format("{:.3f}", seconds));
}

class ContainerdTest : public test_support::StrataContainerdTest {
 protected:
  void SetUp() override {
    STRATA_REQUIRE_ROOT();
    if (std::string missing = test_support::MissingContainerdTool(); !missing.empty()) {
      GTEST_SKIP() << missing << " is not installed";
    }
    ASSERT_EQ(::access(STRATA_BIN, X_OK), 0) << STRATA_BIN << " is not built";
    // The namespace is also the cgroup parent runc creates (/sys/fs/cgroup/*/<ns>/<id>).
    namespace_ = fmt::format("strata-e2e-{}", ::getpid());
    ASSERT_OK_AND_ASSIGN(temp_, TempRoot::Create("strata-containerd"));
    ASSERT_OK_AND_ASSIGN(registry_, RegistryFixture::Start());
  }


  void StartStrata() {
    ChildOptions options{.argv = {STRATA_BIN, "--root", strata_root().string(), "--log-level", "debug", "serve",
                                  "--socket", strata_socket().string(), "--snapshotter", "strata",
                                  "--shutdown-grace", "5"},
                         .log_path = dir() / "strata.log"};
    ASSERT_OK_AND_ASSIGN(auto child, Child::Start(std::move(options)));
    strata_ = std::make_unique<Child>(std::move(child));
    const auto deadline = Clock::now() + std::chrono::seconds(30);
    while (!test_support::UnixSocketAccepts(strata_socket())) {
      ASSERT_TRUE(strata_->Running()) << "strata serve exited:\n" << strata_->LogTail();
      ASSERT_LT(Clock::now(), deadline) << "strata serve did not listen:\n" << strata_->LogTail();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  void StartContainerd(const ContainerdOptions& options = {}) {
    fs::create_directories(dir() / "fifo");
    ASSERT_OK_AND_ASSIGN(containerd_, ContainerdFixture::Start(dir() / "containerd", strata_socket(), namespace_,
                                                               options));
  }

  // ctr against our containerd, in our namespace.
  CtrResult Ctr(std::vector<std::string> args, std::chrono::seconds timeout = std::chrono::seconds(120)) {
    return containerd_->Ctr(args, timeout);
  }

  // ctr with its stdout written to `file` (binary output such as `snapshots diff`); the
  // returned output is stderr only.
  CtrResult CtrToFile(const std::vector<std::string>& args, const fs::path& file) {
    return containerd_->CtrToFile(args, file);
  }

  // `ctr snapshots --snapshotter strata ...`.
  CtrResult Snapshots(std::vector<std::string> args, const std::string& snapshotter = "strata") {
    args.insert(args.begin(), {"snapshots", "--snapshotter", snapshotter});
    return Ctr(std::move(args));
  }

  // `ctr run` with IO fifos and runc state under the temp dir instead of /run/containerd.
  CtrResult CtrRun(const std::vector<std::string>& flags, const std::string& image, const std::string& id,
             const std::string& script) {
    std::vector<std::string> args = {"run", "--fifo-dir", (dir() / "fifo").string(), "--runc-root",
                                     (dir() / "runc").string()};
    args.insert(args.end(), flags.begin(), flags.end());
    args.insert(args.end(), {image, id, "/bin/sh", "-c", script});
    return Ctr(std::move(args));
  }

  // Lines of containerd's log (level debug) containing every one of `parts`.
  std::vector<std::string> ContainerdLogLines(const std::vector<std::string>& parts) const {
    std::vector<std::string> found;
    for (const std::string& line : NonEmptyLines(containerd_->LogTail(64 << 20))) {
      bool all = true;
      for (const std::string& part : parts) all = all && Contains(line, part);
      if (all) found.push_back(line);
    }
    return found;
  }

  // True when containerd's GC logged that it removed the snapshot `name` (a chain ID or a
  // client key) from strata: the metadata layer's Remove through the proxy succeeded.
  bool GcRemovedFromStrata(const std::string& name) const {
    // logrus quotes the key only when it needs to (key=ns/9/w1, key="ns/6/sha256:...").
    for (const std::string& end : {std::string("\""), std::string(" ")}) {
      if (!ContainerdLogLines({"msg=\"removed snapshot\"", "snapshotter=strata", "/" + name + end}).empty()) return true;
    }
    return false;
  }

  std::string Ref(const std::string& repository) const { return registry_->host() + "/" + repository + ":1"; }

  // A busybox base plus two layers: /data/two and /data/gone, then /data/three and a
  // whiteout of /data/gone. Sets the image's chain IDs (base first).
  void PushThreeLayerImage(const std::string& repository, std::vector<Digest>& chain_ids,
                           std::optional<test_support::PushedImage>* pushed_out = nullptr) {
    ASSERT_OK_AND_ASSIGN(auto busybox, test_support::BusyboxLayer());
    ASSERT_OK_AND_ASSIGN(auto base, busybox.Build());
    ASSERT_OK_AND_ASSIGN(auto middle, test_support::LayerBuilder()
                                          .Dir("data")
                                          .File("data/two", "layer two\n")
                                          .File("data/gone", "whited out above\n")
                                          .Build());
    ASSERT_OK_AND_ASSIGN(auto top, test_support::LayerBuilder()
                                       .Dir("data")
                                       .File("data/three", "layer three\n")
                                       .Whiteout("data/gone")
                                       .Build());
    test_support::ImageBuilder builder;
    builder.AddLayer(base, {.created_by = "busybox"})
        .AddLayer(middle, {.created_by = "two"})
        .AddLayer(top, {.created_by = "three"})
        .Cmd({"/bin/sh"});
    ASSERT_OK_AND_ASSIGN(auto pushed, builder.PushTo(*registry_, repository, "1"));
    chain_ids = oci::ChainIDs(pushed.diff_ids);
    ASSERT_EQ(chain_ids.size(), 3u);
    if (pushed_out != nullptr) *pushed_out = pushed;
  }

  // The busybox base and one other layer (shares the base snapshot with the image above).
  void PushTwoLayerImage(const std::string& repository, std::vector<Digest>& chain_ids) {
    ASSERT_OK_AND_ASSIGN(auto busybox, test_support::BusyboxLayer());
    ASSERT_OK_AND_ASSIGN(auto base, busybox.Build());
    ASSERT_OK_AND_ASSIGN(auto other, test_support::LayerBuilder().File("other.txt", "other image\n").Build());
    test_support::ImageBuilder builder;
    builder.AddLayer(base).AddLayer(other).Cmd({"/bin/sh"});
    ASSERT_OK_AND_ASSIGN(auto pushed, builder.PushTo(*registry_, repository, "1"));
    chain_ids = oci::ChainIDs(pushed.diff_ids);
  }

  void Pull(const std::string& ref, const std::string& snapshotter, const std::string& timing_name = {}) {
    CtrResult pull = Ctr({"images", "pull", "--plain-http", "--snapshotter", snapshotter, ref});
    ASSERT_EQ(pull.code, 0) << pull.output;
    if (!timing_name.empty()) Timing(timing_name, pull.seconds);
  }

  std::string namespace_;
};

// Pull (unpack through strata), run, and compare the pull with containerd's own overlayfs.
TEST_F(ContainerdTest, SnapshotProxyPullsAndRunsAMultiLayerImage) {
  ASSERT_NO_FATAL_FAILURE(StartStrata());
  ASSERT_NO_FATAL_FAILURE(StartContainerd());
  std::vector<Digest> chain;
  ASSERT_NO_FATAL_FAILURE(PushThreeLayerImage("e2e/multi", chain));
  const std::string ref = Ref("e2e/multi");

  // Download once, then unpack the same content with each snapshotter: the two pulls below
  // differ only in the snapshotter.
  CtrResult fetch = Ctr({"content", "fetch", "--plain-http", ref});
  ASSERT_EQ(fetch.code, 0) << fetch.output;
  Timing("content fetch (download, containerd's local store)", fetch.seconds);
  ASSERT_NO_FATAL_FAILURE(Pull(ref, "strata", "images pull --snapshotter strata (unpack through strata)"));
  ASSERT_NO_FATAL_FAILURE(Pull(ref, "overlayfs", "images pull --snapshotter overlayfs (unpack, containerd's own)"));

  // The chain, as containerd sees it through strata: committed, named by chain ID, linked.
  CtrResult ls = Snapshots({"ls"});
  ASSERT_EQ(ls.code, 0) << ls.output;
  EXPECT_EQ(FirstColumn(ls.output),
            (std::set<std::string>{chain[0].ToString(), chain[1].ToString(), chain[2].ToString()}))
      << ls.output;
  for (size_t i = 0; i < chain.size(); ++i) {
    CtrResult info = Snapshots({"info", chain[i].ToString()});
    ASSERT_EQ(info.code, 0) << info.output;
    json parsed = json::parse(info.output, nullptr, false);
    ASSERT_FALSE(parsed.is_discarded()) << info.output;
    EXPECT_EQ(parsed.value("Kind", ""), "Committed") << info.output;
    EXPECT_EQ(parsed.value("Parent", ""), i == 0 ? "" : chain[i - 1].ToString()) << info.output;
  }
  // One directory per snapshot in strata's root (the extraction snapshots were renamed by
  // Commit, not copied).
  EXPECT_EQ(CountEntries(proxy_snapshots_dir()), 3u);

  CtrResult run = CtrRun({"--snapshotter", "strata", "--rm"}, ref, "c1",
                   "echo hello; cat /data/two /data/three; test -e /data/gone || echo gone is gone");
  ASSERT_EQ(run.code, 0) << run.output;
  EXPECT_EQ(run.output, "hello\nlayer two\nlayer three\ngone is gone\n");
  Timing("ctr run --rm (strata snapshot)", run.seconds);

  CtrResult run_overlay = CtrRun({"--snapshotter", "overlayfs", "--rm"}, ref, "c2", "cat /data/three");
  ASSERT_EQ(run_overlay.code, 0) << run_overlay.output;
  EXPECT_EQ(run_overlay.output, "layer three\n");
  Timing("ctr run --rm (overlayfs snapshot)", run_overlay.seconds);
}

// A container that writes files: its active snapshot, `snapshots diff` of it, and a snapshot
// prepared, written, committed and diffed with `ctr snapshots`.
TEST_F(ContainerdTest, SnapshotProxyWritesCommitsAndDiffs) {
  ASSERT_NO_FATAL_FAILURE(StartStrata());
  ASSERT_NO_FATAL_FAILURE(StartContainerd());
  std::vector<Digest> chain;
  ASSERT_NO_FATAL_FAILURE(PushThreeLayerImage("e2e/writer", chain));
  const std::string ref = Ref("e2e/writer");
  ASSERT_NO_FATAL_FAILURE(Pull(ref, "strata"));
  const std::string top = chain.back().ToString();

  CtrResult write = CtrRun({"--snapshotter", "strata"}, ref, "w1",
                     "echo written > /data/new; rm /data/two; mkdir -p /var/lib/app; echo state > /var/lib/app/state");
  ASSERT_EQ(write.code, 0) << write.output;

  CtrResult info = Snapshots({"info", "w1"});
  ASSERT_EQ(info.code, 0) << info.output;
  json parsed = json::parse(info.output, nullptr, false);
  ASSERT_FALSE(parsed.is_discarded()) << info.output;
  EXPECT_EQ(parsed.value("Kind", ""), "Active");
  EXPECT_EQ(parsed.value("Parent", ""), top);

  // The container's writes are in strata's directory for that snapshot (the upperdir).
  CtrResult mounts = Snapshots({"mounts", (dir() / "unused").string(), "w1"});
  ASSERT_EQ(mounts.code, 0) << mounts.output;
  const size_t upper_at = mounts.output.find("upperdir=");
  ASSERT_NE(upper_at, std::string::npos) << mounts.output;
  const size_t upper_end = mounts.output.find_first_of(",\n ", upper_at);
  const fs::path upper = mounts.output.substr(upper_at + 9, upper_end - upper_at - 9);
  EXPECT_TRUE(upper.string().starts_with(proxy_snapshots_dir().string())) << upper;
  ASSERT_OK_AND_ASSIGN(std::string written, ReadFile(upper / "data/new"));
  EXPECT_EQ(written, "written\n");

  CtrResult usage = Snapshots({"usage", "w1"});
  ASSERT_EQ(usage.code, 0) << usage.output;
  EXPECT_TRUE(Contains(usage.output, "w1")) << usage.output;

  // `snapshots diff` of the container's snapshot against its parent: containerd's differ
  // mounts strata's mounts and writes the layer into its content store.
  const fs::path w1_tar = dir() / "w1.tar";
  CtrResult diff = CtrToFile({"snapshots", "--snapshotter", "strata", "diff", "--media-type",
                        "application/vnd.oci.image.layer.v1.tar", "w1"},
                       w1_tar);
  ASSERT_EQ(diff.code, 0) << diff.output;
  Timing("snapshots diff (container snapshot)", diff.seconds);
  std::string listing;
  ASSERT_OK_AND_ASSIGN(int tar_code, test_support::RunCommand({"tar", "-tf", w1_tar.string()}, &listing));
  ASSERT_EQ(tar_code, 0) << listing;
  std::set<std::string> entries;
  for (const std::string& line : NonEmptyLines(listing)) entries.insert(line);
  for (const char* expected : {"data/new", "data/.wh.two", "var/lib/app/state"}) {
    EXPECT_TRUE(entries.contains(expected)) << expected << " missing from the diff:\n" << listing;
  }
  EXPECT_FALSE(entries.contains("data/three")) << listing;  // unchanged

  // prepare -> write through the mounts strata returns -> commit.
  CtrResult prepare = Snapshots({"prepare", "work", top});
  ASSERT_EQ(prepare.code, 0) << prepare.output;
  const fs::path mnt = dir() / "mnt";
  fs::create_directories(mnt);
  CtrResult mount_command = Snapshots({"mounts", mnt.string(), "work"});
  ASSERT_EQ(mount_command.code, 0) << mount_command.output;
  ASSERT_TRUE(mount_command.output.starts_with("mount -t overlay overlay ")) << mount_command.output;
  std::string output;
  ASSERT_OK_AND_ASSIGN(int mount_code, test_support::RunCommand({"/bin/sh", "-c", mount_command.output}, &output));
  ASSERT_EQ(mount_code, 0) << output;
  {
    ASSERT_OK_AND_ASSIGN(std::string three, ReadFile(mnt / "data/three"));
    EXPECT_EQ(three, "layer three\n");
    ASSERT_OK(AtomicWriteFile(mnt / "data/committed.txt", "committed through ctr\n"));
  }
  ASSERT_OK_AND_ASSIGN(int umount_code, test_support::RunCommand({"umount", mnt.string()}, &output));
  ASSERT_EQ(umount_code, 0) << output;

  CtrResult commit = Snapshots({"commit", "work-committed", "work"});
  ASSERT_EQ(commit.code, 0) << commit.output;
  CtrResult committed = Snapshots({"info", "work-committed"});
  ASSERT_EQ(committed.code, 0) << committed.output;
  parsed = json::parse(committed.output, nullptr, false);
  ASSERT_FALSE(parsed.is_discarded()) << committed.output;
  EXPECT_EQ(parsed.value("Kind", ""), "Committed");
  EXPECT_EQ(parsed.value("Parent", ""), top);
  EXPECT_NE(Snapshots({"info", "work"}).code, 0) << "the active key is gone after commit";

  CtrResult tree = Snapshots({"tree"});
  ASSERT_EQ(tree.code, 0) << tree.output;
  EXPECT_TRUE(Contains(tree.output, "\\_ work-committed")) << tree.output;
  EXPECT_TRUE(Contains(tree.output, "\\_ w1")) << tree.output;

  CtrResult committed_diff = CtrToFile({"snapshots", "--snapshotter", "strata", "diff", "--media-type",
                                  "application/vnd.oci.image.layer.v1.tar", "work-committed"},
                                 dir() / "committed.tar");
  ASSERT_EQ(committed_diff.code, 0) << committed_diff.output;
  ASSERT_OK_AND_ASSIGN(tar_code, test_support::RunCommand({"tar", "-xOf", (dir() / "committed.tar").string(),
                                                           "data/committed.txt"},
                                                          &listing));
  ASSERT_EQ(tar_code, 0) << listing;
  EXPECT_EQ(listing, "committed through ctr\n");

  // A view of the committed snapshot: an overlay of its four lowers (nearest first), no
  // upper, as containerd's overlayfs gives for a view with several parents. (The mounts come
  // from View's answer: `ctr snapshots view` sets no gc.root label, so the view itself is
  // fair game for containerd's next GC and a later `snapshots mounts` may not find it.)
  CtrResult view = Snapshots({"view", "--mounts", "look", "work-committed"});
  ASSERT_EQ(view.code, 0) << view.output;
  json view_mounts = json::parse(view.output, nullptr, false);
  ASSERT_TRUE(view_mounts.is_array() && view_mounts.size() == 1) << view.output;
  EXPECT_EQ(view_mounts[0].value("Type", ""), "overlay") << view.output;
  std::vector<std::string> lowers;
  for (const json& option : view_mounts[0].value("Options", json::array())) {
    const std::string text = option.get<std::string>();
    EXPECT_FALSE(text.starts_with("upperdir=") || text.starts_with("workdir=")) << view.output;
    if (!text.starts_with("lowerdir=")) continue;
    std::istringstream in(text.substr(9));
    for (std::string lower; std::getline(in, lower, ':');) lowers.push_back(lower);
  }
  ASSERT_EQ(lowers.size(), 4u) << view.output;
  EXPECT_TRUE(fs::exists(fs::path(lowers[0]) / "data/committed.txt")) << lowers[0];  // the committed work
  for (const std::string& lower : lowers) EXPECT_TRUE(lower.starts_with(proxy_snapshots_dir().string())) << lower;
}

// containerd's GC: unreferenced snapshots are removed through the proxy and their
// directories reclaimed; a base layer still used by another image stays.
TEST_F(ContainerdTest, ContainerdGcRemovesSnapshotsAndStrataReclaimsTheirDirs) {
  ASSERT_NO_FATAL_FAILURE(StartStrata());
  ASSERT_NO_FATAL_FAILURE(StartContainerd());
  std::vector<Digest> chain, other_chain;
  ASSERT_NO_FATAL_FAILURE(PushThreeLayerImage("e2e/gc", chain));
  ASSERT_NO_FATAL_FAILURE(PushTwoLayerImage("e2e/other", other_chain));
  ASSERT_EQ(other_chain[0], chain[0]);  // same busybox base
  const std::string ref = Ref("e2e/gc");
  const std::string other_ref = Ref("e2e/other");
  ASSERT_NO_FATAL_FAILURE(Pull(ref, "strata"));
  ASSERT_NO_FATAL_FAILURE(Pull(other_ref, "strata"));

  // Garbage of several kinds: a stopped container with writes, a committed snapshot, the
  // view `snapshots diff` made (the client's Remove only drops containerd's record).
  CtrResult write = CtrRun({"--snapshotter", "strata"}, ref, "w1", "echo x > /data/x");
  ASSERT_EQ(write.code, 0) << write.output;
  ASSERT_EQ(Snapshots({"prepare", "work", chain.back().ToString()}).code, 0);
  ASSERT_EQ(Snapshots({"commit", "work-committed", "work"}).code, 0);
  CtrResult diff = CtrToFile({"snapshots", "--snapshotter", "strata", "diff", "w1"}, dir() / "w1.tar.gz");
  ASSERT_EQ(diff.code, 0) << diff.output;
  const size_t before = CountEntries(proxy_snapshots_dir());
  EXPECT_GE(before, 6u);  // 3 + 1 chain snapshots, w1, work-committed (+ the diff's views)

  CtrResult rm_container = Ctr({"containers", "rm", "w1"});
  ASSERT_EQ(rm_container.code, 0) << rm_container.output;
  CtrResult rm_snapshot = Snapshots({"rm", "work-committed"});
  ASSERT_EQ(rm_snapshot.code, 0) << rm_snapshot.output;
  CtrResult rmi = Ctr({"images", "rm", "--sync", ref});
  ASSERT_EQ(rmi.code, 0) << rmi.output;
  Timing("images rm --sync (GC through strata)", rmi.seconds);

  // containerd's GC walked strata's snapshots and removed the garbage, leaves first, with
  // Remove through the proxy (Cleanup then reclaimed the directories, checked below).
  for (const std::string& removed : {std::string("w1"), std::string("work-committed"), chain[2].ToString(),
                                     chain[1].ToString()}) {
    EXPECT_TRUE(GcRemovedFromStrata(removed)) << removed << "\n" << containerd_->LogTail(16384);
  }
  EXPECT_FALSE(GcRemovedFromStrata(chain[0].ToString())) << "the shared base is still used";
  EXPECT_TRUE(ContainerdLogLines({"failed to remove snapshot"}).empty()) << containerd_->LogTail(16384);
  EXPECT_TRUE(ContainerdLogLines({"garbage collection failed"}).empty()) << containerd_->LogTail(16384);

  // Only the other image's chain is left, in containerd's view and on strata's disk.
  CtrResult ls = Snapshots({"ls"});
  ASSERT_EQ(ls.code, 0) << ls.output;
  EXPECT_EQ(FirstColumn(ls.output), (std::set<std::string>{other_chain[0].ToString(), other_chain[1].ToString()}))
      << ls.output;
  EXPECT_EQ(CountEntries(proxy_snapshots_dir()), 2u);

  CtrResult rmi_other = Ctr({"images", "rm", "--sync", other_ref});
  ASSERT_EQ(rmi_other.code, 0) << rmi_other.output;
  ls = Snapshots({"ls"});
  ASSERT_EQ(ls.code, 0) << ls.output;
  EXPECT_TRUE(FirstColumn(ls.output).empty()) << ls.output;
  EXPECT_EQ(CountEntries(proxy_snapshots_dir()), 0u);
  EXPECT_TRUE(GcRemovedFromStrata(other_chain[0].ToString()));
  EXPECT_TRUE(ContainerdLogLines({"failed to remove snapshot"}).empty()) << containerd_->LogTail(16384);
  EXPECT_TRUE(ContainerdLogLines({"garbage collection failed"}).empty()) << containerd_->LogTail(16384);
}

// strata as containerd's content store: blobs land in strata's store, containerd's labels
// are kept there, the image runs, and containerd's content GC deletes through strata.
TEST_F(ContainerdTest, ContentProxyStoresBlobsInStrata) {
  ASSERT_NO_FATAL_FAILURE(StartStrata());
  ASSERT_NO_FATAL_FAILURE(StartContainerd({.content_proxy = true}));
  std::vector<Digest> chain;
  std::optional<test_support::PushedImage> pushed_image;
  ASSERT_NO_FATAL_FAILURE(PushThreeLayerImage("e2e/content", chain, &pushed_image));
  ASSERT_TRUE(pushed_image.has_value());
  const test_support::PushedImage& pushed = *pushed_image;
  const std::string ref = Ref("e2e/content");

  ASSERT_NO_FATAL_FAILURE(Pull(ref, "overlayfs", "images pull (download into strata content, overlayfs unpack)"));
  std::vector<Digest> blobs = {pushed.manifest_digest, pushed.config_digest};
  blobs.insert(blobs.end(), pushed.layer_digests.begin(), pushed.layer_digests.end());
  for (const Digest& blob : blobs) {
    EXPECT_TRUE(fs::is_regular_file(strata_root() / "blobs" / "sha256" / blob.hex())) << blob.ToString();
  }
  EXPECT_FALSE(fs::exists(dir() / "containerd" / "root" / "io.containerd.content.v1.content"));

  CtrResult content = Ctr({"content", "ls"});
  ASSERT_EQ(content.code, 0) << content.output;
  for (const Digest& blob : blobs) EXPECT_TRUE(Contains(content.output, blob.ToString())) << content.output;
  // Labels containerd put on the blobs come back from strata.
  EXPECT_TRUE(Contains(content.output, "containerd.io/uncompressed=" + pushed.diff_ids[0].ToString()))
      << content.output;

  CtrResult run = CtrRun({"--rm"}, ref, "c1", "echo hello from strata content; cat /data/three");
  ASSERT_EQ(run.code, 0) << run.output;
  EXPECT_EQ(run.output, "hello from strata content\nlayer three\n");

  CtrResult rmi = Ctr({"images", "rm", "--sync", ref});
  ASSERT_EQ(rmi.code, 0) << rmi.output;
  for (const Digest& blob : blobs) {
    EXPECT_FALSE(fs::exists(strata_root() / "blobs" / "sha256" / blob.hex())) << blob.ToString();
  }
  CtrResult empty = Ctr({"content", "ls", "-q"});
  ASSERT_EQ(empty.code, 0) << empty.output;
  EXPECT_TRUE(NonEmptyLines(empty.output).empty()) << empty.output;
}

// A proxy plugin name strata does not serve: the pull fails with strata's NotFound as
// containerd reports it, and containerd and strata carry on.
TEST_F(ContainerdTest, ProxyNameStrataDoesNotServeFailsThePullCleanly) {
  ASSERT_NO_FATAL_FAILURE(StartStrata());
  ASSERT_NO_FATAL_FAILURE(StartContainerd({.snapshot_proxies = {"strata", "strata-unserved"}}));
  std::vector<Digest> chain;
  ASSERT_NO_FATAL_FAILURE(PushThreeLayerImage("e2e/unserved", chain));
  const std::string ref = Ref("e2e/unserved");

  CtrResult pull = Ctr({"images", "pull", "--plain-http", "--snapshotter", "strata-unserved", ref});
  EXPECT_NE(pull.code, 0) << pull.output;
  // ctr: failed to prepare extraction snapshot "extract-... sha256:...": snapshotter
  // "strata-unserved" is not served here (serving: strata): not found
  EXPECT_TRUE(Contains(pull.output, "\"strata-unserved\" is not served here")) << pull.output;
  EXPECT_TRUE(Contains(pull.output, "not found")) << pull.output;
  EXPECT_TRUE(strata_->Running()) << strata_->LogTail();
  EXPECT_EQ(CountEntries(proxy_snapshots_dir()), 0u);

  ASSERT_NO_FATAL_FAILURE(Pull(ref, "strata"));
  CtrResult run = CtrRun({"--snapshotter", "strata", "--rm"}, ref, "c1", "cat /data/two");
  ASSERT_EQ(run.code, 0) << run.output;
  EXPECT_EQ(run.output, "layer two\n");
}

// strata's registry mirror (`strata serve --no-socket --registry`, pulling through from the
// docker-registry fixture) as containerd's registry: ctr pulls over plain HTTP and runs.
TEST_F(ContainerdTest, CtrPullsAndRunsFromTheStrataRegistryMirror) {
  std::vector<Digest> chain_ids;
  ASSERT_NO_FATAL_FAILURE(PushTwoLayerImage("mirrored/app", chain_ids));
  ASSERT_OK_AND_ASSIGN(int port, test_support::PickFreeLoopbackPort());
  const std::string mirror = fmt::format("127.0.0.1:{}", port);
  ChildOptions options{.argv = {STRATA_BIN, "--root", (dir() / "mirror-root").string(), "serve", "--no-socket",
                                "--registry", mirror, "--upstream", registry_->url()},
                       .env = {{"STRATA_CERTS_DIR", (dir() / "no-certs").string()}},
                       .log_path = dir() / "mirror.log"};
  ASSERT_OK_AND_ASSIGN(Child mirror_child, Child::Start(std::move(options)));
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  for (;;) {
    auto answer = test_support::TestHttpClient().Get("http://" + mirror + "/v2/");
    if (answer && answer->status == 200) break;
    ASSERT_TRUE(mirror_child.Running()) << mirror_child.LogTail();
    ASSERT_LT(Clock::now(), deadline) << "mirror did not answer:\n" << mirror_child.LogTail();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_NO_FATAL_FAILURE(StartContainerd());
  const std::string ref = mirror + "/mirrored/app:1";
  ASSERT_NO_FATAL_FAILURE(Pull(ref, "overlayfs"));
  CtrResult run = CtrRun({"--rm", "--snapshotter", "overlayfs"}, ref, "mirror-run", "cat /other.txt");
  ASSERT_EQ(run.code, 0) << run.output << mirror_child.LogTail();
  EXPECT_EQ(run.output, "other image\n");
}

}  // namespace
}  // namespace strata
