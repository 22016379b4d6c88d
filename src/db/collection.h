// CollectionImpl: one collection of a Database (see fathom/database.h for the contract).
//
// In memory: one Index per named vector (labels are record slots), the id <-> slot maps, the
// parsed payloads and their PayloadIndex. In RocksDB: every record under (collection, slot) and
// an operation log of touched slots under (collection, sequence). Index checkpoints are files
// "<index_dir>/<vector position>.<sequence>.fathom".
//
// Locking: upserts queue under commit_mutex_ and the first in line commits the whole queue as
// one group (group commit) under write_mutex_, which serialises writers; state_mutex_ guards the maps and is held
// exclusively only while they change (never during index inserts), shared by readers.
// Checkpoints (checkpoint_mutex_, one at a time) hold write_mutex_ only to cut the log position
// and to trim the log: the index files are written while writes and searches go on (see
// docs/format/database.md, "Checkpoints"). A background thread per collection runs automatic
// checkpoints and tombstone consolidation, so no user's write pays for either. Lock order:
// life_mutex_, checkpoint_mutex_, commit_mutex_ (never held while taking another), write_mutex_,
// state_mutex_.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "db/id_table.h"
#include "db/payload_index.h"
#include "db/payload_texts.h"
#include "db/recall_monitor.h"
#include "fathom/database.h"
#include "storage/kv_store.h"
#include "util/rw_lock.h"

namespace fathom {

class CollectionImpl final : public Collection {
 public:
  static Status ValidateSpec(const CollectionSpec& spec);
  // Recovers the collection from RocksDB and its checkpoints (or creates it empty).
  static Result<std::shared_ptr<CollectionImpl>> Open(KvStore* kv, std::string index_dir,
                                                      CollectionSpec spec, uint32_t id,
                                                      const DatabaseOptions& options);

  // The spec as published: the one opened, with the payload indexes made or dropped since.
  const CollectionSpec& spec() const override { return *spec_view_.load(std::memory_order_acquire); }
  // Adds a payload index on `field`, changes its type, or (no `type`) drops it, on the live
  // collection: the new index is built from every live payload while writes wait (searches go
  // on; values of another type are kept as irregular and read from payloads when filtered),
  // then `persist` stores the spec it is given (and calls PublishSpec with it); if that fails
  // nothing changed. Then filters use the new index. Upserts are validated against it after.
  Status SetPayloadIndex(const std::string& field, std::optional<FieldType> type,
                         const std::function<Status(const CollectionSpec&)>& persist);
  // Makes `spec` what spec() returns (the database calls this once the spec is stored).
  void PublishSpec(const CollectionSpec& spec);
  RecallEstimate recall_estimate() const override;
  std::string metadata() const override {
    std::lock_guard lock(metadata_mutex_);
    return metadata_;
  }
  // The database calls this after it stored the new metadata.
  void set_metadata(std::string metadata) {
    std::lock_guard lock(metadata_mutex_);
    metadata_ = std::move(metadata);
  }
  uint32_t id() const { return id_; }
  using Collection::Delete;
  using Collection::DeleteByFilter;
  using Collection::UpdatePayload;
  using Collection::Upsert;
  Status Upsert(const std::vector<Record>& records, uint64_t log_position) override;
  Result<std::vector<std::optional<Record>>> Get(const std::vector<PointId>& ids,
                                                 bool with_vectors = true) const override;
  Result<size_t> Delete(const std::vector<PointId>& ids, uint64_t log_position) override;
  Result<size_t> DeleteByFilter(const std::string& filter, uint64_t log_position) override;
  Result<size_t> UpdatePayload(const PayloadUpdate& update, uint64_t log_position) override;
  Status SkipLogPosition(uint64_t log_position) override;
  Status ValidateUpsert(const std::vector<Record>& records) const override {
    std::vector<nlohmann::json> payloads;
    return ValidateRecords(records, &payloads);
  }
  uint64_t log_position() const override { return log_position_.load(); }
  size_t Count() const override;
  Result<size_t> CountByFilter(const std::string& filter) const override;
  Result<ScrollPage> Scroll(const ScrollRequest& request) const override;
  Result<std::vector<ScoredPoint>> Recommend(const RecommendRequest& request) const override;
  Result<std::vector<std::vector<ScoredPoint>>> Search(const SearchRequest& request,
                                                       SearchStats* stats = nullptr) const override;
  Status Snapshot(const std::string& dir) const override;
  Status Checkpoint() override;
  Status Optimize() override;
  Result<TuneResult> Tune(const TuneRequest& request) override;
  SearchDefaults search_defaults(const std::string& vector) const override;
  Result<bool> ResetSearchDefaults(const std::string& vector) override;
  Status StoreSearchDefaults(const std::string& vector, const SearchDefaults& defaults) override;
  std::chrono::steady_clock::time_point last_checkpoint() const override;
  uint64_t checkpoint_failures() const override;
  size_t memory_bytes() const override;
  StorageUsage usage() const override;
  WriteStats write_stats() const override;

  // Waits for running calls (which hold life_mutex_ shared), optionally checkpoints (when the
  // log holds enough to be worth it, see DatabaseOptions::checkpoint_every; else it syncs the log), then
  // makes every later call that touches the store or files return `why`: the Database retires
  // a collection it drops or closes, so handles held elsewhere never reach freed storage.
  Status Retire(Status why, bool checkpoint);
  // Undoes Retire when a drop could not be written.
  void Unretire();

  // Used by Database::Restore: writes a snapshot's records and index files as collection `id`.
  static Status ImportSnapshot(KvStore* kv, const std::string& snapshot_dir,
                               const std::string& index_dir, uint32_t id);

 private:
  CollectionImpl(KvStore* kv, std::string index_dir, CollectionSpec spec, uint32_t id,
                 const DatabaseOptions& options, PayloadIndex payload_index);
 public:
  ~CollectionImpl() override;

 private:
  // Background maintenance: automatic checkpoints (with back-off after failures) and tombstone
  // consolidation. Started by Open and Unretire, stopped by Retire and the destructor.
  void StartMaintenance();
  void StopMaintenance();
  void MaintenanceLoop();
  void WakeMaintenance();
  // One maintenance pass: checkpoint when due, consolidate indexes that need it.
  void MaintainOnce();

  Status Recover();
  Result<std::vector<std::optional<Record>>> GetRecords(const std::vector<PointId>& ids,
                                                        bool with_vectors) const;
  // Checks a batch and parses its payloads; `epoch` (optional) receives the payload index epoch
  // the payloads were checked against.
  // `index_types` false: the payloads are not checked against the payload index's types (a
  // replicated log's write, already checked where it was accepted: see Upsert).
  Status ValidateRecords(const std::vector<Record>& records, std::vector<nlohmann::json>* payloads,
                         uint64_t* epoch = nullptr, bool index_types = true) const;
  // The payloads against the payload index's field types (under state_mutex_ shared: a payload
  // index change swaps the index under it exclusively); `epoch` receives payload_index_epoch_.
  Status ValidatePayloads(const std::vector<Record>& records, const std::vector<nlohmann::json>& payloads,
                          uint64_t* epoch) const;
  Result<Filter> ParseFilter(const std::string& text) const;
  Result<SlotBitmap> MatchingSlots(const Filter& filter, EvalStats* stats) const;
  // How a search applies a filter: the allowed slots in the form its strategy needs.
  struct FilterPlan {
    size_t allowed = 0;
    bool exact_scan = false;
    std::vector<label_t> candidates;   // exact scan: the allowed slots
    std::optional<BitsetFilter> bits;  // filtered graph walk: the allowed slots as a bitset
  };
  // The plan for `text` at the current state (caller holds state_mutex_ shared): from the cache
  // when the same filter text was planned since the last change, else parsed and evaluated.
  Result<std::shared_ptr<const FilterPlan>> PlanFilter(const std::string& text) const;
  // Caller holds write_mutex_. `log_position` as in Collection::Delete.
  Result<size_t> DeleteSlots(const std::vector<uint32_t>& slots, uint64_t log_position);
  // Adds the log position key to `batch` when `log_position` > 0.
  void PutLogPosition(KvStore::Batch* batch, uint64_t log_position) const;
  // An upsert waiting in the commit queue (validated; its payloads parsed).
  struct PendingUpsert {
    const std::vector<Record>* records = nullptr;
    uint64_t log_position = 0;
    std::vector<nlohmann::json> payloads;
    uint64_t epoch = 0;  // the payload index epoch the payloads were validated against
    Status status;
    bool done = false;  // guarded by commit_mutex_
  };
  // Commits `group` in arrival order as one log write (one operation per upsert) and one index
  // insert, setting each upsert's status. Caller holds write_mutex_.
  void CommitUpserts(const std::vector<PendingUpsert*>& group);
  // Writes every index file at the current log position while writes go on, then trims the
  // log. Caller holds life_mutex_ (shared or exclusive) and not write_mutex_.
  Status RunCheckpoint();
  std::string CheckpointPath(size_t vector, uint64_t seq) const;
  std::string VectorStorePath(size_t vector) const;
  // Writes rows of vector `v`'s on-disk store (nothing when it keeps vectors in RAM). Upsert
  // writes them after the records commit and before the index insert; recovery rewrites the
  // rows of every slot it replays, so a crash in between loses nothing.
  Status WriteStoreRows(size_t v, size_t n, const float* x, const label_t* labels);
  // Reads a slot's vectors from the vectors column family into record->vectors.
  Status ReadVectors(uint32_t slot, Record* record, const KvStore::ReadView* view = nullptr) const;
  // The stored payload of a live slot (on_disk_payload: payloads are not cached).
  Result<nlohmann::json> StoredPayload(uint32_t slot) const;
  // The cached payload of a slot, parsed (an empty object when it has none). Caller holds
  // state_mutex_.
  nlohmann::json CachedPayload(uint32_t slot) const;

  KvStore* const kv_;
  const std::string index_dir_;
  const CollectionSpec spec_;
  // spec() snapshots: each change publishes a new one; earlier ones stay alive for callers that
  // still hold a reference (a few hundred bytes per change of the payload indexes).
  std::mutex spec_versions_mutex_;
  std::vector<std::unique_ptr<const CollectionSpec>> spec_versions_;  // guarded by spec_versions_mutex_
  std::atomic<const CollectionSpec*> spec_view_{nullptr};
  mutable std::mutex metadata_mutex_;
  std::string metadata_ = spec_.metadata;  // guarded by metadata_mutex_
  const uint32_t id_;
  const DatabaseOptions options_;
  std::vector<std::unique_ptr<Index>> indexes_;  // one per spec_.vectors entry
  std::vector<std::shared_ptr<VectorStore>> stores_;  // per vector: its on-disk store, or null

  // Shared by every call that reaches the store or the index files, exclusive in Retire.
  mutable RwLock life_mutex_;
  Status retired_;  // OK until retired; guarded by life_mutex_

  std::mutex checkpoint_mutex_;
  // Group commit: upserts wait here while one of them (the leader) commits the queue.
  mutable std::mutex commit_mutex_;
  std::condition_variable commit_cv_;
  std::vector<PendingUpsert*> commit_queue_;  // guarded by commit_mutex_
  bool committing_ = false;                   // guarded by commit_mutex_
  std::atomic<uint64_t> upsert_requests_{0};
  std::atomic<uint64_t> upsert_commits_{0};
  mutable std::mutex write_mutex_;
  uint64_t seq_ = 0;             // last logged operation
  std::atomic<uint64_t> log_position_{0};  // the last replicated-log entry applied (Collection::log_position)
  uint64_t checkpoint_seq_ = 0;  // operations up to here are in the index files
  uint64_t ops_since_checkpoint_ = 0;
  // Back-off after a failed automatic checkpoint (maintenance thread only).
  std::chrono::steady_clock::time_point next_checkpoint_attempt_{};
  std::chrono::seconds checkpoint_backoff_{0};
  std::thread maintenance_;
  std::mutex maintenance_mutex_;
  std::condition_variable maintenance_cv_;
  bool maintenance_stop_ = false;   // guarded by maintenance_mutex_
  bool maintenance_wanted_ = false;  // guarded by maintenance_mutex_
  std::atomic<uint64_t> checkpoint_failures_{0};
  std::atomic<bool> store_damaged_{false};  // a vector-file write failed after its commit
  // steady_clock ticks of the last successful checkpoint (or of opening): written under
  // write_mutex_, read without it by monitoring.
  std::atomic<std::chrono::steady_clock::rep> last_checkpoint_ticks_{
      std::chrono::steady_clock::now().time_since_epoch().count()};

  mutable RwLock state_mutex_;
  IdTable ids_;                                          // id <-> slot
  PayloadTexts payloads_;                               // slot -> payload text (none: on_disk_payload)
  SlotBitmap live_;
  PayloadIndex payload_index_;
  // Bumped with each payload index change (under write_mutex_ and state_mutex_ exclusive): an
  // upsert validated at an older epoch is validated again before it commits.
  uint64_t payload_index_epoch_ = 0;
  std::vector<uint32_t> free_slots_;
  uint32_t next_slot_ = 0;
  uint64_t state_version_ = 0;  // bumped (under state_mutex_ exclusive) whenever the above change

  // Searches repeat the same filters far more often than the data changes: plans are cached by
  // filter text and used while state_version_ is unchanged (at most kMaxCachedFilters).
  struct CachedPlan {
    uint64_t version;
    std::shared_ptr<const FilterPlan> plan;
  };
  mutable std::mutex filter_cache_mutex_;
  mutable std::unordered_map<std::string, CachedPlan> filter_cache_;

  // Online recall monitoring: re-runs a share of searches exactly (ExactIds) on its thread,
  // which the destructor and Retire stop first.
  Result<std::vector<PointId>> ExactIds(const RecallMonitor::Sample& sample) const;
  std::unique_ptr<RecallMonitor> recall_;

  // Tune's defaults, per vector: ef, nprobe, checks at [3v], [3v+1], [3v+2] (atomics: every
  // search reads them; 0 = the index's own default).
  size_t VectorIndex(const std::string& name) const;  // spec_.vectors.size() when unknown
  // Makes `defaults` vector v's, durably, then visible to searches. Caller holds tune_mutex_
  // (Tune and ResetSearchDefaults: one writer of the stored defaults at a time).
  Status StoreSearchDefaults(size_t v, const SearchDefaults& defaults);
  void SetSearchDefaults(size_t v, const SearchDefaults& defaults);  // what searches and info see
  std::unique_ptr<std::atomic<int>[]> tuned_;
  std::mutex tune_mutex_;                   // one Tune at a time (minutes at 10M points)
  mutable std::mutex tuned_info_mutex_;     // held briefly: info requests read it while Tune runs
  std::vector<SearchDefaults> tuned_info_;  // guarded by tuned_info_mutex_
};

}  // namespace fathom
