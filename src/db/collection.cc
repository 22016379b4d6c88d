#include "db/collection.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <future>
#include <map>
#include <random>
#include <set>
#include <unordered_set>

#include <spdlog/spdlog.h>

#include "db/record_codec.h"
#include "index/factory.h"
#include "index/vector_store.h"
#include "simd/distance.h"
#include "util/file.h"

namespace fathom {
namespace fs = std::filesystem;

namespace {

constexpr uint8_t kOpUpsert = 1;
constexpr uint8_t kOpDelete = 2;
constexpr size_t kMaxK = 10000;
constexpr size_t kMaxIdBytes = 256;
constexpr size_t kParallelAddMinBatch = 32;
// Group commit takes queued upserts up to this many points (always at least one upsert).
constexpr size_t kMaxCommitGroupPoints = 65536;
// Filtered search scans the allowed points exactly when there are few of them (cheap and
// exact), and walks the graph with the filter otherwise (see docs/BENCHMARKS.md).
// Measured on Fashion-MNIST (docs/BENCHMARKS.md): below ~5% of the collection or a few thousand
// points the scan is faster than a filtered walk that must skip most nodes it visits.
constexpr size_t kExactScanMaxPoints = 4000;
constexpr size_t kExactScanMaxShare = 20;  // allowed <= 1/20 of the points
constexpr size_t kMaxCachedFilters = 64;
// records.bin of a snapshot: this magic, a uint32 format version, the records, a CRC-32.
constexpr char kSnapshotMagic[] = "FATHOMSN";
constexpr uint32_t kSnapshotVersion = 1;

std::string EncodeOp(uint8_t op, const std::vector<uint32_t>& slots) {
  std::string out;
  AppendPod(&out, op);
  AppendPod(&out, static_cast<uint32_t>(slots.size()));
  AppendBytes(&out, slots.data(), slots.size() * sizeof(uint32_t));
  return out;
}

// A stored payload's text as JSON; text that does not parse (never written by this code) reads
// as an empty object.
nlohmann::json ParsePayload(std::string_view text) {
  auto payload = nlohmann::json::parse(text, nullptr, false);
  return payload.is_discarded() ? nlohmann::json::object() : payload;
}

std::string VectorLabel(const std::string& name) {
  return name.empty() ? std::string("the vector") : "vector '" + name + "'";
}

}  // namespace

CollectionImpl::CollectionImpl(KvStore* kv, std::string index_dir, CollectionSpec spec,
                               uint32_t id, const DatabaseOptions& options,
                               PayloadIndex payload_index)
    : kv_(kv),
      index_dir_(std::move(index_dir)),
      spec_(std::move(spec)),
      id_(id),
      options_(options),
      payload_index_(std::move(payload_index)),
      recall_(std::make_unique<RecallMonitor>(options.recall_sample_rate, options.recall_cpu_share,
                                              [this](const RecallMonitor::Sample& s) { return ExactIds(s); })),
      tuned_(new std::atomic<int>[3 * spec_.vectors.size()]()),
      tuned_info_(spec_.vectors.size()) {
  PublishSpec(spec_);
}

void CollectionImpl::PublishSpec(const CollectionSpec& spec) {
  std::lock_guard lock(spec_versions_mutex_);
  spec_versions_.push_back(std::make_unique<const CollectionSpec>(spec));
  spec_view_.store(spec_versions_.back().get(), std::memory_order_release);
}

Status CollectionImpl::SetPayloadIndex(const std::string& field, std::optional<FieldType> type,
                                       const std::function<Status(const CollectionSpec&)>& persist) {
  std::shared_lock life(life_mutex_);
  FATHOM_RETURN_IF_ERROR(retired_);
  std::lock_guard write(write_mutex_);  // payloads stay as they are until the swap
  CollectionSpec next = spec();
  auto it = next.indexed_fields.find(field);
  if (type) {
    if (it != next.indexed_fields.end() && it->second == *type) return Status::OK();  // (already so)
    next.indexed_fields[field] = *type;
  } else {
    if (it == next.indexed_fields.end()) {
      return Status::NotFound("collection '" + spec_.name + "' has no payload index on '" + field + "'");
    }
    next.indexed_fields.erase(it);
  }
  FATHOM_ASSIGN_OR_RETURN(PayloadIndex built, PayloadIndex::Create(next.indexed_fields));
  {
    // Beside searches (shared): only writers change payloads, and they wait on write_mutex_.
    std::shared_lock state(state_mutex_);
    for (const uint32_t slot : live_) {
      if (spec_.on_disk_payload) {
        FATHOM_ASSIGN_OR_RETURN(nlohmann::json payload, StoredPayload(slot));
        built.Insert(slot, payload);
      } else {
        built.Insert(slot, CachedPayload(slot));
      }
    }
  }
  FATHOM_RETURN_IF_ERROR(persist(next));
  std::unique_lock state(state_mutex_);
  payload_index_ = std::move(built);
  ++payload_index_epoch_;
  ++state_version_;  // (cached filter plans were made with the old index)
  spdlog::info("collection '{}': payload index on '{}' {}", spec_.name, field,
               type ? std::string("built as ") + FieldTypeName(*type) : std::string("dropped"));
  return Status::OK();
}

// The true k nearest neighbours of a sampled query, by brute force in chunks of slots: the
// locks are taken per chunk, so at 10M points the monitor never holds searches' and writers'
// locks for a whole scan (a waiting writer would block every new search behind it). Points that
// change between chunks may be seen in either state, which a statistic can afford.
Result<std::vector<PointId>> CollectionImpl::ExactIds(const RecallMonitor::Sample& sample) const {
  const size_t vector = VectorIndex(sample.vector);
  if (vector == spec_.vectors.size() || sample.query.size() != spec_.vectors[vector].dim || sample.k == 0) {
    return Status::InvalidArgument("recall sample does not match the collection");
  }
  constexpr size_t kChunk = size_t{1} << 16;
  const size_t k = sample.k;
  std::optional<SlotBitmap> allowed;  // the filter's matches, found once
  std::vector<std::pair<float, PointId>> best;
  std::vector<label_t> candidates;
  std::vector<float> distances(k);
  std::vector<label_t> labels(k);
  uint64_t next = 0;
  while (true) {
    std::shared_lock life(life_mutex_);
    FATHOM_RETURN_IF_ERROR(retired_);
    std::shared_lock state_lock(state_mutex_);
    if (!sample.filter.empty() && !allowed) {
      FATHOM_ASSIGN_OR_RETURN(Filter filter, ParseFilter(sample.filter));
      FATHOM_ASSIGN_OR_RETURN(SlotBitmap matching, MatchingSlots(filter, nullptr));
      allowed = std::move(matching);
    }
    const SlotBitmap& slots = allowed ? *allowed : live_;
    candidates.clear();
    auto it = slots.begin();
    it.equalorlarger(static_cast<uint32_t>(next));
    for (; it != slots.end() && candidates.size() < kChunk; ++it) {
      next = uint64_t{*it} + 1;
      if (allowed && !live_.contains(*it)) continue;  // deleted since the filter ran
      candidates.push_back(*it);
    }
    const bool done = it == slots.end();
    if (!candidates.empty()) {
      std::fill(labels.begin(), labels.end(), kNoLabel);
      FATHOM_RETURN_IF_ERROR(indexes_[vector]->SearchAmong(1, sample.query.data(), k, candidates.data(),
                                                           candidates.size(), distances.data(), labels.data()));
      for (size_t i = 0; i < k; ++i) {
        if (labels[i] == kNoLabel || labels[i] > label_t(UINT32_MAX) || !ids_.Has(uint32_t(labels[i]))) continue;
        best.emplace_back(distances[i], ids_.IdOf(uint32_t(labels[i])));
      }
      std::sort(best.begin(), best.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
      if (best.size() > k) best.resize(k);
    }
    if (done || next > UINT32_MAX) break;
  }
  std::vector<PointId> ids;
  for (auto& [distance, id] : best) ids.push_back(std::move(id));
  return ids;
}

size_t CollectionImpl::VectorIndex(const std::string& name) const {
  for (size_t v = 0; v < spec_.vectors.size(); ++v) {
    if (spec_.vectors[v].name == name) return v;
  }
  return spec_.vectors.size();
}

void CollectionImpl::SetSearchDefaults(size_t v, const SearchDefaults& defaults) {
  {
    std::lock_guard lock(tuned_info_mutex_);
    tuned_info_[v] = defaults;
  }
  tuned_[3 * v].store(defaults.ef);
  tuned_[3 * v + 1].store(defaults.nprobe);
  tuned_[3 * v + 2].store(defaults.checks);
}

SearchDefaults CollectionImpl::search_defaults(const std::string& vector) const {
  std::lock_guard lock(tuned_info_mutex_);
  const size_t v = VectorIndex(vector);
  return v < tuned_info_.size() ? tuned_info_[v] : SearchDefaults{};
}

Result<bool> CollectionImpl::ResetSearchDefaults(const std::string& vector) {
  const size_t v = VectorIndex(vector);
  if (v == spec_.vectors.size()) {
    return Status::InvalidArgument("collection '" + spec_.name + "' has no vector '" + vector + "'");
  }
  std::lock_guard tune_lock(tune_mutex_);
  if (search_defaults(vector).target_recall == 0) return false;
  FATHOM_RETURN_IF_ERROR(StoreSearchDefaults(v, SearchDefaults{}));
  return true;
}

Status CollectionImpl::StoreSearchDefaults(const std::string& vector, const SearchDefaults& defaults) {
  const size_t v = VectorIndex(vector);
  if (v == spec_.vectors.size()) {
    return Status::InvalidArgument("collection '" + spec_.name + "' has no vector '" + vector + "'");
  }
  if (defaults.ef < 0 || defaults.nprobe < 0 || defaults.checks < 0 || !(defaults.target_recall >= 0) ||
      defaults.target_recall > 1) {
    return Status::InvalidArgument("search defaults: settings must be >= 0 and target_recall in [0, 1]");
  }
  std::lock_guard tune_lock(tune_mutex_);
  return StoreSearchDefaults(v, defaults.target_recall == 0 ? SearchDefaults{} : defaults);
}

Status CollectionImpl::StoreSearchDefaults(size_t v, const SearchDefaults& defaults) {
  std::vector<SearchDefaults> all;
  {
    std::lock_guard info_lock(tuned_info_mutex_);
    all = tuned_info_;
  }
  all[v] = defaults;
  nlohmann::json j = nlohmann::json::object();
  for (size_t i = 0; i < all.size(); ++i) {
    const SearchDefaults& d = all[i];
    if (d.target_recall == 0) continue;
    j[spec_.vectors[i].name] = {{"ef", d.ef}, {"nprobe", d.nprobe}, {"checks", d.checks},
                                {"target_recall", d.target_recall}, {"recall", d.recall}};
  }
  KvStore::Batch batch(*kv_);
  batch.Put(Cf::kMeta, "tuned/" + CollectionPrefix(id_), j.dump());
  FATHOM_RETURN_IF_ERROR(kv_->Write(batch));
  SetSearchDefaults(v, defaults);
  return Status::OK();
}

namespace {

// The speed knob of an index family and the settings Tune tries, cheapest first.
struct Knob {
  std::string name;  // "ef", "nprobe", "checks" or "" (exact index)
  std::vector<int> ladder;
};

Knob KnobOf(const std::string& factory, size_t k) {
  Knob knob;
  if (factory.rfind("HNSW", 0) == 0) {
    knob.name = "ef";
    for (int ef : {10, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128, 160, 192, 256, 320, 384, 512, 768, 1024,
                   1536, 2048, 3072, 4096}) {
      if (ef >= static_cast<int>(k)) knob.ladder.push_back(ef);
    }
    if (knob.ladder.empty() || knob.ladder.front() != static_cast<int>(k)) {
      knob.ladder.insert(knob.ladder.begin(), static_cast<int>(k));
    }
  } else if (factory.rfind("IVF", 0) == 0) {
    knob.name = "nprobe";
    const int nlist = std::max(1, std::atoi(factory.c_str() + 3));
    for (int p : {1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 2048, 4096,
                  8192, 16384, 65536}) {
      if (p < nlist) knob.ladder.push_back(p);
    }
    knob.ladder.push_back(nlist);
  } else if (factory.rfind("KDForest", 0) == 0 || factory.rfind("BallTree", 0) == 0) {
    knob.name = "checks";
    for (int c = 16; c <= (1 << 20); c *= 2) knob.ladder.push_back(c);
  }
  return knob;
}

}  // namespace

Result<TuneResult> CollectionImpl::Tune(const TuneRequest& request) {
  const size_t v = VectorIndex(request.vector);
  if (v == spec_.vectors.size()) {
    return Status::InvalidArgument("collection '" + spec_.name + "' has no vector '" + request.vector + "'");
  }
  if (!(request.target_recall > 0 && request.target_recall <= 1)) {
    return Status::InvalidArgument("target recall must be in (0, 1], got " + std::to_string(request.target_recall));
  }
  if (request.k == 0 || request.k > 1000) {
    return Status::InvalidArgument("k must be between 1 and 1000, got " + std::to_string(request.k));
  }
  if (request.queries.empty() && (request.sample == 0 || request.sample > 100000)) {
    return Status::InvalidArgument("sample must be between 1 and 100000, got " + std::to_string(request.sample));
  }
  for (size_t i = 0; i < request.values.size(); ++i) {
    if (request.values[i] < 1 || (i > 0 && request.values[i] <= request.values[i - 1])) {
      return Status::InvalidArgument("tuning values must be ascending settings >= 1, got " +
                                     std::to_string(request.values[i]) + " at position " + std::to_string(i));
    }
  }
  const size_t dim = spec_.vectors[v].dim;
  const size_t k = request.k;
  std::lock_guard tune_lock(tune_mutex_);
  // The queries, and for held-out ones the point each was taken from (left out of its answers).
  std::vector<float> queries;
  std::vector<std::optional<PointId>> held_out;
  if (!request.queries.empty()) {
    if (request.queries.size() % dim != 0) {
      return Status::InvalidArgument("tuning queries have " + std::to_string(request.queries.size()) +
                                     " values, not a multiple of the dimension " + std::to_string(dim));
    }
    for (size_t q = 0; q * dim < request.queries.size(); ++q) {
      FATHOM_RETURN_IF_ERROR(CheckVector(request.queries.data() + q * dim, dim, "tuning query " + std::to_string(q)));
    }
    queries = request.queries;
    held_out.resize(queries.size() / dim);
  } else {
    std::vector<PointId> ids;
    {
      std::shared_lock life(life_mutex_);
      FATHOM_RETURN_IF_ERROR(retired_);
      std::shared_lock state_lock(state_mutex_);
      const uint64_t n = live_.cardinality();
      if (n < 2) return Status::InvalidArgument("collection '" + spec_.name + "' needs at least 2 points to tune");
      // Distinct random points (a fixed seed: the same collection tunes the same way).
      std::mt19937_64 rng(n);
      std::set<uint64_t> ranks;
      const uint64_t want = std::min<uint64_t>(request.sample, n);
      while (ranks.size() < want) ranks.insert(want == n ? ranks.size() : rng() % n);
      for (uint64_t rank : ranks) {
        uint32_t slot = 0;
        if (live_.select(static_cast<uint32_t>(rank), &slot)) ids.push_back(ids_.IdOf(slot));
      }
    }
    FATHOM_ASSIGN_OR_RETURN(auto records, GetRecords(ids, /*with_vectors=*/true));
    for (size_t i = 0; i < ids.size(); ++i) {
      if (!records[i]) continue;  // deleted meanwhile
      const auto it = records[i]->vectors.find(spec_.vectors[v].name);
      if (it == records[i]->vectors.end() || it->second.size() != dim) continue;
      queries.insert(queries.end(), it->second.begin(), it->second.end());
      held_out.push_back(ids[i]);
    }
  }
  const size_t nq = held_out.size();
  if (nq == 0) return Status::InvalidArgument("no tuning queries");
  // A stored point is a flattering query for a graph: it is a node, linked to its own
  // neighbours, where a new query is not (held out naively, HNSW's recall at ef 10 read 0.98 on
  // clustered data where fresh queries got 0.90). So each held-out point is moved off itself by
  // its nearest-neighbour distance in a random direction: as far from the data as a new query
  // from the same distribution tends to be, and the truth is computed for where it moved to.
  std::mt19937_64 noise_rng(nq * 7919 + dim);
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  std::vector<std::vector<PointId>> truth(nq);
  for (size_t q = 0; q < nq; ++q) {
    RecallMonitor::Sample s;
    s.vector = spec_.vectors[v].name;
    s.query.assign(queries.begin() + q * dim, queries.begin() + (q + 1) * dim);
    if (held_out[q]) {
      s.k = 2;
      FATHOM_ASSIGN_OR_RETURN(std::vector<PointId> near, ExactIds(s));
      std::optional<PointId> other;
      for (const PointId& id : near) {
        if (!(id == *held_out[q]) && !other) other = id;
      }
      if (other) {
        FATHOM_ASSIGN_OR_RETURN(auto records, GetRecords({*other}, /*with_vectors=*/true));
        const auto it = records[0] ? records[0]->vectors.find(s.vector) : decltype(records[0]->vectors.end()){};
        if (records[0] && it != records[0]->vectors.end() && it->second.size() == dim) {
          double radius = 0, norm = 0;
          std::vector<float> direction(dim);
          for (size_t j = 0; j < dim; ++j) {
            const double d = double(s.query[j]) - it->second[j];
            radius += d * d;
            direction[j] = gauss(noise_rng);
            norm += double(direction[j]) * direction[j];
          }
          const double scale = std::sqrt(radius) / std::max(std::sqrt(norm), 1e-30);
          for (size_t j = 0; j < dim; ++j) s.query[j] += static_cast<float>(direction[j] * scale);
          std::copy(s.query.begin(), s.query.end(), queries.begin() + q * dim);
        }
      }
    }
    s.k = k;
    FATHOM_ASSIGN_OR_RETURN(truth[q], ExactIds(s));
  }
  const size_t fetch = k;
  TuneResult result;
  result.queries = nq;
  Knob knob = KnobOf(spec_.vectors[v].index, k);
  result.knob = knob.name;
  if (knob.name.empty()) return result;  // exact: recall 1 at no setting
  if (!request.values.empty()) knob.ladder = request.values;
  std::map<size_t, double> measured;  // ladder position -> recall
  auto measure = [&](size_t i) -> Result<double> {
    if (auto it = measured.find(i); it != measured.end()) return it->second;
    size_t found = 0, total = 0;
    constexpr size_t kBatch = 64;  // short batches: the state lock is not held for long
    for (size_t begin = 0; begin < nq; begin += kBatch) {
      const size_t end = std::min(nq, begin + kBatch);
      SearchRequest req;
      req.vector = spec_.vectors[v].name;
      req.queries.assign(queries.begin() + begin * dim, queries.begin() + end * dim);
      req.k = fetch;
      req.with_payload = false;
      (knob.name == "ef" ? req.ef : knob.name == "nprobe" ? req.nprobe : req.checks) = knob.ladder[i];
      FATHOM_ASSIGN_OR_RETURN(auto hits, Search(req, nullptr));
      for (size_t q = begin; q < end; ++q) {
        std::set<PointId> got;
        for (const ScoredPoint& p : hits[q - begin]) got.insert(p.id);
        for (const PointId& id : truth[q]) found += got.count(id);
        total += truth[q].size();
      }
    }
    const double recall = total == 0 ? 1.0 : static_cast<double>(found) / static_cast<double>(total);
    measured[i] = recall;
    result.tried.emplace_back(knob.ladder[i], recall);
    return recall;
  };
  // Recall grows with the knob: find the first rung that reaches the target.
  size_t lo = 0, hi = knob.ladder.size() - 1;
  FATHOM_ASSIGN_OR_RETURN(double top, measure(hi));
  if (top < request.target_recall && knob.name == "checks") {
    result.value = 0;  // 0 = the tree's exact search
    result.recall = 1.0;
  } else if (top < request.target_recall) {
    result.reached = false;
    result.value = knob.ladder[hi];
    result.recall = top;
  } else {
    while (lo < hi) {
      const size_t mid = (lo + hi) / 2;
      FATHOM_ASSIGN_OR_RETURN(double r, measure(mid));
      if (r >= request.target_recall) hi = mid; else lo = mid + 1;
    }
    result.value = knob.ladder[hi];
    result.recall = measured.at(hi);
  }
  if (!request.store) return result;
  SearchDefaults defaults;
  (knob.name == "ef" ? defaults.ef : knob.name == "nprobe" ? defaults.nprobe : defaults.checks) = result.value;
  defaults.target_recall = request.target_recall;
  defaults.recall = result.recall;
  FATHOM_RETURN_IF_ERROR(StoreSearchDefaults(v, defaults));
  return result;
}

RecallEstimate CollectionImpl::recall_estimate() const { return recall_->estimate(); }

Status CollectionImpl::ValidateSpec(const CollectionSpec& spec) {
  FATHOM_RETURN_IF_ERROR(ValidateCollectionName(spec.name));
  FATHOM_RETURN_IF_ERROR(ValidateCollectionMetadata(spec.metadata));
  if (spec.vectors.empty()) {
    return Status::InvalidArgument("collection '" + spec.name + "' needs at least one vector");
  }
  std::set<std::string> names;
  for (const auto& v : spec.vectors) {
    if (!names.insert(v.name).second) {
      return Status::InvalidArgument("collection '" + spec.name + "' names vector '" + v.name +
                                     "' twice");
    }
    if (v.name.size() > 64) return Status::InvalidArgument("vector name '" + v.name + "' is too long");
    auto index = MakeIndex(v.index, v.dim, v.metric);
    if (!index.ok()) return index.status();
    if (v.on_disk) {
      if (Status s = (*index)->CanUseVectorStore(); !s.ok()) {
        return Status::InvalidArgument(VectorLabel(v.name) + ": " + s.message());
      }
    }
  }
  if (spec.vectors.size() > 1) {
    for (const auto& v : spec.vectors) {
      if (v.name.empty()) {
        return Status::InvalidArgument("collection '" + spec.name +
                                       "' has several vectors: each needs a name");
      }
    }
  }
  auto payload_index = PayloadIndex::Create(spec.indexed_fields);
  if (!payload_index.ok()) return payload_index.status();
  return Status::OK();
}

Result<std::shared_ptr<CollectionImpl>> CollectionImpl::Open(KvStore* kv, std::string index_dir,
                                                             CollectionSpec spec, uint32_t id,
                                                             const DatabaseOptions& options) {
  FATHOM_RETURN_IF_ERROR(ValidateSpec(spec));
  FATHOM_ASSIGN_OR_RETURN(PayloadIndex payload_index, PayloadIndex::Create(spec.indexed_fields));
  std::shared_ptr<CollectionImpl> c(new CollectionImpl(kv, std::move(index_dir), std::move(spec),
                                                       id, options, std::move(payload_index)));
  std::error_code ec;
  fs::create_directories(c->index_dir_, ec);
  if (ec) return Status::IOError("cannot create '" + c->index_dir_ + "': " + ec.message());
  // Temporary files of checkpoints a crash interrupted: never valid, never read.
  for (const auto& entry : fs::directory_iterator(c->index_dir_, ec)) {
    if (entry.path().extension() == ".tmp") {
      spdlog::info("collection '{}': removing {} left by an interrupted checkpoint", c->spec_.name,
                   entry.path().string());
      fs::remove(entry.path(), ec);
    }
  }
  FATHOM_RETURN_IF_ERROR(c->Recover());
  for (auto& index : c->indexes_) index->set_inline_maintenance(false);
  // Points replayed from the log count toward the next checkpoint, and a long replay is
  // checkpointed at once (in the background): otherwise a process that keeps crashing before
  // the interval never checkpoints, and every open replays more.
  c->StartMaintenance();
  if (c->ops_since_checkpoint_ >= c->options_.checkpoint_every) c->WakeMaintenance();
  return c;
}

CollectionImpl::~CollectionImpl() {
  recall_->Stop();
  StopMaintenance();
}

void CollectionImpl::StartMaintenance() {
  std::lock_guard lock(maintenance_mutex_);
  if (maintenance_.joinable()) return;
  maintenance_stop_ = false;
  maintenance_ = std::thread([this] { MaintenanceLoop(); });
}

void CollectionImpl::StopMaintenance() {
  {
    std::lock_guard lock(maintenance_mutex_);
    maintenance_stop_ = true;
  }
  maintenance_cv_.notify_all();
  if (maintenance_.joinable()) maintenance_.join();
}

void CollectionImpl::WakeMaintenance() {
  {
    std::lock_guard lock(maintenance_mutex_);
    maintenance_wanted_ = true;
  }
  maintenance_cv_.notify_all();
}

void CollectionImpl::MaintenanceLoop() {
  while (true) {
    {
      std::unique_lock lock(maintenance_mutex_);
      // Woken by writes that reach the checkpoint interval; the timeout retries a failed
      // checkpoint after its back-off and catches consolidation that deletes made due.
      maintenance_cv_.wait_for(lock, std::chrono::seconds(1),
                               [&] { return maintenance_stop_ || maintenance_wanted_; });
      if (maintenance_stop_) return;
      maintenance_wanted_ = false;
    }
    MaintainOnce();
  }
}

// Called on the maintenance thread. A checkpoint that fails must not fail any write (they are
// acknowledged whatever happens here): failures are logged, counted for /metrics, and retried
// with back-off (1 s doubling to 5 min). Successful ones are paced (below).
void CollectionImpl::MaintainOnce() {
  std::shared_lock life(life_mutex_);
  if (!retired_.ok()) return;
  for (auto& index : indexes_) {
    if (index->NeedsMaintenance()) index->Maintain();
  }
  uint64_t ops;
  {
    std::lock_guard write_lock(write_mutex_);
    ops = ops_since_checkpoint_;
  }
  if (ops == 0) return;
  const auto now = std::chrono::steady_clock::now();
  const bool by_count = ops >= options_.checkpoint_every;
  const bool by_age = options_.checkpoint_after_seconds > 0 &&
                      now - last_checkpoint() >= std::chrono::seconds(options_.checkpoint_after_seconds);
  if (!by_count && !by_age) return;
  if (now < next_checkpoint_attempt_) return;
  Status s = RunCheckpoint();
  if (s.ok()) {
    checkpoint_backoff_ = std::chrono::seconds(0);
    // Pacing: a checkpoint rewrites the whole index (gigabytes at 10M points), so while points
    // stream in, the next one waits three times as long as this one took: checkpoints take at
    // most a quarter of the time and disk bandwidth, and the log to replay after a crash stays
    // about what three checkpoint durations of ingest add.
    const auto took = std::chrono::steady_clock::now() - now;
    next_checkpoint_attempt_ = std::chrono::steady_clock::now() + 3 * took;
    return;
  }
  checkpoint_failures_.fetch_add(1, std::memory_order_relaxed);
  checkpoint_backoff_ = std::min<std::chrono::seconds>(
      std::chrono::seconds(300), std::max<std::chrono::seconds>(std::chrono::seconds(1), 2 * checkpoint_backoff_));
  next_checkpoint_attempt_ = std::chrono::steady_clock::now() + checkpoint_backoff_;
  spdlog::warn("collection '{}': checkpoint failed ({}); every write is in the log; retrying in {} s",
               spec_.name, s.ToString(), checkpoint_backoff_.count());
}

std::string CollectionImpl::CheckpointPath(size_t vector, uint64_t seq) const {
  return index_dir_ + "/" + std::to_string(vector) + "." + std::to_string(seq) + ".fathom";
}

// Recovery: records are the truth. Each index comes from its newest valid checkpoint plus the
// slots the operation log touched after it, or is rebuilt from the records.
//
// The index files load on a second thread while this one scans the log and the records (the
// two halves of an open take similar time at 10M points). The scans assume each vector's newest
// checkpoint file will load; in the rare case it does not (corrupt, or from another build), the
// vectors the fallback needs are collected by a second pass.
Status CollectionImpl::Recover() {
  using Clock = std::chrono::steady_clock;
  const auto t_start = Clock::now();
  auto since = [](Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); };
  const std::string prefix = CollectionPrefix(id_);
  FATHOM_ASSIGN_OR_RETURN(auto trimmed_value, kv_->Get(Cf::kMeta, "trimmed/" + prefix));
  uint64_t trimmed = trimmed_value ? ReadBigEndian64(trimmed_value->data()) : 0;
  FATHOM_ASSIGN_OR_RETURN(auto last_key, kv_->LastKey(Cf::kOplog, prefix));
  seq_ = last_key ? ReadBigEndian64(last_key->data() + 4) : trimmed;
  seq_ = std::max(seq_, trimmed);
  FATHOM_ASSIGN_OR_RETURN(auto log_position, kv_->Get(Cf::kMeta, "logpos/" + prefix));
  if (log_position) log_position_.store(ReadBigEndian64(log_position->data()));
  // The search defaults Tune stored.
  FATHOM_ASSIGN_OR_RETURN(auto tuned, kv_->Get(Cf::kMeta, "tuned/" + prefix));
  if (tuned) {
    auto j = nlohmann::json::parse(*tuned, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) return Status::Corruption("collection '" + spec_.name + "': stored search defaults are not JSON");
    for (const auto& [name, d] : j.items()) {
      const size_t v = VectorIndex(name);
      if (v == spec_.vectors.size() || !d.is_object()) continue;
      SearchDefaults info;
      info.ef = d.value("ef", 0);
      info.nprobe = d.value("nprobe", 0);
      info.checks = d.value("checks", 0);
      info.target_recall = d.value("target_recall", 0.0);
      info.recall = d.value("recall", 0.0);
      SetSearchDefaults(v, info);
    }
  }
  // The recall estimate the last clean close kept (a statistic: unreadable means none).
  FATHOM_ASSIGN_OR_RETURN(auto recall, kv_->Get(Cf::kMeta, "recall/" + prefix));
  if (recall) {
    auto j = nlohmann::json::parse(*recall, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.value("samples", 0) > 0) {
      RecallEstimate previous;
      previous.recall = j.value("recall", 0.0);
      previous.samples = j.value("samples", uint64_t{0});
      recall_->Seed(previous);
    }
  }

  // Checkpoint files per vector that the log can bridge, newest first.
  const size_t nv = spec_.vectors.size();
  std::vector<std::vector<std::pair<uint64_t, std::string>>> files(nv);
  indexes_.resize(nv);
  stores_.resize(nv);
  for (size_t v = 0; v < nv; ++v) {
    const VectorSpec& vs = spec_.vectors[v];
    bool store_created = false;
    if (vs.on_disk) {
      FATHOM_ASSIGN_OR_RETURN(stores_[v], FileVectorStore::Open(VectorStorePath(v), vs.dim, &store_created));
    }
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(index_dir_, ec)) {
      std::string name = entry.path().filename().string();
      std::string head = std::to_string(v) + ".";
      if (name.rfind(head, 0) != 0 || entry.path().extension() != ".fathom") continue;
      std::string middle = name.substr(head.size(), name.size() - head.size() - 7);
      if (middle.empty() || middle.find_first_not_of("0123456789") != std::string::npos) continue;
      const uint64_t seq = std::stoull(middle);
      if (seq < trimmed || seq > seq_) continue;  // the log cannot bridge the gap
      files[v].emplace_back(seq, entry.path().string());
    }
    std::sort(files[v].rbegin(), files[v].rend());
    if (store_created && !files[v].empty()) {
      // The vectors a checkpoint re-ranks with are gone (the file was removed): rebuild.
      spdlog::warn("collection '{}': {} has no vector file; rebuilding its index from the records",
                   spec_.name, VectorLabel(vs.name));
      files[v].clear();
    }
  }
  // What the scans assume: each vector's newest file loads.
  std::vector<bool> loaded(nv, false);
  std::vector<uint64_t> loaded_seq(nv, 0);
  for (size_t v = 0; v < nv; ++v) {
    loaded[v] = !files[v].empty();
    loaded_seq[v] = loaded[v] ? files[v].front().first : 0;
  }
  const std::vector<bool> assumed_loaded = loaded;
  const std::vector<uint64_t> assumed_seq = loaded_seq;

  double load_seconds = 0;
  auto load_indexes = [&]() -> Status {
    const auto t_load = Clock::now();
    for (size_t v = 0; v < nv; ++v) {
      const VectorSpec& vs = spec_.vectors[v];
      loaded[v] = false;
      LoadOptions load_options;
      load_options.vectors = stores_[v];
      for (const auto& [seq, path] : files[v]) {
        auto index = Index::Load(path, load_options);
        if (!index.ok()) {
          spdlog::warn("collection '{}': skipping checkpoint {}: {}", spec_.name, path,
                       index.status().ToString());
          continue;
        }
        if ((*index)->dim() != vs.dim || (*index)->metric() != vs.metric) {
          spdlog::warn("collection '{}': skipping checkpoint {}: it does not match the spec",
                       spec_.name, path);
          continue;
        }
        indexes_[v] = std::move(index).value();
        loaded[v] = true;
        loaded_seq[v] = seq;
        break;
      }
      if (!loaded[v]) {
        FATHOM_ASSIGN_OR_RETURN(indexes_[v], MakeIndex(vs.index, vs.dim, vs.metric));
        if (stores_[v]) FATHOM_RETURN_IF_ERROR(indexes_[v]->SetVectorStore(stores_[v]));
      }
    }
    load_seconds = since(t_load);
    return Status::OK();
  };
  std::future<Status> loading = std::async(std::launch::async, load_indexes);
  // Whatever happens below, the loader must finish before this frame goes away.
  struct JoinLoader {
    std::future<Status>& f;
    ~JoinLoader() {
      if (f.valid()) f.wait();
    }
  } join_loader{loading};

  // Slots the log touched after `from`.
  auto touched_since = [&](uint64_t from, std::unordered_set<uint32_t>* touched) -> Status {
    touched->clear();
    return kv_->Scan(Cf::kOplog, prefix, [&](std::string_view key, std::string_view value) {
      uint64_t seq = ReadBigEndian64(key.data() + 4);
      if (seq <= from || value.size() < 5) return true;
      uint32_t n;
      std::memcpy(&n, value.data() + 1, 4);
      for (uint32_t i = 0; i < n && 5 + 4 * (i + 1) <= value.size(); ++i) {
        uint32_t slot;
        std::memcpy(&slot, value.data() + 5 + 4 * i, 4);
        touched->insert(slot);
      }
      return true;
    });
  };
  auto replay_point = [&](const std::vector<bool>& is_loaded, const std::vector<uint64_t>& seqs) {
    uint64_t from = seq_;
    for (size_t v = 0; v < nv; ++v) {
      if (is_loaded[v]) from = std::min(from, seqs[v]);
    }
    return from;
  };
  // Vector v needs the vectors of `slot` when its index did not load, or when the log touched
  // the slot after v's checkpoint.
  auto needs = [&](size_t v, bool replayed, const std::vector<bool>& is_loaded, const std::vector<uint64_t>& seqs) {
    return !is_loaded[v] || (replayed && seqs[v] < seq_);
  };
  std::vector<std::vector<float>> pending(nv);
  std::vector<std::vector<label_t>> pending_labels(nv);
  // One pass over the records: with `build_maps` the id maps, payloads and payload index;
  // vectors for each v in `collect` that needs them.
  auto scan_records = [&](bool build_maps, const std::unordered_set<uint32_t>& touched,
                          const std::vector<bool>& collect, const std::vector<bool>& is_loaded,
                          const std::vector<uint64_t>& seqs) -> Status {
    Status decode_error;
    Status scan = kv_->Scan(Cf::kRecords, prefix, [&](std::string_view key, std::string_view value) {
      uint32_t slot = ReadBigEndian32(key.data() + 4);
      // Vectors are decoded only for the indexes that still need them: with a valid
      // checkpoint, open reads ids and payloads only.
      const bool replayed = touched.count(slot) != 0;
      bool needs_vectors = false;
      for (size_t v = 0; v < nv; ++v) needs_vectors = needs_vectors || (collect[v] && needs(v, replayed, is_loaded, seqs));
      if (!build_maps && !needs_vectors) return true;
      Record record;
      bool inline_vectors = false;
      Status s = DecodeRecord(value, &record, needs_vectors, &inline_vectors);
      if (s.ok() && needs_vectors && !inline_vectors) s = ReadVectors(slot, &record);
      if (!s.ok()) {
        decode_error = Status::Corruption("collection '" + spec_.name + "' slot " + std::to_string(slot) + ": " +
                                          s.message());
        return false;
      }
      if (build_maps) {
        const nlohmann::json payload = ParsePayload(record.payload);
        ids_.Set(slot, record.id);
        payload_index_.Insert(slot, payload);
        if (!spec_.on_disk_payload) payloads_.Set(slot, record.payload);
        live_.add(slot);
      }
      for (size_t v = 0; v < nv; ++v) {
        if (!collect[v] || !needs(v, replayed, is_loaded, seqs)) continue;
        auto it = record.vectors.find(spec_.vectors[v].name);
        if (it == record.vectors.end()) continue;
        pending[v].insert(pending[v].end(), it->second.begin(), it->second.end());
        pending_labels[v].push_back(slot);
      }
      return true;
    });
    FATHOM_RETURN_IF_ERROR(scan);
    return decode_error;
  };

  const auto t_scan = Clock::now();
  std::unordered_set<uint32_t> touched;
  FATHOM_RETURN_IF_ERROR(touched_since(replay_point(assumed_loaded, assumed_seq), &touched));
  FATHOM_RETURN_IF_ERROR(scan_records(true, touched, std::vector<bool>(nv, true), assumed_loaded, assumed_seq));
  next_slot_ = ids_.slots();
  const double scan_seconds = since(t_scan);
  FATHOM_RETURN_IF_ERROR(loading.get());
  if (loaded != assumed_loaded || loaded_seq != assumed_seq) {
    // A checkpoint file did not load: collect what the fallback needs.
    std::vector<bool> redo(nv, false);
    for (size_t v = 0; v < nv; ++v) {
      redo[v] = loaded[v] != assumed_loaded[v] || loaded_seq[v] != assumed_seq[v];
      if (redo[v]) pending[v].clear(), pending_labels[v].clear();
    }
    FATHOM_RETURN_IF_ERROR(touched_since(replay_point(loaded, loaded_seq), &touched));
    FATHOM_RETURN_IF_ERROR(scan_records(false, touched, redo, loaded, loaded_seq));
  }
  const uint64_t replay_from = replay_point(loaded, loaded_seq);
  checkpoint_seq_ = replay_from;

  const auto t_replay = Clock::now();
  for (size_t v = 0; v < nv; ++v) {
    ops_since_checkpoint_ = std::max<uint64_t>(ops_since_checkpoint_, pending_labels[v].size());
  }
  if (replay_from < seq_) ops_since_checkpoint_ = std::max<uint64_t>(ops_since_checkpoint_, touched.size());
  for (uint32_t s = 0; s < next_slot_; ++s) {
    if (!ids_.Has(s)) free_slots_.push_back(s);
  }
  std::reverse(free_slots_.begin(), free_slots_.end());
  AddOptions add_options;
  add_options.threads = 0;
  for (size_t v = 0; v < nv; ++v) {
    if (loaded[v]) {
      // Touched slots that no longer hold a record were deleted after the checkpoint.
      std::vector<label_t> gone;
      for (uint32_t slot : touched) {
        if (!live_.contains(slot)) gone.push_back(slot);
      }
      FATHOM_RETURN_IF_ERROR(indexes_[v]->Remove(gone.size(), gone.data()));
    }
    if (!pending_labels[v].empty()) {
      FATHOM_RETURN_IF_ERROR(WriteStoreRows(v, pending_labels[v].size(), pending[v].data(), pending_labels[v].data()));
      FATHOM_RETURN_IF_ERROR(indexes_[v]->Add(pending_labels[v].size(), pending[v].data(),
                                              pending_labels[v].data(), add_options));
    }
    if (!loaded[v] && !pending_labels[v].empty()) {
      spdlog::info("collection '{}': rebuilt {} from {} records", spec_.name,
                   VectorLabel(spec_.vectors[v].name), pending_labels[v].size());
    }
  }
  spdlog::info("collection '{}': opened in {:.2f} s ({} points; index files {:.2f} s in parallel with "
               "log and record scan {:.2f} s, replay of {} slots {:.2f} s)",
               spec_.name, since(t_start), ids_.size(), load_seconds, scan_seconds, touched.size(),
               since(t_replay));
  return Status::OK();
}

Status CollectionImpl::ValidatePayloads(const std::vector<Record>& records,
                                        const std::vector<nlohmann::json>& payloads, uint64_t* epoch) const {
  std::shared_lock state(state_mutex_);
  if (epoch != nullptr) *epoch = payload_index_epoch_;
  for (size_t i = 0; i < records.size() && i < payloads.size(); ++i) {
    FATHOM_RETURN_IF_ERROR(payload_index_.Validate(payloads[i], "point " + PointIdToString(records[i].id)));
  }
  return Status::OK();
}

Status CollectionImpl::ValidateRecords(const std::vector<Record>& records,
                                       std::vector<nlohmann::json>* payloads, uint64_t* epoch,
                                       bool index_types) const {
  if (records.empty()) return Status::InvalidArgument("upsert batch is empty");
  std::unordered_set<std::string> seen;
  payloads->clear();
  payloads->reserve(records.size());
  for (size_t i = 0; i < records.size(); ++i) {
    const Record& r = records[i];
    const std::string who = "point " + PointIdToString(r.id);
    if (const auto* s = std::get_if<std::string>(&r.id)) {
      if (s->empty() || s->size() > kMaxIdBytes) {
        return Status::InvalidArgument("point at position " + std::to_string(i) +
                                       ": string ids must be 1 to 256 bytes");
      }
    }
    if (!seen.insert(IdKey(r.id)).second) {
      return Status::InvalidArgument(who + " appears more than once in the batch");
    }
    for (const auto& entry : r.vectors) {
      const std::string& name = entry.first;
      bool known = std::any_of(spec_.vectors.begin(), spec_.vectors.end(),
                               [&](const VectorSpec& v) { return v.name == name; });
      if (!known) {
        return Status::InvalidArgument(who + " has " + VectorLabel(name) + ", which collection '" +
                                       spec_.name + "' does not define");
      }
    }
    for (size_t v = 0; v < spec_.vectors.size(); ++v) {
      const VectorSpec& vs = spec_.vectors[v];
      auto it = r.vectors.find(vs.name);
      if (it == r.vectors.end()) {
        return Status::InvalidArgument(who + " is missing " + VectorLabel(vs.name));
      }
      if (it->second.size() != vs.dim) {
        return Status::InvalidArgument(who + ": " + VectorLabel(vs.name) + " has " +
                                       std::to_string(it->second.size()) +
                                       " dimensions, collection '" + spec_.name + "' expects " +
                                       std::to_string(vs.dim));
      }
      FATHOM_RETURN_IF_ERROR(CheckVector(it->second.data(), vs.dim, who + ": " + VectorLabel(vs.name)));
      // What the index's codes can hold (FP16: magnitudes up to 65504).
      if (Status s = indexes_[v]->CheckValues(1, it->second.data()); !s.ok()) {
        return Status::InvalidArgument(who + ": " + VectorLabel(vs.name) + ": " + s.message());
      }
    }
    const std::string& text = r.payload.empty() ? std::string("{}") : r.payload;
    auto payload = nlohmann::json::parse(text, nullptr, false);
    if (payload.is_discarded()) {
      return Status::InvalidArgument(who + ": payload is not valid JSON");
    }
    if (!payload.is_object()) {
      return Status::InvalidArgument(who + ": payload must be a JSON object, got " +
                                     std::string(payload.type_name()));
    }
    payloads->push_back(std::move(payload));
  }
  if (!index_types) return Status::OK();
  return ValidatePayloads(records, *payloads, epoch);
}

Status CollectionImpl::Upsert(const std::vector<Record>& records, uint64_t log_position) {
  PendingUpsert me;
  me.records = &records;
  me.log_position = log_position;
  // A replicated log's write (log_position > 0) is applied whatever the payload index's types:
  // the node that accepted it checked it against the collection's spec then, and a payload
  // index made meanwhile keeps a value of another type as it keeps those stored before it
  // (read from the payload). Rejecting it here would drop an acknowledged write on every replica.
  FATHOM_RETURN_IF_ERROR(ValidateRecords(records, &me.payloads, &me.epoch, /*index_types=*/log_position == 0));
  std::shared_lock life(life_mutex_);
  FATHOM_RETURN_IF_ERROR(retired_);
  upsert_requests_.fetch_add(1, std::memory_order_relaxed);
  std::unique_lock queue_lock(commit_mutex_);
  commit_queue_.push_back(&me);
  commit_cv_.wait(queue_lock, [&] { return me.done || !committing_; });
  // Leader until this upsert is committed: each round takes the queue from its front (upserts
  // that arrived first, then this one and those behind it), up to kMaxCommitGroupPoints points.
  while (!me.done) {
    committing_ = true;
    std::vector<PendingUpsert*> group;
    size_t points = 0;
    auto taken = commit_queue_.begin();
    while (taken != commit_queue_.end() && (group.empty() || points + (*taken)->records->size() <= kMaxCommitGroupPoints)) {
      points += (*taken)->records->size();
      group.push_back(*taken++);
    }
    commit_queue_.erase(commit_queue_.begin(), taken);
    queue_lock.unlock();
    try {
      std::lock_guard write_lock(write_mutex_);
      // A payload index made or changed since an upsert was validated: it must fit that too.
      std::vector<PendingUpsert*> valid;
      for (PendingUpsert* p : group) {
        if (p->log_position == 0 && p->epoch != payload_index_epoch_) {
          if (Status s = ValidatePayloads(*p->records, p->payloads, &p->epoch); !s.ok()) {
            p->status = s;
            continue;
          }
        }
        valid.push_back(p);
      }
      if (!valid.empty()) CommitUpserts(valid);
    } catch (const std::exception& e) {
      // (Out of memory, say.) The others waiting on this group must still be woken.
      for (PendingUpsert* p : group) p->status = Status::Internal(std::string("upsert failed: ") + e.what());
    }
    upsert_commits_.fetch_add(1, std::memory_order_relaxed);
    queue_lock.lock();
    for (PendingUpsert* p : group) p->done = true;
    committing_ = false;
    commit_cv_.notify_all();
  }
  return me.status;
}

void CollectionImpl::CommitUpserts(const std::vector<PendingUpsert*>& group) {
  auto fail_all = [&](const Status& s) {
    for (PendingUpsert* p : group) p->status = s;
  };
  // Slots: existing ids keep theirs, also ids an earlier upsert of this group writes; new ids
  // take free slots, then fresh ones.
  struct Placed {
    std::vector<uint32_t> slots;
    std::vector<bool> fresh;
    std::vector<const nlohmann::json*> earlier;  // the payload an earlier upsert of the group gives it
  };
  std::vector<Placed> placed(group.size());
  bool repeats = false;  // some id is written by two upserts of the group
  {
    std::unordered_map<std::string, std::pair<uint32_t, const nlohmann::json*>> in_group;
    std::shared_lock lock(state_mutex_);
    size_t next_free = free_slots_.size();
    uint32_t next_slot = next_slot_;
    for (size_t g = 0; g < group.size(); ++g) {
      const std::vector<Record>& records = *group[g]->records;
      Placed& pl = placed[g];
      pl.slots.resize(records.size());
      pl.fresh.assign(records.size(), false);
      pl.earlier.assign(records.size(), nullptr);
      for (size_t i = 0; i < records.size(); ++i) {
        std::pair<uint32_t, const nlohmann::json*>* mine = nullptr;
        if (group.size() > 1) {  // (ids are distinct within one upsert)
          const nlohmann::json* payload = &group[g]->payloads[i];
          auto [it, added] = in_group.try_emplace(IdKey(records[i].id), 0u, payload);
          if (!added) {
            repeats = true;
            pl.slots[i] = it->second.first;
            pl.earlier[i] = it->second.second;
            it->second.second = payload;
            continue;
          }
          mine = &it->second;
        }
        if (auto found = ids_.Find(records[i].id)) {
          pl.slots[i] = *found;
        } else {
          pl.fresh[i] = true;
          pl.slots[i] = next_free > 0 ? free_slots_[--next_free] : next_slot++;
        }
        if (mine) mine->first = pl.slots[i];
      }
    }
  }
  // Payloads not cached in RAM: the replaced ones come from the store or from an earlier upsert
  // of the group (for the payload index).
  std::vector<std::vector<nlohmann::json>> old_payloads(group.size());
  if (spec_.on_disk_payload) {
    for (size_t g = 0; g < group.size(); ++g) {
      old_payloads[g].resize(placed[g].slots.size());
      for (size_t i = 0; i < placed[g].slots.size(); ++i) {
        if (placed[g].earlier[i]) {
          old_payloads[g][i] = *placed[g].earlier[i];
        } else if (!placed[g].fresh[i]) {
          Result<nlohmann::json> old = StoredPayload(placed[g].slots[i]);
          if (!old.ok()) return fail_all(old.status());
          old_payloads[g][i] = std::move(*old);
        }
      }
    }
  }
  KvStore::Batch batch(*kv_);
  std::vector<std::vector<std::string>> payload_texts(group.size());
  size_t total = 0;
  uint64_t log_position = 0;
  for (const PendingUpsert* p : group) log_position = std::max(log_position, p->log_position);
  PutLogPosition(&batch, log_position);
  for (size_t g = 0; g < group.size(); ++g) {
    const std::vector<Record>& records = *group[g]->records;
    payload_texts[g].resize(records.size());
    for (size_t i = 0; i < records.size(); ++i) {
      payload_texts[g][i] = group[g]->payloads[i].dump();
      const std::string key = RecordKey(id_, placed[g].slots[i]);
      batch.Put(Cf::kRecords, key, EncodeRecord(records[i], payload_texts[g][i], /*with_vectors=*/false));
      batch.Put(Cf::kVectors, key, EncodeVectors(records[i].vectors));
    }
    batch.Put(Cf::kOplog, OplogKey(id_, seq_ + 1 + g), EncodeOp(kOpUpsert, placed[g].slots));
    total += records.size();
  }
  if (Status s = kv_->Write(batch); !s.ok()) return fail_all(s);
  seq_ += group.size();
  if (log_position > 0) log_position_.store(log_position);
  // Durable: now make it visible, upsert by upsert. Maps first, so every slot an index returns
  // has its id.
  {
    std::unique_lock lock(state_mutex_);
    ++state_version_;
    for (size_t g = 0; g < group.size(); ++g) {
      const std::vector<Record>& records = *group[g]->records;
      std::vector<nlohmann::json>& payloads = group[g]->payloads;
      for (size_t i = 0; i < records.size(); ++i) {
        uint32_t slot = placed[g].slots[i];
        if (placed[g].fresh[i]) {
          if (!free_slots_.empty() && free_slots_.back() == slot) {
            free_slots_.pop_back();
          } else {
            next_slot_ = std::max(next_slot_, slot + 1);
          }
          ids_.Set(slot, records[i].id);
          live_.add(slot);
        } else {
          payload_index_.Remove(slot, spec_.on_disk_payload ? old_payloads[g][i] : CachedPayload(slot));
        }
        payload_index_.Insert(slot, payloads[i]);
        if (!spec_.on_disk_payload) {
          payloads_.Set(slot, payload_texts[g][i]);
        }
      }
    }
  }
  // One index insert for the group: a slot written twice gets its last vectors only.
  std::vector<std::pair<size_t, size_t>> rows;  // (upsert, record), in arrival order
  rows.reserve(total);
  {
    std::unordered_map<uint32_t, size_t> last;  // slot -> its last position in rows
    for (size_t g = 0; g < group.size(); ++g) {
      for (size_t i = 0; i < placed[g].slots.size(); ++i) {
        if (repeats) {
          auto [it, added] = last.try_emplace(placed[g].slots[i], rows.size());
          if (!added) {
            rows[it->second] = {g, i};  // keeps the first position, takes the later record
            continue;
          }
        }
        rows.emplace_back(g, i);
      }
    }
  }
  std::vector<float> data;
  std::vector<label_t> labels(rows.size());
  for (size_t r = 0; r < rows.size(); ++r) labels[r] = placed[rows[r].first].slots[rows[r].second];
  // Large groups insert on every core; small ones are not worth starting threads for.
  AddOptions add_options;
  add_options.threads = rows.size() >= kParallelAddMinBatch ? 0 : 1;
  for (size_t v = 0; v < indexes_.size(); ++v) {
    const VectorSpec& vs = spec_.vectors[v];
    data.clear();
    data.reserve(rows.size() * vs.dim);
    for (auto [g, i] : rows) {
      const auto& values = (*group[g]->records)[i].vectors.at(vs.name);
      data.insert(data.end(), values.begin(), values.end());
    }
    // On-disk vectors: their rows first, after the commit (the records are the log of them:
    // recovery rewrites the rows of every slot the log touched after the last checkpoint).
    if (Status s = WriteStoreRows(v, rows.size(), data.data(), labels.data()); !s.ok()) {
      // The write is durable and stays acknowledged; the file misses it until recovery
      // rewrites it, so no checkpoint may trim the log meanwhile.
      store_damaged_.store(true);
      spdlog::error("collection '{}': the write is durable but {}'s vector file missed it ({}); "
                    "checkpoints are held until a restart repairs the file from the log",
                    spec_.name, VectorLabel(vs.name), s.ToString());
    }
    Status s = indexes_[v]->Add(rows.size(), data.data(), labels.data(), add_options);
    FATHOM_CHECK(s.ok(), "index rejected a validated batch: " + s.ToString());
  }
  ops_since_checkpoint_ += total;
  if (ops_since_checkpoint_ >= options_.checkpoint_every) WakeMaintenance();
}

Result<std::vector<std::optional<Record>>> CollectionImpl::Get(const std::vector<PointId>& ids,
                                                               bool with_vectors) const {
  std::shared_lock life(life_mutex_);
  FATHOM_RETURN_IF_ERROR(retired_);
  return GetRecords(ids, with_vectors);
}

Result<ScrollPage> CollectionImpl::Scroll(const ScrollRequest& request) const {
  if (request.limit == 0) return Status::InvalidArgument("scroll limit must be at least 1");
  std::shared_lock life(life_mutex_);
  FATHOM_RETURN_IF_ERROR(retired_);
  std::vector<PointId> ids;
  ScrollPage page;
  {
    std::shared_lock lock(state_mutex_);
    uint32_t start = 0;
    if (request.offset) {
      std::optional<uint32_t> slot = ids_.Find(*request.offset);
      if (!slot) {
        return Status::NotFound("scroll offset: point " + PointIdToString(*request.offset) +
                                " does not exist in collection '" + spec_.name +
                                "' (deleted since the previous page?); start again without an offset");
      }
      start = *slot;
    }
    SlotBitmap matching;
    const SlotBitmap* slots = &live_;
    if (!request.filter.empty()) {
      FATHOM_ASSIGN_OR_RETURN(Filter filter, ParseFilter(request.filter));
      FATHOM_ASSIGN_OR_RETURN(matching, MatchingSlots(filter, nullptr));
      slots = &matching;
    }
    auto it = slots->begin();
    it.equalorlarger(start);
    for (; it != slots->end(); ++it) {
      const uint32_t slot = *it;
      if (!ids_.Has(slot)) continue;
      if (ids.size() == request.limit) {
        page.next_offset = ids_.IdOf(slot);
        break;
      }
      ids.push_back(ids_.IdOf(slot));
    }
  }
  FATHOM_ASSIGN_OR_RETURN(auto records, GetRecords(ids, request.with_vectors));
  for (auto& record : records) {
    if (!record) continue;  // deleted meanwhile
    if (!request.with_payload) record->payload.clear();
    page.points.push_back(std::move(*record));
  }
  return page;
}

Result<std::vector<ScoredPoint>> CollectionImpl::Recommend(const RecommendRequest& request) const {
  if (request.positive_ids.empty() && request.positive_vectors.empty()) {
    return Status::InvalidArgument("recommend needs at least one positive example (an id or a vector)");
  }
  const VectorSpec* vs = nullptr;
  for (const auto& v : spec_.vectors) {
    if (v.name == request.vector || (request.vector.empty() && spec_.vectors.size() == 1)) vs = &v;
  }
  if (vs == nullptr) {
    return Status::InvalidArgument("collection '" + spec_.name + "' has no vector '" + request.vector + "'");
  }
  const size_t dim = vs->dim;
  const bool cosine = vs->metric == Metric::kCosine;
  // The examples as vectors (unit length for Cosine).
  std::vector<std::vector<float>> positives, negatives;
  std::unordered_set<std::string> example_keys;
  auto gather = [&](const std::vector<PointId>& ids, const std::vector<std::vector<float>>& vectors,
                    const char* kind, std::vector<std::vector<float>>* out) -> Status {
    if (!ids.empty()) {
      FATHOM_ASSIGN_OR_RETURN(auto records, GetRecords(ids, /*with_vectors=*/true));
      for (size_t i = 0; i < ids.size(); ++i) {
        if (!records[i]) {
          return Status::NotFound(std::string(kind) + " example: point " + PointIdToString(ids[i]) +
                                  " does not exist in collection '" + spec_.name + "'");
        }
        auto it = records[i]->vectors.find(vs->name);
        if (it == records[i]->vectors.end()) {
          return Status::InvalidArgument(std::string(kind) + " example: point " + PointIdToString(ids[i]) +
                                         " has no vector '" + vs->name + "'");
        }
        out->push_back(std::move(it->second));
        example_keys.insert(IdKey(ids[i]));
      }
    }
    for (const auto& v : vectors) {
      if (v.size() != dim) {
        return Status::InvalidArgument(std::string(kind) + " example vector has " + std::to_string(v.size()) +
                                       " dimensions, collection '" + spec_.name + "' expects " + std::to_string(dim));
      }
      FATHOM_RETURN_IF_ERROR(CheckVector(v.data(), dim, std::string(kind) + " example vector"));
      out->push_back(v);
    }
    if (cosine) {
      for (auto& v : *out) simd::Normalize(v.data(), dim);
    }
    return Status::OK();
  };
  FATHOM_RETURN_IF_ERROR(gather(request.positive_ids, request.positive_vectors, "positive", &positives));
  FATHOM_RETURN_IF_ERROR(gather(request.negative_ids, request.negative_vectors, "negative", &negatives));
  auto is_example = [&](const PointId& id) { return example_keys.count(IdKey(id)) > 0; };
  SearchRequest search;
  search.vector = vs->name;
  // Room for the examples, which are dropped from the results (within the search's k limit).
  search.k = std::min(request.k + example_keys.size(), std::max(request.k, kMaxK));
  search.ef = request.ef;
  search.exact = request.exact;
  search.filter = request.filter;
  search.with_payload = request.with_payload;
  std::vector<ScoredPoint> out;
  if (request.strategy == RecommendRequest::Strategy::kAverageVector) {
    std::vector<float> query(dim, 0.0f);
    for (const auto& v : positives) {
      for (size_t j = 0; j < dim; ++j) query[j] += v[j] / float(positives.size());
    }
    if (!negatives.empty()) {
      for (size_t j = 0; j < dim; ++j) {
        float neg = 0;
        for (const auto& v : negatives) neg += v[j] / float(negatives.size());
        query[j] = 2 * query[j] - neg;
      }
    }
    search.queries = std::move(query);
    search.with_vectors = request.with_vectors;
    FATHOM_ASSIGN_OR_RETURN(auto results, Search(search));
    for (auto& p : results.at(0)) {
      if (out.size() == request.k) break;
      if (!is_example(p.id)) out.push_back(std::move(p));
    }
    return out;
  }
  // Best score: the candidates near any positive example, each scored against every example.
  search.with_vectors = true;
  search.k = std::max(search.k, std::min(4 * request.k, kMaxK));
  // Qdrant's similarity (higher is closer) of an example to a candidate: the examples are unit
  // length for Cosine, so the candidate's norm is divided out once (`inv_norm`).
  const auto& kern = simd::Active();
  auto similarity = [&](const std::vector<float>& example, const float* candidate, float inv_norm) -> double {
    switch (vs->metric) {
      case Metric::kCosine: return kern.dot(example.data(), candidate, dim) * inv_norm;
      case Metric::kInnerProduct: return kern.dot(example.data(), candidate, dim);
      case Metric::kL2: return -std::sqrt(kern.l2_sqr(example.data(), candidate, dim));
      case Metric::kL1: return -kern.l1(example.data(), candidate, dim);
    }
    return 0.0;
  };
  std::vector<std::pair<double, ScoredPoint>> scored;
  std::unordered_set<std::string> seen;
  for (const auto& positive : positives) {
    search.queries = positive;
    FATHOM_ASSIGN_OR_RETURN(auto results, Search(search));
    for (auto& p : results.at(0)) {
      const std::string key = IdKey(p.id);
      if (is_example(p.id) || !seen.insert(key).second) continue;
      auto it = p.vectors.find(vs->name);
      if (it == p.vectors.end() || it->second.size() != dim) continue;
      const float* v = it->second.data();
      const float norm = cosine ? std::sqrt(kern.dot(v, v, dim)) : 1.0f;
      const float inv_norm = norm > 0 ? 1.0f / norm : 0.0f;
      double best_pos = -std::numeric_limits<double>::infinity(), best_neg = -std::numeric_limits<double>::infinity();
      for (const auto& e : positives) best_pos = std::max(best_pos, similarity(e, v, inv_norm));
      for (const auto& e : negatives) best_neg = std::max(best_neg, similarity(e, v, inv_norm));
      const double score = best_pos > best_neg ? best_pos : -(best_neg * best_neg);
      p.distance = static_cast<float>(-score);
      if (!request.with_vectors) p.vectors.clear();
      scored.emplace_back(score, std::move(p));
    }
  }
  std::stable_sort(scored.begin(), scored.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  for (auto& [score, p] : scored) {
    if (out.size() == request.k) break;
    out.push_back(std::move(p));
  }
  return out;
}

Result<std::vector<std::optional<Record>>> CollectionImpl::GetRecords(const std::vector<PointId>& ids,
                                                                      bool with_vectors) const {
  std::vector<std::optional<Record>> out(ids.size());
  std::vector<std::pair<size_t, uint32_t>> found;
  {
    std::shared_lock lock(state_mutex_);
    for (size_t i = 0; i < ids.size(); ++i) {
      if (auto slot = ids_.Find(ids[i])) found.emplace_back(i, *slot);
    }
  }
  for (auto [i, slot] : found) {
    const std::string key = RecordKey(id_, slot);
    std::optional<std::string> value, vectors;
    if (with_vectors) {
      // Record and vectors from one snapshot: a slot freed and reused meanwhile must not pair
      // one record's id with another's vectors.
      FATHOM_ASSIGN_OR_RETURN(auto both, kv_->GetBoth(Cf::kRecords, Cf::kVectors, key));
      value = std::move(both.first);
      vectors = std::move(both.second);
    } else {
      FATHOM_ASSIGN_OR_RETURN(value, kv_->Get(Cf::kRecords, key));
    }
    if (!value) continue;  // deleted meanwhile
    Record record;
    bool inline_vectors = false;
    FATHOM_RETURN_IF_ERROR(DecodeRecord(*value, &record, with_vectors, &inline_vectors));
    // Read without the lock: the slot may have been freed and reused by another id meanwhile.
    if (IdKey(record.id) != IdKey(ids[i])) continue;
    if (with_vectors && !inline_vectors) {
      if (!vectors) {
        return Status::Corruption("collection '" + spec_.name + "' slot " + std::to_string(slot) +
                                  ": the record's vectors are missing (run `fathom repair`)");
      }
      FATHOM_RETURN_IF_ERROR(DecodeVectors(*vectors, &record.vectors));
    }
    out[i] = std::move(record);
  }
  return out;
}

void CollectionImpl::PutLogPosition(KvStore::Batch* batch, uint64_t log_position) const {
  if (log_position == 0) return;
  std::string value;
  AppendBigEndian64(&value, log_position);
  batch->Put(Cf::kMeta, "logpos/" + CollectionPrefix(id_), value);
}

Status CollectionImpl::SkipLogPosition(uint64_t log_position) {
  std::shared_lock life(life_mutex_);
  FATHOM_RETURN_IF_ERROR(retired_);
  std::lock_guard write_lock(write_mutex_);
  return DeleteSlots({}, log_position).status();
}

Result<size_t> CollectionImpl::DeleteSlots(const std::vector<uint32_t>& slots, uint64_t log_position) {
  if (slots.empty()) {
    if (log_position == 0) return size_t{0};
    KvStore::Batch batch(*kv_);
    PutLogPosition(&batch, log_position);
    FATHOM_RETURN_IF_ERROR(kv_->Write(batch));
    log_position_.store(log_position);
    return size_t{0};
  }
  std::vector<nlohmann::json> old_payloads;
  if (spec_.on_disk_payload) {
    old_payloads.resize(slots.size());
    for (size_t i = 0; i < slots.size(); ++i) {
      FATHOM_ASSIGN_OR_RETURN(old_payloads[i], StoredPayload(slots[i]));
    }
  }
  KvStore::Batch batch(*kv_);
  for (uint32_t slot : slots) {
    batch.Delete(Cf::kRecords, RecordKey(id_, slot));
    batch.Delete(Cf::kVectors, RecordKey(id_, slot));
  }
  batch.Put(Cf::kOplog, OplogKey(id_, seq_ + 1), EncodeOp(kOpDelete, slots));
  PutLogPosition(&batch, log_position);
  FATHOM_RETURN_IF_ERROR(kv_->Write(batch));
  ++seq_;
  if (log_position > 0) log_position_.store(log_position);
  // Out of the indexes first, so a search never maps a removed slot to a reused id.
  std::vector<label_t> labels(slots.begin(), slots.end());
  bool maintenance_due = false;
  for (auto& index : indexes_) {
    FATHOM_RETURN_IF_ERROR(index->Remove(labels.size(), labels.data()));
    maintenance_due = maintenance_due || index->NeedsMaintenance();
  }
  if (maintenance_due) WakeMaintenance();
  {
    std::unique_lock lock(state_mutex_);
    ++state_version_;
    for (size_t i = 0; i < slots.size(); ++i) {
      const uint32_t slot = slots[i];
      ids_.Clear(slot);
      if (spec_.on_disk_payload) {
        payload_index_.Remove(slot, old_payloads[i]);
      } else {
        payload_index_.Remove(slot, CachedPayload(slot));
        payloads_.Clear(slot);
      }
      live_.remove(slot);
      free_slots_.push_back(slot);
    }
  }
  ops_since_checkpoint_ += slots.size();
  if (ops_since_checkpoint_ >= options_.checkpoint_every) WakeMaintenance();
  return slots.size();
}

Result<size_t> CollectionImpl::Delete(const std::vector<PointId>& ids, uint64_t log_position) {
  if (ids.empty()) return Status::InvalidArgument("delete batch is empty");
  std::shared_lock life(life_mutex_);
  FATHOM_RETURN_IF_ERROR(retired_);
  std::lock_guard write_lock(write_mutex_);
  std::vector<uint32_t> slots;
  {
    std::shared_lock lock(state_mutex_);
    std::unordered_set<uint32_t> seen;
    for (const auto& id : ids) {
      auto slot = ids_.Find(id);
      if (slot && seen.insert(*slot).second) slots.push_back(*slot);
    }
  }
  return DeleteSlots(slots, log_position);
}

Result<Filter> CollectionImpl::ParseFilter(const std::string& text) const {
  size_t start = text.find_first_not_of(" \t\r\n");
  Result<Filter> filter = start != std::string::npos && text[start] == '{'
                              ? Filter::ParseJson(std::string_view(text))
                              : Filter::ParseText(text);
  if (!filter.ok()) return filter.status();
  FATHOM_RETURN_IF_ERROR(filter->CheckTypes(spec().indexed_fields));
  for (const std::string& name : filter->VectorNames()) {
    if (VectorIndex(name) < spec_.vectors.size()) continue;
    std::string names;
    for (const auto& vs : spec_.vectors) {
      names += (names.empty() ? "" : ", ") + (vs.name.empty() ? std::string("\"\" (the unnamed vector)") : "'" + vs.name + "'");
    }
    return Status::InvalidArgument("has_vector '" + name + "': collection '" + spec_.name + "' has no such vector; it has " + names);
  }
  return filter;
}

// Caller holds state_mutex_ (shared).
Result<SlotBitmap> CollectionImpl::MatchingSlots(const Filter& filter, EvalStats* stats) const {
  // has_id: integer literals are unsigned ids, strings string ids (the caller holds state_mutex_).
  IdLookup id_of = [&](const Literal& id) -> std::optional<uint32_t> {
    if (const auto* n = std::get_if<Number>(&id)) {
      if (!n->is_int() || n->int_value() < 0) return std::nullopt;
      return ids_.Find(PointId(uint64_t(n->int_value())));
    }
    if (const auto* text = std::get_if<std::string>(&id)) return ids_.Find(PointId(*text));
    return std::nullopt;
  };
  if (spec_.on_disk_payload) {
    // Fields without a payload index are read from the stored records, one at a time.
    nlohmann::json current;
    Status error;
    PayloadLookup lookup = [&](uint32_t slot) -> const nlohmann::json* {
      auto payload = StoredPayload(slot);
      if (!payload.ok()) {
        if (error.ok()) error = payload.status();
        return nullptr;
      }
      current = std::move(payload).value();
      return &current;
    };
    auto matched = payload_index_.Evaluate(filter, live_, lookup, stats, id_of);
    FATHOM_RETURN_IF_ERROR(error);
    return matched;
  }
  nlohmann::json current;
  PayloadLookup lookup = [&](uint32_t slot) -> const nlohmann::json* {
    current = CachedPayload(slot);
    return &current;
  };
  return payload_index_.Evaluate(filter, live_, lookup, stats, id_of);
}

Result<std::shared_ptr<const CollectionImpl::FilterPlan>> CollectionImpl::PlanFilter(
    const std::string& text) const {
  {
    std::lock_guard lock(filter_cache_mutex_);
    auto it = filter_cache_.find(text);
    if (it != filter_cache_.end() && it->second.version == state_version_) return it->second.plan;
  }
  FATHOM_ASSIGN_OR_RETURN(Filter filter, ParseFilter(text));
  EvalStats eval;
  FATHOM_ASSIGN_OR_RETURN(SlotBitmap allowed, MatchingSlots(filter, &eval));
  spdlog::debug("collection '{}': filter {}", spec_.name, eval.ToString());
  auto plan = std::make_shared<FilterPlan>();
  plan->allowed = allowed.cardinality();
  plan->exact_scan = plan->allowed <= kExactScanMaxPoints ||
                     plan->allowed * kExactScanMaxShare <= ids_.size();
  if (plan->exact_scan) {
    plan->candidates.assign(allowed.begin(), allowed.end());
  } else {
    plan->bits.emplace(next_slot_);
    for (uint32_t slot : allowed) plan->bits->Set(slot);
  }
  std::lock_guard lock(filter_cache_mutex_);
  if (filter_cache_.size() >= kMaxCachedFilters) {
    std::erase_if(filter_cache_, [&](const auto& entry) { return entry.second.version != state_version_; });
    if (filter_cache_.size() >= kMaxCachedFilters) filter_cache_.erase(filter_cache_.begin());
  }
  filter_cache_[text] = CachedPlan{state_version_, plan};
  return std::shared_ptr<const FilterPlan>(std::move(plan));
}

Result<size_t> CollectionImpl::DeleteByFilter(const std::string& filter_text, uint64_t log_position) {
  FATHOM_ASSIGN_OR_RETURN(Filter filter, ParseFilter(filter_text));
  std::shared_lock life(life_mutex_);
  FATHOM_RETURN_IF_ERROR(retired_);
  std::lock_guard write_lock(write_mutex_);
  std::vector<uint32_t> slots;
  {
    std::shared_lock lock(state_mutex_);
    FATHOM_ASSIGN_OR_RETURN(SlotBitmap matching, MatchingSlots(filter, nullptr));
    for (uint32_t slot : matching) slots.push_back(slot);
  }
  return DeleteSlots(slots, log_position);
}

Result<size_t> CollectionImpl::UpdatePayload(const PayloadUpdate& update, uint64_t log_position) {
  using Op = PayloadUpdate::Op;
  nlohmann::json patch = nlohmann::json::object();
  if (update.op == Op::kSet || update.op == Op::kOverwrite) {
    patch = nlohmann::json::parse(update.payload, nullptr, false);
    if (patch.is_discarded()) return Status::InvalidArgument("payload is not valid JSON");
    if (!patch.is_object()) {
      return Status::InvalidArgument("payload must be a JSON object, got " + std::string(patch.type_name()));
    }
  }
  if (update.op == Op::kDeleteKeys && update.keys.empty()) {
    return Status::InvalidArgument("delete payload needs at least one key");
  }
  if (update.ids.empty() == update.filter.empty()) {
    return Status::InvalidArgument("a payload update needs point ids or a filter, exactly one");
  }
  std::optional<Filter> filter;
  if (!update.filter.empty()) {
    FATHOM_ASSIGN_OR_RETURN(Filter parsed, ParseFilter(update.filter));
    filter = std::move(parsed);
  }
  std::shared_lock life(life_mutex_);
  FATHOM_RETURN_IF_ERROR(retired_);
  // Serialised with upserts and deletes (they commit under the same lock), so a payload is never
  // merged into a record another writer is replacing.
  std::lock_guard write_lock(write_mutex_);
  std::vector<uint32_t> slots;
  std::vector<PointId> ids;
  std::vector<nlohmann::json> old_payloads;
  {
    std::shared_lock lock(state_mutex_);
    if (filter) {
      FATHOM_ASSIGN_OR_RETURN(SlotBitmap matching, MatchingSlots(*filter, nullptr));
      for (uint32_t slot : matching) {
        if (!ids_.Has(slot)) continue;
        slots.push_back(slot);
        ids.push_back(ids_.IdOf(slot));
      }
    } else {
      std::unordered_set<std::string> seen;
      for (const PointId& id : update.ids) {
        if (!seen.insert(IdKey(id)).second) continue;
        std::optional<uint32_t> slot = ids_.Find(id);
        if (!slot) {
          return Status::NotFound("point " + PointIdToString(id) + " does not exist in collection '" + spec_.name +
                                  "' (no payload was changed)");
        }
        slots.push_back(*slot);
        ids.push_back(id);
      }
    }
    if (!spec_.on_disk_payload) {
      old_payloads.reserve(slots.size());
      for (uint32_t slot : slots) old_payloads.push_back(CachedPayload(slot));
    }
  }
  // Each stored record, read once: rewritten below with its new payload, keeping its vectors where
  // they are (a record of an old database may hold them inline); with on-disk payloads it also
  // gives the old payload.
  std::vector<Record> records(slots.size());
  std::vector<bool> inline_vectors(slots.size());
  for (size_t i = 0; i < slots.size(); ++i) {
    FATHOM_ASSIGN_OR_RETURN(auto value, kv_->Get(Cf::kRecords, RecordKey(id_, slots[i])));
    if (!value) return Status::Internal("point " + PointIdToString(ids[i]) + " has no stored record");
    bool inline_v = false;
    FATHOM_RETURN_IF_ERROR(DecodeRecord(*value, &records[i], /*with_vectors=*/true, &inline_v));
    inline_vectors[i] = inline_v;
    if (spec_.on_disk_payload) old_payloads.push_back(ParsePayload(records[i].payload));
  }
  // The new payloads, all validated before anything is written.
  std::vector<nlohmann::json> new_payloads(slots.size());
  std::vector<std::string> texts(slots.size());
  for (size_t i = 0; i < slots.size(); ++i) {
    nlohmann::json& next = new_payloads[i];
    switch (update.op) {
      case Op::kSet:
        next = old_payloads[i];
        for (const auto& [key, value] : patch.items()) next[key] = value;
        break;
      case Op::kOverwrite:
        next = patch;
        break;
      case Op::kDeleteKeys:
        next = old_payloads[i];
        for (const std::string& key : update.keys) next.erase(key);
        break;
      case Op::kClear:
        next = nlohmann::json::object();
        break;
    }
    if (log_position == 0) {  // (a replicated log's update: as in Upsert)
      FATHOM_RETURN_IF_ERROR(payload_index_.Validate(next, "point " + PointIdToString(ids[i])));
    }
    texts[i] = next.dump();
  }
  KvStore::Batch batch(*kv_);
  for (size_t i = 0; i < slots.size(); ++i) {
    batch.Put(Cf::kRecords, RecordKey(id_, slots[i]), EncodeRecord(records[i], texts[i], inline_vectors[i]));
  }
  PutLogPosition(&batch, log_position);
  if (!slots.empty() || log_position > 0) FATHOM_RETURN_IF_ERROR(kv_->Write(batch));
  if (log_position > 0) log_position_.store(log_position);
  {
    std::unique_lock lock(state_mutex_);
    ++state_version_;
    for (size_t i = 0; i < slots.size(); ++i) {
      payload_index_.Remove(slots[i], old_payloads[i]);
      payload_index_.Insert(slots[i], new_payloads[i]);
      if (!spec_.on_disk_payload) payloads_.Set(slots[i], texts[i]);
    }
  }
  return slots.size();
}

size_t CollectionImpl::Count() const {
  std::shared_lock lock(state_mutex_);
  return ids_.size();
}

Result<size_t> CollectionImpl::CountByFilter(const std::string& filter_text) const {
  FATHOM_ASSIGN_OR_RETURN(Filter filter, ParseFilter(filter_text));
  std::shared_lock lock(state_mutex_);
  FATHOM_ASSIGN_OR_RETURN(SlotBitmap matching, MatchingSlots(filter, nullptr));
  return static_cast<size_t>(matching.cardinality());
}

Result<std::vector<std::vector<ScoredPoint>>> CollectionImpl::Search(const SearchRequest& request,
                                                                     SearchStats* stats) const {
  size_t vector = spec_.vectors.size();
  for (size_t v = 0; v < spec_.vectors.size(); ++v) {
    if (spec_.vectors[v].name == request.vector) vector = v;
  }
  if (vector == spec_.vectors.size()) {
    std::string names;
    for (const auto& v : spec_.vectors) {
      names += (names.empty() ? "'" : ", '") + v.name + "'";
    }
    if (request.vector.empty()) {
      return Status::InvalidArgument("collection '" + spec_.name + "' has named vectors " + names +
                                     ": say which one to search");
    }
    return Status::InvalidArgument("collection '" + spec_.name + "' has no vector '" +
                                   request.vector + "'" +
                                   (spec_.vectors.size() == 1 && spec_.vectors[0].name.empty()
                                        ? std::string(" (it has one unnamed vector)")
                                        : ": its vectors are " + names));
  }
  const size_t dim = spec_.vectors[vector].dim;
  if (request.queries.empty() || request.queries.size() % dim != 0) {
    return Status::InvalidArgument("query has " + std::to_string(request.queries.size()) +
                                   " values, collection '" + spec_.name + "' expects a multiple of " +
                                   std::to_string(dim));
  }
  if (request.k == 0 || request.k > kMaxK) {
    return Status::InvalidArgument("k must be between 1 and " + std::to_string(kMaxK) + ", got " +
                                   std::to_string(request.k));
  }
  for (size_t q = 0; q * dim < request.queries.size(); ++q) {
    if (VectorLooksValid(request.queries.data() + q * dim, dim)) continue;
    FATHOM_RETURN_IF_ERROR(
        CheckVector(request.queries.data() + q * dim, dim, "query vector " + std::to_string(q)));
  }
  const size_t n = request.queries.size() / dim;
  const size_t k = request.k;
  std::vector<float> distances(n * k);
  std::vector<label_t> labels(n * k);
  SearchStats local_stats;
  std::shared_lock life(life_mutex_);
  FATHOM_RETURN_IF_ERROR(retired_);
  // Held from the filter through the index search to the id lookup, so a slot the index returns
  // still belongs to the id it had when the search began (deleted slots are reused).
  std::shared_lock state_lock(state_mutex_);
  SearchParams params;
  params.ef = request.ef;
  params.rerank = request.rerank;
  params.nprobe = request.nprobe;
  params.upper_ef = request.upper_ef;
  params.checks = request.checks;
  // What Tune chose, where the request leaves the knob to the collection.
  if (params.ef == 0) params.ef = tuned_[3 * vector].load(std::memory_order_relaxed);
  if (params.nprobe == 0) params.nprobe = tuned_[3 * vector + 1].load(std::memory_order_relaxed);
  if (params.checks == 0) params.checks = tuned_[3 * vector + 2].load(std::memory_order_relaxed);
  if (request.exact) {
    local_stats.strategy = "exact";
    std::vector<label_t> candidates;
    if (!request.filter.empty()) {
      FATHOM_ASSIGN_OR_RETURN(Filter filter, ParseFilter(request.filter));
      FATHOM_ASSIGN_OR_RETURN(SlotBitmap matching, MatchingSlots(filter, nullptr));
      candidates.reserve(matching.cardinality());
      for (uint32_t slot : matching) candidates.push_back(slot);
    } else {
      candidates.reserve(live_.cardinality());
      for (uint32_t slot : live_) candidates.push_back(slot);
    }
    local_stats.allowed = candidates.size();
    FATHOM_RETURN_IF_ERROR(indexes_[vector]->SearchAmong(n, request.queries.data(), k, candidates.data(),
                                                         candidates.size(), distances.data(), labels.data()));
  } else if (!request.filter.empty()) {
    FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<const FilterPlan> plan, PlanFilter(request.filter));
    local_stats.allowed = plan->allowed;
    if (plan->exact_scan) {
      local_stats.strategy = "exact-scan";
      FATHOM_RETURN_IF_ERROR(indexes_[vector]->SearchAmong(n, request.queries.data(), k,
                                                           plan->candidates.data(),
                                                           plan->candidates.size(),
                                                           distances.data(), labels.data()));
    } else {
      local_stats.strategy = "graph+filter";
      params.filter = &*plan->bits;
      params.ef = std::max<int>(params.ef, static_cast<int>(2 * k));
      FATHOM_RETURN_IF_ERROR(indexes_[vector]->Search(n, request.queries.data(), k, distances.data(),
                                                      labels.data(), params));
    }
  } else {
    local_stats.strategy = "graph";
    local_stats.allowed = ids_.size();
    FATHOM_RETURN_IF_ERROR(indexes_[vector]->Search(n, request.queries.data(), k, distances.data(),
                                                    labels.data(), params));
  }
  std::vector<std::vector<ScoredPoint>> results(n);
  std::vector<RecallMonitor::Sample> recall_samples;  // offered once the state lock is released
  for (size_t q = 0; q < n; ++q) {
    const bool sample = !request.exact && recall_->ShouldSample();
    RecallMonitor::Sample recall_sample;
    for (size_t i = 0; i < k; ++i) {
      label_t slot = labels[q * k + i];
      if (slot == kNoLabel || slot > label_t(UINT32_MAX) || !ids_.Has(uint32_t(slot))) continue;
      ScoredPoint p;
      p.id = ids_.IdOf(uint32_t(slot));
      p.distance = distances[q * k + i];
      if (request.with_payload && !spec_.on_disk_payload) {
        p.payload = payloads_.Get(uint32_t(slot));
      }
      if (sample) recall_sample.found.push_back(p.id);
      results[q].push_back(std::move(p));
    }
    if (sample) {
      recall_sample.vector = request.vector;
      recall_sample.query.assign(request.queries.begin() + q * dim, request.queries.begin() + (q + 1) * dim);
      recall_sample.k = k;
      recall_sample.filter = request.filter;
      recall_samples.push_back(std::move(recall_sample));
    }
  }
  state_lock.unlock();
  for (RecallMonitor::Sample& s : recall_samples) recall_->Offer(std::move(s));
  if (request.with_vectors || (request.with_payload && spec_.on_disk_payload)) {
    for (auto& list : results) {
      for (auto& p : list) {
        auto got = GetRecords({p.id}, request.with_vectors);
        if (!got.ok() || !(*got)[0]) continue;
        if (request.with_vectors) p.vectors = std::move((*got)[0]->vectors);
        if (request.with_payload && spec_.on_disk_payload) p.payload = std::move((*got)[0]->payload);
      }
    }
  }
  if (stats != nullptr) *stats = local_stats;
  return results;
}

uint64_t CollectionImpl::checkpoint_failures() const {
  return checkpoint_failures_.load(std::memory_order_relaxed);
}

Status CollectionImpl::Checkpoint() {
  std::shared_lock life(life_mutex_);
  FATHOM_RETURN_IF_ERROR(retired_);
  return RunCheckpoint();
}

Status CollectionImpl::Optimize() {
  std::shared_lock life(life_mutex_);
  FATHOM_RETURN_IF_ERROR(retired_);
  for (auto& index : indexes_) index->Maintain();
  return Status::OK();
}

Status CollectionImpl::Retire(Status why, bool checkpoint) {
  // The maintenance and recall threads take life_mutex_: stop them before waiting for that lock.
  recall_->Stop();
  StopMaintenance();
  std::unique_lock life(life_mutex_);
  if (!retired_.ok()) return Status::OK();
  Status s;
  if (checkpoint) {
    uint64_t ops, points;
    {
      std::lock_guard write_lock(write_mutex_);
      ops = ops_since_checkpoint_;
    }
    {
      std::shared_lock state_lock(state_mutex_);
      points = ids_.size();
    }
    const uint64_t worth = std::min<uint64_t>(options_.checkpoint_every, std::max<uint64_t>(1000, points / 100));
    // The recall estimate outlives the process (fathom info, the next start), made durable
    // with the log below.
    if (const RecallEstimate recall = recall_->estimate(); recall.samples > 0) {
      KvStore::Batch batch(*kv_);
      batch.Put(Cf::kMeta, "recall/" + CollectionPrefix(id_),
                nlohmann::json{{"recall", recall.recall}, {"samples", recall.samples}}.dump());
      s = kv_->Write(batch);
    }
    // A few operations are cheaper to replay at the next open than a full index rewrite now
    // (seconds at 10M points); the log only needs to be durable.
    Status done = ops >= worth ? RunCheckpoint() : kv_->SyncWal();
    if (s.ok()) s = done;
  }
  retired_ = std::move(why);
  return s;
}

void CollectionImpl::Unretire() {
  {
    std::unique_lock life(life_mutex_);
    retired_ = Status::OK();
  }
  recall_->Resume();
  StartMaintenance();
}

// 1. Under write_mutex_ (no write in flight): make the log durable up to here and cut its
//    position `cut`. 2. Without it: save each index concurrently with writers (they and
//    searches go on; the file may also hold some changes after `cut`, which recovery replays
//    again: replay sets each touched slot to its record, so applying it twice is harmless).
// 3. Under write_mutex_: trim the log up to `cut`. A crash before 3 leaves a newer checkpoint
// and a longer log, which recovery handles; the files of older checkpoints go last.
Status CollectionImpl::RunCheckpoint() {
  std::lock_guard checkpoint_lock(checkpoint_mutex_);
  uint64_t cut, ops_at_cut;
  {
    std::lock_guard write_lock(write_mutex_);
    if (seq_ == checkpoint_seq_ && ops_since_checkpoint_ == 0) {
      bool all_present = true;
      for (size_t v = 0; v < indexes_.size(); ++v) {
        all_present = all_present && fs::exists(CheckpointPath(v, seq_));
      }
      if (all_present) {
        last_checkpoint_ticks_.store(std::chrono::steady_clock::now().time_since_epoch().count(),
                                     std::memory_order_relaxed);
        return Status::OK();
      }
    }
    // A checkpoint must never be ahead of the durable log: in buffered mode a power loss could
    // otherwise keep index entries for writes the log lost.
    FATHOM_RETURN_IF_ERROR(kv_->SyncWal());
    cut = seq_;
    ops_at_cut = ops_since_checkpoint_;
  }
  // Index files must not eat the reserve that keeps the store's log off a full disk.
  size_t estimate = 0;
  for (const auto& index : indexes_) estimate += index->memory_bytes();
  FATHOM_RETURN_IF_ERROR(CheckFreeSpace(index_dir_, estimate, options_.min_free_disk_bytes));
  // Rows of every operation up to the cut were written before the cut: make them durable
  // before a checkpoint relies on them (later ones are replayed, which rewrites their rows).
  if (store_damaged_.load()) {
    return Status::IOError("collection '" + spec_.name + "': a vector file missed a write; the log keeps "
                           "it until a restart repairs the file, so no checkpoint is written");
  }
  for (const auto& store : stores_) {
    if (store) FATHOM_RETURN_IF_ERROR(store->Sync());
  }
  SaveOptions save;
  save.concurrent = true;
  for (size_t v = 0; v < indexes_.size(); ++v) {
    FATHOM_RETURN_IF_ERROR(indexes_[v]->Save(CheckpointPath(v, cut), save));
  }
  {
    std::lock_guard write_lock(write_mutex_);
    KvStore::Batch batch(*kv_);
    std::string seq_value;
    AppendBigEndian64(&seq_value, cut);
    batch.Put(Cf::kMeta, "trimmed/" + CollectionPrefix(id_), seq_value);
    batch.DeleteRange(Cf::kOplog, OplogKey(id_, 0), OplogKey(id_, cut + 1));
    FATHOM_RETURN_IF_ERROR(kv_->Write(batch));
    checkpoint_seq_ = cut;
    ops_since_checkpoint_ -= std::min(ops_since_checkpoint_, ops_at_cut);
    last_checkpoint_ticks_.store(std::chrono::steady_clock::now().time_since_epoch().count(),
                                 std::memory_order_relaxed);
  }
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(index_dir_, ec)) {
    bool current = false;
    for (size_t v = 0; v < indexes_.size(); ++v) {
      current = current || entry.path().string() == CheckpointPath(v, cut);
    }
    if (!current && entry.path().extension() == ".fathom") fs::remove(entry.path(), ec);
  }
  spdlog::info("collection '{}': checkpoint at sequence {}", spec_.name, cut);
  return Status::OK();
}

std::chrono::steady_clock::time_point CollectionImpl::last_checkpoint() const {
  return std::chrono::steady_clock::time_point(
      std::chrono::steady_clock::duration(last_checkpoint_ticks_.load(std::memory_order_relaxed)));
}

StorageUsage CollectionImpl::usage() const {
  StorageUsage u;
  u.ram_bytes = memory_bytes();
  for (const auto& index : indexes_) u.vectors_disk_bytes += index->disk_bytes();
  const std::string prefix = CollectionPrefix(id_);
  u.records_disk_bytes = kv_->ApproximateBytes(Cf::kRecords, prefix) + kv_->ApproximateBytes(Cf::kVectors, prefix) +
                         kv_->ApproximateBytes(Cf::kOplog, prefix);
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(index_dir_, ec)) {
    if (entry.path().extension() == ".fathom") u.index_files_bytes += entry.file_size(ec);
  }
  return u;
}

std::string CollectionImpl::VectorStorePath(size_t vector) const {
  return index_dir_ + "/" + std::to_string(vector) + ".vectors";
}

// Rows as the index would hold them (unit length for cosine), by slot.
Status CollectionImpl::WriteStoreRows(size_t v, size_t n, const float* x, const label_t* labels) {
  if (!stores_[v]) return Status::OK();
  const VectorSpec& vs = spec_.vectors[v];
  std::vector<float> row(vs.dim);
  for (size_t i = 0; i < n; ++i) {
    std::copy(x + i * vs.dim, x + (i + 1) * vs.dim, row.begin());
    if (vs.metric == Metric::kCosine) simd::Normalize(row.data(), vs.dim);
    FATHOM_RETURN_IF_ERROR(stores_[v]->Write(labels[i], row.data()));
  }
  return Status::OK();
}

Status CollectionImpl::ReadVectors(uint32_t slot, Record* record, const KvStore::ReadView* view) const {
  FATHOM_ASSIGN_OR_RETURN(auto value, kv_->Get(Cf::kVectors, RecordKey(id_, slot), view));
  if (!value) {
    return Status::Corruption("collection '" + spec_.name + "' slot " + std::to_string(slot) +
                              ": the record's vectors are missing (run `fathom repair`)");
  }
  return DecodeVectors(*value, &record->vectors);
}

Result<nlohmann::json> CollectionImpl::StoredPayload(uint32_t slot) const {
  FATHOM_ASSIGN_OR_RETURN(auto value, kv_->Get(Cf::kRecords, RecordKey(id_, slot)));
  if (!value) return nlohmann::json::object();
  Record record;
  FATHOM_RETURN_IF_ERROR(DecodeRecord(*value, &record, false));
  return ParsePayload(record.payload);
}

nlohmann::json CollectionImpl::CachedPayload(uint32_t slot) const { return ParsePayload(payloads_.Get(slot)); }

WriteStats CollectionImpl::write_stats() const {
  WriteStats stats;
  stats.upsert_requests = upsert_requests_.load(std::memory_order_relaxed);
  stats.upsert_commits = upsert_commits_.load(std::memory_order_relaxed);
  std::lock_guard lock(commit_mutex_);
  stats.queued = commit_queue_.size();
  return stats;
}

size_t CollectionImpl::memory_bytes() const {
  size_t bytes = 0;
  for (const auto& index : indexes_) bytes += index->memory_bytes();
  std::shared_lock lock(state_mutex_);
  bytes += payload_index_.memory_bytes();
  bytes += ids_.memory_bytes();
  bytes += payloads_.memory_bytes();  // (none with on_disk_payload)
  return bytes;
}

// Snapshot layout: collection.json (spec), records.bin (slot, length, record value ...; then a
// CRC-32 of all of it), one index file per vector ("<position>.fathom"), and tuned.json (the
// search defaults Tune stored, when there are any).
Status CollectionImpl::Snapshot(const std::string& dir) const {
  std::shared_lock life(life_mutex_);
  FATHOM_RETURN_IF_ERROR(retired_);
  std::error_code ec;
  if (fs::exists(dir, ec)) return Status::AlreadyExists("snapshot directory '" + dir + "' already exists");
  // Under write_mutex_ (no write in flight): the spec, the index files and the log position, and
  // a read view of the store, all of one moment. The records (the long part: every vector read
  // and written out) then stream from that view while writes go on.
  std::unique_ptr<KvStore::ReadView> view;
  uint64_t position = 0;
  {
    std::lock_guard write_lock(write_mutex_);
    size_t estimate = 0;
    for (const auto& index : indexes_) estimate += 2 * index->memory_bytes();  // records + index
    FATHOM_RETURN_IF_ERROR(CheckFreeSpace(fs::absolute(dir).parent_path().string(), estimate,
                                          options_.min_free_disk_bytes));
    fs::create_directories(dir, ec);
    if (ec) return Status::IOError("cannot create '" + dir + "': " + ec.message());
    CollectionSpec spec = this->spec();  // (with the payload indexes made since opening)
    spec.metadata = metadata();
    FATHOM_RETURN_IF_ERROR(WriteFileAtomic(dir + "/collection.json", EncodeSpec(spec, 0)));
    for (size_t v = 0; v < indexes_.size(); ++v) {
      FATHOM_RETURN_IF_ERROR(indexes_[v]->Save(dir + "/" + std::to_string(v) + ".fathom"));
    }
    FATHOM_ASSIGN_OR_RETURN(auto tuned, kv_->Get(Cf::kMeta, "tuned/" + CollectionPrefix(id_)));
    if (tuned && *tuned != "{}") FATHOM_RETURN_IF_ERROR(WriteFileAtomic(dir + "/tuned.json", *tuned));
    position = log_position_.load();
    view = kv_->NewReadView();
  }
  // Streamed to the file (through the writer's buffer), never whole in memory.
  FATHOM_ASSIGN_OR_RETURN(auto records, AtomicFileWriter::Create(dir + "/records.bin"));
  FATHOM_RETURN_IF_ERROR(records->Write(kSnapshotMagic, sizeof(kSnapshotMagic) - 1));
  FATHOM_RETURN_IF_ERROR(records->Pod(kSnapshotVersion));
  // Snapshot records carry their vectors inline (one value per record, as in format 1).
  Status inner;
  Status scan = kv_->Scan(
      Cf::kRecords, CollectionPrefix(id_),
      [&](std::string_view key, std::string_view value) {
        const uint32_t slot = ReadBigEndian32(key.data() + 4);
        Record record;
        bool inline_vectors = false;
        inner = DecodeRecord(value, &record, true, &inline_vectors);
        if (inner.ok() && !inline_vectors) inner = ReadVectors(slot, &record, view.get());
        if (!inner.ok()) return false;
        const std::string full = EncodeRecord(record, record.payload);
        inner = records->Pod(slot);
        if (inner.ok()) inner = records->Pod(static_cast<uint32_t>(full.size()));
        if (inner.ok()) inner = records->Write(full.data(), full.size());
        return inner.ok();
      },
      view.get());
  FATHOM_RETURN_IF_ERROR(scan);
  FATHOM_RETURN_IF_ERROR(inner);
  FATHOM_RETURN_IF_ERROR(records->Pod(records->crc()));
  FATHOM_RETURN_IF_ERROR(records->Commit());
  // A cluster replica's position in its shard's log, of the same moment as the records and index
  // files: a replica restored from this snapshot goes on applying right after it.
  if (position > 0) {
    FATHOM_RETURN_IF_ERROR(WriteFileAtomic(dir + "/log_position", std::to_string(position) + "\n"));
  }
  return Status::OK();
}

Status CollectionImpl::ImportSnapshot(KvStore* kv, const std::string& dir,
                                      const std::string& index_dir, uint32_t id) {
  // Read twice, a buffer at a time (never whole in memory): once to check the CRC before
  // anything is written, once to import.
  const std::string path = dir + "/records.bin";
  {
    FATHOM_ASSIGN_OR_RETURN(auto check, FileSource::Open(path));
    if (check->size() < 4) return Status::Corruption("snapshot '" + dir + "' has a truncated records.bin");
    check->set_crc_end(check->size() - 4);
    FATHOM_RETURN_IF_ERROR(check->Skip(check->size() - 4));
    uint32_t stored_crc = 0;
    FATHOM_RETURN_IF_ERROR(check->Read(&stored_crc));
    if (check->crc() != stored_crc) {
      return Status::Corruption("snapshot '" + dir + "' records.bin is corrupted: checksum mismatch");
    }
  }
  FATHOM_ASSIGN_OR_RETURN(auto file, FileSource::Open(path));
  uint64_t body_size = file->size() - 4;
  // Version 1 starts with a magic and a version; version 0 (before 2026-12) has neither.
  const std::string_view magic(kSnapshotMagic, sizeof(kSnapshotMagic) - 1);
  std::string head(std::min<uint64_t>(magic.size(), body_size), '\0');
  FATHOM_RETURN_IF_ERROR(file->ReadBytes(head.data(), head.size()));
  uint64_t consumed = head.size();
  std::string version0_start;  // a version 0 file: these bytes are its first record's
  if (head == magic) {
    uint32_t version = 0;
    if (body_size < magic.size() + 4) return Status::Corruption("snapshot '" + dir + "' records.bin is truncated");
    FATHOM_RETURN_IF_ERROR(file->Read(&version));
    consumed += 4;
    if (version > kSnapshotVersion) {
      return Status::NotSupported("snapshot '" + dir + "' has format version " + std::to_string(version) +
                                  "; this build reads versions 0 to " + std::to_string(kSnapshotVersion) +
                                  " (it was written by a newer Fathom)");
    }
  } else {
    version0_start = std::move(head);
  }
  // The records: a reader over what is left of the body (minus the CRC), after the head bytes a
  // version 0 file already gave.
  class BodySource final : public ByteSource {
   public:
    BodySource(std::string prefix, FileSource* file, uint64_t left)
        : prefix_(std::move(prefix)), file_(file), left_(left) {}
    Status ReadBytes(void* dst, size_t n) override {
      if (n > remaining()) return Status::Corruption("snapshot records are truncated");
      const size_t from_prefix = std::min(n, prefix_.size() - prefix_pos_);
      std::memcpy(dst, prefix_.data() + prefix_pos_, from_prefix);
      prefix_pos_ += from_prefix;
      if (n > from_prefix) {
        FATHOM_RETURN_IF_ERROR(file_->ReadBytes(static_cast<char*>(dst) + from_prefix, n - from_prefix));
        left_ -= n - from_prefix;
      }
      return Status::OK();
    }
    Status Skip(size_t n) override {
      std::string sink(n, '\0');
      return ReadBytes(sink.data(), n);
    }
    size_t remaining() const override { return (prefix_.size() - prefix_pos_) + left_; }

   private:
    std::string prefix_;
    size_t prefix_pos_ = 0;
    FileSource* file_;
    uint64_t left_;
  } r(std::move(version0_start), file.get(), body_size - consumed);
  auto batch = std::make_unique<KvStore::Batch>(*kv);
  size_t in_batch = 0;
  // The search defaults Tune stored (snapshots from before 2026-12-03 have none).
  std::error_code exists_ec;
  if (fs::exists(dir + "/tuned.json", exists_ec)) {
    FATHOM_ASSIGN_OR_RETURN(std::string tuned, ReadFile(dir + "/tuned.json"));
    if (!nlohmann::json::parse(tuned, nullptr, /*allow_exceptions=*/false).is_object()) {
      return Status::Corruption("snapshot '" + dir + "' has a tuned.json that is not a JSON object");
    }
    batch->Put(Cf::kMeta, "tuned/" + CollectionPrefix(id), tuned);
  }
  if (fs::exists(dir + "/log_position", exists_ec)) {
    FATHOM_ASSIGN_OR_RETURN(std::string text, ReadFile(dir + "/log_position"));
    char* end = nullptr;
    const uint64_t position = std::strtoull(text.c_str(), &end, 10);
    if (position == 0 || end == text.c_str() || (*end != '\n' && *end != '\0')) {
      return Status::Corruption("snapshot '" + dir + "' has a log_position that is not a positive number");
    }
    std::string value;
    AppendBigEndian64(&value, position);
    batch->Put(Cf::kMeta, "logpos/" + CollectionPrefix(id), value);
  }
  while (r.remaining() > 0) {
    uint32_t slot, len;
    FATHOM_RETURN_IF_ERROR(r.Read(&slot));
    FATHOM_RETURN_IF_ERROR(r.Read(&len));
    if (len > r.remaining()) return Status::Corruption("snapshot '" + dir + "' records.bin is truncated");
    std::string value(len, '\0');
    FATHOM_RETURN_IF_ERROR(r.ReadBytes(value.data(), len));
    Record record;
    FATHOM_RETURN_IF_ERROR(DecodeRecord(value, &record, true));
    batch->Put(Cf::kRecords, RecordKey(id, slot), EncodeRecord(record, record.payload, /*with_vectors=*/false));
    batch->Put(Cf::kVectors, RecordKey(id, slot), EncodeVectors(record.vectors));
    if (++in_batch == 10000) {
      FATHOM_RETURN_IF_ERROR(kv->Write(*batch));
      batch = std::make_unique<KvStore::Batch>(*kv);
      in_batch = 0;
    }
  }
  FATHOM_RETURN_IF_ERROR(kv->Write(*batch));
  std::error_code ec;
  fs::create_directories(index_dir, ec);
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::string name = entry.path().filename().string();
    if (entry.path().extension() != ".fathom") continue;
    std::string position = name.substr(0, name.size() - 7);
    fs::copy_file(entry.path(), index_dir + "/" + position + ".0.fathom",
                  fs::copy_options::overwrite_existing, ec);
    if (ec) return Status::IOError("cannot copy '" + entry.path().string() + "': " + ec.message());
  }
  return Status::OK();
}

}  // namespace fathom
