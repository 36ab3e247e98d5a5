#include "oci/json_fields.h"

#include <limits>

namespace strata::oci::internal {
namespace {

using Json = nlohmann::json;

std::string_view TypeName(const Json& value) { return value.type_name(); }

}  // namespace

JsonPath JsonPath::Field(std::string_view key) const {
  JsonPath child = *this;
  if (!child.path_.empty()) child.path_ += '.';
  child.path_ += key;
  return child;
}

JsonPath JsonPath::Element(size_t index) const {
  JsonPath child = *this;
  child.path_ += fmt::format("[{}]", index);
  return child;
}

std::string JsonPath::ToString() const {
  return path_.empty() ? document_ : fmt::format("{}: {}", document_, path_);
}

Error JsonPath::Invalid(std::string_view reason) const {
  return Error(ErrorCode::kInvalidArgument, fmt::format("{}: {}", ToString(), reason));
}

Result<Json> ParseJson(std::string_view bytes, std::string_view document) {
  struct TooDeep {};
  // Copying, comparing and dumping a json value recurse once per level: refuse documents
  // deep enough to exhaust the stack later.
  auto limit_depth = [](int depth, Json::parse_event_t, Json&) {
    if (depth > static_cast<int>(kMaxJsonDepth)) throw TooDeep{};
    return true;
  };
  try {
    return Json::parse(bytes.begin(), bytes.end(), limit_depth);
  } catch (const Json::exception& e) {
    return Fail(ErrorCode::kInvalidArgument, "{}: not valid JSON: {}", document, e.what());
  } catch (const TooDeep&) {
    return Fail(ErrorCode::kInvalidArgument, "{}: JSON nested deeper than {} levels", document, kMaxJsonDepth);
  } catch (const std::exception& e) {
    return Fail(ErrorCode::kInvalidArgument, "{}: cannot parse JSON: {}", document, e.what());
  }
}

Result<JsonObjectReader> JsonObjectReader::Open(const Json& value, JsonPath path) {
  if (!value.is_object()) {
    return Fail(path.Invalid(fmt::format("expected a JSON object, got {}", TypeName(value))));
  }
  return JsonObjectReader(value, std::move(path));
}

const Json* JsonObjectReader::Take(std::string_view key) {
  taken_.emplace(key);
  auto it = object_->find(key);
  if (it == object_->end() || it->is_null()) return nullptr;
  return &*it;
}

Result<std::optional<std::string>> JsonObjectReader::OptionalString(std::string_view key) {
  const Json* value = Take(key);
  if (value == nullptr) return std::nullopt;
  if (!value->is_string()) {
    return Fail(path_.Field(key).Invalid(fmt::format("expected a string, got {}", TypeName(*value))));
  }
  return value->get<std::string>();
}

Result<std::string> JsonObjectReader::RequiredString(std::string_view key) {
  STRATA_ASSIGN_OR_RETURN(std::optional<std::string> text, OptionalString(key));
  if (!text) return Fail(path_.Field(key).Invalid("missing"));
  return std::move(*text);
}

Result<std::string> JsonObjectReader::StringOrEmpty(std::string_view key) {
  STRATA_ASSIGN_OR_RETURN(std::optional<std::string> text, OptionalString(key));
  return text.value_or(std::string());
}

Result<std::optional<int64_t>> JsonObjectReader::OptionalInt(std::string_view key) {
  const Json* value = Take(key);
  if (value == nullptr) return std::nullopt;
  if (value->is_number_unsigned()) {
    uint64_t number = value->get<uint64_t>();
    if (number > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Fail(path_.Field(key).Invalid(fmt::format("{} is out of range", number)));
    }
    return static_cast<int64_t>(number);
  }
  if (value->is_number_integer()) return value->get<int64_t>();
  return Fail(path_.Field(key).Invalid(fmt::format("expected an integer, got {} {}", TypeName(*value),
                                                   DumpJson(*value))));
}

Result<int64_t> JsonObjectReader::RequiredInt(std::string_view key) {
  STRATA_ASSIGN_OR_RETURN(std::optional<int64_t> number, OptionalInt(key));
  if (!number) return Fail(path_.Field(key).Invalid("missing"));
  return *number;
}

Result<std::optional<bool>> JsonObjectReader::OptionalBool(std::string_view key) {
  const Json* value = Take(key);
  if (value == nullptr) return std::nullopt;
  if (!value->is_boolean()) {
    return Fail(path_.Field(key).Invalid(fmt::format("expected true or false, got {}", TypeName(*value))));
  }
  return value->get<bool>();
}

Result<std::optional<std::vector<std::string>>> JsonObjectReader::OptionalStringList(std::string_view key) {
  const Json* value = Take(key);
  if (value == nullptr) return std::nullopt;
  JsonPath path = path_.Field(key);
  if (!value->is_array()) {
    return Fail(path.Invalid(fmt::format("expected an array of strings, got {}", TypeName(*value))));
  }
  std::vector<std::string> list;
  list.reserve(value->size());
  for (size_t i = 0; i < value->size(); ++i) {
    const Json& element = (*value)[i];
    if (!element.is_string()) {
      return Fail(path.Element(i).Invalid(fmt::format("expected a string, got {}", TypeName(element))));
    }
    list.push_back(element.get<std::string>());
  }
  return list;
}

Result<std::vector<std::string>> JsonObjectReader::StringList(std::string_view key) {
  STRATA_ASSIGN_OR_RETURN(std::optional<std::vector<std::string>> list, OptionalStringList(key));
  return list ? std::move(*list) : std::vector<std::string>();
}

Result<std::map<std::string, std::string>> JsonObjectReader::StringMap(std::string_view key) {
  const Json* value = Take(key);
  std::map<std::string, std::string> map;
  if (value == nullptr) return map;
  JsonPath path = path_.Field(key);
  if (!value->is_object()) {
    return Fail(path.Invalid(fmt::format("expected an object of strings, got {}", TypeName(*value))));
  }
  for (const auto& [name, element] : value->items()) {
    if (!element.is_string()) {
      return Fail(path.Field(name).Invalid(fmt::format("expected a string, got {}", TypeName(element))));
    }
    map.emplace(name, element.get<std::string>());
  }
  return map;
}

Result<std::set<std::string>> JsonObjectReader::KeySet(std::string_view key) {
  const Json* value = Take(key);
  std::set<std::string> keys;
  if (value == nullptr) return keys;
  if (!value->is_object()) {
    return Fail(path_.Field(key).Invalid(fmt::format("expected an object, got {}", TypeName(*value))));
  }
  for (const auto& [name, element] : value->items()) keys.insert(name);
  return keys;
}

Result<std::optional<Digest>> JsonObjectReader::OptionalDigest(std::string_view key) {
  STRATA_ASSIGN_OR_RETURN(std::optional<std::string> text, OptionalString(key));
  if (!text) return std::nullopt;
  Result<Digest> digest = Digest::Parse(*text);
  if (!digest) return Fail(path_.Field(key).Invalid(digest.error().message()));
  return std::move(*digest);
}

Result<Digest> JsonObjectReader::RequiredDigest(std::string_view key) {
  STRATA_ASSIGN_OR_RETURN(std::optional<Digest> digest, OptionalDigest(key));
  if (!digest) return Fail(path_.Field(key).Invalid("missing"));
  return std::move(*digest);
}

Json JsonObjectReader::UnknownFields() const {
  Json unknown = Json::object();
  for (const auto& [name, element] : object_->items()) {
    if (!taken_.contains(name)) unknown[name] = element;
  }
  return unknown;
}

void MergeUnknownFields(const Json& unknown, Json& out) {
  if (!unknown.is_object()) return;
  for (const auto& [name, element] : unknown.items()) {
    if (!out.contains(name)) out[name] = element;
  }
}

std::string DumpJson(const Json& value) {
  return value.dump(-1, ' ', /*ensure_ascii=*/false, Json::error_handler_t::replace);
}

}  // namespace strata::oci::internal
