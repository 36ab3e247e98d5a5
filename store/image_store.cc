#include "store/image_store.h"

#include <nlohmann/json.hpp>

namespace strata::store {
namespace {

using json = nlohmann::json;

std::string Encode(const Image& image) {
  json doc = {{"t", image.target.Serialize()},
              {"c", ToUnixNanos(image.created_at)},
              {"u", ToUnixNanos(image.updated_at)},
              {"l", image.labels}};
  auto bytes = json::to_msgpack(doc);
  return std::string(bytes.begin(), bytes.end());
}

Result<Image> Decode(std::string_view name, std::string_view value) {
  try {
    auto doc = json::from_msgpack(value);
    auto target = oci::Descriptor::Parse(doc.at("t").get<std::string>());
    if (!target) return Fail(target.error().WithContext(fmt::format("image {:?}", name)));
    Image image{std::string(name), std::move(*target), {}, FromUnixNanos(doc.at("c").get<int64_t>()),
                FromUnixNanos(doc.at("u").get<int64_t>())};
    if (doc.contains("l")) image.labels = doc["l"].get<Labels>();
    return image;
  } catch (const json::exception& e) {
    return Fail(ErrorCode::kInternal, "image record {:?}: corrupt: {}", name, e.what());
  }
}

Status ValidateName(const std::string& name) {
  if (name.empty()) return Fail(ErrorCode::kInvalidArgument, "image name must not be empty");
  if (name.size() > 4096) return Fail(ErrorCode::kInvalidArgument, "image name is over 4096 bytes");
  return {};
}

}  // namespace

Result<Image> ImageStore::Get(const std::string& name) const {
  STRATA_ASSIGN_OR_RETURN(auto value, db_.Get(Table::kImages, name));
  if (!value) return Fail(ErrorCode::kNotFound, "image {:?} not found", name);
  return Decode(name, *value);
}

Result<std::vector<Image>> ImageStore::List(const Filter& filter) const {
  std::vector<Image> images;
  Status status;
  STRATA_RETURN_IF_ERROR(db_.Scan(Table::kImages, "", [&](std::string_view key, std::string_view value) {
    auto image = Decode(key, value);
    if (!image) {
      status = Fail(image.error());
      return false;
    }
    bool match = filter.Match([&](const std::vector<std::string>& path) -> std::optional<std::string> {
      if (path.size() == 1 && path[0] == "name") return image->name;
      if (path.size() == 2 && path[0] == "target" && path[1] == "digest") return image->target.digest.ToString();
      if (path.size() == 2 && path[0] == "target" && path[1] == "mediatype") return image->target.media_type;
      if (path.size() == 2 && path[0] == "labels") {
        auto it = image->labels.find(path[1]);
        if (it != image->labels.end()) return it->second;
      }
      return std::nullopt;
    });
    if (match) images.push_back(std::move(*image));
    return true;
  }));
  STRATA_RETURN_IF_ERROR(status);
  return images;
}

Result<Image> ImageStore::Create(Image image) {
  STRATA_RETURN_IF_ERROR(ValidateName(image.name));
  STRATA_RETURN_IF_ERROR(ValidateLabels(image.labels));
  auto guard = locks_.Lock(image.name);
  STRATA_ASSIGN_OR_RETURN(auto existing, db_.Get(Table::kImages, image.name));
  if (existing) return Fail(ErrorCode::kAlreadyExists, "image {:?} already exists", image.name);
  image.created_at = image.updated_at = Now();
  STRATA_RETURN_IF_ERROR(db_.Put(Table::kImages, image.name, Encode(image)));
  return image;
}

Result<Image> ImageStore::Put(Image image) {
  STRATA_RETURN_IF_ERROR(ValidateName(image.name));
  STRATA_RETURN_IF_ERROR(ValidateLabels(image.labels));
  auto guard = locks_.Lock(image.name);
  STRATA_ASSIGN_OR_RETURN(auto existing, db_.Get(Table::kImages, image.name));
  image.updated_at = Now();
  image.created_at = image.updated_at;
  if (existing) {
    STRATA_ASSIGN_OR_RETURN(auto old, Decode(image.name, *existing));
    image.created_at = old.created_at;
  }
  STRATA_RETURN_IF_ERROR(db_.Put(Table::kImages, image.name, Encode(image)));
  return image;
}

Status ImageStore::Delete(const std::string& name) {
  auto guard = locks_.Lock(name);
  STRATA_ASSIGN_OR_RETURN(auto existing, db_.Get(Table::kImages, name));
  if (!existing) return Fail(ErrorCode::kNotFound, "image {:?} not found", name);
  return db_.Delete(Table::kImages, name);
}

}  // namespace strata::store
