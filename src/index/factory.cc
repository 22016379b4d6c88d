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

Result<IndexSpec> ParseIvf(std::string_view factory, const std::vector<std::string_view>& parts) {
  IndexSpec spec;
  spec.type = IndexSpec::Type::kIvf;
  std::string_view head = parts[0].substr(3);
  const size_t underscore = head.find('_');
  std::string_view nlist = head.substr(0, underscore);
  if (!ParseInt(nlist, &spec.nlist) || spec.nlist < 1 || spec.nlist > (1 << 20)) {
    return Bad(factory, "'" + std::string(parts[0]) +
                            "' needs a list count between 1 and 1048576 after IVF (e.g. IVF1024)");
  }
  if (underscore != std::string_view::npos) {
    std::string_view coarse = head.substr(underscore + 1);
    if (coarse.substr(0, 4) != "HNSW" || !ParseInt(coarse.substr(4), &spec.coarse_hnsw_m) ||
        spec.coarse_hnsw_m < 2 || spec.coarse_hnsw_m > 256) {
      return Bad(factory, "unknown coarse quantizer '" + std::string(coarse) +
                              "': expected HNSW<M> with M between 2 and 256 (e.g. IVF1024_HNSW32)");
    }
  }
  if (parts.size() < 2) {
    return Bad(factory, "IVF needs the code of its lists after a comma: Flat, FP16, SQ8, SQ4, PQ<m> or RBQ (e.g. IVF1024,Flat)");
  }
  std::string_view code = parts[1];
  if (code == "Flat") {
    spec.code = IndexSpec::Code::kFlat;
  } else if (code == "SQ8") {
    spec.code = IndexSpec::Code::kSq8;
  } else if (code == "RBQ") {
    spec.code = IndexSpec::Code::kRbq;
  } else if (code == "FP16") {
    spec.code = IndexSpec::Code::kFp16;
  } else if (code == "SQ4") {
    spec.code = IndexSpec::Code::kSq4;
  } else if (code.substr(0, 2) == "PQ") {
    std::string_view m = code.substr(2);
    spec.code = IndexSpec::Code::kPq;
    if (m.size() > 2 && m.substr(m.size() - 2) == "x8") {
      m.remove_suffix(2);
    } else if (m.size() > 4 && m.substr(m.size() - 4) == "x4fs") {
      m.remove_suffix(4);
      spec.code = IndexSpec::Code::kPq4fs;
    } else if (m.find('x') != std::string_view::npos) {
      return Bad(factory, "'" + std::string(code) +
                              "': expected PQ<m> (8-bit codes), PQ<m>x8 (the same) or PQ<m>x4fs (4-bit fast scan)");
    }
    if (!ParseInt(m, &spec.pq_m) || spec.pq_m < 1 || spec.pq_m > 4096) {
      return Bad(factory, "'" + std::string(code) + "' needs a sub-quantizer count between 1 and 4096 after PQ (e.g. PQ32)");
    }
    if (spec.code == IndexSpec::Code::kPq4fs && (spec.pq_m % 2 != 0 || spec.pq_m > 256)) {
      return Bad(factory, "'" + std::string(code) + "': fast scan packs sub-quantizers in pairs: m must be even and at most 256");
    }
  } else {
    return Bad(factory, "unknown IVF code '" + std::string(code) + "': expected Flat, FP16, SQ8, SQ4, PQ<m> or RBQ (e.g. PQ32)");
  }
  bool seen_nprobe = false;
  for (size_t i = 2; i < parts.size(); ++i) {
    std::string_view p = parts[i];
    const size_t eq = p.find('=');
    if (p.substr(0, eq) != "nprobe") {
      return Bad(factory, "unknown IVF option '" + std::string(p) + "': expected nprobe=<n>");
    }
    if (seen_nprobe) return Bad(factory, "nprobe given twice");
    seen_nprobe = true;
    if (eq == std::string_view::npos || !ParseInt(p.substr(eq + 1), &spec.nprobe) || spec.nprobe < 1 ||
        spec.nprobe > (1 << 20)) {
      return Bad(factory, "option '" + std::string(p) + "' needs an integer between 1 and 1048576");
    }
  }
  return spec;
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
    return Bad(factory, "empty index type: expected Flat, HNSW<M> (e.g. HNSW32), IVF<nlist> (e.g. IVF1024,Flat), KDTree, KDForest or BallTree");
  }
  if (head == "Flat") {
    spec.type = IndexSpec::Type::kFlat;
    if (parts.size() > 1) {
      return Bad(factory, "unexpected option '" + std::string(parts[1]) +
                              "' after Flat: Flat takes no options");
    }
    return spec;
  }
  if (head.substr(0, 3) == "IVF") return ParseIvf(factory, parts);
  if (head.substr(0, 3) == "OPQ") {
    int m = 0;
    if (!ParseInt(head.substr(3), &m) || m < 1 || m > 4096) {
      return Bad(factory, "'" + std::string(head) + "' needs a sub-quantizer count after OPQ (e.g. OPQ32,IVF1024,PQ32)");
    }
    if (parts.size() < 2 || parts[1].substr(0, 3) != "IVF") {
      return Bad(factory, "OPQ rotates for a product quantizer: expected an IVF index with PQ lists after it "
                          "(e.g. OPQ32,IVF1024,PQ32)");
    }
    FATHOM_ASSIGN_OR_RETURN(IndexSpec spec, ParseIvf(factory, std::vector<std::string_view>(parts.begin() + 1, parts.end())));
    if ((spec.code != IndexSpec::Code::kPq && spec.code != IndexSpec::Code::kPq4fs) || spec.pq_m != m) {
      return Bad(factory, "'" + std::string(head) + "' must be followed by PQ lists of the same sub-quantizer count (e.g. OPQ" +
                              std::to_string(m) + ",IVF1024,PQ" + std::to_string(m) + ")");
    }
    spec.opq = true;
    return spec;
  }
  // The trees: a name, an optional number after it, no options.
  struct Tree {
    std::string_view name;
    IndexSpec::Type type;
    int IndexSpec::*value;
    int lo, hi;
    const char* what;
    const char* example;
  };
  static constexpr Tree kTrees[] = {
      {"BallTree", IndexSpec::Type::kBallTree, &IndexSpec::branching, 2, 256, "a branching factor", "BallTree8"},
      {"KDForest", IndexSpec::Type::kKdForest, &IndexSpec::trees, 1, 64, "a tree count", "KDForest8"},
      {"KDTree", IndexSpec::Type::kKdTree, &IndexSpec::leaf, 1, 4096, "a leaf size", "KDTree16"},
  };
  for (const Tree& tree : kTrees) {
    if (head.substr(0, tree.name.size()) != tree.name) continue;
    spec.type = tree.type;
    int& value = spec.*tree.value;
    if (head.size() > tree.name.size() &&
        (!ParseInt(head.substr(tree.name.size()), &value) || value < tree.lo || value > tree.hi)) {
      return Bad(factory, "'" + std::string(head) + "' needs " + tree.what + " between " + std::to_string(tree.lo) +
                              " and " + std::to_string(tree.hi) + " after " + std::string(tree.name) + " (e.g. " +
                              tree.example + ")");
    }
    if (parts.size() > 1) {
      return Bad(factory, "unexpected option '" + std::string(parts[1]) + "' after " + std::string(tree.name) +
                              ": it takes none");
    }
    return spec;
  }
  if (head.substr(0, 4) != "HNSW") {
    return Bad(factory, "unknown index type '" + std::string(head) +
                            "': expected Flat, HNSW<M> (e.g. HNSW32), IVF<nlist> (e.g. IVF1024,Flat), KDTree, KDForest or BallTree");
  }
  spec.type = IndexSpec::Type::kHnsw;
  std::string_view m = head.substr(4);
  if (!ParseInt(m, &spec.m) || spec.m < 2 || spec.m > 256) {
    return Bad(factory, "'" + std::string(head) +
                            "' needs a link count M between 2 and 256 after HNSW (e.g. HNSW32)");
  }
  bool seen_efc = false, seen_efs = false, seen_pca = false;
  for (size_t i = 1; i < parts.size(); ++i) {
    std::string_view p = parts[i];
    if (p == "SQ8" || p == "FP16" || p == "RBQ" || p == "SQ4") {
      if (spec.sq8 || spec.fp16 || spec.rbq || spec.sq4) return Bad(factory, "give one code (SQ8, SQ4, FP16 or RBQ), once");
      (p == "SQ8" ? spec.sq8 : p == "FP16" ? spec.fp16 : p == "SQ4" ? spec.sq4 : spec.rbq) = true;
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
    } else if (key == "pca") {
      if (seen_pca) return Bad(factory, "pca given twice");
      seen_pca = true;
      target = &spec.pca;
    } else {
      return Bad(factory, "unknown HNSW option '" + std::string(p) +
                              "': expected SQ8, SQ4, FP16, RBQ, efC=<n>, efS=<n> or pca=<n>");
    }
    if (eq == std::string_view::npos || !ParseInt(value, target) || *target < 1 ||
        *target > 100000) {
      return Bad(factory, "option '" + std::string(p) + "' needs an integer between 1 and 100000");
    }
  }
  if (spec.pca != 0 && !spec.sq8) {
    return Bad(factory, "pca=" + std::to_string(spec.pca) +
                            " walks on projections of SQ8 codes: it needs SQ8 (e.g. HNSW16,SQ8,pca=128)");
  }
  return spec;
}

std::string ToFactoryString(const IndexSpec& spec) {
  if (spec.type == IndexSpec::Type::kFlat) return "Flat";
  if (spec.type == IndexSpec::Type::kBallTree) {
    return spec.branching == 8 ? "BallTree" : "BallTree" + std::to_string(spec.branching);
  }
  if (spec.type == IndexSpec::Type::kKdForest) return spec.trees == 4 ? "KDForest" : "KDForest" + std::to_string(spec.trees);
  if (spec.type == IndexSpec::Type::kKdTree) return spec.leaf == 16 ? "KDTree" : "KDTree" + std::to_string(spec.leaf);
  if (spec.type == IndexSpec::Type::kIvf) {
    std::string s = (spec.opq ? "OPQ" + std::to_string(spec.pq_m) + "," : std::string()) + "IVF" + std::to_string(spec.nlist);
    if (spec.coarse_hnsw_m > 0) s += "_HNSW" + std::to_string(spec.coarse_hnsw_m);
    switch (spec.code) {
      case IndexSpec::Code::kFlat: s += ",Flat"; break;
      case IndexSpec::Code::kSq8: s += ",SQ8"; break;
      case IndexSpec::Code::kPq: s += ",PQ" + std::to_string(spec.pq_m); break;
      case IndexSpec::Code::kPq4fs: s += ",PQ" + std::to_string(spec.pq_m) + "x4fs"; break;
      case IndexSpec::Code::kRbq: s += ",RBQ"; break;
      case IndexSpec::Code::kFp16: s += ",FP16"; break;
      case IndexSpec::Code::kSq4: s += ",SQ4"; break;
    }
    if (spec.nprobe != IndexSpec::kDefaultNprobe) s += ",nprobe=" + std::to_string(spec.nprobe);
    return s;
  }
  std::string s = "HNSW" + std::to_string(spec.m);
  if (spec.sq8) s += ",SQ8";
  if (spec.fp16) s += ",FP16";
  if (spec.rbq) s += ",RBQ";
  if (spec.sq4) s += ",SQ4";
  if (spec.ef_construction != IndexSpec::kDefaultEfConstruction) {
    s += ",efC=" + std::to_string(spec.ef_construction);
  }
  if (spec.ef_search != IndexSpec::kDefaultEfSearch) s += ",efS=" + std::to_string(spec.ef_search);
  if (spec.pca != 0) s += ",pca=" + std::to_string(spec.pca);
  return s;
}

}  // namespace fathom
