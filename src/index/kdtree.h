// KdTreeIndex: exact k-NN for low-dimensional data (3-D point clouds, 2-32-D geo and sensor
// features) with a k-d tree (Bentley 1975; Friedman, Bentley & Finkel 1977).
//
// Build: split the widest dimension of each cell at its median until a cell holds at most
// `leaf` points (factory "KDTree" = 16, "KDTree<leaf>"); points are copied into leaf order, so
// a leaf is one contiguous block. Search: depth first, nearer child first; each inner node keeps
// the largest coordinate of its left subtree and the smallest of its right one, and the
// distance from the query to a cell is kept per dimension and updated at each split (Arya &
// Mount 1993), so a subtree is entered only while it can hold a closer point: results are
// exact. Updates, metrics and locking: see PointTreeIndex.
#pragma once

#include <vector>

#include "index/point_tree.h"

namespace fathom {

class KdTreeIndex final : public PointTreeIndex {
 public:
  static constexpr int kDefaultLeaf = 16;
  KdTreeIndex(size_t dim, Metric metric, int leaf) : PointTreeIndex(dim, metric, leaf) {}
  std::string factory_string() const override;

 private:
  struct Node {
    // Inner node: split dimension and value, children. Leaf: child[0] = child[1] = 0 and
    // [begin, end) in the point arrays.
    uint32_t begin, end;
    uint32_t child[2];
    float split;
    // Tight bounds along `dim`: the largest coordinate in the left subtree and the smallest in
    // the right one (the gap between them is empty space no query needs to cross).
    float left_max, right_min;
    uint16_t dim;
    bool leaf() const { return child[0] == 0; }
  };
  class Searcher;

  void BuildTree() override;
  void SearchTree(const float* q, const SearchParams& params, TopK& top) const override;
  size_t tree_bytes() const override { return nodes_.capacity() * sizeof(Node) + 2 * root_lo_.capacity() * sizeof(float); }
  const char* kind() const override { return "KDTree"; }
  uint32_t BuildNode(uint32_t begin, uint32_t end);

  std::vector<Node> nodes_;
  std::vector<float> root_lo_, root_hi_;  // bounding box of the tree's points
};

}  // namespace fathom
