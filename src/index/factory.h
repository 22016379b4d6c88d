// Factory strings: the one name for an index configuration, in configs, logs and file headers.
//
//   Flat                         exact search
//   HNSW<M>[,SQ8][,efC=<n>][,efS=<n>]
//                                HNSW graph with M links per node (2M on level 0); SQ8 traverses
//                                the graph on 8-bit codes and re-ranks with float32; efC is the
//                                construction beam (default 200), efS the default search beam (64).
//
// ToFactoryString(ParseFactory(s)) is the canonical form of s (options in the order above,
// defaults omitted); ParseFactory(ToFactoryString(spec)) == spec.
#pragma once

#include <string>
#include <string_view>

#include "fathom/status.h"

namespace fathom {

struct IndexSpec {
  enum class Type { kFlat, kHnsw };
  static constexpr int kDefaultEfConstruction = 200;
  static constexpr int kDefaultEfSearch = 64;

  Type type = Type::kFlat;
  int m = 32;
  bool sq8 = false;
  int ef_construction = kDefaultEfConstruction;
  int ef_search = kDefaultEfSearch;

  bool operator==(const IndexSpec&) const = default;
};

Result<IndexSpec> ParseFactory(std::string_view factory);
std::string ToFactoryString(const IndexSpec& spec);

}  // namespace fathom
