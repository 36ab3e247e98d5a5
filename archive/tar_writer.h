// Streaming tar writer: POSIX ustar headers, with PAX extended headers for whatever ustar
// cannot hold (long or non-ASCII names and link targets, large sizes and ids, sub-second
// or out-of-range mtimes, xattrs, and caller-supplied records such as MSWINDOWS.*).
//
// The output is what GNU tar, Go's archive/tar and containerd read. Nothing is buffered
// beyond one header: entry data goes to the sink as it is given.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "base/error.h"

namespace strata::archive {

// Receives the archive bytes in order. An error stops the writer: every later call fails.
using ByteSink = std::function<Status(std::string_view bytes)>;

// The ustar typeflag of an entry.
enum class TarEntryType : char {
  kRegular = '0',
  kHardLink = '1',
  kSymlink = '2',
  kCharDevice = '3',
  kBlockDevice = '4',
  kDirectory = '5',
  kFifo = '6',
};

// Seconds and nanoseconds since the epoch; seconds may be negative, nanoseconds < 1e9.
struct TarTime {
  int64_t seconds = 0;
  uint32_t nanoseconds = 0;
};

struct TarEntry {
  // Path inside the archive ("usr/bin/env"), as given: the writer neither strips a leading
  // "/" nor cleans "..": producing hostile archives is a legitimate test need. A directory
  // name gets a trailing "/" if it has none.
  std::string name;
  TarEntryType type = TarEntryType::kRegular;
  // Permission bits including setuid/setgid/sticky (masked to 07777).
  uint32_t mode = 0644;
  uint64_t uid = 0;
  uint64_t gid = 0;
  std::string uname;
  std::string gname;
  // Content length; only regular files may have a non-zero size.
  uint64_t size = 0;
  TarTime mtime;
  // Symlink target, or for a hard link the name of an earlier entry in this archive.
  std::string linkname;
  uint32_t devmajor = 0;  // char/block devices only
  uint32_t devminor = 0;
  // Extended attributes, name -> raw value, written as SCHILY.xattr.<name> records.
  std::map<std::string, std::string> xattrs;
  // Further PAX records written verbatim (key -> value), e.g. "MSWINDOWS.fileattr" or
  // "LIBARCHIVE.creationtime". They are written after the records the writer derives, so a
  // reader that takes the last value lets these override ("path", "mtime"...).
  std::map<std::string, std::string> pax_records;
};

class TarWriter {
 public:
  explicit TarWriter(ByteSink sink);
  TarWriter(const TarWriter&) = delete;
  TarWriter& operator=(const TarWriter&) = delete;

  // Starts an entry: writes its PAX header (when needed) and its ustar header.
  // REQUIRES: the previous entry's data is complete (exactly `size` bytes were written).
  // InvalidArgument for an empty name, size on a non-regular entry, a missing linkname on a
  // link, or a PAX key containing '=' or a newline.
  Status WriteHeader(const TarEntry& entry);

  // Appends content of the current regular-file entry; may be called any number of times.
  // InvalidArgument if the total would exceed the size given to WriteHeader.
  Status WriteData(std::string_view data);

  // WriteHeader with size = content.size(), then the content.
  Status WriteEntry(TarEntry entry, std::string_view content = {});

  // Pads the last entry and writes the two zero blocks that end the archive.
  // REQUIRES: the current entry is complete. No calls are allowed afterwards.
  Status Finish();

  // Bytes given to the sink so far.
  uint64_t bytes_written() const { return bytes_written_; }

 private:
  Status Emit(std::string_view bytes);
  Status CloseCurrentEntry();
  Status CheckUsable() const;

  ByteSink sink_;
  uint64_t bytes_written_ = 0;
  uint64_t entry_remaining_ = 0;  // data bytes still owed to the current entry
  uint64_t entry_size_ = 0;       // size of the current entry (for padding)
  bool failed_ = false;
  bool finished_ = false;
};

// The encoding of one PAX record: "<length> <key>=<value>\n", where length counts the
// whole record including its own digits.
std::string PaxRecord(std::string_view key, std::string_view value);

}  // namespace strata::archive
