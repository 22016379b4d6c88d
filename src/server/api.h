// Api: the REST endpoints as plain functions from a request (body and path parameters) to a Reply,
// over one open fathom::Database. It knows JSON and HTTP status codes but no sockets, so it can be
// driven directly by tests and fuzzers; server.cc adds HTTP, auth, metrics and signals.
//
// Ownership: Api owns the Database. Every handler holds a shared lock on it for its duration;
// dropping a collection and closing take it exclusively, because they invalidate Collection
// pointers that concurrent requests are using.
// Thread-safety: all handlers may run concurrently from any number of threads; searches wait for
// one of ApiLimits::max_concurrent_searches slots.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "fathom/database.h"
#include "fathom/status.h"
#include "server/json_util.h"
#include "server/search_slots.h"

namespace fathom::server {

// What a handler answers: the JSON text of "result" (HTTP 200), or an HTTP error status with a
// message for the error object.
struct Reply {
  // From a library Status: OK becomes `true`, errors map to HTTP statuses by code (HttpStatusFor).
  // Implicit so that FATHOM_RETURN_IF_ERROR and FATHOM_ASSIGN_OR_RETURN work in handlers.
  Reply(Status status);  // NOLINT(google-explicit-constructor)
  static Reply Ok(std::string result_json);
  static Reply Error(int http_status, std::string message);

  bool ok() const { return http_status < 400; }
  int http_status = 200;
  std::string result;  // JSON text, when ok()
  std::string error;   // message, when !ok()
  // Set for the few non-envelope answers (metrics text, the OpenAPI document): `result` is then
  // the whole body, sent as is with this type.
  std::string content_type;
  // Extra HTTP response headers (the cluster mode names missing shards of a partial answer).
  std::vector<std::pair<std::string, std::string>> headers;
  // Set for downloads: the body is this file, streamed (with content_type), not `result`.
  std::string file;
};

// InvalidArgument 400, NotFound 404, AlreadyExists 409, ResourceExhausted 503, Unavailable 503, NoSpace 507,
// others 500.
int HttpStatusFor(const Status& status);

struct ApiLimits {
  size_t max_batch = 10000;          // points per upsert, ids per get/delete, searches per batch
  size_t max_k = 10000;              // limit + offset of one search
  size_t max_filter_depth = 32;      // JSON nesting of a filter object, parentheses of a text one
  size_t max_filter_text = 65536;    // bytes of a text filter
  size_t max_json_depth = 64;        // nesting of a whole request body (payloads included)
  size_t max_batch_results = 1000000;  // sum of limit + offset over a batch search
  int max_ef = 100000;               // params.ef
  // Search requests (single or batch) executing at once; more wait for a slot. 0 = one per
  // hardware thread. Searches are CPU-bound, so more of them at once only time-slice the same
  // cores, and every extra runnable search thread shrinks the CPU share of a concurrent upsert
  // (measured: 32 searching connections on 2 cores made a 100-point upsert take ~0.9 s instead
  // of ~60 ms idle; docs/BENCHMARKS.md).
  size_t max_concurrent_searches = 0;
};

struct ApiRequest {
  std::string_view body;
  std::vector<std::string> params;  // path parameters in template order: {name}, then {id} / {snapshot}
  // URL query parameters (`?wait=false`), in order.
  std::vector<std::pair<std::string, std::string>> query;
  // After this, a batch search stops between searches and answers 408.
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  // Search and batch-search bodies are first read by a simdjson fast path that takes only
  // well-formed common bodies and hands anything else to the nlohmann path, so answers are the
  // same either way. Tests and the fuzzer turn it off to compare the two.
  bool fast_parse = true;
  // The request carried the read-only API key (write routes are refused before they run).
  bool read_only_key = false;
};

class Api {
 public:
  // `db` is open on `data_dir` (where snapshots are kept, under snapshots/).
  Api(std::string data_dir, std::unique_ptr<Database> db, ApiLimits limits);
  ~Api();
  Api(const Api&) = delete;
  Api& operator=(const Api&) = delete;

  Reply ListCollections(const ApiRequest& req);
  Reply CreateCollection(const ApiRequest& req);
  Reply GetCollection(const ApiRequest& req);
  Reply CollectionExists(const ApiRequest& req);
  Reply UpdateAliases(const ApiRequest& req);
  Reply ListAliases(const ApiRequest& req);            // GET /aliases
  Reply ListCollectionAliases(const ApiRequest& req);  // GET /collections/{name}/aliases
  Reply UpdateCollection(const ApiRequest& req);
  // Qdrant's PUT /collections/{name}/index ({"field_name", "field_schema"}) and
  // DELETE /collections/{name}/index/{field}: payload indexes on a live collection.
  Reply CreateFieldIndex(const ApiRequest& req);
  // Qdrant's answer to a finished write that has no count: {"operation_id", "status": "completed"}.
  Reply Completed();
  Reply DeleteFieldIndex(const ApiRequest& req);
  Reply DeleteCollection(const ApiRequest& req);
  Reply UpsertPoints(const ApiRequest& req);
  Reply GetPoints(const ApiRequest& req);
  Reply GetPoint(const ApiRequest& req);
  Reply DeletePoints(const ApiRequest& req);
  // Qdrant's payload operations: POST .../points/payload (set), PUT .../points/payload
  // (overwrite), POST .../points/payload/delete, POST .../points/payload/clear.
  Reply SetPayload(const ApiRequest& req);
  Reply OverwritePayload(const ApiRequest& req);
  Reply DeletePayload(const ApiRequest& req);
  Reply ClearPayload(const ApiRequest& req);
  Reply CountPoints(const ApiRequest& req);
  Reply ScrollPoints(const ApiRequest& req);
  Reply Recommend(const ApiRequest& req);
  // Qdrant's universal query (POST .../points/query and .../points/query/batch): `query` as a
  // vector, a point id, {"nearest": ...} or {"recommend": {...}}; answers {"points": [...]}.
  Reply Query(const ApiRequest& req);
  Reply QueryBatch(const ApiRequest& req);
  Reply RecommendBatch(const ApiRequest& req);
  Reply Search(const ApiRequest& req);
  Reply SearchBatch(const ApiRequest& req);
  Reply CreateSnapshot(const ApiRequest& req);
  Reply Tune(const ApiRequest& req);
  Reply ResetTune(const ApiRequest& req);
  Reply ListSnapshots(const ApiRequest& req);
  Reply DeleteSnapshot(const ApiRequest& req);
  Reply RecoverSnapshot(const ApiRequest& req);
  // GET /collections/{name}/snapshots/{snapshot}: the snapshot as one tar file (made once and
  // kept beside it), the `location` another server recovers from.
  Reply DownloadSnapshot(const ApiRequest& req);

  // What the cluster mode's router needs: a request parsed and validated against the local
  // collection named by req.params[0] (the cluster collection's template), without writing.
  Result<std::vector<Record>> ParseUpsert(const ApiRequest& req) const;
  Status ParseDelete(const ApiRequest& req, std::vector<PointId>* ids, std::string* filter) const;
  Result<PayloadUpdate> ParsePayloadUpdate(const ApiRequest& req, PayloadUpdate::Op op) const;
  Result<std::vector<AliasOperation>> ParseAliasActions(const ApiRequest& req) const;
  // Recovery for the cluster mode: the snapshot directory a recover request names (its
  // "location", downloaded or a file of this server, unpacked; or its "snapshot", one of this
  // server's) is handed to `restore` with the target collection name; temporary files are
  // removed after. Returns the target name.
  using Restore = std::function<Status(const std::string& snapshot_dir, const std::string& target)>;
  Result<std::string> RecoverWith(const ApiRequest& req, const Restore& restore);
  // A new, not yet existing, snapshot directory of `collection` (named by the UTC time), and
  // the answer describing a snapshot directory, as POST /collections/{name}/snapshots gives it.
  Result<std::string> NewSnapshotPath(const std::string& collection);
  Json DescribeSnapshot(const std::string& path, const std::string& collection) const;
  // A collection of the local database (cluster replicas apply their log to it directly).
  Result<std::shared_ptr<Collection>> LocalCollection(std::string_view name) const;
  // Restores a snapshot directory (Collection::Snapshot) as local collection `name`
  // (AlreadyExists when it is taken): a cluster replica installed from a peer's snapshot.
  Status RestoreLocal(const std::string& snapshot_dir, const std::string& name) {
    return RestoreSnapshot(snapshot_dir, name);
  }
  // The server's data directory (the database is in it; so are snapshots and transfers).
  const std::string& data_dir() const { return data_dir_; }

  // Appends Prometheus gauges per collection: points and index memory.
  void RenderMetrics(std::string* out) const;
  // True while the database is open.
  bool ready() const;
  // Checkpoints and closes the database; later requests answer 503.
  Status Close();

 private:
  Reply UpdatePayload(const ApiRequest& req, PayloadUpdate::Op op);
  Result<std::vector<Record>> ParseUpsertBody(std::string_view body, const CollectionSpec& spec) const;
  // Qdrant's points selector: 'points' (ids) or 'filter' (not empty: `empty_filter` says why),
  // exactly one.
  Status ParsePointSelector(const Json& body, std::vector<PointId>* ids, std::string* filter,
                            std::string_view empty_filter) const;
  friend struct ApiTestPeer;  // api_test.cc: whether the fast path took a body

  // One search as parsed from a request body.
  struct ParsedSearch {
    std::string vector;  // resolved vector name
    std::vector<float> query;
    size_t limit = 10;
    size_t offset = 0;
    int ef = 0;
    int rerank = 0;     // params.quantization.oversampling x limit; 0 = the index default
    int nprobe = 0;     // params.nprobe (IVF indexes; a Fathom extension)
    int upper_ef = 0;   // params.upper_ef (HNSW level-1 beam; a Fathom extension)
    int checks = 0;     // params.checks (points a KDForest/BallTree examines; a Fathom extension)
    bool exact = false;  // params.exact
    std::string filter;
    bool with_payload = false;
    // with_payload as a list of fields (Qdrant's include form) or {"exclude": [...]}.
    std::vector<std::string> payload_include, payload_exclude;
    bool with_vector = false;
    Metric metric = Metric::kL2;
    // score_threshold: hits scoring worse are dropped (below it for Cosine and Dot, above it
    // for Euclid, whose score is the distance).
    std::optional<double> score_threshold;
  };

  Result<std::shared_ptr<Collection>> Find(std::string_view name) const;  // caller holds db_mutex_
  Result<ParsedSearch> ParseSearch(const Json& search, const CollectionSpec& spec,
                                   std::string_view what) const;
  // The simdjson fast path (search_parse.cc): true with `out` filled (one entry for a single
  // search) when `body` is well-formed and valid; false, with nothing to report, for anything
  // else, which the caller then parses with ParseBody and ParseSearch for the precise error.
  bool FastParseSearches(std::string_view body, const CollectionSpec& spec, bool batch,
                         std::vector<ParsedSearch>* out) const;
  struct FastSearchReader;
  // The checks ParseSearch and the fast path share, in ParseSearch's order.
  // Names the collection's only vector unless `named` (out->vector set), checks out->query's
  // dimension against it and sets out->metric.
  Status ResolveSearchVector(const CollectionSpec& spec, std::string_view what, bool named,
                             ParsedSearch* out) const;
  Status CheckSearchLimit(uint64_t limit, uint64_t offset, std::string_view what) const;
  Status CheckSearchEf(uint64_t ef, std::string_view what) const;
  // Executing parsed searches and writing the answer, whichever path parsed them.
  Reply RunSearch(Collection* c, ParsedSearch s);
  Result<std::string> SearchHits(Collection* c, ParsedSearch s);
  // A search's or a query stage's hits, best first, with the shape that formats them (offset,
  // limit, score_threshold, payload and vector selection, the metric their scores are in).
  struct QueryHits {
    ParsedSearch shape;
    std::vector<ScoredPoint> hits;
  };
  Result<std::vector<ScoredPoint>> SearchPoints(Collection* c, const ParsedSearch& s);
  Result<std::string> RunQuery(Collection* c, const Json& body, std::string_view what);
  // One universal query (or prefetch) body: `inherited` is the filter of the queries above it
  // (JSON, text or null), ANDed with the body's own; `depth` counts the prefetch levels above.
  Result<QueryHits> QueryPoints(Collection* c, const Json& body, std::string_view what, const Json& inherited,
                                int depth);
  // The main query of a body with `prefetch`, applied to what its prefetches found: a fusion
  // of their ranked lists, or their union re-scored by a vector or a point's vector.
  Result<QueryHits> QueryOverPrefetch(Collection* c, const Json& body, std::string_view what, const Json& filter,
                                      int depth);
  // One request: `run` on the body, its answer between `before` and `after`.
  Reply RunOne(const ApiRequest& req, std::string_view what,
               Result<std::string> (Api::*run)(Collection*, const Json&, std::string_view), std::string_view before,
               std::string_view after);
  // A batch request: `run` for each of body.searches, the answers (each between `before` and
  // `after`) in a JSON array; 408 once the deadline passes.
  Reply RunEach(const ApiRequest& req, std::string_view kind,
                Result<std::string> (Api::*run)(Collection*, const Json&, std::string_view), std::string_view before,
                std::string_view after);
  Reply RunSearchBatch(Collection* c, std::vector<ParsedSearch> parsed,
                       std::chrono::steady_clock::time_point deadline);
  // The "searches" array of a batch body (search or recommend), within limits_.max_batch.
  Result<const Json*> BatchSearches(const Json& body, std::string_view kind) const;
  // One recommend request body -> its hits as JSON (Recommend and RecommendBatch).
  Result<std::string> RunRecommend(Collection* c, const Json& body, std::string_view what);
  Result<QueryHits> RecommendPoints(Collection* c, const Json& body, std::string_view what);
  Status RestoreSnapshot(const std::string& snapshot_dir, const std::string& name);
  std::string SnapshotDir(std::string_view collection) const;
  // Where a snapshot's archive is kept (SnapshotArchive) and where recoveries unpack (Incoming).
  std::string SnapshotArchive(std::string_view collection, std::string_view snapshot) const;
  std::string IncomingDir() const;
  // The directory of `snapshot` of `collection` (both names checked), or NotFound.
  Result<std::string> ExistingSnapshot(const std::string& collection, const std::string& snapshot) const;
  // Recovers `target` from a Qdrant `location`: http:// (downloaded) or file:// (an archive or
  // a snapshot directory under this server's snapshot directories).
  Status RecoverFromLocation(const std::string& location, const std::string& api_key, const std::string& target,
                             const Restore& restore);

  const std::string data_dir_;
  const ApiLimits limits_;
  mutable std::shared_mutex db_mutex_;
  std::unique_ptr<Database> db_;  // null once closed
  std::mutex snapshot_mutex_;      // serialises choosing snapshot names
  SearchSlots search_slots_;       // limits_.max_concurrent_searches
  // Qdrant's operation_id in write answers: increasing within this server process.
  std::atomic<uint64_t> next_operation_id_{1};
};

}  // namespace fathom::server
