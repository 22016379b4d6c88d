// BallTreeIndex: a hierarchical k-means tree with bounding balls (Fukunaga & Narendra 1975;
// FLANN's k-means tree, Muja & Lowe 2009) for exact or budgeted k-NN in any dimension.
//
// Build: each node's points are split into `branching` clusters by a few rounds of k-means
// (shared with IVF), recursively, until a node holds at most 32 points; every node keeps its
// centre (the mean) and radius (the farthest point), and points are copied into leaf order.
// Exact search is best first: nodes come off a heap ordered by the smallest distance any of
// their points can have, (|q - centre| - radius)^2, and the walk stops once that exceeds the
// current k-th distance. With SearchParams::checks (FLANN's knob) it is approximate and
// searches as FLANN's k-means tree does: down to the child with the nearest centre, the others
// kept in a heap, until that many points were examined. Factory "BallTree" (branching 8) or
// "BallTree<b>".
// Updates, metrics and locking: see PointTreeIndex.
#pragma once

#include <vector>

#include "index/point_tree.h"

namespace fathom {

class BallTreeIndex final : public PointTreeIndex {
 public:
  static constexpr int kDefaultBranching = 8;
  static constexpr int kLeafSize = 32;
  BallTreeIndex(size_t dim, Metric metric, int branching)
      : PointTreeIndex(dim, metric, kLeafSize), branching_(branching) {}
  std::string factory_string() const override;

 private:
  struct Node {
    uint32_t begin, end;                     // rows of the subtree's points
    uint32_t child_begin, child_count;       // into children_; a leaf has none
    float radius;                            // farthest point from the centre (Euclidean)
    float variance;                          // mean squared distance of the points to the centre
  };

  void BuildTree() override;
  void SearchTree(const float* q, const SearchParams& params, TopK& top) const override;
  size_t tree_bytes() const override {
    return nodes_.capacity() * sizeof(Node) + centres_.capacity() * sizeof(float) + children_.capacity() * sizeof(uint32_t);
  }
  const char* kind() const override { return "BallTree"; }
  uint32_t BuildNode(uint32_t begin, uint32_t end, uint32_t seed);

  int branching_;
  std::vector<Node> nodes_;
  std::vector<float> centres_;  // dim floats per node
  std::vector<uint32_t> children_;
};

}  // namespace fathom
