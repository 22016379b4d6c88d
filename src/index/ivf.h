// IvfIndex: an inverted file (Sivic & Zisserman 2003; Jegou et al. 2011) — vectors are
// partitioned by their nearest k-means centroid into nlist lists, and a query scans only the
// lists of its nprobe nearest centroids.
//
// Lists hold float32 vectors (",Flat"), IEEE half-precision vectors (",FP16": half the bytes,
// distances the half-precision ones, no float copy unless a VectorStore is attached, which
// then re-ranks the best `rerank` (default 2k) exactly), per-dimension 8-bit or 4-bit codes
// (",SQ8", ",SQ4": trained ranges),
// m-byte product-quantizer codes of the residual to the list's centroid (",PQ<m>") or 1-bit
// RaBitQ codes of that residual (",RBQ", l2 and cosine; index/rabitq.h). With codes, the float
// vectors are kept too (in RAM, or in an attached VectorStore on disk) and the best `rerank`
// candidates (SearchParams::rerank; 0 = 2k for SQ8, 4k for SQ4 and PQ, 10k for RBQ) are re-ranked with
// exact float32 distances, so returned distances are exact. RBQ with the floats in RAM and no
// `rerank` re-ranks by the codes' error bound instead: a code is re-ranked unless its estimate
// less the bound already exceeds the k-th exact distance found (as the RaBitQ paper's IVF does). The coarse quantizer is a scan of the
// centroids, or an HNSW graph over them ("IVF65536_HNSW32,...") for large nlist.
//
// Training: Train(x) runs k-means (and trains the codes) on a sample; an index that was never
// trained keeps its first vectors as floats, searches them exactly, and trains itself once it
// holds 39 per list (so a database collection needs no separate training step).
//
// Removal is O(1): the last entry of the list moves into the hole. Concurrency: a reader/writer
// lock; searches run in parallel, Add and Remove are exclusive while they insert (encoding
// happens before the lock is taken).
#pragma once

#include <memory>
#include <shared_mutex>
#include <vector>

#include <absl/container/flat_hash_map.h>

#include "fathom/index.h"
#include "index/factory.h"
#include "index/quantizer.h"
#include "index/rabitq.h"
#include "index/topk.h"

namespace fathom {

class HnswIndex;

class IvfIndex final : public Index {
 public:
  IvfIndex(size_t dim, Metric metric, const IndexSpec& spec);
  ~IvfIndex() override;

  size_t size() const override;
  std::string factory_string() const override { return ToFactoryString(spec_); }
  size_t memory_bytes() const override;
  Status Train(size_t n, const float* x) override;
  Status CheckValues(size_t n, const float* x) const override;
  bool is_trained() const override;
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
  // Codes only (",Flat" lists are the float vectors).
  Status SetVectorStore(std::shared_ptr<VectorStore> store) override;
  Status CanUseVectorStore() const override;
  uint64_t disk_bytes() const override;

  // Points a list must hold on average before an untrained index trains itself.
  static constexpr size_t kTrainPointsPerList = 39;

 private:
  struct List {
    std::vector<label_t> labels;
    // code_size_ bytes per entry (SQ8, PQ); PQ x4fs: blocks of 32 entries, m * 16 bytes each
    // (simd::Kernels::pq4_block_sums's layout), the last block partly used.
    std::vector<uint8_t> codes;
    std::vector<float> terms;     // SQ8: |decoded|^2 per entry
    std::vector<float> floats;    // dim floats per entry (Flat; codes kept in RAM)
  };
  struct Encoded;  // a batch's lists, codes and terms, computed before the write lock

  Status SerializeBody(ByteSink& out, const SaveOptions& options) const override;
  Status DeserializeBody(ByteSource& in, uint64_t count, uint32_t version, bool fuzzy) override;

  bool fast_scan() const { return spec_.code == IndexSpec::Code::kPq4fs; }
  bool scalar_codes() const { return spec_.code == IndexSpec::Code::kSq8 || spec_.code == IndexSpec::Code::kSq4; }
  bool product_codes() const { return spec_.code == IndexSpec::Code::kPq || fast_scan(); }
  // Bytes of a list's codes for n entries.
  size_t codes_bytes(size_t n) const { return fast_scan() ? (n + 31) / 32 * 16 * pq_.m() : n * code_size_; }
  // One entry's m-byte code in a fast-scan list, read and written by position.
  void GetCode4(const List& l, size_t pos, uint8_t* code) const;
  void SetCode4(List& l, size_t pos, const uint8_t* code) const;
  // Whether the float vectors live in the lists: Flat lists are them; codes keep a copy for
  // re-ranking there unless it lives in a store; FP16 lists keep none (half precision only).
  bool floats_in_lists() const {
    return spec_.code == IndexSpec::Code::kFlat || (!store_ && spec_.code != IndexSpec::Code::kFp16);
  }
  bool half_only() const { return spec_.code == IndexSpec::Code::kFp16 && !store_; }
  size_t train_threshold() const;
  Status TrainLocked(size_t n, const float* x);
  void BuildCoarse();
  void Assign(size_t n, const float* x, uint32_t* lists, int threads) const;
  Status Encode(size_t n, const float* x, const uint32_t* lists, int threads, Encoded* out) const;
  void Insert(label_t label, uint32_t list, const uint8_t* code, float term, const float* vec);
  void RemoveLocked(label_t label);
  void Probe(const float* q, size_t nprobe, std::vector<std::pair<float, uint32_t>>* out) const;
  // Product codes: the per-query table (inner product: the negated dot table; l2 and cosine with
  // precomputed terms: -2 x the dot table; else empty), and one list's distance table.
  std::vector<float> QueryTable(const float* q) const;
  // pq_terms_ for every list (l2 and cosine product codes, when they fit kMaxPrecomputedBytes).
  void PrecomputeTerms();
  const float* ListTable(const float* q, uint32_t list, const std::vector<float>& query_table, std::vector<float>& scratch,
                         std::vector<float>& residual, float* base) const;
  Status SearchOne(const float* q, size_t k, const SearchParams& params, float* distances,
                   label_t* labels) const;
  // The float vectors of the labels present (others skipped): pointers into the lists or the
  // pending set, or into `fetched` for those one batched read takes from the store.
  Status GatherFloats(size_t n, const label_t* labels, std::vector<StoredVector>* stored,
                      std::vector<float>* fetched) const;
  // The float vector of an entry: from its list, the pending set or the store (into buf).
  Status FloatsOf(label_t label, uint64_t where, float* buf, const float** out) const;

  IndexSpec spec_;
  size_t code_size_ = 0;
  mutable std::shared_mutex mutex_;
  bool trained_ = false;
  std::vector<float> centroids_;       // nlist * dim
  std::vector<float> centroid_norms_;  // |c|^2
  std::unique_ptr<HnswIndex> coarse_;  // over the centroids, when coarse_hnsw_m > 0
  ScalarQuantizer sq_;  // SQ8, SQ4
  ProductQuantizer pq_;
  OpqRotation opq_;  // "OPQ<m>,...": PQ codes of R(x - c), tables of R q - R c
  // Product codes, l2 and cosine: per list, ProductQuantizer::CrossTerms of its centroid (as the
  // codes see it), so a probed list's table is these plus the query's -2 <q, y> table (m x ksub
  // additions) instead of a residual table (m x ksub x d/m multiply-adds); empty when larger
  // than kMaxPrecomputedBytes (then tables are made per list).
  std::vector<float> pq_terms_;
  static constexpr size_t kMaxPrecomputedBytes = size_t{256} << 20;
  std::vector<float> opq_centroids_;  // nlist * dim: R c per list
  // RBQ: codes of the residual to the list's centroid (one quantizer centre, the mean residual
  // m), and per list R(centroid + m), so a query is rotated once per search: R(q - c - m) =
  // R q - R(c + m).
  RaBitQuantizer rbq_;
  std::vector<float> rbq_centres_;  // nlist * rbq_.padded_dim()
  void RotateCentroids();
  std::vector<List> lists_;
  // label -> (list << 32 | position); list kPendingList = not trained yet (pending_ arrays).
  absl::flat_hash_map<label_t, uint64_t> where_;
  std::vector<label_t> pending_labels_;
  std::vector<float> pending_;
  label_t next_label_ = 0;
  std::shared_ptr<VectorStore> store_;
};

}  // namespace fathom
