#include "index/balltree.h"

#include <algorithm>
#include <cmath>
#include <queue>

#include "index/kmeans.h"
#include "simd/distance.h"

namespace fathom {

std::string BallTreeIndex::factory_string() const {
  return branching_ == kDefaultBranching ? "BallTree" : "BallTree" + std::to_string(branching_);
}

void BallTreeIndex::BuildTree() {
  nodes_.clear();
  centres_.clear();
  children_.clear();
  if (tree_size() > 0) BuildNode(0, uint32_t(tree_size()), 1);
}

uint32_t BallTreeIndex::BuildNode(uint32_t begin, uint32_t end, uint32_t seed) {
  const size_t d = dim(), n = end - begin;
  const auto& kernels = simd::Active();
  const uint32_t id = uint32_t(nodes_.size());
  nodes_.push_back(Node{begin, end, 0, 0, 0.0f});
  centres_.resize(centres_.size() + d, 0.0f);
  {
    std::vector<double> mean(d, 0.0);
    for (uint32_t i = begin; i < end; ++i) {
      for (size_t j = 0; j < d; ++j) mean[j] += point(i)[j];
    }
    float* c = centres_.data() + size_t{id} * d;
    for (size_t j = 0; j < d; ++j) c[j] = float(mean[j] / double(n));
    float radius = 0;
    for (uint32_t i = begin; i < end; ++i) radius = std::max(radius, kernels.l2_sqr(point(i), c, d));
    // A hair above the farthest point, so rounding never prunes a point inside the ball.
    nodes_[id].radius = std::sqrt(radius) * (1 + 1e-5f) + 1e-6f;
  }
  if (n <= size_t(leaf_)) return id;
  const size_t k = std::min<size_t>(size_t(branching_), n);
  KMeansOptions options;
  options.iterations = 6;
  options.max_points_per_centroid = 64;
  options.seed = seed;
  auto centroids = TrainKMeans(n, d, point(begin), k, options);
  if (!centroids.ok()) return id;
  const std::vector<float> norms = RowNorms(k, d, centroids->data());
  std::vector<uint32_t> assign(n);
  AssignNearest(n, d, point(begin), k, centroids->data(), norms.data(), assign.data());
  std::vector<uint32_t> count(k, 0);
  for (uint32_t a : assign) ++count[a];
  if (*std::max_element(count.begin(), count.end()) == n) return id;  // duplicates: one leaf
  // Group the rows by cluster (a counting sort), then build each non-empty cluster's subtree.
  std::vector<uint32_t> start(k + 1, 0);
  for (size_t c = 0; c < k; ++c) start[c + 1] = start[c] + count[c];
  std::vector<uint32_t> order(n), fill(start.begin(), start.end() - 1);
  for (uint32_t i = 0; i < n; ++i) order[fill[assign[i]]++] = i;
  Permute(begin, order);
  std::vector<uint32_t> kids;
  for (size_t c = 0; c < k; ++c) {
    if (count[c] == 0) continue;
    kids.push_back(BuildNode(begin + start[c], begin + start[c + 1], seed * 31 + uint32_t(c) + 1));
  }
  nodes_[id].child_begin = uint32_t(children_.size());
  nodes_[id].child_count = uint32_t(kids.size());
  children_.insert(children_.end(), kids.begin(), kids.end());
  return id;
}

void BallTreeIndex::SearchTree(const float* q, const SearchParams& params, TopK& top) const {
  const size_t d = dim();
  const auto& kernels = simd::Active();
  auto bound = [&](uint32_t id) {
    const float dist = std::sqrt(kernels.l2_sqr(q, centres_.data() + size_t{id} * d, d)) - nodes_[id].radius;
    return dist > 0 ? dist * dist : 0.0f;
  };
  using Entry = std::pair<float, uint32_t>;
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap;
  heap.emplace(bound(0), 0);
  const size_t budget = params.checks > 0 ? size_t(params.checks) : SIZE_MAX;
  size_t examined = 0;
  while (!heap.empty()) {
    const auto [lb, id] = heap.top();
    heap.pop();
    if (lb >= top.threshold()) break;  // no remaining node can hold a closer point
    const Node& node = nodes_[id];
    if (node.child_count == 0) {
      for (uint32_t r = node.begin; r < node.end; ++r) Consider<0>(r, q, params.filter, top);
      examined += node.end - node.begin;
      if (examined >= budget) break;
      continue;
    }
    for (uint32_t c = 0; c < node.child_count; ++c) {
      const uint32_t child = children_[node.child_begin + c];
      const float child_lb = bound(child);
      if (child_lb < top.threshold()) heap.emplace(child_lb, child);
    }
  }
}

}  // namespace fathom
