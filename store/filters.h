// containerd's filter language, used by List/Walk on content, snapshots, images and leases.
//
//   filters  := one or more filter strings; a record matches if ANY filter matches
//   filter   := selector ("," selector)*        all selectors must match
//   selector := fieldpath [("==" | "!=" | "~=") value]
//   fieldpath:= field ("." field)*  where field is [A-Za-z0-9_]+ or a "quoted string"
//   value    := "quoted string" | unquoted text up to the next ","
// A bare fieldpath tests presence; "==" requires presence and equality; "!=" compares the
// value ("" when absent), as containerd does; "~=" is an ECMAScript regex search.
// Example: labels."containerd.io/gc.root"==x,kind==committed
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"

namespace strata::store {

class Filter {
 public:
  // Returns the value of a field path, or nullopt when the record has no such field.
  using FieldLookup = std::function<std::optional<std::string>(const std::vector<std::string>& fieldpath)>;

  // InvalidArgument naming the filter and the position of the error. An empty list matches
  // everything.
  static Result<Filter> Parse(const std::vector<std::string>& filters);

  bool Match(const FieldLookup& lookup) const;
  bool MatchesAll() const { return alternatives_.empty(); }

  struct Selector {
    enum class Op { kPresent, kEqual, kNotEqual, kMatches };
    std::vector<std::string> fieldpath;
    Op op = Op::kPresent;
    std::string value;
  };

 private:
  std::vector<std::vector<Selector>> alternatives_;
};

}  // namespace strata::store
