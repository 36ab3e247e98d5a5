// Progress of blob transfers (pulls, pushes, copies), as events a display consumes.
//
// Each transfer is one item, named by its digest. Its events run
//   kWaiting -> kDownloading/kUploading (offset grows, repeated) -> kVerifying -> kDone
// or end early with kExists (already in the store / on the registry), kMounted (cross-repo
// mount), kSkipped (non-distributable layer not pushed) or kFailed (with `error`).
// A resumed transfer's first kDownloading event has offset > 0.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "base/digest.h"

namespace strata::registry {

enum class TransferState {
  kWaiting,
  kDownloading,
  kUploading,
  kVerifying,
  kDone,
  kExists,
  kMounted,
  kSkipped,
  kFailed,
};

// "waiting", "downloading", ..., "already exists", "mounted", "skipped", "failed".
std::string_view TransferStateName(TransferState state);
// True for the states after which an item sends no more events.
bool IsFinalState(TransferState state);

enum class BlobKind { kManifest, kIndex, kConfig, kLayer, kBlob };
std::string_view BlobKindName(BlobKind kind);  // "manifest", "index", "config", "layer", "blob"

struct ProgressEvent {
  Digest digest;
  BlobKind kind = BlobKind::kBlob;
  TransferState state = TransferState::kWaiting;
  int64_t offset = 0;  // bytes transferred so far (including bytes resumed from)
  int64_t total = 0;   // the blob's size; 0 when unknown
  std::string error;   // for kFailed
};

// Receives events, possibly from several threads at once: implementations must be
// thread-safe. A null sink means nobody is watching.
using ProgressSink = std::function<void(const ProgressEvent&)>;

}  // namespace strata::registry
