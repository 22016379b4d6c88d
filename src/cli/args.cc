#include "cli/args.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <limits>

namespace fathom::cli {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool AllDigits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

}  // namespace

int ExitCodeFor(const Status& status) {
  switch (status.code()) {
    case Status::Code::kOk: return 0;
    case Status::Code::kInvalidArgument:
    case Status::Code::kAlreadyExists:
    case Status::Code::kNotSupported: return 1;
    case Status::Code::kNotFound: return 2;
    default: return 3;
  }
}

Result<PointId> ParsePointId(std::string_view text, bool force_string) {
  if (text.empty())
    return Status::InvalidArgument("empty id: ids are integers or non-empty strings");
  if (force_string || !AllDigits(text)) return PointId(std::string(text));
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) {
    return Status::InvalidArgument("id '" + std::string(text) +
                                   "' does not fit in an unsigned 64-bit integer (pass "
                                   "--string-id to use it as a string id)");
  }
  return PointId(value);
}

Result<std::vector<float>> ParseFloatList(std::string_view text) {
  std::string_view s = Trim(text);
  if (!s.empty() && s.front() == '[') {
    if (s.back() != ']')
      return Status::InvalidArgument("vector '" + std::string(text) +
                                     "' has '[' but no closing ']'");
    s = Trim(s.substr(1, s.size() - 2));
  }
  std::vector<float> out;
  if (s.empty())
    return Status::InvalidArgument("empty vector: expected numbers like \"0.1,0.2,0.3\"");
  size_t pos = 0;
  while (true) {
    size_t comma = s.find(',', pos);
    std::string_view item =
        Trim(s.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos));
    // strtod rather than from_chars: it also takes the "+0.5" spelling other tools print, and
    // this program never calls setlocale, so the decimal point is always '.'.
    std::string buf(item);
    char* end = nullptr;
    double value = buf.empty() ? 0 : std::strtod(buf.c_str(), &end);
    if (buf.empty() || end != buf.c_str() + buf.size()) {
      return Status::InvalidArgument("vector component " + std::to_string(out.size()) + " is '" +
                                     buf + "', not a number");
    }
    if (!std::isfinite(value) || std::fabs(value) > std::numeric_limits<float>::max()) {
      return Status::InvalidArgument("vector component " + std::to_string(out.size()) + " is '" +
                                     buf + "', not a finite float32");
    }
    out.push_back(static_cast<float>(value));
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  return out;
}

Result<VectorSpec> ParseVectorSpec(std::string_view text) {
  // Split on the first three colons only: the index string keeps any later characters.
  std::vector<std::string_view> parts;
  std::string_view rest = text;
  while (parts.size() < 3) {
    size_t colon = rest.find(':');
    if (colon == std::string_view::npos) break;
    parts.push_back(rest.substr(0, colon));
    rest.remove_prefix(colon + 1);
  }
  parts.push_back(rest);
  const std::string usage = "expected NAME:DIM[:METRIC[:INDEX]], e.g. image:512:cosine:HNSW32";
  if (parts.size() < 2) {
    return Status::InvalidArgument("--vector '" + std::string(text) + "': " + usage);
  }
  VectorSpec spec;
  spec.name = std::string(parts[0]);
  if (spec.name.empty()) {
    return Status::InvalidArgument("--vector '" + std::string(text) + "': empty name; " + usage);
  }
  size_t dim = 0;
  auto [end, ec] = std::from_chars(parts[1].data(), parts[1].data() + parts[1].size(), dim);
  if (ec != std::errc() || end != parts[1].data() + parts[1].size() || dim == 0) {
    return Status::InvalidArgument("--vector '" + std::string(text) + "': dimension '" +
                                   std::string(parts[1]) + "' is not a positive integer");
  }
  spec.dim = dim;
  if (parts.size() >= 3 && !parts[2].empty()) {
    auto metric = ParseMetric(parts[2]);
    if (!metric.ok()) {
      return Status::InvalidArgument("--vector '" + std::string(text) +
                                     "': " + metric.status().message());
    }
    spec.metric = *metric;
  }
  if (parts.size() >= 4 && !parts[3].empty()) spec.index = std::string(parts[3]);
  return spec;
}

Result<std::pair<std::string, FieldType>> ParseFieldSpec(std::string_view text) {
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == text.size()) {
    return Status::InvalidArgument("--field '" + std::string(text) +
                                   "': expected NAME:TYPE with TYPE keyword, integer, float, "
                                   "bool or datetime, e.g. label:integer");
  }
  auto type = ParseFieldType(text.substr(colon + 1));
  if (!type.ok()) {
    return Status::InvalidArgument("--field '" + std::string(text) +
                                   "': " + type.status().message());
  }
  return std::make_pair(std::string(text.substr(0, colon)), *type);
}

namespace {

std::string VectorNames(const CollectionSpec& spec) {
  std::string names;
  for (const VectorSpec& v : spec.vectors) {
    if (!names.empty()) names += ", ";
    names += v.name.empty() ? "(unnamed)" : v.name;
  }
  return names;
}

}  // namespace

Result<const VectorSpec*> FindVector(const CollectionSpec& spec, const std::string& name) {
  for (const VectorSpec& v : spec.vectors) {
    if (v.name == name) return &v;
  }
  if (name.empty()) {
    return Status::InvalidArgument("collection '" + spec.name +
                                   "' has no unnamed vector (it has: " + VectorNames(spec) + ")");
  }
  return Status::InvalidArgument("collection '" + spec.name + "' has no vector named '" + name +
                                 "' (it has: " + VectorNames(spec) + ")");
}

Result<const VectorSpec*> ResolveVector(const CollectionSpec& spec, const std::string& name) {
  if (name.empty() && spec.vectors.size() == 1) return &spec.vectors[0];
  if (name.empty()) {
    for (const VectorSpec& v : spec.vectors) {
      if (v.name.empty()) return &v;
    }
    return Status::InvalidArgument("collection '" + spec.name + "' has several named vectors (" +
                                   VectorNames(spec) + "): pass --using NAME");
  }
  return FindVector(spec, name);
}

std::string FormatPointId(const PointId& id) {
  if (const uint64_t* n = std::get_if<uint64_t>(&id)) return std::to_string(*n);
  const std::string& s = std::get<std::string>(id);
  if (AllDigits(s)) return "\"" + s + "\"";
  return s;
}

std::string FormatBytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  size_t unit = 0;
  while (value >= 1024 && unit + 1 < std::size(kUnits)) {
    value /= 1024;
    ++unit;
  }
  char buf[32];
  if (unit == 0) {
    std::snprintf(buf, sizeof(buf), "%llu B", static_cast<unsigned long long>(bytes));
  } else {
    std::snprintf(buf, sizeof(buf), "%.1f %s", value, kUnits[unit]);
  }
  return buf;
}

std::string FormatFloat(double value) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.6g", value);
  return buf;
}

std::string DescribeVector(const std::string& name) {
  return name.empty() ? std::string("the unnamed vector") : "vector '" + name + "'";
}

}  // namespace fathom::cli
