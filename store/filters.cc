#include "store/filters.h"

#include <regex>

namespace strata::store {
namespace {

bool IsFieldChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  Result<std::vector<Filter::Selector>> ParseFilter() {
    std::vector<Filter::Selector> selectors;
    while (true) {
      SkipSpace();
      STRATA_ASSIGN_OR_RETURN(auto selector, ParseSelector());
      selectors.push_back(std::move(selector));
      SkipSpace();
      if (pos_ == text_.size()) break;
      if (text_[pos_] != ',') return Bad("expected ',' or end");
      ++pos_;
    }
    return selectors;
  }

 private:
  std::unexpected<Error> Bad(std::string_view why) const {
    return Fail(ErrorCode::kInvalidArgument, "invalid filter {:?} at offset {}: {}", text_, pos_, why);
  }

  void SkipSpace() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t')) ++pos_;
  }

  Result<std::string> ParseQuoted() {
    ++pos_;  // opening quote
    std::string out;
    while (pos_ < text_.size() && text_[pos_] != '"') {
      char c = text_[pos_++];
      if (c == '\\') {
        if (pos_ == text_.size()) return Bad("unterminated escape");
        char e = text_[pos_++];
        switch (e) {
          case 'n': out += '\n'; break;
          case 't': out += '\t'; break;
          default: out += e;
        }
      } else {
        out += c;
      }
    }
    if (pos_ == text_.size()) return Bad("unterminated quoted string");
    ++pos_;  // closing quote
    return out;
  }

  Result<std::string> ParseField() {
    if (pos_ < text_.size() && text_[pos_] == '"') return ParseQuoted();
    size_t start = pos_;
    while (pos_ < text_.size() && IsFieldChar(text_[pos_])) ++pos_;
    if (pos_ == start) return Bad("expected a field name");
    return std::string(text_.substr(start, pos_ - start));
  }

  Result<Filter::Selector> ParseSelector() {
    Filter::Selector selector;
    while (true) {
      STRATA_ASSIGN_OR_RETURN(auto field, ParseField());
      selector.fieldpath.push_back(std::move(field));
      if (pos_ < text_.size() && text_[pos_] == '.') {
        ++pos_;
        continue;
      }
      break;
    }
    SkipSpace();
    auto rest = text_.substr(pos_);
    if (rest.empty() || rest.front() == ',') return selector;
    if (rest.starts_with("==")) {
      selector.op = Filter::Selector::Op::kEqual;
    } else if (rest.starts_with("!=")) {
      selector.op = Filter::Selector::Op::kNotEqual;
    } else if (rest.starts_with("~=")) {
      selector.op = Filter::Selector::Op::kMatches;
    } else {
      return Bad("expected an operator (==, !=, ~=)");
    }
    pos_ += 2;
    SkipSpace();
    if (pos_ < text_.size() && text_[pos_] == '"') {
      STRATA_ASSIGN_OR_RETURN(selector.value, ParseQuoted());
    } else {
      size_t start = pos_;
      while (pos_ < text_.size() && text_[pos_] != ',') ++pos_;
      auto value = text_.substr(start, pos_ - start);
      while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
      selector.value = std::string(value);
    }
    if (selector.op == Filter::Selector::Op::kMatches) {
      try {
        std::regex check(selector.value);
      } catch (const std::regex_error& e) {
        return Bad(fmt::format("bad regular expression {:?}: {}", selector.value, e.what()));
      }
    }
    return selector;
  }

  std::string_view text_;
  size_t pos_ = 0;
};

bool MatchSelector(const Filter::Selector& selector, const Filter::FieldLookup& lookup) {
  auto value = lookup(selector.fieldpath);
  switch (selector.op) {
    case Filter::Selector::Op::kPresent: return value.has_value();
    case Filter::Selector::Op::kEqual: return value && *value == selector.value;
    case Filter::Selector::Op::kNotEqual: return value.value_or("") != selector.value;
    case Filter::Selector::Op::kMatches:
      return value && std::regex_search(*value, std::regex(selector.value));
  }
  return false;
}

}  // namespace

Result<Filter> Filter::Parse(const std::vector<std::string>& filters) {
  Filter filter;
  for (const auto& text : filters) {
    if (text.find_first_not_of(" \t") == std::string::npos) continue;
    Parser parser(text);
    STRATA_ASSIGN_OR_RETURN(auto selectors, parser.ParseFilter());
    filter.alternatives_.push_back(std::move(selectors));
  }
  return filter;
}

bool Filter::Match(const FieldLookup& lookup) const {
  if (alternatives_.empty()) return true;
  for (const auto& selectors : alternatives_) {
    bool all = true;
    for (const auto& selector : selectors) {
      if (!MatchSelector(selector, lookup)) {
        all = false;
        break;
      }
    }
    if (all) return true;
  }
  return false;
}

}  // namespace strata::store
