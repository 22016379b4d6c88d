#include "index/ivf.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <thread>

#include "index/flat.h"
#include "index/hnsw.h"
#include "index/kmeans.h"
#include "index/topk.h"
#include "simd/distance.h"
#include "util/file.h"

namespace fathom {
namespace {

constexpr uint32_t kPendingList = 0xFFFFFFFFu;
constexpr size_t kMaxPqTrainingPoints = 65536;
constexpr size_t kMaxOpqTrainingPoints = 16384;

inline uint64_t Where(uint32_t list, uint32_t pos) { return uint64_t{list} << 32 | pos; }
inline uint32_t ListOf(uint64_t where) { return uint32_t(where >> 32); }
inline uint32_t PosOf(uint64_t where) { return uint32_t(where); }

// Runs fn(begin, end) over [0, n) split across up to `threads` threads (0 = all cores);
// batches too small to be worth a thread run on the caller's.
template <class Fn>
void ParallelFor(size_t n, int threads, Fn fn) {
  size_t t = threads > 0 ? size_t(threads) : std::max(1u, std::thread::hardware_concurrency());
  t = std::min(t, std::max<size_t>(1, n / 512));
  if (t <= 1) {
    fn(size_t{0}, n);
    return;
  }
  const size_t chunk = (n + t - 1) / t;
  std::vector<std::thread> pool;
  for (size_t i = 1; i < t; ++i) {
    const size_t b = std::min(n, i * chunk), e = std::min(n, (i + 1) * chunk);
    if (b < e) pool.emplace_back(fn, b, e);
  }
  fn(size_t{0}, std::min(n, chunk));
  for (auto& th : pool) th.join();
}

}  // namespace

struct IvfIndex::Encoded {
  std::vector<uint32_t> lists;
  std::vector<uint8_t> codes;
  std::vector<float> terms;
};

IvfIndex::IvfIndex(size_t dim, Metric metric, const IndexSpec& spec)
    : Index(dim, metric),
      spec_(spec),
      sq_(dim, spec.code == IndexSpec::Code::kSq4 ? 4 : 8),
      pq_(dim, spec.code == IndexSpec::Code::kPq || spec.code == IndexSpec::Code::kPq4fs ? size_t(spec.pq_m) : 1,
          spec.code == IndexSpec::Code::kPq4fs ? 4 : 8),
      opq_(dim),
      rbq_(dim) {
  // Bytes per entry of a batch's codes (fast scan packs them into blocks in the lists).
  code_size_ = spec.code == IndexSpec::Code::kSq8   ? dim
               : spec.code == IndexSpec::Code::kSq4  ? (dim + 1) / 2
               : spec.code == IndexSpec::Code::kFlat ? 0
               : spec.code == IndexSpec::Code::kRbq  ? rbq_.code_size()
               : spec.code == IndexSpec::Code::kFp16 ? 2 * dim
                                                     : size_t(spec.pq_m);
  lists_.resize(size_t(spec.nlist));
}

IvfIndex::~IvfIndex() = default;

size_t IvfIndex::size() const {
  std::shared_lock lock(mutex_);
  return where_.size();
}

bool IvfIndex::is_trained() const {
  std::shared_lock lock(mutex_);
  return trained_;
}

size_t IvfIndex::train_threshold() const {
  size_t t = kTrainPointsPerList * size_t(spec_.nlist);
  if (product_codes()) t = std::max<size_t>(t, 10 * pq_.ksub());
  return t;
}

size_t IvfIndex::memory_bytes() const {
  std::shared_lock lock(mutex_);
  size_t bytes = (centroids_.capacity() + centroid_norms_.capacity() + pending_.capacity()) * sizeof(float) +
                 pending_labels_.capacity() * sizeof(label_t) + sq_.memory_bytes() + pq_.memory_bytes() +
                 rbq_.memory_bytes() + rbq_centres_.capacity() * sizeof(float) + opq_.memory_bytes() +
                 (opq_centroids_.capacity() + pq_terms_.capacity()) * sizeof(float) +
                 lists_.capacity() * sizeof(List) + where_.capacity() * (sizeof(label_t) + sizeof(uint64_t) + 1);
  for (const List& l : lists_) {
    bytes += l.labels.capacity() * sizeof(label_t) + l.codes.capacity() +
             (l.terms.capacity() + l.floats.capacity()) * sizeof(float);
  }
  if (coarse_) bytes += coarse_->memory_bytes();
  return bytes;
}

uint64_t IvfIndex::disk_bytes() const { return store_ ? store_->disk_bytes() : 0; }

Status IvfIndex::CanUseVectorStore() const {
  if (spec_.code != IndexSpec::Code::kFlat) return Status::OK();
  return Status::NotSupported("on_disk keeps float vectors on disk and re-ranks from there, but '" + factory_string() +
                              "' lists are the float vectors: use lists of codes, e.g. 'IVF" +
                              std::to_string(spec_.nlist) + ",SQ8', 'IVF" + std::to_string(spec_.nlist) +
                              ",FP16' or 'IVF" + std::to_string(spec_.nlist) + ",PQ<m>'");
}

Status IvfIndex::SetVectorStore(std::shared_ptr<VectorStore> store) {
  FATHOM_RETURN_IF_ERROR(CanUseVectorStore());
  if (!store || store->dim() != dim()) {
    return Status::InvalidArgument("vector store dimension does not match the index's " + std::to_string(dim()));
  }
  std::unique_lock lock(mutex_);
  if (!where_.empty()) return Status::InvalidArgument("a vector store must be attached before the first Add");
  store_ = std::move(store);
  return Status::OK();
}

Status IvfIndex::Train(size_t n, const float* x) {
  FATHOM_RETURN_IF_ERROR(ValidateVectors(n, x));
  std::unique_lock lock(mutex_);
  if (trained_) {
    return Status::InvalidArgument("index '" + factory_string() + "' is already trained (it trains once, "
                                   "before vectors are added to its lists)");
  }
  std::vector<float> data(x, x + n * dim());
  if (metric() == Metric::kCosine) {
    for (size_t i = 0; i < n; ++i) simd::Normalize(data.data() + i * dim(), dim());
  }
  return TrainLocked(n, data.data());
}

// x is normalised for cosine. Trains the centroids and codes, then moves the pending vectors
// into their lists.
Status IvfIndex::TrainLocked(size_t n, const float* x) {
  const size_t d = dim(), nlist = size_t(spec_.nlist);
  if (n < nlist) {
    return Status::InvalidArgument("index '" + factory_string() + "' needs at least " + std::to_string(nlist) +
                                   " training vectors (one per list; " + std::to_string(kTrainPointsPerList) +
                                   " per list recommended), got " + std::to_string(n));
  }
  if (product_codes() && n < pq_.ksub()) {
    return Status::InvalidArgument("index '" + factory_string() + "' needs at least " +
                                   std::to_string(pq_.ksub()) +
                                   " training vectors for its product quantizer, got " + std::to_string(n));
  }
  KMeansOptions options;
  options.spherical = metric() == Metric::kCosine;
  FATHOM_ASSIGN_OR_RETURN(std::vector<float> centroids, TrainKMeans(n, d, x, nlist, options));
  std::vector<float> norms = RowNorms(nlist, d, centroids.data());
  if (scalar_codes()) sq_.Train(n, x);
  if (product_codes() || spec_.code == IndexSpec::Code::kRbq) {
    // Codes describe the residual to the list's centroid: train on residuals of a sample.
    const size_t m = std::min(n, kMaxPqTrainingPoints);
    const size_t step = n / m;
    std::vector<float> residuals(m * d);
    for (size_t i = 0; i < m; ++i) std::copy(x + i * step * d, x + (i * step + 1) * d, residuals.begin() + i * d);
    std::vector<uint32_t> assign(m);
    AssignNearest(m, d, residuals.data(), nlist, centroids.data(), norms.data(), assign.data());
    for (size_t i = 0; i < m; ++i) {
      for (size_t j = 0; j < d; ++j) residuals[i * d + j] -= centroids[size_t{assign[i]} * d + j];
    }
    if (spec_.opq) {
      // OPQ's alternation runs on at most kMaxOpqTrainingPoints of the residuals.
      const size_t o = std::min(m, kMaxOpqTrainingPoints);
      FATHOM_RETURN_IF_ERROR(opq_.Train(o, residuals.data(), &pq_));
    } else if (product_codes()) {
      FATHOM_RETURN_IF_ERROR(pq_.Train(m, residuals.data()));
    }
    if (spec_.code == IndexSpec::Code::kRbq) FATHOM_RETURN_IF_ERROR(rbq_.Train(m, residuals.data(), 0x5ab17c0deull, 1));
  }
  centroids_ = std::move(centroids);
  centroid_norms_ = std::move(norms);
  if (spec_.code == IndexSpec::Code::kRbq) RotateCentroids();
  if (spec_.opq) {
    opq_centroids_.resize(centroids_.size());
    opq_.Apply(nlist, centroids_.data(), opq_centroids_.data());
  }
  PrecomputeTerms();
  BuildCoarse();
  trained_ = true;
  // The vectors added before training go to their lists.
  std::vector<label_t> labels = std::move(pending_labels_);
  std::vector<float> vectors = std::move(pending_);
  pending_labels_.clear();
  pending_.clear();
  const size_t p = labels.size();
  Encoded enc;
  enc.lists.resize(p);
  Assign(p, vectors.data(), enc.lists.data(), 0);
  FATHOM_RETURN_IF_ERROR(Encode(p, vectors.data(), enc.lists.data(), 0, &enc));
  for (size_t i = 0; i < p; ++i) {
    where_.erase(labels[i]);
    Insert(labels[i], enc.lists[i], enc.codes.data() + i * code_size_,
           enc.terms.empty() ? 0.0f : enc.terms[i], vectors.data() + i * d);
  }
  return Status::OK();
}

void IvfIndex::RotateCentroids() {
  const size_t d = dim(), padded = rbq_.padded_dim();
  const std::vector<float>& mean = rbq_.centre_mean();
  rbq_centres_.resize(size_t(spec_.nlist) * padded);
  std::vector<float> shifted(d);
  for (size_t l = 0; l < size_t(spec_.nlist); ++l) {
    for (size_t j = 0; j < d; ++j) shifted[j] = centroids_[l * d + j] + mean[j];
    rbq_.RotateVector(shifted.data(), rbq_centres_.data() + l * padded);
  }
}

void IvfIndex::BuildCoarse() {
  coarse_.reset();
  if (spec_.coarse_hnsw_m == 0) return;
  IndexSpec hnsw;
  hnsw.type = IndexSpec::Type::kHnsw;
  hnsw.m = spec_.coarse_hnsw_m;
  coarse_ = std::make_unique<HnswIndex>(dim(), Metric::kL2, hnsw);
  AddOptions options;
  options.threads = 0;
  (void)coarse_->Add(size_t(spec_.nlist), centroids_.data(), nullptr, options);
}

void IvfIndex::Assign(size_t n, const float* x, uint32_t* lists, int threads) const {
  if (n == 0) return;
  if (!coarse_) {
    AssignNearest(n, dim(), x, size_t(spec_.nlist), centroids_.data(), centroid_norms_.data(), lists);
    return;
  }
  ParallelFor(n, threads, [&](size_t b, size_t e) {
    SearchParams params;
    params.ef = 64;
    for (size_t i = b; i < e; ++i) {
      float dist;
      label_t label = 0;
      (void)coarse_->Search(1, x + i * dim(), 1, &dist, &label, params);
      lists[i] = uint32_t(std::max<label_t>(0, label));
    }
  });
}

Status IvfIndex::Encode(size_t n, const float* x, const uint32_t* lists, int threads, Encoded* out) const {
  const size_t d = dim();
  out->codes.resize(n * code_size_);
  if (scalar_codes()) {
    out->terms.resize(n);
    ParallelFor(n, threads, [&](size_t b, size_t e) {
      for (size_t i = b; i < e; ++i) {
        sq_.Encode(x + i * d, out->codes.data() + i * code_size_);
        out->terms[i] = sq_.DecodedNorm(out->codes.data() + i * code_size_);
      }
    });
  } else if (spec_.code == IndexSpec::Code::kFp16) {
    ParallelFor(n, threads, [&](size_t b, size_t e) {
      for (size_t i = b; i < e; ++i) {
        auto* half = reinterpret_cast<uint16_t*>(out->codes.data() + i * code_size_);
        for (size_t j = 0; j < d; ++j) half[j] = simd::FloatToHalf(x[i * d + j]);
      }
    });
  } else if (spec_.code == IndexSpec::Code::kRbq) {
    ParallelFor(n, threads, [&](size_t b, size_t e) {
      std::vector<float> residual(d);
      for (size_t i = b; i < e; ++i) {
        const float* c = centroids_.data() + size_t{lists[i]} * d;
        for (size_t j = 0; j < d; ++j) residual[j] = x[i * d + j] - c[j];
        rbq_.Encode(residual.data(), out->codes.data() + i * code_size_);
      }
    });
  } else if (product_codes()) {
    ParallelFor(n, threads, [&](size_t b, size_t e) {
      std::vector<float> residuals((e - b) * d);
      for (size_t i = b; i < e; ++i) {
        const float* c = centroids_.data() + size_t{lists[i]} * d;
        for (size_t j = 0; j < d; ++j) residuals[(i - b) * d + j] = x[i * d + j] - c[j];
      }
      if (spec_.opq) {
        std::vector<float> rotated(residuals.size());
        opq_.Apply(e - b, residuals.data(), rotated.data());
        residuals.swap(rotated);
      }
      pq_.Encode(e - b, residuals.data(), out->codes.data() + b * code_size_);
    });
  }
  return Status::OK();
}

void IvfIndex::Insert(label_t label, uint32_t list, const uint8_t* code, float term, const float* vec) {
  List& l = lists_[list];
  const uint32_t pos = uint32_t(l.labels.size());
  l.labels.push_back(label);
  if (fast_scan()) {
    l.codes.resize(codes_bytes(pos + 1));
    SetCode4(l, pos, code);
  } else if (code_size_ > 0) {
    l.codes.insert(l.codes.end(), code, code + code_size_);
  }
  if (scalar_codes()) l.terms.push_back(term);
  if (floats_in_lists()) l.floats.insert(l.floats.end(), vec, vec + dim());
  where_[label] = Where(list, pos);
}

void IvfIndex::RemoveLocked(label_t label) {
  auto it = where_.find(label);
  if (it == where_.end()) return;
  const uint64_t where = it->second;
  where_.erase(it);
  const size_t d = dim();
  const uint32_t pos = PosOf(where);
  if (ListOf(where) == kPendingList) {
    const size_t last = pending_labels_.size() - 1;
    if (pos != last) {
      pending_labels_[pos] = pending_labels_[last];
      std::copy(pending_.begin() + last * d, pending_.begin() + (last + 1) * d, pending_.begin() + pos * d);
      where_[pending_labels_[pos]] = Where(kPendingList, pos);
    }
    pending_labels_.pop_back();
    pending_.resize(last * d);
    return;
  }
  List& l = lists_[ListOf(where)];
  const size_t last = l.labels.size() - 1;
  if (pos != last) {
    l.labels[pos] = l.labels[last];
    if (fast_scan()) {
      std::vector<uint8_t> moved(pq_.m());
      GetCode4(l, last, moved.data());
      SetCode4(l, pos, moved.data());
    } else if (code_size_ > 0) {
      std::copy(l.codes.begin() + last * code_size_, l.codes.begin() + (last + 1) * code_size_,
                l.codes.begin() + pos * code_size_);
    }
    if (!l.terms.empty()) l.terms[pos] = l.terms[last];
    if (!l.floats.empty()) std::copy(l.floats.begin() + last * d, l.floats.begin() + (last + 1) * d, l.floats.begin() + pos * d);
    where_[l.labels[pos]] = Where(ListOf(where), pos);
  }
  l.labels.pop_back();
  l.codes.resize(codes_bytes(last));
  if (!l.terms.empty()) l.terms.pop_back();
  if (!l.floats.empty()) l.floats.resize(last * d);
}

void IvfIndex::GetCode4(const List& l, size_t pos, uint8_t* code) const {
  const uint8_t* block = l.codes.data() + pos / 32 * 16 * pq_.m();
  const size_t j = pos % 32;
  for (size_t s = 0; s < pq_.m(); ++s) {
    const uint8_t byte = block[s * 16 + j % 16];
    code[s] = j < 16 ? byte & 15 : byte >> 4;
  }
}

void IvfIndex::SetCode4(List& l, size_t pos, const uint8_t* code) const {
  uint8_t* block = l.codes.data() + pos / 32 * 16 * pq_.m();
  const size_t j = pos % 32;
  for (size_t s = 0; s < pq_.m(); ++s) {
    uint8_t& byte = block[s * 16 + j % 16];
    byte = j < 16 ? uint8_t((byte & 0xF0) | (code[s] & 15)) : uint8_t((byte & 0x0F) | (code[s] << 4));
  }
}

Status IvfIndex::CheckValues(size_t n, const float* x) const {
  // (cosine stores unit vectors)
  if (spec_.code == IndexSpec::Code::kFp16 && metric() != Metric::kCosine) {
    return CheckHalfRange(n, dim(), x, "an FP16 index");
  }
  return Status::OK();
}

Status IvfIndex::Add(size_t n, const float* x, const label_t* labels, const AddOptions& options) {
  FATHOM_RETURN_IF_ERROR(ValidateVectors(n, x));
  FATHOM_RETURN_IF_ERROR(CheckValues(n, x));
  const size_t d = dim();
  std::vector<float> normalised;
  if (metric() == Metric::kCosine) {
    normalised.assign(x, x + n * d);
    for (size_t i = 0; i < n; ++i) simd::Normalize(normalised.data() + i * d, d);
    x = normalised.data();
  }
  bool trained;
  {
    std::shared_lock lock(mutex_);
    trained = trained_;
  }
  // Assignment and encoding need only the (immutable once trained) centroids and codebooks.
  Encoded enc;
  if (trained) {
    enc.lists.resize(n);
    Assign(n, x, enc.lists.data(), options.threads);
    FATHOM_RETURN_IF_ERROR(Encode(n, x, enc.lists.data(), options.threads, &enc));
  }
  std::unique_lock lock(mutex_);
  std::vector<label_t> assigned;
  label_t next = next_label_;
  FATHOM_RETURN_IF_ERROR(PrepareLabels(n, labels, &next, &assigned));
  next_label_ = next;
  if (!trained_) {
    for (size_t i = 0; i < n; ++i) {
      RemoveLocked(assigned[i]);
      where_[assigned[i]] = Where(kPendingList, uint32_t(pending_labels_.size()));
      pending_labels_.push_back(assigned[i]);
      pending_.insert(pending_.end(), x + i * d, x + (i + 1) * d);
    }
    if (pending_labels_.size() >= train_threshold()) {
      std::vector<float> sample = pending_;
      FATHOM_RETURN_IF_ERROR(TrainLocked(pending_labels_.size(), sample.data()));
    }
    return Status::OK();
  }
  if (!trained) {  // another thread trained the index meanwhile
    enc.lists.resize(n);
    Assign(n, x, enc.lists.data(), options.threads);
    FATHOM_RETURN_IF_ERROR(Encode(n, x, enc.lists.data(), options.threads, &enc));
  }
  if (n >= 1024) {
    // A bulk load: grow each list once, to its exact size (doubling would leave up to half of
    // every list's memory unused).
    std::vector<size_t> adds(lists_.size(), 0);
    for (size_t i = 0; i < n; ++i) ++adds[enc.lists[i]];
    for (size_t l = 0; l < lists_.size(); ++l) {
      if (adds[l] == 0) continue;
      List& list = lists_[l];
      const size_t total = list.labels.size() + adds[l];
      list.labels.reserve(total);
      list.codes.reserve(codes_bytes(total));
      if (scalar_codes()) list.terms.reserve(total);
      if (floats_in_lists()) list.floats.reserve(total * d);
    }
  }
  for (size_t i = 0; i < n; ++i) {
    RemoveLocked(assigned[i]);
    Insert(assigned[i], enc.lists[i], enc.codes.data() + i * code_size_, enc.terms.empty() ? 0.0f : enc.terms[i],
           x + i * d);
  }
  return Status::OK();
}

Status IvfIndex::Remove(size_t n, const label_t* labels, size_t* removed) {
  std::unique_lock lock(mutex_);
  size_t count = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!where_.contains(labels[i])) continue;
    RemoveLocked(labels[i]);
    ++count;
  }
  if (removed) *removed = count;
  return Status::OK();
}

bool IvfIndex::Contains(label_t label) const {
  std::shared_lock lock(mutex_);
  return where_.contains(label);
}

Status IvfIndex::FloatsOf(label_t label, uint64_t where, float* buf, const float** out) const {
  const uint32_t list = ListOf(where), pos = PosOf(where);
  if (list == kPendingList) {
    *out = pending_.data() + size_t{pos} * dim();
  } else if (floats_in_lists()) {
    *out = lists_[list].floats.data() + size_t{pos} * dim();
  } else if (half_only()) {
    simd::Active().f16_to_f32(reinterpret_cast<const uint16_t*>(lists_[list].codes.data() + size_t{pos} * code_size_),
                              buf, dim());
    *out = buf;
  } else {
    FATHOM_RETURN_IF_ERROR(store_->Read(1, &label, buf));
    *out = buf;
  }
  return Status::OK();
}

Status IvfIndex::Reconstruct(label_t label, float* out) const {
  std::shared_lock lock(mutex_);
  auto it = where_.find(label);
  if (it == where_.end()) return Status::NotFound("label " + std::to_string(label) + " is not in the index");
  const float* v;
  FATHOM_RETURN_IF_ERROR(FloatsOf(label, it->second, out, &v));
  if (v != out) std::copy(v, v + dim(), out);
  return Status::OK();
}

void IvfIndex::Probe(const float* q, size_t nprobe, std::vector<std::pair<float, uint32_t>>* out) const {
  out->clear();
  if (coarse_) {
    std::vector<float> dist(nprobe);
    std::vector<label_t> labels(nprobe);
    SearchParams params;
    params.ef = int(std::max<size_t>(nprobe, 64));
    (void)coarse_->Search(1, q, nprobe, dist.data(), labels.data(), params);
    for (size_t i = 0; i < nprobe; ++i) {
      if (labels[i] != kNoLabel) out->emplace_back(dist[i], uint32_t(labels[i]));
    }
    return;
  }
  const auto& k = simd::Active();
  const size_t nlist = size_t(spec_.nlist);
  out->resize(nlist);
  for (size_t c = 0; c < nlist; ++c) (*out)[c] = {k.l2_sqr(q, centroids_.data() + c * dim(), dim()), uint32_t(c)};
  std::partial_sort(out->begin(), out->begin() + nprobe, out->end());
  out->resize(nprobe);
}

void IvfIndex::PrecomputeTerms() {
  pq_terms_.clear();
  if (!product_codes() || metric() == Metric::kInnerProduct) return;
  const size_t per_list = pq_.m() * pq_.ksub(), nlist = size_t(spec_.nlist), d = dim();
  if (nlist * per_list * sizeof(float) > kMaxPrecomputedBytes) return;
  pq_terms_.resize(nlist * per_list);
  const std::vector<float>& centroids = spec_.opq ? opq_centroids_ : centroids_;
  for (size_t l = 0; l < nlist; ++l) pq_.CrossTerms(centroids.data() + l * d, pq_terms_.data() + l * per_list);
}

std::vector<float> IvfIndex::QueryTable(const float* q) const {
  std::vector<float> table;
  if (metric() != Metric::kInnerProduct && pq_terms_.empty()) return table;
  table.resize(pq_.m() * pq_.ksub());
  pq_.DotTable(q, table.data());
  const float factor = metric() == Metric::kInnerProduct ? -1.0f : -2.0f;
  for (float& t : table) t *= factor;
  return table;
}

// Product codes hold the residual r = x - c of their list's centroid c, so an entry's distance
// is base + sum over sub-quantizers of table[s][code_s]. For l2, |q - c - r|^2: with precomputed
// terms, base |q - c|^2 and table = terms of c + the query's -2 <q, r> table; otherwise the
// table of the residual query q - c (computed here, into `scratch`). For inner product,
// -<q, c> - <q, r>, with the query's negated dot table (the same for every list). Cosine (unit
// vectors) uses the l2 form, halved by the caller (1 - cos = |q - x|^2 / 2): the l2 form's error
// shrinks with |q - x|, the dot form's does not, and close neighbours differ by less than it
// (recall@10 0.43 against 0.9998 on 128-d CNN features with PQ32).
const float* IvfIndex::ListTable(const float* q, uint32_t list, const std::vector<float>& query_table,
                                 std::vector<float>& scratch, std::vector<float>& residual, float* base) const {
  const size_t d = dim();
  // (With OPQ, q is R q and the centroids are rotated alike.)
  const float* c = (spec_.opq ? opq_centroids_ : centroids_).data() + size_t{list} * d;
  if (metric() == Metric::kInnerProduct) {
    *base = -simd::Active().dot(q, c, d);
    return query_table.data();
  }
  const size_t entries = pq_.m() * pq_.ksub();
  scratch.resize(entries);
  if (!pq_terms_.empty()) {
    *base = simd::Active().l2_sqr(q, c, d);
    const float* terms = pq_terms_.data() + size_t{list} * entries;
    for (size_t i = 0; i < entries; ++i) scratch[i] = terms[i] + query_table[i];
    return scratch.data();
  }
  *base = 0;
  residual.resize(d);
  for (size_t j = 0; j < d; ++j) residual[j] = q[j] - c[j];
  pq_.L2Table(residual.data(), scratch.data());
  return scratch.data();
}

Status IvfIndex::SearchOne(const float* q, size_t k, const SearchParams& params, float* distances,
                           label_t* labels) const {
  const size_t d = dim();
  const LabelFilter* filter = params.filter;
  // RBQ with the floats at hand re-ranks as it scans, by the codes' error bound: `top` then
  // holds exact distances only.
  const bool by_bound = spec_.code == IndexSpec::Code::kRbq && params.rerank <= 0 && floats_in_lists();
  // Flat lists and FP16 ones without a store hold all there is: their distances are final.
  const bool approx = spec_.code != IndexSpec::Code::kFlat && !by_bound && !half_only();
  size_t depth = k;
  if (approx) {
    const size_t default_depth = spec_.code == IndexSpec::Code::kRbq               ? 10 * k
                                 : product_codes() || spec_.code == IndexSpec::Code::kSq4 ? 4 * k
                                                                                          : 2 * k;
    depth = std::max(k, params.rerank > 0 ? size_t(params.rerank) : default_depth);
    depth = std::max(k, std::min(depth, where_.size()));  // never more than the index holds
  }
  TopK top(depth);
  for (size_t i = 0; i < pending_labels_.size(); ++i) {
    if (filter && !filter->Allowed(pending_labels_[i])) continue;
    top.Push(MetricDistance(metric(), q, pending_.data() + i * d, d), pending_labels_[i]);
  }
  if (trained_) {
    const size_t nprobe = std::min<size_t>(size_t(spec_.nlist), params.nprobe > 0 ? size_t(params.nprobe) : size_t(spec_.nprobe));
    std::vector<std::pair<float, uint32_t>> probes;
    Probe(q, nprobe, &probes);
    const auto& kernels = simd::Active();
    // Codes with cosine rank by the l2 form of unit vectors, halved (1 - cos = |q - x|^2 / 2),
    // not by 1 - <q, x>: the coded x's own norm cancels most of its coding error between close
    // neighbours (on 128-d CNN features the dot form stopped FP16 at recall@10 0.949, SQ8 at
    // 0.965, PQ32 at 0.43). l2 is the same form unhalved; inner product keeps the dot.
    const float scale = metric() == Metric::kCosine ? 0.5f : 1.0f;
    // PQ tables are made for the query as the codes see it: rotated with OPQ.
    std::vector<float> rotated_query;
    if (spec_.opq) {
      rotated_query.resize(d);
      opq_.Apply(1, q, rotated_query.data());
    }
    const float* tq = spec_.opq ? rotated_query.data() : q;
    if (spec_.code == IndexSpec::Code::kFlat) {
      for (const auto& [unused, list] : probes) {
        const List& l = lists_[list];
        for (size_t j = 0; j < l.labels.size(); ++j) {
          if (filter && !filter->Allowed(l.labels[j])) continue;
          top.Push(MetricDistance(metric(), q, l.floats.data() + j * d, d), l.labels[j]);
        }
      }
    } else if (scalar_codes()) {
      ScalarQuantizer::Query prepared;
      sq_.Prepare(q, &prepared);
      for (const auto& [unused, list] : probes) {
        const List& l = lists_[list];
        for (size_t j = 0; j < l.labels.size(); ++j) {
          if (filter && !filter->Allowed(l.labels[j])) continue;
          const float dot = sq_.Dot(prepared, l.codes.data() + j * code_size_);
          top.Push(metric() == Metric::kInnerProduct ? -dot : scale * (prepared.q_norm - 2 * dot + l.terms[j]),
                   l.labels[j]);
        }
      }
    } else if (spec_.code == IndexSpec::Code::kFp16) {
      for (const auto& [unused, list] : probes) {
        const List& l = lists_[list];
        for (size_t j = 0; j < l.labels.size(); ++j) {
          if (filter && !filter->Allowed(l.labels[j])) continue;
          const auto* half = reinterpret_cast<const uint16_t*>(l.codes.data() + j * code_size_);
          top.Push(metric() == Metric::kInnerProduct ? -kernels.dot_f16(q, half, d)
                                                     : scale * kernels.l2_sqr_f16(q, half, d),
                   l.labels[j]);
        }
      }
    } else if (spec_.code == IndexSpec::Code::kRbq) {
      // The query rotated once; per list, its residual R(q - c - m) quantised for the codes.
      const size_t padded = rbq_.padded_dim();
      std::vector<float> rotated(padded);
      rbq_.RotateVector(q, rotated.data());
      RaBitQuantizer::Query prepared;
      prepared.rotated.resize(padded);
      for (const auto& [unused, list] : probes) {
        const List& l = lists_[list];
        if (l.labels.empty()) continue;
        const float* rc = rbq_centres_.data() + size_t{list} * padded;
        for (size_t i = 0; i < padded; ++i) prepared.rotated[i] = rotated[i] - rc[i];
        rbq_.PrepareRotated(&prepared);
        for (size_t j = 0; j < l.labels.size(); ++j) {
          if (filter && !filter->Allowed(l.labels[j])) continue;
          const uint8_t* code = l.codes.data() + j * code_size_;
          const float estimate = rbq_.Estimate(prepared, code);
          if (!by_bound) {
            top.Push(estimate * scale, l.labels[j]);
            continue;
          }
          const float bound = rbq_.Bound(prepared, code, RaBitQuantizer::kRerankEpsilon);
          if ((estimate - bound) * scale >= top.threshold()) continue;
          top.Push(MetricDistance(metric(), q, l.floats.data() + j * d, d), l.labels[j]);
        }
      }
    } else if (fast_scan()) {
      // Per list: the float table of sub-distances, quantized to uint8 (per sub-quantizer
      // offset, one common step), summed 32 entries at a time by the SIMD kernel; the sum is
      // turned back into a distance estimate for the candidate list, re-ranked below.
      const size_t m = pq_.m();
      std::vector<float> scratch, residual;
      const std::vector<float> query_table = QueryTable(tq);
      std::vector<uint8_t> lut(m * 16);
      alignas(32) uint16_t sums[32];
      for (const auto& [unused, list] : probes) {
        const List& l = lists_[list];
        if (l.labels.empty()) continue;
        float base;
        const float* table = ListTable(tq, list, query_table, scratch, residual, &base);
        float bias = base, widest = 0;
        std::vector<float> lows(m);
        for (size_t s = 0; s < m; ++s) {
          const auto [lo, hi] = std::minmax_element(table + s * 16, table + (s + 1) * 16);
          lows[s] = *lo;
          bias += *lo;
          widest = std::max(widest, *hi - *lo);
        }
        const float step = widest > 0 ? widest / 255.0f : 1.0f;
        for (size_t s = 0; s < m; ++s) {
          for (size_t i = 0; i < 16; ++i) {
            lut[s * 16 + i] = uint8_t(std::lround((table[s * 16 + i] - lows[s]) / step));
          }
        }
        const size_t count = l.labels.size();
        for (size_t b = 0; b * 32 < count; ++b) {
          kernels.pq4_block_sums(l.codes.data() + b * 16 * m, lut.data(), m, sums);
          const size_t in_block = std::min<size_t>(32, count - b * 32);
          const float threshold = top.threshold();
          for (size_t j = 0; j < in_block; ++j) {
            const float est = scale * (bias + step * float(sums[j]));
            if (est >= threshold) continue;
            const label_t label = l.labels[b * 32 + j];
            if (filter && !filter->Allowed(label)) continue;
            top.Push(est, label);
          }
        }
      }
    } else {
      std::vector<float> scratch, residual;
      const std::vector<float> query_table = QueryTable(tq);
      for (const auto& [unused, list] : probes) {
        const List& l = lists_[list];
        if (l.labels.empty()) continue;
        float base;
        const float* table = ListTable(tq, list, query_table, scratch, residual, &base);
        for (size_t j = 0; j < l.labels.size(); ++j) {
          if (filter && !filter->Allowed(l.labels[j])) continue;
          top.Push(scale * (base + pq_.Lookup(table, l.codes.data() + j * code_size_)), l.labels[j]);
        }
      }
    }
  }
  if (!approx) {
    top.Extract(distances, labels);
    return Status::OK();
  }
  // Re-rank the candidates with exact float distances.
  std::vector<float> cand_d(depth);
  std::vector<label_t> cand_l(depth);
  top.Extract(cand_d.data(), cand_l.data());
  size_t found = 0;
  while (found < depth && cand_l[found] != kNoLabel) ++found;
  std::vector<StoredVector> stored;
  std::vector<float> fetched;
  FATHOM_RETURN_IF_ERROR(GatherFloats(found, cand_l.data(), &stored, &fetched));
  ExactTopK(metric(), d, 1, q, k, stored, distances, labels);
  return Status::OK();
}

Status IvfIndex::GatherFloats(size_t n, const label_t* labels, std::vector<StoredVector>* stored,
                              std::vector<float>* fetched) const {
  std::vector<label_t> from_store;
  if (half_only()) {
    // FP16 lists: decode (the half-precision vectors are all there is).
    fetched->resize(n * dim());
    size_t used = 0;
    for (size_t i = 0; i < n; ++i) {
      auto it = where_.find(labels[i]);
      if (it == where_.end()) continue;
      const float* v;
      FATHOM_RETURN_IF_ERROR(FloatsOf(labels[i], it->second, fetched->data() + used * dim(), &v));
      if (v == fetched->data() + used * dim()) ++used;
      stored->push_back({labels[i], v});
    }
    return Status::OK();
  }
  for (size_t i = 0; i < n; ++i) {
    auto it = where_.find(labels[i]);
    if (it == where_.end()) continue;
    if (!floats_in_lists() && ListOf(it->second) != kPendingList) {
      from_store.push_back(labels[i]);
      continue;
    }
    const float* v;
    FATHOM_RETURN_IF_ERROR(FloatsOf(labels[i], it->second, nullptr, &v));
    stored->push_back({labels[i], v});
  }
  if (from_store.empty()) return Status::OK();
  // One batched read (the store fetches cold pages in parallel).
  fetched->resize(from_store.size() * dim());
  FATHOM_RETURN_IF_ERROR(store_->Read(from_store.size(), from_store.data(), fetched->data()));
  for (size_t i = 0; i < from_store.size(); ++i) stored->push_back({from_store[i], fetched->data() + i * dim()});
  return Status::OK();
}

Status IvfIndex::Search(size_t n, const float* queries, size_t k, float* distances, label_t* labels,
                        const SearchParams& params) const {
  if (k == 0) return Status::InvalidArgument("k must be at least 1");
  if (params.nprobe < 0) return Status::InvalidArgument("nprobe must be >= 0, got " + std::to_string(params.nprobe));
  if (params.rerank < 0) return Status::InvalidArgument("rerank must be >= 0, got " + std::to_string(params.rerank));
  FATHOM_RETURN_IF_ERROR(ValidateVectors(n, queries));
  std::shared_lock lock(mutex_);
  std::vector<float> q(dim());
  for (size_t i = 0; i < n; ++i) {
    std::copy(queries + i * dim(), queries + (i + 1) * dim(), q.begin());
    if (metric() == Metric::kCosine) simd::Normalize(q.data(), dim());
    FATHOM_RETURN_IF_ERROR(SearchOne(q.data(), k, params, distances + i * k, labels + i * k));
  }
  return Status::OK();
}

Status IvfIndex::SearchAmong(size_t n, const float* queries, size_t k, const label_t* candidates,
                             size_t num_candidates, float* distances, label_t* labels) const {
  if (k == 0) return Status::InvalidArgument("k must be at least 1");
  FATHOM_RETURN_IF_ERROR(ValidateVectors(n, queries));
  std::shared_lock lock(mutex_);
  std::vector<StoredVector> stored;
  std::vector<float> fetched;
  FATHOM_RETURN_IF_ERROR(GatherFloats(num_candidates, candidates, &stored, &fetched));
  ExactTopK(metric(), dim(), n, queries, k, stored, distances, labels);
  return Status::OK();
}

// Body (docs/format/index_file.md): trained flag, floats-in-lists flag, next label; when
// trained the centroids and the code's parameters; then each list (count, labels, codes, SQ8
// terms, floats when kept in the lists) and the pending (not yet trained) vectors.
Status IvfIndex::SerializeBody(ByteSink& out, const SaveOptions&) const {
  std::shared_lock lock(mutex_);  // writers wait for the whole save; searches go on
  FATHOM_RETURN_IF_ERROR(out.Pod(uint8_t{trained_}));
  FATHOM_RETURN_IF_ERROR(out.Pod(uint8_t{floats_in_lists()}));
  FATHOM_RETURN_IF_ERROR(out.Pod(next_label_));
  if (trained_) {
    FATHOM_RETURN_IF_ERROR(out.Write(centroids_.data(), centroids_.size() * sizeof(float)));
    if (scalar_codes()) FATHOM_RETURN_IF_ERROR(sq_.Serialize(out));
    if (product_codes()) FATHOM_RETURN_IF_ERROR(pq_.Serialize(out));
    if (spec_.opq) FATHOM_RETURN_IF_ERROR(opq_.Serialize(out));
    if (spec_.code == IndexSpec::Code::kRbq) FATHOM_RETURN_IF_ERROR(rbq_.Serialize(out));
  }
  for (const List& l : lists_) {
    FATHOM_RETURN_IF_ERROR(out.Pod(uint32_t(l.labels.size())));
    FATHOM_RETURN_IF_ERROR(out.Write(l.labels.data(), l.labels.size() * sizeof(label_t)));
    FATHOM_RETURN_IF_ERROR(out.Write(l.codes.data(), l.codes.size()));
    FATHOM_RETURN_IF_ERROR(out.Write(l.terms.data(), l.terms.size() * sizeof(float)));
    FATHOM_RETURN_IF_ERROR(out.Write(l.floats.data(), l.floats.size() * sizeof(float)));
  }
  FATHOM_RETURN_IF_ERROR(out.Pod(uint32_t(pending_labels_.size())));
  FATHOM_RETURN_IF_ERROR(out.Write(pending_labels_.data(), pending_labels_.size() * sizeof(label_t)));
  return out.Write(pending_.data(), pending_.size() * sizeof(float));
}

Status IvfIndex::DeserializeBody(ByteSource& in, uint64_t count, uint32_t, bool) {
  std::unique_lock lock(mutex_);
  const size_t d = dim();
  uint8_t trained, inline_floats;
  FATHOM_RETURN_IF_ERROR(in.Read(&trained));
  FATHOM_RETURN_IF_ERROR(in.Read(&inline_floats));
  FATHOM_RETURN_IF_ERROR(in.Read(&next_label_));
  if (trained > 1 || inline_floats != uint8_t{floats_in_lists()}) {
    return Status::Corruption(std::string("IVF index body ") + (inline_floats ? "holds" : "does not hold") +
                              " float vectors in its lists, but this index " +
                              (floats_in_lists() ? "keeps them there"
                               : half_only()     ? "keeps half-precision vectors only"
                                                 : "keeps them in a vector store (on disk)"));
  }
  trained_ = trained != 0;
  if (trained_) {
    if (size_t(spec_.nlist) * d * sizeof(float) > in.remaining()) {
      return Status::Corruption("IVF centroids are truncated");
    }
    centroids_.resize(size_t(spec_.nlist) * d);
    FATHOM_RETURN_IF_ERROR(in.ReadBytes(centroids_.data(), centroids_.size() * sizeof(float)));
    for (float v : centroids_) {
      if (!std::isfinite(v)) return Status::Corruption("IVF centroids hold a non-finite value");
    }
    centroid_norms_ = RowNorms(size_t(spec_.nlist), d, centroids_.data());
    if (scalar_codes()) FATHOM_RETURN_IF_ERROR(sq_.Deserialize(in));
    if (product_codes()) FATHOM_RETURN_IF_ERROR(pq_.Deserialize(in));
    if (spec_.opq) {
      FATHOM_RETURN_IF_ERROR(opq_.Deserialize(in));
      opq_centroids_.resize(centroids_.size());
      opq_.Apply(size_t(spec_.nlist), centroids_.data(), opq_centroids_.data());
    }
    if (spec_.code == IndexSpec::Code::kRbq) {
      FATHOM_RETURN_IF_ERROR(rbq_.Deserialize(in));
      RotateCentroids();
    }
    PrecomputeTerms();
  }
  const size_t entry_bytes = sizeof(label_t) + (fast_scan() ? pq_.m() / 2 : code_size_) +
                             (scalar_codes() ? sizeof(float) : 0) +
                             (floats_in_lists() ? d * sizeof(float) : 0);
  where_.clear();
  where_.reserve(std::min<uint64_t>(count, in.remaining() / sizeof(label_t)));  // count is not trusted yet
  auto check_label = [&](label_t label, uint64_t where) -> Status {
    if (label < 0 || !where_.emplace(label, where).second) {
      return Status::Corruption("IVF index body has an invalid or repeated label " + std::to_string(label));
    }
    if (label >= next_label_) next_label_ = label == std::numeric_limits<label_t>::max() ? label : label + 1;
    return Status::OK();
  };
  for (uint32_t list = 0; list < uint32_t(spec_.nlist); ++list) {
    uint32_t n;
    FATHOM_RETURN_IF_ERROR(in.Read(&n));
    if (n > 0 && !trained_) return Status::Corruption("IVF index body has vectors in lists but no centroids");
    if (size_t{n} * entry_bytes > in.remaining()) {
      return Status::Corruption("IVF list " + std::to_string(list) + " is truncated: " + std::to_string(n) +
                                " entries need more than the " + std::to_string(in.remaining()) + " bytes left");
    }
    List& l = lists_[list];
    l.labels.resize(n);
    l.codes.resize(codes_bytes(n));
    l.terms.resize(scalar_codes() ? n : 0);
    l.floats.resize(floats_in_lists() ? size_t{n} * d : 0);
    FATHOM_RETURN_IF_ERROR(in.ReadBytes(l.labels.data(), l.labels.size() * sizeof(label_t)));
    FATHOM_RETURN_IF_ERROR(in.ReadBytes(l.codes.data(), l.codes.size()));
    FATHOM_RETURN_IF_ERROR(in.ReadBytes(l.terms.data(), l.terms.size() * sizeof(float)));
    FATHOM_RETURN_IF_ERROR(in.ReadBytes(l.floats.data(), l.floats.size() * sizeof(float)));
    for (uint32_t j = 0; j < n; ++j) FATHOM_RETURN_IF_ERROR(check_label(l.labels[j], Where(list, j)));
    if (spec_.code == IndexSpec::Code::kRbq) {
      for (uint32_t j = 0; j < n; ++j) {
        if (!rbq_.ValidCode(l.codes.data() + size_t{j} * code_size_)) {
          return Status::Corruption("IVF list " + std::to_string(list) + " holds an invalid RaBitQ code at entry " +
                                    std::to_string(j));
        }
      }
    }
  }
  uint32_t p;
  FATHOM_RETURN_IF_ERROR(in.Read(&p));
  if (size_t{p} * (sizeof(label_t) + d * sizeof(float)) > in.remaining()) {
    return Status::Corruption("IVF pending vectors are truncated");
  }
  pending_labels_.resize(p);
  pending_.resize(size_t{p} * d);
  FATHOM_RETURN_IF_ERROR(in.ReadBytes(pending_labels_.data(), pending_labels_.size() * sizeof(label_t)));
  FATHOM_RETURN_IF_ERROR(in.ReadBytes(pending_.data(), pending_.size() * sizeof(float)));
  for (uint32_t j = 0; j < p; ++j) FATHOM_RETURN_IF_ERROR(check_label(pending_labels_[j], Where(kPendingList, j)));
  if (where_.size() != count) {
    return Status::Corruption("IVF index holds " + std::to_string(where_.size()) + " vectors but its header says " +
                              std::to_string(count));
  }
  if (trained_) BuildCoarse();
  return Status::OK();
}

}  // namespace fathom
