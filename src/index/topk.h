// Bounded top-k selection and the sorted candidate pool used by graph search.
// Both are single-threaded scratch structures: one per query, reused across queries.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "fathom/index.h"
#include "simd/distance.h"

namespace fathom {

// Keeps the k smallest (distance, label) pairs seen; O(log k) per accepted push.
class TopK {
 public:
  explicit TopK(size_t k) : k_(k) { heap_.reserve(k); }

  void Reset(size_t k) {
    k_ = k;
    heap_.clear();
  }
  // The distance a new item must beat to enter (infinity until k items are held).
  float threshold() const {
    return heap_.size() < k_ ? std::numeric_limits<float>::infinity() : heap_.front().first;
  }
  void Push(float distance, label_t label) {
    if (heap_.size() < k_) {
      heap_.emplace_back(distance, label);
      std::push_heap(heap_.begin(), heap_.end());
    } else if (k_ > 0 && distance < heap_.front().first) {
      std::pop_heap(heap_.begin(), heap_.end());
      heap_.back() = {distance, label};
      std::push_heap(heap_.begin(), heap_.end());
    }
  }
  size_t size() const { return heap_.size(); }
  // Writes the items closest first, padding to k with (+inf, kNoLabel). Empties the heap.
  void Extract(float* distances, label_t* labels);

 private:
  size_t k_;
  std::vector<std::pair<float, label_t>> heap_;
};

// Exact top-k of n queries (row-major, as given: normalised here for cosine) against stored
// vectors (normalised already for cosine), with the index distance conventions. The shared core
// of every index's SearchAmong.
struct StoredVector {
  label_t label;
  const float* vector;
};
// The index distance of stored vector v to query q (both normalised already for cosine).
inline float MetricDistance(Metric metric, const float* q, const float* v, size_t dim) {
  const auto& k = simd::Active();
  if (metric == Metric::kL1) return k.l1(q, v, dim);
  return metric == Metric::kL2 ? k.l2_sqr(q, v, dim) : (metric == Metric::kCosine ? 1.0f : 0.0f) - k.dot(q, v, dim);
}
void ExactTopK(Metric metric, size_t dim, size_t n, const float* queries, size_t k,
               const std::vector<StoredVector>& candidates, float* distances, label_t* labels);

// A fixed-capacity array of candidates sorted by distance, with a cursor at the closest one not
// yet expanded: the "linear pool" that replaces hnswlib's two heaps (fewer branches, no
// allocation, cache-friendly for the ef values used in practice).
class CandidatePool {
 public:
  struct Entry {
    float distance;
    uint32_t node;  // high bit marks "expanded"
  };
  static constexpr uint32_t kExpanded = 0x80000000u;

  void Reset(size_t capacity) {
    capacity_ = capacity;
    if (entries_.size() < capacity + 1) entries_.resize(capacity + 1);
    size_ = 0;
    cursor_ = 0;
  }
  // Inserts unless the pool is full and `distance` is no better than the worst entry.
  bool Insert(float distance, uint32_t node) {
    if (size_ == capacity_ && !(distance < entries_[size_ - 1].distance)) return false;
    size_t lo = 0, hi = size_;
    while (lo < hi) {
      size_t mid = (lo + hi) / 2;
      if (entries_[mid].distance <= distance) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    std::memmove(&entries_[lo + 1], &entries_[lo], (size_ - lo) * sizeof(Entry));
    entries_[lo] = {distance, node};
    if (size_ < capacity_) ++size_;
    if (lo < cursor_) cursor_ = lo;
    return true;
  }
  bool HasNext() const { return cursor_ < size_; }
  // The distance of the node Next() would return (HasNext() must hold).
  float NextDistance() const { return entries_[cursor_].distance; }
  // The closest unexpanded node; marks it expanded.
  uint32_t Next() {
    uint32_t node = entries_[cursor_].node;
    entries_[cursor_].node |= kExpanded;
    while (cursor_ < size_ && (entries_[cursor_].node & kExpanded) != 0) ++cursor_;
    return node;
  }
  size_t size() const { return size_; }
  float worst() const {
    return size_ < capacity_ ? std::numeric_limits<float>::infinity()
                             : entries_[size_ - 1].distance;
  }
  uint32_t node(size_t i) const { return entries_[i].node & ~kExpanded; }
  float distance(size_t i) const { return entries_[i].distance; }

 private:
  std::vector<Entry> entries_;
  size_t size_ = 0;
  size_t capacity_ = 0;
  size_t cursor_ = 0;
};

}  // namespace fathom
