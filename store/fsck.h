// fsck: checks the content store's records against the disk and the disk against the
// records, and with `repair` fixes what it finds without losing committed data:
//   - a record whose file is missing, truncated or corrupt is dropped (with the bad file),
//     so the content can be fetched again;
//   - a blob file with no record whose bytes match its name is adopted (recorded), any
//     other unnamed file is removed;
//   - ingest records without data and ingest directories without records are removed;
//   - a blob file with the wrong mode is made 0444 again.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/error.h"

namespace strata::store {

class ContentStore;

struct FsckOptions {
  bool quick = false;   // check sizes only, skip rehashing every blob
  bool repair = false;
};

struct FsckProblem {
  std::string kind;     // missing-blob, size-mismatch, corrupt-blob, bad-mode, unrecorded-blob,
                        // orphan-file, corrupt-record, missing-ingest-data, orphan-ingest
  std::string subject;  // digest, ref or path
  std::string detail;
  bool repaired = false;
};

struct FsckReport {
  int64_t blobs_checked = 0;
  int64_t bytes_checked = 0;
  std::vector<FsckProblem> problems;
  bool clean() const { return problems.empty(); }
};

// Holds the GC lock exclusively while it runs.
Result<FsckReport> CheckStore(ContentStore& content, const FsckOptions& options);

// Finishes commits a crash cut short between publishing a blob file and recording it
// (ContentWriter::Commit renames the data file into blobs/ first, then writes the record):
// an ingest whose data file is gone, whose expected digest (Commit records the digest in
// the ingest before publishing, when it was not expected already) has no record, and whose blob
// file hashes to that digest (and has the ingest's total size) gets its blob record, and
// the ingest goes. The record has no labels and no lease: the interrupted operation's
// rerun adds those again. Store::Open runs it, so such a crash leaves fsck nothing to
// repair and a rerun of the pull nothing to fetch again. Returns how many were finished.
// REQUIRES: no writer is active (the store was just opened).
Result<int> FinishInterruptedCommits(ContentStore& content);

}  // namespace strata::store
