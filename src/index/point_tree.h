// PointTreeIndex: what the space-partitioning trees (KDTree, BallTree) share — points kept in
// tree order, labels, updates through a buffer and rebuilds, save/load of the points (the tree
// is rebuilt at load), exact search among candidates. A subclass builds its tree over rows
// [0, tree_size()) and searches it; the buffer of rows added since the last build is scanned by
// this class.
//
// Updates: new points go to a buffer that searches scan exhaustively; removed points are marked
// dead. When the buffer exceeds 1/32 of the tree (at least 2,048 points) or dead points exceed
// 1/4, the tree is rebuilt (amortised O(log n) per update). Metrics: l2, and cosine (on unit
// vectors cosine order is L2 order; distances are reported as 1 - cos = |a - b|^2 / 2); inner
// product has no metric tree and is refused by MakeIndex. Concurrency: a reader/writer lock.
#pragma once

#include <shared_mutex>
#include <vector>

#include <absl/container/flat_hash_map.h>

#include "fathom/index.h"
#include "index/topk.h"
#include "simd/distance.h"

namespace fathom {

class PointTreeIndex : public Index {
 public:
  size_t size() const override;
  size_t memory_bytes() const override;
  Status Add(size_t n, const float* x, const label_t* labels, const AddOptions& options = {}) override;
  using Index::Add;
  Status Remove(size_t n, const label_t* labels, size_t* removed = nullptr) override;
  bool Contains(label_t label) const override;
  Status Reconstruct(label_t label, float* out) const override;
  Status Search(size_t n, const float* queries, size_t k, float* distances, label_t* labels,
                const SearchParams& params = {}) const override;
  Status SearchAmong(size_t n, const float* queries, size_t k, const label_t* candidates,
                     size_t num_candidates, float* distances, label_t* labels) const override;

 protected:
  PointTreeIndex(size_t dim, Metric metric, int leaf) : Index(dim, metric), leaf_(leaf) {}

  // Builds the tree over rows [0, tree_size()), reordering them (with Permute) as it likes.
  virtual void BuildTree() = 0;
  // Adds the tree's candidates for q (unit length for cosine) to `top`: exact unless
  // params.checks bounds the points examined.
  virtual void SearchTree(const float* q, const SearchParams& params, TopK& top) const = 0;
  virtual size_t tree_bytes() const = 0;
  // A name for error messages ("KDTree").
  virtual const char* kind() const = 0;

  // Puts rows begin + order[i] at begin + i (points and labels), for i < order.size().
  void Permute(uint32_t begin, const std::vector<uint32_t>& order);
  size_t tree_size() const { return tree_size_; }
  const float* point(size_t row) const { return points_.data() + row * dim(); }
  float* mutable_point(size_t row) { return points_.data() + row * dim(); }

  // Pushes row's squared L2 distance to q into top, unless the row is dead or filtered out.
  // D > 0 fixes the dimension at compile time.
  template <int D>
  void Consider(size_t row, const float* q, const LabelFilter* filter, TopK& top) const {
    if (dead_[row]) return;
    const label_t label = labels_[row];
    if (filter && !filter->Allowed(label)) return;
    const float* p = point(row);
    if constexpr (D == 0) {
      if (dim() > 32) {  // beyond the low dimensions the trees are built for: the SIMD kernel
        top.Push(simd::Active().l2_sqr(q, p, dim()), label);
        return;
      }
    }
    const size_t d = D > 0 ? size_t(D) : dim();
    float sum = 0;
    for (size_t j = 0; j < d; ++j) {
      const float t = q[j] - p[j];
      sum += t * t;
    }
    top.Push(sum, label);
  }

  const int leaf_;

 private:
  Status SerializeBody(ByteSink& out, const SaveOptions& options) const override;
  Status DeserializeBody(ByteSource& in, uint64_t count, uint32_t version, bool fuzzy) override;
  void Rebuild();
  void MaybeRebuild();
  void RemoveLocked(label_t label);

  mutable std::shared_mutex mutex_;
  // Points in tree order: rows [0, tree_size_) belong to the tree, the rest are the buffer.
  std::vector<float> points_;
  std::vector<label_t> labels_;
  std::vector<uint8_t> dead_;
  size_t tree_size_ = 0;
  size_t dead_count_ = 0;
  absl::flat_hash_map<label_t, uint32_t> row_of_;
  label_t next_label_ = 0;
};

}  // namespace fathom
