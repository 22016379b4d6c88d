#include "index/point_tree.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>

#include "index/flat.h"
#include "simd/distance.h"
#include "util/file.h"

namespace fathom {
namespace {
constexpr size_t kMinBufferRebuild = 2048;
}  // namespace

size_t PointTreeIndex::size() const {
  std::shared_lock lock(mutex_);
  return row_of_.size();
}

size_t PointTreeIndex::memory_bytes() const {
  std::shared_lock lock(mutex_);
  return points_.capacity() * sizeof(float) + labels_.capacity() * sizeof(label_t) + dead_.capacity() +
         row_of_.capacity() * (sizeof(label_t) + sizeof(uint32_t) + 1) + tree_bytes();
}

bool PointTreeIndex::Contains(label_t label) const {
  std::shared_lock lock(mutex_);
  return row_of_.contains(label);
}

Status PointTreeIndex::Reconstruct(label_t label, float* out) const {
  std::shared_lock lock(mutex_);
  auto it = row_of_.find(label);
  if (it == row_of_.end()) return Status::NotFound("label " + std::to_string(label) + " is not in the index");
  std::copy(point(it->second), point(it->second) + dim(), out);
  return Status::OK();
}

void PointTreeIndex::RemoveLocked(label_t label) {
  auto it = row_of_.find(label);
  if (it == row_of_.end()) return;
  dead_[it->second] = 1;
  ++dead_count_;
  row_of_.erase(it);
}

Status PointTreeIndex::Add(size_t n, const float* x, const label_t* labels, const AddOptions&) {
  FATHOM_RETURN_IF_ERROR(ValidateVectors(n, x));
  const size_t d = dim();
  std::unique_lock lock(mutex_);
  if (labels_.size() + n > std::numeric_limits<uint32_t>::max()) {
    return Status::InvalidArgument(std::string(kind()) + " holds at most 4294967295 rows");
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
    if (metric() == Metric::kCosine) simd::Normalize(mutable_point(row), d);
    labels_.push_back(assigned[i]);
    dead_.push_back(0);
    row_of_[assigned[i]] = row;
  }
  MaybeRebuild();
  return Status::OK();
}

Status PointTreeIndex::Remove(size_t n, const label_t* labels, size_t* removed) {
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

void PointTreeIndex::MaybeRebuild() {
  const size_t buffer = labels_.size() - tree_size_;
  if (buffer > std::max(kMinBufferRebuild, tree_size_ / 32) || dead_count_ > row_of_.size() / 4 + 64) Rebuild();
}

void PointTreeIndex::Permute(uint32_t begin, const std::vector<uint32_t>& order) {
  const size_t d = dim(), n = order.size();
  std::vector<float> moved(n * d);
  std::vector<label_t> moved_labels(n);
  for (size_t i = 0; i < n; ++i) {
    std::copy(point(begin + order[i]), point(begin + order[i]) + d, moved.begin() + i * d);
    moved_labels[i] = labels_[begin + order[i]];
  }
  std::copy(moved.begin(), moved.end(), points_.begin() + size_t{begin} * d);
  std::copy(moved_labels.begin(), moved_labels.end(), labels_.begin() + begin);
}

void PointTreeIndex::Rebuild() {
  const size_t d = dim();
  // Keep live rows only, then let the subclass order them and build its tree.
  size_t kept = 0;
  for (size_t r = 0; r < labels_.size(); ++r) {
    if (dead_[r]) continue;
    if (kept != r) {
      std::copy(point(r), point(r) + d, mutable_point(kept));
      labels_[kept] = labels_[r];
    }
    ++kept;
  }
  points_.resize(kept * d);
  points_.shrink_to_fit();
  labels_.resize(kept);
  labels_.shrink_to_fit();
  dead_.assign(kept, 0);
  dead_count_ = 0;
  tree_size_ = kept;
  BuildTree();
  row_of_.clear();
  row_of_.reserve(kept);
  for (uint32_t i = 0; i < kept; ++i) row_of_[labels_[i]] = i;
}

Status PointTreeIndex::Search(size_t n, const float* queries, size_t k, float* distances, label_t* labels,
                              const SearchParams& params) const {
  if (k == 0) return Status::InvalidArgument("k must be at least 1");
  if (params.checks < 0) return Status::InvalidArgument("checks must be >= 0, got " + std::to_string(params.checks));
  FATHOM_RETURN_IF_ERROR(ValidateVectors(n, queries));
  std::shared_lock lock(mutex_);
  const size_t d = dim();
  std::vector<float> q(d);
  TopK top(k);
  for (size_t i = 0; i < n; ++i) {
    std::copy(queries + i * d, queries + (i + 1) * d, q.begin());
    if (metric() == Metric::kCosine) simd::Normalize(q.data(), d);
    top.Reset(k);
    if (tree_size_ > 0) SearchTree(q.data(), params, top);
    for (size_t r = tree_size_; r < labels_.size(); ++r) Consider<0>(r, q.data(), params.filter, top);
    top.Extract(distances + i * k, labels + i * k);
    if (metric() == Metric::kCosine) {
      for (size_t j = 0; j < k; ++j) {
        if (labels[i * k + j] != kNoLabel) distances[i * k + j] *= 0.5f;
      }
    }
  }
  return Status::OK();
}

Status PointTreeIndex::SearchAmong(size_t n, const float* queries, size_t k, const label_t* candidates,
                                   size_t num_candidates, float* distances, label_t* labels) const {
  if (k == 0) return Status::InvalidArgument("k must be at least 1");
  FATHOM_RETURN_IF_ERROR(ValidateVectors(n, queries));
  std::shared_lock lock(mutex_);
  std::vector<StoredVector> stored;
  for (size_t i = 0; i < num_candidates; ++i) {
    auto it = row_of_.find(candidates[i]);
    if (it != row_of_.end()) stored.push_back({candidates[i], point(it->second)});
  }
  ExactTopK(metric(), dim(), n, queries, k, stored, distances, labels);
  return Status::OK();
}

// Body: next label, then live rows in tree order (int64 label, dimension float32 each); the
// tree is rebuilt from them at load.
Status PointTreeIndex::SerializeBody(ByteSink& out, const SaveOptions&) const {
  std::shared_lock lock(mutex_);
  FATHOM_RETURN_IF_ERROR(out.Pod(next_label_));
  for (size_t r = 0; r < labels_.size(); ++r) {
    if (dead_[r]) continue;
    FATHOM_RETURN_IF_ERROR(out.Pod(labels_[r]));
    FATHOM_RETURN_IF_ERROR(out.Write(point(r), dim() * sizeof(float)));
  }
  return Status::OK();
}

Status PointTreeIndex::DeserializeBody(ByteSource& in, uint64_t count, uint32_t, bool) {
  std::unique_lock lock(mutex_);
  const size_t d = dim();
  FATHOM_RETURN_IF_ERROR(in.Read(&next_label_));
  const size_t row_bytes = sizeof(label_t) + d * sizeof(float);
  if (count > in.remaining() / row_bytes || count * row_bytes != in.remaining()) {
    return Status::Corruption(std::string(kind()) + " body holds " + std::to_string(in.remaining()) +
                              " bytes, not the " + std::to_string(count) + " rows its header promises");
  }
  points_.resize(count * d);
  labels_.resize(count);
  dead_.assign(count, 0);
  row_of_.clear();
  for (size_t r = 0; r < count; ++r) {
    FATHOM_RETURN_IF_ERROR(in.Read(&labels_[r]));
    FATHOM_RETURN_IF_ERROR(in.ReadBytes(mutable_point(r), d * sizeof(float)));
    if (labels_[r] < 0 || !row_of_.emplace(labels_[r], uint32_t(r)).second) {
      return Status::Corruption(std::string(kind()) + " body has an invalid or repeated label " +
                                std::to_string(labels_[r]));
    }
    for (size_t j = 0; j < d; ++j) {
      if (!std::isfinite(points_[r * d + j])) return Status::Corruption(std::string(kind()) + " body holds a non-finite value");
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
