#include "index/topk.h"

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

}  // namespace fathom
