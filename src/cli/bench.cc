// `fathom bench`: search latency, throughput and recall of a stored collection, per ef.
//
// Queries come from a file or are sampled from the collection itself. Recall is measured against
// a ground-truth file when one is given (ids = the integer point ids), otherwise against an exact
// brute-force search per query (SearchRequest::exact: every allowed point, no graph); the header
// says which, because a number printed without its reference misleads.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/import.h"
#include "cli/output.h"

namespace fathom::cli {
namespace {

// The reference search's beam: wide enough that HNSW is near-exact on collections of millions.
// Untimed queries first, so page faults and cold caches do not land in the first ef's p99.
constexpr size_t kWarmupQueries = 50;

struct Queries {
  std::vector<float> data;  // n * dim
  size_t n = 0;
  std::string source;
};

// Stored points used as queries. There is no scan API, so points are found two ways: first by
// guessing integer ids in [0, count) (what `import` assigns by default), then by searching with
// random probes near points already found (a walk over the data that reaches any distribution,
// unlike probes drawn around the origin).
Result<Queries> SampleQueries(const Collection& c, const VectorSpec& target, size_t wanted,
                              std::mt19937_64& rng) {
  const size_t n = c.Count();
  wanted = std::min(wanted, n);
  std::vector<std::vector<float>> found;
  std::set<PointId> seen;
  auto take = [&](const PointId& id, const std::map<std::string, std::vector<float>>& vectors) {
    auto it = vectors.find(target.name);
    if (it == vectors.end() || it->second.size() != target.dim) return;
    if (seen.insert(id).second) found.push_back(it->second);
  };
  {
    std::vector<PointId> guesses;
    std::uniform_int_distribution<uint64_t> pick(0, n - 1);
    std::set<uint64_t> distinct;
    for (size_t tries = 0; distinct.size() < std::min(n, 2 * wanted) && tries < 8 * wanted;
         ++tries) {
      distinct.insert(pick(rng));
    }
    // in_place_type rather than push_back(id): GCC 12 warns (falsely) that a temporary variant's
    // string member may be used uninitialised.
    guesses.reserve(distinct.size());
    for (uint64_t id : distinct) guesses.emplace_back(std::in_place_type<uint64_t>, id);
    FATHOM_ASSIGN_OR_RETURN(auto records, c.Get(guesses, /*with_vectors=*/true));
    for (const auto& r : records) {
      if (r && found.size() < wanted) take(r->id, r->vectors);
    }
  }
  std::normal_distribution<float> gauss(0, 1);
  const size_t probe_k = std::min<size_t>(n, 64);
  for (size_t probes = 0; found.size() < wanted && probes < 4 * wanted / probe_k + 16; ++probes) {
    // Spread of the points found so far (1 when none yet): the probe noise follows the data scale.
    float sigma = 1;
    if (found.size() >= 2) {
      double sum = 0, sum2 = 0;
      for (const auto& v : found) {
        for (float x : v) sum += x, sum2 += double(x) * x;
      }
      double count = double(found.size()) * target.dim;
      sigma = static_cast<float>(
          std::sqrt(std::max(0.0, sum2 / count - (sum / count) * (sum / count))));
      if (!(sigma > 0)) sigma = 1;
    }
    SearchRequest request;
    request.vector = target.name;
    request.queries.resize(target.dim);
    const std::vector<float>* base =
        found.empty() ? nullptr
                      : &found[std::uniform_int_distribution<size_t>(0, found.size() - 1)(rng)];
    for (size_t d = 0; d < target.dim; ++d) {
      request.queries[d] = (base ? (*base)[d] : 0.0f) + sigma * gauss(rng);
    }
    request.k = probe_k;
    request.ef = static_cast<int>(std::max<size_t>(probe_k, 128));
    request.with_payload = false;
    request.with_vectors = true;
    FATHOM_ASSIGN_OR_RETURN(auto results, c.Search(request));
    for (const auto& hits : results) {
      for (const ScoredPoint& p : hits) {
        if (found.size() < wanted) take(p.id, p.vectors);
      }
    }
  }
  if (found.empty()) {
    return Status::FailedPrecondition("could not sample query points from collection '" +
                                      c.spec().name + "': pass --queries FILE");
  }
  std::shuffle(found.begin(), found.end(), rng);
  Queries q;
  q.n = found.size();
  for (const auto& v : found) q.data.insert(q.data.end(), v.begin(), v.end());
  q.source = std::to_string(q.n) + " points sampled from the collection";
  return q;
}

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  size_t index = static_cast<size_t>(std::ceil(p * static_cast<double>(values.size())));
  return values[std::min(values.size() - 1, index == 0 ? 0 : index - 1)];
}

}  // namespace

Status RunBench(const Context& ctx, const BenchOptions& options) {
  if (options.k == 0) return Status::InvalidArgument("-k must be at least 1");
  if (options.num_queries == 0) return Status::InvalidArgument("--num-queries must be at least 1");
  if (options.efs.empty()) return Status::InvalidArgument("--ef needs at least one value");
  for (int ef : options.efs) {
    if (ef < 0) return Status::InvalidArgument("--ef values must be >= 0 (0 = index default)");
  }
  FATHOM_ASSIGN_OR_RETURN(auto db, OpenDatabase(ctx, /*create=*/false));
  FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<Collection> c, db->GetCollection(options.name));
  FATHOM_ASSIGN_OR_RETURN(const VectorSpec* target, ResolveVector(c->spec(), options.using_vector));
  const size_t dim = target->dim;
  if (c->Count() == 0) {
    return Status::FailedPrecondition("collection '" + options.name +
                                      "' is empty: import points before benchmarking it");
  }

  std::mt19937_64 rng(options.seed);
  Queries queries;
  if (!options.queries_file.empty()) {
    FATHOM_ASSIGN_OR_RETURN(Matrix m, ReadInputVectors(options.queries_file, options.num_queries));
    if (m.cols != dim) {
      return Status::InvalidArgument("'" + options.queries_file + "' has vectors of " +
                                     std::to_string(m.cols) + " dimensions, collection '" +
                                     options.name + "' expects " + std::to_string(dim));
    }
    if (m.rows == 0) return Status::InvalidArgument("'" + options.queries_file + "' has no rows");
    queries.n = m.rows;
    queries.data = std::move(m.data);
    queries.source = std::to_string(queries.n) + " queries from '" + options.queries_file + "'";
  } else {
    FATHOM_ASSIGN_OR_RETURN(queries, SampleQueries(*c, *target, options.num_queries, rng));
  }

  SearchRequest request;
  request.vector = target->name;
  request.k = options.k;
  request.filter = options.filter;
  request.with_payload = false;

  // Reference neighbours per query, for recall.
  std::vector<std::vector<PointId>> truth(queries.n);
  std::string reference;
  if (!options.ground_truth_file.empty()) {
    FATHOM_ASSIGN_OR_RETURN(IntMatrix gt, ReadInputIds(options.ground_truth_file, queries.n));
    if (gt.rows < queries.n) {
      return Status::InvalidArgument("'" + options.ground_truth_file + "' has " +
                                     std::to_string(gt.rows) + " rows, fewer than the " +
                                     std::to_string(queries.n) + " queries");
    }
    for (size_t i = 0; i < queries.n; ++i) {
      for (size_t j = 0; j < gt.cols && j < options.k; ++j) {
        if (gt.row(i)[j] >= 0) {
          truth[i].emplace_back(std::in_place_type<uint64_t>, static_cast<uint64_t>(gt.row(i)[j]));
        }
      }
    }
    reference = "ground truth '" + options.ground_truth_file + "'";
  } else {
    // Brute force over every (allowed) point: independent of the graph being measured.
    SearchRequest ref = request;
    ref.queries = queries.data;
    ref.exact = true;
    FATHOM_ASSIGN_OR_RETURN(auto results, c->Search(ref));
    for (size_t i = 0; i < queries.n && i < results.size(); ++i) {
      for (const ScoredPoint& p : results[i]) truth[i].push_back(p.id);
    }
    reference = "exact brute-force search";
  }

  *ctx.out << "collection '" << options.name << "': " << c->Count() << " points, "
           << (target->name.empty() ? "" : "vector '" + target->name + "' ") << "dim " << dim << " "
           << MetricName(target->metric) << " " << target->index << "\n"
           << "queries: " << queries.source << "; k=" << options.k
           << (options.filter.empty() ? "" : "; filter: " + options.filter) << "\n"
           << "recall@" << options.k << " against " << reference << "\n";
  ctx.out->flush();

  request.queries.resize(dim);
  auto run_query = [&](size_t i, int ef) -> Result<std::vector<ScoredPoint>> {
    std::copy_n(queries.data.begin() + static_cast<ptrdiff_t>(i * dim), dim,
                request.queries.begin());
    request.ef = ef;
    FATHOM_ASSIGN_OR_RETURN(auto results, c->Search(request));
    if (results.empty()) return std::vector<ScoredPoint>{};
    return std::move(results[0]);
  };
  for (size_t i = 0; i < std::min(queries.n, kWarmupQueries); ++i) {
    FATHOM_ASSIGN_OR_RETURN(auto ignored, run_query(i, options.efs.front()));
    (void)ignored;
  }

  std::vector<std::vector<std::string>> rows;
  for (int ef : options.efs) {
    std::vector<double> latencies_ms;
    latencies_ms.reserve(queries.n);
    size_t hits = 0, expected = 0;
    double total = 0;
    for (size_t i = 0; i < queries.n; ++i) {
      auto start = std::chrono::steady_clock::now();
      FATHOM_ASSIGN_OR_RETURN(auto found, run_query(i, ef));
      double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      total += seconds;
      latencies_ms.push_back(seconds * 1e3);
      std::set<PointId> want(truth[i].begin(), truth[i].end());
      expected += want.size();
      for (const ScoredPoint& p : found) hits += want.count(p.id);
    }
    char qps[32], p50[32], p99[32], recall[32];
    std::snprintf(qps, sizeof(qps), "%.0f", total > 0 ? queries.n / total : 0.0);
    std::snprintf(p50, sizeof(p50), "%.3f", Percentile(latencies_ms, 0.50));
    std::snprintf(p99, sizeof(p99), "%.3f", Percentile(latencies_ms, 0.99));
    // No reference neighbours at all (a filter nothing passes): there is no recall to report.
    if (expected > 0) {
      std::snprintf(recall, sizeof(recall), "%.4f", double(hits) / expected);
    } else {
      std::snprintf(recall, sizeof(recall), "n/a");
    }
    rows.push_back({ef == 0 ? "default" : std::to_string(ef), qps, p50, p99, recall});
  }
  PrintTable(*ctx.out, {"ef", "QPS", "p50 ms", "p99 ms", "recall@" + std::to_string(options.k)},
             rows, {true, true, true, true, true});
  return db->Close();
}

}  // namespace fathom::cli
