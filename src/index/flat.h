// FlatIndex: exact k-NN by scanning every stored vector.
//
// Batches of queries (>= 8) use BLAS sgemm (OpenBLAS) block by block with a fused top-k, single
// queries use the SIMD kernels. Rows are kept dense: removing a label moves the last row into
// its place. Concurrency: a reader/writer lock; searches run in parallel, Add/Remove exclusive.
#pragma once

#include <shared_mutex>
#include <unordered_map>
#include <vector>

#include "fathom/index.h"

namespace fathom {

class FlatIndex final : public Index {
 public:
  FlatIndex(size_t dim, Metric metric) : Index(dim, metric) {}

  size_t size() const override;
  std::string factory_string() const override { return "Flat"; }
  size_t memory_bytes() const override;
  Status Add(size_t n, const float* x, const label_t* labels,
             const AddOptions& options = {}) override;
  using Index::Add;
  Status Remove(size_t n, const label_t* labels, size_t* removed = nullptr) override;
  bool Contains(label_t label) const override;
  Status Reconstruct(label_t label, float* out) const override;
  Status Search(size_t n, const float* queries, size_t k, float* distances, label_t* labels,
                const SearchParams& params = {}) const override;
  Status SearchAmong(size_t n, const float* queries, size_t k, const label_t* candidates,
                     size_t num_candidates, float* distances, label_t* labels) const override;

 private:
  Status SerializeBody(ByteSink& out, const SaveOptions& options) const override;
  Status DeserializeBody(ByteSource& in, uint64_t count, uint32_t version, bool fuzzy) override;
  void SearchOne(const float* query, size_t k, float* distances, label_t* labels,
                 const LabelFilter* filter) const;
  void SearchBlas(size_t n, const float* queries, size_t k, float* distances, label_t* labels,
                  const LabelFilter* filter) const;

  mutable std::shared_mutex mutex_;
  std::vector<float> data_;      // rows * dim, normalised for cosine
  std::vector<float> norms_;     // squared norm per row (L2 via GEMM)
  std::vector<label_t> labels_;  // label per row
  std::unordered_map<label_t, uint32_t> row_of_;
  label_t next_label_ = 0;
};

// Shared by indexes: checks labels (>= 0, none twice in the batch) and assigns them when null.
Status PrepareLabels(size_t n, const label_t* labels, label_t* next_label,
                     std::vector<label_t>* out);

}  // namespace fathom
