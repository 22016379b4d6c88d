// The `fathom` subcommands, one function each, over the public Database/Collection API.
//
// main.cc parses the command line into these option structs (CLI11) and maps a returned Status to
// "error: <message>" and an exit code (args.h, ExitCodeFor). The functions themselves never print
// errors and never exit: they write their results to Context::out and return a Status, so they
// can be driven from a test as well. Each call opens the database, works, and closes it (Close
// checkpoints), so one process holds the directory only for one command.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "cli/import.h"
#include "fathom/database.h"
#include "fathom/status.h"

namespace fathom::cli {

struct Context {
  std::string data_dir = "./fathom-data";
  DatabaseOptions db_options;
  std::ostream* out = nullptr;  // results (stdout); progress and errors go to stderr
  bool progress = true;
};

struct CreateOptions {
  std::string name;
  size_t dim = 0;  // --dim; 0 when --vector is used instead
  std::string metric = "l2";
  std::string index = "HNSW32";
  std::vector<std::string> vectors;  // --vector NAME:DIM[:METRIC[:INDEX]]
  std::vector<std::string> fields;   // --field NAME:TYPE
  bool on_disk = false;              // --on-disk: every vector's floats on disk
  bool on_disk_payload = false;      // --on-disk-payload
  std::string metadata;              // --metadata: a JSON object, e.g. the model's name
};

struct SearchOptions {
  std::string name;
  std::string vector_file;  // query source 1: a row of a vector file
  size_t row = 0;
  std::string id;      // query source 2: the vector of a stored point ("more like this")
  std::string vector;  // query source 3: "0.1,0.2,..."
  bool string_id = false;
  size_t k = 10;
  int ef = 0;
  int rerank = 0;    // candidates re-ranked exactly (codes); 0 = the index default
  int nprobe = 0;    // IVF lists scanned; 0 = the index default
  int upper_ef = 0;  // HNSW level-1 beam; 0 = greedy descent
  int checks = 0;    // points a KDForest/BallTree examines; 0 = exact
  std::string filter;
  std::string using_vector;
  bool with_vectors = false;
  bool no_payload = false;
  bool json = false;
};

struct RecommendOptions {
  std::string name;
  std::vector<std::string> positive, negative;  // example point ids
  bool string_id = false;
  std::string strategy = "average_vector";  // or best_score
  size_t k = 10;
  int ef = 0;
  std::string filter;
  std::string using_vector;
  bool with_vectors = false;
  bool no_payload = false;
  bool json = false;
};

struct PointsOptions {  // get and delete
  std::string name;
  std::vector<std::string> ids;
  bool string_id = false;
  std::string filter;  // delete only
  bool json = false;   // get only
};

struct PayloadOptions {  // payload: set, overwrite, delete keys or clear, by ids or filter
  std::string name;
  std::vector<std::string> ids;
  bool string_id = false;
  std::string filter;
  std::string set, overwrite;        // JSON objects
  std::vector<std::string> delete_keys;
  bool clear = false;
};

struct BenchOptions {
  std::string name;
  std::string queries_file;       // empty: sample queries from the collection
  std::string ground_truth_file;  // ivecs/npy of integer ids, row i for query i
  size_t num_queries = 1000;
  size_t k = 10;
  std::vector<int> efs = {16, 32, 64, 128, 256};
  std::string filter;
  std::string using_vector;
  uint64_t seed = 42;
};

// Opens ctx.data_dir. Only `create` (and restore) may create it: every other command refuses a
// missing directory instead of leaving an empty database behind a mistyped --data.
Result<std::unique_ptr<Database>> OpenDatabase(const Context& ctx, bool create);

Status RunCreate(const Context& ctx, const CreateOptions& options);
Status RunDrop(const Context& ctx, const std::string& name);
// Salvages a database that no longer opens and reports what each collection kept.
Status RunRepair(const Context& ctx);
Status RunList(const Context& ctx, bool json);
Status RunInfo(const Context& ctx, const std::string& name, bool json);
Status RunImport(const Context& ctx, const std::string& name, const ImportOptions& options);
Status RunSearch(const Context& ctx, const SearchOptions& options);
// "More like these, unlike those": Qdrant's recommend over stored example points.
Status RunRecommend(const Context& ctx, const RecommendOptions& options);
Status RunGet(const Context& ctx, const PointsOptions& options);
Status RunDelete(const Context& ctx, const PointsOptions& options);
Status RunPayload(const Context& ctx, const PayloadOptions& options);
Status RunCount(const Context& ctx, const std::string& name, const std::string& filter);
// index: Database::CreatePayloadIndex for each NAME:TYPE of `add`, then DropPayloadIndex for
// each of `drop`; prints one line per change.
Status RunIndex(const Context& ctx, const std::string& name, const std::vector<std::string>& add,
                const std::vector<std::string>& drop);

struct TuneOptions {
  std::string name;
  double target_recall = 0.95;
  size_t k = 10;
  size_t sample = 500;
  std::string vector;
  bool json = false;
  bool reset = false;  // forget the tuned default instead (Collection::ResetSearchDefaults)
  std::vector<int> values;  // settings to try instead of the built-in ladder
  bool dry_run = false;     // measure only: the default stays as it is (TuneRequest::store)
};
// Collection::Tune: prints what it measured and the setting it kept.
Status RunTune(const Context& ctx, const TuneOptions& options);
Status RunSnapshot(const Context& ctx, const std::string& name, const std::string& dir);
Status RunRestore(const Context& ctx, const std::string& snapshot_dir, const std::string& new_name);
Status RunBench(const Context& ctx, const BenchOptions& options);

}  // namespace fathom::cli
