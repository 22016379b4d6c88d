// fathom::Index: the one batch interface every vector index implements (Flat, HNSW, ...).
//
// An index stores float32 vectors of a fixed dimension under caller-chosen integer labels (the
// database layer uses its dense 32-bit slots; Faiss users use their ids) and answers k-nearest-
// neighbour queries in batches. Build one from a factory string ("Flat", "HNSW32", "HNSW32,SQ8",
// "HNSW16,efC=100"; see docs/format/factory.md) with MakeIndex.
//
// Distances are always "smaller is closer": squared L2 for kL2, the negated inner product for
// kInnerProduct, 1 - cosine similarity for kCosine (cosine indexes store normalised vectors).
//
// Concurrency: Search, Add, Remove may all be called from many threads at once on the same
// index; each call sees a consistent index (a search never returns a removed label, nor a
// label that was never added). Save may run concurrently with Search but not with Add/Remove.
// Per-query knobs travel in SearchParams, never by mutating the shared index.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fathom/status.h"

namespace fathom {

class ByteSink;
class ByteSource;

// kL1 (Manhattan: sum of absolute differences) is served by Flat and float32 HNSW only.
enum class Metric : uint8_t { kL2 = 0, kInnerProduct = 1, kCosine = 2, kL1 = 3 };

// "l2", "ip", "cosine".
const char* MetricName(Metric metric);
// Accepts "l2" (or "euclidean"), "ip" (or "inner_product", "dot"), "cosine", in any case.
Result<Metric> ParseMetric(std::string_view name);

// Largest squared L2 norm a stored or query vector may have: with both norms below it, every
// distance between two vectors stays finite in float32 (|a - b|^2 <= 4 * max |v|^2 = FLT_MAX).
inline constexpr double kMaxSquaredNorm = 3.4028234663852886e38 / 4;

// OK when every value of `v` is finite and its squared norm is at most kMaxSquaredNorm; else
// InvalidArgument that begins with `what` ("vector 3") and names the offending dimension.
Status CheckVector(const float* v, size_t dim, const std::string& what);
// CheckVector's answer when it is OK, without building a message: one SIMD pass (a search path
// calls it per query). False means "call CheckVector for the verdict".
bool VectorLooksValid(const float* v, size_t dim);

using label_t = int64_t;
// Fills result slots that have no neighbour (fewer than k live, allowed vectors).
inline constexpr label_t kNoLabel = -1;

// An allow-predicate consulted during search: labels it rejects are never returned, but the
// graph may still walk through them (so selective filters do not disconnect the search).
class LabelFilter {
 public:
  virtual ~LabelFilter() = default;
  virtual bool Allowed(label_t label) const = 0;
};

// A LabelFilter over a dense bitset of labels [0, n): the cheap form for the database's slots.
// An index may cache what it derives from one (HNSW: the allowed nodes, when the same filter is
// used for many searches); `id()` and `version()` say which filter and which contents that was.
class BitsetFilter final : public LabelFilter {
 public:
  explicit BitsetFilter(size_t n) : words_((n + 63) / 64, 0), n_(n), id_(NewId()) {}
  BitsetFilter(const BitsetFilter& other)
      : words_(other.words_), n_(other.n_), id_(NewId()), version_(other.version_) {}
  BitsetFilter& operator=(const BitsetFilter& other) {
    words_ = other.words_;
    n_ = other.n_;
    id_ = NewId();
    version_ = other.version_;
    return *this;
  }
  void Set(label_t label) {
    words_[static_cast<size_t>(label) >> 6] |= 1ull << (label & 63);
    ++version_;
  }
  bool Allowed(label_t label) const override {
    return label >= 0 && static_cast<size_t>(label) < n_ &&
           ((words_[static_cast<size_t>(label) >> 6] >> (label & 63)) & 1) != 0;
  }
  size_t count() const;
  // Unique to this object (a copy gets its own); `version` changes with every Set.
  uint64_t id() const { return id_; }
  uint64_t version() const { return version_; }

 private:
  static uint64_t NewId();
  std::vector<uint64_t> words_;
  size_t n_;
  uint64_t id_;
  uint64_t version_ = 0;
};

// A LabelFilter from any callable bool(label_t).
template <class Fn>
class FunctionFilter final : public LabelFilter {
 public:
  explicit FunctionFilter(Fn fn) : fn_(std::move(fn)) {}
  bool Allowed(label_t label) const override { return fn_(label); }

 private:
  Fn fn_;
};

// What searches did, summed over their queries (as Faiss's hnsw_stats): for tuning and for
// tests that check how much work a search does without timing it. Searches from several
// threads may share one.
struct SearchCounters {
  // Distances computed while walking a graph's beam (HNSW: level 0 and the level-1 beam; not
  // the greedy upper levels or the re-ranking).
  std::atomic<uint64_t> distances{0};
  // Nodes whose neighbour lists the beam expanded.
  std::atomic<uint64_t> expansions{0};
};

struct SearchParams {
  // HNSW beam width (candidates kept while searching): higher is slower and more accurate.
  // 0 uses the index default (efS in the factory string, 64 unless set); never below k.
  int ef = 0;
  // Quantized traversal (",SQ8"): how many candidates are re-ranked with exact float32
  // distances. 0 uses 2k. Higher costs a little time and recovers quantization loss.
  int rerank = 0;
  // IVF: how many inverted lists are scanned (the nearest centroids' lists). 0 uses the index
  // default (nprobe in the factory string, 16 unless set); more is slower and more accurate.
  int nprobe = 0;
  // HNSW: beam width on level 1, whose best nodes all seed the level-0 search; 0 (or 1) descends
  // greedily, as hnswlib does. For data of many separated clusters at large scale, where a
  // greedy descent can end next to the query's cluster: at 10M points in 1,000 clusters, ef 512
  // with upper_ef 512 reached recall 0.906 at 380 QPS, where greedy needed ef 4096 (119 QPS).
  // Costs ~15-30% of QPS where the greedy descent already works.
  int upper_ef = 0;
  // Trees (BallTree): stop after examining this many points (FLANN's "checks"), trading
  // recall for speed; 0 = exact search.
  int checks = 0;
  // Only labels this accepts are returned; nullptr accepts all. Not owned.
  const LabelFilter* filter = nullptr;
  // Where to add what the search did (HNSW); nullptr counts nothing. Not owned.
  SearchCounters* counters = nullptr;
};

struct AddOptions {
  // Threads used to insert this batch (the calling thread included); 0 = all hardware threads.
  int threads = 1;
};

// Float vectors kept outside an index, on disk, by label: with one attached
// (Index::SetVectorStore) an index that walks compressed codes ("HNSW32,SQ8", l2 or cosine)
// keeps only its codes and graph in RAM and reads back only the few vectors it needs:
// re-ranking the final candidates, Reconstruct, SearchAmong. The caller writes each vector to
// the store (normalised for cosine) before adding it to the index. Implementations must allow concurrent reads, and reads concurrent with writes of
// other labels.
class VectorStore {
 public:
  virtual ~VectorStore() = default;
  virtual size_t dim() const = 0;
  // Stores (replaces) the vector of `label`.
  virtual Status Write(label_t label, const float* v) = 0;
  // Copies the vectors of labels[0..n) into out[n * dim]. A hint first lets the store fetch
  // them in parallel (cold pages).
  virtual Status Read(size_t n, const label_t* labels, float* out) const = 0;
  // Makes every Write so far durable.
  virtual Status Sync() = 0;
  // Bytes the store occupies on disk.
  virtual uint64_t disk_bytes() const = 0;
};

struct SaveOptions {
  // The save runs while other threads Add and Remove (a database checkpoint). An index that
  // supports it (supports_concurrent_save()) copies itself in small pieces, each under its
  // structure lock only, so writers and searches go on; the file may then mix states from
  // during the save: Load repairs what that can leave (a label on two nodes, a link to a node
  // that was still unused) and the caller must re-apply every change made after the save began
  // (the database replays its log). Other indexes hold their writers for the whole save.
  bool concurrent = false;
};

struct LoadOptions {
  // The store the saved index kept its float vectors in (see SetVectorStore); null when it
  // kept them itself.
  std::shared_ptr<VectorStore> vectors;
};

class Index {
 public:
  virtual ~Index() = default;
  Index(const Index&) = delete;
  Index& operator=(const Index&) = delete;

  size_t dim() const { return dim_; }
  Metric metric() const { return metric_; }

  // Number of live (added and not removed) vectors.
  virtual size_t size() const = 0;
  // The canonical factory string; MakeIndex(factory_string(), dim, metric) builds the same kind.
  virtual std::string factory_string() const = 0;
  // Bytes held by the index (vectors, codes, graph, label maps), excluding allocator slack.
  virtual size_t memory_bytes() const = 0;

  // Adds n vectors (row-major, n * dim floats). labels must be >= 0; nullptr assigns labels
  // counting up from the largest label seen so far + 1. A label already present is replaced
  // (upsert). The whole batch is validated first (labels, finite values, no label twice in the
  // batch); on error nothing is added.
  virtual Status Add(size_t n, const float* x, const label_t* labels,
                     const AddOptions& options = {}) = 0;
  Status Add(size_t n, const float* x) { return Add(n, x, nullptr); }
  // Whether the index's codes can hold these n (finite) vectors' values: FP16 holds magnitudes
  // up to 65504; the error names the row, the dimension and the value. Add checks it too; a
  // database checks a batch with it before committing the batch.
  virtual Status CheckValues(size_t n, const float* x) const { return Status::OK(); }

  // Removes the given labels; labels that are not present are ignored. `removed` (optional)
  // receives how many were present. A removed label is never returned by a later search.
  virtual Status Remove(size_t n, const label_t* labels, size_t* removed = nullptr) = 0;

  // Learns what the index needs from sample vectors: IVF centroids, quantizer ranges and
  // codebooks. Indexes that need no training ignore it. An IVF index that was never trained
  // trains itself on its first vectors once it holds enough (39 per list), answering searches
  // exactly until then, so a database can use it without a separate training step.
  virtual Status Train(size_t n, const float* x);
  virtual bool is_trained() const { return true; }

  virtual bool Contains(label_t label) const = 0;
  // Copies the stored vector (normalised for cosine) into out[dim].
  virtual Status Reconstruct(label_t label, float* out) const = 0;

  // For each of the n queries writes k (distance, label) pairs, closest first, into
  // distances[n * k] and labels[n * k]; missing results get kNoLabel and +infinity.
  virtual Status Search(size_t n, const float* queries, size_t k, float* distances,
                        label_t* labels, const SearchParams& params = {}) const = 0;

  // Exact k-NN among the given candidate labels only (labels not in the index are skipped):
  // what a selective filter needs, without walking the graph. Same output layout as Search.
  virtual Status SearchAmong(size_t n, const float* queries, size_t k, const label_t* candidates,
                             size_t num_candidates, float* distances, label_t* labels) const = 0;

  // Writes the index to `path` atomically (temporary file, fsync, rename), streamed: it never
  // holds a second copy of the index in memory. The file carries a magic, format version,
  // factory string, dimension, metric, count, and a checksum (docs/format/index_file.md).
  Status Save(const std::string& path, const SaveOptions& options = {}) const;
  // Reads an index written by Save, streamed. A truncated, corrupted or foreign file is
  // rejected.
  static Result<std::unique_ptr<Index>> Load(const std::string& path, const LoadOptions& options = {});
  virtual bool supports_concurrent_save() const { return false; }

  // Attaches a store for the float vectors (see VectorStore), before the first Add (or, for
  // Load, through LoadOptions). NotSupported for indexes that need every float in RAM.
  virtual Status SetVectorStore(std::shared_ptr<VectorStore> store);
  // OK when SetVectorStore would take a store (the index walks compressed codes in RAM);
  // otherwise NotSupported saying why and which index to use instead. A database asks before it
  // creates an on_disk collection.
  virtual Status CanUseVectorStore() const;
  // Bytes of the index held on disk (its vector store), beside memory_bytes() in RAM.
  virtual uint64_t disk_bytes() const { return 0; }

  // Housekeeping (for HNSW: relinking around tombstones and freeing them). By default Add and
  // Remove do it themselves when due; a database turns that off with
  // set_inline_maintenance(false) and calls Maintain() from its own thread when
  // NeedsMaintenance() says so, so no caller's write pays for it.
  virtual void set_inline_maintenance(bool) {}
  virtual bool NeedsMaintenance() const { return false; }
  virtual void Maintain() {}

 protected:
  Index(size_t dim, Metric metric) : dim_(dim), metric_(metric) {}
  // Checks a batch of n vectors for non-finite values; the error names the row and column.
  Status ValidateVectors(size_t n, const float* x) const;

 private:
  friend class IndexIO;
  // Body of the index file after the common header, and its inverse on an index made by
  // MakeIndex from the file's factory string.
  // `version` is the file's format version; `fuzzy` says it was saved concurrently.
  virtual Status SerializeBody(ByteSink& out, const SaveOptions& options) const = 0;
  virtual Status DeserializeBody(ByteSource& in, uint64_t count, uint32_t version, bool fuzzy) = 0;

  size_t dim_;
  Metric metric_;
};

// Builds an empty index from a factory string. Errors say what was expected, e.g.
// "unknown index type 'HNSX32': expected Flat, HNSW<M> (e.g. HNSW32) or IVF<nlist> ...".
Result<std::unique_ptr<Index>> MakeIndex(std::string_view factory, size_t dim, Metric metric);

}  // namespace fathom
