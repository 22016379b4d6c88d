#include "index/kdforest.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <numeric>
#include <queue>

#include "index/visited_set.h"

namespace fathom {
namespace {

constexpr size_t kSampleForSplit = 100;  // points a split's mean and variance come from
constexpr size_t kSplitCandidates = 5;   // widest dimensions a split picks from

}  // namespace

std::string KdForestIndex::factory_string() const {
  return trees_ == kDefaultTrees ? "KDForest" : "KDForest" + std::to_string(trees_);
}

void KdForestIndex::BuildTree() {
  const size_t n = tree_size();
  nodes_.clear();
  roots_.clear();
  order_.clear();
  if (n == 0) return;
  // Leaves address order_ with 32-bit positions: past 2^32 / n trees (e.g. more than 42 trees of
  // 100M points, 17 GB of permutations) the forest keeps the trees that fit.
  const int trees = int(std::min<size_t>(size_t(trees_), std::max<size_t>(1, size_t(UINT32_MAX) / n)));
  order_.resize(size_t(trees) * n);
  nodes_.reserve(size_t(trees) * 2 * (n / (kLeafSize / 2) + 1));
  for (int t = 0; t < trees; ++t) {
    std::mt19937 rng(0x9e3779b9u + uint32_t(t));
    uint32_t* rows = order_.data() + size_t(t) * n;
    std::iota(rows, rows + n, 0u);
    // Shuffled, so that the first points of any range are a random sample of it.
    std::shuffle(rows, rows + n, rng);
    roots_.push_back(BuildNode(uint32_t(size_t(t) * n), uint32_t(size_t(t + 1) * n), rng));
  }
}

// Builds the subtree over positions [begin, end) of order_, reordering them.
uint32_t KdForestIndex::BuildNode(uint32_t begin, uint32_t end, std::mt19937& rng) {
  const size_t d = dim();
  const uint32_t id = uint32_t(nodes_.size());
  nodes_.push_back(Node{{begin, 0}, 0.0f, end});
  const uint32_t n = end - begin;
  if (n <= uint32_t(kLeafSize)) return id;
  uint32_t* rows = order_.data() + begin;
  // Mean and variance per dimension over a sample (the range's order is random).
  const size_t sample = std::min<size_t>(n, kSampleForSplit);
  std::vector<double> mean(d, 0.0), var(d, 0.0);
  for (size_t i = 0; i < sample; ++i) {
    const float* p = point(rows[i]);
    for (size_t j = 0; j < d; ++j) mean[j] += p[j];
  }
  for (size_t j = 0; j < d; ++j) mean[j] /= double(sample);
  for (size_t i = 0; i < sample; ++i) {
    const float* p = point(rows[i]);
    for (size_t j = 0; j < d; ++j) var[j] += (p[j] - mean[j]) * (p[j] - mean[j]);
  }
  // One of the widest dimensions, at random.
  std::vector<uint32_t> dims(d);
  std::iota(dims.begin(), dims.end(), 0u);
  const size_t top = std::min(kSplitCandidates, d);
  std::partial_sort(dims.begin(), dims.begin() + top, dims.end(),
                    [&](uint32_t a, uint32_t b) { return var[a] > var[b] || (var[a] == var[b] && a < b); });
  uint32_t split_dim = dims[std::uniform_int_distribution<size_t>(0, top - 1)(rng)];
  if (var[split_dim] <= 0) split_dim = dims[0];
  auto coord = [&](uint32_t r) { return point(r)[split_dim]; };
  float split = float(mean[split_dim]);
  uint32_t left = uint32_t(std::partition(rows, rows + n, [&](uint32_t r) { return coord(r) < split; }) - rows);
  if (left < n / 8 || n - left < n / 8) {
    // Skewed along this dimension (or the sample missed its spread): split at the median, so
    // that the tree stays O(log n) deep. Left points are < split <= right points, which is what
    // the exact search's bounds rely on.
    auto median_split = [&]() {
      std::nth_element(rows, rows + n / 2, rows + n, [&](uint32_t a, uint32_t b) { return coord(a) < coord(b); });
      split = coord(rows[n / 2]);
      left = uint32_t(std::partition(rows, rows + n, [&](uint32_t r) { return coord(r) < split; }) - rows);
      if (left > 0) return true;
      // The median is the smallest value (half the points or more share it): split above it.
      float next = std::numeric_limits<float>::infinity();
      for (uint32_t i = 0; i < n; ++i) {
        if (coord(rows[i]) > split) next = std::min(next, coord(rows[i]));
      }
      if (next == std::numeric_limits<float>::infinity()) return false;  // all equal here
      split = next;
      left = uint32_t(std::partition(rows, rows + n, [&](uint32_t r) { return coord(r) < split; }) - rows);
      return true;
    };
    bool done = median_split();
    // All equal along it: the other dimensions, widest (by the sample) first.
    std::partial_sort(dims.begin(), dims.end(), dims.end(),
                      [&](uint32_t a, uint32_t b) { return var[a] > var[b] || (var[a] == var[b] && a < b); });
    for (size_t i = 0; !done && i < d; ++i) {
      split_dim = dims[i];
      done = median_split();
    }
    if (!done) return id;  // identical points: one (large) leaf
  }
  nodes_[id].split = split;
  nodes_[id].dim = split_dim;
  const uint32_t l = BuildNode(begin, begin + left, rng);
  const uint32_t r = BuildNode(begin + left, end, rng);
  nodes_[id].child[0] = l;
  nodes_[id].child[1] = r;
  return id;
}

void KdForestIndex::SearchTree(const float* q, const SearchParams& params, TopK& top) const {
  using Entry = std::pair<float, uint32_t>;
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap;
  auto scan_leaf = [&](const Node& leaf, auto&& examine) {
    for (uint32_t i = leaf.child[0]; i < leaf.dim; ++i) examine(order_[i]);
  };
  if (params.checks <= 0) {
    // Exact, on the first tree: a branch's key is a lower bound of the distance to its cell
    // (the cell lies beyond every plane crossed to reach it).
    heap.emplace(0.0f, roots_[0]);
    while (!heap.empty()) {
      auto [bound, id] = heap.top();
      heap.pop();
      if (bound >= top.threshold()) break;
      while (!nodes_[id].leaf()) {
        const Node& node = nodes_[id];
        const float diff = q[node.dim] - node.split;
        const bool left = diff < 0;
        const float far_bound = std::max(bound, diff * diff);
        if (far_bound < top.threshold()) heap.emplace(far_bound, node.child[left ? 1 : 0]);
        id = node.child[left ? 0 : 1];
      }
      scan_leaf(nodes_[id], [&](uint32_t row) { Consider<0>(row, q, params.filter, top); });
    }
    return;
  }
  // Budgeted: every tree to a leaf, then the nearest branches of any tree.
  thread_local VisitedSet visited;
  visited.Reset(tree_size());
  const size_t budget = size_t(params.checks);
  size_t examined = 0;
  auto descend = [&](uint32_t id, float bound) {
    while (!nodes_[id].leaf()) {
      const Node& node = nodes_[id];
      const float diff = q[node.dim] - node.split;
      const bool left = diff < 0;
      const float far_bound = bound + diff * diff;
      if (far_bound < top.threshold()) heap.emplace(far_bound, node.child[left ? 1 : 0]);
      id = node.child[left ? 0 : 1];
    }
    scan_leaf(nodes_[id], [&](uint32_t row) {
      if (!visited.Insert(row)) return;
      Consider<0>(row, q, params.filter, top);
      ++examined;
    });
  };
  for (uint32_t root : roots_) descend(root, 0.0f);
  while (!heap.empty() && examined < budget) {
    const auto [bound, id] = heap.top();
    heap.pop();
    if (bound >= top.threshold()) break;
    descend(id, bound);
  }
}

}  // namespace fathom
