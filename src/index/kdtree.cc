#include "index/kdtree.h"

#include <algorithm>
#include <limits>
#include <numeric>

namespace fathom {

std::string KdTreeIndex::factory_string() const {
  return leaf_ == kDefaultLeaf ? "KDTree" : "KDTree" + std::to_string(leaf_);
}

void KdTreeIndex::BuildTree() {
  const size_t d = dim(), n = tree_size();
  nodes_.clear();
  root_lo_.assign(d, 0.0f);
  root_hi_.assign(d, 0.0f);
  if (n == 0) return;
  for (size_t j = 0; j < d; ++j) root_lo_[j] = root_hi_[j] = point(0)[j];
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < d; ++j) {
      root_lo_[j] = std::min(root_lo_[j], point(i)[j]);
      root_hi_[j] = std::max(root_hi_[j], point(i)[j]);
    }
  }
  nodes_.reserve(2 * (n / size_t(leaf_) + 1));
  BuildNode(0, uint32_t(n));
}

// Builds the subtree over rows [begin, end), reordering them in place.
uint32_t KdTreeIndex::BuildNode(uint32_t begin, uint32_t end) {
  const size_t d = dim();
  const uint32_t id = uint32_t(nodes_.size());
  nodes_.push_back(Node{begin, end, {0, 0}, 0.0f, 0.0f, 0.0f, 0});
  if (end - begin <= uint32_t(leaf_)) return id;
  // The widest dimension of the points' own bounding box (tighter than the cell's).
  std::vector<float> plo(d, std::numeric_limits<float>::infinity()), phi(d, -std::numeric_limits<float>::infinity());
  for (uint32_t i = begin; i < end; ++i) {
    const float* p = point(i);
    for (size_t j = 0; j < d; ++j) {
      plo[j] = std::min(plo[j], p[j]);
      phi[j] = std::max(phi[j], p[j]);
    }
  }
  size_t split_dim = 0;
  for (size_t j = 1; j < d; ++j) {
    if (phi[j] - plo[j] > phi[split_dim] - plo[split_dim]) split_dim = j;
  }
  if (phi[split_dim] <= plo[split_dim]) return id;  // all points equal: one (large) leaf
  // Median split: order a permutation by the split coordinate, then apply it.
  const uint32_t n = end - begin, mid = n / 2;
  std::vector<uint32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::nth_element(order.begin(), order.begin() + mid, order.end(), [&](uint32_t a, uint32_t b) {
    return point(begin + a)[split_dim] < point(begin + b)[split_dim];
  });
  Permute(begin, order);
  const float split = point(begin + mid)[split_dim];
  float left_max = -std::numeric_limits<float>::infinity(), right_min = std::numeric_limits<float>::infinity();
  for (uint32_t i = begin; i < begin + mid; ++i) left_max = std::max(left_max, point(i)[split_dim]);
  for (uint32_t i = begin + mid; i < end; ++i) right_min = std::min(right_min, point(i)[split_dim]);
  nodes_[id].dim = uint16_t(split_dim);
  nodes_[id].split = split;
  nodes_[id].left_max = left_max;
  nodes_[id].right_min = right_min;
  const uint32_t left = BuildNode(begin, begin + mid);
  const uint32_t right = BuildNode(begin + mid, end);
  nodes_[id].child[0] = left;
  nodes_[id].child[1] = right;
  return id;
}

// One query's depth-first search; D > 0 fixes the dimension at compile time.
class KdTreeIndex::Searcher {
 public:
  Searcher(const KdTreeIndex& index, const float* q, const LabelFilter* filter, TopK& top)
      : ix_(index), q_(q), top_(top), filter_(filter), off_(index.dim(), 0.0f) {}

  template <int D>
  void Run() {
    const size_t d = ix_.dim();
    float rd = 0;
    for (size_t j = 0; j < d; ++j) {
      float o = 0;
      if (q_[j] < ix_.root_lo_[j]) o = q_[j] - ix_.root_lo_[j];
      if (q_[j] > ix_.root_hi_[j]) o = q_[j] - ix_.root_hi_[j];
      off_[j] = o;
      rd += o * o;
    }
    Visit<D>(0, rd);
  }

 private:
  template <int D>
  void Visit(uint32_t id, float rd) {
    const Node& node = ix_.nodes_[id];
    if (node.leaf()) {
      for (uint32_t r = node.begin; r < node.end; ++r) ix_.Consider<D>(r, q_, filter_, top_);
      return;
    }
    const float x = q_[node.dim];
    const bool left = x < node.split;
    const uint32_t near = left ? node.child[0] : node.child[1];
    const uint32_t far = left ? node.child[1] : node.child[0];
    Visit<D>(near, rd);
    // Distance along `dim` to the far subtree's points (not just to the split plane).
    const float cut = left ? std::min(0.0f, x - node.right_min) : std::max(0.0f, x - node.left_max);
    const float old = off_[node.dim];
    const float far_rd = rd - old * old + cut * cut;
    if (far_rd < top_.threshold()) {
      off_[node.dim] = cut;
      Visit<D>(far, far_rd);
      off_[node.dim] = old;
    }
  }

  const KdTreeIndex& ix_;
  const float* q_;
  TopK& top_;
  const LabelFilter* filter_;
  std::vector<float> off_;
};

void KdTreeIndex::SearchTree(const float* q, const SearchParams& params, TopK& top) const {
  Searcher s(*this, q, params.filter, top);
  switch (dim()) {
    case 2: s.Run<2>(); break;
    case 3: s.Run<3>(); break;
    case 4: s.Run<4>(); break;
    case 8: s.Run<8>(); break;
    case 16: s.Run<16>(); break;
    default: s.Run<0>(); break;
  }
}

}  // namespace fathom
