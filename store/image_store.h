// ImageStore: image name -> target descriptor (a manifest or an index), as containerd's
// images.Store. Names are normalised references ("docker.io/library/alpine:latest").
//
// Record in the images table: key <name> -> {t: target descriptor JSON, c: created ns,
// u: updated ns, l: {labels}}. Thread-safe.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "oci/descriptor.h"
#include "store/filters.h"
#include "store/meta_db.h"
#include "store/types.h"

namespace strata::store {

struct Image {
  std::string name;
  oci::Descriptor target;
  Labels labels;
  Timestamp created_at;
  Timestamp updated_at;
};

class ImageStore {
 public:
  explicit ImageStore(MetaDB& db) : db_(db) {}

  Result<Image> Get(const std::string& name) const;
  // Fields: name, target.digest, target.mediatype, labels.<k>.
  Result<std::vector<Image>> List(const Filter& filter) const;
  // AlreadyExists if the name is taken.
  Result<Image> Create(Image image);
  // Creates the image or points an existing name at a new target (keeping created_at);
  // labels are replaced. This is what tag and pull do.
  Result<Image> Put(Image image);
  // NotFound if absent.
  Status Delete(const std::string& name);

 private:
  MetaDB& db_;
  KeyLocks locks_;
};

}  // namespace strata::store
