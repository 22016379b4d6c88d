#include "index/hnsw.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <thread>
#include <type_traits>

#include <sys/mman.h>

#include <cblas.h>

#include "index/flat.h"
#include "index/quantizer.h"
#include "index/vector_store.h"
#include "index/topk.h"
#include "simd/distance.h"
#include "util/file.h"
#include "util/prefetch.h"

namespace fathom {
namespace {

constexpr uint64_t kNoEntry = ~uint64_t{0};
constexpr size_t kLockStripes = 1 << 14;
constexpr int kMaxLevel = 15;
constexpr uint8_t kLive = 0, kTombstone = 1, kFree = 2;
// Bytes of a neighbour's code prefetched before its distance is computed (the rest streams in).
constexpr size_t kMaxPrefetchBytes = 1024;
// Consolidate once tombstones exceed this fraction of allocated nodes.
constexpr double kTombstoneFraction = 0.10;
constexpr size_t kMinTombstonesForConsolidation = 64;

extern "C" void ssyevr_(const char* jobz, const char* range, const char* uplo, const int* n, float* a, const int* lda,
                        const float* vl, const float* vu, const int* il, const int* iu, const float* abstol, int* m,
                        float* w, float* z, const int* ldz, int* isuppz, float* work, const int* lwork, int* iwork,
                        const int* liwork, int* info);

inline uint32_t LoadLink(const uint32_t* p) {
  return std::atomic_ref<uint32_t>(*const_cast<uint32_t*>(p)).load(std::memory_order_acquire);
}
inline void StoreLink(uint32_t* p, uint32_t v) {
  std::atomic_ref<uint32_t>(*p).store(v, std::memory_order_release);
}

inline uint64_t PackEntry(int level, uint32_t node) {
  return (uint64_t(uint32_t(level)) << 32) | node;
}

inline uint64_t Mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

size_t RoundUp(size_t x, size_t to) { return (x + to - 1) / to * to; }

// The query's code as signed bytes (code - 128) and its squared norm, for the SQ8 walk's
// dot-product distance.
void PrepareSq8Walk(const uint8_t* __restrict code, size_t d, std::vector<int8_t>& qs8,
                    int64_t* norm) {
  qs8.resize(d);
  int8_t* __restrict out = qs8.data();
  int64_t sum = 0;
  for (size_t j = 0; j < d; ++j) {
    out[j] = static_cast<int8_t>(int{code[j]} - 128);
    sum += int32_t{code[j]} * code[j];
  }
  *norm = sum;
}

}  // namespace

struct HnswIndex::Query {
  const float* vec = nullptr;     // normalised for cosine
  const uint8_t* code = nullptr;  // SQ8 code of the query
  const int8_t* qs8 = nullptr;    // SQ8 walk with a norm slot: code - 128 as signed bytes
  const float* pca = nullptr;     // PCA walk: the code's projection, in levels
  const int16_t* pca2 = nullptr;  // and in half levels, rounded (one step for all components)
  int64_t code_norm = 0;          // and |code|^2
  bool code_exact = false;        // SQ8 with a unit step: the code decodes to exactly the query
  float sum = 0;                  // sum of vec (SQ8 inner product)
  const RaBitQuantizer::Query* rbq = nullptr;  // RBQ: the rotated, quantised query
  const ScalarQuantizer::Query* sq = nullptr;  // SQ4: the query scaled per dimension
};

// Per-search working memory, pooled so a query allocates nothing.
struct HnswIndex::Scratch {
  VisitedSet visited;
  CandidatePool pool;
  std::vector<std::pair<float, uint32_t>> heap;     // filtered search: candidates (min-heap)
  std::vector<std::pair<float, uint32_t>> results;  // filtered search: results (max-heap)
  std::vector<std::pair<float, uint32_t>> cands;
  std::vector<uint32_t> selected;
  std::vector<std::pair<int, uint32_t>> backlinks;  // insert: (level, neighbour) to link back from
  std::vector<float> qvec;
  std::vector<uint8_t> qcode;
  std::vector<int8_t> qs8;
  std::vector<float> qpca;
  std::vector<int16_t> qpca2;
  // pca walk projecting in float (a file with a step per component, or p > kMaxIntPcaDims): the
  // code as floats
  std::vector<float> code_floats;
  std::vector<uint32_t> batch;
  std::vector<label_t> rerank_labels;  // on-disk vectors: the candidates to read back
  std::vector<float> rerank_vectors;
  std::vector<float> node_floats;  // FP16: a node's vector, decoded
  std::vector<std::pair<float, uint32_t>> seeds;  // where a level's beam search starts
  RaBitQuantizer::Query rbq;
  ScalarQuantizer::Query sq;
  const std::vector<uint64_t>* allowed_nodes = nullptr;  // filtered search: AllowedNodes, if any
  Status error;  // a failed read of on-disk vectors, reported by Search
  uint64_t distances = 0;   // SearchCounters of the search in progress
  uint64_t expansions = 0;

  void NewEpoch(size_t nodes, size_t dense_max_nodes) { visited.Reset(nodes, dense_max_nodes); }
  bool Visit(uint32_t node) { return visited.Insert(node); }
};

class HnswIndex::ScratchLease {
 public:
  explicit ScratchLease(const HnswIndex& index) : index_(index) {
    std::lock_guard lock(index_.scratch_mutex_);
    if (!index_.scratch_pool_.empty()) {
      scratch_ = std::move(index_.scratch_pool_.back());
      index_.scratch_pool_.pop_back();
    } else {
      scratch_ = std::make_unique<Scratch>();
    }
  }
  ~ScratchLease() {
    std::lock_guard lock(index_.scratch_mutex_);
    index_.scratch_pool_.push_back(std::move(scratch_));
  }
  Scratch& operator*() { return *scratch_; }

 private:
  const HnswIndex& index_;
  std::unique_ptr<Scratch> scratch_;
};

HnswIndex::HnswIndex(size_t dim, Metric metric, const IndexSpec& spec)
    : Index(dim, metric),
      spec_(spec),
      m_(spec.m),
      m0_(2 * spec.m),
      level_mult_(1.0 / std::log(std::max(2, spec.m))),
      links0_bytes_(sizeof(uint32_t) * (1 + 2 * spec.m)),
      code_bytes_(spec.sq8    ? dim
                  : spec.fp16 ? dim * sizeof(uint16_t)
                  : spec.rbq  ? RaBitQuantizer(dim).code_size()
                  : spec.sq4  ? sizeof(float) + ScalarQuantizer(dim, 4).code_size()
                              : dim * sizeof(float)),
      pca_dims_(spec.sq8 && metric != Metric::kInnerProduct && size_t(spec.pca) < dim ? size_t(spec.pca) : 0),
      // The projections' line(s) after the links and code (a file holds the block as it is,
      // less the gap before the code).
      pca_offset_(pca_dims_ != 0 ? RoundUp(links0_bytes_ + code_bytes_, 64) : 0),
      node_bytes_(RoundUp(links0_bytes_ + code_bytes_, 64) + RoundUp(pca_dims_, 64)),
      // The code starts on a cache line where that costs no memory (128-d SQ8: 2 lines a
      // distance instead of 3; 128-d float32: 8 instead of 9).
      code_offset_(RoundUp(links0_bytes_, 64) + code_bytes_ <= RoundUp(links0_bytes_ + code_bytes_, 64)
                       ? RoundUp(links0_bytes_, 64)
                       : links0_bytes_),
      sq8_norm_offset_(spec.sq8 && metric != Metric::kInnerProduct &&
                               RoundUp(code_offset_ + code_bytes_, 4) + 4 <= RoundUp(code_offset_ + code_bytes_, 64)
                           ? RoundUp(code_offset_ + code_bytes_, 4)
                           : 0),
      ip_offset_(metric == Metric::kCosine ? 1.0f : 0.0f),
      rbq_(dim),
      sq4_(dim, 4),
      entry_(kNoEntry),
      link_locks_(new std::mutex[kLockStripes]) {}

HnswIndex::~HnswIndex() = default;

uint32_t* HnswIndex::Links(uint32_t node, int level) const {
  if (level == 0) return reinterpret_cast<uint32_t*>(blocks_.data() + size_t{node} * node_bytes_);
  return upper_[node].get() + size_t(level - 1) * (1 + m_);
}
const uint8_t* HnswIndex::Code(uint32_t node) const {
  return reinterpret_cast<const uint8_t*>(blocks_.data() + size_t{node} * node_bytes_ + code_offset_);
}
float* HnswIndex::Vector(uint32_t node) const {
  if (spec_.fp16) return nullptr;  // (NodeFloats decodes the code)
  if (floats_beside_codes()) return vectors_ ? reinterpret_cast<float*>(vectors_.data()) + size_t{node} * dim() : nullptr;
  return reinterpret_cast<float*>(blocks_.data() + size_t{node} * node_bytes_ + code_offset_);
}
void HnswIndex::PlaceCodeAfterLoad(uint32_t node) {
  if (code_offset_ == links0_bytes_) return;
  char* block = blocks_.data() + size_t{node} * node_bytes_;
  std::memmove(block + code_offset_, block + links0_bytes_, code_bytes_);
  std::memset(block + links0_bytes_, 0, code_offset_ - links0_bytes_);
}
bool HnswIndex::Live(uint32_t node) const {
  return state_[node].load(std::memory_order_acquire) == kLive;
}

// SQ8 with cosine walks the graph on L2 between codes: stored vectors are unit length, so L2
// orders them exactly as cosine does, and L2 stays accurate on codes. The inner product with a
// dequantised vector does not: quantisation changes each vector's length, and when neighbours'
// similarities are close (real embeddings) that error reorders them (recall@10 0.85 instead of
// 0.999 on CNN features of Fashion-MNIST). Plain inner product has no such equivalent and keeps
// the asymmetric float-by-code dot product. Re-ranking is exact in every case.
HnswIndex::DistKind HnswIndex::SearchKind() const {
  // FP16 with cosine walks on L2 too (unit vectors: |q - x|^2 = 2 (1 - cos)): the half-precision
  // error of x enters L2 scaled by |q - x|, small for near neighbours, but enters 1 - q.x in full,
  // which on CNN embeddings (cosine distances ~1e-4 apart) capped recall@10 at 0.95.
  if (spec_.fp16) return metric() == Metric::kInnerProduct ? DistKind::kF16Ip : DistKind::kF16L2;
  if (spec_.sq8) return metric() == Metric::kInnerProduct ? DistKind::kSq8Ip : DistKind::kSq8L2;
  if (spec_.rbq) return DistKind::kRbqL2;  // (l2, or cosine on unit vectors)
  if (spec_.sq4) return metric() == Metric::kInnerProduct ? DistKind::kSq4Ip : DistKind::kSq4L2;
  if (metric() == Metric::kL1) return DistKind::kFloatL1;  // (float32 only: MakeIndex refuses codes)
  return metric() == Metric::kL2 ? DistKind::kFloatL2 : DistKind::kFloatIp;
}
// Construction compares stored nodes with each other, so it needs a symmetric distance: codes
// for SQ8 with L2 or cosine (exact integer arithmetic), float vectors otherwise.
// floats_on_disk(): the insert walk runs on the codes like a search (its candidates are then
// re-ranked and selected with float vectors read from the store).
HnswIndex::DistKind HnswIndex::BuildKind() const {
  if (spec_.fp16 || floats_on_disk()) return SearchKind();  // (FP16: NodeFloats decodes one side)
  if (spec_.sq8 && metric() != Metric::kInnerProduct) return DistKind::kSq8L2;
  if (spec_.rbq) return DistKind::kFloatL2;  // (the float vectors, unit length for cosine)
  if (metric() == Metric::kL1) return DistKind::kFloatL1;
  return metric() == Metric::kL2 ? DistKind::kFloatL2 : DistKind::kFloatIp;
}

template <class F>
void HnswIndex::Dispatch(DistKind kind, F&& f) {
  switch (kind) {
    case DistKind::kFloatL2: f(std::integral_constant<DistKind, DistKind::kFloatL2>()); return;
    case DistKind::kFloatIp: f(std::integral_constant<DistKind, DistKind::kFloatIp>()); return;
    case DistKind::kFloatL1: f(std::integral_constant<DistKind, DistKind::kFloatL1>()); return;
    case DistKind::kSq8L2: f(std::integral_constant<DistKind, DistKind::kSq8L2>()); return;
    case DistKind::kSq8Ip: f(std::integral_constant<DistKind, DistKind::kSq8Ip>()); return;
    case DistKind::kF16L2: f(std::integral_constant<DistKind, DistKind::kF16L2>()); return;
    case DistKind::kF16Ip: f(std::integral_constant<DistKind, DistKind::kF16Ip>()); return;
    case DistKind::kRbqL2: f(std::integral_constant<DistKind, DistKind::kRbqL2>()); return;
    case DistKind::kSq4L2: f(std::integral_constant<DistKind, DistKind::kSq4L2>()); return;
    case DistKind::kSq4Ip: f(std::integral_constant<DistKind, DistKind::kSq4Ip>()); return;
    case DistKind::kSq8Pca: f(std::integral_constant<DistKind, DistKind::kSq8Pca>()); return;
  }
}

size_t HnswIndex::size() const {
  std::lock_guard lock(label_mutex_);
  return node_of_.size();
}
size_t HnswIndex::tombstones() const {
  std::lock_guard lock(label_mutex_);
  return tombstones_;
}
size_t HnswIndex::allocated_nodes() const {
  std::lock_guard lock(label_mutex_);
  return num_nodes_;
}

size_t HnswIndex::memory_bytes() const {
  std::shared_lock lock(structure_mutex_);
  std::lock_guard label_lock(label_mutex_);
  size_t per_node = sizeof(label_t) + sizeof(uint8_t) + sizeof(uint8_t) + sizeof(void*);
  const size_t vector_bytes = vectors_ ? capacity_ * dim() * sizeof(float) : 0;
  return capacity_ * (node_bytes_ + per_node) + vector_bytes + rbq_.memory_bytes() +
         sq4_.memory_bytes() + upper_words_.load() * sizeof(uint32_t) +
         node_of_.capacity() * (sizeof(std::pair<label_t, uint32_t>) + 1) +
         free_nodes_.capacity() * sizeof(uint32_t) +
         (pca_basis_.size() + 5 * pca_bias_.size()) * sizeof(float) +
         pca_basis8_.size() * sizeof(int8_t);
}

void HnswIndex::GrowLocked(size_t min_capacity) {
  if (min_capacity <= capacity_) return;
  size_t cap = std::max({min_capacity, capacity_ * 2, size_t{1024}});
  // No copy: the pages move to the grown range, and fresh pages stay untouched (no resident
  // memory) until a node is allocated there (TryInsert clears each block it takes).
  FATHOM_CHECK(blocks_.Grow(cap * node_bytes_), "out of memory growing HNSW to " + std::to_string(cap));
  if (floats_beside_codes() && !store_) {
    FATHOM_CHECK(vectors_.Grow(cap * dim() * sizeof(float)),
                 "out of memory growing HNSW to " + std::to_string(cap));
  }
  labels_.resize(cap, kNoLabel);
  levels_.resize(cap, 0);
  upper_.resize(cap);
  std::unique_ptr<std::atomic<uint8_t>[]> state(new std::atomic<uint8_t>[cap]);
  for (size_t i = 0; i < cap; ++i) {
    state[i].store(i < capacity_ ? state_[i].load() : kFree, std::memory_order_relaxed);
  }
  state_ = std::move(state);
  capacity_ = cap;
}

std::vector<float> HnswIndex::TrainingRows(size_t n, const float* x, std::vector<uint32_t>* nodes) const {
  std::vector<float> rows;
  nodes->clear();
  for (uint32_t u = 0; u < num_nodes_; ++u) {
    if (state_[u].load() != kFree) nodes->push_back(u);
  }
  if (floats_on_disk()) {
    // One batch read. If it fails the batch alone trains, and stored nodes keep their codes
    // (their estimates are off until they are replaced).
    std::vector<label_t> labels;
    if (!ReadNodeRows(nodes->size(), nodes->data(), labels, rows).ok()) {
      nodes->clear();
      rows.clear();
    }
  } else {
    std::vector<float> buffer;
    for (uint32_t u : *nodes) {
      const float* f = NodeFloats(u, buffer);
      rows.insert(rows.end(), f, f + dim());
    }
  }
  const size_t stored = nodes->size();
  rows.insert(rows.end(), x, x + n * dim());
  if (metric() == Metric::kCosine) {
    for (size_t i = stored; i < stored + n; ++i) simd::Normalize(rows.data() + i * dim(), dim());
  }
  return rows;
}

void HnswIndex::TrainQuantizerLocked(size_t n, const float* x) {
  if (spec_.rbq || spec_.sq4) {
    // From the nodes already stored (a retraining) and the batch; the stored nodes are then
    // re-encoded from the same rows. Retraining happens only while the index is small (SQ4:
    // below kRetrainPoints; RBQ: below 2 * kRbqFullTraining nodes), so all of them are read.
    std::vector<uint32_t> nodes;
    const std::vector<float> rows = TrainingRows(n, x, &nodes);
    const size_t points = rows.size() / dim();
    if (spec_.rbq) {
      // A small first batch (a collection's first upserts) says little about where the data's
      // clusters are, and RaBitQ takes one centre per kPointsPerCentre points: centres from 10
      // points, or from 1,010, gave recall@10 0.61 and 0.81 on clustered 48-d data where 6,000
      // gave 0.98. So until kRbqFullTraining points have trained it, the quantizer is trained
      // again each time the points double (O(kRbqFullTraining) work in all).
      const Status trained = rbq_.Train(points, rows.data());
      FATHOM_CHECK(trained.ok(), "RaBitQ training failed: " + trained.ToString());
      rbq_trained_points_ = std::max(points, size_t{num_nodes_} + n);
    } else {
      sq4_.Train(points, rows.data());
      // A small first batch says little about the ranges: leave room on both sides, and train
      // again (re-encoding every node) once kRetrainPoints points are in.
      if (points < kRetrainPoints) sq4_.Widen(0.25f, 1e-3f);
      sq4_trained_points_ = points;
    }
    for (size_t i = 0; i < nodes.size(); ++i) {
      uint8_t* code = const_cast<uint8_t*>(Code(nodes[i]));
      if (spec_.rbq) {
        rbq_.Encode(rows.data() + i * dim(), code);
      } else {
        Sq4Encode(rows.data() + i * dim(), code);
      }
    }
    return;
  }
  float lo = std::numeric_limits<float>::infinity(), hi = -lo;
  bool observed_integers = n > 0;
  std::vector<float> row(dim());
  for (size_t i = 0; i < n; ++i) {
    row.assign(x + i * dim(), x + (i + 1) * dim());
    if (metric() == Metric::kCosine) simd::Normalize(row.data(), dim());
    for (float v : row) {
      lo = std::min(lo, v);
      hi = std::max(hi, v);
      observed_integers = observed_integers && v == std::nearbyint(v) && std::abs(v) < 1e6f;
    }
  }
  const float observed_lo = lo, observed_hi = hi;
  if (n < 1000) {
    // A small first batch says little about the range: leave room on both sides.
    float pad = 0.25f * (hi - lo) + 1e-3f;
    lo -= pad;
    hi += pad;
  }
  sq_lo_ = lo;
  sq_scale_ = hi > lo ? (hi - lo) / 255.0f : 1.0f;
  // Integer data spanning at most 256 values (pixels, SIFT descriptors) with L2, seen in a first
  // batch large enough to trust (a few integer points may precede real-valued ones): a unit
  // step, so every code decodes to exactly its value and re-ranking cannot change the order.
  if (metric() == Metric::kL2 && n >= 1000 && observed_integers && observed_hi - observed_lo <= 255.0f) {
    sq_lo_ = observed_lo - std::floor((255.0f - (observed_hi - observed_lo)) / 2);
    sq_scale_ = 1.0f;
    sq8_exact_.store(true);
  }
  sq_trained_ = true;
}

void HnswIndex::EncodeNode(uint32_t node, const float* v) {
  // With on-disk vectors the caller has written the vector to the store: only codes are kept.
  thread_local std::vector<float> normalised;
  float* dst = Vector(node);
  if (dst == nullptr) {
    normalised.resize(dim());
    dst = normalised.data();
  }
  std::memcpy(dst, v, dim() * sizeof(float));
  if (metric() == Metric::kCosine) simd::Normalize(dst, dim());
  if (spec_.fp16) {
    uint16_t* half = reinterpret_cast<uint16_t*>(const_cast<uint8_t*>(Code(node)));
    for (size_t j = 0; j < dim(); ++j) half[j] = simd::FloatToHalf(dst[j]);
  }
  if (spec_.rbq) rbq_.Encode(dst, const_cast<uint8_t*>(Code(node)));
  if (spec_.sq8) {
    Sq8Encode(dst, const_cast<uint8_t*>(Code(node)));
    SetSq8Norm(node);
    if (pca_ready_.load(std::memory_order_relaxed)) EncodePca(node);
    // (Before the node is linked: a search that reaches it then sees the flag cleared.)
    if (sq8_exact_.load(std::memory_order_relaxed) && !Sq8DecodesExactly(dst, Code(node))) sq8_exact_.store(false);
  }
  if (spec_.sq4) Sq4Encode(dst, const_cast<uint8_t*>(Code(node)));
}

void HnswIndex::Sq4Encode(const float* v, uint8_t* code) const {
  sq4_.Encode(v, code + sizeof(float));
  const float norm = sq4_.DecodedNorm(code + sizeof(float));
  std::memcpy(code, &norm, sizeof(float));
}

void HnswIndex::SetSq8Norm(uint32_t node) {
  if (sq8_norm_offset_ == 0) return;
  const uint8_t* code = Code(node);
  // In [-128^2 * d, 0]: int32 holds it for d <= 65536 (and int32 lets the loop vectorise: 0.23
  // ns a byte at -O2, against 1 ns with int64; this runs for every node on load).
  int32_t norm = 0;
  for (size_t j = 0; j < dim(); ++j) norm += int32_t{code[j]} * (int32_t{code[j]} - 256);
  std::memcpy(blocks_.data() + size_t{node} * node_bytes_ + sq8_norm_offset_, &norm, sizeof(norm));
}

void HnswIndex::MaybeTrainPcaLocked(size_t n, const float* x) {
  if (pca_offset_ == 0 || pca_ready_.load() || !sq_trained_ || num_nodes_ + n < kPcaTrainPoints) return;
  // A sample of the codes: the stored nodes' (a collection's first small upserts, or a file's
  // nodes), then the batch's.
  std::vector<uint8_t> rows;
  size_t taken = 0;
  const uint32_t every = std::max<uint32_t>(1, uint32_t(num_nodes_ / kPcaSample));
  for (uint32_t u = 0; u < num_nodes_ && taken < kPcaSample; u += every) {
    if (state_[u].load() == kFree) continue;
    rows.insert(rows.end(), Code(u), Code(u) + dim());
    ++taken;
  }
  const size_t stride = std::max<size_t>(1, n / std::max<size_t>(1, kPcaSample - taken));
  std::vector<float> row(dim());
  for (size_t i = 0; i < n && taken < kPcaSample; i += stride, ++taken) {
    row.assign(x + i * dim(), x + (i + 1) * dim());
    if (metric() == Metric::kCosine) simd::Normalize(row.data(), dim());
    rows.resize(rows.size() + dim());
    Sq8Encode(row.data(), rows.data() + rows.size() - dim());
  }
  TrainPcaLocked(rows);
}

void HnswIndex::TrainPcaLocked(const std::vector<uint8_t>& rows) {
  const size_t d = dim(), m = rows.size() / d, k = pca_dims_;
  if (m < 2 * k) return;
  // PCA of the codes: the top k eigenvectors of their covariance (LAPACK ssyevr).
  std::vector<float> x(m * d), mean(d, 0.0f);
  for (size_t i = 0; i < m * d; ++i) x[i] = float(rows[i]);
  for (size_t i = 0; i < m; ++i) {
    for (size_t j = 0; j < d; ++j) mean[j] += x[i * d + j];
  }
  for (float& v : mean) v /= float(m);
  for (size_t i = 0; i < m; ++i) {
    for (size_t j = 0; j < d; ++j) x[i * d + j] -= mean[j];
  }
  const int di = int(d);
  std::vector<float> cov(d * d);
  cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, di, int(m), 1.0f, x.data(), di, 0.0f, cov.data(), di);
  const int il = int(d - k + 1), iu = di, ldz = di;
  const float vl = 0, vu = 0, abstol = 0;
  int found = 0, info = 0, lwork = -1, liwork = -1, iwork_query = 0;
  float work_query = 0;
  std::vector<float> eigenvalues(d), z(d * k);
  std::vector<int> isuppz(2 * k);
  // (Row-major upper is column-major lower.)
  ssyevr_("V", "I", "L", &di, cov.data(), &di, &vl, &vu, &il, &iu, &abstol, &found, eigenvalues.data(), z.data(), &ldz,
          isuppz.data(), &work_query, &lwork, &iwork_query, &liwork, &info);
  if (info != 0) return;
  lwork = int(work_query);
  liwork = iwork_query;
  std::vector<float> work(size_t(std::max(1, lwork)));
  std::vector<int> iwork(size_t(std::max(1, liwork)));
  ssyevr_("V", "I", "L", &di, cov.data(), &di, &vl, &vu, &il, &iu, &abstol, &found, eigenvalues.data(), z.data(), &ldz,
          isuppz.data(), work.data(), &lwork, iwork.data(), &liwork, &info);
  if (info != 0 || found != int(k)) return;
  pca_basis_.resize(k * d);
  pca_bias_.resize(k);
  for (size_t j = 0; j < k; ++j) {
    const float* column = z.data() + (k - 1 - j) * d;  // (ascending eigenvalues: largest first)
    std::copy(column, column + d, pca_basis_.begin() + j * d);
    pca_bias_[j] = simd::Active().dot(column, mean.data(), d);
  }
  // The sample's projections, as nodes will be projected: every projection learnt now has one
  // step, so through the int8 copy of the components where the integer walk can run (SetPcaWalk
  // below then keeps it on), else in float (x is the sample minus its mean: x . comp = code .
  // comp - bias).
  pca_int_walk_ = IntPcaWalkPossible();
  std::vector<float> proj(m * k);
  if (pca_int_walk_) {
    QuantizePcaBasis();
    std::vector<float> code_floats;
    for (size_t i = 0; i < m; ++i) PcaValues(rows.data() + i * d, proj.data() + i * k, code_floats);
  } else {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(m), int(k), di, 1.0f, x.data(), di,
                pca_basis_.data(), di, 0.0f, proj.data(), int(k));
  }
  // One step for every component (the widest range, padded 5%, over 255 levels), each component
  // centred in the levels: the walk's distance is then sum (q - x)^2 in integers (SetPcaWalk).
  // Measured beside a step per component on Fashion-MNIST: recall within 0.0007 at every ef.
  std::vector<float> centre(k);
  float widest = 0;
  for (size_t j = 0; j < k; ++j) {
    float lo = std::numeric_limits<float>::infinity(), hi = -lo;
    for (size_t i = 0; i < m; ++i) {
      lo = std::min(lo, proj[i * k + j]);
      hi = std::max(hi, proj[i * k + j]);
    }
    centre[j] = 0.5f * (lo + hi);
    widest = std::max(widest, 1.1f * (hi - lo));
  }
  const float step = widest > 0 ? widest / 255.0f : 1.0f;
  pca_lo_.resize(k);
  pca_step_.assign(k, step);
  pca_weight_.assign(k, step * step);
  for (size_t j = 0; j < k; ++j) pca_lo_[j] = centre[j] - 127.5f * step;
  SetPcaWalk();
  pca_ready_.store(true);
  for (uint32_t u = 0; u < num_nodes_; ++u) {
    if (state_[u].load() != kFree) EncodePca(u);
  }
}

Status HnswIndex::ReadPca(ByteSource& r) {
  uint8_t ready;
  FATHOM_RETURN_IF_ERROR(r.Read(&ready));
  if (ready > 1) return Status::Corruption("HNSW index body has an invalid PCA flag");
  pca_ready_.store(false);
  if (ready == 0) return Status::OK();
  pca_basis_.resize(pca_dims_ * dim());
  pca_bias_.resize(pca_dims_);
  pca_lo_.resize(pca_dims_);
  pca_step_.resize(pca_dims_);
  for (auto* v : {&pca_basis_, &pca_bias_, &pca_lo_, &pca_step_}) {
    FATHOM_RETURN_IF_ERROR(r.ReadBytes(v->data(), v->size() * sizeof(float)));
    for (float x : *v) {
      if (!std::isfinite(x)) return Status::Corruption("HNSW index body holds a non-finite PCA value");
    }
  }
  pca_weight_.resize(pca_dims_);
  for (size_t j = 0; j < pca_dims_; ++j) {
    if (!(pca_step_[j] > 0)) return Status::Corruption("HNSW index body holds a PCA step that is not positive");
    pca_weight_[j] = pca_step_[j] * pca_step_[j];
  }
  SetPcaWalk();
  if (pca_int_walk_) QuantizePcaBasis();  // (derived, not stored: only where it is used)
  pca_ready_.store(true);
  return Status::OK();
}

void HnswIndex::QuantizePcaBasis() {
  // Each component as int8, scaled so its largest entry is 127 (13 vpdpbusd a component at 784-d;
  // 100 KB for 128 components). With the integer walk, nodes and queries are projected through
  // this same copy, so a rounding error of the copy shifts both alike: the walk measures
  // differences along slightly perturbed components, and codes far from the origin (CNN features:
  // ~128 in every dimension) cost nothing. (An int16 copy was 5-8% slower; float components 20%.)
  const size_t d = dim();
  pca_basis8_.resize(pca_basis_.size());
  pca_unscale8_.assign(pca_dims_, 1.0f);
  for (size_t j = 0; j < pca_dims_; ++j) {
    const float* row = pca_basis_.data() + j * d;
    float largest = 0;
    for (size_t i = 0; i < d; ++i) largest = std::max(largest, std::fabs(row[i]));
    const double scale = largest > 0 ? 127.0 / largest : 1.0;
    for (size_t i = 0; i < d; ++i) {
      pca_basis8_[j * d + i] =
          static_cast<int8_t>(std::clamp(std::nearbyint(row[i] * scale), -127.0, 127.0));
    }
    pca_unscale8_[j] = static_cast<float>(1.0 / scale);
  }
}

void HnswIndex::SetPcaWalk() {
  // The integer walk (l2_sqr_s16_u8x2) needs one step for all components: files written before
  // that (a step per component) walk, and project, in float as they did. A query's half level is
  // clamped to [510 - limit, limit] so that it fits int16 and pca_dims_ squares of at most
  // `limit` sum within int32; limit >= 510 (every code reachable) while pca_dims_ <= 8255.
  pca_int_walk_ = IntPcaWalkPossible();
  for (size_t j = 1; j < pca_dims_; ++j) pca_int_walk_ &= pca_step_[j] == pca_step_[0];
  pca_half_weight_ = pca_dims_ > 0 ? 0.25f * pca_step_[0] * pca_step_[0] : 0.0f;
  // (In double: 2^31 - 1 is not a float, and at p = 128 a float limit would round up to 4096.)
  pca_half_limit_ =
      pca_dims_ > 0
          ? float(std::min(32767.0, std::floor(std::sqrt(2147483647.0 / double(pca_dims_)))))
          : 0.0f;
}

void HnswIndex::PcaValues(const uint8_t* code, float* out, std::vector<float>& code_floats) const {
  const size_t d = dim();
  const auto& kern = simd::Active();
  if (pca_int_walk_) {
    const int8_t* basis = pca_basis8_.data();
    for (size_t j = 0; j < pca_dims_; ++j) out[j] = float(kern.dot_u8_s8(code, basis + j * d, d));
    for (size_t j = 0; j < pca_dims_; ++j) out[j] = out[j] * pca_unscale8_[j] - pca_bias_[j];
    return;
  }
  code_floats.resize(d);
  for (size_t j = 0; j < d; ++j) code_floats[j] = float(code[j]);
  for (size_t j = 0; j < pca_dims_; ++j)
    out[j] = kern.dot(pca_basis_.data() + j * d, code_floats.data(), d) - pca_bias_[j];
}

void HnswIndex::EncodePca(uint32_t node) {
  thread_local std::vector<float> values, code_floats;
  values.resize(pca_dims_);
  PcaValues(Code(node), values.data(), code_floats);
  uint8_t* out =
      reinterpret_cast<uint8_t*>(blocks_.data() + size_t{node} * node_bytes_ + pca_offset_);
  for (size_t j = 0; j < pca_dims_; ++j) {
    out[j] =
        uint8_t(std::clamp(std::nearbyint((values[j] - pca_lo_[j]) / pca_step_[j]), 0.0f, 255.0f));
  }
}

void HnswIndex::PreparePca(const uint8_t* code, Scratch& s, Query* q) const {
  q->pca = nullptr;
  q->pca2 = nullptr;
  if (!pca_ready_.load(std::memory_order_acquire)) return;
  s.qpca.resize(pca_dims_);
  float* out = s.qpca.data();
  PcaValues(code, out, s.code_floats);
  for (size_t j = 0; j < pca_dims_; ++j) out[j] = (out[j] - pca_lo_[j]) / pca_step_[j];
  q->pca = out;
  if (pca_int_walk_ && pca_int_walk_enabled_) {
    s.qpca2.resize(pca_dims_);
    int16_t* __restrict half = s.qpca2.data();
    const float high = pca_half_limit_, low = 510.0f - high;
    for (size_t j = 0; j < pca_dims_; ++j) {
      float h = 2.0f * out[j];
      h = h > low ? h : low;
      h = h < high ? h : high;
      half[j] = static_cast<int16_t>(std::lrint(h));
    }
    q->pca2 = half;
  }
}

int64_t HnswIndex::Sq8DotDistance(const uint8_t* code, const int8_t* qs8, int64_t code_norm) const {
  int32_t norm;
  std::memcpy(&norm, code - code_offset_ + sq8_norm_offset_, sizeof(norm));
  return code_norm + norm - 2 * int64_t{simd::Active().dot_u8_s8(code, qs8, dim())};
}

bool HnswIndex::NodeQuery(uint32_t node, Scratch& s, Query* q) const {
  if (floats_on_disk()) {
    const float* v = NodeFloats(node, s.node_floats);
    if (v != nullptr) PrepareQuery(v, s, q);
    return v != nullptr;
  }
  q->vec = NodeFloats(node, s.node_floats);
  q->code = Code(node);
  if (sq8_norm_offset_ != 0 && simd::Active().vnni) {
    PrepareSq8Walk(q->code, dim(), s.qs8, &q->code_norm);
    q->qs8 = s.qs8.data();
  }
  return true;
}

// (Both loops are written without early exits or std::clamp's references so that they vectorise:
// a query runs them over every dimension, 784 at Fashion-MNIST.)
bool HnswIndex::Sq8DecodesExactly(const float* v, const uint8_t* code) const {
  if (sq_scale_ != 1.0f) return false;
  int differ = 0;
  const float lo = sq_lo_;
  const size_t d = dim();
  for (size_t j = 0; j < d; ++j) differ |= int(lo + float(code[j]) != v[j]);
  return differ == 0;
}

void HnswIndex::Sq8Encode(const float* __restrict v, uint8_t* __restrict code) const {
  const float inv = 1.0f / sq_scale_, lo = sq_lo_;
  const size_t d = dim();
  for (size_t j = 0; j < d; ++j) {
    float x = (v[j] - lo) * inv + 0.5f;
    x = x > 0.0f ? x : 0.0f;  // (NaN cannot reach here: vectors are checked finite)
    x = x < 255.0f ? x : 255.0f;
    code[j] = static_cast<uint8_t>(static_cast<int>(x));
  }
}

int HnswIndex::RandomLevel() {
  uint64_t r = Mix64(level_counter_.fetch_add(1, std::memory_order_relaxed) ^ 0x5eedf00dull);
  double u = (double(r >> 11) + 1.0) * (1.0 / 9007199254740993.0);  // (0, 1]
  return std::min(kMaxLevel, static_cast<int>(-std::log(u) * level_mult_));
}

template <HnswIndex::DistKind K>
float HnswIndex::Distance(const Query& q, uint32_t node) const {
  const auto& kern = simd::Active();
  if constexpr (K == DistKind::kFloatL2) {
    return kern.l2_sqr(q.vec, Vector(node), dim());
  } else if constexpr (K == DistKind::kFloatIp) {
    return ip_offset_ - kern.dot(q.vec, Vector(node), dim());
  } else if constexpr (K == DistKind::kFloatL1) {
    return kern.l1(q.vec, Vector(node), dim());
  } else if constexpr (K == DistKind::kSq8L2) {
    const uint8_t* code = Code(node);
    if (q.qs8 != nullptr) return static_cast<float>(Sq8DotDistance(code, q.qs8, q.code_norm));
    return static_cast<float>(kern.l2_sqr_u8(q.code, code, dim()));
  } else if constexpr (K == DistKind::kF16L2) {
    return kern.l2_sqr_f16(q.vec, reinterpret_cast<const uint16_t*>(Code(node)), dim());
  } else if constexpr (K == DistKind::kF16Ip) {
    return ip_offset_ - kern.dot_f16(q.vec, reinterpret_cast<const uint16_t*>(Code(node)), dim());
  } else if constexpr (K == DistKind::kRbqL2) {
    return rbq_.Estimate(*q.rbq, Code(node));
  } else if constexpr (K == DistKind::kSq4L2) {
    const uint8_t* code = Code(node);
    float norm;
    std::memcpy(&norm, code, sizeof(float));
    return q.sq->q_norm - 2 * sq4_.DotInt8(*q.sq, code + sizeof(float)) + norm;
  } else if constexpr (K == DistKind::kSq4Ip) {
    return ip_offset_ - sq4_.DotInt8(*q.sq, Code(node) + sizeof(float));
  } else if constexpr (K == DistKind::kSq8Pca) {
    if (q.pca2 != nullptr) {
      return pca_half_weight_ * float(kern.l2_sqr_s16_u8x2(q.pca2, WalkCode<K>(node), pca_dims_));
    }
    return kern.l2_sqr_f32_u8_weighted(q.pca, pca_weight_.data(), WalkCode<K>(node), pca_dims_);
  } else {
    return ip_offset_ - (sq_lo_ * q.sum + sq_scale_ * kern.dot_f32_u8(q.vec, Code(node), dim()));
  }
}

const float* HnswIndex::NodeFloats(uint32_t node, std::vector<float>& buffer) const {
  if (floats_on_disk()) {
    // (A tombstone's row may already hold its label's new vector: only link quality depends on it.)
    buffer.resize(dim());
    const label_t label = labels_[node];
    return store_->Read(1, &label, buffer.data()).ok() ? buffer.data() : nullptr;
  }
  if (!spec_.fp16) return Vector(node);
  buffer.resize(dim());
  simd::Active().f16_to_f32(reinterpret_cast<const uint16_t*>(Code(node)), buffer.data(), dim());
  return buffer.data();
}

float HnswIndex::FloatBuildDistance(const float* a, const float* b) const {
  if (spec_.rbq || metric() == Metric::kL2) return simd::Active().l2_sqr(a, b, dim());
  return ip_offset_ - simd::Active().dot(a, b, dim());
}

Status HnswIndex::ReadNodeRows(size_t n, const uint32_t* nodes, std::vector<label_t>& labels,
                               std::vector<float>& rows) const {
  labels.resize(n);
  for (size_t i = 0; i < n; ++i) labels[i] = labels_[nodes[i]];
  rows.resize(n * dim());
  return store_->Read(n, labels.data(), rows.data());
}

float HnswIndex::NodeDistance(uint32_t a, uint32_t b) const {
  if (floats_on_disk()) {
    // (Rare paths: consolidation and reachability repair. A failed read ranks the pair last.)
    thread_local std::vector<label_t> labels;
    thread_local std::vector<float> rows;
    const uint32_t pair[2] = {a, b};
    if (!ReadNodeRows(2, pair, labels, rows).ok()) return std::numeric_limits<float>::infinity();
    return FloatBuildDistance(rows.data(), rows.data() + dim());
  }
  thread_local std::vector<float> decoded;
  Query q;
  q.vec = NodeFloats(a, decoded);
  q.code = Code(a);
  float d = 0;
  Dispatch(BuildKind(), [&](auto kind) { d = Distance<decltype(kind)::value>(q, b); });
  return d;
}

void HnswIndex::PrepareQuery(const float* v, Scratch& s, Query* q) const {
  const size_t d = dim();
  q->vec = v;
  if (metric() == Metric::kCosine) {
    s.qvec.assign(v, v + d);
    simd::Normalize(s.qvec.data(), d);
    q->vec = s.qvec.data();
  }
  if (spec_.rbq) {
    rbq_.Prepare(q->vec, &s.rbq);
    q->rbq = &s.rbq;
  }
  if (spec_.sq4) {
    sq4_.Prepare(q->vec, &s.sq);
    q->sq = &s.sq;
  }
  if (spec_.sq8) {
    s.qcode.resize(d);
    Sq8Encode(q->vec, s.qcode.data());
    q->code = s.qcode.data();
    if (metric() == Metric::kInnerProduct) {  // (only the inner-product walk reads it)
      float sum = 0;
      for (size_t j = 0; j < d; ++j) sum += q->vec[j];
      q->sum = sum;
    }
    // (Checked only while the stored codes are exact: otherwise it could not skip re-ranking.)
    q->code_exact = sq8_exact_.load(std::memory_order_relaxed) && Sq8DecodesExactly(q->vec, q->code);
    if (sq8_norm_offset_ != 0 && simd::Active().vnni) {
      PrepareSq8Walk(q->code, d, s.qs8, &q->code_norm);
      q->qs8 = s.qs8.data();
    }
    if (pca_offset_ != 0) PreparePca(q->code, s, q);
  }
}

template <HnswIndex::DistKind K>
uint32_t HnswIndex::GreedyDescend(const Query& q, uint32_t start, int from_level, int to_level,
                                  float* dist) const {
  uint32_t cur = start;
  *dist = Distance<K>(q, cur);
  for (int level = from_level; level > to_level; --level) {
    for (bool changed = true; changed;) {
      changed = false;
      const uint32_t* links = Links(cur, level);
      uint32_t count = std::min<uint32_t>(LoadLink(links), m_);
      for (uint32_t j = 1; j <= count; ++j) {
        uint32_t v = LoadLink(links + j);
        float d = Distance<K>(q, v);
        if (d < *dist) {
          *dist = d;
          cur = v;
          changed = true;
        }
      }
    }
  }
  return cur;
}

template <HnswIndex::DistKind K>
void HnswIndex::SearchLevel(const Query& q, uint32_t entry, float entry_dist, int level,
                            size_t ef, Scratch& s) const {
  s.seeds.assign(1, {entry_dist, entry});
  SearchLevelFrom<K>(q, level, ef, s);
}

template <HnswIndex::DistKind K>
void HnswIndex::SearchLevelFrom(const Query& q, int level, size_t ef, Scratch& s) const {
  s.NewEpoch(capacity_, dense_visited_max_nodes_);
  s.pool.Reset(ef);
  for (auto [d, node] : s.seeds) {
    if (s.Visit(node)) s.pool.Insert(d, node);
  }
  const uint32_t max_links = static_cast<uint32_t>(MaxLinks(level));
  s.batch.resize(m0_ + 1);
  const size_t prefetch_bytes = K == DistKind::kSq8Pca ? pca_dims_ : std::min(code_bytes_, kMaxPrefetchBytes);
  const size_t links_bytes = sizeof(uint32_t) * (1 + max_links);
  while (s.pool.HasNext()) {
    uint32_t u = s.pool.Next();
    const uint32_t* links = Links(u, level);
    uint32_t count = std::min(LoadLink(links), max_links);
    size_t n = 0;
    if (!s.visited.hashed()) {
      // Test and set without a branch: about a third of the neighbours are new, so a branch
      // here mispredicts often (measured: 5-13% more QPS on CNN features, SQ8 and float32).
      uint16_t* marks = s.visited.dense_marks();
      const uint16_t epoch = s.visited.dense_epoch();
      uint32_t* batch = s.batch.data();
      for (uint32_t j = 1; j <= count; ++j) {
        const uint32_t v = LoadLink(links + j);
        const bool fresh = marks[v] != epoch;
        marks[v] = epoch;
        batch[n] = v;
        n += fresh;
      }
    } else {
      for (uint32_t j = 1; j <= count; ++j) {
        uint32_t v = LoadLink(links + j);
        if (s.Visit(v)) s.batch[n++] = v;
      }
    }
    ++s.expansions;
    s.distances += n;
    // Every new neighbour's code is requested at once (its lines load in parallel), and a node
    // that enters the pool has its links requested, as it is likely the next one expanded.
    // Measured (A/B in one process, CNN 128-d and Fashion-MNIST 784-d, SQ8 and float32): 10-30%
    // more QPS than prefetching 3 neighbours ahead.
    for (size_t i = 0; i < n; ++i) Prefetch(WalkCode<K>(s.batch[i]), prefetch_bytes);
    for (size_t i = 0; i < n; ++i) {
      uint32_t v = s.batch[i];
      float d = Distance<K>(q, v);
      if (d < s.pool.worst()) {
        s.pool.Insert(d, v);
        Prefetch(Links(v, level), links_bytes);
      }
    }
  }
}

// Like SearchLevel on level 0, but results only hold live nodes the filter allows, and the
// search goes on until it has ef of them. The walk is filter-aware (ACORN's two-hop expansion):
// from a node it steps to its allowed neighbours and, through each rejected neighbour, to that
// neighbour's allowed neighbours, until it has seen m0 allowed ones, so distances are computed
// for allowed nodes only and the walk stays on the allowed points' (denser) two-hop graph. A step
// that finds no allowed node within two hops walks on through the rejected neighbours, as an
// unfiltered walk would, so a sparse corner of the allowed set is still reached.
template <HnswIndex::DistKind K>
void HnswIndex::SearchLevelFiltered(const Query& q, size_t ef, const LabelFilter* filter, Scratch& s) const {
  s.NewEpoch(capacity_, dense_visited_max_nodes_);
  // Allowed nodes go to the pool (the results, and the candidates to expand, as in SearchLevel);
  // rejected ones the walk must pass through (a rejected entry point, a step with no allowed
  // node within two hops) to a min-heap beside it.
  s.pool.Reset(ef);
  auto& side = s.heap;
  side.clear();
  auto greater = std::greater<std::pair<float, uint32_t>>();
  const auto* bits = dynamic_cast<const BitsetFilter*>(filter);  // the database's filter, without a virtual call
  const uint64_t* node_bits = s.allowed_nodes != nullptr ? s.allowed_nodes->data() : nullptr;
  const size_t node_bits_count = s.allowed_nodes != nullptr ? s.allowed_nodes->size() * 64 : 0;
  auto accept = [&](uint32_t v) {  // (the filter first: most nodes it rejects are live)
    if (node_bits != nullptr) return v < node_bits_count && ((node_bits[v >> 6] >> (v & 63)) & 1) != 0;
    if (bits != nullptr) return bits->Allowed(labels_[v]) && Live(v);
    return (filter == nullptr || filter->Allowed(labels_[v])) && Live(v);
  };
  for (auto [d, node] : s.seeds) {
    if (!s.Visit(node)) continue;
    if (accept(node)) {
      s.pool.Insert(d, node);
    } else {
      side.emplace_back(d, node);
    }
  }
  std::make_heap(side.begin(), side.end(), greater);
  const size_t prefetch_bytes = K == DistKind::kSq8Pca ? pca_dims_ : std::min(code_bytes_, kMaxPrefetchBytes);
  const size_t cap = m0_;
  s.batch.resize(m0_ + 1);
  s.selected.resize(m0_ + 1);  // this step's rejected neighbours (the two-hop hubs)
  for (;;) {
    uint32_t u;
    const float from_pool = s.pool.HasNext() ? s.pool.NextDistance() : std::numeric_limits<float>::infinity();
    if (!side.empty() && side.front().first < from_pool) {
      if (!(side.front().first < s.pool.worst())) {
        side.clear();  // every rejected candidate is beyond the results
        continue;
      }
      std::pop_heap(side.begin(), side.end(), greater);
      u = side.back().second;
      side.pop_back();
    } else if (s.pool.HasNext()) {
      u = s.pool.Next();
    } else {
      break;
    }
    const uint32_t* links = Links(u, 0);
    uint32_t count = std::min<uint32_t>(LoadLink(links), m0_);
    // `seen` counts allowed neighbours whether visited or not: the two-hop list is cut at m0
    // of them (ACORN's truncation), so where most neighbours are allowed few hubs are read.
    size_t n = 0, hubs = 0, seen = 0;
    for (uint32_t j = 1; j <= count; ++j) {
      uint32_t v = LoadLink(links + j);
      if (accept(v)) {
        ++seen;
        if (s.Visit(v)) s.batch[n++] = v;
      } else {
        s.selected[hubs++] = v;
        // A hub's list is read only while fewer than m0 allowed neighbours have been seen; its
        // load is the step's latency, so it starts now (two lines: the count and 15 links).
        if (seen + hubs < cap + 4) Prefetch(Links(v, 0), 2 * 64);
      }
    }
    size_t scanned = 0;  // hubs whose lists this step read (and marked visited)
    for (size_t h = 0; h < hubs && seen < cap; ++h) {
      uint32_t v = s.selected[h];
      if (!s.Visit(v)) continue;
      s.selected[scanned++] = v;
      const uint32_t* hop = Links(v, 0);
      uint32_t hop_count = std::min<uint32_t>(LoadLink(hop), m0_);
      for (uint32_t j = 1; j <= hop_count && seen < cap; ++j) {
        uint32_t w = LoadLink(hop + j);
        if (!accept(w)) continue;
        ++seen;
        if (s.Visit(w)) s.batch[n++] = w;
      }
    }
    const bool through_rejected = n == 0;
    if (through_rejected) {
      std::copy_n(s.selected.begin(), scanned, s.batch.begin());
      n = scanned;
    }
    ++s.expansions;
    s.distances += n;
    for (size_t i = 0; i < n; ++i) Prefetch(WalkCode<K>(s.batch[i]), prefetch_bytes);  // (as SearchLevelFrom)
    for (size_t i = 0; i < n; ++i) {
      uint32_t v = s.batch[i];
      float d = Distance<K>(q, v);
      if (!(d < s.pool.worst())) continue;
      if (through_rejected) {
        side.emplace_back(d, v);
        std::push_heap(side.begin(), side.end(), greater);
      } else {
        s.pool.Insert(d, v);
        Prefetch(Links(v, 0), links0_bytes_);
      }
    }
  }
  s.results.clear();
  for (size_t i = 0; i < s.pool.size(); ++i) s.results.emplace_back(s.pool.distance(i), s.pool.node(i));
}

template <HnswIndex::DistKind K>
void HnswIndex::SearchOne(const float* query, size_t k, const SearchParams& params, Scratch& s,
                          float* distances, label_t* labels) const {
  TopK top(k);
  s.distances = s.expansions = 0;
  uint64_t entry = entry_.load(std::memory_order_acquire);
  if (entry == kNoEntry) {
    top.Extract(distances, labels);
    return;
  }
  Query q;
  PrepareQuery(query, s, &q);
  size_t ef = std::max<size_t>(params.ef > 0 ? size_t(params.ef) : size_t(spec_.ef_search), k);
  float entry_dist;
  const int top_level = static_cast<int>(entry >> 32);
  const bool upper_beam = params.upper_ef > 1 && top_level >= 1;
  uint32_t ep = GreedyDescend<K>(q, uint32_t(entry), top_level, upper_beam ? 1 : 0, &entry_dist);
  if (upper_beam) {
    // Level 1 with a beam rather than greedily: in data of many separated clusters a greedy
    // descent can end in a cluster next to the query's, where no beam width on level 0 finds
    // its way out; the level-1 beam's nodes all seed the level-0 search.
    SearchLevel<K>(q, ep, entry_dist, 1, size_t(params.upper_ef), s);
    s.seeds.clear();
    for (size_t i = 0; i < s.pool.size(); ++i) s.seeds.emplace_back(s.pool.distance(i), s.pool.node(i));
  }

  // Candidates (distance in traversal units, node), closest first, live and allowed only.
  auto& found = s.cands;
  found.clear();
  size_t tombstones = tombstones_.load(std::memory_order_relaxed);
  if (params.filter != nullptr) {
    if (!upper_beam) s.seeds.assign(1, {entry_dist, ep});
    SearchLevelFiltered<K>(q, ef, params.filter, s);
    found.clear();
    for (const auto& r : s.results) {
      // The allowed nodes were computed for this generation; a node removed since is dropped.
      if (s.allowed_nodes == nullptr || (Live(r.second) && params.filter->Allowed(labels_[r.second]))) {
        found.push_back(r);
      }
    }
  } else {
    // Tombstones may occupy beam slots: widen the beam by their share.
    size_t nodes = std::max<size_t>(1, num_nodes_.load(std::memory_order_relaxed));
    size_t widened = ef + ef * tombstones / nodes + (tombstones > 0 ? k : 0);
    if (upper_beam) {
      SearchLevelFrom<K>(q, 0, widened, s);
    } else {
      SearchLevel<K>(q, ep, entry_dist, 0, widened, s);
    }
    for (size_t i = 0; i < s.pool.size(); ++i) {
      uint32_t v = s.pool.node(i);
      if (tombstones == 0 || Live(v)) found.emplace_back(s.pool.distance(i), v);
    }
  }
  if constexpr (K == DistKind::kSq8Pca) {
    // Walked on projections: the candidates ranked again by their whole codes.
    for (size_t i = 0; i < std::min<size_t>(found.size(), 8); ++i) Prefetch(Code(found[i].second), code_bytes_);
    for (size_t i = 0; i < found.size(); ++i) {
      if (i + 8 < found.size()) Prefetch(Code(found[i + 8].second), code_bytes_);
      found[i].first = Distance<DistKind::kSq8L2>(q, found[i].second);
    }
    std::sort(found.begin(), found.end());
  }
  if (spec_.rbq && params.rerank <= 0) {
    // Re-rank by the error bound: a candidate whose estimate minus its bound is beyond the k-th
    // exact distance so far cannot enter the top k (with the bound's high probability).
    const float to_metric = metric() == Metric::kCosine ? 0.5f : 1.0f;  // (walked on L2 of unit vectors)
    auto ruled_out = [&](float estimate, uint32_t node) {
      return (estimate - rbq_.Bound(*q.rbq, Code(node), RaBitQuantizer::kRerankEpsilon)) * to_metric >= top.threshold();
    };
    if (store_) {
      // On-disk vectors: the next candidates the bound does not rule out (against the k-th exact
      // distance so far), read back a few at a time (the first k at once: until k are in,
      // nothing is ruled out).
      for (size_t i = 0; i < found.size() && s.error.ok();) {
        s.rerank_labels.clear();
        const size_t want = top.size() < k ? k - top.size() : 4;
        for (; i < found.size() && s.rerank_labels.size() < want; ++i) {
          if (!ruled_out(found[i].first, found[i].second)) s.rerank_labels.push_back(labels_[found[i].second]);
        }
        s.rerank_vectors.resize(s.rerank_labels.size() * dim());
        Status read = store_->Read(s.rerank_labels.size(), s.rerank_labels.data(), s.rerank_vectors.data());
        if (!read.ok()) {
          s.error = read;
          break;
        }
        for (size_t j = 0; j < s.rerank_labels.size(); ++j) {
          top.Push(MetricDistance(metric(), q.vec, s.rerank_vectors.data() + j * dim(), dim()), s.rerank_labels[j]);
        }
      }
    } else {
      for (size_t i = 0; i < std::min<size_t>(found.size(), 8); ++i) Prefetch(Vector(found[i].second), dim() * sizeof(float));
      for (const auto& [estimate, node] : found) {
        if (!ruled_out(estimate, node)) top.Push(MetricDistance(metric(), q.vec, Vector(node), dim()), labels_[node]);
      }
    }
  } else if (spec_.sq8 && params.rerank <= 0 && q.code_exact && sq8_exact_.load(std::memory_order_acquire)) {
    // The query and every stored vector are exactly their codes (integer data, unit step): the
    // code distances are the distances, so re-ranking could change nothing. (The flag is read
    // after the walk: a node the walk saw was encoded, and any clearing done, before it was
    // linked.)
    for (size_t i = 0; i < std::min(k, found.size()); ++i) top.Push(found[i].first, labels_[found[i].second]);
  } else if (spec_.sq8 || spec_.rbq || spec_.sq4 || (spec_.fp16 && store_)) {
    // SQ4: every candidate the walk found (16 levels a dimension cannot order close neighbours:
    // on CNN embeddings the best 8k of ef=256 capped recall@10 at 0.995).
    size_t rerank = params.rerank > 0 ? size_t(params.rerank) : spec_.sq4 ? found.size() : 2 * k;
    rerank = std::min(std::max(rerank, k), found.size());
    s.rerank_labels.resize(rerank);
    for (size_t i = 0; i < rerank; ++i) s.rerank_labels[i] = labels_[found[i].second];
    if (store_) {
      // On-disk vectors: read back only the candidates being re-ranked, in one batch.
      s.rerank_vectors.resize(rerank * dim());
      Status read = store_->Read(rerank, s.rerank_labels.data(), s.rerank_vectors.data());
      if (!read.ok()) {
        s.error = read;
        rerank = 0;
      }
    } else {
      // Re-ranking reads full float vectors that are rarely cached: request them all at once.
      for (size_t i = 0; i < rerank; ++i) Prefetch(Vector(found[i].second), dim() * sizeof(float));
    }
    for (size_t i = 0; i < rerank; ++i) {
      const float* v = store_ ? s.rerank_vectors.data() + i * dim() : Vector(found[i].second);
      top.Push(MetricDistance(metric(), q.vec, v, dim()), s.rerank_labels[i]);
    }
  } else {
    // FP16 cosine walked on L2 between unit vectors: half of it is the cosine distance.
    const float scale = spec_.fp16 && metric() == Metric::kCosine ? 0.5f : 1.0f;
    for (size_t i = 0; i < std::min(k, found.size()); ++i) {
      top.Push(scale * found[i].first, labels_[found[i].second]);
    }
  }
  top.Extract(distances, labels);
  if (params.counters != nullptr) {
    params.counters->distances.fetch_add(s.distances, std::memory_order_relaxed);
    params.counters->expansions.fetch_add(s.expansions, std::memory_order_relaxed);
  }
}

std::shared_ptr<const std::vector<uint64_t>> HnswIndex::AllowedNodes(const LabelFilter* filter) const {
  const auto* bits = dynamic_cast<const BitsetFilter*>(filter);
  if (bits == nullptr) return nullptr;
  // (Read before the pass: an Add that finishes during it bumps the generation, so what the
  // pass saw is never used for the nodes added.)
  const uint64_t generation = generation_.load(std::memory_order_acquire);
  const uint32_t nodes = num_nodes_.load(std::memory_order_acquire);
  // The pass reads every node's state and label (~2 ns a node); a search it speeds up saves
  // tens of microseconds. Computed once the filter has been used by 2 + nodes / 32768 searches
  // of this generation (3 at 60k nodes, ~300 at 10M), so a filter used once or twice, or a
  // collection written between most searches, never pays for it.
  const uint64_t needed = 2 + nodes / 32768;
  {
    std::lock_guard lock(allowed_mutex_);
    AllowedNodesEntry* entry = nullptr;
    AllowedNodesEntry* oldest = &allowed_cache_[0];
    for (auto& e : allowed_cache_) {
      if (e.filter_id == bits->id() && e.filter_version == bits->version() && e.generation == generation) {
        entry = &e;
        break;
      }
      if (e.last_use < oldest->last_use) oldest = &e;
    }
    if (entry == nullptr) {
      entry = oldest;
      *entry = AllowedNodesEntry{bits->id(), bits->version(), generation, 0, 0, nullptr};
    }
    entry->last_use = ++allowed_clock_;
    if (entry->bits != nullptr) return entry->bits;
    if (++entry->uses < needed) return nullptr;
  }
  auto allowed = std::make_shared<std::vector<uint64_t>>((size_t{nodes} + 63) / 64, 0);
  for (uint32_t v = 0; v < nodes; ++v) {
    // A live node's label was written before its state (release): safe beside inserts.
    if (Live(v) && bits->Allowed(labels_[v])) (*allowed)[v >> 6] |= 1ull << (v & 63);
  }
  std::lock_guard lock(allowed_mutex_);
  for (auto& e : allowed_cache_) {
    if (e.filter_id == bits->id() && e.filter_version == bits->version() && e.generation == generation) {
      e.bits = allowed;
    }
  }
  return allowed;
}

Status HnswIndex::Search(size_t n, const float* queries, size_t k, float* distances,
                         label_t* labels, const SearchParams& params) const {
  if (k == 0) return Status::InvalidArgument("k must be at least 1");
  if (params.ef < 0) return Status::InvalidArgument("ef must be >= 0, got " + std::to_string(params.ef));
  FATHOM_RETURN_IF_ERROR(ValidateVectors(n, queries));
  std::shared_lock lock(structure_mutex_);
  ScratchLease lease(*this);
  Scratch& s = *lease;
  const auto allowed_nodes = params.filter != nullptr ? AllowedNodes(params.filter) : nullptr;
  s.allowed_nodes = allowed_nodes.get();
  for (size_t i = 0; i < n; ++i) {
    const float* q = queries + i * dim();
    float* d = distances + i * k;
    label_t* l = labels + i * k;
    DistKind kind0 = SearchKind();
    if (kind0 == DistKind::kSq8L2 && pca_enabled_ && pca_ready_.load(std::memory_order_acquire)) kind0 = DistKind::kSq8Pca;
    Dispatch(kind0, [&](auto kind) { SearchOne<decltype(kind)::value>(q, k, params, s, d, l); });
    if (!s.error.ok()) {
      Status error = std::move(s.error);
      s.error = Status::OK();
      return error;
    }
  }
  return Status::OK();
}

Status HnswIndex::SearchAmong(size_t n, const float* queries, size_t k, const label_t* candidates,
                              size_t num_candidates, float* distances, label_t* labels) const {
  if (k == 0) return Status::InvalidArgument("k must be at least 1");
  FATHOM_RETURN_IF_ERROR(ValidateVectors(n, queries));
  std::shared_lock lock(structure_mutex_);
  std::vector<StoredVector> stored;
  stored.reserve(num_candidates);
  std::vector<float> fetched;
  std::vector<uint32_t> nodes;  // FP16 and SQ8: the node of each stored entry
  const bool by_codes = spec_.sq8 && vectors_ && metric() != Metric::kInnerProduct && sq_trained_;
  {
    // A published node's vector is complete, and it stays readable while we hold the structure
    // lock: nodes are freed for reuse only by Consolidate, which takes that lock exclusively.
    std::lock_guard label_lock(label_mutex_);
    for (size_t i = 0; i < num_candidates; ++i) {
      if (auto it = node_of_.find(candidates[i]); it != node_of_.end()) {
        stored.push_back({candidates[i], Vector(it->second)});
        if (spec_.fp16 || by_codes) nodes.push_back(it->second);
      }
    }
  }
  if (by_codes) {
    SearchAmongByCodes(n, queries, k, nodes, distances, labels);
    return Status::OK();
  }
  if (store_) {
    std::vector<label_t> present(stored.size());
    for (size_t i = 0; i < stored.size(); ++i) present[i] = stored[i].label;
    fetched.resize(stored.size() * dim());
    FATHOM_RETURN_IF_ERROR(store_->Read(present.size(), present.data(), fetched.data()));
    for (size_t i = 0; i < stored.size(); ++i) stored[i].vector = fetched.data() + i * dim();
  } else if (spec_.fp16) {
    // The half-precision vectors, decoded.
    fetched.resize(stored.size() * dim());
    for (size_t i = 0; i < stored.size(); ++i) {
      simd::Active().f16_to_f32(reinterpret_cast<const uint16_t*>(Code(nodes[i])), fetched.data() + i * dim(), dim());
      stored[i].vector = fetched.data() + i * dim();
    }
  }
  ExactTopK(metric(), dim(), n, queries, k, stored, distances, labels);
  return Status::OK();
}

// Exact because of a lower bound from the codes. Encoding clamps each value to the range, which
// moves two points no further apart, then rounds to the nearest step. So with c(.) the clamped
// vector, q' and x' the decoded codes and s the step:
//   |q - x| >= |c(q) - c(x)| >= |q' - x'| - |q' - c(q)| - |x' - c(x)|,
// where |q' - x'| = s * sqrt(code distance), |q' - c(q)| is computed, and |x' - c(x)| <=
// s / 2 * sqrt(dim). Nothing per point is stored, so it holds for every code ever written.
void HnswIndex::SearchAmongByCodes(size_t n, const float* queries, size_t k, const std::vector<uint32_t>& nodes,
                                   float* distances, label_t* labels) const {
  const size_t d = dim();
  const auto& kern = simd::Active();
  std::vector<float> q(d);
  std::vector<uint8_t> qcode(d);
  std::vector<int8_t> qs8;
  std::vector<std::pair<uint32_t, uint32_t>> ranked(nodes.size());  // (code distance, node)
  auto greater = std::greater<std::pair<uint32_t, uint32_t>>();
  TopK top(k);
  const float hi = sq_lo_ + 255.0f * sq_scale_;
  constexpr size_t kAhead = 4;
  for (size_t i = 0; i < n; ++i) {
    q.assign(queries + i * d, queries + (i + 1) * d);
    if (metric() == Metric::kCosine) simd::Normalize(q.data(), d);
    Sq8Encode(q.data(), qcode.data());
    // The walk's dot-product form where it applies (the same integers as l2_sqr_u8).
    const bool dot = sq8_norm_offset_ != 0 && kern.vnni;
    int64_t qcode_norm = 0;
    if (dot) PrepareSq8Walk(qcode.data(), d, qs8, &qcode_norm);
    double rounding = 0;  // |q' - c(q)|^2
    for (size_t j = 0; j < d; ++j) {
      const double e = double(std::clamp(q[j], sq_lo_, hi)) - (double(sq_lo_) + double(sq_scale_) * qcode[j]);
      rounding += e * e;
    }
    const double slack = std::sqrt(rounding) + 0.5 * double(sq_scale_) * std::sqrt(double(d));
    for (size_t c = 0; c < nodes.size(); ++c) {
      if (c + kAhead < nodes.size()) Prefetch(Code(nodes[c + kAhead]), code_bytes_);
      const uint8_t* code = Code(nodes[c]);
      ranked[c] = {dot ? uint32_t(Sq8DotDistance(code, qs8.data(), qcode_norm)) : kern.l2_sqr_u8(qcode.data(), code, d),
                   nodes[c]};
    }
    // Re-rank in code order until the bound passes the k-th exact distance.
    std::make_heap(ranked.begin(), ranked.end(), greater);
    for (auto end = ranked.end(); end != ranked.begin(); --end) {
      std::pop_heap(ranked.begin(), end, greater);
      const auto [code_distance, node] = *(end - 1);
      if (top.size() == k) {
        const double bound = std::max(0.0, double(sq_scale_) * std::sqrt(double(code_distance)) - slack);
        // In the index's distance: squared L2, or 1 - cos = |q - x|^2 / 2 for unit vectors; the
        // margin covers the float rounding of the exact distances.
        const double lower = metric() == Metric::kL2 ? bound * bound : bound * bound / 2;
        if (lower > double(top.threshold()) * (1 + 1e-4) + 1e-6) break;
      }
      top.Push(MetricDistance(metric(), q.data(), Vector(node), d), labels_[node]);
    }
    top.Extract(distances + i * k, labels + i * k);
  }
}

// The neighbour-selection heuristic (HNSW paper, algorithm 4): keep a candidate only if it is
// closer to the base than to every neighbour already kept, which spreads links across
// directions and keeps the graph navigable in clustered data.
void HnswIndex::SelectNeighbors(std::vector<std::pair<float, uint32_t>>& candidates,
                                size_t max_links, std::vector<uint32_t>* selected) const {
  selected->clear();
  std::sort(candidates.begin(), candidates.end());
  if (candidates.size() <= max_links) {
    for (auto& c : candidates) selected->push_back(c.second);
    return;
  }
  // Each candidate is set up as a query once (FP16: decoded once, not once per comparison) and
  // the distance kind is dispatched once for the whole loop.
  thread_local std::vector<float> decoded;
  Dispatch(BuildKind(), [&](auto kind) {
    for (auto& [dist, c] : candidates) {
      if (selected->size() >= max_links) break;
      bool keep = true;
      if (!selected->empty()) {
        Query q;
        q.vec = NodeFloats(c, decoded);
        q.code = Code(c);
        for (uint32_t s : *selected) {
          if (Distance<decltype(kind)::value>(q, s) < dist) {
            keep = false;
            break;
          }
        }
      }
      if (keep) selected->push_back(c);
    }
  });
}

void HnswIndex::SelectAmongRows(const std::vector<std::pair<float, uint32_t>>& candidates, const float* rows,
                                size_t max_links, std::vector<uint32_t>* selected) const {
  thread_local std::vector<uint32_t> order;
  thread_local std::vector<const float*> kept;
  order.resize(candidates.size());
  for (uint32_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](uint32_t x, uint32_t y) { return candidates[x] < candidates[y]; });
  selected->clear();
  kept.clear();
  if (candidates.size() <= max_links) {
    for (uint32_t i : order) selected->push_back(candidates[i].second);
    return;
  }
  for (uint32_t i : order) {
    if (selected->size() >= max_links) break;
    const float* row = rows + size_t{i} * dim();
    bool keep = true;
    for (const float* other : kept) {
      if (FloatBuildDistance(row, other) < candidates[i].first) {
        keep = false;
        break;
      }
    }
    if (keep) {
      selected->push_back(candidates[i].second);
      kept.push_back(row);
    }
  }
}

bool HnswIndex::SelectFromStore(uint32_t base, const float* base_vec, std::vector<std::pair<float, uint32_t>>& candidates,
                                size_t max_links, std::vector<uint32_t>* selected) const {
  thread_local std::vector<uint32_t> nodes;
  thread_local std::vector<label_t> labels;
  thread_local std::vector<float> rows;
  nodes.clear();
  if (base_vec == nullptr) nodes.push_back(base);
  for (const auto& c : candidates) nodes.push_back(c.second);
  if (!ReadNodeRows(nodes.size(), nodes.data(), labels, rows).ok()) return false;
  const size_t first = base_vec == nullptr ? 1 : 0;  // (row of the first candidate)
  if (base_vec == nullptr) base_vec = rows.data();
  for (size_t i = 0; i < candidates.size(); ++i) {
    candidates[i].first = FloatBuildDistance(base_vec, rows.data() + (first + i) * dim());
  }
  SelectAmongRows(candidates, rows.data() + first * dim(), max_links, selected);
  return true;
}

void HnswIndex::AddBackLink(uint32_t target, uint32_t node, int level) {
  std::lock_guard lock(link_locks_[target % kLockStripes]);
  uint32_t* links = Links(target, level);
  uint32_t count = links[0];
  const uint32_t max_links = static_cast<uint32_t>(MaxLinks(level));
  for (uint32_t j = 1; j <= count; ++j) {
    if (links[j] == node) return;
  }
  if (count < max_links) {
    StoreLink(links + 1 + count, node);
    StoreLink(links, count + 1);
    return;
  }
  std::vector<std::pair<float, uint32_t>> cands;
  cands.reserve(count + 1);
  std::vector<uint32_t> selected;
  if (floats_on_disk()) {
    // On a failed read the back-link is not made (node keeps its own links).
    cands.emplace_back(0.0f, node);
    for (uint32_t j = 1; j <= count; ++j) cands.emplace_back(0.0f, links[j]);
    if (!SelectFromStore(target, nullptr, cands, max_links, &selected)) return;
  } else {
    cands.emplace_back(NodeDistance(target, node), node);
    for (uint32_t j = 1; j <= count; ++j) cands.emplace_back(NodeDistance(target, links[j]), links[j]);
    SelectNeighbors(cands, max_links, &selected);
  }
  for (size_t j = 0; j < selected.size(); ++j) StoreLink(links + 1 + j, selected[j]);
  StoreLink(links, static_cast<uint32_t>(selected.size()));
}

template <HnswIndex::DistKind K>
void HnswIndex::Link(uint32_t node, const float* v, Scratch& s) {
  s.backlinks.clear();
  Query q;
  if (floats_on_disk()) {
    PrepareQuery(v, s, &q);  // (the walk on codes, like a search)
  } else {
    NodeQuery(node, s, &q);
  }
  const int level = levels_[node];
  uint64_t entry = entry_.load(std::memory_order_acquire);
  if (entry == kNoEntry) {
    std::lock_guard lock(entry_mutex_);
    entry = entry_.load(std::memory_order_acquire);
    if (entry == kNoEntry) {
      entry_.store(PackEntry(level, node), std::memory_order_release);
      return;
    }
  }
  const int top = static_cast<int>(entry >> 32);
  float dist;
  uint32_t cur = GreedyDescend<K>(q, uint32_t(entry), top, level, &dist);
  for (int l = std::min(level, top); l >= 0; --l) {
    SearchLevel<K>(q, cur, dist, l, size_t(spec_.ef_construction), s);
    s.cands.clear();
    for (size_t i = 0; i < s.pool.size(); ++i) {
      uint32_t v = s.pool.node(i);
      if (v != node && Live(v)) s.cands.emplace_back(s.pool.distance(i), v);
    }
    if (s.cands.empty()) {
      // Only tombstones around (every point removed, or the only one replaced): link to them.
      // They stay traversable until consolidation, which relinks around them, so the new node
      // is reachable from the entry point; with no links at all it never would be.
      for (size_t i = 0; i < s.pool.size(); ++i) {
        uint32_t v = s.pool.node(i);
        if (v != node) s.cands.emplace_back(s.pool.distance(i), v);
      }
    }
    if (s.pool.size() > 0) {
      cur = s.pool.node(0);
      dist = s.pool.distance(0);
    }
    if (floats_on_disk()) {
      // The walk's estimates found the candidates; their float vectors, read back in one batch,
      // give exact distances to rank and select them by (on a failed read: the nearest by estimate).
      if (!SelectFromStore(node, q.vec, s.cands, size_t(m_), &s.selected)) {
        std::sort(s.cands.begin(), s.cands.end());
        s.selected.clear();
        for (size_t i = 0; i < std::min(s.cands.size(), size_t(m_)); ++i) s.selected.push_back(s.cands[i].second);
      }
    } else {
      SelectNeighbors(s.cands, size_t(m_), &s.selected);
    }
    {
      std::lock_guard lock(link_locks_[node % kLockStripes]);
      uint32_t* links = Links(node, l);
      for (size_t j = 0; j < s.selected.size(); ++j) StoreLink(links + 1 + j, s.selected[j]);
      StoreLink(links, static_cast<uint32_t>(s.selected.size()));
    }
    for (uint32_t v : s.selected) s.backlinks.emplace_back(l, v);
  }
  // Only now, with its lists written on every level, does the node become reachable: a back-link
  // on an upper level made earlier would let a concurrent search descend into a node whose
  // level-0 list is still empty, and return fewer than k results or miss points.
  // (From the list chosen above, not re-read: once reachable on one level, other inserts may
  // already be rewriting the node's lists on the others.)
  for (const auto& [l, v] : s.backlinks) AddBackLink(v, node, l);
  if (level > top) {
    std::lock_guard lock(entry_mutex_);
    if (level > static_cast<int>(entry_.load() >> 32)) {
      entry_.store(PackEntry(level, node), std::memory_order_release);
    }
  }
}

// Allocates a node for `label` and links it. Returns false (having changed nothing) when the
// arrays are full and must grow under the exclusive lock first.
bool HnswIndex::TryInsert(const float* v, label_t label, Scratch& s) {
  uint32_t node;
  {
    std::lock_guard lock(label_mutex_);
    if (!free_nodes_.empty()) {
      node = free_nodes_.back();
      free_nodes_.pop_back();
    } else if (num_nodes_ < capacity_) {
      node = num_nodes_++;
    } else {
      return false;
    }
  }
  // The node is unreachable until linked and its label unpublished: fill it without locks.
  labels_[node] = label;
  int level = RandomLevel();
  levels_[node] = static_cast<uint8_t>(level);
  std::memset(blocks_.data() + size_t{node} * node_bytes_, 0, node_bytes_);
  if (level > 0) {
    size_t words = size_t(level) * (1 + m_);
    upper_[node].reset(new uint32_t[words]());
    upper_words_ += words;
  }
  EncodeNode(node, v);
  state_[node].store(kLive, std::memory_order_release);
  {
    // Publishing the label after the vector is written lets Reconstruct and SearchAmong read
    // it safely. Replacing: the old node becomes a tombstone before the new one is linked, so
    // a search never returns the label twice.
    std::lock_guard lock(label_mutex_);
    auto [it, inserted] = node_of_.try_emplace(label, node);
    if (!inserted) {
      state_[it->second].store(kTombstone, std::memory_order_release);
      ++tombstones_;
      it->second = node;
    }
  }
  Dispatch(BuildKind(), [&](auto kind) { Link<decltype(kind)::value>(node, v, s); });
  return true;
}

Status HnswIndex::CheckValues(size_t n, const float* x) const {
  // (cosine stores unit vectors)
  if (spec_.fp16 && metric() != Metric::kCosine) return CheckHalfRange(n, dim(), x, "an FP16 index");
  return Status::OK();
}

Status HnswIndex::Add(size_t n, const float* x, const label_t* labels, const AddOptions& options) {
  FATHOM_RETURN_IF_ERROR(ValidateVectors(n, x));
  FATHOM_RETURN_IF_ERROR(CheckValues(n, x));
  if (n == 0) return Status::OK();
  std::vector<label_t> assigned;
  {
    std::lock_guard lock(label_mutex_);
    label_t next = next_label_;
    FATHOM_RETURN_IF_ERROR(PrepareLabels(n, labels, &next, &assigned));
    next_label_ = next;
  }
  {
    std::unique_lock lock(structure_mutex_);
    const bool rbq_due = spec_.rbq && (!rbq_.trained() || (rbq_trained_points_ < kRbqFullTraining &&
                                                           num_nodes_ + n >= 2 * rbq_trained_points_));
    const bool sq4_due = spec_.sq4 && (!sq4_.trained() || (sq4_trained_points_ < kRetrainPoints &&
                                                           num_nodes_ + n >= kRetrainPoints));
    if ((spec_.sq8 && !sq_trained_) || rbq_due || sq4_due) {
      TrainQuantizerLocked(n, x);
    }
    MaybeTrainPcaLocked(n, x);
    size_t free_count;
    {
      std::lock_guard label_lock(label_mutex_);
      free_count = free_nodes_.size();
      GrowLocked(num_nodes_ + (n > free_count ? n - free_count : 0));
    }
  }
  std::atomic<size_t> next_item{0};
  auto worker = [&] {
    ScratchLease lease(*this);
    for (size_t i = next_item++; i < n; i = next_item++) {
      while (true) {
        {
          std::shared_lock lock(structure_mutex_);
          if (TryInsert(x + i * dim(), assigned[i], *lease)) break;
        }
        std::unique_lock lock(structure_mutex_);
        std::lock_guard label_lock(label_mutex_);
        GrowLocked(num_nodes_ + 1);
      }
    }
  };
  size_t threads = options.threads > 0 ? size_t(options.threads)
                                       : std::max(1u, std::thread::hardware_concurrency());
  threads = std::min(threads, n);
  std::vector<std::thread> pool;
  for (size_t t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  generation_.fetch_add(1, std::memory_order_acq_rel);
  // Amortised: a walk over the graph once the inserts since the last one reach a tenth of it.
  const size_t since = inserts_since_reachability_check_ += n;
  if (since >= std::max<size_t>(1024, num_nodes_.load() / 10)) EnsureReachable();
  return MaybeConsolidate();
}

size_t HnswIndex::EnsureReachable() {
  // The walk first runs under the shared lock, beside searches: it nearly always finds every
  // live node reached, and then the exclusive lock (which stops searches for a walk over the
  // whole graph, seconds at 10M nodes) is not taken at all.
  {
    std::shared_lock lock(structure_mutex_);
    const uint64_t entry = entry_.load();
    const uint32_t nodes = num_nodes_.load();
    if (entry == kNoEntry || nodes == 0) return 0;
    std::vector<uint8_t> reached(nodes, 0);
    std::vector<uint32_t> queue;
    WalkLevel0(uint32_t(entry), reached, queue);
    bool all = true;
    for (uint32_t x = 0; x < nodes && all; ++x) {
      all = reached[x] || state_[x].load(std::memory_order_relaxed) != kLive;
    }
    if (all) {
      inserts_since_reachability_check_ = 0;
      return 0;
    }
  }
  std::unique_lock lock(structure_mutex_);
  std::lock_guard label_lock(label_mutex_);
  return EnsureReachableLocked();
}

void HnswIndex::WalkLevel0(uint32_t start, std::vector<uint8_t>& reached, std::vector<uint32_t>& queue) const {
  if (reached[start]) return;
  reached[start] = 1;
  queue.assign(1, start);
  const uint32_t nodes = static_cast<uint32_t>(reached.size());
  for (size_t head = 0; head < queue.size(); ++head) {
    // The queue says which blocks come next: fetch them ahead (a random walk over a large
    // graph is otherwise one cache and TLB miss per node).
    if (head + 16 < queue.size()) __builtin_prefetch(Links(queue[head + 16], 0), 0, 1);
    const uint32_t* links = Links(queue[head], 0);
    const uint32_t count = std::min<uint32_t>(LoadLink(links), m0_);
    for (uint32_t j = 1; j <= count; ++j) {
      const uint32_t v = LoadLink(links + j);
      if (v < nodes && !reached[v]) {  // (a node allocated after the walk began: not counted)
        reached[v] = 1;
        queue.push_back(v);
      }
    }
  }
}

size_t HnswIndex::EnsureReachableLocked() {
  inserts_since_reachability_check_ = 0;
  const uint64_t entry = entry_.load();
  const uint32_t nodes = num_nodes_.load();
  if (entry == kNoEntry || nodes == 0) return 0;
  ScratchLease lease(*this);
  Scratch& s = *lease;
  // Level-0 in-degrees, so that a link is only ever moved away from a node that keeps another;
  // counted only once a walk has found an unreached node (nearly never: the walk alone is the
  // common cost, e.g. at every load).
  std::vector<uint32_t> in_degree;
  auto count_in_degrees = [&] {
    if (!in_degree.empty()) return;
    in_degree.assign(nodes, 0);
    for (uint32_t u = 0; u < nodes; ++u) {
      if (state_[u].load(std::memory_order_relaxed) == kFree) continue;
      const uint32_t* links = Links(u, 0);
      for (uint32_t j = 1; j <= links[0]; ++j) ++in_degree[links[j]];
    }
  };
  std::vector<uint8_t> reached(nodes, 0);
  std::vector<uint32_t> queue;
  auto walk_from = [&](uint32_t start) { WalkLevel0(start, reached, queue); };
  size_t relinked = 0;
  // A fix can move a link away from a node whose only other in-link was itself unreached; a few
  // rounds settle it (one is nearly always enough). A round whose fixes only appended links
  // removed none, so nothing it reached can have become unreachable: no re-walk is needed.
  for (int round = 0; round < 4; ++round) {
    std::fill(reached.begin(), reached.end(), 0);
    walk_from(uint32_t(entry));
    size_t fixed = 0, unlinked = 0;
    bool moved_links = false;
    for (uint32_t x = 0; x < nodes; ++x) {
      if (reached[x] || state_[x].load(std::memory_order_relaxed) != kLive) continue;
      count_in_degrees();
      // Candidates to link from: reached nodes near x, nearest first. x's own neighbours come
      // first; a beam search from the entry point finds more when none of them is reached.
      s.cands.clear();
      const uint32_t* own = Links(x, 0);
      for (uint32_t j = 1; j <= own[0]; ++j) {
        if (reached[own[j]] && state_[own[j]].load() != kFree) s.cands.emplace_back(NodeDistance(x, own[j]), own[j]);
      }
      if (s.cands.empty()) {
        Query q;
        if (!NodeQuery(x, s, &q)) continue;  // (its row unreadable: tried again next time)
        float d;
        auto search = [&](auto kind) {
          constexpr DistKind K = decltype(kind)::value;
          uint32_t ep = GreedyDescend<K>(q, uint32_t(entry), static_cast<int>(entry >> 32), 0, &d);
          SearchLevel<K>(q, ep, d, 0, size_t(spec_.ef_construction), s);
        };
        Dispatch(BuildKind(), search);
        s.cands.clear();
        for (size_t i = 0; i < s.pool.size(); ++i) {
          const uint32_t v = s.pool.node(i);
          if (v != x && reached[v]) s.cands.emplace_back(s.pool.distance(i), v);
        }
      }
      std::sort(s.cands.begin(), s.cands.end());
      bool linked = false;
      for (const auto& [dist, r] : s.cands) {
        uint32_t* links = Links(r, 0);
        if (links[0] < uint32_t(m0_)) {
          links[1 + links[0]] = x;
          ++links[0];
          linked = true;
        } else {
          // Replace r's farthest link whose target has another in-link.
          float worst = -1;
          uint32_t slot = 0;
          for (uint32_t j = 1; j <= links[0]; ++j) {
            const uint32_t y = links[j];
            if (in_degree[y] < 2) continue;
            const float dy = NodeDistance(r, y);
            if (dy > worst) {
              worst = dy;
              slot = j;
            }
          }
          if (slot != 0) {
            --in_degree[links[slot]];
            links[slot] = x;
            linked = true;
            moved_links = true;
          }
        }
        if (linked) {
          ++in_degree[x];
          walk_from(x);
          ++fixed;
          break;
        }
      }
      // No candidate could take a link this round: one reached later in the round may.
      if (!reached[x]) ++unlinked;
    }
    relinked += fixed;
    if (fixed == 0 || (!moved_links && unlinked == 0)) break;
  }
  return relinked;
}

Status HnswIndex::Remove(size_t n, const label_t* labels, size_t* removed) {
  size_t count = 0;
  {
    std::shared_lock lock(structure_mutex_);
    std::lock_guard label_lock(label_mutex_);
    for (size_t i = 0; i < n; ++i) {
      auto it = node_of_.find(labels[i]);
      if (it == node_of_.end()) continue;
      state_[it->second].store(kTombstone, std::memory_order_release);
      node_of_.erase(it);
      ++tombstones_;
      ++count;
    }
  }
  if (count > 0) generation_.fetch_add(1, std::memory_order_acq_rel);
  if (removed != nullptr) *removed = count;
  return MaybeConsolidate();
}

Status HnswIndex::CanUseVectorStore() const {
  const std::string hnsw = "HNSW" + std::to_string(spec_.m);
  if ((spec_.sq8 && metric() != Metric::kInnerProduct) || spec_.fp16 || spec_.sq4 || spec_.rbq) return Status::OK();
  return VectorStoreRefusal(hnsw, factory_string(), metric());
}

Status HnswIndex::SetVectorStore(std::shared_ptr<VectorStore> store) {
  FATHOM_RETURN_IF_ERROR(CanUseVectorStore());
  if (store == nullptr || store->dim() != dim()) {
    return Status::InvalidArgument("vector store dimension does not match the index's " + std::to_string(dim()));
  }
  std::unique_lock lock(structure_mutex_);
  std::lock_guard label_lock(label_mutex_);
  if (num_nodes_ != 0) return Status::InvalidArgument("a vector store must be attached before the first Add");
  store_ = std::move(store);
  vectors_.Reset();
  return Status::OK();
}

uint64_t HnswIndex::disk_bytes() const { return store_ ? store_->disk_bytes() : 0; }

bool HnswIndex::NeedsMaintenance() const {
  std::lock_guard lock(label_mutex_);
  return tombstones_ >= kMinTombstonesForConsolidation &&
         double(tombstones_) >= kTombstoneFraction * double(num_nodes_);
}

Status HnswIndex::MaybeConsolidate() {
  if (inline_maintenance_.load() && NeedsMaintenance()) Consolidate();
  return Status::OK();
}

void HnswIndex::Consolidate() {
  std::unique_lock lock(structure_mutex_);
  std::lock_guard label_lock(label_mutex_);
  if (tombstones_ == 0) return;
  generation_.fetch_add(1, std::memory_order_acq_rel);  // (nodes freed below are reused by inserts)
  ScratchLease lease(*this);
  Scratch& s = *lease;
  std::vector<uint32_t> old_links;
  for (uint32_t u = 0; u < num_nodes_; ++u) {
    if (state_[u].load() != kLive) continue;
    for (int l = 0; l <= levels_[u]; ++l) {
      uint32_t* links = Links(u, l);
      uint32_t count = links[0];
      bool affected = false;
      for (uint32_t j = 1; j <= count && !affected; ++j) affected = state_[links[j]].load() != kLive;
      if (!affected) continue;
      // Candidates: u's live neighbours, and the live neighbours of its dead ones.
      s.NewEpoch(capacity_, dense_visited_max_nodes_);
      s.Visit(u);
      s.cands.clear();
      old_links.assign(links + 1, links + 1 + count);
      // (With floats on disk the distances come from one batch read below.)
      const bool on_disk = floats_on_disk();
      for (uint32_t v : old_links) {
        if (!s.Visit(v)) continue;
        if (state_[v].load() == kLive) {
          s.cands.emplace_back(on_disk ? 0.0f : NodeDistance(u, v), v);
          continue;
        }
        const uint32_t* vl = Links(v, l);
        for (uint32_t j = 1; j <= vl[0]; ++j) {
          uint32_t w = vl[j];
          if (state_[w].load() == kLive && s.Visit(w)) s.cands.emplace_back(on_disk ? 0.0f : NodeDistance(u, w), w);
        }
      }
      if (on_disk) {
        if (!SelectFromStore(u, nullptr, s.cands, size_t(MaxLinks(l)), &s.selected)) {
          // A failed read: live links only (the dead ones are freed below), first found first.
          s.selected.clear();
          for (size_t i = 0; i < std::min(s.cands.size(), size_t(MaxLinks(l))); ++i) s.selected.push_back(s.cands[i].second);
        }
      } else {
        SelectNeighbors(s.cands, size_t(MaxLinks(l)), &s.selected);
      }
      for (size_t j = 0; j < s.selected.size(); ++j) links[1 + j] = s.selected[j];
      links[0] = static_cast<uint32_t>(s.selected.size());
    }
  }
  uint64_t entry = entry_.load();
  bool entry_dead = entry != kNoEntry && state_[uint32_t(entry)].load() != kLive;
  for (uint32_t u = 0; u < num_nodes_; ++u) {
    if (state_[u].load() != kTombstone) continue;
    state_[u].store(kFree);
    if (upper_[u]) {
      upper_words_ -= size_t(levels_[u]) * (1 + m_);
      upper_[u].reset();
    }
    levels_[u] = 0;
    free_nodes_.push_back(u);
  }
  tombstones_ = 0;
  if (entry_dead) {
    uint64_t best = kNoEntry;
    int best_level = -1;
    for (uint32_t u = 0; u < num_nodes_; ++u) {
      if (state_[u].load() == kLive && levels_[u] > best_level) {
        best_level = levels_[u];
        best = PackEntry(best_level, u);
      }
    }
    entry_.store(best);
  }
  EnsureReachableLocked();
}

bool HnswIndex::Contains(label_t label) const {
  std::lock_guard lock(label_mutex_);
  return node_of_.count(label) != 0;
}

Status HnswIndex::Reconstruct(label_t label, float* out) const {
  std::shared_lock lock(structure_mutex_);
  std::lock_guard label_lock(label_mutex_);
  auto it = node_of_.find(label);
  if (it == node_of_.end()) {
    return Status::NotFound("label " + std::to_string(label) + " is not in the index");
  }
  if (store_) return store_->Read(1, &label, out);
  if (spec_.fp16) {
    simd::Active().f16_to_f32(reinterpret_cast<const uint16_t*>(Code(it->second)), out, dim());
    return Status::OK();
  }
  std::memcpy(out, Vector(it->second), dim() * sizeof(float));
  return Status::OK();
}

// Body (format version 2): node count, entry, quantizer, next label, whether float vectors are
// stored; then per node its state and, unless free, its label, level, level-0 block, float
// vector (SQ8) and upper-level lists. Node-major, so a concurrent save can copy the graph a
// chunk of nodes at a time under the shared structure lock and write each chunk to disk with
// no lock held: Add, Remove and Search go on meanwhile (a growth or consolidation waits for at
// most one chunk).
Status HnswIndex::SerializeBody(ByteSink& out, const SaveOptions& options) const {
  // Without `concurrent` the caller promises no writers: hold the locks for the whole save.
  // Held too while a retraining of the SQ4 or RBQ quantizer can still come (the index is then
  // small: fewer than 2 * kRbqFullTraining nodes), which re-encodes every node: chunks copied
  // before and after it would hold codes of two quantizers.
  bool concurrent = options.concurrent;
  if (concurrent) {
    std::shared_lock probe(structure_mutex_);  // (once false, it stays false)
    concurrent = !(spec_.sq4 && sq4_trained_points_ < kRetrainPoints) &&
                 !(spec_.rbq && rbq_trained_points_ < kRbqFullTraining);
  }
  std::shared_lock whole(structure_mutex_, std::defer_lock);
  std::unique_lock whole_labels(label_mutex_, std::defer_lock);
  if (!concurrent) {
    whole.lock();
    whole_labels.lock();
  }
  std::string head;
  uint32_t nodes;
  {
    std::shared_lock lock(structure_mutex_, std::defer_lock);
    std::unique_lock label_lock(label_mutex_, std::defer_lock);
    if (concurrent) {
      lock.lock();
      label_lock.lock();
    }
    nodes = num_nodes_;
    AppendPod(&head, nodes);
    AppendPod(&head, entry_.load());
    AppendPod(&head, uint8_t{sq_trained_});
    AppendPod(&head, sq_lo_);
    AppendPod(&head, sq_scale_);
    AppendPod(&head, next_label_);
    AppendPod(&head, uint8_t{bool(vectors_)});  // float vectors follow each SQ8 node's block
    if (spec_.rbq) {
      // RBQ (a new kind, so no format version): 0 untrained, 1 trained, 2 trained on fewer
      // than kRbqFullTraining points (so trained again as they grow) and then that count
      // (uint64); then the quantizer.
      const bool final = rbq_trained_points_ >= kRbqFullTraining;
      AppendPod(&head, uint8_t(!rbq_.trained() ? 0 : final ? 1 : 2));
      if (rbq_.trained() && !final) AppendPod(&head, uint64_t{rbq_trained_points_});
      StringSink sink(&head);
      if (rbq_.trained()) FATHOM_RETURN_IF_ERROR(rbq_.Serialize(sink));
    }
    if (spec_.sq4) {
      // SQ4 (a new kind too): whether trained, then the per-dimension ranges.
      AppendPod(&head, uint8_t{sq4_.trained()});
      AppendPod(&head, uint64_t{sq4_trained_points_});
      StringSink sink(&head);
      if (sq4_.trained()) FATHOM_RETURN_IF_ERROR(sq4_.Serialize(sink));
    }
    if (pca_dims_ != 0) {
      // pca=<p> (a new option, so no format version): whether the projection is learnt, then
      // its p x dim basis, p offsets, p lows and p steps (float32). Each node's block then holds
      // its projection (p bytes) after its code.
      const bool ready = pca_ready_.load();
      AppendPod(&head, uint8_t{ready});
      if (ready) {
        for (const auto* v : {&pca_basis_, &pca_bias_, &pca_lo_, &pca_step_}) {
          AppendBytes(&head, v->data(), v->size() * sizeof(float));
        }
      }
    }
  }
  FATHOM_RETURN_IF_ERROR(out.Write(head.data(), head.size()));
  constexpr uint32_t kChunk = 4096;
  std::string chunk;
  for (uint32_t begin = 0; begin < nodes; begin += kChunk) {
    const uint32_t end = std::min(nodes, begin + kChunk);
    chunk.clear();
    {
      std::shared_lock lock(structure_mutex_, std::defer_lock);
      if (concurrent) lock.lock();
      for (uint32_t u = begin; u < end; ++u) {
        // The state is read first (acquire): a node seen live or tombstoned has its label,
        // level, code and upper lists written, and none of them changes while we hold the
        // structure lock (only Consolidate frees a node); its links may, so they are read
        // word by word with atomic loads.
        const uint8_t state = state_[u].load(std::memory_order_acquire);
        AppendPod(&chunk, state);
        if (state == kFree) continue;
        AppendPod(&chunk, labels_[u]);
        AppendPod(&chunk, levels_[u]);
        const size_t at = chunk.size();
        chunk.resize(at + node_bytes_);
        auto* links = reinterpret_cast<uint32_t*>(chunk.data() + at);
        const uint32_t* src = Links(u, 0);
        for (size_t j = 0; j < size_t(1 + m0_); ++j) links[j] = LoadLink(src + j);
        // The file keeps the code right after the links (padding after it, zero).
        std::memcpy(chunk.data() + at + links0_bytes_, Code(u), code_bytes_);
        if (pca_dims_ != 0) std::memcpy(chunk.data() + at + pca_offset_, WalkCode<DistKind::kSq8Pca>(u), pca_dims_);
        if (vectors_) AppendBytes(&chunk, Vector(u), dim() * sizeof(float));
        for (int l = 1; l <= levels_[u]; ++l) {
          const uint32_t* list = Links(u, l);
          for (size_t j = 0; j < size_t(1 + m_); ++j) AppendPod(&chunk, LoadLink(list + j));
        }
      }
    }
    FATHOM_RETURN_IF_ERROR(out.Write(chunk.data(), chunk.size()));
  }
  return Status::OK();
}

Status HnswIndex::DeserializeBody(ByteSource& r, uint64_t count, uint32_t version, bool fuzzy) {
  std::unique_lock lock(structure_mutex_);
  std::lock_guard label_lock(label_mutex_);
  uint32_t nodes;
  uint64_t entry;
  uint8_t trained;
  FATHOM_RETURN_IF_ERROR(r.Read(&nodes));
  FATHOM_RETURN_IF_ERROR(r.Read(&entry));
  FATHOM_RETURN_IF_ERROR(r.Read(&trained));
  FATHOM_RETURN_IF_ERROR(r.Read(&sq_lo_));
  FATHOM_RETURN_IF_ERROR(r.Read(&sq_scale_));
  FATHOM_RETURN_IF_ERROR(r.Read(&next_label_));
  sq_trained_ = trained != 0;
  sq8_exact_.store(false);  // (set again below when the float vectors show it)
  const size_t per_node = version >= 2 ? 1 : sizeof(label_t) + 2 + node_bytes_;
  if (r.remaining() < size_t{nodes} * per_node) {
    return Status::Corruption("HNSW index body is truncated: " + std::to_string(nodes) +
                              " nodes need more than the " + std::to_string(r.remaining()) +
                              " bytes left");
  }
  // Room for 1/8 more nodes: pages nobody touches cost no memory, and without it the first insert
  // after a load doubles the arrays, copying the whole graph under the structure lock (11 s of
  // blocked searches at 10M nodes on this VM, for a 10-point upsert).
  GrowLocked(size_t{nodes} + nodes / 8);
  num_nodes_ = nodes;
  node_of_.clear();
  node_of_.reserve(std::min<uint64_t>(count, nodes));  // count is not trusted until the checksum is
  free_nodes_.clear();
  tombstones_ = 0;
  upper_words_ = 0;
  auto read_upper = [&](uint32_t u) -> Status {
    if (levels_[u] == 0) return Status::OK();
    size_t words = size_t(levels_[u]) * (1 + m_);
    upper_[u].reset(new uint32_t[words]);
    upper_words_ += words;
    return r.ReadBytes(upper_[u].get(), words * sizeof(uint32_t));
  };
  auto read_head = [&](uint32_t u, uint8_t state) -> Status {
    if (state > kFree) return Status::Corruption("HNSW node " + std::to_string(u) + " has an invalid state");
    state_[u].store(state);
    if (state == kFree) {
      levels_[u] = 0;
      return Status::OK();
    }
    FATHOM_RETURN_IF_ERROR(r.Read(&labels_[u]));
    FATHOM_RETURN_IF_ERROR(r.Read(&levels_[u]));
    if (levels_[u] > kMaxLevel) return Status::Corruption("HNSW node " + std::to_string(u) + " has an invalid level");
    return Status::OK();
  };
  if (version >= 2) {
    uint8_t inline_vectors;
    FATHOM_RETURN_IF_ERROR(r.Read(&inline_vectors));
    const bool expect_inline = floats_beside_codes() && !store_;
    if (inline_vectors != uint8_t{expect_inline}) {
      return Status::Corruption(
          "HNSW index body " + std::string(inline_vectors ? "holds" : "does not hold") +
          " float vectors, but this '" + factory_string() + "' index " +
          (store_ ? "keeps them in a vector store (on disk)" : floats_beside_codes() ? "needs them" : "keeps them in its nodes"));
    }
    if (spec_.rbq) {
      uint8_t rbq_trained;
      FATHOM_RETURN_IF_ERROR(r.Read(&rbq_trained));
      if (rbq_trained > 2) return Status::Corruption("HNSW index body has an invalid RaBitQ flag");
      rbq_trained_points_ = kRbqFullTraining;
      if (rbq_trained == 2) {
        uint64_t points;
        FATHOM_RETURN_IF_ERROR(r.Read(&points));
        rbq_trained_points_ = size_t(std::min<uint64_t>(points, kRbqFullTraining));
      }
      if (rbq_trained) FATHOM_RETURN_IF_ERROR(rbq_.Deserialize(r));
    }
    if (spec_.sq4) {
      uint8_t sq4_trained;
      FATHOM_RETURN_IF_ERROR(r.Read(&sq4_trained));
      if (sq4_trained > 1) return Status::Corruption("HNSW index body has an invalid SQ4 flag");
      uint64_t points;
      FATHOM_RETURN_IF_ERROR(r.Read(&points));
      sq4_trained_points_ = points;
      if (sq4_trained) FATHOM_RETURN_IF_ERROR(sq4_.Deserialize(r));
    }
    if (pca_dims_ != 0) FATHOM_RETURN_IF_ERROR(ReadPca(r));
    for (uint32_t u = 0; u < nodes; ++u) {
      uint8_t state;
      FATHOM_RETURN_IF_ERROR(r.Read(&state));
      FATHOM_RETURN_IF_ERROR(read_head(u, state));
      if (state == kFree) continue;
      FATHOM_RETURN_IF_ERROR(r.ReadBytes(blocks_.data() + size_t{u} * node_bytes_, node_bytes_));
      PlaceCodeAfterLoad(u);
      SetSq8Norm(u);
      if (vectors_) FATHOM_RETURN_IF_ERROR(r.ReadBytes(Vector(u), dim() * sizeof(float)));
      FATHOM_RETURN_IF_ERROR(read_upper(u));
    }
  } else if (spec_.rbq || spec_.sq4) {
    return Status::Corruption("an HNSW index with " + std::string(spec_.rbq ? "RaBitQ" : "SQ4") +
                              " codes needs format version 2 or later");
  } else {
    // Version 1: all (label, level, state) triples, all blocks, all float vectors, then the
    // upper lists.
    for (uint32_t u = 0; u < nodes; ++u) {
      uint8_t state;
      FATHOM_RETURN_IF_ERROR(r.Read(&labels_[u]));
      FATHOM_RETURN_IF_ERROR(r.Read(&levels_[u]));
      FATHOM_RETURN_IF_ERROR(r.Read(&state));
      if (state > kFree || levels_[u] > kMaxLevel) {
        return Status::Corruption("HNSW node " + std::to_string(u) + " has an invalid state or level");
      }
      state_[u].store(state);
    }
    FATHOM_RETURN_IF_ERROR(r.ReadBytes(blocks_.data(), size_t{nodes} * node_bytes_));
    for (uint32_t u = 0; u < nodes; ++u) {
      PlaceCodeAfterLoad(u);
      SetSq8Norm(u);
    }
    if (spec_.sq8) FATHOM_RETURN_IF_ERROR(r.ReadBytes(vectors_.data(), size_t{nodes} * dim() * sizeof(float)));
    for (uint32_t u = 0; u < nodes; ++u) {
      if (state_[u].load() == kFree) {
        levels_[u] = 0;
        continue;
      }
      FATHOM_RETURN_IF_ERROR(read_upper(u));
    }
  }
  // Integer data (see sq8_exact_): the float vectors just read say whether every code is exact.
  if (spec_.sq8 && vectors_ && sq_trained_ && sq_scale_ == 1.0f && metric() == Metric::kL2) {
    bool exact = true;
    for (uint32_t u = 0; u < nodes && exact; ++u) {
      if (state_[u].load() != kFree) exact = Sq8DecodesExactly(Vector(u), Code(u));
    }
    sq8_exact_.store(exact);
  }
  // A projection not learnt when the file was written (too few nodes then) is learnt now.
  if (pca_dims_ != 0 && !pca_ready_.load()) MaybeTrainPcaLocked(0, nullptr);
  // Labels, on a second thread while the links are checked below (the two passes touch
  // different memory; at 10M nodes each takes seconds). A concurrent save can catch a label on
  // two nodes (its old and its new node during a replacement): one becomes a tombstone, and the
  // caller's replay re-applies that label. Only the atomic node states are shared: the link
  // check reads whether a node is free, which this pass never changes; the entry-point choice
  // and the reachability walk may see a duplicate become a tombstone early or late, which
  // changes nothing they guarantee (the caller replays that label anyway).
  Status label_status;
  std::thread label_pass([&]() noexcept {
  try {
  for (uint32_t u = 0; u < nodes; ++u) {
    const uint8_t state = state_[u].load();
    if (state == kTombstone) {
      ++tombstones_;
    } else if (state == kFree) {
      free_nodes_.push_back(u);
    } else if (labels_[u] < 0 || !node_of_.emplace(labels_[u], u).second) {
      if (!fuzzy || labels_[u] < 0) {
        label_status = Status::Corruption("HNSW node " + std::to_string(u) + " has an invalid or repeated label " +
                                          std::to_string(labels_[u]));
        return;
      }
      state_[u].store(kTombstone);
      ++tombstones_;
    }
  }
  if (node_of_.size() != count && !fuzzy) {
    label_status = Status::Corruption("HNSW index holds " + std::to_string(node_of_.size()) +
                                      " live vectors but its header says " + std::to_string(count));
  }
  } catch (const std::exception& e) {
    label_status = Status::Internal(std::string("HNSW load: ") + e.what());
  }
  });
  struct Join {
    std::thread& t;
    ~Join() {
      if (t.joinable()) t.join();
    }
  } join_label_pass{label_pass};
  // Never trust links read from disk: every id must name an allocated node of that level. A
  // concurrent save may have caught a link to a node that was allocated after that node's
  // chunk was copied, or a list mid-update: such links are dropped (reachability is restored
  // below), anything else is corruption.
  for (uint32_t u = 0; u < nodes; ++u) {
    if (state_[u].load() == kFree) continue;
    for (int l = 0; l <= levels_[u]; ++l) {
      uint32_t* links = Links(u, l);
      if (links[0] > uint32_t(MaxLinks(l))) {
        if (!fuzzy) {
          return Status::Corruption("HNSW node " + std::to_string(u) + " has " + std::to_string(links[0]) +
                                    " links at level " + std::to_string(l));
        }
        links[0] = uint32_t(MaxLinks(l));
      }
      uint32_t kept = 0;
      for (uint32_t j = 1; j <= links[0]; ++j) {
        const uint32_t v = links[j];
        const bool valid = v < nodes && state_[v].load() != kFree && levels_[v] >= l;
        if (!valid && !fuzzy) {
          return Status::Corruption("HNSW node " + std::to_string(u) + " links to invalid node " +
                                    std::to_string(v));
        }
        if (valid) links[1 + kept++] = v;
      }
      links[0] = kept;
    }
  }
  if (entry != kNoEntry) {
    uint32_t e = uint32_t(entry);
    if (e >= nodes || state_[e].load() == kFree || levels_[e] != int(entry >> 32)) {
      if (!fuzzy) return Status::Corruption("HNSW entry point " + std::to_string(e) + " is invalid");
      entry = kNoEntry;
    }
  }
  if (entry == kNoEntry) {
    // Empty, or (concurrent save) an entry that changed: the highest live node.
    int best_level = -1;
    for (uint32_t u = 0; u < nodes; ++u) {
      if (state_[u].load() == kLive && levels_[u] > best_level) {
        best_level = levels_[u];
        entry = PackEntry(best_level, u);
      }
    }
    if (entry != kNoEntry && !fuzzy) return Status::Corruption("HNSW index has vectors but no entry point");
  }
  entry_.store(entry);
  // Files written before reachability was maintained, and concurrent saves, may hold nodes no
  // link leads to.
  EnsureReachableLocked();
  label_pass.join();
  return label_status;
}

}  // namespace fathom
