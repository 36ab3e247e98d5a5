// The images of the load test, in generations. Every image of every generation starts with
// the same two "os" layers (what real images share most: their base); generation g adds 8
// layers of its own, each image taking 3 of them in a different combination and order
// (images k and k+8 share their first one, so their pulls race to commit the same chain
// snapshot), and one layer of its own on top (even images white out a file of the os
// layer). So one generation's 16 pulls contend for the same blobs, and a blob of one
// generation is never wanted by another: each blob digest is needed exactly once over a
// whole run, however long (what lets the test demand "fetched at most once").
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/digest.h"
#include "base/error.h"
#include "tests/support/image_builder.h"
#include "tests/support/registry_fixture.h"

namespace strata::load {

inline constexpr int kImagesPerGeneration = 16;
inline constexpr int kLayersPerGeneration = 8;

// What a mounted image must show: files with the sha256 of their bytes, and paths that
// must not exist (whited out).
struct ExpectedTree {
  std::map<std::string, Digest> files;
  std::vector<std::string> absent;
};

struct LoadImage {
  int generation = 0;
  int index = 0;
  std::string repository;  // "load/app"
  std::string tag;         // "g<generation>-i<index>"
  test_support::PushedImage pushed;
  ExpectedTree expected;
  // Every blob a pull of it fetches: config and layers (the manifest is not a blob GET).
  std::vector<Digest> blobs() const;
};

// Builds and pushes generation `generation` (16 images) to `registry`. Deterministic: the
// same generation number gives the same digests.
Result<std::vector<LoadImage>> PushGeneration(test_support::RegistryFixture& registry, int generation);

// Two small busybox images for containerd's own pulls (repositories "ctr/app1", "ctr/app2",
// tag "1"), sharing their busybox base; their blobs are disjoint from the load images'.
// Each has /data/hello with "hello from <repository>\n".
Result<std::vector<std::string>> PushContainerdImages(test_support::RegistryFixture& registry);

// Checks the tree mounted at `root` against `expected`; the first difference, or "".
std::string CompareTree(const std::string& root, const ExpectedTree& expected);

}  // namespace strata::load
