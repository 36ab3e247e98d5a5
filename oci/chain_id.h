// Chain IDs: the identity of a stack of layers, used to name unpacked snapshots.
//
//   ChainID(L0) = DiffID(L0)
//   ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))   (text forms "sha256:<hex>")
//
// The hash is sha256 whatever algorithm the diff IDs use, as in containerd's identity package.
#pragma once

#include <span>
#include <vector>

#include "base/digest.h"
#include "base/error.h"

namespace strata::oci {

// The chain ID of every prefix: result[i] = ChainID(diff_ids[0..i]). Empty in, empty out.
std::vector<Digest> ChainIDs(std::span<const Digest> diff_ids);

// The chain ID of the whole stack. InvalidArgument when `diff_ids` is empty.
Result<Digest> ChainID(std::span<const Digest> diff_ids);

}  // namespace strata::oci
