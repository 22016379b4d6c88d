#include "index/factory.h"

#include <charconv>
#include <vector>

namespace fathom {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

bool ParseInt(std::string_view s, int* out) {
  if (s.empty()) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

Status Bad(std::string_view factory, const std::string& what) {
  return Status::InvalidArgument(what + " in index spec '" + std::string(factory) + "'");
}

}  // namespace

Result<IndexSpec> ParseFactory(std::string_view factory) {
  std::vector<std::string_view> parts;
  for (std::string_view rest = factory;;) {
    size_t comma = rest.find(',');
    parts.push_back(Trim(rest.substr(0, comma)));
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  IndexSpec spec;
  std::string_view head = parts[0];
  if (head.empty()) {
    return Bad(factory, "empty index type: expected Flat or HNSW<M> (e.g. HNSW32)");
  }
  if (head == "Flat") {
    spec.type = IndexSpec::Type::kFlat;
    if (parts.size() > 1) {
      return Bad(factory, "unexpected option '" + std::string(parts[1]) +
                              "' after Flat: Flat takes no options");
    }
    return spec;
  }
  if (head.substr(0, 4) != "HNSW") {
    return Bad(factory, "unknown index type '" + std::string(head) +
                            "': expected Flat or HNSW<M> (e.g. HNSW32)");
  }
  spec.type = IndexSpec::Type::kHnsw;
  std::string_view m = head.substr(4);
  if (!ParseInt(m, &spec.m) || spec.m < 2 || spec.m > 256) {
    return Bad(factory, "'" + std::string(head) +
                            "' needs a link count M between 2 and 256 after HNSW (e.g. HNSW32)");
  }
  bool seen_efc = false, seen_efs = false;
  for (size_t i = 1; i < parts.size(); ++i) {
    std::string_view p = parts[i];
    if (p == "SQ8") {
      if (spec.sq8) return Bad(factory, "SQ8 given twice");
      spec.sq8 = true;
      continue;
    }
    size_t eq = p.find('=');
    std::string_view key = p.substr(0, eq);
    std::string_view value = eq == std::string_view::npos ? "" : p.substr(eq + 1);
    int* target = nullptr;
    if (key == "efC") {
      if (seen_efc) return Bad(factory, "efC given twice");
      seen_efc = true;
      target = &spec.ef_construction;
    } else if (key == "efS") {
      if (seen_efs) return Bad(factory, "efS given twice");
      seen_efs = true;
      target = &spec.ef_search;
    } else {
      return Bad(factory, "unknown HNSW option '" + std::string(p) +
                              "': expected SQ8, efC=<n> or efS=<n>");
    }
    if (eq == std::string_view::npos || !ParseInt(value, target) || *target < 1 ||
        *target > 100000) {
      return Bad(factory, "option '" + std::string(p) + "' needs an integer between 1 and 100000");
    }
  }
  return spec;
}

std::string ToFactoryString(const IndexSpec& spec) {
  if (spec.type == IndexSpec::Type::kFlat) return "Flat";
  std::string s = "HNSW" + std::to_string(spec.m);
  if (spec.sq8) s += ",SQ8";
  if (spec.ef_construction != IndexSpec::kDefaultEfConstruction) {
    s += ",efC=" + std::to_string(spec.ef_construction);
  }
  if (spec.ef_search != IndexSpec::kDefaultEfSearch) s += ",efS=" + std::to_string(spec.ef_search);
  return s;
}

}  // namespace fathom
