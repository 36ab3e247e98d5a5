#include "registry/hosts.h"

#include <fmt/format.h>

#include <spdlog/spdlog.h>

#include <cctype>
#include <map>
#include <system_error>

#include "base/file.h"
#include "registry/url.h"

namespace strata::registry {

std::string RegistryHost::ApiUrl() const { return fmt::format("{}://{}{}/", scheme, host, api_root); }

std::string RegistryHost::RepositoryUrl(std::string_view repository) const {
  return fmt::format("{}://{}{}/{}/", scheme, host, api_root, repository);
}

RegistryHost HostsConfig::Upstream(const oci::Reference& reference) const {
  RegistryHost host;
  host.host = reference.ApiHost();
  bool plain = options_.plain_http_hosts.contains(host.host) || DefaultsToPlainHttp(host.host);
  host.scheme = plain ? "http" : "https";
  return host;
}

namespace {

// ---- A TOML subset: what hosts.toml files use ----
//
// Comments, blank lines, [table] headers with dotted/quoted keys, and `key = value` where a
// value is a basic or literal string, a boolean, or an array of such values (possibly over
// several lines, trailing comma allowed). Everything else is an error naming file and line.

struct TomlValue {
  enum class Kind { kString, kBool, kArray };
  Kind kind = Kind::kString;
  std::string string;
  bool boolean = false;
  std::vector<TomlValue> items;
};

// One statement of the file, in order: a table header or a key/value pair (its key
// already prefixed with the current table's).
struct TomlStatement {
  bool is_table = false;
  std::vector<std::string> key;
  TomlValue value;
  int line = 0;
};

class TomlParser {
 public:
  TomlParser(std::string_view text, std::string file) : text_(text), file_(std::move(file)) {}

  Result<std::vector<TomlStatement>> Parse() {
    std::vector<TomlStatement> statements;
    std::vector<std::string> table;
    std::map<std::string, int> defined;  // key -> line, for duplicates
    while (true) {
      SkipSpaces();
      if (AtEnd()) break;
      if (Peek() == '#' || Peek() == '\n' || Peek() == '\r') {
        STRATA_RETURN_IF_ERROR(ExpectLineEnd());
        continue;
      }
      TomlStatement statement;
      statement.line = line_;
      if (Peek() == '[') {
        Advance();
        if (!AtEnd() && Peek() == '[') return Invalid("arrays of tables ([[...]]) are not supported");
        SkipSpaces();
        STRATA_ASSIGN_OR_RETURN(table, ParseKey());
        SkipSpaces();
        if (AtEnd() || Peek() != ']') return Invalid("expected ']' after table name");
        Advance();
        statement.is_table = true;
        statement.key = table;
      } else {
        STRATA_ASSIGN_OR_RETURN(std::vector<std::string> key, ParseKey());
        SkipSpaces();
        if (AtEnd() || Peek() != '=') return Invalid("expected '=' after key");
        Advance();
        SkipSpaces();
        STRATA_ASSIGN_OR_RETURN(statement.value, ParseValue());
        statement.key = table;
        statement.key.insert(statement.key.end(), key.begin(), key.end());
      }
      std::string unique;  // quoted parts may contain '.': join with a byte keys cannot hold
      for (const std::string& part : statement.key) unique += part + '\x1f';
      if (auto [it, inserted] = defined.emplace(unique, statement.line); !inserted) {
        return Invalid(fmt::format("{} is defined twice (first on line {})", Join(statement.key), it->second));
      }
      STRATA_RETURN_IF_ERROR(ExpectLineEnd());
      statements.push_back(std::move(statement));
    }
    return statements;
  }

  static std::string Join(const std::vector<std::string>& key) {
    std::string joined;
    for (const std::string& part : key) {
      if (!joined.empty()) joined += '.';
      joined += part;
    }
    return joined;
  }

 private:
  bool AtEnd() const { return pos_ >= text_.size(); }
  char Peek() const { return text_[pos_]; }
  void Advance() {
    if (text_[pos_] == '\n') ++line_;
    ++pos_;
  }
  void SkipSpaces() {
    while (!AtEnd() && (Peek() == ' ' || Peek() == '\t')) Advance();
  }
  // Spaces, comments and newlines: what may separate array elements.
  void SkipBlankAndComments() {
    while (!AtEnd()) {
      char c = Peek();
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
        Advance();
      } else if (c == '#') {
        while (!AtEnd() && Peek() != '\n') Advance();
      } else {
        break;
      }
    }
  }

  std::unexpected<Error> Invalid(std::string_view what) const {
    return Fail(ErrorCode::kInvalidArgument, "{}:{}: {}", file_, line_, what);
  }

  // Optional spaces and comment, then a newline (consumed) or the end of the file.
  Status ExpectLineEnd() {
    SkipSpaces();
    if (AtEnd()) return {};
    if (Peek() == '#') {
      while (!AtEnd() && Peek() != '\n') {
        unsigned char c = static_cast<unsigned char>(Peek());
        if (c < 0x20 && c != '\t' && c != '\r') return Invalid("control character in comment");
        Advance();
      }
      if (!AtEnd()) Advance();
      return {};
    }
    if (Peek() == '\r' && pos_ + 1 < text_.size() && text_[pos_ + 1] == '\n') Advance();
    if (Peek() == '\n') {
      Advance();
      return {};
    }
    return Invalid(fmt::format("unexpected '{}' (expected the end of the line)", Peek()));
  }

  // key = simple-key *( '.' simple-key ), spaces allowed around the dots.
  Result<std::vector<std::string>> ParseKey() {
    std::vector<std::string> parts;
    while (true) {
      STRATA_ASSIGN_OR_RETURN(std::string part, ParseSimpleKey());
      parts.push_back(std::move(part));
      SkipSpaces();
      if (AtEnd() || Peek() != '.') return parts;
      Advance();
      SkipSpaces();
    }
  }

  Result<std::string> ParseSimpleKey() {
    if (AtEnd()) return Invalid("expected a key");
    if (Peek() == '"') return ParseBasicString();
    if (Peek() == '\'') return ParseLiteralString();
    std::string key;
    while (!AtEnd() && (std::isalnum(static_cast<unsigned char>(Peek())) || Peek() == '_' || Peek() == '-')) {
      key += Peek();
      Advance();
    }
    if (key.empty()) {
      return Invalid(fmt::format("expected a key, found '{}' (quote keys that contain other characters)", Peek()));
    }
    return key;
  }

  Result<TomlValue> ParseValue() {
    if (AtEnd()) return Invalid("expected a value");
    TomlValue value;
    char c = Peek();
    if (c == '"' || c == '\'') {
      if (text_.substr(pos_, 3) == "\"\"\"" || text_.substr(pos_, 3) == "'''") {
        return Invalid("multi-line strings are not supported");
      }
      STRATA_ASSIGN_OR_RETURN(value.string, c == '"' ? ParseBasicString() : ParseLiteralString());
      return value;
    }
    if (c == '[') {
      // Nesting is bounded: each level is a stack frame, and hosts.toml needs two at most.
      if (array_depth_ >= kMaxArrayDepth) return Invalid("arrays nested too deeply");
      ++array_depth_;
      Result<TomlValue> array = ParseArray();
      --array_depth_;
      return array;
    }
    if (c == '{') return Invalid("inline tables are not supported");
    std::string word;
    while (!AtEnd() && (std::isalnum(static_cast<unsigned char>(Peek())) || Peek() == '_' || Peek() == '-' ||
                        Peek() == '+' || Peek() == '.' || Peek() == ':')) {
      word += Peek();
      Advance();
    }
    if (word == "true" || word == "false") {
      value.kind = TomlValue::Kind::kBool;
      value.boolean = word == "true";
      return value;
    }
    if (word.empty()) return Invalid(fmt::format("unexpected '{}' (expected a value)", c));
    return Invalid(fmt::format("unsupported value '{}' (expected a string, true, false or an array)", word));
  }

  Result<TomlValue> ParseArray() {
    TomlValue array;
    array.kind = TomlValue::Kind::kArray;
    const int start_line = line_;
    Advance();  // '['
    while (true) {
      SkipBlankAndComments();
      if (AtEnd()) {
        return Fail(ErrorCode::kInvalidArgument, "{}:{}: unterminated array", file_, start_line);
      }
      if (Peek() == ']') {
        Advance();
        return array;
      }
      STRATA_ASSIGN_OR_RETURN(TomlValue item, ParseValue());
      array.items.push_back(std::move(item));
      SkipBlankAndComments();
      if (AtEnd()) return Fail(ErrorCode::kInvalidArgument, "{}:{}: unterminated array", file_, start_line);
      if (Peek() == ',') {
        Advance();
      } else if (Peek() != ']') {
        return Invalid(fmt::format("unexpected '{}' in array (expected ',' or ']')", Peek()));
      }
    }
  }

  // "..." with TOML's escapes; no raw newlines or control characters.
  Result<std::string> ParseBasicString() {
    Advance();  // '"'
    std::string out;
    while (true) {
      if (AtEnd() || Peek() == '\n') return Invalid("unterminated string");
      char c = Peek();
      Advance();
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20 && c != '\t') return Invalid("control character in string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (AtEnd()) return Invalid("unterminated string");
      char escape = Peek();
      Advance();
      switch (escape) {
        case 'b': out += '\b'; break;
        case 't': out += '\t'; break;
        case 'n': out += '\n'; break;
        case 'f': out += '\f'; break;
        case 'r': out += '\r'; break;
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case 'u':
        case 'U': {
          STRATA_RETURN_IF_ERROR(AppendUnicodeEscape(escape == 'u' ? 4 : 8, out));
          break;
        }
        default:
          return Invalid(fmt::format("invalid escape '\\{}' in string", escape));
      }
    }
  }

  Status AppendUnicodeEscape(int digits, std::string& out) {
    uint32_t code = 0;
    for (int i = 0; i < digits; ++i) {
      if (AtEnd() || !std::isxdigit(static_cast<unsigned char>(Peek()))) {
        return Invalid(fmt::format("\\{} escape needs {} hex digits", digits == 4 ? 'u' : 'U', digits));
      }
      char h = static_cast<char>(std::tolower(static_cast<unsigned char>(Peek())));
      code = code * 16 + static_cast<uint32_t>(h <= '9' ? h - '0' : h - 'a' + 10);
      Advance();
    }
    if (code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return Invalid("escape is not a Unicode scalar value");
    // UTF-8: one byte below 0x80, else a lead byte and 1-3 continuation bytes.
    int extra = code < 0x80 ? 0 : code < 0x800 ? 1 : code < 0x10000 ? 2 : 3;
    static constexpr unsigned char kLead[] = {0x00, 0xC0, 0xE0, 0xF0};
    out += static_cast<char>(kLead[extra] | (code >> (6 * extra)));
    for (int i = extra - 1; i >= 0; --i) out += static_cast<char>(0x80 | ((code >> (6 * i)) & 0x3F));
    return {};
  }

  // '...' verbatim.
  Result<std::string> ParseLiteralString() {
    Advance();  // '\''
    std::string out;
    while (true) {
      if (AtEnd() || Peek() == '\n') return Invalid("unterminated string");
      char c = Peek();
      Advance();
      if (c == '\'') return out;
      if (static_cast<unsigned char>(c) < 0x20 && c != '\t') return Invalid("control character in string");
      out += c;
    }
  }

  static constexpr int kMaxArrayDepth = 16;

  std::string_view text_;
  std::string file_;
  size_t pos_ = 0;
  int line_ = 1;
  int array_depth_ = 0;
};

// ---- hosts.toml semantics ----

// The settings of one host: the top level (for `server`) or a [host."URL"] table.
struct HostSettings {
  std::string url;
  int line = 0;
  unsigned capabilities = kCapabilityAll;
  bool skip_verify = false;
  bool override_path = false;
};

std::unexpected<Error> InvalidAt(const std::string& file, int line, std::string_view what) {
  return Fail(ErrorCode::kInvalidArgument, "{}:{}: {}", file, line, what);
}

bool IsStringArray(const TomlValue& value) {
  if (value.kind != TomlValue::Kind::kArray) return false;
  for (const TomlValue& item : value.items) {
    if (item.kind != TomlValue::Kind::kString) return false;
  }
  return true;
}

// Applies `key = value` to `settings`. `ca` and `client` are checked and ignored: the
// HttpClient takes CAs and client certificates from certs.d/<host>/ (ca.crt, *.cert/*.key).
Status ApplySetting(const std::string& file, const TomlStatement& statement, const std::string& name,
                    HostSettings& settings) {
  const TomlValue& value = statement.value;
  const int line = statement.line;
  if (name == "capabilities") {
    if (!IsStringArray(value)) return InvalidAt(file, line, "capabilities must be an array of strings");
    settings.capabilities = 0;
    for (const TomlValue& item : value.items) {
      if (item.string == "pull") {
        settings.capabilities |= kCapabilityPull;
      } else if (item.string == "resolve") {
        settings.capabilities |= kCapabilityResolve;
      } else if (item.string == "push") {
        settings.capabilities |= kCapabilityPush;
      } else {
        return InvalidAt(file, line,
                         fmt::format("unknown capability \"{}\" (expected pull, resolve or push)", item.string));
      }
    }
    return {};
  }
  if (name == "skip_verify" || name == "override_path") {
    if (value.kind != TomlValue::Kind::kBool) return InvalidAt(file, line, fmt::format("{} must be true or false", name));
    (name == "skip_verify" ? settings.skip_verify : settings.override_path) = value.boolean;
    return {};
  }
  if (name == "ca") {
    if (value.kind != TomlValue::Kind::kString && !IsStringArray(value)) {
      return InvalidAt(file, line, "ca must be a string or an array of strings");
    }
    return {};
  }
  if (name == "client") {
    // containerd accepts "cert", ["cert", ...] and [["cert", "key"], ...].
    bool ok = value.kind == TomlValue::Kind::kString || value.kind == TomlValue::Kind::kArray;
    for (const TomlValue& item : value.items) {
      ok = ok && (item.kind == TomlValue::Kind::kString || IsStringArray(item));
    }
    if (!ok) return InvalidAt(file, line, "client must be a string or an array of strings or of string pairs");
    return {};
  }
  return InvalidAt(file, line, fmt::format("unknown key \"{}\"", name));
}

// A host from a URL in the file: scheme and host as written; the API root as containerd
// computes it ("<path>/v2" unless the path already ends in /v2 or override_path is set).
Result<RegistryHost> HostFromUrl(const std::string& file, const HostSettings& settings) {
  std::string_view url = settings.url;
  size_t separator = url.find("://");
  if (separator == std::string_view::npos) {
    return InvalidAt(file, settings.line,
                     fmt::format("host URL \"{}\" has no scheme (write http:// or https://)", settings.url));
  }
  RegistryHost host;
  host.scheme = std::string(url.substr(0, separator));
  for (char& c : host.scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (host.scheme != "http" && host.scheme != "https") {
    return InvalidAt(file, settings.line, fmt::format("host URL \"{}\": scheme must be http or https", settings.url));
  }
  if (!ParseOrigin(url) || url.find_first_of("?#") != std::string_view::npos) {
    return InvalidAt(file, settings.line, fmt::format("host URL \"{}\" is not a valid URL", settings.url));
  }
  std::string_view rest = url.substr(separator + 3);
  size_t slash = rest.find('/');
  host.host = std::string(rest.substr(0, slash));
  std::string path = slash == std::string_view::npos ? "" : std::string(rest.substr(slash));
  while (!path.empty() && path.back() == '/') path.pop_back();
  if (!settings.override_path && !path.ends_with("/v2")) path += "/v2";
  host.api_root = std::move(path);
  host.capabilities = settings.capabilities;
  host.skip_verify = settings.skip_verify;
  return host;
}

}  // namespace

Result<std::vector<RegistryHost>> HostsConfig::HostsFor(const oci::Reference& reference) const {
  std::filesystem::path file = options_.config_dir / reference.domain() / "hosts.toml";
  std::error_code ec;
  if (!std::filesystem::exists(file, ec)) {
    file = options_.config_dir / "_default" / "hosts.toml";
    if (!std::filesystem::exists(file, ec)) return std::vector<RegistryHost>{Upstream(reference)};
  }
  STRATA_ASSIGN_OR_RETURN(std::string text, ReadFile(file));
  return ParseHostsFile(text, file.string(), reference);
}

Result<std::vector<RegistryHost>> HostsConfig::ParseHostsFile(std::string_view text, const std::string& name,
                                                              const oci::Reference& reference) const {
  STRATA_ASSIGN_OR_RETURN(std::vector<TomlStatement> statements, TomlParser(text, name).Parse());

  HostSettings server;  // the top-level settings, for `server` (or the default upstream)
  std::vector<HostSettings> mirrors;
  auto mirror_for = [&](const std::string& url, int line) -> HostSettings& {
    for (HostSettings& mirror : mirrors) {
      if (mirror.url == url) return mirror;
    }
    mirrors.push_back(HostSettings{.url = url, .line = line});
    return mirrors.back();
  };
  for (const TomlStatement& statement : statements) {
    const std::vector<std::string>& key = statement.key;
    // Headers ([header], [host."URL".header]) are accepted and not sent.
    if (key[0] == "header") continue;
    if (key[0] == "host") {
      if (key.size() == 1 || (key.size() == 2 && !statement.is_table)) {
        return InvalidAt(name, statement.line, "expected [host.\"<URL>\"] with settings under it");
      }
      HostSettings& mirror = mirror_for(key[1], statement.line);
      if (key.size() >= 3 && key[2] == "header") continue;
      if (key.size() > 3 || (key.size() == 3 && statement.is_table)) {
        return InvalidAt(name, statement.line, fmt::format("unknown table {}", TomlParser::Join(key)));
      }
      if (key.size() == 3) STRATA_RETURN_IF_ERROR(ApplySetting(name, statement, key[2], mirror));
      continue;
    }
    if (statement.is_table || key.size() != 1) {
      return InvalidAt(name, statement.line, fmt::format("unknown key {}", TomlParser::Join(key)));
    }
    if (key[0] == "server") {
      if (statement.value.kind != TomlValue::Kind::kString) return InvalidAt(name, statement.line, "server must be a string");
      server.url = statement.value.string;
      server.line = statement.line;
      continue;
    }
    STRATA_RETURN_IF_ERROR(ApplySetting(name, statement, key[0], server));
  }

  std::vector<RegistryHost> hosts;
  for (const HostSettings& settings : mirrors) {
    STRATA_ASSIGN_OR_RETURN(RegistryHost host, HostFromUrl(name, settings));
    host.mirror = true;
    hosts.push_back(std::move(host));
  }
  if (!server.url.empty()) {
    STRATA_ASSIGN_OR_RETURN(RegistryHost upstream, HostFromUrl(name, server));
    hosts.push_back(std::move(upstream));
  } else {
    RegistryHost upstream = Upstream(reference);
    upstream.capabilities = server.capabilities;
    upstream.skip_verify = server.skip_verify;
    hosts.push_back(std::move(upstream));
  }
  return hosts;
}

}  // namespace strata::registry

namespace strata::registry {

std::vector<RegistryHost> HostsWith(const std::vector<RegistryHost>& hosts, Capability capability) {
  std::vector<RegistryHost> chosen;
  for (const RegistryHost& host : hosts) {
    if (host.Can(capability)) chosen.push_back(host);
  }
  return chosen;
}

namespace internal {

void LogHostFallback(const RegistryHost& host, std::string_view what, const Error& error) {
  spdlog::info("{}: {} failed ({}); trying the next host", what, host.host, error.message());
}

Error AllHostsFailed(std::string_view what, const std::vector<std::pair<std::string, Error>>& failures) {
  if (failures.empty()) {
    return Error(ErrorCode::kFailedPrecondition, fmt::format("{}: no configured host can serve it", what));
  }
  // The upstream's (last) error decides the code; the mirrors' errors follow as context.
  const Error& last = failures.back().second;
  std::string message = last.message();
  for (size_t i = 0; i + 1 < failures.size(); ++i) {
    message += fmt::format("; mirror {}: {}", failures[i].first, failures[i].second.message());
  }
  return Error(last.code(), message);
}

}  // namespace internal
}  // namespace strata::registry
