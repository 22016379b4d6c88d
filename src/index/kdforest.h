// KdForestIndex: a forest of randomized k-d trees (Silpa-Anan & Hartley 2008; FLANN's
// "kdtree" index, Muja & Lowe 2009) for approximate k-NN in tens to hundreds of dimensions,
// where one exact k-d tree visits most of its leaves.
//
// Build: every tree splits a cell at the mean of one of the 5 dimensions with the largest
// variance (picked at random; mean and variance from up to 100 of the cell's points), so the
// trees partition space differently; a split that would leave fewer than 1/8 of the points on
// one side is made at the median instead, which keeps every tree O(log n) deep. Points stay where
// they are (each tree holds a permutation of the rows), and leaves hold up to 8 points. Seeds
// are fixed: the same points build the same forest, so results are reproducible.
//
// Search with SearchParams::checks (FLANN's knob): the query descends every tree to a leaf; the
// branches not taken go into one heap shared by all trees, keyed by the query's distance to the
// split planes crossed (summed, as FLANN does), and the nearest are resumed until `checks`
// points were examined. A point met in several trees is examined once. Without checks the
// search is exact: one tree, best first, each branch keyed by a true lower bound of the distance
// to its cell (the largest single plane distance on the way), stopping once no branch can hold
// a closer point. Factory "KDForest" (4 trees) or "KDForest<trees>" (1 to 64).
// Updates, metrics and locking: see PointTreeIndex.
#pragma once

#include <random>
#include <vector>

#include "index/point_tree.h"

namespace fathom {

class KdForestIndex final : public PointTreeIndex {
 public:
  static constexpr int kDefaultTrees = 4;
  static constexpr int kLeafSize = 8;
  KdForestIndex(size_t dim, Metric metric, int trees)
      : PointTreeIndex(dim, metric, kLeafSize), trees_(trees) {}
  std::string factory_string() const override;

 private:
  struct Node {
    // Inner node: the split (coordinate `dim` < `split` goes left) and the children (child[1]
    // is never 0). Leaf: child[1] = 0, and positions [child[0], dim) of order_ are its rows.
    uint32_t child[2];
    float split;
    uint32_t dim;
    bool leaf() const { return child[1] == 0; }
  };

  void BuildTree() override;
  void SearchTree(const float* q, const SearchParams& params, TopK& top) const override;
  size_t tree_bytes() const override {
    return nodes_.capacity() * sizeof(Node) + order_.capacity() * sizeof(uint32_t) + roots_.capacity() * sizeof(uint32_t);
  }
  const char* kind() const override { return "KDForest"; }
  uint32_t BuildNode(uint32_t begin, uint32_t end, std::mt19937& rng);

  const int trees_;
  std::vector<Node> nodes_;
  std::vector<uint32_t> roots_;  // one per tree
  // trees_ permutations of rows [0, tree_size()), one after another; a leaf's range indexes it.
  std::vector<uint32_t> order_;
};

}  // namespace fathom
