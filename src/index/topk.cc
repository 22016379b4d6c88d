#include "index/topk.h"

#include "simd/distance.h"

namespace fathom {

void TopK::Extract(float* distances, label_t* labels) {
  std::sort_heap(heap_.begin(), heap_.end());
  size_t i = 0;
  for (; i < heap_.size(); ++i) {
    distances[i] = heap_[i].first;
    labels[i] = heap_[i].second;
  }
  for (; i < k_; ++i) {
    distances[i] = std::numeric_limits<float>::infinity();
    labels[i] = kNoLabel;
  }
  heap_.clear();
}

void ExactTopK(Metric metric, size_t dim, size_t n, const float* queries, size_t k,
               const std::vector<StoredVector>& candidates, float* distances, label_t* labels) {
  std::vector<float> q(dim);
  TopK top(k);
  for (size_t i = 0; i < n; ++i) {
    q.assign(queries + i * dim, queries + (i + 1) * dim);
    if (metric == Metric::kCosine) simd::Normalize(q.data(), dim);
    for (const StoredVector& c : candidates) top.Push(MetricDistance(metric, q.data(), c.vector, dim), c.label);
    top.Extract(distances + i * k, labels + i * k);
  }
}

}  // namespace fathom
