// Factory strings: the one name for an index configuration, in configs, logs and file headers.
//
//   Flat                         exact search
//   HNSW<M>[,SQ8|,SQ4|,FP16|,RBQ][,efC=<n>][,efS=<n>][,pca=<p>]
//                                HNSW graph with M links per node (2M on level 0); SQ8 traverses
//                                the graph on 8-bit codes and re-ranks with float32, FP16 keeps
//                                half-precision vectors only, RBQ traverses on 1-bit RaBitQ codes
//                                and re-ranks with float32; efC is the construction beam (default
//                                200), efS the default search beam (64); pca (SQ8, l2 or cosine,
//                                p < dim) walks searches on 8-bit codes of the top p principal
//                                components and ranks the beam again by the whole codes.
//   IVF<nlist>[_HNSW<M>],<Flat|FP16|SQ8|SQ4|PQ<m>|PQ<m>x4fs|RBQ>[,nprobe=<n>]
//                                inverted file: k-means coarse quantizer with nlist lists (a
//                                flat scan of the centroids, or an HNSW<M> graph over them),
//                                lists of float vectors, half-precision vectors, per-dimension
//                                8-bit or 4-bit codes or m-byte
//                                product-quantizer codes (x4fs: 4-bit codes scanned with SIMD
//                                shuffles) or 1-bit RaBitQ codes of the residual (l2, cosine);
//                                nprobe lists are scanned per query
//                                (default 16).
//   OPQ<m>,IVF<nlist>...,PQ<m>[x4fs]
//                                the same with an OPQ rotation learnt for the product
//                                quantizer (m must match)
//   KDTree[<leaf>]               exact k-d tree for low dimensions (l2, cosine), leaf size 16
//   BallTree[<b>]                k-means ball tree (l2, cosine), b children per node (8); exact,
//                                or budgeted with SearchParams::checks
//   KDForest[<t>]                t randomized k-d trees (4; 1 to 64) searched together with a
//                                budget of SearchParams::checks points (l2, cosine); exact
//                                without checks
//
// ToFactoryString(ParseFactory(s)) is the canonical form of s (options in the order above,
// defaults omitted); ParseFactory(ToFactoryString(spec)) == spec.
#pragma once

#include <string>
#include <string_view>

#include "fathom/status.h"

namespace fathom {

struct IndexSpec {
  enum class Type { kFlat, kHnsw, kIvf, kKdTree, kBallTree, kKdForest };
  enum class Code { kFlat, kSq8, kPq, kPq4fs, kRbq, kFp16, kSq4 };
  static constexpr int kDefaultEfConstruction = 200;
  static constexpr int kDefaultEfSearch = 64;
  static constexpr int kDefaultNprobe = 16;

  Type type = Type::kFlat;
  int m = 32;
  bool sq8 = false;
  bool fp16 = false;  // HNSW: nodes hold IEEE half-precision vectors (",FP16")
  bool rbq = false;   // HNSW: the graph is walked on 1-bit RaBitQ codes (",RBQ")
  bool sq4 = false;   // HNSW: walked on per-dimension 4-bit scalar codes (",SQ4")
  int ef_construction = kDefaultEfConstruction;
  int ef_search = kDefaultEfSearch;
  // HNSW with SQ8: searches walk the graph on the top `pca` principal components of the codes
  // (8 bits each), then rank the beam by the whole codes; 0: on the whole codes.
  int pca = 0;
  // IVF.
  int nlist = 0;
  int coarse_hnsw_m = 0;  // 0: the centroids are scanned; else an HNSW<M> over them
  Code code = Code::kFlat;
  int pq_m = 0;
  bool opq = false;  // "OPQ<m>," before an IVF...,PQ<m> spec: PQ codes of OPQ-rotated residuals
  int nprobe = kDefaultNprobe;
  // KDTree: points per leaf.
  int leaf = 16;
  // BallTree: children per node.
  int branching = 8;
  // KDForest: randomized k-d trees.
  int trees = 4;

  bool operator==(const IndexSpec&) const = default;
};

Result<IndexSpec> ParseFactory(std::string_view factory);
std::string ToFactoryString(const IndexSpec& spec);

}  // namespace fathom
