#include "oci/chain_id.h"

namespace strata::oci {

std::vector<Digest> ChainIDs(std::span<const Digest> diff_ids) {
  std::vector<Digest> chain_ids;
  chain_ids.reserve(diff_ids.size());
  for (const Digest& diff_id : diff_ids) {
    if (chain_ids.empty()) {
      chain_ids.push_back(diff_id);
    } else {
      chain_ids.push_back(Digest::Of(chain_ids.back().ToString() + " " + diff_id.ToString()));
    }
  }
  return chain_ids;
}

Result<Digest> ChainID(std::span<const Digest> diff_ids) {
  if (diff_ids.empty()) return Fail(ErrorCode::kInvalidArgument, "chain ID of an empty layer list");
  return ChainIDs(diff_ids).back();
}

}  // namespace strata::oci
