#include "cli/output.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>

#include "cli/args.h"

namespace fathom::cli {

// ordered_json keeps keys in the order written (id before distance before payload) and payload
// keys in their stored order, instead of sorting them.
using json = nlohmann::ordered_json;

void PrintTable(std::ostream& out, const std::vector<std::string>& headers,
                const std::vector<std::vector<std::string>>& rows,
                const std::vector<bool>& right_align) {
  std::vector<size_t> width(headers.size());
  for (size_t c = 0; c < headers.size(); ++c) width[c] = headers[c].size();
  for (const auto& row : rows) {
    for (size_t c = 0; c < row.size() && c < width.size(); ++c) {
      width[c] = std::max(width[c], row[c].size());
    }
  }
  auto print_row = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t c = 0; c < headers.size(); ++c) {
      const std::string cell = c < row.size() ? row[c] : "";
      bool last = c + 1 == headers.size();
      bool right = c < right_align.size() && right_align[c];
      std::string pad(width[c] - std::min(width[c], cell.size()), ' ');
      if (right) {
        line += pad + cell;
      } else {
        line += cell;
        if (!last) line += pad;
      }
      if (!last) line += "  ";
    }
    out << line << '\n';
  };
  print_row(headers);
  for (const auto& row : rows) print_row(row);
}

double FloatForJson(float value) {
  if (!std::isfinite(value)) return value;
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), value);
  if (ec != std::errc()) return value;
  *end = '\0';
  return std::strtod(buf, nullptr);
}

json PointIdToJson(const PointId& id) {
  if (const uint64_t* n = std::get_if<uint64_t>(&id)) return *n;
  return std::get<std::string>(id);
}

json PayloadToJson(const std::string& payload) {
  json value = json::parse(payload, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) return payload;
  return value;
}

json VectorsToJson(const std::map<std::string, std::vector<float>>& vectors) {
  json out = json::object();
  for (const auto& [name, v] : vectors) {
    json values = json::array();
    for (float x : v) values.push_back(FloatForJson(x));
    out[name] = std::move(values);
  }
  return out;
}

std::string VectorPreview(const std::vector<float>& v) {
  constexpr size_t kShown = 4;
  std::string s = "[";
  for (size_t i = 0; i < v.size() && i < kShown; ++i) {
    if (i > 0) s += ", ";
    s += FormatFloat(v[i]);
  }
  if (v.size() > kShown) s += ", ... (" + std::to_string(v.size()) + " dims)";
  return s + "]";
}

std::string VectorsPreview(const std::map<std::string, std::vector<float>>& vectors) {
  if (vectors.size() == 1 && vectors.begin()->first.empty()) {
    return VectorPreview(vectors.begin()->second);
  }
  std::string s;
  for (const auto& [name, v] : vectors) {
    if (!s.empty()) s += " ";
    s += (name.empty() ? std::string("(unnamed)") : name) + "=" + VectorPreview(v);
  }
  return s;
}

}  // namespace fathom::cli
