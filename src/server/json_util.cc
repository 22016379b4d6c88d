#include "server/json_util.h"

#include <algorithm>
#include <array>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>

namespace fathom::server {
namespace {

std::string Quoted(std::string_view text) {
  // Long hostile values must not turn into long error messages.
  constexpr size_t kMaxShown = 80;
  std::string out = "'";
  out.append(text.substr(0, kMaxShown));
  if (text.size() > kMaxShown) out += "...";
  out += "'";
  return out;
}

std::string Where(std::string_view what, const char* key) {
  return std::string(what.empty() ? "" : std::string(what) + ": ") + "field '" + key + "'";
}

}  // namespace

size_t JsonNestingDepth(std::string_view text) {
  size_t depth = 0;
  size_t max_depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      max_depth = std::max(max_depth, ++depth);
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return max_depth;
}

Result<Json> ParseBody(std::string_view body, size_t max_depth) {
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) return Json::object();
  size_t depth = JsonNestingDepth(body);
  if (depth > max_depth) {
    return Status::InvalidArgument("request body nests " + std::to_string(depth) +
                                   " levels deep; the limit is " + std::to_string(max_depth));
  }
  Json value;
  try {
    value = Json::parse(body.begin(), body.end());
  } catch (const Json::parse_error& e) {
    // what() is "[json.exception.parse_error.101] parse error at line 1, column 9: ..."; the
    // bracketed tag means nothing to a user, the line and column do.
    std::string message = e.what();
    size_t tag_end = message.find("] ");
    if (tag_end != std::string::npos) message = message.substr(tag_end + 2);
    return Status::InvalidArgument("malformed JSON body: " + message);
  } catch (const Json::exception& e) {
    std::string message = e.what();
    size_t tag_end = message.find("] ");
    if (tag_end != std::string::npos) message = message.substr(tag_end + 2);
    return Status::InvalidArgument("malformed JSON body: " + message);
  }
  if (!value.is_object()) {
    return Status::InvalidArgument("request body must be a JSON object, got " + TypeName(value));
  }
  return value;
}

std::string TypeName(const Json& value) {
  if (value.is_number()) return "number";
  return value.type_name();
}

Status CheckFields(const Json& object, std::string_view what,
                   std::initializer_list<std::string_view> allowed) {
  if (!object.is_object()) {
    return Status::InvalidArgument(std::string(what) + " must be a JSON object, got " +
                                   TypeName(object));
  }
  for (const auto& [key, value] : object.items()) {
    bool known = false;
    for (std::string_view a : allowed) known = known || a == key;
    if (known) continue;
    std::string expected;
    for (std::string_view a : allowed) {
      if (!expected.empty()) expected += ", ";
      expected += a;
    }
    return Status::InvalidArgument("unknown field " + Quoted(key) + " in " + std::string(what) +
                                   "; expected one of: " + expected);
  }
  return Status::OK();
}

Result<bool> GetBool(const Json& object, const char* key, bool fallback, std::string_view what) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) {
    return Status::InvalidArgument(Where(what, key) + " must be true or false, got " +
                                   TypeName(*it));
  }
  return it->get<bool>();
}

Result<uint64_t> GetUint(const Json& object, const char* key, uint64_t fallback,
                         std::string_view what) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return fallback;
  if (it->is_number_unsigned()) return it->get<uint64_t>();
  if (it->is_number_integer()) {
    return Status::InvalidArgument(Where(what, key) + " must not be negative, got " +
                                   it->dump());
  }
  return Status::InvalidArgument(Where(what, key) + " must be a non-negative integer, got " +
                                 (it->is_number() ? it->dump() : TypeName(*it)));
}

Result<std::string> GetString(const Json& object, const char* key, std::string_view what) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) {
    return Status::InvalidArgument(Where(what, key) + " is required");
  }
  if (!it->is_string()) {
    return Status::InvalidArgument(Where(what, key) + " must be a string, got " + TypeName(*it));
  }
  return it->get<std::string>();
}

Result<PointId> ParsePointId(const Json& value, std::string_view what) {
  if (value.is_number_unsigned()) return PointId{value.get<uint64_t>()};
  if (value.is_string()) {
    std::string id = value.get<std::string>();
    if (id.empty() || id.size() > 256) {
      return Status::InvalidArgument(std::string(what) +
                                     ": a string id must have 1 to 256 bytes, got " +
                                     std::to_string(id.size()));
    }
    return PointId{std::move(id)};
  }
  if (value.is_number()) {
    return Status::InvalidArgument(std::string(what) + ": id " + value.dump() +
                                   " is not valid: ids are unsigned 64-bit integers or strings");
  }
  return Status::InvalidArgument(std::string(what) +
                                 ": id must be an unsigned integer or a string, got " +
                                 TypeName(value));
}

PointId PointIdFromPath(std::string_view text) {
  if (!text.empty() && text.size() <= 20 &&
      text.find_first_not_of("0123456789") == std::string_view::npos) {
    uint64_t v = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec == std::errc() && end == text.data() + text.size()) return PointId{v};
  }
  return PointId{std::string(text)};
}

Status ParseVector(const Json& value, std::string_view what, std::vector<float>* out) {
  out->clear();
  if (value.is_string()) return DecodeBase64Floats(value.get_ref<const std::string&>(), what, out);
  if (!value.is_array()) {
    return Status::InvalidArgument(std::string(what) +
                                   ": a vector must be an array of numbers or a base64 string, "
                                   "got " + TypeName(value));
  }
  out->reserve(value.size());
  size_t i = 0;
  for (const auto& x : value) {
    if (!x.is_number()) {
      return Status::InvalidArgument(std::string(what) + ": vector value at index " +
                                     std::to_string(i) + " must be a number, got " + TypeName(x));
    }
    double d = x.get<double>();
    if (!std::isfinite(d) || std::fabs(d) > std::numeric_limits<float>::max()) {
      return Status::InvalidArgument(std::string(what) + ": vector value " + x.dump() +
                                     " at index " + std::to_string(i) +
                                     " is outside the float32 range");
    }
    out->push_back(static_cast<float>(d));
    ++i;
  }
  return Status::OK();
}

Status DecodeBase64Floats(std::string_view text, std::string_view what, std::vector<float>* out) {
  static constexpr auto kTable = [] {
    std::array<int8_t, 256> t{};
    t.fill(-1);
    const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(alphabet[i])] = static_cast<int8_t>(i);
    return t;
  }();
  while (!text.empty() && text.back() == '=') text.remove_suffix(1);
  if (text.size() % 4 == 1) {
    return Status::InvalidArgument(std::string(what) + ": base64 vector has an impossible length");
  }
  std::string bytes;
  bytes.reserve(text.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    int8_t v = kTable[static_cast<unsigned char>(text[i])];
    if (v < 0) {
      return Status::InvalidArgument(std::string(what) + ": base64 vector has an invalid character at offset " +
                                     std::to_string(i));
    }
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      bytes.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  if (bytes.size() % 4 != 0) {
    return Status::InvalidArgument(std::string(what) + ": base64 vector decodes to " +
                                   std::to_string(bytes.size()) +
                                   " bytes, not a whole number of float32 values");
  }
  out->resize(bytes.size() / 4);
  for (size_t i = 0; i < out->size(); ++i) {
    uint32_t u;
    std::memcpy(&u, bytes.data() + i * 4, 4);
    if constexpr (std::endian::native == std::endian::big) u = __builtin_bswap32(u);
    float f;
    std::memcpy(&f, &u, 4);
    if (!std::isfinite(f)) {
      return Status::InvalidArgument(std::string(what) + ": base64 vector value at index " +
                                     std::to_string(i) + " is NaN or infinite");
    }
    (*out)[i] = f;
  }
  return Status::OK();
}

std::string EncodeBase64Floats(const float* values, size_t n) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string bytes(n * 4, '\0');
  for (size_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, &values[i], 4);
    if constexpr (std::endian::native == std::endian::big) u = __builtin_bswap32(u);
    std::memcpy(bytes.data() + i * 4, &u, 4);
  }
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    uint32_t v = (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8) | uint8_t(bytes[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i + 1 == bytes.size()) {
    uint32_t v = uint8_t(bytes[i]) << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == bytes.size()) {
    uint32_t v = (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

Result<std::string> ParseFilter(const Json& value, size_t max_depth, size_t max_text_bytes) {
  if (value.is_null()) return std::string();
  if (value.is_object()) {
    std::string text = Dump(value);
    size_t depth = JsonNestingDepth(text);
    if (depth > max_depth) {
      return Status::InvalidArgument("filter nests " + std::to_string(depth) +
                                     " levels deep; the limit is " + std::to_string(max_depth));
    }
    return text;
  }
  if (value.is_string()) {
    const auto& text = value.get_ref<const std::string&>();
    if (text.size() > max_text_bytes) {
      return Status::InvalidArgument("filter text has " + std::to_string(text.size()) +
                                     " bytes; the limit is " + std::to_string(max_text_bytes));
    }
    // Parentheses outside quoted literals: the text parser recurses on them.
    size_t depth = 0, deepest = 0;
    char quote = 0;
    for (size_t i = 0; i < text.size(); ++i) {
      char c = text[i];
      if (quote) {
        if (c == '\\') ++i;
        else if (c == quote) quote = 0;
      } else if (c == '"' || c == '\'') {
        quote = c;
      } else if (c == '(') {
        deepest = std::max(deepest, ++depth);
      } else if (c == ')' && depth > 0) {
        --depth;
      }
    }
    if (deepest > max_depth) {
      return Status::InvalidArgument("filter nests " + std::to_string(deepest) +
                                     " parentheses deep; the limit is " + std::to_string(max_depth));
    }
    if (text.find_first_not_of(" \t\r\n") == std::string::npos) return std::string();
    return text;
  }
  return Status::InvalidArgument("filter must be a JSON object or a text string, got " +
                                 TypeName(value));
}

Status ValidateName(std::string_view name, std::string_view what) {
  bool ok = !name.empty() && name.size() <= 64 && name != "." && name != "..";
  for (char c : name) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '_' || c == '-' || c == '.');
  }
  if (ok) return Status::OK();
  return Status::InvalidArgument(std::string(what) + " " + Quoted(name) +
                                 " is not valid: use 1 to 64 letters, digits, '_', '-' and '.' "
                                 "(not '.' or '..')");
}

void AppendJsonString(std::string* out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  for (char c : text) {
    switch (c) {
      case '"': *out += "\\\""; break;
      case '\\': *out += "\\\\"; break;
      case '\n': *out += "\\n"; break;
      case '\r': *out += "\\r"; break;
      case '\t': *out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          *out += "\\u00";
          out->push_back(kHex[(c >> 4) & 0xf]);
          out->push_back(kHex[c & 0xf]);
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

void AppendNumber(std::string* out, double value) {
  if (!std::isfinite(value)) {
    *out += "null";
    return;
  }
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), value);
  out->append(buf, end);
}

void AppendPointId(std::string* out, const PointId& id) {
  if (const auto* n = std::get_if<uint64_t>(&id)) {
    char buf[24];
    auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), *n);
    out->append(buf, end);
  } else {
    AppendJsonString(out, std::get<std::string>(id));
  }
}

void AppendFloats(std::string* out, const std::vector<float>& values) {
  out->push_back('[');
  char buf[32];
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out->push_back(',');
    if (!std::isfinite(values[i])) {
      *out += "null";
      continue;
    }
    auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), values[i]);
    out->append(buf, end);
  }
  out->push_back(']');
}

std::string Dump(const Json& value) {
  return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace fathom::server
