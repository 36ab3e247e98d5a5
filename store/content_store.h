// ContentStore: immutable blobs addressed by digest, written through resumable ingests.
//
// Mirrors containerd's content.Store (Info/Update/Walk/Delete/ReaderAt/Writer/Status/
// ListStatuses/Abort) so the daemon can expose containerd.services.content.v1 directly.
//
// On disk (under the store root):
//   blobs/<alg>/<hex>      committed blob, mode 0444, never modified
//   ingest/<id>/data       bytes of an unfinished write; <id> is derived from the ref
// Files first, metadata last: a blob file is fsynced and renamed into place before its
// record is written; deletion removes the record before the file. Startup and fsck remove
// files no record names.
//
// Records (MessagePack maps):
//   blobs   key "sha256:<hex>" -> {s: size, c: created ns, u: updated ns, l: {labels}}
//   ingests key <ref>          -> {d: dir id, t: total, e: expected digest?, o: offset at last
//                                  close, c: started ns, u: updated ns}
// Thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <vector>

#include "base/background_digester.h"
#include "base/digest.h"
#include "base/error.h"
#include "base/file.h"
#include "store/filters.h"
#include "store/ingest_file.h"
#include "store/meta_db.h"
#include "store/types.h"

namespace strata::store {

class LeaseManager;

struct ContentInfo {
  Digest digest;
  int64_t size = 0;
  Timestamp created_at;
  Timestamp updated_at;
  Labels labels;
};

struct IngestStatus {
  std::string ref;
  int64_t offset = 0;
  int64_t total = 0;  // 0 when unknown
  std::optional<Digest> expected;
  Timestamp started_at;
  Timestamp updated_at;
};

// Random-access reader of one committed blob. Thread-safe (pread).
class BlobReader {
 public:
  BlobReader(UniqueFd fd, int64_t size) : fd_(std::move(fd)), size_(size) {}
  int64_t size() const { return size_; }
  int fd() const { return fd_.get(); }
  // Reads up to `size` bytes at `offset`; returns the count (0 at end).
  Result<size_t> ReadAt(void* buffer, size_t size, int64_t offset) const;

 private:
  UniqueFd fd_;
  int64_t size_;
};

class ContentStore;

// One open ingest. Holds the ref's lock until destroyed; destroying it without Commit keeps
// the ingest for a later resume. Not thread-safe (one writer per ref by construction).
class ContentWriter {
 public:
  ~ContentWriter();
  ContentWriter(const ContentWriter&) = delete;
  ContentWriter& operator=(const ContentWriter&) = delete;

  // Appends `data` at offset(), hashing as it goes.
  Status Write(std::string_view data);
  int64_t offset() const { return offset_; }
  const std::string& ref() const { return ref_; }
  IngestStatus status() const;

  // Discards the written bytes and starts over at offset 0 (containerd's Truncate(0)).
  Status Reset();

  // Verifies and publishes the blob. `size` (> 0) and `expected` are checked when given;
  // on mismatch the ingest is discarded and the error names both values. If the digest is
  // already committed, the ingest is discarded and AlreadyExists is returned. REQUIRES: no
  // Write after a successful Commit.
  Result<ContentInfo> Commit(int64_t size, std::optional<Digest> expected, Labels labels = {});

 private:
  friend class ContentStore;
  ContentWriter(ContentStore* store, KeyLocks::Guard lock, std::string ref, std::string dir_id,
                std::unique_ptr<IngestFile> file, int64_t total, std::optional<Digest> expected,
                Timestamp started, std::string lease);

  ContentStore* store_;
  KeyLocks::Guard lock_;
  std::string ref_;
  std::string dir_id_;
  std::unique_ptr<IngestFile> file_;
  int64_t offset_ = 0;
  int64_t total_ = 0;
  std::optional<Digest> expected_;
  Timestamp started_;
  std::string lease_;
  std::unique_ptr<BackgroundDigester> digester_;  // hashes on a second core while we write
  bool committed_ = false;
};

class ContentStore {
 public:
  struct WriterOptions {
    int64_t total = 0;                // expected size, 0 = unknown
    std::optional<Digest> expected;   // expected digest, if known
    std::string lease;                // lease to hold the ingest and blob; "" = none
    bool wait_for_lock = false;       // block while another writer holds the ref
  };

  // `root` is the store root; blobs/ and ingest/ are created beneath it. `leases` may be null
  // (no lease bookkeeping). Both must outlive the store.
  static Result<std::unique_ptr<ContentStore>> Open(const std::filesystem::path& root, MetaDB& db,
                                                     LeaseManager* leases);

  Result<ContentInfo> Info(const Digest& digest) const;
  // Updates labels only. `fieldpaths` empty = replace all labels; "labels" = same;
  // "labels.<k>" = set (or delete when the new value is absent or "") one label. Any other
  // path is InvalidArgument.
  Result<ContentInfo> Update(const ContentInfo& info, const std::vector<std::string>& fieldpaths);
  // Visits blobs matching `filter` (fields: digest, size, labels.<k>). fn returns false to stop.
  Status Walk(const Filter& filter, const std::function<bool(const ContentInfo&)>& fn) const;
  Status Delete(const Digest& digest);
  Result<std::unique_ptr<BlobReader>> Reader(const Digest& digest) const;
  // Path of a committed blob (for zero-copy users such as sendfile); the file may vanish
  // after a Delete.
  std::filesystem::path BlobPath(const Digest& digest) const;

  // Opens the ingest for `ref`, resuming it if one exists: the bytes already on disk are
  // rehashed and writing continues at their end. If `expected` differs from the recorded
  // expectation the old bytes are discarded. Unavailable ("ingest ref ... is locked") when
  // another writer holds the ref, unless wait_for_lock.
  Result<std::unique_ptr<ContentWriter>> Writer(const std::string& ref, const WriterOptions& options);
  Result<IngestStatus> StatusOf(const std::string& ref) const;
  // Fields: ref, expected, total.
  Result<std::vector<IngestStatus>> ListStatuses(const Filter& filter) const;
  // Removes an ingest. Unavailable if a writer holds it, NotFound if there is none.
  Status Abort(const std::string& ref);

  // For GC and fsck: unguarded views of the disk.
  const std::filesystem::path& root() const { return root_; }
  std::filesystem::path IngestDir(const std::string& dir_id) const { return root_ / "ingest" / dir_id; }
  static std::string IngestDirId(const std::string& ref);
  // Whether a writer currently holds `ref`.
  bool IngestActive(const std::string& ref);
  MetaDB& db() { return db_; }
  // Shared by writers' commits and deletes; GC takes it exclusively so a blob cannot be
  // committed between mark and sweep.
  std::shared_mutex& gc_lock() { return gc_lock_; }

  // Record encoding, shared with fsck.
  static std::string EncodeInfo(const ContentInfo& info);
  static Result<ContentInfo> DecodeInfo(const Digest& digest, std::string_view value);
  static Result<IngestStatus> DecodeIngest(std::string_view ref, std::string_view value, std::string* dir_id);

 private:
  friend class ContentWriter;
  ContentStore(std::filesystem::path root, MetaDB& db, LeaseManager* leases)
      : root_(std::move(root)), db_(db), leases_(leases) {}
  Status RecordIngest(const ContentWriter& writer);
  Status DiscardIngest(const std::string& ref, const std::string& dir_id);

  std::filesystem::path root_;
  MetaDB& db_;
  LeaseManager* leases_;
  mutable KeyLocks ref_locks_;
  mutable KeyLocks digest_locks_;
  std::shared_mutex gc_lock_;
};

// Commits `bytes` as blob `digest` (a manifest, a config) through an ingest, like
// containerd's content.WriteBlob. If the blob exists already, `labels` are merged into its
// labels instead. With `lease`, the blob is held by it. Returns true when this call
// committed it. FailedPrecondition when the bytes do not match `digest`.
Result<bool> WriteBlob(ContentStore& content, LeaseManager* leases, const Digest& digest, std::string_view bytes,
                       const Labels& labels, const std::string& lease = "");

// The whole of a small committed blob (a manifest, a config). FailedPrecondition when it is
// larger than `limit` bytes; NotFound when absent.
Result<std::string> ReadBlob(const ContentStore& content, const Digest& digest, int64_t limit = 64 << 20);

}  // namespace strata::store
