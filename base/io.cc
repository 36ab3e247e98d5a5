#include "base/io.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace strata {

Result<size_t> StringViewReader::Read(std::span<char> buffer) {
  const size_t n = std::min(buffer.size(), data_.size());
  std::memcpy(buffer.data(), data_.data(), n);
  data_.remove_prefix(n);
  return n;
}

Result<size_t> FdReader::Read(std::span<char> buffer) {
  for (;;) {
    ssize_t n = ::read(fd_, buffer.data(), buffer.size());
    if (n >= 0) return static_cast<size_t>(n);
    if (errno != EINTR) return Fail(ErrorCode::kInternal, "read fd {}: {}", fd_, std::strerror(errno));
  }
}

Result<size_t> DigestingReader::Read(std::span<char> buffer) {
  STRATA_ASSIGN_OR_RETURN(size_t n, inner_.Read(buffer));
  digester_.Update(std::string_view(buffer.data(), n));
  return n;
}

Result<size_t> ReadFull(ByteReader& reader, std::span<char> buffer) {
  size_t done = 0;
  while (done < buffer.size()) {
    STRATA_ASSIGN_OR_RETURN(size_t n, reader.Read(buffer.subspan(done)));
    if (n == 0) break;
    done += n;
  }
  return done;
}

Result<std::string> ReadAll(ByteReader& reader, size_t limit) {
  std::string out;
  char chunk[64 * 1024];
  for (;;) {
    STRATA_ASSIGN_OR_RETURN(size_t n, reader.Read(chunk));
    if (n == 0) return out;
    if (out.size() + n > limit) {
      return Fail(ErrorCode::kFailedPrecondition, "stream is longer than the {} byte limit", limit);
    }
    out.append(chunk, n);
  }
}

}  // namespace strata
