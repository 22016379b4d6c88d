#include "index/flat.h"

#include <cblas.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <unordered_set>

#include "index/topk.h"
#include "simd/distance.h"
#include "util/file.h"

namespace fathom {
namespace {

constexpr size_t kQueryBlock = 128;
constexpr size_t kBaseBlock = 4096;
constexpr size_t kMinBlasQueries = 8;

// Turns a raw inner product (and squared norms, for L2) into a smaller-is-closer distance.
inline float ToDistance(Metric metric, float dot, float query_norm, float base_norm) {
  switch (metric) {
    case Metric::kL2: return std::max(0.0f, query_norm + base_norm - 2 * dot);
    case Metric::kInnerProduct: return -dot;
    case Metric::kCosine: return 1 - dot;
    case Metric::kL1: break;  // (no inner-product form: SearchOne computes it directly)
  }
  return 0;
}

}  // namespace

Status PrepareLabels(size_t n, const label_t* labels, label_t* next_label,
                     std::vector<label_t>* out) {
  out->resize(n);
  if (labels == nullptr) {
    for (size_t i = 0; i < n; ++i) (*out)[i] = (*next_label)++;
    return Status::OK();
  }
  std::unordered_set<label_t> seen;
  seen.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    if (labels[i] < 0) {
      return Status::InvalidArgument("label " + std::to_string(labels[i]) + " at position " +
                                     std::to_string(i) + " is negative: labels must be >= 0");
    }
    if (!seen.insert(labels[i]).second) {
      return Status::InvalidArgument("label " + std::to_string(labels[i]) +
                                     " appears more than once in the batch (again at position " +
                                     std::to_string(i) + ")");
    }
    (*out)[i] = labels[i];
  }
  for (size_t i = 0; i < n; ++i) *next_label = std::max(*next_label, labels[i] + 1);
  return Status::OK();
}

size_t FlatIndex::size() const {
  std::shared_lock lock(mutex_);
  return labels_.size();
}

size_t FlatIndex::memory_bytes() const {
  std::shared_lock lock(mutex_);
  return data_.capacity() * sizeof(float) + norms_.capacity() * sizeof(float) +
         labels_.capacity() * sizeof(label_t) +
         row_of_.size() * (sizeof(label_t) + sizeof(uint32_t) + 2 * sizeof(void*));
}

Status FlatIndex::Add(size_t n, const float* x, const label_t* labels, const AddOptions&) {
  FATHOM_RETURN_IF_ERROR(ValidateVectors(n, x));
  std::unique_lock lock(mutex_);
  std::vector<label_t> assigned;
  label_t next = next_label_;
  FATHOM_RETURN_IF_ERROR(PrepareLabels(n, labels, &next, &assigned));
  next_label_ = next;
  const size_t d = dim();
  const auto& k = simd::Active();
  for (size_t i = 0; i < n; ++i) {
    uint32_t row;
    if (auto it = row_of_.find(assigned[i]); it != row_of_.end()) {
      row = it->second;
    } else {
      row = static_cast<uint32_t>(labels_.size());
      labels_.push_back(assigned[i]);
      data_.resize(data_.size() + d);
      norms_.push_back(0);
      row_of_.emplace(assigned[i], row);
    }
    float* dst = data_.data() + size_t{row} * d;
    std::memcpy(dst, x + i * d, d * sizeof(float));
    if (metric() == Metric::kCosine) simd::Normalize(dst, d);
    norms_[row] = k.dot(dst, dst, d);
  }
  return Status::OK();
}

Status FlatIndex::Remove(size_t n, const label_t* labels, size_t* removed) {
  std::unique_lock lock(mutex_);
  const size_t d = dim();
  size_t count = 0;
  for (size_t i = 0; i < n; ++i) {
    auto it = row_of_.find(labels[i]);
    if (it == row_of_.end()) continue;
    uint32_t row = it->second;
    uint32_t last = static_cast<uint32_t>(labels_.size() - 1);
    if (row != last) {
      std::memcpy(data_.data() + size_t{row} * d, data_.data() + size_t{last} * d,
                  d * sizeof(float));
      norms_[row] = norms_[last];
      labels_[row] = labels_[last];
      row_of_[labels_[row]] = row;
    }
    row_of_.erase(labels[i]);
    labels_.pop_back();
    norms_.pop_back();
    data_.resize(data_.size() - d);
    ++count;
  }
  if (removed != nullptr) *removed = count;
  return Status::OK();
}

bool FlatIndex::Contains(label_t label) const {
  std::shared_lock lock(mutex_);
  return row_of_.count(label) != 0;
}

Status FlatIndex::Reconstruct(label_t label, float* out) const {
  std::shared_lock lock(mutex_);
  auto it = row_of_.find(label);
  if (it == row_of_.end()) return Status::NotFound("label " + std::to_string(label) + " is not in the index");
  std::memcpy(out, data_.data() + size_t{it->second} * dim(), dim() * sizeof(float));
  return Status::OK();
}

Status FlatIndex::Search(size_t n, const float* queries, size_t k, float* distances,
                         label_t* labels, const SearchParams& params) const {
  if (k == 0) return Status::InvalidArgument("k must be at least 1");
  FATHOM_RETURN_IF_ERROR(ValidateVectors(n, queries));
  std::vector<float> normalized;
  if (metric() == Metric::kCosine) {
    normalized.assign(queries, queries + n * dim());
    for (size_t i = 0; i < n; ++i) simd::Normalize(normalized.data() + i * dim(), dim());
    queries = normalized.data();
  }
  std::shared_lock lock(mutex_);
  if (n >= kMinBlasQueries && metric() != Metric::kL1) {
    SearchBlas(n, queries, k, distances, labels, params.filter);
  } else {
    for (size_t i = 0; i < n; ++i) {
      SearchOne(queries + i * dim(), k, distances + i * k, labels + i * k, params.filter);
    }
  }
  return Status::OK();
}

Status FlatIndex::SearchAmong(size_t n, const float* queries, size_t k, const label_t* candidates,
                              size_t num_candidates, float* distances, label_t* labels) const {
  if (k == 0) return Status::InvalidArgument("k must be at least 1");
  FATHOM_RETURN_IF_ERROR(ValidateVectors(n, queries));
  std::shared_lock lock(mutex_);
  std::vector<StoredVector> stored;
  stored.reserve(num_candidates);
  for (size_t i = 0; i < num_candidates; ++i) {
    if (auto it = row_of_.find(candidates[i]); it != row_of_.end()) {
      stored.push_back({candidates[i], data_.data() + size_t{it->second} * dim()});
    }
  }
  ExactTopK(metric(), dim(), n, queries, k, stored, distances, labels);
  return Status::OK();
}

void FlatIndex::SearchOne(const float* query, size_t k, float* distances, label_t* labels,
                          const LabelFilter* filter) const {
  const auto& kernels = simd::Active();
  const size_t d = dim();
  TopK top(k);
  for (size_t row = 0; row < labels_.size(); ++row) {
    if (filter != nullptr && !filter->Allowed(labels_[row])) continue;
    const float* v = data_.data() + row * d;
    float dist = metric() == Metric::kL2   ? kernels.l2_sqr(query, v, d)
                 : metric() == Metric::kL1 ? kernels.l1(query, v, d)
                                           : ToDistance(metric(), kernels.dot(query, v, d), 0, 0);
    if (dist < top.threshold()) top.Push(dist, labels_[row]);
  }
  top.Extract(distances, labels);
}

void FlatIndex::SearchBlas(size_t n, const float* queries, size_t k, float* distances,
                           label_t* labels, const LabelFilter* filter) const {
  const size_t d = dim();
  const size_t rows = labels_.size();
  const auto& kernels = simd::Active();
  std::vector<float> products(kQueryBlock * kBaseBlock);
  std::vector<TopK> tops;
  for (size_t q0 = 0; q0 < n; q0 += kQueryBlock) {
    const size_t nq = std::min(kQueryBlock, n - q0);
    tops.assign(nq, TopK(k));
    std::vector<float> qnorms(nq);
    for (size_t i = 0; i < nq; ++i) {
      const float* q = queries + (q0 + i) * d;
      qnorms[i] = kernels.dot(q, q, d);
    }
    for (size_t b0 = 0; b0 < rows; b0 += kBaseBlock) {
      const size_t nb = std::min(kBaseBlock, rows - b0);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(nq),
                  static_cast<int>(nb), static_cast<int>(d), 1.0f, queries + q0 * d,
                  static_cast<int>(d), data_.data() + b0 * d, static_cast<int>(d), 0.0f,
                  products.data(), static_cast<int>(nb));
      for (size_t i = 0; i < nq; ++i) {
        const float* prod = products.data() + i * nb;
        TopK& top = tops[i];
        for (size_t j = 0; j < nb; ++j) {
          float dist = ToDistance(metric(), prod[j], qnorms[i], norms_[b0 + j]);
          if (dist < top.threshold() &&
              (filter == nullptr || filter->Allowed(labels_[b0 + j]))) {
            top.Push(dist, labels_[b0 + j]);
          }
        }
      }
    }
    for (size_t i = 0; i < nq; ++i) tops[i].Extract(distances + (q0 + i) * k, labels + (q0 + i) * k);
  }
}

Status FlatIndex::SerializeBody(ByteSink& out, const SaveOptions&) const {
  // Writers wait for the whole save (the shared lock), searches go on.
  std::shared_lock lock(mutex_);
  FATHOM_RETURN_IF_ERROR(out.Write(labels_.data(), labels_.size() * sizeof(label_t)));
  return out.Write(data_.data(), data_.size() * sizeof(float));
}

Status FlatIndex::DeserializeBody(ByteSource& reader, uint64_t count, uint32_t, bool) {
  std::unique_lock lock(mutex_);
  if (reader.remaining() < count * (sizeof(label_t) + dim() * sizeof(float))) {
    return Status::Corruption("Flat index body is truncated: " + std::to_string(count) +
                              " vectors need more than the " + std::to_string(reader.remaining()) +
                              " bytes left");
  }
  labels_.resize(count);
  data_.resize(count * dim());
  FATHOM_RETURN_IF_ERROR(reader.ReadBytes(labels_.data(), count * sizeof(label_t)));
  FATHOM_RETURN_IF_ERROR(reader.ReadBytes(data_.data(), data_.size() * sizeof(float)));
  if (reader.remaining() != 0) {
    return Status::Corruption("Flat index body has " + std::to_string(reader.remaining()) +
                              " unexpected trailing bytes");
  }
  const auto& kernels = simd::Active();
  norms_.resize(count);
  row_of_.clear();
  next_label_ = 0;
  for (size_t row = 0; row < count; ++row) {
    if (labels_[row] < 0 || !row_of_.emplace(labels_[row], static_cast<uint32_t>(row)).second) {
      return Status::Corruption("Flat index body has an invalid or repeated label " +
                                std::to_string(labels_[row]));
    }
    next_label_ = std::max(next_label_, labels_[row] + 1);
    const float* v = data_.data() + row * dim();
    norms_[row] = kernels.dot(v, v, dim());
  }
  return Status::OK();
}

}  // namespace fathom
