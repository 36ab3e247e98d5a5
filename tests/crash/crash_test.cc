// Crash consistency of pull, push, commit, gc and load: the real `strata` killed with
// SIGKILL at seeded points, then fsck, then the operation finished (tests/crash/crash_harness.h).
//
// Seeds: STRATA_CRASH_SEEDS (default 0-4 here; scripts/crash runs 50+ per operation);
// STRATA_CRASH_BIN: the strata binary to run (default: the build's).
// A failing seed prints the command that reruns it alone.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "base/file.h"
#include "store/content_store.h"
#include "tests/crash/crash_harness.h"
#include "tests/support/assertions.h"
#include "tests/support/fault_proxy.h"
#include "tests/support/image_builder.h"
#include "tests/support/registry_fixture.h"
#include "tests/support/root.h"

namespace strata::crash {
namespace {

namespace fs = std::filesystem;
using test_support::CommandRun;
using test_support::FaultProxy;
using test_support::LayerBuilder;
using test_support::PushedImage;
using test_support::RegistryFixture;

constexpr size_t kDefaultSeeds = 5;
constexpr size_t kBigFile = 12 << 20;  // per big layer: incompressible, so transfers take a while

// Files of an image as path -> content, for checks through a mount.
using FileMap = std::map<std::string, std::string>;

struct TestImage {
  PushedImage pushed;
  FileMap files;
  std::vector<uint64_t> blob_sizes;  // config, then layers
  std::vector<Digest> blobs() const {
    std::vector<Digest> all{pushed.config_digest};
    all.insert(all.end(), pushed.layer_digests.begin(), pushed.layer_digests.end());
    return all;
  }
};

Result<TestImage> PushTestImage(RegistryFixture& registry, const std::string& repository,
                                const std::vector<std::pair<LayerBuilder, test_support::Compression>>& layers,
                                FileMap files) {
  test_support::ImageBuilder builder;
  for (const auto& [layer, compression] : layers) {
    STRATA_ASSIGN_OR_RETURN(auto built, layer.Build(compression));
    builder.AddLayer(std::move(built));
  }
  STRATA_ASSIGN_OR_RETURN(auto image, builder.Build());
  auto client = registry.Client();
  STRATA_ASSIGN_OR_RETURN(PushedImage pushed, test_support::PushImage(client, registry.url(), repository, "1", image));
  TestImage result{.pushed = std::move(pushed), .files = std::move(files)};
  result.blob_sizes.push_back(image.config.data.size());
  for (const auto& layer : image.layers) result.blob_sizes.push_back(layer.data.size());
  return result;
}

// Mounts `image` read-only on <home>/check, compares `files`, unmounts.
Status CheckMountedFiles(const CrashRunner& runner, const fs::path& home, const std::string& image,
                         const FileMap& files) {
  const fs::path dir = home / "check";
  fs::create_directories(dir);
  CommandRun mount = runner.Strata(home, {"mount", image, dir.string()});
  if (mount.code != 0) return Fail(ErrorCode::kInternal, "mount {}: {}", image, mount.output);
  Status status;
  for (const auto& [path, expected] : files) {
    auto actual = ReadFile(dir / path);
    if (!actual || *actual != expected) {
      status = Fail(ErrorCode::kFailedPrecondition, "{}:/{} {} after the rerun", image, path,
                    actual ? fmt::format("has {} bytes that differ (expected {})", actual->size(), expected.size())
                           : actual.error().message());
      break;
    }
  }
  CommandRun umount = runner.Strata(home, {"umount", dir.string()});
  if (status && umount.code != 0) return Fail(ErrorCode::kInternal, "umount {}: {}", dir.string(), umount.output);
  return status;
}

Status ExpectImage(const CrashRunner& runner, const fs::path& home, const std::string& name, const Digest& target) {
  STRATA_ASSIGN_OR_RETURN(auto images, ListImages(runner, home));
  const std::string actual = images.contains(name) ? images.at(name) : "";
  if (actual != target.ToString()) {
    return Fail(ErrorCode::kFailedPrecondition, "image {} names {:?}, expected {}", name, actual, target);
  }
  return {};
}

Status Run(const CrashRunner& runner, const fs::path& home, const std::vector<std::string>& args) {
  CommandRun run = runner.Strata(home, args);
  if (run.code != 0) return Fail(ErrorCode::kInternal, "strata {}: {}", fmt::join(args, " "), run.output);
  return {};
}

// Images every operation shares, pushed once per test binary.
struct Images {
  std::unique_ptr<RegistryFixture> registry;
  std::optional<TestImage> base;  // small: the committed data a store holds before the operation
  std::optional<TestImage> big;   // a small-file layer and three 12 MiB layers (gzip, zstd, gzip)
  std::optional<TestImage> many;  // three layers of 1000 small files each (gc has files to remove)
  std::string Name(const std::string& repository) const { return registry->host() + "/" + repository + ":1"; }
};

Images* shared_images = nullptr;

class CrashConsistencyTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (::geteuid() != 0) return;
    auto images = std::make_unique<Images>();
    auto registry = RegistryFixture::Start();
    ASSERT_TRUE(registry) << registry.error().ToString();
    images->registry = std::move(*registry);
    {
      LayerBuilder layer;
      layer.Dir("etc").File("etc/base.txt", "committed before the crash\n");
      ASSERT_OK_AND_ASSIGN(images->base, PushTestImage(*images->registry, "crash/base",
                                                       {{layer, test_support::Compression::kGzip}},
                                                       {{"etc/base.txt", "committed before the crash\n"}}));
    }
    {
      std::vector<std::pair<LayerBuilder, test_support::Compression>> layers;
      FileMap files;
      LayerBuilder small;
      small.Dir("small");
      for (int i = 0; i < 64; ++i) {
        std::string content = fmt::format("small file {}\n", i);
        small.File(fmt::format("small/f{}", i), content);
        if (i % 16 == 0) files[fmt::format("small/f{}", i)] = content;
      }
      layers.emplace_back(small, test_support::Compression::kGzip);
      const test_support::Compression compressions[] = {test_support::Compression::kGzip,
                                                        test_support::Compression::kZstd,
                                                        test_support::Compression::kGzip};
      for (int i = 1; i <= 3; ++i) {
        std::string data = test_support::RandomBytes(kBigFile, 1000 + i);
        files[fmt::format("big{}.bin", i)] = data;
        LayerBuilder big;
        big.File(fmt::format("big{}.bin", i), std::move(data));
        layers.emplace_back(std::move(big), compressions[i - 1]);
      }
      ASSERT_OK_AND_ASSIGN(images->big, PushTestImage(*images->registry, "crash/big", layers, files));
    }
    {
      std::vector<std::pair<LayerBuilder, test_support::Compression>> layers;
      for (int l = 0; l < 3; ++l) {
        LayerBuilder layer;
        layer.Dir(fmt::format("many{}", l));
        for (int i = 0; i < 1000; ++i) layer.File(fmt::format("many{}/f{}", l, i), fmt::format("{} {}\n", l, i));
        layers.emplace_back(std::move(layer), test_support::Compression::kGzip);
      }
      ASSERT_OK_AND_ASSIGN(images->many, PushTestImage(*images->registry, "crash/many", layers, {}));
    }
    shared_images = images.release();
  }
  static void TearDownTestSuite() {
    delete shared_images;
    shared_images = nullptr;
  }

  void SetUp() override {
    STRATA_REQUIRE_ROOT();
    ASSERT_NE(shared_images, nullptr) << "suite setup failed";
  }

  Images& images() { return *shared_images; }

  // Sets up `op`, runs every seed, reports; a failing seed fails the test with the
  // command that reruns it alone.
  void RunSeeds(CrashOperation& op) {
    ASSERT_OK_AND_ASSIGN(auto work, TempDir::Create("strata-crash-work-" + op.name()));
    // scripts/crash runs a copy of the binary, so a rebuild meanwhile cannot disturb it.
    const char* bin = std::getenv("STRATA_CRASH_BIN");
    CrashRunner runner(bin != nullptr && *bin != '\0' ? bin : STRATA_BIN, work.path(), op);
    ASSERT_OK(runner.Setup());
    CrashSummary summary{.op = op.name(), .duration = runner.duration()};
    fmt::print("{}: one uncrashed run takes {} ms\n", op.name(), runner.duration().count() / 1000);
    const std::string test_name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    for (uint64_t seed : SeedsFromEnv(kDefaultSeeds)) {
      SeedOutcome outcome = runner.RunSeed(seed);
      summary.Add(outcome);
      fmt::print("{} seed {:3}{}: kill at {:5.1f}% ({:6.1f} ms) {} fsck {}{} {} refetched {} resumed {}\n", op.name(),
                 seed, outcome.same_pid ? " (same pid)" : "", 100 * outcome.fraction, outcome.delay.count() / 1000.0,
                 outcome.killed_mid_op ? "killed   " : "finished ",
                 outcome.fsck_clean ? "clean" : (outcome.fsck_repaired ? "repaired" : "FAILED"),
                 outcome.problems.empty() ? "" : fmt::format(" ({})", fmt::join(outcome.problems, "; ")),
                 outcome.completed ? "completed" : "NOT COMPLETED", outcome.bytes_refetched, outcome.bytes_resumed);
      EXPECT_TRUE(outcome.error.empty())
          << op.name() << " seed " << seed << " (kill at " << 100 * outcome.fraction << "% = "
          << outcome.delay.count() / 1000.0 << " ms): " << outcome.error
          << "\nrerun this seed alone: STRATA_CRASH_SEEDS=" << seed
          << " build/tests/crash_test --gtest_filter=CrashConsistencyTest." << test_name
          << " (add STRATA_KEEP_TEST_DIRS=1 to keep its store)";
    }
    fmt::print("summary: {}\n", summary.Row());
    AppendReport(summary);
  }
};


// Bytes of proxied GET responses per blob of `image` in `repository`.
std::map<std::string, int64_t> BlobBytesServed(const FaultProxy& proxy, const std::string& repository,
                                               const TestImage& image) {
  std::map<std::string, int64_t> bytes;
  for (const Digest& blob : image.blobs()) {
    bytes[blob.ToString()] =
        static_cast<int64_t>(proxy.BodyBytesForwarded(fmt::format("/v2/{}/blobs/{}", repository, blob.ToString())));
  }
  return bytes;
}

// pull through a counting proxy: completed blobs are never fetched again, partial ones
// resume with a Range request from where the killed process left them.
class PullOperation : public CrashOperation {
 public:
  PullOperation(Images& images, FaultProxy& proxy) : images_(images), proxy_(proxy) {}
  std::string name() const override { return "pull"; }
  Status PrepareTemplate(const fs::path& home) override {
    return Run(runner(), home, {"pull", "-q", images_.Name("crash/base")});
  }
  std::vector<std::string> Args(const fs::path&, uint64_t) const override { return {"pull", "-q", Name()}; }
  Status BeforeKilledRun(const fs::path&, uint64_t) override {
    before_kill_ = BlobBytesServed(proxy_, "crash/big", *images_.big);
    return {};
  }
  Status BeforeRerun(const fs::path& home, uint64_t) override {
    before_rerun_ = BlobBytesServed(proxy_, "crash/big", *images_.big);
    requests_before_rerun_ = proxy_.requests().size();
    STRATA_ASSIGN_OR_RETURN(committed_, ListBlobs(runner(), home));
    offsets_.clear();
    for (const Digest& blob : images_.big->blobs()) {
      const fs::path data =
          home / "store" / "ingest" / store::ContentStore::IngestDirId("fetch-" + blob.ToString()) / "data";
      std::error_code ec;
      auto size = fs::file_size(data, ec);
      offsets_[blob.ToString()] = ec ? 0 : static_cast<int64_t>(size);
    }
    return {};
  }
  Status Verify(const fs::path& home, uint64_t, SeedOutcome* outcome) override {
    STRATA_RETURN_IF_ERROR(ExpectImage(runner(), home, Name(), images_.big->pushed.manifest_digest));
    if (outcome != nullptr) STRATA_RETURN_IF_ERROR(CheckTransfers(*outcome));
    return CheckMountedFiles(runner(), home, Name(), images_.big->files);
  }

 private:
  std::string Name() const { return proxy_.host() + "/crash/big:1"; }

  Status CheckTransfers(SeedOutcome& outcome) {
    const auto after = BlobBytesServed(proxy_, "crash/big", *images_.big);
    const auto requests = proxy_.requests();
    const std::vector<Digest> blobs = images_.big->blobs();
    for (size_t i = 0; i < blobs.size(); ++i) {
      const std::string digest = blobs[i].ToString();
      const auto size = static_cast<int64_t>(images_.big->blob_sizes[i]);
      const int64_t killed_run = before_rerun_[digest] - before_kill_[digest];
      const int64_t rerun = after.at(digest) - before_rerun_[digest];
      const int64_t offset = offsets_[digest];
      if (committed_.contains(digest) && rerun != 0) {
        return Fail(ErrorCode::kFailedPrecondition,
                    "blob {} was complete before the rerun, which fetched {} bytes of it again", digest, rerun);
      }
      if (!committed_.contains(digest) && offset > 0) {
        if (rerun != size - offset) {
          return Fail(ErrorCode::kFailedPrecondition,
                      "blob {}: {} of {} bytes were in its ingest, but the rerun fetched {} (not resumed)", digest,
                      offset, size, rerun);
        }
        const std::string range = fmt::format("bytes={}-", offset);
        bool ranged = offset == size;  // all bytes were in: the rerun only commits
        for (size_t r = requests_before_rerun_; r < requests.size(); ++r) {
          ranged |= requests[r].method == "GET" && requests[r].target.ends_with(digest) &&
                    requests[r].Header("Range") == range;
        }
        if (!ranged) return Fail(ErrorCode::kFailedPrecondition, "blob {}: no GET with Range: {}", digest, range);
        outcome.bytes_resumed += offset;
      }
      // What the killed process received but did not keep (its last staged piece, bytes in
      // flight) is fetched again.
      outcome.bytes_refetched += std::max<int64_t>(0, killed_run + rerun - size);
    }
    return {};
  }

  Images& images_;
  FaultProxy& proxy_;
  std::map<std::string, int64_t> before_kill_, before_rerun_, offsets_;
  std::set<std::string> committed_;
  size_t requests_before_rerun_ = 0;
};

// push to a second registry through a counting proxy: blobs the registry had when the
// process died are not uploaded again.
class PushOperation : public CrashOperation {
 public:
  PushOperation(Images& images, RegistryFixture& target, FaultProxy& proxy)
      : images_(images), target_(target), proxy_(proxy) {}
  std::string name() const override { return "push"; }
  Status PrepareTemplate(const fs::path& home) override {
    return Run(runner(), home, {"pull", "-q", "--no-unpack", images_.Name("crash/big")});
  }
  // A repository of its own per seed (from the unique home name): nothing is there yet.
  std::vector<std::string> Args(const fs::path& home, uint64_t) const override {
    return {"push", "-q", images_.Name("crash/big"), proxy_.host() + "/" + Repository(home) + ":1"};
  }
  Status BeforeKilledRun(const fs::path&, uint64_t) override {
    requests_before_kill_ = proxy_.requests().size();
    return {};
  }
  Status BeforeRerun(const fs::path& home, uint64_t) override {
    requests_before_rerun_ = proxy_.requests().size();
    present_.clear();
    auto client = target_.Client();
    for (const Digest& blob : images_.big->blobs()) {
      STRATA_ASSIGN_OR_RETURN(auto head, client.Head(target_.V2Url(Repository(home) + "/blobs/" + blob.ToString())));
      if (head.status == 200) present_.insert(blob.ToString());
    }
    return {};
  }
  Status Verify(const fs::path& home, uint64_t, SeedOutcome* outcome) override {
    const std::string repository = Repository(home);
    auto client = target_.Client();
    STRATA_ASSIGN_OR_RETURN(auto manifest, test_support::FetchManifest(client, target_.url(), repository, "1"));
    if (manifest.status != 200 || Digest::Of(manifest.body) != images_.big->pushed.manifest_digest) {
      return Fail(ErrorCode::kFailedPrecondition, "{}:1 on the target: status {}, manifest {}", repository,
                  manifest.status, Digest::Of(manifest.body));
    }
    for (const Digest& blob : images_.big->blobs()) {
      STRATA_ASSIGN_OR_RETURN(auto head, client.Head(target_.V2Url(repository + "/blobs/" + blob.ToString())));
      if (head.status != 200) return Fail(ErrorCode::kFailedPrecondition, "blob {} missing on the target", blob);
    }
    if (outcome == nullptr) return {};
    const auto requests = proxy_.requests();
    const std::vector<Digest> blobs = images_.big->blobs();
    for (size_t i = 0; i < blobs.size(); ++i) {
      const std::string digest = blobs[i].ToString();
      if (present_.contains(digest)) outcome->bytes_resumed += static_cast<int64_t>(images_.big->blob_sizes[i]);
      int64_t uploaded = 0;
      for (size_t r = requests_before_kill_; r < requests.size(); ++r) {
        const auto& request = requests[r];
        if ((request.method != "PUT" && request.method != "PATCH") || !Names(request.target, digest)) continue;
        if (r >= requests_before_rerun_ && present_.contains(digest)) {
          return Fail(ErrorCode::kFailedPrecondition, "blob {} was on the registry before the rerun, which uploaded it again",
                      digest);
        }
        uploaded += std::stoll(request.Header("Content-Length").value_or("0"));
      }
      // Every byte went up at least once, as a PUT or PATCH naming the blob that the proxy
      // saw whole (so the counting above is not vacuous).
      const auto size = static_cast<int64_t>(images_.big->blob_sizes[i]);
      if (uploaded < size) {
        return Fail(ErrorCode::kFailedPrecondition, "blob {}: the proxy saw {} of its {} bytes uploaded", digest,
                    uploaded, size);
      }
      outcome->bytes_refetched += uploaded - size;
    }
    return {};
  }

 private:
  static std::string Repository(const fs::path& home) {
    std::string name = home.filename().string();
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) {
      return std::isalnum(c) ? static_cast<char>(std::tolower(c)) : '-';
    });
    return "pushed/" + name;
  }
  // Whether an upload request's target carries ?digest=<digest> (any escaping of the ':').
  static bool Names(const std::string& target, const std::string& digest) {
    const std::string hex = digest.substr(digest.find(':') + 1);
    return target.find("digest=") != std::string::npos && target.find(hex) != std::string::npos;
  }

  Images& images_;
  RegistryFixture& target_;
  FaultProxy& proxy_;
  size_t requests_before_kill_ = 0, requests_before_rerun_ = 0;
  std::set<std::string> present_;
};

// commit of a --rw mount holding 24 MiB of new files and 500 small ones.
class CommitOperation : public CrashOperation {
 public:
  explicit CommitOperation(Images& images) : images_(images) {
    for (int i = 0; i < 3; ++i) files_[fmt::format("new/big{}.bin", i)] = test_support::RandomBytes(8 << 20, 2000 + i);
    for (int i = 0; i < 500; ++i) files_[fmt::format("new/small/f{}", i)] = fmt::format("small {}\n", i);
  }
  std::string name() const override { return "commit"; }
  Status PrepareTemplate(const fs::path& home) override {
    return Run(runner(), home, {"pull", "-q", images_.Name("crash/base")});
  }
  Status PrepareSeed(const fs::path& home, uint64_t) override {
    fs::create_directories(home / "rw");
    STRATA_RETURN_IF_ERROR(Run(runner(), home, {"mount", "--rw", images_.Name("crash/base"), (home / "rw").string()}));
    fs::create_directories(home / "rw" / "new" / "small");
    for (const auto& [path, content] : files_) STRATA_RETURN_IF_ERROR(AtomicWriteFile(home / "rw" / path, content));
    return {};
  }
  std::vector<std::string> Args(const fs::path& home, uint64_t) const override {
    return {"commit", (home / "rw").string(), kNewName, "-m", "crash test"};
  }
  Status Verify(const fs::path& home, uint64_t, SeedOutcome*) override {
    FileMap expected = images_.base->files;
    expected.insert(files_.begin(), files_.end());
    STRATA_RETURN_IF_ERROR(CheckMountedFiles(runner(), home, kNewName, expected));
    return Run(runner(), home, {"umount", (home / "rw").string()});
  }

 private:
  static constexpr const char* kNewName = "localhost/crash/committed:1";
  Images& images_;
  FileMap files_;
};

// gc of a removed image with 3000 files in its snapshots, next to a kept one.
class GcOperation : public CrashOperation {
 public:
  explicit GcOperation(Images& images) : images_(images) {}
  std::string name() const override { return "gc"; }
  Status PrepareTemplate(const fs::path& home) override {
    STRATA_RETURN_IF_ERROR(Run(runner(), home, {"pull", "-q", images_.Name("crash/base")}));
    STRATA_ASSIGN_OR_RETURN(keep_, ListBlobs(runner(), home));
    STRATA_RETURN_IF_ERROR(Run(runner(), home, {"pull", "-q", images_.Name("crash/many")}));
    return Run(runner(), home, {"rmi", images_.Name("crash/many")});
  }
  std::vector<std::string> Args(const fs::path&, uint64_t) const override { return {"gc"}; }
  std::set<std::string> MustSurvive(const std::set<std::string>&) const override { return keep_; }
  Status Verify(const fs::path& home, uint64_t, SeedOutcome*) override {
    STRATA_ASSIGN_OR_RETURN(std::set<std::string> blobs, ListBlobs(runner(), home));
    if (blobs != keep_) {
      return Fail(ErrorCode::kFailedPrecondition, "after gc the store holds {} blobs, expected the kept image's {}",
                  blobs.size(), keep_.size());
    }
    // Only the kept image's snapshot remains, with no directory beside it.
    CommandRun ls = runner().Strata(home, {"--json", "snapshots", "ls"});
    auto list = nlohmann::json::parse(ls.output.substr(std::min(ls.output.find('['), ls.output.size())), nullptr, false);
    size_t dirs = 0;
    for ([[maybe_unused]] const auto& entry : fs::directory_iterator(home / "store" / "snapshots")) ++dirs;
    if (!list.is_array() || list.size() != 1 || dirs != 1) {
      return Fail(ErrorCode::kFailedPrecondition, "after gc: {} snapshot dirs, snapshots: {}", dirs, ls.output);
    }
    return CheckMountedFiles(runner(), home, images_.Name("crash/base"), images_.base->files);
  }

 private:
  Images& images_;
  std::set<std::string> keep_;
};

// load of archives `strata save` made: docker-archive for even seeds, oci-archive for odd.
class LoadOperation : public CrashOperation {
 public:
  LoadOperation(Images& images, fs::path archives) : images_(images), archives_(std::move(archives)) {}
  std::string name() const override { return "load"; }
  Status PrepareTemplate(const fs::path& home) override {
    STRATA_RETURN_IF_ERROR(Run(runner(), home, {"pull", "-q", images_.Name("crash/base")}));
    // The archives come from a store of their own.
    const fs::path source = archives_ / "source";
    fs::create_directories(source);
    STRATA_RETURN_IF_ERROR(Run(runner(), source, {"pull", "-q", "--no-unpack", images_.Name("crash/big")}));
    for (const char* format : {"docker-archive", "oci-archive"}) {
      STRATA_RETURN_IF_ERROR(Run(runner(), source, {"save", "--format", format, "-o",
                                                     (archives_ / (std::string(format) + ".tar")).string(),
                                                     images_.Name("crash/big")}));
    }
    return {};
  }
  std::vector<std::string> Args(const fs::path&, uint64_t seed) const override {
    return {"load", (archives_ / (seed % 2 == 0 ? "docker-archive.tar" : "oci-archive.tar")).string()};
  }
  Status Verify(const fs::path& home, uint64_t seed, SeedOutcome*) override {
    STRATA_ASSIGN_OR_RETURN(auto names, ListImages(runner(), home));
    if (!names.contains(images_.Name("crash/big"))) {
      return Fail(ErrorCode::kFailedPrecondition, "load recorded no image {}", images_.Name("crash/big"));
    }
    if (seed % 2 == 1) {  // an OCI archive keeps the digests (a docker archive's layers are its tars)
      STRATA_RETURN_IF_ERROR(ExpectImage(runner(), home, images_.Name("crash/big"), images_.big->pushed.manifest_digest));
    }
    return CheckMountedFiles(runner(), home, images_.Name("crash/big"), images_.big->files);
  }

 private:
  Images& images_;
  fs::path archives_;
};

TEST_F(CrashConsistencyTest, Pull) {
  ASSERT_OK_AND_ASSIGN(auto proxy, FaultProxy::Start(images().registry->url()));
  PullOperation op(images(), *proxy);
  RunSeeds(op);
}

TEST_F(CrashConsistencyTest, Push) {
  ASSERT_OK_AND_ASSIGN(auto target, RegistryFixture::Start());
  ASSERT_OK_AND_ASSIGN(auto proxy, FaultProxy::Start(target->url()));
  PushOperation op(images(), *target, *proxy);
  RunSeeds(op);
}

TEST_F(CrashConsistencyTest, Commit) {
  CommitOperation op(images());
  RunSeeds(op);
}

TEST_F(CrashConsistencyTest, Gc) {
  GcOperation op(images());
  RunSeeds(op);
}

TEST_F(CrashConsistencyTest, Load) {
  ASSERT_OK_AND_ASSIGN(auto archives, TempDir::Create("strata-crash-archives"));
  LoadOperation op(images(), archives.path());
  RunSeeds(op);
}

}  // namespace
}  // namespace strata::crash
