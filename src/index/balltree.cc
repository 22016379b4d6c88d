#include "index/balltree.h"

#include <algorithm>
#include <cmath>
#include <limits>
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
  nodes_.push_back(Node{begin, end, 0, 0, 0.0f, 0.0f});
  centres_.resize(centres_.size() + d, 0.0f);
  {
    std::vector<double> mean(d, 0.0);
    for (uint32_t i = begin; i < end; ++i) {
      for (size_t j = 0; j < d; ++j) mean[j] += point(i)[j];
    }
    float* c = centres_.data() + size_t{id} * d;
    for (size_t j = 0; j < d; ++j) c[j] = float(mean[j] / double(n));
    float radius = 0;
    double sum = 0;
    for (uint32_t i = begin; i < end; ++i) {
      const float dist = kernels.l2_sqr(point(i), c, d);
      radius = std::max(radius, dist);
      sum += dist;
    }
    nodes_[id].variance = float(sum / double(n));
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
  using Entry = std::pair<float, uint32_t>;
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap;
  if (params.checks <= 0) {
    // Exact: best first by the smallest distance a node's points can have.
    auto bound = [&](uint32_t id) {
      const float dist = std::sqrt(kernels.l2_sqr(q, centres_.data() + size_t{id} * d, d)) - nodes_[id].radius;
      return dist > 0 ? dist * dist : 0.0f;
    };
    heap.emplace(bound(0), 0);
    while (!heap.empty()) {
      const auto [lb, id] = heap.top();
      heap.pop();
      if (lb >= top.threshold()) break;  // no remaining node can hold a closer point
      const Node& node = nodes_[id];
      if (node.child_count == 0) {
        for (uint32_t r = node.begin; r < node.end; ++r) Consider<0>(r, q, params.filter, top);
        continue;
      }
      for (uint32_t c = 0; c < node.child_count; ++c) {
        const uint32_t child = children_[node.child_begin + c];
        const float child_lb = bound(child);
        if (child_lb < top.threshold()) heap.emplace(child_lb, child);
      }
    }
    return;
  }
  // Budgeted (FLANN's hierarchical k-means search): in high dimensions every ball contains the
  // query's neighbourhood, so ball bounds say little; descend instead to the child whose centre
  // is nearest (less a fifth of its spread: wide clusters are likelier to hold neighbours), and
  // keep the other children in a heap by the same key, to resume from once a leaf is scanned,
  // until `checks` points were examined. A ball that cannot hold a closer point is still pruned.
  constexpr float kSpreadWeight = 0.2f;
  const size_t budget = size_t(params.checks);
  size_t examined = 0;
  std::vector<float> centre_dist;
  auto ball_excludes = [&](uint32_t id, float dist2) {
    const float dist = std::sqrt(dist2) - nodes_[id].radius;
    return dist > 0 && dist * dist >= top.threshold();
  };
  heap.emplace(0.0f, 0);
  while (!heap.empty() && examined < budget) {
    uint32_t id = heap.top().second;
    heap.pop();
    // Down to a leaf, pushing the siblings not taken.
    while (nodes_[id].child_count > 0) {
      const Node& node = nodes_[id];
      uint32_t best = UINT32_MAX;
      float best_key = std::numeric_limits<float>::infinity();
      centre_dist.resize(node.child_count);
      for (uint32_t c = 0; c < node.child_count; ++c) {
        const uint32_t child = children_[node.child_begin + c];
        centre_dist[c] = kernels.l2_sqr(q, centres_.data() + size_t{child} * d, d);
        const float key = centre_dist[c] - kSpreadWeight * nodes_[child].variance;
        if (key < best_key) best_key = key, best = c;
      }
      for (uint32_t c = 0; c < node.child_count; ++c) {
        const uint32_t child = children_[node.child_begin + c];
        if (c == best || ball_excludes(child, centre_dist[c])) continue;
        heap.emplace(centre_dist[c] - kSpreadWeight * nodes_[child].variance, child);
      }
      id = children_[node.child_begin + best];
    }
    const Node& leaf = nodes_[id];
    for (uint32_t r = leaf.begin; r < leaf.end; ++r) Consider<0>(r, q, params.filter, top);
    examined += leaf.end - leaf.begin;
  }
}

}  // namespace fathom
