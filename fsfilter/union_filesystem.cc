#include "fsfilter/union_filesystem.h"

#include <fcntl.h>

namespace strata::fsfilter {

Result<std::unique_ptr<UnionFilesystem>> UnionFilesystem::Open(const LayerChainConfig& config,
                                                               std::unique_ptr<NameFilter> names,
                                                               std::unique_ptr<XattrSource> xattrs) {
  STRATA_ASSIGN_OR_RETURN(LayerChain chain, LayerChain::Open(config));
  return std::unique_ptr<UnionFilesystem>(new UnionFilesystem(std::move(chain), std::move(names), std::move(xattrs)));
}

SysResult<UniqueFd> UnionFilesystem::Open(Node* node, int flags) {
  flags &= ~(O_CREAT | O_EXCL | O_NOCTTY);
  if (WantsWrite(flags)) return writer_.OpenForWrite(node, flags);
  if (S_ISLNK(node->type)) return SysFail(ELOOP);
  return view_.OpenTopmost(node, flags);
}

}  // namespace strata::fsfilter
