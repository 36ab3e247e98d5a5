// Implementation helper of the oci module: parsers of nested objects that continue the
// JSON path of their parent, so errors read "manifest: layers[2].digest: ..." rather than
// restarting at "descriptor".
#pragma once

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "oci/descriptor.h"
#include "oci/json_fields.h"
#include "oci/platform.h"

namespace strata::oci::internal {

Result<Platform> PlatformFromJson(const nlohmann::json& value, const JsonPath& path);
Result<Descriptor> DescriptorFromJson(const nlohmann::json& value, const JsonPath& path);
// The required array `value` (the field at `path`; null = missing) of descriptors.
Result<std::vector<Descriptor>> DescriptorListFromJson(const nlohmann::json* value, const JsonPath& path);

}  // namespace strata::oci::internal
