// KdTreeIndex: exact k-NN for low-dimensional data (3-D point clouds, 2-32-D geo and sensor
// features) with a k-d tree (Bentley 1975; Friedman, Bentley & Finkel 1977).
//
// Build: split the widest dimension of each cell at its median until a cell holds at most
// `leaf` points (factory "KDTree" = 16, "KDTree<leaf>"); points are copied into leaf order, so
// a leaf is one contiguous block. Search: depth first, nearer child first; a cell is visited
// only while its distance to the query (kept incrementally per dimension, Arya & Mount 1993)
// is below the current k-th distance, so results are exact.
//
// Updates: new points go to a small buffer that searches scan exhaustively; removed points are
// marked dead. When the buffer exceeds 1/32 of the tree (at least 2,048 points) or dead points
// exceed 1/4, the tree is rebuilt (amortised O(log n) per update). Metrics: l2, and cosine (on
// unit vectors cosine order is L2 order); inner product has no metric tree and is refused.
// Concurrency: a reader/writer lock.
#pragma once

#include <shared_mutex>
#include <vector>

#include <absl/container/flat_hash_map.h>

#include "fathom/index.h"

namespace fathom {

class KdTreeIndex final : public Index {
 public:
  static constexpr int kDefaultLeaf = 16;
  KdTreeIndex(size_t dim, Metric metric, int leaf);

  size_t size() const override;
  std::string factory_string() const override;
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

  Status SerializeBody(ByteSink& out, const SaveOptions& options) const override;
  Status DeserializeBody(ByteSource& in, uint64_t count, uint32_t version, bool fuzzy) override;

  // Rebuilds the tree from every live point (tree and buffer).
  void Rebuild();
  uint32_t BuildNode(uint32_t begin, uint32_t end, std::vector<float>& lo, std::vector<float>& hi);
  void MaybeRebuild();
  void RemoveLocked(label_t label);

  int leaf_;
  mutable std::shared_mutex mutex_;
  // Points in tree order: rows [0, tree_size_) belong to the tree, the rest are the buffer.
  std::vector<float> points_;
  std::vector<label_t> labels_;
  std::vector<uint8_t> dead_;
  size_t tree_size_ = 0;
  size_t dead_count_ = 0;
  std::vector<Node> nodes_;
  std::vector<float> root_lo_, root_hi_;  // bounding box of the tree's points
  absl::flat_hash_map<label_t, uint32_t> row_of_;
  label_t next_label_ = 0;
};

}  // namespace fathom
