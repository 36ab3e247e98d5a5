#include "store/content_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mutex>
#include <nlohmann/json.hpp>

#include "store/lease_manager.h"

namespace strata::store {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

constexpr size_t kRehashChunk = 1 << 20;

std::string ToMsgpack(const json& doc) {
  auto bytes = json::to_msgpack(doc);
  return std::string(bytes.begin(), bytes.end());
}

std::optional<std::string> LabelField(const Labels& labels, const std::vector<std::string>& path) {
  if (path.size() == 2 && path[0] == "labels") {
    auto it = labels.find(path[1]);
    if (it != labels.end()) return it->second;
  }
  return std::nullopt;
}

}  // namespace

Result<size_t> BlobReader::ReadAt(void* buffer, size_t size, int64_t offset) const {
  while (true) {
    ssize_t n = pread(fd_.get(), buffer, size, offset);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno != EINTR) return Fail(ErrorCode::kInternal, "read blob at offset {}: {}", offset, strerror(errno));
  }
}

std::string ContentStore::EncodeInfo(const ContentInfo& info) {
  return ToMsgpack({{"s", info.size},
                    {"c", ToUnixNanos(info.created_at)},
                    {"u", ToUnixNanos(info.updated_at)},
                    {"l", info.labels}});
}

Result<ContentInfo> ContentStore::DecodeInfo(const Digest& digest, std::string_view value) {
  try {
    auto doc = json::from_msgpack(value);
    ContentInfo info{digest, doc.at("s").get<int64_t>(), FromUnixNanos(doc.at("c").get<int64_t>()),
                     FromUnixNanos(doc.at("u").get<int64_t>()), {}};
    if (doc.contains("l")) info.labels = doc["l"].get<Labels>();
    return info;
  } catch (const json::exception& e) {
    return Fail(ErrorCode::kInternal, "blob record {}: corrupt: {}", digest, e.what());
  }
}

Result<IngestStatus> ContentStore::DecodeIngest(std::string_view ref, std::string_view value, std::string* dir_id) {
  try {
    auto doc = json::from_msgpack(value);
    IngestStatus status;
    status.ref = std::string(ref);
    status.total = doc.value("t", int64_t{0});
    status.offset = doc.value("o", int64_t{0});
    status.started_at = FromUnixNanos(doc.at("c").get<int64_t>());
    status.updated_at = FromUnixNanos(doc.at("u").get<int64_t>());
    if (doc.contains("e")) {
      STRATA_ASSIGN_OR_RETURN(status.expected, Digest::Parse(doc["e"].get<std::string>()));
    }
    if (dir_id) *dir_id = doc.at("d").get<std::string>();
    return status;
  } catch (const json::exception& e) {
    return Fail(ErrorCode::kInternal, "ingest record {:?}: corrupt: {}", ref, e.what());
  }
}

std::string ContentStore::IngestDirId(const std::string& ref) {
  return Digest::Of(ref).hex().substr(0, 32);
}

Result<std::unique_ptr<ContentStore>> ContentStore::Open(const fs::path& root, MetaDB& db, LeaseManager* leases) {
  std::error_code ec;
  bool created = false;
  for (const char* sub : {"blobs/sha256", "blobs/sha512", "ingest"}) {
    created |= fs::create_directories(root / sub, ec);
    if (ec) return Fail(ErrorCode::kInternal, "create {}: {}", (root / sub).string(), ec.message());
  }
  // New directories' entries are durable before any blob inside them is recorded (the
  // blob commit fsyncs blobs/<alg> only).
  if (created) {
    STRATA_RETURN_IF_ERROR(FsyncDir(root / "blobs"));
    STRATA_RETURN_IF_ERROR(FsyncDir(root));
  }
  return std::unique_ptr<ContentStore>(new ContentStore(root, db, leases));
}

fs::path ContentStore::BlobPath(const Digest& digest) const {
  return root_ / "blobs" / std::string(digest.algorithm_name()) / digest.hex();
}

Result<ContentInfo> ContentStore::Info(const Digest& digest) const {
  STRATA_ASSIGN_OR_RETURN(auto value, db_.Get(Table::kBlobs, digest.ToString()));
  if (!value) return Fail(ErrorCode::kNotFound, "content {} not found", digest);
  return DecodeInfo(digest, *value);
}

Result<ContentInfo> ContentStore::Update(const ContentInfo& update, const std::vector<std::string>& fieldpaths) {
  auto guard = digest_locks_.Lock(update.digest.ToString());
  STRATA_ASSIGN_OR_RETURN(auto info, Info(update.digest));
  STRATA_RETURN_IF_ERROR(
      ApplyLabelUpdate(info.labels, update.labels, fieldpaths, fmt::format("content {}", update.digest)));
  info.updated_at = Now();
  STRATA_RETURN_IF_ERROR(db_.Put(Table::kBlobs, info.digest.ToString(), EncodeInfo(info)));
  return info;
}

Status ContentStore::Walk(const Filter& filter, const std::function<bool(const ContentInfo&)>& fn) const {
  Status status;
  STRATA_RETURN_IF_ERROR(db_.Scan(Table::kBlobs, "", [&](std::string_view key, std::string_view value) {
    auto digest = Digest::Parse(key);
    if (!digest) {
      status = Fail(ErrorCode::kInternal, "blob record with bad key {:?}", key);
      return false;
    }
    auto info = DecodeInfo(*digest, value);
    if (!info) {
      status = Fail(info.error());
      return false;
    }
    bool match = filter.Match([&](const std::vector<std::string>& path) -> std::optional<std::string> {
      if (path.size() == 1 && path[0] == "digest") return info->digest.ToString();
      if (path.size() == 1 && path[0] == "size") return std::to_string(info->size);
      return LabelField(info->labels, path);
    });
    return !match || fn(*info);
  }));
  return status;
}

Status ContentStore::Delete(const Digest& digest) {
  std::shared_lock gc(gc_lock_);
  auto guard = digest_locks_.Lock(digest.ToString());
  STRATA_ASSIGN_OR_RETURN(auto value, db_.Get(Table::kBlobs, digest.ToString()));
  if (!value) return Fail(ErrorCode::kNotFound, "content {} not found", digest);
  // Record first, then the file: a crash in between leaves an unnamed file GC removes.
  STRATA_RETURN_IF_ERROR(db_.Delete(Table::kBlobs, digest.ToString()));
  if (unlink(BlobPath(digest).c_str()) != 0 && errno != ENOENT) return ErrnoFail(errno, "remove blob", BlobPath(digest));
  return {};
}

Result<std::unique_ptr<BlobReader>> ContentStore::Reader(const Digest& digest) const {
  STRATA_ASSIGN_OR_RETURN(auto info, Info(digest));
  auto fd = OpenFile(BlobPath(digest), O_RDONLY);
  if (!fd) {
    return Fail(ErrorCode::kNotFound, "content {} is recorded but its file is missing ({}); run strata fsck",
                digest, fd.error().message());
  }
  return std::make_unique<BlobReader>(std::move(*fd), info.size);
}

bool ContentStore::IngestActive(const std::string& ref) { return !ref_locks_.TryLock(ref); }

Status ContentStore::RecordIngest(const ContentWriter& writer) {
  json doc = {{"d", writer.dir_id_},
              {"t", writer.total_},
              {"o", writer.offset_},
              {"c", ToUnixNanos(writer.started_)},
              {"u", ToUnixNanos(Now())}};
  if (writer.expected_) doc["e"] = writer.expected_->ToString();
  return db_.Put(Table::kIngests, writer.ref_, ToMsgpack(doc));
}

Status ContentStore::DiscardIngest(const std::string& ref, const std::string& dir_id) {
  // Record first, then the directory (an unnamed directory is swept at startup and by GC).
  STRATA_RETURN_IF_ERROR(db_.Delete(Table::kIngests, ref));
  std::error_code ec;
  fs::remove_all(IngestDir(dir_id), ec);
  if (ec) return Fail(ErrorCode::kInternal, "remove ingest {}: {}", IngestDir(dir_id).string(), ec.message());
  return {};
}

Result<std::unique_ptr<ContentWriter>> ContentStore::Writer(const std::string& ref, const WriterOptions& options) {
  if (ref.empty()) return Fail(ErrorCode::kInvalidArgument, "ingest ref must not be empty");
  KeyLocks::Guard lock = options.wait_for_lock ? ref_locks_.Lock(ref) : ref_locks_.TryLock(ref);
  if (!lock) return Fail(ErrorCode::kUnavailable, "ingest ref {:?} is locked by another writer", ref);
  // GC must not see the ingest directory before its record exists (it would sweep it).
  std::shared_lock gc(gc_lock_);

  if (options.expected) {
    STRATA_ASSIGN_OR_RETURN(auto present, db_.Get(Table::kBlobs, options.expected->ToString()));
    if (present) return Fail(ErrorCode::kAlreadyExists, "content {} already exists", *options.expected);
  }
  if (!options.lease.empty() && leases_) {
    STRATA_RETURN_IF_ERROR(leases_->AddResource(options.lease, {"ingests", ref}));
  }

  STRATA_ASSIGN_OR_RETURN(auto value, db_.Get(Table::kIngests, ref));
  std::string dir_id = IngestDirId(ref);
  Timestamp started = Now();
  int64_t total = options.total;
  std::optional<Digest> expected = options.expected;
  bool resume = false;
  if (value) {
    std::string recorded_dir;
    STRATA_ASSIGN_OR_RETURN(auto status, DecodeIngest(ref, *value, &recorded_dir));
    if (options.expected && status.expected && *options.expected != *status.expected) {
      STRATA_RETURN_IF_ERROR(DiscardIngest(ref, recorded_dir));
    } else {
      resume = true;
      dir_id = recorded_dir;
      started = status.started_at;
      if (!expected) expected = status.expected;
      if (total == 0) total = status.total;
    }
  }

  fs::path dir = IngestDir(dir_id);
  fs::path data_path = dir / "data";
  std::unique_ptr<IngestFile> file;
  int64_t offset = 0;
  // Hash with the expected digest's algorithm so sha512 blobs verify too.
  auto digester = std::make_unique<BackgroundDigester>(expected ? expected->algorithm() : DigestAlgorithm::kSha256);
  if (resume && fs::exists(data_path)) {
    STRATA_ASSIGN_OR_RETURN(file, IngestFile::Open(data_path, /*truncate=*/false));
    // Rehash what is on disk: the file, not the record, says how far the last writer got.
    std::string buffer(kRehashChunk, '\0');
    while (offset < file->size()) {
      ssize_t n = pread(file->fd(), buffer.data(), buffer.size(), offset);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoFail(errno, "read ingest", data_path);
      if (n == 0) break;
      digester->Update(std::string_view(buffer.data(), static_cast<size_t>(n)));
      offset += n;
    }
  } else {
    // No ingest, or a record without data (a crash before the file was made): start over.
    std::error_code ec;
    fs::remove_all(dir, ec);
    fs::create_directories(dir, ec);
    if (ec) return Fail(ErrorCode::kInternal, "create ingest {}: {}", dir.string(), ec.message());
    STRATA_ASSIGN_OR_RETURN(file, IngestFile::Open(data_path, /*truncate=*/true));
  }

  std::unique_ptr<ContentWriter> writer(new ContentWriter(this, std::move(lock), ref, dir_id, std::move(file), total,
                                                          expected, started, options.lease));
  writer->offset_ = offset;
  writer->digester_ = std::move(digester);
  STRATA_RETURN_IF_ERROR(RecordIngest(*writer));
  return writer;
}

Result<IngestStatus> ContentStore::StatusOf(const std::string& ref) const {
  STRATA_ASSIGN_OR_RETURN(auto value, db_.Get(Table::kIngests, ref));
  if (!value) return Fail(ErrorCode::kNotFound, "ingest ref {:?} not found", ref);
  std::string dir_id;
  STRATA_ASSIGN_OR_RETURN(auto status, DecodeIngest(ref, *value, &dir_id));
  struct stat st {};
  if (stat((IngestDir(dir_id) / "data").c_str(), &st) == 0) status.offset = st.st_size;
  return status;
}

Result<std::vector<IngestStatus>> ContentStore::ListStatuses(const Filter& filter) const {
  std::vector<std::string> refs;
  STRATA_RETURN_IF_ERROR(db_.Scan(Table::kIngests, "", [&](std::string_view key, std::string_view) {
    refs.emplace_back(key);
    return true;
  }));
  std::vector<IngestStatus> statuses;
  for (const auto& ref : refs) {
    auto status = StatusOf(ref);
    if (!status) {
      if (status.error().code() == ErrorCode::kNotFound) continue;  // committed meanwhile
      return Fail(status.error());
    }
    bool match = filter.Match([&](const std::vector<std::string>& path) -> std::optional<std::string> {
      if (path.size() != 1) return std::nullopt;
      if (path[0] == "ref") return status->ref;
      if (path[0] == "total") return std::to_string(status->total);
      if (path[0] == "expected" && status->expected) return status->expected->ToString();
      return std::nullopt;
    });
    if (match) statuses.push_back(std::move(*status));
  }
  return statuses;
}

Status ContentStore::Abort(const std::string& ref) {
  auto lock = ref_locks_.TryLock(ref);
  if (!lock) return Fail(ErrorCode::kUnavailable, "ingest ref {:?} is locked by another writer", ref);
  STRATA_ASSIGN_OR_RETURN(auto value, db_.Get(Table::kIngests, ref));
  if (!value) return Fail(ErrorCode::kNotFound, "ingest ref {:?} not found", ref);
  std::string dir_id;
  STRATA_RETURN_IF_ERROR(DecodeIngest(ref, *value, &dir_id));
  return DiscardIngest(ref, dir_id);
}

ContentWriter::ContentWriter(ContentStore* store, KeyLocks::Guard lock, std::string ref, std::string dir_id,
                             std::unique_ptr<IngestFile> file, int64_t total, std::optional<Digest> expected,
                             Timestamp started, std::string lease)
    : store_(store),
      lock_(std::move(lock)),
      ref_(std::move(ref)),
      dir_id_(std::move(dir_id)),
      file_(std::move(file)),
      total_(total),
      expected_(std::move(expected)),
      started_(started),
      lease_(std::move(lease)) {}

ContentWriter::~ContentWriter() {
  if (!committed_ && file_) {
    // Keep the ingest for resume; the recorded offset is informational (the file is truth).
    (void)store_->RecordIngest(*this);
  }
}

Status ContentWriter::Write(std::string_view data) {
  if (committed_) return Fail(ErrorCode::kFailedPrecondition, "ingest {:?} was already committed", ref_);
  STRATA_RETURN_IF_ERROR(file_->Append(data));
  digester_->Update(data);  // hashes on a second core while the next piece is written
  offset_ += static_cast<int64_t>(data.size());
  return {};
}

IngestStatus ContentWriter::status() const {
  return IngestStatus{ref_, offset_, total_, expected_, started_, Now()};
}

Status ContentWriter::Reset() {
  STRATA_RETURN_IF_ERROR(file_->Truncate());
  digester_ = std::make_unique<BackgroundDigester>(expected_ ? expected_->algorithm() : DigestAlgorithm::kSha256);
  offset_ = 0;
  return {};
}

Result<ContentInfo> ContentWriter::Commit(int64_t size, std::optional<Digest> expected, Labels labels) {
  if (committed_) return Fail(ErrorCode::kFailedPrecondition, "ingest {:?} was already committed", ref_);
  STRATA_RETURN_IF_ERROR(ValidateLabels(labels));
  if (!expected) expected = expected_;
  if (size <= 0 && total_ > 0) size = total_;
  auto discard = [&] {
    committed_ = true;  // the ingest is gone; nothing to record on destruction
    file_.reset();
    (void)store_->DiscardIngest(ref_, dir_id_);
  };
  if (size > 0 && size != offset_) {
    discard();
    return Fail(ErrorCode::kFailedPrecondition, "ingest {:?}: wrote {} bytes but the expected size is {}", ref_,
                offset_, size);
  }
  Digest actual = digester_->Finish();
  if (expected && actual != *expected) {
    discard();
    return Fail(ErrorCode::kFailedPrecondition, "ingest {:?}: content digest {} does not match expected digest {}",
                ref_, actual, *expected);
  }

  std::shared_lock gc(store_->gc_lock_);
  auto digest_guard = store_->digest_locks_.Lock(actual.ToString());
  STRATA_ASSIGN_OR_RETURN(auto present, store_->db_.Get(Table::kBlobs, actual.ToString()));
  if (present) {
    discard();
    return Fail(ErrorCode::kAlreadyExists, "content {} already exists", actual);
  }

  // The ingest record names the digest before the file is published, so that a crash
  // between publishing and recording leaves what Store::Open needs to finish the commit
  // (FinishInterruptedCommits).
  if (!expected_) {
    expected_ = actual;
    STRATA_RETURN_IF_ERROR(store_->RecordIngest(*this));
  }
  // Durable file first, then its record.
  fs::path blob = store_->BlobPath(actual);
  fs::path data_path = store_->IngestDir(dir_id_) / "data";
  // The mode first: the fsync then covers it with the data (a power loss must not leave a
  // recorded blob writable).
  if (fchmod(file_->fd(), 0444) != 0) return ErrnoFail(errno, "chmod ingest", data_path);
  STRATA_RETURN_IF_ERROR(file_->Sync());
  if (rename(data_path.c_str(), blob.c_str()) != 0) return ErrnoFail(errno, "publish blob", blob);
  STRATA_RETURN_IF_ERROR(FsyncDir(blob.parent_path()));

  Timestamp now = Now();
  ContentInfo info{actual, offset_, now, now, std::move(labels)};
  MetaDB::Batch batch;
  batch.Put(Table::kBlobs, actual.ToString(), ContentStore::EncodeInfo(info));
  batch.Delete(Table::kIngests, ref_);
  if (!lease_.empty()) {
    LeaseManager::AddResourceToBatch(batch, lease_, {"content", actual.ToString()});
    LeaseManager::DeleteResourceFromBatch(batch, lease_, {"ingests", ref_});
  }
  STRATA_RETURN_IF_ERROR(store_->db_.Write(batch));
  committed_ = true;
  file_.reset();
  std::error_code ec;
  fs::remove_all(store_->IngestDir(dir_id_), ec);  // best effort: GC sweeps leftovers
  return info;
}

}  // namespace strata::store

namespace strata::store {

Result<std::string> ReadBlob(const ContentStore& content, const Digest& digest, int64_t limit) {
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<BlobReader> reader, content.Reader(digest));
  if (reader->size() > limit) {
    return Fail(ErrorCode::kFailedPrecondition, "blob {} is {} bytes, more than the {} allowed here", digest,
                reader->size(), limit);
  }
  std::string bytes(static_cast<size_t>(reader->size()), '\0');
  size_t done = 0;
  while (done < bytes.size()) {
    STRATA_ASSIGN_OR_RETURN(size_t n, reader->ReadAt(bytes.data() + done, bytes.size() - done,
                                                     static_cast<int64_t>(done)));
    if (n == 0) return Fail(ErrorCode::kInternal, "blob {} is shorter than its recorded size", digest);
    done += n;
  }
  return bytes;
}

Result<bool> WriteBlob(ContentStore& content, LeaseManager* leases, const Digest& digest, std::string_view bytes,
                       const Labels& labels, const std::string& lease) {
  const auto size = static_cast<int64_t>(bytes.size());
  auto merge_into_existing = [&]() -> Result<bool> {
    if (!labels.empty()) {
      ContentInfo update{.digest = digest, .labels = labels};
      std::vector<std::string> fieldpaths;
      for (const auto& [key, value] : labels) fieldpaths.push_back("labels." + key);
      STRATA_RETURN_IF_ERROR(content.Update(update, fieldpaths));
    }
    if (!lease.empty() && leases != nullptr) STRATA_RETURN_IF_ERROR(leases->AddResource(lease, {"content", digest.ToString()}));
    return false;
  };
  if (auto info = content.Info(digest); info) {
    if (info->size != size) {
      return Fail(ErrorCode::kFailedPrecondition, "blob {} is stored with size {}, not {}", digest, info->size, size);
    }
    return merge_into_existing();
  }
  STRATA_ASSIGN_OR_RETURN(auto writer, content.Writer("write-" + digest.ToString(), {.total = size,
                                                                                      .expected = digest,
                                                                                      .lease = lease,
                                                                                      .wait_for_lock = true}));
  if (writer->offset() != 0) STRATA_RETURN_IF_ERROR(writer->Reset());
  STRATA_RETURN_IF_ERROR(writer->Write(bytes));
  auto committed = writer->Commit(size, digest, labels);
  if (!committed) {
    if (committed.error().code() == ErrorCode::kAlreadyExists) return merge_into_existing();
    return Fail(committed.error());
  }
  return true;
}

}  // namespace strata::store
