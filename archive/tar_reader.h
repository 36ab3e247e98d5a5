// Streaming tar reader: the inverse of TarWriter, and the parser every pulled layer goes
// through. Reads ustar, old GNU and v7 headers, PAX extended ('x') and global ('g') headers,
// GNU long names ('L'/'K'), base-256 numbers, and GNU sparse files (old GNU 'S' and PAX
// sparse 0.0, 0.1 and 1.0), which it expands so callers only ever see plain content.
//
// Input is hostile: every length, number and record is checked, limits bound the memory a
// header can make us allocate, and any inconsistency is an InvalidArgument error naming the
// entry (or the byte offset) rather than a guess.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "archive/tar_writer.h"
#include "base/error.h"
#include "base/io.h"

namespace strata::archive {

struct TarReaderOptions {
  // A PAX header, GNU long name/link or sparse map larger than this is refused.
  uint64_t max_pax_header_bytes = uint64_t{1} << 20;
  // A size (header, PAX or sparse logical size) above this is refused.
  uint64_t max_entry_size = uint64_t{1} << 40;
};

// Pull-style reader: Next() returns the next entry's header; ReadContent() reads its data;
// the following Next() skips whatever data was not read. Not thread-safe. After any error
// the reader is unusable: every later call returns the same error.
//
// What the returned TarEntry holds:
// - name and linkname are the raw bytes from the archive (PAX path/linkpath, GNU long
//   names, ustar prefix + "/" + name); nothing is cleaned, so hostile names reach the
//   caller intact. The one normalization: a directory's name always ends in "/" (added if
//   the archive lacks it), matching what TarWriter writes.
// - type '0', '\0' and '7' (contiguous) and sparse files are kRegular; v7 '\0' entries whose
//   name ends in '/' are directories; GNU dumpdirs ('D') are directories (listing dropped).
//   An unknown type flag with no data is returned as is (static_cast<TarEntryType>(flag))
//   for the caller to reject; with data it is an error.
// - size is the logical content length: 0 for everything but regular files (data stored
//   with links, directories etc. is skipped), the expanded length for sparse files.
// - mode is masked to 07777 (some writers put S_IFMT bits in it).
// - PAX records: path, linkpath, size, uid, gid, uname, gname, mtime (with fractions) set
//   the fields; SCHILY.xattr.<name> and LIBARCHIVE.xattr.<name> (base64, %-encoded name)
//   go to xattrs; GNU.sparse.* are consumed; every other record (atime, ctime,
//   MSWINDOWS.*, LIBARCHIVE.creationtime, ...) is kept verbatim in pax_records. Global
//   records apply to every later entry; a per-entry record with an empty value cancels
//   the global one (POSIX).
class TarReader {
 public:
  explicit TarReader(ByteReader& input, TarReaderOptions options = {});
  TarReader(const TarReader&) = delete;
  TarReader& operator=(const TarReader&) = delete;

  // The next entry, or nullopt at the end of the archive: two zero blocks, a zero block
  // then EOF, or EOF exactly at a header boundary. A zero block followed by a non-zero one
  // is an error (readers disagree on what follows, so we refuse to pick one).
  Result<std::optional<TarEntry>> Next();

  // Reads up to buffer.size() bytes of the current entry's content; 0 at its end (and for
  // entries without content). Sparse files read as their expanded content, holes as zeros.
  Result<size_t> ReadContent(std::span<char> buffer);

  // Bytes of the archive consumed so far.
  uint64_t offset() const { return offset_; }

 private:
  struct SparseSegment {
    uint64_t offset;
    uint64_t length;
  };

  Result<std::optional<TarEntry>> NextImpl();
  Result<size_t> ReadContentImpl(std::span<char> buffer);

  // Buffered input. ReadInput returns 0 only at the end of the input.
  Result<size_t> ReadInput(std::span<char> out);
  Result<size_t> ReadInputFull(std::span<char> out);
  Result<uint64_t> SkipInput(uint64_t count);

  // Physical data of the current entry (before sparse expansion); fails on truncation.
  Result<size_t> ReadEntryData(std::span<char> out);
  Status ReadEntryDataFull(std::span<char> out);
  Status SkipRestOfEntry();
  Result<std::string> ReadMetaEntry(std::string_view what, uint64_t size, uint64_t header_offset);
  Status TruncatedError(uint64_t missing) const;

  // Sparse map sources.
  Status ReadOldGnuSparseMap(std::span<const char> header);
  Status ReadPaxSparseMapFromData();
  Status ValidateSparseMap(uint64_t physical_size);

  ByteReader& input_;
  TarReaderOptions options_;

  std::vector<char> buffer_;
  size_t buffer_pos_ = 0;
  size_t buffer_end_ = 0;
  bool input_eof_ = false;
  uint64_t offset_ = 0;

  std::optional<Error> error_;
  bool at_end_ = false;

  std::map<std::string, std::string> global_records_;

  // The current entry.
  std::string entry_name_;       // for error messages
  uint64_t data_remaining_ = 0;  // physical data bytes not yet consumed
  uint64_t data_size_ = 0;       // physical data size (for messages)
  uint64_t padding_ = 0;         // zero bytes after the data, up to the block boundary
  bool has_content_ = false;     // ReadContent returns data (regular files)
  bool sparse_ = false;
  std::vector<SparseSegment> sparse_map_;
  size_t sparse_index_ = 0;
  uint64_t logical_pos_ = 0;
  uint64_t logical_size_ = 0;
};

}  // namespace strata::archive
