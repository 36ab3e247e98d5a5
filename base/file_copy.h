// Positioned writes and in-kernel copies between open files.
#pragma once

#include <cstdint>
#include <string_view>

#include "base/error.h"

namespace strata {

// pwrite(2) of all of `data` at `offset`, retrying short writes and EINTR.
Status PwriteAll(int fd, std::string_view data, uint64_t offset);

// Copies `size` bytes from `source` at `source_offset` to `target` at `target_offset`
// without moving either file offset: copy_file_range (in the kernel, a reflink where the
// filesystem can), else pread/pwrite. Errors: the source ending early (Internal), I/O.
Status CopyFileBytes(int source, uint64_t source_offset, int target, uint64_t target_offset, uint64_t size);

}  // namespace strata
