#include "store/ingest_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "base/log.h"

namespace strata::store {
namespace {

constexpr size_t kPiece = 1 << 20;         // one direct write; a multiple of any block size
constexpr size_t kAlignment = 4096;        // buffer, offset and length alignment for O_DIRECT
constexpr int64_t kWritebackChunk = 8 << 20;

Error WriteError(const std::filesystem::path& path, int err) {
  return Error(err == ENOSPC ? ErrorCode::kUnavailable : ErrorCode::kInternal,
               fmt::format("write ingest {}: {}", path.string(), strerror(err)));
}

}  // namespace

void IngestFile::AlignedFree::operator()(char* p) const { std::free(p); }

IngestFile::IngestFile(std::filesystem::path path, UniqueFd buffered, UniqueFd direct, int64_t size)
    : path_(std::move(path)), buffered_(std::move(buffered)), direct_(std::move(direct)), size_(size),
      writeback_offset_(size) {}

IngestFile::~IngestFile() {
  // Keep what was appended for a resume; errors here only cost a resume some bytes.
  (void)Flush();
}

Result<std::unique_ptr<IngestFile>> IngestFile::Open(const std::filesystem::path& path, bool truncate) {
  STRATA_ASSIGN_OR_RETURN(auto buffered, OpenFile(path, O_RDWR | O_CREAT | (truncate ? O_TRUNC : 0), 0644));
  struct stat st {};
  if (fstat(buffered.get(), &st) != 0) {
    return Fail(ErrorCode::kInternal, "stat ingest {}: {}", path.string(), strerror(errno));
  }
  UniqueFd direct;
  // Direct writes need an aligned file offset; an unaligned resume stays buffered.
  if (st.st_size % static_cast<off_t>(kAlignment) == 0) {
    direct.reset(open(path.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC));  // fails on tmpfs: fine
  }
  std::unique_ptr<IngestFile> file(new IngestFile(path, std::move(buffered), std::move(direct), st.st_size));
  if (file->direct()) {
    file->stage_.reset(static_cast<char*>(std::aligned_alloc(kAlignment, kPiece)));
    if (!file->stage_) file->direct_.reset();
  }
  return file;
}

Status IngestFile::WriteBuffered(std::string_view data, int64_t offset) {
  while (!data.empty()) {
    ssize_t n = pwrite(buffered_.get(), data.data(), data.size(), offset);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Fail(WriteError(path_, errno));
    data.remove_prefix(static_cast<size_t>(n));
    offset += n;
  }
  // Start writeback as we go so the fsync at commit has little left to do.
  if (offset - writeback_offset_ >= kWritebackChunk) {
    sync_file_range(buffered_.get(), writeback_offset_, offset - writeback_offset_, SYNC_FILE_RANGE_WRITE);
    writeback_offset_ = offset;
  }
  return {};
}

Status IngestFile::WriteStaged() {
  int64_t offset = size_ - static_cast<int64_t>(staged_);
  if (staged_ == kPiece && direct()) {
    ssize_t n;
    do {
      n = pwrite(direct_.get(), stage_.get(), kPiece, offset);
    } while (n < 0 && errno == EINTR);
    if (n == static_cast<ssize_t>(kPiece)) {
      staged_ = 0;
      return {};
    }
    if (n < 0 && errno != EINVAL) return Fail(WriteError(path_, errno));
    // EINVAL (no O_DIRECT here after all) or a short write: finish through the page cache.
    spdlog::debug("ingest {}: direct write unavailable, using buffered writes", path_.string());
    direct_.reset();
    size_t done = n > 0 ? static_cast<size_t>(n) : 0;
    STRATA_RETURN_IF_ERROR(WriteBuffered(std::string_view(stage_.get() + done, staged_ - done), offset + done));
    staged_ = 0;
    return {};
  }
  STRATA_RETURN_IF_ERROR(WriteBuffered(std::string_view(stage_.get(), staged_), offset));
  staged_ = 0;
  return {};
}

Status IngestFile::Append(std::string_view data) {
  if (!direct()) {
    STRATA_RETURN_IF_ERROR(WriteBuffered(data, size_));
    size_ += static_cast<int64_t>(data.size());
    return {};
  }
  while (!data.empty()) {
    size_t take = std::min(data.size(), kPiece - staged_);
    std::memcpy(stage_.get() + staged_, data.data(), take);
    staged_ += take;
    size_ += static_cast<int64_t>(take);
    data.remove_prefix(take);
    if (staged_ == kPiece) STRATA_RETURN_IF_ERROR(WriteStaged());
    if (!direct()) return Append(data);  // fell back mid-way
  }
  return {};
}

Status IngestFile::Flush() {
  if (staged_ == 0) return {};
  // A partial piece goes through the page cache; the direct fd is done after this (the file
  // end is no longer aligned), so later appends are buffered too.
  STRATA_RETURN_IF_ERROR(WriteBuffered(std::string_view(stage_.get(), staged_), size_ - static_cast<int64_t>(staged_)));
  staged_ = 0;
  if (size_ % static_cast<int64_t>(kAlignment) != 0) direct_.reset();
  return {};
}

Status IngestFile::Sync() {
  STRATA_RETURN_IF_ERROR(Flush());
  // ENOSPC can surface only here (delayed allocation): ErrnoFail maps it to Unavailable.
  if (fsync(buffered_.get()) != 0) return ErrnoFail(errno, "fsync ingest", path_);
  return {};
}

Status IngestFile::Truncate() {
  staged_ = 0;
  if (ftruncate(buffered_.get(), 0) != 0) {
    return Fail(ErrorCode::kInternal, "truncate ingest {}: {}", path_.string(), strerror(errno));
  }
  size_ = 0;
  writeback_offset_ = 0;
  if (!direct() && stage_) direct_.reset(open(path_.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC));
  return {};
}

}  // namespace strata::store
