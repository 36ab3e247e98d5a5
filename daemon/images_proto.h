// strata.v1 messages to and from the engine's types, for the Images service and its client
// (the CLI), so both sides agree on one mapping. FromProto fails (InvalidArgument naming
// the field) on what the engine types cannot hold, e.g. a malformed digest.
#pragma once

#include <string>
#include <vector>

#include "base/error.h"
#include "images/collect_garbage.h"
#include "images/pull.h"
#include "images/push.h"
#include "oci/descriptor.h"
#include "registry/progress.h"
#include "snapshotter/mount.h"
#include "store/image_store.h"
#include "containerd/types/mount.pb.h"
#include "strata/v1/images.pb.h"

namespace strata::daemon {

void ToProto(const std::vector<snapshotter::Mount>& mounts,
             google::protobuf::RepeatedPtrField<containerd::types::Mount>* out);
std::vector<snapshotter::Mount> FromProto(const google::protobuf::RepeatedPtrField<containerd::types::Mount>& mounts);

void ToProto(const oci::Descriptor& descriptor, strata::v1::Descriptor* out);
Result<oci::Descriptor> FromProto(const strata::v1::Descriptor& descriptor, std::string_view field);

void ToProto(const store::Image& image, strata::v1::Image* out);
Result<store::Image> FromProto(const strata::v1::Image& image);

void ToProto(const registry::ProgressEvent& event, strata::v1::TransferProgress* out);
Result<registry::ProgressEvent> FromProto(const strata::v1::TransferProgress& progress);

// `unpacked`: whether the pull unpacked its layers.
void ToProto(const images::PullResult& result, bool unpacked, strata::v1::PullResult* out);
Result<images::PullResult> FromProto(const strata::v1::PullResult& result);

void ToProto(const images::PushImageResult& result, const std::string& name, strata::v1::PushResult* out);
Result<images::PushImageResult> FromProto(const strata::v1::PushResult& result);

void ToProto(const images::GarbageReport& report, bool dry_run, strata::v1::GCResponse* out);
Result<images::GarbageReport> FromProto(const strata::v1::GCResponse& report);

}  // namespace strata::daemon
