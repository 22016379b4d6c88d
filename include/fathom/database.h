// fathom::Database and fathom::Collection: durable named collections of records on RocksDB.
//
// A database is a directory. It holds collections; a collection holds records, each with an
// id (uint64 or string), one or more float32 vectors (one unnamed vector in the common case,
// or several named ones, e.g. "image" and "text", each with its own dimension, metric and index)
// and a JSON-object payload. Every upsert or delete is one atomic RocksDB write batch (records,
// operation log) written with fsync by default, then applied to the in-memory indexes, then
// acknowledged: an acknowledged write survives a crash, and a batch is all or nothing.
// Indexes are checkpointed to checksummed files; on open the newest valid checkpoint is loaded
// and the operation log after it replayed (docs/format/database.md).
//
// Thread-safety: a Database and its Collections may be used from many threads. Writers to one
// collection are serialised; searches and gets run concurrently with writes (a search may see
// part of a batch that is being applied, never any of a batch that failed). Collections are
// shared: a handle stays valid (memory-safe) for as long as it is held. DropCollection and Close
// wait for calls already running on the collection, then every later call through an old handle
// fails cleanly (NotFound "was dropped", FailedPrecondition "database is closed").
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "fathom/index.h"
#include "fathom/status.h"

namespace rocksdb {
class Env;
}  // namespace rocksdb

namespace fathom {

enum class Durability {
  kFsync,     // default: every acknowledged write is on disk (survives power loss)
  kBuffered,  // writes reach the OS, not the disk: survives a process crash, ~10x faster ingest
};

struct DatabaseOptions {
  Durability durability = Durability::kFsync;
  // Checkpoint a collection's indexes after this many logged operations. Close checkpoints a
  // collection only when its log holds at least min(checkpoint_every, max(1,000, 1% of its
  // points)) operations: closing after a few writes to a large collection is then a log sync,
  // not a rewrite of its index, and the next open replays those few operations.
  uint64_t checkpoint_every = 50000;
  // Also checkpoint a collection whose log holds any operation once its last checkpoint is this
  // old (0: by count only). A collection written slowly (or a cluster replica applying a
  // trickle) then replays minutes of writes after a crash, not up to checkpoint_every of them.
  uint32_t checkpoint_after_seconds = 300;
  // Writes fail with NoSpace (nothing written; HTTP 507) while the disk holding the database
  // has less than this free beyond the write itself, and resume by themselves once it has more:
  // the store must never run into a full disk mid-write. Reads are unaffected.
  uint64_t min_free_disk_bytes = uint64_t{64} << 20;  // 64 MiB: a memtable flush (64 MiB) fits
  // The file system under the record store (as LevelDB's and RocksDB's Options::env): tests pass
  // one that injects faults (disk full, power loss). nullptr: the operating system's. Not owned.
  rocksdb::Env* env = nullptr;
  // Online recall monitoring: this share of searches (0 to 1; 0 turns it off) is re-run exactly
  // in the background and compared with what the search answered (Collection::recall_estimate),
  // using at most `recall_cpu_share` of one core; samples beyond that are dropped.
  double recall_sample_rate = 0.01;
  double recall_cpu_share = 0.05;
};

enum class FieldType : uint8_t { kKeyword, kInteger, kFloat, kBool, kDatetime };

struct VectorSpec {
  std::string name;  // "" for the single unnamed vector
  size_t dim = 0;
  Metric metric = Metric::kL2;
  std::string index = "HNSW32";  // factory string
  // Float32 vectors live in a file on disk (read back only to re-rank the final candidates)
  // and only the index's codes and graph in RAM. Needs an index that walks codes: "...,SQ8"
  // HNSW with l2 or cosine.
  bool on_disk = false;
};

struct CollectionSpec {
  std::string name;  // letters, digits, '_', '-', '.'; 1..64 chars; no '/'
  std::vector<VectorSpec> vectors;
  std::map<std::string, FieldType> indexed_fields;
  // Payloads are not cached in RAM: they are read from the record store when a search returns
  // them or a filter needs a field that has no payload index (slower for such filters).
  bool on_disk_payload = false;
  // A JSON object describing the collection, kept with it and in its snapshots (Qdrant's
  // collection metadata): which model made the vectors ({"model": {"name", "version",
  // "dimension"}}), which payload field holds an image ("image_field"), anything else.
  // At most kMaxMetadataBytes of JSON text.
  std::string metadata = "{}";
  static constexpr size_t kMaxMetadataBytes = 64 * 1024;
};

// Where a collection's bytes are: RAM (indexes' graphs, codes and in-RAM vectors, id maps,
// payload indexes, cached payloads) and disk (records and log in the store, on-disk vectors,
// index checkpoint files). Disk figures are what the files occupy; the store's is RocksDB's
// estimate.
struct StorageUsage {
  uint64_t ram_bytes = 0;
  uint64_t vectors_disk_bytes = 0;
  uint64_t records_disk_bytes = 0;
  uint64_t index_files_bytes = 0;
  uint64_t disk_bytes() const { return vectors_disk_bytes + records_disk_bytes + index_files_bytes; }
};

// Upsert requests and the log commits that carried them since the collection was opened:
// concurrent upserts share one commit (one write and fsync of the log, one index insert), so
// requests / commits is the group-commit factor. `queued` upserts wait for the commit in flight.
struct WriteStats {
  uint64_t upsert_requests = 0;
  uint64_t upsert_commits = 0;
  uint64_t queued = 0;
};

// A record id: an unsigned 64-bit integer or a string (1..256 bytes).
using PointId = std::variant<uint64_t, std::string>;
std::string PointIdToString(const PointId& id);

struct Record {
  PointId id;
  std::map<std::string, std::vector<float>> vectors;  // key "" for the unnamed vector
  std::string payload = "{}";                          // JSON object text
};

// Collection::Tune: find the cheapest search setting that reaches a target recall and make it
// the collection's default (FLANN's autotuning to a target precision; the seed's "automatic
// parameter adjustment").
struct TuneRequest {
  double target_recall = 0.95;  // recall@k to reach, in (0, 1]
  size_t k = 10;
  std::string vector;           // which named vector ("" = the unnamed one)
  // Queries made from this many of the collection's own points, each moved off itself by its
  // nearest-neighbour distance in a random direction (a stored point is a graph node and would
  // flatter the index: the tuned setting must hold for new queries).
  size_t sample = 500;
  // Or these queries (n * dim), used as given.
  std::vector<float> queries;
  // Settings of the knob to try instead of its built-in ladder (ascending, each >= 1), e.g. {64}
  // to measure the recall of ef 64 alone.
  std::vector<int> values;
  // False: measure and answer, and store nothing (the defaults stay as they are).
  bool store = true;
};

struct TuneResult {
  // What was tuned: "ef" (HNSW), "nprobe" (IVF), "checks" (KDForest, BallTree), or "" when the
  // index is exact (Flat, KDTree) and there is nothing to trade.
  std::string knob;
  int value = 0;        // now the default for searches that leave the knob at 0
  double recall = 1;    // measured recall@k at `value`
  bool reached = true;  // false: no setting reached the target; the most accurate tried is kept
  size_t queries = 0;
  std::vector<std::pair<int, double>> tried;  // (value, recall) in the order measured
};

// The defaults Tune stored for one vector (0 = the index's own default).
struct SearchDefaults {
  int ef = 0;
  int nprobe = 0;
  int checks = 0;
  double target_recall = 0;  // 0: never tuned
  double recall = 0;
};

// Collection::recall_estimate: the share of the exact k nearest neighbours that live searches
// found, over a window of recent sampled searches (online recall monitoring).
struct RecallEstimate {
  double recall = 0;            // found / expected over the window; meaningful when samples > 0
  uint64_t samples = 0;         // sampled searches the estimate is over (at most the window)
  uint64_t total_samples = 0;   // sampled searches re-run since the collection opened
  uint64_t dropped = 0;         // sampled but dropped: the monitor's CPU share was spent
  bool from_store = false;      // kept from before the last close (no live samples yet)
};

struct ScoredPoint {
  PointId id;
  float distance = 0;  // smaller is closer (see fathom/index.h)
  std::string payload;                                 // when requested
  std::map<std::string, std::vector<float>> vectors;  // when requested
};

struct SearchRequest {
  std::string vector;              // which named vector to search ("" = the unnamed one)
  std::vector<float> queries;      // n * dim, row-major
  size_t k = 10;
  int ef = 0;                      // 0 = index default
  // Quantized indexes (",SQ8"): how many of the best candidates by code distance are re-ranked
  // with exact float distances (read from disk with on_disk); 0 = 2k. More costs a little time
  // and lifts the recall ceiling of the codes (Qdrant's quantization.oversampling).
  int rerank = 0;
  // IVF indexes: how many inverted lists are scanned; 0 = the index default.
  int nprobe = 0;
  // HNSW: beam width on level 1 (SearchParams::upper_ef); 0 = greedy descent.
  int upper_ef = 0;
  // KDForest and BallTree: points examined (SearchParams::checks); 0 = exact.
  int checks = 0;
  std::string filter;              // text form ("price < 50 AND NOT sold") or JSON form
  bool with_payload = true;
  bool with_vectors = false;
  // Brute force over every point the filter allows, bypassing the graph (Qdrant's
  // params.exact): the reference for measuring recall. O(points) per query.
  bool exact = false;
};

// Collection::Recommend: points like the positive examples and unlike the negative ones
// (Qdrant's recommend). Examples are stored points (by id) or vectors.
struct RecommendRequest {
  enum class Strategy : uint8_t {
    // One search for 2 * mean(positives) - mean(negatives) (mean(positives) without negatives).
    kAverageVector,
    // Candidates near each positive example are scored against every example: the best
    // similarity to a positive when it beats the best to a negative, else minus the square of
    // the best negative similarity. ScoredPoint::distance is then minus that score.
    kBestScore,
  };
  std::string vector;  // which named vector ("" = the unnamed or only one)
  std::vector<PointId> positive_ids, negative_ids;
  std::vector<std::vector<float>> positive_vectors, negative_vectors;
  Strategy strategy = Strategy::kAverageVector;
  size_t k = 10;
  int ef = 0;
  bool exact = false;  // SearchRequest::exact for the searches it runs
  std::string filter;  // as in SearchRequest
  bool with_payload = true;
  bool with_vectors = false;
};

// One page of Collection::Scroll.
struct ScrollRequest {
  std::string filter;             // as in SearchRequest; "" = every point
  std::optional<PointId> offset;  // where the page starts (a previous page's next_offset); none = the first point
  size_t limit = 10;
  bool with_payload = true;
  bool with_vectors = false;
};

struct ScrollPage {
  std::vector<Record> points;
  std::optional<PointId> next_offset;  // the first point of the next page; none after the last
};

// A change to the payloads of some points, their vectors untouched (Qdrant's set, overwrite,
// delete and clear payload). Targets: `ids` (every one must exist) or every point `filter`
// matches, exactly one of the two.
struct PayloadUpdate {
  enum class Op {
    kSet,         // merge `payload`'s top-level keys into each payload
    kOverwrite,   // replace each payload with `payload`
    kDeleteKeys,  // remove `keys` from each payload
    kClear,       // replace each payload with {}
  };
  Op op = Op::kSet;
  std::string payload;            // a JSON object (kSet, kOverwrite)
  std::vector<std::string> keys;  // top-level keys (kDeleteKeys)
  std::vector<PointId> ids;
  std::string filter;             // the text filter language, as in SearchRequest
};

struct SearchStats {
  std::string strategy;  // "graph", "exact-scan", "graph+filter" or "exact" (request.exact)
  size_t allowed = 0;    // points the filter allowed (all points when there is none)
};

class Collection {
 public:
  virtual ~Collection() = default;
  virtual const CollectionSpec& spec() const = 0;
  // The collection's metadata now (spec().metadata is what it was when the collection opened):
  // a JSON object's text.
  virtual std::string metadata() const = 0;
  // Online recall monitoring (DatabaseOptions::recall_sample_rate): how well searches have been
  // answering lately; kept across a clean close.
  virtual RecallEstimate recall_estimate() const = 0;

  // Inserts or replaces records. The whole batch is validated first (ids, dimensions, finite
  // values, JSON-object payloads, no id twice); on error nothing is written. Upserts that arrive
  // while another is committing are committed together (group commit: one log write and fsync,
  // one index insert on all cores), each still atomic and applied in arrival order.
  Status Upsert(const std::vector<Record>& records) { return Upsert(records, 0); }
  // One entry per id, std::nullopt for ids that do not exist.
  virtual Result<std::vector<std::optional<Record>>> Get(const std::vector<PointId>& ids,
                                                         bool with_vectors = true) const = 0;
  // Returns how many of the ids existed.
  Result<size_t> Delete(const std::vector<PointId>& ids) { return Delete(ids, 0); }
  Result<size_t> DeleteByFilter(const std::string& filter) { return DeleteByFilter(filter, 0); }
  // Applies `update` atomically (every payload or none: validated first, one durable write);
  // returns how many points it changed. Payload indexes follow; vectors and indexes do not move.
  Result<size_t> UpdatePayload(const PayloadUpdate& update) { return UpdatePayload(update, 0); }
  // Replicated-log apply (cluster replicas apply their shard's stream in order): a write given
  // `log_position` > 0 stores that position in the same atomic batch as its data (also when it
  // changes nothing, e.g. deleting absent ids), and log_position() reads the last one back (0:
  // none), so a restarted replica resumes right after the last entry it applied and never
  // applies one twice. Positions must increase; 0 records nothing.
  virtual Status Upsert(const std::vector<Record>& records, uint64_t log_position) = 0;
  virtual Result<size_t> Delete(const std::vector<PointId>& ids, uint64_t log_position) = 0;
  virtual Result<size_t> DeleteByFilter(const std::string& filter, uint64_t log_position) = 0;
  virtual Result<size_t> UpdatePayload(const PayloadUpdate& update, uint64_t log_position) = 0;
  // The checks Upsert makes before writing anything (dimensions, finite values, payloads that the
  // payload indexes accept, ids), without writing.
  virtual Status ValidateUpsert(const std::vector<Record>& records) const = 0;
  // Records `log_position` alone: an entry that applies as nothing (one every replica rejects).
  virtual Status SkipLogPosition(uint64_t log_position) = 0;
  virtual uint64_t log_position() const = 0;
  virtual size_t Count() const = 0;
  virtual Result<size_t> CountByFilter(const std::string& filter) const = 0;
  // The points (matching the filter) page by page, in storage order: each page costs its own
  // size, not the collection's (plus evaluating the filter, as a count does). A point written
  // while paging may or may not appear; the offset point must still exist (else NotFound).
  virtual Result<ScrollPage> Scroll(const ScrollRequest& request) const = 0;
  // The k best recommendations, best first; the example points themselves are never returned.
  // An example id that does not exist is NotFound; no positive example is InvalidArgument.
  virtual Result<std::vector<ScoredPoint>> Recommend(const RecommendRequest& request) const = 0;
  // One result list per query, closest first.
  virtual Result<std::vector<std::vector<ScoredPoint>>> Search(const SearchRequest& request,
                                                               SearchStats* stats = nullptr) const = 0;
  // Writes a consistent copy of this collection into `dir` (which must not exist): its state at
  // one moment. Writes wait while the index files are written (memory-speed), not while the
  // records and their vectors are copied; searches never wait.
  virtual Status Snapshot(const std::string& dir) const = 0;
  // Writes index checkpoints now and trims the operation log. Writes and searches go on while
  // the files are written. (Automatic checkpoints run on a background thread.)
  virtual Status Checkpoint() = 0;
  // Runs index housekeeping now (HNSW: relinks around deleted points and frees them for reuse),
  // which otherwise runs in the background once deletions pass 10% of a graph.
  virtual Status Optimize() = 0;
  // Measures recall against exact search for a series of settings of the index's speed knob
  // (binary search over a fixed ladder), stores the smallest that reaches the target as the
  // vector's default (durably; kept across restarts) and returns what it measured. The exact
  // search runs in chunks with the locks released between them, so searches and writes go on;
  // it costs O(points) per query (about a minute for 500 queries at 10M x 96-d).
  virtual Result<TuneResult> Tune(const TuneRequest& request) = 0;
  // What Tune stored for `vector` (zeros when it never ran).
  virtual SearchDefaults search_defaults(const std::string& vector = "") const = 0;
  // Forgets what Tune stored for `vector` (durably): searches that leave the knob at 0 use the
  // index's own default again. Returns whether there was anything to forget.
  virtual Result<bool> ResetSearchDefaults(const std::string& vector = "") = 0;
  // Stores `defaults` as what Tune chose for `vector` (durably), as if Tune had measured them
  // here: a cluster tunes each shard on one replica and gives every replica the setting that
  // met the target on all of them. target_recall 0 forgets them, as ResetSearchDefaults.
  virtual Status StoreSearchDefaults(const std::string& vector, const SearchDefaults& defaults) = 0;
  // RAM and disk bytes, by part (see StorageUsage); usage().ram_bytes == memory_bytes().
  virtual StorageUsage usage() const = 0;
  // When the indexes were last checkpointed successfully by this process (explicitly, every
  // `checkpoint_every` operations, or by a no-op Checkpoint with nothing to write); the time the
  // collection was opened or created if that has not happened yet. Monitoring reads it as
  // "checkpoint age": roughly how much operation log a crash would replay.
  virtual std::chrono::steady_clock::time_point last_checkpoint() const = 0;
  // Automatic checkpoints that failed (disk full, I/O error) since the collection was opened.
  // Such a failure never fails the write that triggered it; it is retried with back-off.
  virtual uint64_t checkpoint_failures() const = 0;
  virtual size_t memory_bytes() const = 0;
  virtual WriteStats write_stats() const = 0;
};

// What Database::Repair found and salvaged.
struct RepairReport {
  struct CollectionReport {
    std::string name;
    size_t records = 0;            // records readable after the repair (now searchable)
    size_t undecodable = 0;        // records whose bytes no longer decode: removed
    size_t checkpoint_points = 0;  // points in its newest checkpoint before the repair (0: none)
  };
  std::vector<CollectionReport> collections;
  std::vector<std::string> notes;  // files set aside and other findings, one line each
};

// One change to a database's aliases (Database::UpdateAliases; Qdrant's alias actions).
struct AliasOperation {
  enum class Kind : uint8_t { kCreate, kDelete, kRename };
  Kind kind = Kind::kCreate;
  std::string alias;       // kCreate / kDelete: the alias; kRename: its old name
  std::string collection;  // kCreate: the collection it names
  std::string new_alias;   // kRename: the new name
};

// Applies `operations` in order to `aliases` (alias -> collection), with Database::UpdateAliases's
// checks (a new alias is a valid name, no collection's name and not taken; a created alias names
// a collection; deleted and renamed ones exist). On an error `aliases` is partly changed: apply to
// a copy. `is_collection` says whether a name is a collection's. (The cluster mode keeps its
// aliases in NATS and applies them with this.)
Status ApplyAliasOperations(const std::vector<AliasOperation>& operations,
                            const std::function<bool(const std::string&)>& is_collection,
                            std::map<std::string, std::string>* aliases);

class Database {
 public:
  // Salvages a database that no longer opens (a corrupt RocksDB block, a lost file): RocksDB's
  // repair keeps every table and log it can read (unreadable ones go to store/lost/), records
  // that no longer decode are removed, every index checkpoint is set aside (indexes/*/pre-repair/)
  // and the indexes are rebuilt from the records. The database must not be open. Compare each
  // collection's `records` with `checkpoint_points` to see roughly how many points were lost.
  static Result<RepairReport> Repair(const std::string& dir);

  // Opens (creating if missing) the database in `dir`, recovering every collection.
  static Result<std::unique_ptr<Database>> Open(const std::string& dir,
                                                const DatabaseOptions& options = {});
  // Restores a snapshot written by Collection::Snapshot into database `db_dir` (which must be
  // closed or not yet exist), under the snapshot's collection name or `new_name`.
  static Status Restore(const std::string& snapshot_dir, const std::string& db_dir,
                        const std::string& new_name = "");

  virtual ~Database() = default;
  // Checkpoints every collection and closes; also done by the destructor.
  virtual Status Close() = 0;
  virtual std::vector<std::string> ListCollections() const = 0;
  virtual Result<std::shared_ptr<Collection>> CreateCollection(const CollectionSpec& spec) = 0;
  virtual Status DropCollection(const std::string& name) = 0;
  // Merges `changes` (a JSON object's text) into a collection's metadata key by key, a null
  // value removing its key (the rule of Qdrant's PATCH), in one durable write; concurrent updates
  // apply one after the other. Returns the metadata now. `name` may be an alias.
  virtual Result<std::string> UpdateCollectionMetadata(const std::string& name, const std::string& changes) = 0;
  // By collection name or alias.
  virtual Result<std::shared_ptr<Collection>> GetCollection(const std::string& name) const = 0;
  // Adds a payload index on `field` of a live collection (or changes its type; the same type
  // again changes nothing), durably: built from every stored payload while the collection's
  // writes wait (its searches go on), then kept in the collection's spec (spec().indexed_fields).
  // Existing values of another type stay searchable (read from their payloads); later upserts
  // must fit the type. O(collection) work, like Qdrant's index creation. `name` may be an alias.
  virtual Status CreatePayloadIndex(const std::string& name, const std::string& field, FieldType type) = 0;
  // Drops the payload index on `field` (NotFound if there is none); filters on the field then
  // read payloads.
  virtual Status DropPayloadIndex(const std::string& name, const std::string& field) = 0;
  // Aliases: second names for collections that every call taking a collection name accepts,
  // for re-embedding (build images_v2 while the alias `images` serves images_v1, then switch).
  // The operations apply in order, all or none, in one durable write: a request that resolves
  // the alias sees the old target or the new one, never none. An alias shares the collection
  // names' rules and may not equal a collection's name; dropping a collection drops its aliases.
  virtual Status UpdateAliases(const std::vector<AliasOperation>& operations) = 0;
  // alias -> collection.
  virtual std::map<std::string, std::string> ListAliases() const = 0;
  // Restores a snapshot written by Collection::Snapshot into this open database, under the
  // snapshot's collection name or `new_name`, and returns the restored collection.
  // AlreadyExists if that name is taken.
  virtual Result<std::shared_ptr<Collection>> RestoreSnapshot(const std::string& snapshot_dir,
                                              const std::string& new_name = "") = 0;
};

const char* FieldTypeName(FieldType type);
Result<FieldType> ParseFieldType(std::string_view name);

}  // namespace fathom
