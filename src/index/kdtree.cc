#include "index/kdtree.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <numeric>

#include "index/flat.h"
#include "index/topk.h"
#include "simd/distance.h"
#include "util/file.h"

namespace fathom {
namespace {

constexpr size_t kMinBufferRebuild = 2048;

template <int D>
inline float L2(const float* a, const float* b, size_t dim) {
  const size_t d = D > 0 ? size_t(D) : dim;
  float sum = 0;
  for (size_t j = 0; j < d; ++j) {
    const float t = a[j] - b[j];
    sum += t * t;
  }
  return sum;
}

}  // namespace

KdTreeIndex::KdTreeIndex(size_t dim, Metric metric, int leaf) : Index(dim, metric), leaf_(leaf) {}

std::string KdTreeIndex::factory_string() const {
  return leaf_ == kDefaultLeaf ? "KDTree" : "KDTree" + std::to_string(leaf_);
}

size_t KdTreeIndex::size() const {
  std::shared_lock lock(mutex_);
  return row_of_.size();
}

size_t KdTreeIndex::memory_bytes() const {
  std::shared_lock lock(mutex_);
  return points_.capacity() * sizeof(float) + labels_.capacity() * sizeof(label_t) + dead_.capacity() +
         nodes_.capacity() * sizeof(Node) + row_of_.capacity() * (sizeof(label_t) + sizeof(uint32_t) + 1);
}

bool KdTreeIndex::Contains(label_t label) const {
  std::shared_lock lock(mutex_);
  return row_of_.contains(label);
}

Status KdTreeIndex::Reconstruct(label_t label, float* out) const {
  std::shared_lock lock(mutex_);
  auto it = row_of_.find(label);
  if (it == row_of_.end()) return Status::NotFound("label " + std::to_string(label) + " is not in the index");
  std::copy(points_.begin() + size_t{it->second} * dim(), points_.begin() + size_t{it->second + 1} * dim(), out);
  return Status::OK();
}

void KdTreeIndex::RemoveLocked(label_t label) {
  auto it = row_of_.find(label);
  if (it == row_of_.end()) return;
  dead_[it->second] = 1;
  ++dead_count_;
  row_of_.erase(it);
}

Status KdTreeIndex::Add(size_t n, const float* x, const label_t* labels, const AddOptions&) {
  FATHOM_RETURN_IF_ERROR(ValidateVectors(n, x));
  const size_t d = dim();
  std::unique_lock lock(mutex_);
  if (labels_.size() + n > std::numeric_limits<uint32_t>::max()) {
    return Status::InvalidArgument("KDTree holds at most 4294967295 rows");
  }
  std::vector<label_t> assigned;
  label_t next = next_label_;
  FATHOM_RETURN_IF_ERROR(PrepareLabels(n, labels, &next, &assigned));
  next_label_ = next;
  points_.reserve(points_.size() + n * d);
  for (size_t i = 0; i < n; ++i) {
    RemoveLocked(assigned[i]);
    const uint32_t row = uint32_t(labels_.size());
    points_.insert(points_.end(), x + i * d, x + (i + 1) * d);
    if (metric() == Metric::kCosine) simd::Normalize(points_.data() + size_t{row} * d, d);
    labels_.push_back(assigned[i]);
    dead_.push_back(0);
    row_of_[assigned[i]] = row;
  }
  MaybeRebuild();
  return Status::OK();
}

Status KdTreeIndex::Remove(size_t n, const label_t* labels, size_t* removed) {
  std::unique_lock lock(mutex_);
  size_t count = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!row_of_.contains(labels[i])) continue;
    RemoveLocked(labels[i]);
    ++count;
  }
  MaybeRebuild();
  if (removed) *removed = count;
  return Status::OK();
}

void KdTreeIndex::MaybeRebuild() {
  const size_t buffer = labels_.size() - tree_size_;
  if (buffer > std::max(kMinBufferRebuild, tree_size_ / 32) || dead_count_ > row_of_.size() / 4 + 64) Rebuild();
}

void KdTreeIndex::Rebuild() {
  const size_t d = dim();
  // Keep live rows only.
  std::vector<uint32_t> rows;
  rows.reserve(row_of_.size());
  for (uint32_t r = 0; r < labels_.size(); ++r) {
    if (!dead_[r]) rows.push_back(r);
  }
  const uint32_t n = uint32_t(rows.size());
  std::vector<float> points(size_t{n} * d);
  std::vector<label_t> labels(n);
  for (uint32_t i = 0; i < n; ++i) {
    std::copy(points_.begin() + size_t{rows[i]} * d, points_.begin() + size_t{rows[i] + 1} * d,
              points.begin() + size_t{i} * d);
    labels[i] = labels_[rows[i]];
  }
  points_ = std::move(points);
  labels_ = std::move(labels);
  dead_.assign(n, 0);
  dead_count_ = 0;
  tree_size_ = n;
  nodes_.clear();
  root_lo_.assign(d, 0.0f);
  root_hi_.assign(d, 0.0f);
  if (n > 0) {
    for (size_t j = 0; j < d; ++j) {
      root_lo_[j] = root_hi_[j] = points_[j];
    }
    for (uint32_t i = 0; i < n; ++i) {
      for (size_t j = 0; j < d; ++j) {
        root_lo_[j] = std::min(root_lo_[j], points_[size_t{i} * d + j]);
        root_hi_[j] = std::max(root_hi_[j], points_[size_t{i} * d + j]);
      }
    }
    nodes_.reserve(2 * (n / uint32_t(leaf_) + 1));
    std::vector<float> lo = root_lo_, hi = root_hi_;
    BuildNode(0, n, lo, hi);
  }
  row_of_.clear();
  row_of_.reserve(n);
  for (uint32_t i = 0; i < n; ++i) row_of_[labels_[i]] = i;
}

// Builds the subtree over rows [begin, end) (reordering them in place); lo/hi bound them.
uint32_t KdTreeIndex::BuildNode(uint32_t begin, uint32_t end, std::vector<float>& lo, std::vector<float>& hi) {
  const size_t d = dim();
  const uint32_t id = uint32_t(nodes_.size());
  nodes_.push_back(Node{begin, end, {0, 0}, 0.0f, 0.0f, 0.0f, 0});
  if (end - begin <= uint32_t(leaf_)) return id;
  // The widest dimension of the points' own bounding box (tighter than the cell's).
  std::vector<float> plo(d, std::numeric_limits<float>::infinity()), phi(d, -std::numeric_limits<float>::infinity());
  for (uint32_t i = begin; i < end; ++i) {
    const float* p = points_.data() + size_t{i} * d;
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
  std::iota(order.begin(), order.end(), begin);
  std::nth_element(order.begin(), order.begin() + mid, order.end(), [&](uint32_t a, uint32_t b) {
    return points_[size_t{a} * d + split_dim] < points_[size_t{b} * d + split_dim];
  });
  std::vector<float> moved(size_t{n} * d);
  std::vector<label_t> moved_labels(n);
  for (uint32_t i = 0; i < n; ++i) {
    std::copy(points_.begin() + size_t{order[i]} * d, points_.begin() + size_t{order[i] + 1} * d,
              moved.begin() + size_t{i} * d);
    moved_labels[i] = labels_[order[i]];
  }
  std::copy(moved.begin(), moved.end(), points_.begin() + size_t{begin} * d);
  std::copy(moved_labels.begin(), moved_labels.end(), labels_.begin() + begin);
  const float split = points_[size_t{begin + mid} * d + split_dim];
  nodes_[id].dim = uint16_t(split_dim);
  nodes_[id].split = split;
  float left_max = -std::numeric_limits<float>::infinity(), right_min = std::numeric_limits<float>::infinity();
  for (uint32_t i = begin; i < begin + mid; ++i) left_max = std::max(left_max, points_[size_t{i} * d + split_dim]);
  for (uint32_t i = begin + mid; i < end; ++i) right_min = std::min(right_min, points_[size_t{i} * d + split_dim]);
  nodes_[id].left_max = left_max;
  nodes_[id].right_min = right_min;
  const float saved_hi = hi[split_dim];
  hi[split_dim] = split;
  const uint32_t left = BuildNode(begin, begin + mid, lo, hi);
  hi[split_dim] = saved_hi;
  const float saved_lo = lo[split_dim];
  lo[split_dim] = split;
  const uint32_t right = BuildNode(begin + mid, end, lo, hi);
  lo[split_dim] = saved_lo;
  nodes_[id].child[0] = left;
  nodes_[id].child[1] = right;
  return id;
}

// One query's depth-first search; D > 0 fixes the dimension at compile time.
class KdTreeIndex::Searcher {
 public:
  Searcher(const KdTreeIndex& index, const float* q, size_t k, const LabelFilter* filter)
      : ix_(index), q_(q), top_(k), filter_(filter), off_(index.dim(), 0.0f) {}

  template <int D>
  void Run() {
    const size_t d = ix_.dim();
    if (!ix_.nodes_.empty()) {
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
    for (size_t r = ix_.tree_size_; r < ix_.labels_.size(); ++r) Consider<D>(r);
  }

  TopK& top() { return top_; }

 private:
  template <int D>
  void Consider(size_t row) {
    if (ix_.dead_[row]) return;
    const label_t label = ix_.labels_[row];
    if (filter_ && !filter_->Allowed(label)) return;
    top_.Push(L2<D>(q_, ix_.points_.data() + row * ix_.dim(), ix_.dim()), label);
  }

  template <int D>
  void Visit(uint32_t id, float rd) {
    const Node& node = ix_.nodes_[id];
    if (node.leaf()) {
      for (uint32_t r = node.begin; r < node.end; ++r) Consider<D>(r);
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
  TopK top_;
  const LabelFilter* filter_;
  std::vector<float> off_;
};

Status KdTreeIndex::Search(size_t n, const float* queries, size_t k, float* distances, label_t* labels,
                           const SearchParams& params) const {
  if (k == 0) return Status::InvalidArgument("k must be at least 1");
  FATHOM_RETURN_IF_ERROR(ValidateVectors(n, queries));
  std::shared_lock lock(mutex_);
  const size_t d = dim();
  std::vector<float> q(d);
  for (size_t i = 0; i < n; ++i) {
    std::copy(queries + i * d, queries + (i + 1) * d, q.begin());
    if (metric() == Metric::kCosine) simd::Normalize(q.data(), d);
    Searcher s(*this, q.data(), k, params.filter);
    switch (d) {
      case 2: s.Run<2>(); break;
      case 3: s.Run<3>(); break;
      case 4: s.Run<4>(); break;
      case 8: s.Run<8>(); break;
      case 16: s.Run<16>(); break;
      default: s.Run<0>(); break;
    }
    s.top().Extract(distances + i * k, labels + i * k);
    if (metric() == Metric::kCosine) {
      // Unit vectors: 1 - cos = |a - b|^2 / 2.
      for (size_t j = 0; j < k; ++j) {
        if (labels[i * k + j] != kNoLabel) distances[i * k + j] *= 0.5f;
      }
    }
  }
  return Status::OK();
}

Status KdTreeIndex::SearchAmong(size_t n, const float* queries, size_t k, const label_t* candidates,
                                size_t num_candidates, float* distances, label_t* labels) const {
  if (k == 0) return Status::InvalidArgument("k must be at least 1");
  FATHOM_RETURN_IF_ERROR(ValidateVectors(n, queries));
  std::shared_lock lock(mutex_);
  std::vector<StoredVector> stored;
  for (size_t i = 0; i < num_candidates; ++i) {
    auto it = row_of_.find(candidates[i]);
    if (it != row_of_.end()) stored.push_back({candidates[i], points_.data() + size_t{it->second} * dim()});
  }
  ExactTopK(metric(), dim(), n, queries, k, stored, distances, labels);
  return Status::OK();
}

// Body: live rows in tree order (int64 label, dimension float32 each); the tree is rebuilt
// from them at load.
Status KdTreeIndex::SerializeBody(ByteSink& out, const SaveOptions&) const {
  std::shared_lock lock(mutex_);
  FATHOM_RETURN_IF_ERROR(out.Pod(next_label_));
  for (size_t r = 0; r < labels_.size(); ++r) {
    if (dead_[r]) continue;
    FATHOM_RETURN_IF_ERROR(out.Pod(labels_[r]));
    FATHOM_RETURN_IF_ERROR(out.Write(points_.data() + r * dim(), dim() * sizeof(float)));
  }
  return Status::OK();
}

Status KdTreeIndex::DeserializeBody(ByteSource& in, uint64_t count, uint32_t, bool) {
  std::unique_lock lock(mutex_);
  const size_t d = dim();
  FATHOM_RETURN_IF_ERROR(in.Read(&next_label_));
  const size_t row_bytes = sizeof(label_t) + d * sizeof(float);
  if (count > in.remaining() / row_bytes || count * row_bytes != in.remaining()) {
    return Status::Corruption("KDTree body holds " + std::to_string(in.remaining()) + " bytes, not the " +
                              std::to_string(count) + " rows its header promises");
  }
  points_.resize(count * d);
  labels_.resize(count);
  dead_.assign(count, 0);
  row_of_.clear();
  for (size_t r = 0; r < count; ++r) {
    FATHOM_RETURN_IF_ERROR(in.Read(&labels_[r]));
    FATHOM_RETURN_IF_ERROR(in.ReadBytes(points_.data() + r * d, d * sizeof(float)));
    if (labels_[r] < 0 || !row_of_.emplace(labels_[r], uint32_t(r)).second) {
      return Status::Corruption("KDTree body has an invalid or repeated label " + std::to_string(labels_[r]));
    }
    for (size_t j = 0; j < d; ++j) {
      if (!std::isfinite(points_[r * d + j])) return Status::Corruption("KDTree body holds a non-finite value");
    }
    if (labels_[r] >= next_label_) {
      next_label_ = labels_[r] == std::numeric_limits<label_t>::max() ? labels_[r] : labels_[r] + 1;
    }
  }
  tree_size_ = 0;
  dead_count_ = 0;
  Rebuild();
  return Status::OK();
}

}  // namespace fathom
