// fathom: the command-line tool over a Fathom database directory.
//
//   fathom [--data DIR] create NAME --dim 128 [--metric cosine] [--index HNSW32] [--field
//   label:integer] fathom import NAME points.jsonl | vectors.npy | base.fvecs fathom search NAME
//   --id 42 -k 5 --filter 'label = 3' fathom --help, fathom SUBCOMMAND --help
//
// Exit status: 0 success; 1 usage error or invalid input; 2 something named does not exist;
// 3 any other failure (I/O, corruption, internal). Every error is one "error: ..." line on stderr.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "cli/demo.h"
#include "cluster/node.h"
#include "server/serve_flags.h"
#include "server/server.h"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <iostream>
#include <string>

#include "cli/args.h"
#include "cli/commands.h"

namespace fathom::cli {
namespace {

constexpr const char* kIdHelp =
    "ids: all digits is an integer id, anything else a string id (--string-id forces strings)";

// Options every subcommand takes. Registered on each subcommand rather than only on the root so
// that `fathom search x --data d` and `fathom --data d search x` both work and --help shows them.
// Only the root reads FATHOM_DATA: were every subcommand to read it too, the environment would
// override a --data given before the subcommand.
void AddCommonOptions(CLI::App* app, Context* ctx, std::string* durability, bool* verbose) {
  auto* data =
      app->add_option("--data", ctx->data_dir, "database directory")->capture_default_str();
  if (app->get_parent() == nullptr) data->envname("FATHOM_DATA");
  app->add_option("--durability", *durability,
                  "fsync: every write on disk before it returns; buffered: survives a process "
                  "crash, not a power loss, and imports ~10x faster")
      ->check(CLI::IsMember({"fsync", "buffered"}))
      ->capture_default_str();
  app->add_flag("-v,--verbose", *verbose, "log the library's progress messages to stderr");
}

// The library logs through spdlog's default logger, which writes to stdout; stdout is the
// command's result (a count, a table, JSON) and must stay clean for scripts, so logs go to
// stderr, and only warnings unless --verbose.
void RouteLogsToStderr() {
  auto logger = spdlog::stderr_color_mt("fathom");
  logger->set_pattern("%^%l%$: %v");
  spdlog::set_default_logger(std::move(logger));
  spdlog::set_level(spdlog::level::warn);
}

int Run(int argc, char** argv) {
  Context ctx;
  ctx.out = &std::cout;
  ctx.progress = true;
  std::string durability = "fsync";
  bool verbose = false;
  RouteLogsToStderr();

  CLI::App app{"fathom: a vector database on a directory"};
  app.name("fathom");
  app.require_subcommand(1);
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return "error: " + std::string(e.what()) + " (run with --help for usage)\n";
  });
  app.footer(
      "Exit status: 0 ok, 1 usage or invalid input, 2 not found, 3 other failure.\n"
      "FATHOM_DATA sets the default --data.");
  AddCommonOptions(&app, &ctx, &durability, &verbose);

  // create
  CreateOptions create;
  auto* create_cmd = app.add_subcommand("create", "create a collection");
  create_cmd->add_option("name", create.name, "collection name (letters, digits, _ - .)")
      ->required();
  auto* dim_opt = create_cmd->add_option("--dim", create.dim, "dimension of the (unnamed) vector")
                      ->check(CLI::PositiveNumber);
  create_cmd->add_option("--metric", create.metric, "l2, ip, cosine or l1 (Manhattan: Flat or float32 HNSW)")
      ->capture_default_str();
  create_cmd
      ->add_option("--index", create.index, "index factory string: Flat, HNSW32, HNSW32,SQ8 ...")
      ->capture_default_str();
  create_cmd
      ->add_option("--vector", create.vectors,
                   "named vector NAME:DIM[:METRIC[:INDEX]] (repeat; instead of --dim)")
      ->excludes(dim_opt);
  create_cmd->add_option("--field", create.fields,
                         "indexed payload field NAME:TYPE, TYPE one of "
                         "keyword integer float bool (repeat)");
  create_cmd->add_flag("--on-disk", create.on_disk,
                       "keep float vectors on disk and only the index's codes in RAM (needs an "
                       "index such as HNSW32,SQ8 with l2 or cosine)");
  create_cmd->add_flag("--on-disk-payload", create.on_disk_payload,
                       "keep payloads only in the record store (no RAM cache)");
  create_cmd->add_option("--metadata", create.metadata,
                         "a JSON object kept with the collection, e.g. which model made the vectors: "
                         "'{\"model\": {\"name\": \"resnet50\", \"version\": \"2\"}}'");
  AddCommonOptions(create_cmd, &ctx, &durability, &verbose);

  // drop
  std::string drop_name;
  auto* drop_cmd = app.add_subcommand("drop", "delete a collection and all its points");
  drop_cmd->add_option("name", drop_name, "collection name")->required();
  AddCommonOptions(drop_cmd, &ctx, &durability, &verbose);

  // repair
  auto* repair_cmd = app.add_subcommand(
      "repair", "salvage a database that no longer opens (corrupt store): keep what can be read, "
                "rebuild the indexes, report what was lost");
  AddCommonOptions(repair_cmd, &ctx, &durability, &verbose);

  // list
  bool list_json = false;
  auto* list_cmd = app.add_subcommand("list", "list collections with their sizes and vectors");
  list_cmd->add_flag("--json", list_json, "print JSON");
  AddCommonOptions(list_cmd, &ctx, &durability, &verbose);

  // info
  std::string info_name;
  bool info_json = false;
  auto* info_cmd = app.add_subcommand("info", "show a collection's spec, point count and memory");
  info_cmd->add_option("name", info_name, "collection name")->required();
  info_cmd->add_flag("--json", info_json, "print JSON");
  AddCommonOptions(info_cmd, &ctx, &durability, &verbose);

  // import
  std::string import_name;
  ImportOptions import;
  bool import_quiet = false;
  auto* import_cmd = app.add_subcommand(
      "import", "upsert points from .jsonl/.ndjson (- = stdin), .fvecs, .bvecs, .npy or IDX files");
  import_cmd->add_option("name", import_name, "collection name")->required();
  import_cmd->add_option("file", import.path, "file to import")->required();
  import_cmd->add_option("--batch", import.batch, "points per atomic write")->capture_default_str();
  import_cmd
      ->add_option("--id-start", import.id_start,
                   "id of the first row (matrix files) or of id-less JSONL lines")
      ->capture_default_str();
  import_cmd->add_option("--using", import.using_vector,
                         "named vector that matrix rows and JSONL \"vector\" fill");
  import_cmd->add_flag("--quiet,-q", import_quiet, "no progress report");
  AddCommonOptions(import_cmd, &ctx, &durability, &verbose);

  // search
  SearchOptions search;
  auto* search_cmd = app.add_subcommand("search", "find the nearest points to a query");
  search_cmd->add_option("name", search.name, "collection name")->required();
  auto* vf_opt = search_cmd->add_option("--vector-file", search.vector_file,
                                        "query from a row of a .fvecs/.npy/... file");
  search_cmd->add_option("--row", search.row, "row of --vector-file")
      ->capture_default_str()
      ->needs(vf_opt);
  auto* id_opt = search_cmd->add_option("--id", search.id,
                                        "more like this: query with the vector of point ID");
  auto* vec_opt = search_cmd->add_option("--vector", search.vector, "query as \"0.1,0.2,...\"");
  vf_opt->excludes(id_opt)->excludes(vec_opt);
  id_opt->excludes(vec_opt);
  search_cmd->add_flag("--string-id", search.string_id, "treat --id as a string id");
  search_cmd->add_option("-k", search.k, "number of results")->capture_default_str();
  search_cmd->add_option("--ef", search.ef, "HNSW search beam (0 = index default)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000000));
  search_cmd->add_option("--rerank", search.rerank,
                         "candidates re-ranked with exact distances (SQ8/PQ/FP16 codes; 0 = 2k, 4k for PQ)")
      ->check(CLI::Range(0, 1000000));
  search_cmd->add_option("--nprobe", search.nprobe, "IVF lists scanned (0 = index default, 16)")
      ->check(CLI::Range(0, 1000000));
  search_cmd->add_option("--upper-ef", search.upper_ef,
                         "HNSW beam on level 1 (0 = greedy descent); for many separated clusters")
      ->check(CLI::Range(0, 1000000));
  search_cmd->add_option("--checks", search.checks,
                         "points a KDForest or BallTree search examines (0 = exact)")
      ->check(CLI::Range(0, 1 << 30));
  search_cmd->add_option("--filter", search.filter,
                         "payload filter, text form (label = 3 AND price < 50) or JSON");
  search_cmd->add_option("--using", search.using_vector, "which named vector to search");
  search_cmd->add_flag("--with-vectors", search.with_vectors, "also return the stored vectors");
  search_cmd->add_flag("--no-payload", search.no_payload, "do not return payloads");
  search_cmd->add_flag("--json", search.json, "print JSON");
  AddCommonOptions(search_cmd, &ctx, &durability, &verbose);

  // recommend
  RecommendOptions recommend;
  auto* recommend_cmd = app.add_subcommand(
      "recommend", "more like these points, unlike those (Qdrant's recommend; the examples are not returned)");
  recommend_cmd->add_option("name", recommend.name, "collection name")->required();
  recommend_cmd->add_option("--positive", recommend.positive, "ids of points to be like (comma-separated)")
      ->required()
      ->delimiter(',');
  recommend_cmd->add_option("--negative", recommend.negative, "ids of points to be unlike")->delimiter(',');
  recommend_cmd->add_flag("--string-id", recommend.string_id, "treat every id as a string id");
  recommend_cmd->add_option("--strategy", recommend.strategy,
                            "average_vector: one search for 2 mean(positive) - mean(negative); best_score: "
                            "candidates scored against every example")
      ->capture_default_str();
  recommend_cmd->add_option("-k", recommend.k, "number of results")->capture_default_str();
  recommend_cmd->add_option("--ef", recommend.ef, "HNSW search beam (0 = index default)")
      ->check(CLI::Range(0, 1000000));
  recommend_cmd->add_option("--filter", recommend.filter, "payload filter, text form or JSON");
  recommend_cmd->add_option("--using", recommend.using_vector, "which named vector");
  recommend_cmd->add_flag("--with-vectors", recommend.with_vectors, "also return the stored vectors");
  recommend_cmd->add_flag("--no-payload", recommend.no_payload, "do not return payloads");
  recommend_cmd->add_flag("--json", recommend.json, "print JSON");
  AddCommonOptions(recommend_cmd, &ctx, &durability, &verbose);

  // get
  PointsOptions get;
  auto* get_cmd = app.add_subcommand("get", "print points by id");
  get_cmd->add_option("name", get.name, "collection name")->required();
  get_cmd->add_option("ids", get.ids, kIdHelp)->required();
  get_cmd->add_flag("--string-id", get.string_id, "treat every id as a string id");
  get_cmd->add_flag("--json", get.json, "print JSON (full vectors)");
  AddCommonOptions(get_cmd, &ctx, &durability, &verbose);

  // delete
  PointsOptions del;
  auto* delete_cmd = app.add_subcommand("delete", "delete points by id or by filter");
  delete_cmd->add_option("name", del.name, "collection name")->required();
  auto* del_ids = delete_cmd->add_option("ids", del.ids, kIdHelp);
  delete_cmd->add_option("--filter", del.filter, "delete every point the filter matches")
      ->excludes(del_ids);
  delete_cmd->add_flag("--string-id", del.string_id, "treat every id as a string id");
  AddCommonOptions(delete_cmd, &ctx, &durability, &verbose);

  // payload
  PayloadOptions payload;
  auto* payload_cmd = app.add_subcommand(
      "payload", "change points' payloads, vectors untouched: --set (merge keys), --overwrite, --delete-keys or --clear");
  payload_cmd->add_option("name", payload.name, "collection name")->required();
  auto* payload_ids = payload_cmd->add_option("ids", payload.ids, kIdHelp);
  payload_cmd->add_option("--filter", payload.filter, "change every point the filter matches")->excludes(payload_ids);
  payload_cmd->add_flag("--string-id", payload.string_id, "treat every id as a string id");
  payload_cmd->add_option("--set", payload.set, "JSON object whose keys are merged into each payload");
  payload_cmd->add_option("--overwrite", payload.overwrite, "JSON object that replaces each payload");
  payload_cmd->add_option("--delete-keys", payload.delete_keys, "top-level keys to remove (comma-separated)")
      ->delimiter(',');
  payload_cmd->add_flag("--clear", payload.clear, "empty each payload");
  AddCommonOptions(payload_cmd, &ctx, &durability, &verbose);

  // count
  std::string count_name, count_filter;
  auto* count_cmd = app.add_subcommand("count", "count points, optionally those matching a filter");
  count_cmd->add_option("name", count_name, "collection name")->required();
  count_cmd->add_option("--filter", count_filter, "count only points the filter matches");
  AddCommonOptions(count_cmd, &ctx, &durability, &verbose);

  // index
  std::string index_name;
  std::vector<std::string> index_add, index_drop;
  auto* index_cmd = app.add_subcommand(
      "index", "add or drop payload indexes on a collection that holds points (--add NAME:TYPE, --drop NAME)");
  index_cmd->add_option("name", index_name, "collection name")->required();
  index_cmd->add_option("--add", index_add,
                        "index a payload field: NAME:TYPE, TYPE keyword, integer, float, bool or datetime "
                        "(repeatable; comma-separated)")
      ->delimiter(',');
  index_cmd->add_option("--drop", index_drop, "drop a payload field's index (repeatable; comma-separated)")
      ->delimiter(',');
  AddCommonOptions(index_cmd, &ctx, &durability, &verbose);

  // tune
  TuneOptions tune;
  auto* tune_cmd = app.add_subcommand(
      "tune", "find the cheapest ef / nprobe / checks that reaches a target recall and make it the default");
  tune_cmd->add_option("name", tune.name, "collection name")->required();
  tune_cmd->add_option("--target-recall", tune.target_recall, "recall@k to reach")
      ->check(CLI::Range(0.001, 1.0))
      ->capture_default_str();
  tune_cmd->add_option("-k", tune.k, "neighbours per query")->check(CLI::Range(1, 1000))->capture_default_str();
  tune_cmd->add_option("--sample", tune.sample, "queries made from the collection's own points")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  tune_cmd->add_option("--vector", tune.vector, "which named vector");
  tune_cmd->add_flag("--json", tune.json, "print JSON");
  tune_cmd->add_flag("--reset", tune.reset, "forget the tuned default (searches use the index's own again)");
  tune_cmd->add_option("--values", tune.values, "settings to measure instead of the built-in ladder, e.g. 32,64")
      ->delimiter(',')
      ->check(CLI::PositiveNumber);
  tune_cmd->add_flag("--dry-run", tune.dry_run, "measure and print; keep the current default");
  AddCommonOptions(tune_cmd, &ctx, &durability, &verbose);

  // snapshot
  std::string snapshot_name, snapshot_dir;
  auto* snapshot_cmd =
      app.add_subcommand("snapshot", "write a consistent copy of a collection to a new directory");
  snapshot_cmd->add_option("name", snapshot_name, "collection name")->required();
  snapshot_cmd->add_option("dir", snapshot_dir, "snapshot directory (must not exist)")->required();
  AddCommonOptions(snapshot_cmd, &ctx, &durability, &verbose);

  // restore
  std::string restore_dir, restore_name;
  auto* restore_cmd = app.add_subcommand("restore", "add a collection from a snapshot directory");
  restore_cmd->add_option("snapshot_dir", restore_dir, "directory written by `fathom snapshot`")
      ->required();
  restore_cmd->add_option("--name", restore_name, "restore under this name instead");
  AddCommonOptions(restore_cmd, &ctx, &durability, &verbose);

  // bench
  BenchOptions bench;
  auto* bench_cmd =
      app.add_subcommand("bench", "time searches per ef: QPS, latency p50/p99 and recall");
  bench_cmd->add_option("name", bench.name, "collection name")->required();
  bench_cmd->add_option("--queries", bench.queries_file,
                        "query vectors (.fvecs/.npy/...); default: sample the collection");
  bench_cmd->add_option("--ground-truth", bench.ground_truth_file,
                        "true neighbour ids per query (.ivecs/.npy), for exact recall");
  bench_cmd->add_option("-n,--num-queries", bench.num_queries, "queries to run")
      ->capture_default_str();
  bench_cmd->add_option("-k", bench.k, "neighbours per query")->capture_default_str();
  bench_cmd->add_option("--ef", bench.efs, "ef values to try, e.g. 16,64,256")
      ->delimiter(',')
      ->capture_default_str();
  bench_cmd->add_option("--filter", bench.filter, "payload filter applied to every query");
  bench_cmd->add_option("--using", bench.using_vector, "which named vector to search");
  bench_cmd->add_option("--seed", bench.seed, "random seed for sampling")->capture_default_str();
  AddCommonOptions(bench_cmd, &ctx, &durability, &verbose);

  ServerOptions serve;
  bool serve_demo = false;
  auto* serve_cmd = app.add_subcommand(
      "serve", "run the REST server on the database (Ctrl-C stops it cleanly)");
  server::ServeFlagSeconds serve_seconds;
  server::AddServeFlags(serve_cmd, &serve, &serve_seconds);
  serve_cmd->add_option("--checkpoint-every", ctx.db_options.checkpoint_every,
                        "checkpoint a collection's indexes after this many upserted or deleted points")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  serve_cmd->add_option("--checkpoint-after", ctx.db_options.checkpoint_after_seconds,
                 "also checkpoint a collection with logged writes once its last checkpoint is this many seconds old (0: by count only)")
      ->capture_default_str();
  serve_cmd->add_flag("--demo", serve_demo,
                      "first load Fashion-MNIST into collection 'fashion-mnist' if it is missing");
  std::string cluster_urls;
  cluster::ClusterOptions cluster_options;
  serve_cmd->add_option("--cluster", cluster_urls,
                        "join a cluster through these NATS servers (JetStream on), comma-separated: "
                        "nats://h1:4222,nats://h2:4222 (list every one: streams get min(3, count) replicas)");
  serve_cmd->add_option("--node-id", cluster_options.node_id, "this node's name in the cluster (with --cluster)");
  serve_cmd
      ->add_option("--log-retain", cluster_options.log_retain,
                   "with --cluster: collections created by this node log each shard in streams of this many "
                   "entries, deleting old ones once every live replica has applied them with fsync (a "
                   "replica behind the log installs a peer's snapshot); -1 (the default) keeps every entry. "
                   "Give every node the same value")
      ->capture_default_str();
  int64_t auto_rebalance_seconds = 0;
  serve_cmd
      ->add_option("--auto-rebalance", auto_rebalance_seconds,
                   "with --cluster: move shard replicas without being asked: replace those of a node "
                   "whose heartbeat has been missing this many seconds, and, when no replacement is due, even "
                   "out the replicas per node (a joining node gets its share); the live node with "
                   "the smallest id among those given this option decides; 0 (the default): only "
                   "`fathom cluster rebalance` and the replicas call move them")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();

  auto* cluster_cmd = app.add_subcommand("cluster", "a cluster's state, asked of one of its nodes");
  cluster_cmd->require_subcommand(1);
  auto* cluster_status_cmd =
      cluster_cmd->add_subcommand("status", "nodes, shards, replicas and their lag (GET /cluster)");
  std::string cluster_url = "http://127.0.0.1:6333";
  bool cluster_json = false;
  cluster_status_cmd->add_option("--url", cluster_url, "a node's REST address")->capture_default_str();
  cluster_status_cmd->add_flag("--json", cluster_json, "print the JSON answer");
  auto* cluster_rebalance_cmd = cluster_cmd->add_subcommand(
      "rebalance", "even out the shard replicas over the live nodes, moving one at a time while writes go on");
  bool rebalance_dry_run = false;
  cluster_rebalance_cmd->add_option("--url", cluster_url, "a node's REST address (it runs the moves)")
      ->capture_default_str();
  cluster_rebalance_cmd->add_flag("--dry-run", rebalance_dry_run, "print the moves, make none");
  AddCommonOptions(serve_cmd, &ctx, &durability, &verbose);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    // CLI11's own codes (105, 106, ...) mean nothing to a script; ours say "usage error".
    return code == 0 ? 0 : 1;
  }
  ctx.db_options.durability = durability == "buffered" ? Durability::kBuffered : Durability::kFsync;
  ctx.progress = !import_quiet;
  if (verbose) spdlog::set_level(spdlog::level::info);
  Status status;
  if (*create_cmd) {
    status = RunCreate(ctx, create);
  } else if (*drop_cmd) {
    status = RunDrop(ctx, drop_name);
  } else if (*repair_cmd) {
    status = RunRepair(ctx);
  } else if (*list_cmd) {
    status = RunList(ctx, list_json);
  } else if (*info_cmd) {
    status = RunInfo(ctx, info_name, info_json);
  } else if (*import_cmd) {
    status = RunImport(ctx, import_name, import);
  } else if (*search_cmd) {
    status = RunSearch(ctx, search);
  } else if (*recommend_cmd) {
    status = RunRecommend(ctx, recommend);
  } else if (*get_cmd) {
    status = RunGet(ctx, get);
  } else if (*delete_cmd) {
    status = RunDelete(ctx, del);
  } else if (*payload_cmd) {
    status = RunPayload(ctx, payload);
  } else if (*count_cmd) {
    status = RunCount(ctx, count_name, count_filter);
  } else if (*index_cmd) {
    status = RunIndex(ctx, index_name, index_add, index_drop);
  } else if (*tune_cmd) {
    status = RunTune(ctx, tune);
  } else if (*snapshot_cmd) {
    status = RunSnapshot(ctx, snapshot_name, snapshot_dir);
  } else if (*restore_cmd) {
    status = RunRestore(ctx, restore_dir, restore_name);
  } else if (*bench_cmd) {
    status = RunBench(ctx, bench);
  } else if (*cluster_status_cmd) {
    status = cluster::PrintStatus(cluster_url, cluster_json);
  } else if (*cluster_rebalance_cmd) {
    status = cluster::StartRebalance(cluster_url, rebalance_dry_run);
  } else if (*serve_cmd) {
    spdlog::set_level(verbose ? spdlog::level::debug : spdlog::level::info);
    if (auto_rebalance_seconds > 0 && cluster_urls.empty())
      status = Status::InvalidArgument("--auto-rebalance is for a cluster node: give --cluster nats://... and --node-id");
    if (!cluster_urls.empty() || !cluster_options.node_id.empty()) {
      cluster_options.nats_urls = cluster::SplitUrls(cluster_urls);
      if (cluster_options.nats_urls.empty()) status = Status::InvalidArgument("--node-id needs --cluster nats://...");
      if (status.ok()) status = cluster::ValidateNodeId(cluster_options.node_id);
      if (status.ok() && serve_demo) status = Status::InvalidArgument("--demo is for a single node, not with --cluster");
      cluster_options.durable_applies = ctx.db_options.durability == Durability::kFsync;
      cluster_options.auto_rebalance = std::chrono::seconds(auto_rebalance_seconds);
      serve.extension = [cluster_options](server::Api* api) { return cluster::StartNode(api, cluster_options); };
    }
    if (status.ok() && serve_demo) status = LoadDemo(ctx.data_dir);
    if (status.ok()) {
      serve.data_dir = ctx.data_dir;
      serve.database = ctx.db_options;
      server::ApplyServeFlags(serve_seconds, &serve);
      status = RunServer(serve);
    }
  }
  if (!status.ok()) {
    std::cout.flush();
    std::fprintf(stderr, "error: %s\n", status.message().c_str());
    return ExitCodeFor(status);
  }
  std::cout.flush();
  if (!std::cout) {
    std::fprintf(stderr, "error: could not write the output\n");
    return 3;
  }
  return 0;
}

}  // namespace
}  // namespace fathom::cli

int main(int argc, char** argv) {
  try {
    return fathom::cli::Run(argc, argv);
  } catch (const std::exception& e) {
    // Library code reports errors by Status; reaching here means a bug or exhausted memory, and
    // it still deserves one clean line rather than a core dump.
    std::fprintf(stderr, "error: internal error: %s\n", e.what());
    return 3;
  }
}
