// HnswIndex: a hierarchical navigable small-world graph (Malkov & Yashunin, 2016), our own
// implementation, built for concurrent use inside a database.
//
// Layout: every node has one 64-byte-aligned block holding its level-0 neighbour list and its
// vector (float32, or 8-bit codes with ",SQ8"; on a cache-line boundary where that costs no
// memory); upper-level lists live in a separate small
// allocation per node (only ~1/M of nodes have one). Labels map to internal node ids; a node
// whose label is removed or replaced becomes a tombstone: never returned, still traversable.
// When tombstones exceed 10% of the nodes, Consolidate() relinks their neighbours around them
// and frees their blocks for reuse, so churn neither leaks memory nor degrades recall.
//
// Concurrency: Add, Remove and Search may run from many threads at once. Neighbour lists are
// read and written through std::atomic_ref (acquire/release: plain moves on x86), writers take
// a per-node (striped) lock, and a reader never waits for a writer except while the index grows
// its arrays or consolidates tombstones (both rare, under an exclusive structure lock).
//
// ",SQ8": the graph is walked on 8-bit scalar codes (one range for all dimensions, learnt from
// the first batch; later values outside it are clamped), which moves 4x fewer bytes per visited
// node; the best candidates are then re-ranked with exact float32 distances, so returned
// distances are exact. L2 and cosine (unit vectors: the same order) walk on L2 between codes
// (with AVX-512 VNNI, where the block has room for a per-node constant: one vpdpbusd per 64
// bytes, see sq8_norm_offset_); inner product on the float query against dequantised codes.
//
// ",SQ8,pca=<p>" (l2 and cosine): searches walk the graph on 8-bit codes of the top p principal
// components of the SQ8 codes (PCA learnt from a sample once 1,000 nodes are in; p bytes in the
// node's block after its code), so a visit reads p bytes instead of dim (784-d Fashion-MNIST,
// p = 128: 2 cache lines instead of 13), then rank the whole beam again by the full SQ8 codes
// and re-rank as SQ8 does. The graph is built on the full codes, as without pca. The projected
// distances order far points well and near ones less well, so a recall needs a wider beam than
// without pca, but each step of it costs less (measured in docs/BENCHMARKS.md section 1).
// Projections learnt since 2026-12-04 give the components one 8-bit step, so (for 2 <= p <= 8255)
// a visit's distance is integer arithmetic on the query's rounded half levels (l2_sqr_s16_u8x2:
// 4 vpdpwssd for p = 128), and nodes and queries alike are projected through an int8 copy of the
// components (dot_u8_s8); files from before (a step per component) project and walk in float.
//
// ",SQ4" (any metric): walked on per-dimension 4-bit scalar codes (index/quantizer.h; ranges
// from the first batch) against the float query, L2 as |q|^2 - 2 <q, x'> + |x'|^2 with |x'|^2
// stored in the code; built on the float32 vectors, which stay in RAM for re-ranking (every
// candidate found by default: 16 levels a dimension order near neighbours coarsely) or, with a
// vector store (on_disk), are read back from it for re-ranking and construction.
//
// ",RBQ" (l2 and cosine): the graph is walked on 1-bit RaBitQ codes (index/rabitq.h; centre and
// rotation learnt from the first batch) and built on the float32 vectors, which stay in RAM
// beside the codes (or, on_disk, in the vector store, as for SQ4). Re-ranking uses the estimator's
// error bound: a candidate is re-ranked with its exact distance unless its estimate minus the bound
// already exceeds the k-th exact distance found (SearchParams::rerank > 0 re-ranks a fixed number
// instead).
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>
#include <vector>

#include <absl/container/flat_hash_map.h>

#include "fathom/index.h"
#include "index/factory.h"
#include "index/quantizer.h"
#include "index/rabitq.h"
#include "index/visited_set.h"
#include "util/region.h"
#include "util/rw_lock.h"

namespace fathom {

class HnswIndex final : public Index {
 public:
  HnswIndex(size_t dim, Metric metric, const IndexSpec& spec);
  ~HnswIndex() override;

  size_t size() const override;
  std::string factory_string() const override { return ToFactoryString(spec_); }
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
  bool supports_concurrent_save() const override { return true; }
  // ",SQ8" with l2 or cosine, ",FP16", ",SQ4" and ",RBQ" (which read the float vectors they
  // compare while building back from the store). The caller writes each vector to the store
  // (normalised for cosine) before adding it.
  Status SetVectorStore(std::shared_ptr<VectorStore> store) override;
  Status CanUseVectorStore() const override;
  uint64_t disk_bytes() const override;
  Status CheckValues(size_t n, const float* x) const override;
  void set_inline_maintenance(bool on) override { inline_maintenance_.store(on); }
  bool NeedsMaintenance() const override;
  void Maintain() override { Consolidate(); }

  // Relinks around every tombstone and frees their nodes for reuse. Runs automatically from
  // Remove/Add when tombstones exceed 10% of nodes; public for tests and maintenance.
  void Consolidate();
  // Makes every live node reachable on level 0 from the entry point: a breadth-first walk finds
  // the live nodes no link leads to (pruning during inserts can drop a node's last in-link), and
  // each gets one from its nearest reachable node (appended, or replacing that node's farthest
  // link whose target has another in-link). Runs under the exclusive structure lock after bulk
  // inserts (whenever inserts since the last run reach a tenth of the nodes: amortised O(1) per
  // insert) and after consolidation. Returns the number of nodes it had to relink.
  size_t EnsureReachable();
  size_t tombstones() const;
  // Nodes allocated (live + tombstones + free); grows only when no free node is left.
  size_t allocated_nodes() const;
  // Graphs up to this many nodes mark visits in a per-node array, larger ones in a hash set sized
  // to the search (VisitedSet; default VisitedSet::kDenseMaxNodes). Tests set 0 to run the
  // hashed path on small graphs. Set before searches start.
  void set_dense_visited_max_nodes_for_testing(size_t nodes) { dense_visited_max_nodes_ = nodes; }
  // pca=<p>: whether the projection is learnt (searches walk on it), and switching that walk off
  // (tests and A/B runs; set before searches start).
  bool pca_ready() const { return pca_ready_.load(); }
  void set_pca_enabled_for_testing(bool on) { pca_enabled_ = on; }
  // Whether the projected walk runs in integers (one step for all components), and forcing the
  // float walk (tests; set before searches start).
  bool pca_int_walk() const { return pca_int_walk_; }
  void set_pca_int_walk_enabled_for_testing(bool on) { pca_int_walk_enabled_ = on; }

 private:
  enum class DistKind { kFloatL2, kFloatIp, kFloatL1, kSq8L2, kSq8Ip, kF16L2, kF16Ip, kRbqL2, kSq4L2, kSq4Ip, kSq8Pca };
  // Calls f(std::integral_constant<DistKind, K>{}) for the kind given: the one place that maps a
  // run-time kind to the templates (each kind named, so adding one fails to compile until here).
  template <class F>
  static void Dispatch(DistKind kind, F&& f);
  struct Query;
  struct Scratch;
  class ScratchLease;

  Status SerializeBody(ByteSink& out, const SaveOptions& options) const override;
  Status DeserializeBody(ByteSource& in, uint64_t count, uint32_t version, bool fuzzy) override;

  // Storage.
  uint32_t* Links(uint32_t node, int level) const;
  const uint8_t* Code(uint32_t node) const;
  float* Vector(uint32_t node) const;
  int MaxLinks(int level) const { return level == 0 ? m0_ : m_; }
  void GrowLocked(size_t min_capacity);
  void EncodeNode(uint32_t node, const float* v);
  // The SQ8 code of v: round((v - sq_lo_) / sq_scale_), clamped to [0, 255].
  void Sq8Encode(const float* __restrict v, uint8_t* __restrict code) const;
  // True when the step is 1 and the code decodes to exactly v.
  bool Sq8DecodesExactly(const float* v, const uint8_t* code) const;
  // Writes node's |b|^2 - 256 * sum(b) at sq8_norm_offset_ (when there is one).
  void SetSq8Norm(uint32_t node);
  // pca=<p>: learns the projection (top p eigenvectors of the codes' covariance, LAPACK) and
  // each component's 8-bit range from `rows` (SQ8 codes, row-major), then encodes every stored
  // node; leaves the walk on whole codes if LAPACK fails. Caller holds structure_mutex_
  // exclusively.
  void TrainPcaLocked(const std::vector<uint8_t>& rows);
  // Learns the projection once the index holds kPcaTrainPoints nodes (with the batch of n rows
  // `x` about to be added), from a sample of the stored codes and the batch's.
  void MaybeTrainPcaLocked(size_t n, const float* x);
  // The file's projection (see SerializeBody).
  Status ReadPca(ByteSource& r);
  // pca_basis8_ and pca_unscale8_ from pca_basis_ (once the projection is learnt or read).
  void QuantizePcaBasis();
  // Whether the walk runs in integers, and its constants (once the steps are learnt or read); the
  // caller builds pca_basis8_ (QuantizePcaBasis) where it does.
  void SetPcaWalk();
  // An SQ8 code's projection on every component (before the levels' low and step), as nodes and
  // queries alike are projected: through the int8 components with the integer walk, in float
  // (code_floats: working memory) otherwise.
  void PcaValues(const uint8_t* code, float* out, std::vector<float>& code_floats) const;
  // Writes the projection of the node's SQ8 code into its block.
  void EncodePca(uint32_t node);
  // The query's projection from its SQ8 code, in levels (s.qpca), and for the integer walk in
  // rounded half levels (s.qpca2), when learnt.
  void PreparePca(const uint8_t* code, Scratch& s, Query* q) const;
  // What the walk of kind K reads for a node: its projection (kSq8Pca), else its code.
  template <DistKind K>
  const uint8_t* WalkCode(uint32_t node) const {
    if constexpr (K == DistKind::kSq8Pca) {
      return reinterpret_cast<const uint8_t*>(blocks_.data() + size_t{node} * node_bytes_ + pca_offset_);
    } else {
      return Code(node);
    }
  }
  // |q - b|^2 for the code b of a node with a norm slot, from the query's signed code and |q|^2.
  int64_t Sq8DotDistance(const uint8_t* code, const int8_t* qs8, int64_t code_norm) const;
  // A query for comparing node with others (construction): its vector or code, and for the SQ8
  // walk its code as signed bytes (in s.qs8) with |code|^2. floats_on_disk(): the query of its
  // float vector read from the store; false if that read failed.
  bool NodeQuery(uint32_t node, Scratch& s, Query* q) const;
  // The SQ4 code of v: |decoded|^2 (float32), then the 4-bit levels.
  void Sq4Encode(const float* v, uint8_t* code) const;
  // SearchAmong for SQ8 with l2 or cosine: candidates ranked by their codes, then re-ranked with
  // float distances in that order until the codes' lower bound passes the k-th exact distance,
  // so the answer is exact while most candidates cost a code (dim bytes), not dim floats.
  void SearchAmongByCodes(size_t n, const float* queries, size_t k, const std::vector<uint32_t>& nodes,
                          float* distances, label_t* labels) const;
  void TrainQuantizerLocked(size_t n, const float* x);
  // RBQ and SQ4 training: the float vectors of the stored nodes (their nodes in `nodes`; from
  // the store in one batch read when floats_on_disk()), then the batch's (unit for cosine).
  std::vector<float> TrainingRows(size_t n, const float* x, std::vector<uint32_t>* nodes) const;
  bool Live(uint32_t node) const;
  // A block read from a file holds the code right after the links; moves it to code_offset_.
  void PlaceCodeAfterLoad(uint32_t node);

  // Insert path.
  bool TryInsert(const float* v, label_t label, Scratch& scratch);
  // Links node, whose float vector is v (as added: normalised here for cosine).
  template <DistKind K>
  void Link(uint32_t node, const float* v, Scratch& scratch);
  void SelectNeighbors(std::vector<std::pair<float, uint32_t>>& candidates, size_t max_links,
                       std::vector<uint32_t>* selected) const;
  // A node's float vector: its stored floats, or (FP16) its code decoded into `buffer`, or
  // (floats_on_disk()) its row read from the store into `buffer`: null if that read failed.
  const float* NodeFloats(uint32_t node, std::vector<float>& buffer) const;
  float NodeDistance(uint32_t a, uint32_t b) const;
  void AddBackLink(uint32_t target, uint32_t node, int level);
  int RandomLevel();
  Status MaybeConsolidate();
  size_t EnsureReachableLocked();  // caller holds structure_mutex_ exclusively
  // Marks in `reached` (one byte per node) every node reachable on level 0 from `start`;
  // `queue` is working memory. Safe beside concurrent inserts (links are read atomically).
  void WalkLevel0(uint32_t start, std::vector<uint8_t>& reached, std::vector<uint32_t>& queue) const;

  // Search path.
  void PrepareQuery(const float* v, Scratch& scratch, Query* q) const;
  template <DistKind K>
  float Distance(const Query& q, uint32_t node) const;
  template <DistKind K>
  uint32_t GreedyDescend(const Query& q, uint32_t start, int from_level, int to_level, float* dist) const;
  template <DistKind K>
  void SearchLevel(const Query& q, uint32_t entry, float entry_dist, int level, size_t ef,
                   Scratch& scratch) const;
  // The same from several starting nodes at once (scratch.seeds: distance, node).
  template <DistKind K>
  void SearchLevelFrom(const Query& q, int level, size_t ef, Scratch& scratch) const;
  template <DistKind K>
  // From scratch.seeds (distance, node), like SearchLevelFrom.
  void SearchLevelFiltered(const Query& q, size_t ef, const LabelFilter* filter, Scratch& scratch) const;
  template <DistKind K>
  void SearchOne(const float* query, size_t k, const SearchParams& params, Scratch& scratch,
                 float* distances, label_t* labels) const;
  // The nodes a BitsetFilter allows, one bit per node (live and allowed when computed), for the
  // filtered walk: a bit test in a small array instead of reading each neighbour's label. Cached
  // per (filter id, filter version, generation_) and computed (one pass over the nodes) only once
  // the same filter has been used by enough searches to pay for that pass; null until then, and
  // for other kinds of filter.
  std::shared_ptr<const std::vector<uint64_t>> AllowedNodes(const LabelFilter* filter) const;
  DistKind SearchKind() const;
  DistKind BuildKind() const;
  // SQ8, SQ4 and RBQ keep float32 vectors beside the codes (in vectors_, or in the store on disk).
  bool floats_beside_codes() const { return spec_.sq8 || spec_.rbq || spec_.sq4; }
  // SQ4 and RBQ with a vector store (on_disk): construction reads the float vectors it compares
  // back from the store (the walk that finds candidates stays on the codes), so the graph is
  // built as in RAM while RAM holds only links and codes.
  bool floats_on_disk() const { return store_ != nullptr && (spec_.sq4 || spec_.rbq); }
  // The distance construction uses between float vectors: L2 for l2 and for RBQ's unit vectors
  // under cosine, offset - dot otherwise (what BuildKind() is in RAM).
  float FloatBuildDistance(const float* a, const float* b) const;
  // floats_on_disk(): the float vectors of `nodes` read from the store into `rows`, one batch.
  Status ReadNodeRows(size_t n, const uint32_t* nodes, std::vector<label_t>& labels, std::vector<float>& rows) const;
  // The heuristic of SelectNeighbors with exact distances: row i of `rows` is candidates[i]'s
  // float vector (candidates are not reordered).
  void SelectAmongRows(const std::vector<std::pair<float, uint32_t>>& candidates, const float* rows, size_t max_links,
                       std::vector<uint32_t>* selected) const;
  // floats_on_disk(): the candidates' float vectors (and `base`'s, unless its vector `base_vec`
  // is given) read back in one batch, each candidate's distance to the base set from them, and
  // the heuristic's selection made; false (nothing changed) if the read failed.
  bool SelectFromStore(uint32_t base, const float* base_vec, std::vector<std::pair<float, uint32_t>>& candidates,
                       size_t max_links, std::vector<uint32_t>* selected) const;

  const IndexSpec spec_;
  const int m_;
  const int m0_;
  const double level_mult_;
  const size_t links0_bytes_;
  const size_t code_bytes_;
  const size_t pca_dims_;    // pca=<p> (0: none)
  const size_t pca_offset_;  // of a node's projection in its block
  const size_t node_bytes_;
  const size_t code_offset_;  // of the code (or float vector) in a node's block
  // SQ8 with l2 or cosine: where a node's |b|^2 - 256 * sum(b) (int32) sits in its block, in
  // the code's last cache line, so that the walk's distance to a code b is one u8 x s8 dot
  // product (VNNI): |q - b|^2 = |q|^2 + that - 2 <b, q - 128>. 0 where the line has no 4 free
  // bytes; the walk then uses l2_sqr_u8 (the same integer). Not in the file: set on load.
  const size_t sq8_norm_offset_;
  const float ip_offset_;  // 0 for inner product, 1 for cosine (distance = offset - dot)

  // Guards the arrays below against reallocation and consolidation: shared for Add, Remove and
  // Search; exclusive for growth, quantizer training and consolidation.
  mutable RwLock structure_mutex_;
  // Both grow without copying (Region: mremap), so growth holds the lock for milliseconds.
  Region blocks_;   // capacity_ * node_bytes_, level-0 links then vector or code
  Region vectors_;  // capacity_ * dim float32 copies for re-ranking (SQ8 in RAM only)
  std::shared_ptr<VectorStore> store_;  // instead of vectors_: float32 vectors on disk
  std::vector<label_t> labels_;
  std::vector<uint8_t> levels_;
  std::unique_ptr<std::atomic<uint8_t>[]> state_;  // kLive, kTombstone, kFree
  std::vector<std::unique_ptr<uint32_t[]>> upper_;
  size_t capacity_ = 0;
  size_t dense_visited_max_nodes_ = VisitedSet::kDenseMaxNodes;
  std::atomic<size_t> upper_words_{0};

  // SQ8 quantizer: code = round((x - sq_lo_) / sq_scale_), clamped to [0, 255].
  bool sq_trained_ = false;
  // L2 with a unit step (integer data) and every vector encoded so far decoding exactly: then a
  // query that does too needs no re-ranking. Cleared for good by the first vector that does not.
  std::atomic<bool> sq8_exact_{false};
  float sq_lo_ = 0;
  float sq_scale_ = 1;
  // RBQ quantizer: centres and rotation from the first batch, learnt again (every node
  // re-encoded) each time the points double until kRbqFullTraining have trained it.
  RaBitQuantizer rbq_;
  size_t rbq_trained_points_ = 0;
  static constexpr size_t kRbqFullTraining = RaBitQuantizer::kMaxCentres * RaBitQuantizer::kPointsPerCentre;
  // SQ4 quantizer: per-dimension ranges from the first batch (a node's code is its decoded
  // vector's squared norm, a float, then the 4-bit levels).
  ScalarQuantizer sq4_;
  size_t sq4_trained_points_ = 0;  // the ranges are learnt again once kRetrainPoints are in
  static constexpr size_t kRetrainPoints = 1000;

  // pca=<p>: the projection (p x dim, row-major), each component's projection of zero code
  // offset (basis . mean), and its 8-bit quantiser (level = (value - lo) / step; weight = step^2,
  // the walk's distance being sum weight (query level - node level)^2).
  static constexpr size_t kPcaTrainPoints = 1000;
  static constexpr size_t kPcaSample = 20000;
  std::atomic<bool> pca_ready_{false};
  bool pca_enabled_ = true;  // tests and A/B runs switch the pca walk off
  std::vector<float> pca_basis_, pca_bias_, pca_lo_, pca_step_, pca_weight_;
  // pca_basis_ as int8, each component scaled so its largest entry is 127: component j is
  // pca_basis8_ row j times pca_unscale8_[j] (set with the projection).
  std::vector<int8_t> pca_basis8_;
  std::vector<float> pca_unscale8_;
  // The integer walk: 2 <= p <= kMaxIntPcaDims (its clamp keeps every code reachable up to 8255
  // components; p = 1 is left to the float walk, since a file from before the shared step with
  // one component cannot be told from a new one).
  static constexpr size_t kMaxIntPcaDims = 8255;
  bool IntPcaWalkPossible() const { return pca_dims_ >= 2 && pca_dims_ <= kMaxIntPcaDims; }
  // One step for all components (every projection learnt since 2026-12-04): the walk compares a
  // query's rounded half levels with the codes in integers, its distance pca_half_weight_ (the
  // step squared over 4) times l2_sqr_s16_u8x2; the query's half levels within
  // [510 - pca_half_limit_, pca_half_limit_]. Set by SetPcaWalk.
  bool pca_int_walk_ = false;
  bool pca_int_walk_enabled_ = true;  // tests compare it with the float walk
  float pca_half_weight_ = 0, pca_half_limit_ = 0;

  // Entry point: (level << 32) | node, or kNoEntry; changed under entry_mutex_.
  std::atomic<uint64_t> entry_;
  std::mutex entry_mutex_;
  std::unique_ptr<std::mutex[]> link_locks_;

  // Label map, node allocation, tombstone count.
  mutable std::mutex label_mutex_;
  absl::flat_hash_map<label_t, uint32_t> node_of_;  // flat: ~18 bytes per label, not ~48
  std::vector<uint32_t> free_nodes_;
  // Atomic only so that searches may read them without the lock (to size their beam).
  std::atomic<uint32_t> num_nodes_{0};
  std::atomic<size_t> tombstones_{0};
  label_t next_label_ = 0;
  std::atomic<uint64_t> level_counter_{0};
  std::atomic<size_t> inserts_since_reachability_check_{0};
  std::atomic<bool> inline_maintenance_{true};

  // Bumped after each change of which live label a node holds (Add, Remove, consolidation):
  // a cached set of allowed nodes is valid for one generation.
  std::atomic<uint64_t> generation_{0};
  struct AllowedNodesEntry {
    uint64_t filter_id = 0, filter_version = 0, generation = 0;
    uint64_t uses = 0, last_use = 0;
    std::shared_ptr<const std::vector<uint64_t>> bits;
  };
  mutable std::mutex allowed_mutex_;
  mutable std::array<AllowedNodesEntry, 8> allowed_cache_;
  mutable uint64_t allowed_clock_ = 0;

  mutable std::mutex scratch_mutex_;
  mutable std::vector<std::unique_ptr<Scratch>> scratch_pool_;
};

}  // namespace fathom
