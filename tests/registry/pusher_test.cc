// Pusher against the real docker-registry: monolithic and chunked uploads, HEAD-first skips,
// cross-repository mounts, failed chunks resumed from the registry's Range (through a
// FaultProxy), a wrong digest, manifests by tag and by digest (one of 5 MB), htpasswd over
// TLS, token auth with tokens expiring mid-upload, and a wrong password.
#include "registry/pusher.h"

#include <netdb.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <random>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "oci/media_types.h"
#include "tests/registry/registry_client_test_base.h"
#include "tests/support/assertions.h"
#include "tests/support/fault_proxy.h"
#include "tests/support/image_builder.h"
#include "tests/support/registry_fixture.h"

namespace strata::registry {
namespace {

using namespace std::chrono_literals;
using test_support::FaultAction;
using test_support::RandomBytes;
using test_support::FaultProxy;
using test_support::FaultRule;
using test_support::RegistryAuth;
using test_support::RegistryFixture;
using test_support::RegistryOptions;

oci::Descriptor DescriptorOf(std::string_view data) {
  oci::Descriptor descriptor;
  descriptor.media_type = std::string(oci::media_type::kOciLayerGzip);
  descriptor.digest = Digest::Of(data);
  descriptor.size = static_cast<int64_t>(data.size());
  return descriptor;
}

// Serves `data` from any offset and records each offset opened. `pause_every` > 0 makes
// the reader sleep `pause` whenever it starts a new block of that many bytes (a slow
// source, so that tokens expire mid-upload). `fail_at` >= 0 makes the first reader that
// reaches that offset fail as a dropped connection would (once).
class StringSource {
 public:
  explicit StringSource(std::string data) : data_(std::move(data)) {}

  uint64_t pause_every = 0;
  std::chrono::milliseconds pause{0};
  int64_t fail_at = -1;

  BlobOpener Opener() {
    return [this](uint64_t offset) -> Result<BodyReader> {
      {
        std::lock_guard lock(mutex_);
        opened_.push_back(offset);
      }
      if (offset > data_.size()) return Fail(ErrorCode::kInvalidArgument, "offset {} past the end", offset);
      auto position = std::make_shared<uint64_t>(offset);
      return BodyReader([this, position](std::span<char> buffer) -> Result<size_t> {
        if (pause_every > 0 && *position % pause_every == 0 && *position < data_.size()) {
          std::this_thread::sleep_for(pause);
        }
        size_t n = std::min<size_t>(buffer.size(), data_.size() - *position);
        if (fail_at >= 0 && *position <= static_cast<uint64_t>(fail_at) &&
            *position + n > static_cast<uint64_t>(fail_at)) {
          n = static_cast<size_t>(fail_at) - *position;
          if (n == 0) {
            fail_at = -1;
            return Fail(ErrorCode::kUnavailable, "test: connection dropped at byte {}", *position);
          }
        }
        std::copy_n(data_.data() + *position, n, buffer.data());
        *position += n;
        return n;
      });
    };
  }

  std::vector<uint64_t> opened() const {
    std::lock_guard lock(mutex_);
    return opened_;
  }
  const std::string& data() const { return data_; }

 private:
  std::string data_;
  mutable std::mutex mutex_;
  std::vector<uint64_t> opened_;
};

// Collects progress events (thread-safe, as a sink must be).
struct ProgressLog {
  std::mutex mutex;
  std::vector<ProgressEvent> events;
  ProgressSink Sink() {
    return [this](const ProgressEvent& event) {
      std::lock_guard lock(mutex);
      events.push_back(event);
    };
  }
};

class PusherTest : public RegistryClientTest {
 protected:
  void StartRegistry(RegistryOptions options = {}) {
    registry_ = StartTrustedRegistry(std::move(options));
    ASSERT_TRUE(registry_);
  }

  // A pusher with fixed credentials (none by default) and fast retries.
  Pusher& MakePusher(std::optional<Credentials> credentials = std::nullopt, HttpClient* client = nullptr) {
    authorizer_ = std::make_unique<Authorizer>(client ? *client : *client_, Fixed(credentials));
    resolver_ = std::make_unique<Resolver>(
        *authorizer_, ResolverOptions{.retry = {.max_attempts = 4, .initial_backoff = 10ms, .jitter = 0}});
    pusher_ = std::make_unique<Pusher>(*resolver_);
    return *pusher_;
  }

  // Requests the proxy received with this method whose path contains `part`.
  static int Count(const FaultProxy& proxy, std::string_view method, std::string_view part) {
    int count = 0;
    for (const test_support::ProxiedRequest& request : proxy.requests()) {
      std::string path = request.target.substr(0, request.target.find('?'));
      if (request.method == method && path.find(part) != std::string::npos) ++count;
    }
    return count;
  }

  // Pushes `data` and checks that it reads back byte for byte from `repository`.
  void PushAndVerify(const oci::Reference& target, const std::string& data, const PushOptions& options = {}) {
    StringSource source(data);
    ASSERT_OK_AND_ASSIGN(BlobPushOutcome outcome,
                         pusher_->PushBlob(target, DescriptorOf(data), source.Opener(), options));
    EXPECT_EQ(outcome, BlobPushOutcome::kUploaded);
    ASSERT_OK_AND_ASSIGN(std::string fetched, resolver_->FetchBlob(target, DescriptorOf(data)));
    EXPECT_TRUE(fetched == data);
  }

  std::unique_ptr<RegistryFixture> registry_;
  std::unique_ptr<Pusher> pusher_;
};

TEST_F(PusherTest, MonolithicPushReadsBack) {
  StartRegistry();
  ASSERT_OK_AND_ASSIGN(auto proxy, FaultProxy::Start(registry_->url()));
  Pusher& pusher = MakePusher();
  const std::string data = RandomBytes(300'001, 1);
  StringSource source(data);
  ProgressLog progress;
  oci::Reference target = Ref(proxy->host() + "/team/app:1");
  ASSERT_OK_AND_ASSIGN(BlobPushOutcome outcome,
                       pusher.PushBlob(target, DescriptorOf(data), source.Opener(),
                                       {.progress = progress.Sink(), .kind = BlobKind::kLayer}));
  EXPECT_EQ(outcome, BlobPushOutcome::kUploaded);
  EXPECT_EQ(Count(*proxy, "POST", "/blobs/uploads/"), 1);
  EXPECT_EQ(Count(*proxy, "PUT", "/blobs/uploads/"), 1);
  EXPECT_EQ(Count(*proxy, "PATCH", "/blobs/uploads/"), 0);
  for (const auto& request : proxy->requests()) {
    if (request.method != "PUT") continue;
    EXPECT_NE(request.target.find("digest=" + DescriptorOf(data).digest.ToString()), std::string::npos);
    EXPECT_EQ(request.Header("Content-Type"), "application/octet-stream");
    EXPECT_EQ(request.Header("Content-Length"), std::to_string(data.size()));
  }
  EXPECT_EQ(source.opened(), std::vector<uint64_t>{0});
  ASSERT_OK_AND_ASSIGN(std::string fetched, resolver_->FetchBlob(target, DescriptorOf(data)));
  EXPECT_TRUE(fetched == data);

  ASSERT_GE(progress.events.size(), 2u);
  EXPECT_EQ(progress.events.back().state, TransferState::kDone);
  int64_t last = -1;
  for (size_t i = 0; i + 1 < progress.events.size(); ++i) {
    EXPECT_EQ(progress.events[i].state, TransferState::kUploading);
    EXPECT_GT(progress.events[i].offset, last);
    EXPECT_EQ(progress.events[i].total, static_cast<int64_t>(data.size()));
    EXPECT_EQ(progress.events[i].digest, DescriptorOf(data).digest);
    last = progress.events[i].offset;
  }
  EXPECT_EQ(last, static_cast<int64_t>(data.size()));
}

TEST_F(PusherTest, ChunkedPushOfOddSizeInThreeChunks) {
  StartRegistry();
  ASSERT_OK_AND_ASSIGN(auto proxy, FaultProxy::Start(registry_->url()));
  MakePusher();
  const std::string data = RandomBytes(2 * 4096 + 1001, 2);
  PushAndVerify(Ref(proxy->host() + "/team/app:1"), data, {.chunk_size = 4096});
  EXPECT_EQ(Count(*proxy, "POST", "/blobs/uploads/"), 1);
  EXPECT_EQ(Count(*proxy, "PATCH", "/blobs/uploads/"), 3);
  EXPECT_EQ(Count(*proxy, "PUT", "/blobs/uploads/"), 1);
  std::vector<std::string> ranges;
  for (const auto& request : proxy->requests()) {
    if (request.method == "PATCH") ranges.push_back(request.Header("Content-Range").value_or(""));
    if (request.method == "PUT") {
      EXPECT_EQ(request.Header("Content-Length").value_or("0"), "0");
    }
  }
  EXPECT_EQ(ranges, (std::vector<std::string>{"0-4095", "4096-8191", "8192-9192"}));

  // A chunk size that divides the blob exactly, and one larger than the blob.
  PushAndVerify(Ref(proxy->host() + "/team/app:1"), RandomBytes(3 * 1000, 3), {.chunk_size = 1000});
  PushAndVerify(Ref(proxy->host() + "/team/app:1"), RandomBytes(777, 4), {.chunk_size = 1 << 20});
}

TEST_F(PusherTest, SecondPushFindsTheBlobAndUploadsNothing) {
  StartRegistry();
  ASSERT_OK_AND_ASSIGN(auto proxy, FaultProxy::Start(registry_->url()));
  Pusher& pusher = MakePusher();
  const std::string data = RandomBytes(5000, 5);
  oci::Reference target = Ref(proxy->host() + "/team/app:1");
  PushAndVerify(target, data);
  ASSERT_OK_AND_ASSIGN(bool exists, pusher.BlobExists(target, DescriptorOf(data)));
  EXPECT_TRUE(exists);
  ASSERT_OK_AND_ASSIGN(bool other, pusher.BlobExists(target, DescriptorOf("not pushed")));
  EXPECT_FALSE(other);

  const int posts = Count(*proxy, "POST", "/blobs/uploads/");
  StringSource source(data);
  ProgressLog progress;
  ASSERT_OK_AND_ASSIGN(BlobPushOutcome outcome,
                       pusher.PushBlob(target, DescriptorOf(data), source.Opener(), {.progress = progress.Sink()}));
  EXPECT_EQ(outcome, BlobPushOutcome::kExists);
  EXPECT_EQ(Count(*proxy, "POST", "/blobs/uploads/"), posts);
  EXPECT_TRUE(source.opened().empty());
  ASSERT_EQ(progress.events.size(), 1u);
  EXPECT_EQ(progress.events[0].state, TransferState::kExists);

  // A descriptor with the right digest and a wrong size is an error, not a skip.
  oci::Descriptor wrong_size = DescriptorOf(data);
  wrong_size.size += 1;
  Result<BlobPushOutcome> mismatch = pusher.PushBlob(target, wrong_size, source.Opener());
  ASSERT_FALSE(mismatch);
  EXPECT_NE(mismatch.error().message().find("size"), std::string::npos) << mismatch.error().message();
}

TEST_F(PusherTest, CrossRepositoryMount) {
  StartRegistry();
  ASSERT_OK_AND_ASSIGN(auto proxy, FaultProxy::Start(registry_->url()));
  Pusher& pusher = MakePusher();
  const std::string data = RandomBytes(20'000, 6);
  PushAndVerify(Ref(proxy->host() + "/team/a:1"), data);

  StringSource source(data);
  ProgressLog progress;
  oci::Reference b = Ref(proxy->host() + "/team/b:1");
  ASSERT_OK_AND_ASSIGN(BlobPushOutcome outcome,
                       pusher.PushBlob(b, DescriptorOf(data), source.Opener(),
                                       {.mount_from = "team/a", .progress = progress.Sink()}));
  EXPECT_EQ(outcome, BlobPushOutcome::kMounted);
  EXPECT_TRUE(source.opened().empty());
  ASSERT_FALSE(progress.events.empty());
  EXPECT_EQ(progress.events.back().state, TransferState::kMounted);
  ASSERT_OK_AND_ASSIGN(std::string fetched, resolver_->FetchBlob(b, DescriptorOf(data)));
  EXPECT_TRUE(fetched == data);

  // Mounting from a repository that lacks the blob falls back to the session the
  // registry opened instead (202): still one POST, and the bytes go up.
  const std::string other = RandomBytes(3000, 7);
  const int posts = Count(*proxy, "POST", "/team/c/blobs/uploads/");
  PushAndVerify(Ref(proxy->host() + "/team/c:1"), other, {.chunk_size = 1024, .mount_from = "team/a"});
  EXPECT_EQ(Count(*proxy, "POST", "/team/c/blobs/uploads/") - posts, 1);
}

TEST_F(PusherTest, FailedChunksResumeFromTheRegistryRange) {
  StartRegistry();
  // Every second PATCH gets a 503 before it reaches the registry.
  ASSERT_OK_AND_ASSIGN(auto proxy,
                       FaultProxy::Start(registry_->url(), {{.method = "PATCH",
                                                             .path_regex = "/blobs/uploads/",
                                                             .action = FaultAction::kServiceUnavailable,
                                                             .first_n = 0,
                                                             .every_kth = 2}}));
  MakePusher();
  const std::string data = RandomBytes(4 * 1000 + 3, 8);
  PushAndVerify(Ref(proxy->host() + "/team/app:1"), data, {.chunk_size = 1000});
  EXPECT_GE(proxy->fired(0), 2);
  // Resumed in the same session: one POST; each refused chunk was followed by a status GET.
  EXPECT_EQ(Count(*proxy, "POST", "/blobs/uploads/"), 1);
  EXPECT_EQ(Count(*proxy, "GET", "/blobs/uploads/"), proxy->fired(0));
  EXPECT_EQ(Count(*proxy, "PATCH", "/blobs/uploads/") - proxy->fired(0), 5);
}

TEST_F(PusherTest, ConnectionDroppedMidChunkStillVerifies) {
  StartRegistry();
  ASSERT_OK_AND_ASSIGN(auto proxy, FaultProxy::Start(registry_->url()));
  Pusher& pusher = MakePusher();
  const std::string data = RandomBytes(5 * 2000 + 17, 9);
  StringSource source(data);
  source.fail_at = 2000 + 1000;  // in the middle of the second chunk
  oci::Reference target = Ref(proxy->host() + "/team/app:1");
  ASSERT_OK_AND_ASSIGN(BlobPushOutcome outcome,
                       pusher.PushBlob(target, DescriptorOf(data), source.Opener(), {.chunk_size = 2000}));
  EXPECT_EQ(outcome, BlobPushOutcome::kUploaded);
  // The reader was reopened after the failure (at a chunk start the registry confirmed).
  std::vector<uint64_t> opened = source.opened();
  ASSERT_GE(opened.size(), 2u);
  EXPECT_EQ(opened.back() % 2000, 0u);
  EXPECT_GE(Count(*proxy, "GET", "/blobs/uploads/"), 1);
  ASSERT_OK_AND_ASSIGN(std::string fetched, resolver_->FetchBlob(target, DescriptorOf(data)));
  EXPECT_TRUE(fetched == data);

  // Straight to the registry, the aborted chunk arrives in part. distribution 2.8 then
  // refuses the session ("upload resumed at wrong offset", BLOB_UPLOAD_INVALID) and drops
  // it: the upload starts over in a new session and still verifies.
  const std::string direct_data = RandomBytes(5 * 2000 + 17, 19);
  StringSource direct(direct_data);
  direct.fail_at = 2000 + 1000;
  oci::Reference direct_target = Ref(registry_->host() + "/team/direct:1");
  ASSERT_OK_AND_ASSIGN(BlobPushOutcome direct_outcome,
                       pusher.PushBlob(direct_target, DescriptorOf(direct_data), direct.Opener(), {.chunk_size = 2000}));
  EXPECT_EQ(direct_outcome, BlobPushOutcome::kUploaded);
  ASSERT_OK_AND_ASSIGN(std::string direct_fetched, resolver_->FetchBlob(direct_target, DescriptorOf(direct_data)));
  EXPECT_TRUE(direct_fetched == direct_data);
}

TEST_F(PusherTest, WrongDigestIsRejectedAndNothingIsStored) {
  StartRegistry();
  Pusher& pusher = MakePusher();
  oci::Reference target = Ref(registry_->host() + "/team/app:1");
  for (uint64_t chunk_size : {uint64_t{0}, uint64_t{1000}}) {
    const std::string data = RandomBytes(2500, 10 + chunk_size);
    oci::Descriptor declared = DescriptorOf(data);
    declared.digest = Digest::Of(data + "x");  // what the bytes are not
    StringSource source(data);
    ProgressLog progress;
    Result<BlobPushOutcome> outcome =
        pusher.PushBlob(target, declared, source.Opener(), {.chunk_size = chunk_size, .progress = progress.Sink()});
    ASSERT_FALSE(outcome);
    const std::string& message = outcome.error().message();
    EXPECT_NE(message.find("DIGEST_INVALID"), std::string::npos) << message;
    EXPECT_NE(message.find("push blob " + declared.digest.ToString()), std::string::npos) << message;
    EXPECT_NE(message.find(registry_->host() + "/team/app"), std::string::npos) << message;
    ASSERT_FALSE(progress.events.empty());
    EXPECT_EQ(progress.events.back().state, TransferState::kFailed);
    ASSERT_OK_AND_ASSIGN(bool declared_exists, pusher.BlobExists(target, declared));
    EXPECT_FALSE(declared_exists);
    ASSERT_OK_AND_ASSIGN(bool real_exists, pusher.BlobExists(target, DescriptorOf(data)));
    EXPECT_FALSE(real_exists);
  }
}

// Pushes the blobs of a small built image with the Pusher; returns the image.
test_support::BuiltImage PushImageBlobs(Pusher& pusher, const oci::Reference& target) {
  auto layer = test_support::LayerBuilder().File("hello.txt", "hello\n").Build();
  EXPECT_TRUE(layer) << layer.error().ToString();
  test_support::ImageBuilder builder;
  builder.AddLayer(std::move(*layer));
  auto image = builder.Build();
  EXPECT_TRUE(image) << image.error().ToString();
  std::vector<test_support::Blob> blobs = image->layers;
  blobs.push_back(image->config);
  for (const test_support::Blob& blob : blobs) {
    StringSource source(blob.data);
    auto outcome = pusher.PushBlob(target, DescriptorOf(blob.data), source.Opener());
    EXPECT_TRUE(outcome) << outcome.error().ToString();
  }
  return *image;
}

TEST_F(PusherTest, ManifestByTagAndByDigestResolveToTheSameBytes) {
  StartRegistry();
  Pusher& pusher = MakePusher();
  oci::Reference target = Ref(registry_->host() + "/team/app:1");
  test_support::BuiltImage image = PushImageBlobs(pusher, target);
  const std::string& bytes = image.manifest.data;

  ASSERT_OK_AND_ASSIGN(Digest by_tag, pusher.PushManifest(target, image.manifest.media_type, bytes, "v1"));
  EXPECT_EQ(by_tag, Digest::Of(bytes));
  ASSERT_OK_AND_ASSIGN(Resolved resolved, resolver_->Resolve(Ref(registry_->host() + "/team/app:v1")));
  EXPECT_TRUE(resolved.manifest == bytes);
  EXPECT_EQ(resolved.descriptor.digest, by_tag);

  oci::Reference other = Ref(registry_->host() + "/team/other:1");
  PushImageBlobs(pusher, other);
  ASSERT_OK_AND_ASSIGN(Digest by_digest, pusher.PushManifest(other, image.manifest.media_type, bytes, ""));
  EXPECT_EQ(by_digest, Digest::Of(bytes));
  ASSERT_OK_AND_ASSIGN(Resolved resolved_digest, resolver_->Resolve(other.WithDigest(by_digest)));
  EXPECT_TRUE(resolved_digest.manifest == bytes);

  // A digest that the bytes do not have is refused before anything is sent.
  Result<Digest> mismatch =
      pusher.PushManifest(target, image.manifest.media_type, bytes, Digest::Of("other").ToString());
  ASSERT_FALSE(mismatch);
  EXPECT_EQ(mismatch.error().code(), ErrorCode::kInvalidArgument);

  // A manifest whose blobs the repository lacks: the registry's error names it.
  Result<Digest> unknown = pusher.PushManifest(Ref(registry_->host() + "/team/empty:1"),
                                               image.manifest.media_type, bytes, "v1");
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message().find("MANIFEST_BLOB_UNKNOWN"), std::string::npos)
      << unknown.error().message();
}

// An OCI manifest of exactly `size` bytes: the image's manifest plus many annotations.
std::string ManifestOfSize(const std::string& manifest_json, size_t size) {
  auto manifest = nlohmann::ordered_json::parse(manifest_json);
  nlohmann::ordered_json annotations = nlohmann::ordered_json::object();
  for (size_t i = 0, added = manifest_json.size(); added + 4096 < size; ++i) {
    std::string key = fmt::format("org.example.note.{:06}", i);
    added += key.size() + 1000 + 6;
    annotations[std::move(key)] = std::string(1000, static_cast<char>('a' + i % 26));
  }
  annotations["org.example.padding"] = "";
  manifest["annotations"] = annotations;
  const size_t unpadded = manifest.dump().size();
  EXPECT_LE(unpadded, size);
  annotations["org.example.padding"] = std::string(size - unpadded, 'p');
  manifest["annotations"] = std::move(annotations);
  return manifest.dump();
}

TEST_F(PusherTest, FourMebibyteManifestIsAcceptedLargerIsRefusedClearly) {
  StartRegistry();
  Pusher& pusher = MakePusher();
  oci::Reference target = Ref(registry_->host() + "/team/big:1");
  test_support::BuiltImage image = PushImageBlobs(pusher, target);

  // distribution 2.8.2 reads at most 4 MiB of a manifest PUT (maxManifestBodySize).
  const std::string bytes = ManifestOfSize(image.manifest.data, 4u << 20);
  ASSERT_EQ(bytes.size(), 4u << 20);
  ASSERT_OK_AND_ASSIGN(Digest digest, pusher.PushManifest(target, image.manifest.media_type, bytes, "big"));
  ASSERT_OK_AND_ASSIGN(Resolved resolved, resolver_->Resolve(Ref(registry_->host() + "/team/big:big")));
  EXPECT_EQ(resolved.descriptor.digest, digest);
  EXPECT_TRUE(resolved.manifest == bytes);

  // Past that limit the whole 5 MB go up and the registry's refusal comes back by name.
  const std::string five_mb = ManifestOfSize(image.manifest.data, 5'000'000);
  Result<Digest> refused = pusher.PushManifest(target, image.manifest.media_type, five_mb, "bigger");
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message().find("MANIFEST_INVALID"), std::string::npos) << refused.error().message();
  EXPECT_NE(refused.error().message().find("push manifest bigger to " + registry_->host() + "/team/big"),
            std::string::npos)
      << refused.error().message();
}

// The machine's host name when it resolves to 127.0.0.1, else "". Loopback names and
// addresses are always spoken to in plain HTTP (hosts.h), so a TLS registry on loopback is
// reached under another name that means 127.0.0.1.
std::string LoopbackHostName() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0 || DefaultsToPlainHttp(name)) return "";
  addrinfo hints{};
  hints.ai_family = AF_INET;
  addrinfo* found = nullptr;
  if (::getaddrinfo(name, nullptr, &hints, &found) != 0) return "";
  bool loopback = false;
  for (addrinfo* info = found; info; info = info->ai_next) {
    auto* address = reinterpret_cast<sockaddr_in*>(info->ai_addr);
    if (ntohl(address->sin_addr.s_addr) == INADDR_LOOPBACK) loopback = true;
  }
  ::freeaddrinfo(found);
  return loopback ? name : "";
}

TEST_F(PusherTest, BasicAuthOverTls) {
  StartRegistry({.tls = true, .auth = RegistryAuth::kBasic, .username = "alice", .password = "s3cret"});
  const std::string name = LoopbackHostName();
  if (name.empty()) GTEST_SKIP() << "no host name other than localhost resolves to 127.0.0.1";
  // The certificate names 127.0.0.1 and localhost only: trust it under this name.
  const std::string host = fmt::format("{}:{}", name, registry_->port());
  ASSERT_OK_AND_ASSIGN(auto client,
                       HttpClient::Create({.certs_dir = certs_->path(), .insecure_skip_verify_hosts = {host}}));
  Pusher& pusher = MakePusher(Credentials{.username = "alice", .password = "s3cret"}, client.get());
  oci::Reference target = Ref(host + "/team/app:1");
  ASSERT_OK_AND_ASSIGN(auto hosts, resolver_->Hosts(target, kCapabilityPush));
  ASSERT_EQ(hosts.size(), 1u);
  EXPECT_EQ(hosts[0].scheme, "https");
  PushAndVerify(target, RandomBytes(70'000, 11));
  PushAndVerify(target, RandomBytes(9000, 12), {.chunk_size = 4000});
  test_support::BuiltImage image = PushImageBlobs(pusher, target);
  ASSERT_OK_AND_ASSIGN(Digest digest, pusher.PushManifest(target, image.manifest.media_type, image.manifest.data, "1"));
  ASSERT_OK_AND_ASSIGN(Resolved resolved, resolver_->Resolve(target));
  EXPECT_EQ(resolved.descriptor.digest, digest);
}

TEST_F(PusherTest, TokenExpiresMidChunkedUpload) {
  test_support::TokenServerOptions token;
  token.lifetime = std::chrono::seconds(2);
  StartRegistry({.auth = RegistryAuth::kToken, .token = token});
  Pusher& pusher = MakePusher(Credentials{.username = "strata", .password = "strata-password"});
  oci::Reference target = Ref(registry_->host() + "/team/app:1");
  const std::string data = RandomBytes(6 * 1000 + 5, 13);
  StringSource source(data);
  source.pause_every = 1000;  // 7 chunks, 600 ms each: the upload outlives two tokens
  source.pause = 600ms;
  const int before = registry_->token_requests();
  ASSERT_OK_AND_ASSIGN(BlobPushOutcome outcome,
                       pusher.PushBlob(target, DescriptorOf(data), source.Opener(), {.chunk_size = 1000}));
  EXPECT_EQ(outcome, BlobPushOutcome::kUploaded);
  EXPECT_GE(registry_->token_requests() - before, 3);
  ASSERT_OK_AND_ASSIGN(std::string fetched, resolver_->FetchBlob(target, DescriptorOf(data)));
  EXPECT_TRUE(fetched == data);

  // A mount asks for pull on the source repository too.
  oci::Reference b = Ref(registry_->host() + "/team/b:1");
  ASSERT_OK_AND_ASSIGN(BlobPushOutcome mounted,
                       pusher.PushBlob(b, DescriptorOf(data), source.Opener(), {.mount_from = "team/app"}));
  EXPECT_EQ(mounted, BlobPushOutcome::kMounted);
  bool asked = false;
  for (const auto& record : registry_->token_server()->requests()) {
    if (std::find(record.scopes.begin(), record.scopes.end(), "repository:team/app:pull") != record.scopes.end() &&
        std::find(record.scopes.begin(), record.scopes.end(), "repository:team/b:pull,push") != record.scopes.end()) {
      asked = true;
    }
  }
  EXPECT_TRUE(asked);
}

TEST_F(PusherTest, WrongPasswordNamesTheRegistry) {
  StartRegistry({.auth = RegistryAuth::kBasic});
  Pusher& pusher = MakePusher(Credentials{.username = "strata", .password = "wrong"});
  const std::string data = RandomBytes(100, 14);
  StringSource source(data);
  Result<BlobPushOutcome> outcome =
      pusher.PushBlob(Ref(registry_->host() + "/team/app:1"), DescriptorOf(data), source.Opener());
  ASSERT_FALSE(outcome);
  const std::string& message = outcome.error().message();
  EXPECT_NE(message.find("unauthorized"), std::string::npos) << message;
  EXPECT_NE(message.find(registry_->host()), std::string::npos) << message;
  EXPECT_TRUE(source.opened().empty());

  Result<Digest> manifest = pusher.PushManifest(Ref(registry_->host() + "/team/app:1"),
                                                oci::media_type::kOciManifest, "{}", "1");
  ASSERT_FALSE(manifest);
  EXPECT_NE(manifest.error().message().find("unauthorized"), std::string::npos) << manifest.error().message();
}

TEST_F(PusherTest, ConcurrentPushesOfDifferentBlobs) {
  StartRegistry();
  Pusher& pusher = MakePusher();
  oci::Reference target = Ref(registry_->host() + "/team/app:1");
  std::vector<std::string> blobs;
  for (uint32_t i = 0; i < 4; ++i) blobs.push_back(RandomBytes(40'000 + i, 20 + i));
  std::vector<Result<BlobPushOutcome>> outcomes(blobs.size(), Fail(ErrorCode::kInternal, "not run"));
  std::vector<std::thread> threads;
  for (size_t i = 0; i < blobs.size(); ++i) {
    threads.emplace_back([&, i] {
      StringSource source(blobs[i]);
      outcomes[i] = pusher.PushBlob(target, DescriptorOf(blobs[i]), source.Opener(), {.chunk_size = i % 2 ? 7000u : 0u});
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (size_t i = 0; i < blobs.size(); ++i) {
    ASSERT_TRUE(outcomes[i]) << outcomes[i].error().ToString();
    EXPECT_EQ(*outcomes[i], BlobPushOutcome::kUploaded);
    ASSERT_OK_AND_ASSIGN(std::string fetched, resolver_->FetchBlob(target, DescriptorOf(blobs[i])));
    EXPECT_TRUE(fetched == blobs[i]);
  }
}

}  // namespace
}  // namespace strata::registry
