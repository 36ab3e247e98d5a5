#include "registry/progress.h"

namespace strata::registry {

std::string_view TransferStateName(TransferState state) {
  switch (state) {
    case TransferState::kWaiting: return "waiting";
    case TransferState::kDownloading: return "downloading";
    case TransferState::kUploading: return "uploading";
    case TransferState::kVerifying: return "verifying";
    case TransferState::kDone: return "done";
    case TransferState::kExists: return "already exists";
    case TransferState::kMounted: return "mounted";
    case TransferState::kSkipped: return "skipped";
    case TransferState::kFailed: return "failed";
  }
  return "unknown";
}

bool IsFinalState(TransferState state) {
  switch (state) {
    case TransferState::kDone:
    case TransferState::kExists:
    case TransferState::kMounted:
    case TransferState::kSkipped:
    case TransferState::kFailed: return true;
    default: return false;
  }
}

std::string_view BlobKindName(BlobKind kind) {
  switch (kind) {
    case BlobKind::kManifest: return "manifest";
    case BlobKind::kIndex: return "index";
    case BlobKind::kConfig: return "config";
    case BlobKind::kLayer: return "layer";
    case BlobKind::kBlob: return "blob";
  }
  return "blob";
}

}  // namespace strata::registry
