// IngestFile: the data file of one ingest, written append-only.
//
// Whole, aligned 1 MiB pieces go to disk with O_DIRECT: a blob is written once and read
// rarely, so copying it into the page cache only costs (on this project's VMs, page-cache
// writes of fresh memory ran 3-5x slower than direct ones; see bench/ingest_bench.cc). The
// tail, and everything on filesystems without O_DIRECT (tmpfs) or after an unaligned resume,
// goes through the page cache with writeback started every 8 MiB. Up to one piece is staged
// in memory: it reaches the file at Flush(), Sync() or destruction, and is lost by a crash,
// which a resume then rewrites. Not thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string_view>

#include "base/error.h"
#include "base/file.h"

namespace strata::store {

class IngestFile {
 public:
  // Opens (creating if needed) `path`; with `truncate` the file starts empty, otherwise
  // appends continue after its current end.
  static Result<std::unique_ptr<IngestFile>> Open(const std::filesystem::path& path, bool truncate);
  ~IngestFile();
  IngestFile(const IngestFile&) = delete;
  IngestFile& operator=(const IngestFile&) = delete;

  // Bytes appended so far, staged ones included.
  int64_t size() const { return size_; }
  // A descriptor of the file for reads, fchmod and fsync (not for writes: use Append).
  int fd() const { return buffered_.get(); }
  bool direct() const { return direct_.get() >= 0; }

  Status Append(std::string_view data);
  // Writes the staged bytes to the file (not durably).
  Status Flush();
  // Flush + fsync: every appended byte is on disk.
  Status Sync();
  // Empties the file.
  Status Truncate();

 private:
  IngestFile(std::filesystem::path path, UniqueFd buffered, UniqueFd direct, int64_t size);
  Status WriteBuffered(std::string_view data, int64_t offset);
  Status WriteStaged();

  std::filesystem::path path_;
  UniqueFd buffered_;
  UniqueFd direct_;          // -1 when O_DIRECT is unavailable or given up
  int64_t size_ = 0;         // file bytes + staged bytes
  int64_t writeback_offset_ = 0;
  struct AlignedFree {
    void operator()(char* p) const;
  };
  std::unique_ptr<char, AlignedFree> stage_;
  size_t staged_ = 0;        // bytes in stage_, which belong at offset size_ - staged_
};

}  // namespace strata::store
