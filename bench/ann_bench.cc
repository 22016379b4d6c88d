// ann_bench: Fathom's indexes against hnswlib and Faiss, on the same data, in one process.
//
// Every library builds on the same base vectors with the same number of threads, then answers
// the same queries one at a time on one thread (the latency-bound case where graph indexes
// differ most), sweeping the search beam ef. Each point reports recall@k against exact ground
// truth next to QPS, with build time and memory, so a speed-up can never hide a recall loss.
// The last table gives each curve's QPS relative to hnswlib (M=16) at recall 0.9, 0.95 and 0.99: the
// number Fathom's performance targets are stated in.
//
// Usage: ann_bench [--quick] [--json FILE] [--base FILE --query FILE [--gt FILE]] ...
// (--help lists every option). Progress goes to stderr, results to stdout.
#include <flann/flann.hpp>
#include <faiss/IndexFlat.h>
#include <faiss/IVFlib.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexRefine.h>
#include <faiss/index_factory.h>
#include <malloc.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "fathom/database.h"
#include "fathom/index.h"
#include "fathom/status.h"
#include "hnswlib_runner.h"
#include "simd/distance.h"
#include "util/vector_file.h"

// OpenBLAS's thread pool is process-wide and shared by Fathom's Flat (GEMM) and Faiss's flat
// batch search. It is declared here rather than via cblas.h so the benchmark does not depend on
// which BLAS header variant is installed.
extern "C" void openblas_set_num_threads(int num_threads);

namespace fathom::bench {
namespace {

// Faiss 1.7.3 spells its id type faiss::Index::idx_t (later versions faiss::idx_t).
using FaissId = faiss::Index::idx_t;

constexpr char kFashionMnistDir[] = "/usr/share/datasets/fashion-mnist";
// A returned neighbour counts as a hit when its exact distance is within this (relative)
// margin of the true k-th distance: ties at the k-th place are then hits for every library
// (integer pixels give integer squared distances, so exact ties happen), and ground truth
// computed in float32 by another tool does not penalise an exact answer.
constexpr double kTieTolerance = 1e-6;

// ---------------------------------------------------------------------------------------------
// Options

struct Options {
  std::string base_path;
  std::string query_path;
  std::string gt_path;
  std::string metric_name = "l2";
  size_t nb = SIZE_MAX;
  size_t nq = 2000;
  size_t k = 10;
  std::vector<std::string> fathom = {"Flat", "HNSW16,efC=200", "HNSW32,efC=200",
                                     "HNSW32,SQ8,efC=200"};
  std::vector<size_t> hnswlib_m = {16};
  std::vector<std::string> faiss = {"HNSW32", "Flat"};
  int ef_construction = 200;
  std::vector<int> ef = {10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512};
  std::vector<int> nprobe = {1, 2, 4, 8, 16, 32, 64, 128, 256};
  std::vector<int> checks = {32, 64, 128, 256, 512, 1024, 2048, 4096, 8192};
  std::vector<std::string> flann;  // "kdtree<trees>", "kmeans<branching>" or "autotuned<percent>"
  std::vector<std::string> tuned;  // "factory@target": a collection tuned by Collection::Tune
  int repeats = 3;
  int runs = 1;  // whole builds and sweeps, for the spread between builds
  int build_threads = 2;
  // Exact (Flat) indexes scan everything per query; timing them on a prefix of the queries
  // keeps a full run short without changing what they measure.
  size_t flat_nq = 200;
  int rerank = 0;
  // Kernel paths each Fathom index runs on (empty: the one FATHOM_SIMD or the CPU chose).
  std::vector<simd::Isa> isas;
  std::string json_path;
  bool quick = false;
};

constexpr char kUsage[] = R"(usage: ann_bench [options]

Data (default: Fashion-MNIST from /usr/share/datasets/fashion-mnist, 60k train images as the
base, the first --nq test images as queries, L2):
  --base FILE          base vectors (.fvecs, .bvecs, .npy, IDX -ubyte[.gz])
  --query FILE         query vectors (same formats)
  --gt FILE            ground-truth ids (.ivecs or .npy, >= k columns); computed when absent
  --metric l2|ip|cosine                                              (default l2)
  --nb N               use the first N base vectors                  (default all)
  --nq N               use the first N queries                       (default 2000)
  --k N                neighbours per query, recall@k                (default 10)
  --quick              smoke run: --nb 10000 --nq 200

Indexes (an empty list skips that library):
  --fathom 'F1;F2'     Fathom factory strings, ';'-separated
                       (default 'Flat;HNSW16,efC=200;HNSW32,efC=200;HNSW32,SQ8,efC=200')
  --hnswlib-m 16,32    hnswlib M values                              (default 16)
  --flann 'kdtree4;kmeans32'  FLANN (libflann 1.9): randomized kd-forest of N trees, or
                       hierarchical k-means tree of branching B; searched with --checks;
                       'autotuned90': FLANN's autotuned index for target precision 0.90
                                                                     (default none)
  --tuned 'HNSW32,SQ8@0.9'  a Fathom collection with this index, tuned to the target recall@10
                       by Collection::Tune and searched with its tuned default (the
                       counterpart of FLANN's autotuned index; build time includes tuning)
  --faiss 'HNSW32;Flat'  Faiss indexes: HNSW<M> (IndexHNSWFlat), Flat, or any IVF factory
                       string (index_factory: 'IVF1024,PQ32x4fs,RFlat'; RFlat re-ranks
                       --rerank / k times k candidates, default 4)  (default 'HNSW32;Flat')
  --efc N              efConstruction for hnswlib and Faiss          (default 200)
  --rerank N           SearchParams.rerank for Fathom (0 = its default)
  --isa avx512,avx2    run every Fathom index on each of these kernel paths, in this process
                       (named 'index @path'); default: the path FATHOM_SIMD or the CPU chose

Measurement:
  --ef 10,16,...       search beam sweep for graph indexes
                       (default 10,16,24,32,48,64,96,128,192,256,384,512)
  --nprobe 1,2,4,...   lists-probed sweep for IVF indexes (Fathom and Faiss)
                       (default 1,2,4,8,16,32,64,128,256)
  --checks 32,64,...   points-examined sweep for budgeted trees (Fathom BallTree and KDForest, FLANN)
                       (default 32,64,128,256,512,1024,2048,4096,8192)
  --repeats N          timed passes over the queries; QPS is their median (default 3)
  --runs N             build and sweep every index N times (interleaved) and report the
                       median and range of QPS@recall over the runs (default 1)
  --build-threads N    threads for every library's build             (default 2)
  --flat-nq N          queries timed for exact (Flat) indexes        (default 200)
  --json FILE          also write every point as a JSON array
)";

std::vector<std::string> Split(std::string_view s, char sep) {
  std::vector<std::string> out;
  if (s.empty()) return out;
  size_t start = 0;
  while (true) {
    const size_t end = s.find(sep, start);
    std::string item(
        s.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
    if (!item.empty()) out.push_back(std::move(item));
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return out;
}

Result<long long> ParseInt(const std::string& flag, const std::string& text, long long min_value) {
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno != 0 || v < min_value) {
    return Status::InvalidArgument(flag + " expects an integer >= " + std::to_string(min_value) +
                                   ", got '" + text + "'");
  }
  return v;
}

template <class T>
Result<std::vector<T>> ParseIntList(const std::string& flag, const std::string& text,
                                    long long min_value) {
  std::vector<T> out;
  for (const std::string& item : Split(text, ',')) {
    FATHOM_ASSIGN_OR_RETURN(long long v, ParseInt(flag, item, min_value));
    out.push_back(static_cast<T>(v));
  }
  return out;
}

Result<Options> ParseOptions(int argc, char** argv) {
  Options opt;
  bool nb_set = false, nq_set = false;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (flag == "--quick") {
      opt.quick = true;
      continue;
    }
    if (i + 1 >= argc) return Status::InvalidArgument(flag + " needs a value (see --help)");
    const std::string value = argv[++i];
    if (flag == "--base") {
      opt.base_path = value;
    } else if (flag == "--query") {
      opt.query_path = value;
    } else if (flag == "--gt") {
      opt.gt_path = value;
    } else if (flag == "--metric") {
      opt.metric_name = value;
    } else if (flag == "--nb") {
      FATHOM_ASSIGN_OR_RETURN(long long v, ParseInt(flag, value, 1));
      opt.nb = static_cast<size_t>(v);
      nb_set = true;
    } else if (flag == "--nq") {
      FATHOM_ASSIGN_OR_RETURN(long long v, ParseInt(flag, value, 1));
      opt.nq = static_cast<size_t>(v);
      nq_set = true;
    } else if (flag == "--k") {
      FATHOM_ASSIGN_OR_RETURN(long long v, ParseInt(flag, value, 1));
      opt.k = static_cast<size_t>(v);
    } else if (flag == "--fathom") {
      opt.fathom = Split(value, ';');
    } else if (flag == "--hnswlib-m") {
      FATHOM_ASSIGN_OR_RETURN(opt.hnswlib_m, ParseIntList<size_t>(flag, value, 2));
    } else if (flag == "--faiss") {
      opt.faiss = Split(value, ';');
    } else if (flag == "--efc") {
      FATHOM_ASSIGN_OR_RETURN(long long v, ParseInt(flag, value, 1));
      opt.ef_construction = static_cast<int>(v);
    } else if (flag == "--isa") {
      opt.isas.clear();
      for (const std::string& name : Split(value, ',')) {
        simd::Isa isa;
        if (name == "scalar") {
          isa = simd::Isa::kScalar;
        } else if (name == "avx2") {
          isa = simd::Isa::kAvx2;
        } else if (name == "avx512") {
          isa = simd::Isa::kAvx512;
        } else {
          return Status::InvalidArgument("--isa: unknown kernel path '" + name + "' (expected scalar, avx2 or avx512)");
        }
        if (simd::ForIsa(isa) == nullptr) {
          return Status::InvalidArgument(std::string("--isa: this CPU cannot run the ") + name + " kernels (best: " +
                                         simd::IsaName(simd::BestSupportedIsa()) + ")");
        }
        opt.isas.push_back(isa);
      }
    } else if (flag == "--rerank") {
      FATHOM_ASSIGN_OR_RETURN(long long v, ParseInt(flag, value, 0));
      opt.rerank = static_cast<int>(v);
    } else if (flag == "--ef") {
      FATHOM_ASSIGN_OR_RETURN(opt.ef, ParseIntList<int>(flag, value, 1));
      if (opt.ef.empty()) return Status::InvalidArgument("--ef needs at least one value");
    } else if (flag == "--checks") {
      FATHOM_ASSIGN_OR_RETURN(opt.checks, ParseIntList<int>(flag, value, 1));
      if (opt.checks.empty()) return Status::InvalidArgument("--checks needs at least one value");
    } else if (flag == "--flann") {
      opt.flann = Split(value, ';');
    } else if (flag == "--tuned") {
      opt.tuned = Split(value, ';');
    } else if (flag == "--nprobe") {
      FATHOM_ASSIGN_OR_RETURN(opt.nprobe, ParseIntList<int>(flag, value, 1));
      if (opt.nprobe.empty()) return Status::InvalidArgument("--nprobe needs at least one value");
    } else if (flag == "--repeats") {
      FATHOM_ASSIGN_OR_RETURN(long long v, ParseInt(flag, value, 1));
      opt.repeats = static_cast<int>(v);
    } else if (flag == "--runs") {
      FATHOM_ASSIGN_OR_RETURN(long long v, ParseInt(flag, value, 1));
      opt.runs = static_cast<int>(v);
    } else if (flag == "--build-threads") {
      FATHOM_ASSIGN_OR_RETURN(long long v, ParseInt(flag, value, 1));
      opt.build_threads = static_cast<int>(v);
    } else if (flag == "--flat-nq") {
      FATHOM_ASSIGN_OR_RETURN(long long v, ParseInt(flag, value, 1));
      opt.flat_nq = static_cast<size_t>(v);
    } else if (flag == "--json") {
      opt.json_path = value;
    } else {
      return Status::InvalidArgument("unknown option '" + flag + "' (see --help)");
    }
  }
  if (opt.base_path.empty() != opt.query_path.empty()) {
    return Status::InvalidArgument("--base and --query go together");
  }
  if (opt.quick) {
    if (!nb_set) opt.nb = 10000;
    if (!nq_set) opt.nq = 200;
  }
  return opt;
}

// ---------------------------------------------------------------------------------------------
// Data and ground truth

struct Dataset {
  std::string description;
  Metric metric = Metric::kL2;
  Matrix base;
  Matrix queries;
  // Unit-length copies for hnswlib and Faiss under cosine: neither has a cosine metric, and
  // cosine distance is inner-product distance on unit vectors. Empty otherwise.
  Matrix base_unit;
  Matrix queries_unit;
  // Per query, the exact distance of the k-th true neighbour (the recall threshold).
  std::vector<double> threshold;
  std::string gt_description;
};

Matrix Normalized(const Matrix& m) {
  Matrix out = m;
  for (size_t i = 0; i < out.rows; ++i) {
    float* row = out.row(i);
    double norm = 0;
    for (size_t j = 0; j < out.cols; ++j) norm += double{row[j]} * row[j];
    if (norm == 0) continue;
    const double inv = 1.0 / std::sqrt(norm);
    for (size_t j = 0; j < out.cols; ++j) row[j] = static_cast<float>(row[j] * inv);
  }
  return out;
}

// The metric's distance in double precision, independent of every library under test.
double ExactDistance(Metric metric, const float* a, const float* b, size_t dim) {
  double acc = 0, na = 0, nb = 0;
  switch (metric) {
    case Metric::kL2:
      for (size_t j = 0; j < dim; ++j) {
        const double d = double{a[j]} - b[j];
        acc += d * d;
      }
      return acc;
    case Metric::kInnerProduct:
      for (size_t j = 0; j < dim; ++j) acc += double{a[j]} * b[j];
      return -acc;
    case Metric::kL1:
      for (size_t j = 0; j < dim; ++j) acc += std::fabs(double{a[j]} - b[j]);
      return acc;
    case Metric::kCosine:
      for (size_t j = 0; j < dim; ++j) {
        acc += double{a[j]} * b[j];
        na += double{a[j]} * a[j];
        nb += double{b[j]} * b[j];
      }
      return (na == 0 || nb == 0) ? 1.0 : 1.0 - acc / std::sqrt(na * nb);
  }
  return 0;
}

// Recall thresholds from k true neighbour ids per query (row stride `stride`).
Result<std::vector<double>> ThresholdsFromIds(const Dataset& ds, size_t k, const int64_t* ids,
                                              size_t stride) {
  std::vector<double> threshold(ds.queries.rows);
  for (size_t q = 0; q < ds.queries.rows; ++q) {
    double worst = -INFINITY;
    for (size_t j = 0; j < k; ++j) {
      const int64_t id = ids[q * stride + j];
      if (id < 0 || static_cast<size_t>(id) >= ds.base.rows) {
        return Status::InvalidArgument("ground truth for query " + std::to_string(q) +
                                       " names base vector " + std::to_string(id) +
                                       ", but there are " + std::to_string(ds.base.rows));
      }
      worst = std::max(worst, ExactDistance(ds.metric, ds.queries.row(q),
                                            ds.base.row(static_cast<size_t>(id)), ds.base.cols));
    }
    threshold[q] = worst;
  }
  return threshold;
}

// recall@k: the fraction of the nq * k result slots holding a distinct base vector at least
// as close as the true k-th neighbour (see kTieTolerance).
double Recall(const Dataset& ds, size_t nq, size_t k, const int64_t* labels) {
  size_t hits = 0;
  for (size_t q = 0; q < nq; ++q) {
    const int64_t* row = labels + q * k;
    const double limit = ds.threshold[q] + kTieTolerance * std::max(1.0, std::abs(ds.threshold[q]));
    for (size_t j = 0; j < k; ++j) {
      if (row[j] < 0 || static_cast<size_t>(row[j]) >= ds.base.rows) continue;
      if (std::find(row, row + j, row[j]) != row + j) continue;  // a duplicate earns nothing
      if (ExactDistance(ds.metric, ds.queries.row(q), ds.base.row(static_cast<size_t>(row[j])),
                        ds.base.cols) <= limit) {
        ++hits;
      }
    }
  }
  return static_cast<double>(hits) / static_cast<double>(nq * k);
}

Result<std::vector<int64_t>> FathomExactIds(const Dataset& ds, size_t k, int threads) {
  FATHOM_ASSIGN_OR_RETURN(std::unique_ptr<Index> flat, MakeIndex("Flat", ds.base.cols, ds.metric));
  std::vector<label_t> ids(ds.base.rows);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<label_t>(i);
  FATHOM_RETURN_IF_ERROR(
      flat->Add(ds.base.rows, ds.base.data.data(), ids.data(), AddOptions{threads}));
  std::vector<float> distances(ds.queries.rows * k);
  std::vector<label_t> labels(ds.queries.rows * k);
  FATHOM_RETURN_IF_ERROR(
      flat->Search(ds.queries.rows, ds.queries.data.data(), k, distances.data(), labels.data()));
  return std::vector<int64_t>(labels.begin(), labels.end());
}

// Faiss's exact batch search (BLAS), as an independent check of the ground truth.
Result<std::vector<int64_t>> FaissExactIds(const Dataset& ds, size_t k) {
  const bool cosine = ds.metric == Metric::kCosine;
  const Matrix& base = cosine ? ds.base_unit : ds.base;
  const Matrix& queries = cosine ? ds.queries_unit : ds.queries;
  try {
    faiss::IndexFlat flat(static_cast<int>(base.cols), ds.metric == Metric::kL2
                                                           ? faiss::METRIC_L2
                                                           : faiss::METRIC_INNER_PRODUCT);
    flat.add(static_cast<FaissId>(base.rows), base.data.data());
    std::vector<float> distances(queries.rows * k);
    std::vector<FaissId> labels(queries.rows * k);
    flat.search(static_cast<FaissId>(queries.rows), queries.data.data(), static_cast<FaissId>(k),
                distances.data(), labels.data());
    return std::vector<int64_t>(labels.begin(), labels.end());
  } catch (const std::exception& e) {
    return Status::Internal(std::string("Faiss exact search failed: ") + e.what());
  }
}

Status LoadDataset(const Options& opt, Dataset* ds) {
  FATHOM_ASSIGN_OR_RETURN(ds->metric, ParseMetric(opt.metric_name));
  std::string base_path = opt.base_path, query_path = opt.query_path;
  if (base_path.empty()) {
    base_path = std::string(kFashionMnistDir) + "/train-images-idx3-ubyte.gz";
    query_path = std::string(kFashionMnistDir) + "/t10k-images-idx3-ubyte.gz";
  }
  std::fprintf(stderr, "loading %s and %s\n", base_path.c_str(), query_path.c_str());
  FATHOM_ASSIGN_OR_RETURN(ds->base, ReadVectors(base_path, opt.nb));
  FATHOM_ASSIGN_OR_RETURN(ds->queries, ReadVectors(query_path, opt.nq));
  if (ds->base.cols != ds->queries.cols) {
    return Status::InvalidArgument(
        "queries in '" + query_path + "' have " + std::to_string(ds->queries.cols) +
        " dimensions, base vectors in '" + base_path + "' have " + std::to_string(ds->base.cols));
  }
  if (ds->base.rows < opt.k) {
    return Status::InvalidArgument("k = " + std::to_string(opt.k) + " exceeds the " +
                                   std::to_string(ds->base.rows) + " base vectors");
  }
  if (ds->metric == Metric::kCosine) {
    ds->base_unit = Normalized(ds->base);
    ds->queries_unit = Normalized(ds->queries);
  }
  ds->description = "base " + std::to_string(ds->base.rows) + " x " +
                    std::to_string(ds->base.cols) + " ('" + base_path + "'), queries " +
                    std::to_string(ds->queries.rows) + " ('" + query_path + "'), metric " +
                    MetricName(ds->metric) + ", k " + std::to_string(opt.k);
  return Status::OK();
}

Status ComputeGroundTruth(const Options& opt, Dataset* ds) {
  const size_t k = opt.k;
  // GEMM-based exact search is the one place where BLAS threads help.
  openblas_set_num_threads(opt.build_threads);
  omp_set_num_threads(opt.build_threads);
  if (!opt.gt_path.empty()) {
    FATHOM_ASSIGN_OR_RETURN(IntMatrix gt, ReadIntVectors(opt.gt_path, ds->queries.rows));
    if (gt.rows < ds->queries.rows || gt.cols < k) {
      return Status::InvalidArgument("'" + opt.gt_path + "' holds " + std::to_string(gt.rows) +
                                     " x " + std::to_string(gt.cols) + " ids; need at least " +
                                     std::to_string(ds->queries.rows) + " x " + std::to_string(k));
    }
    std::vector<int64_t> ids(gt.data.begin(), gt.data.end());
    FATHOM_ASSIGN_OR_RETURN(ds->threshold, ThresholdsFromIds(*ds, k, ids.data(), gt.cols));
    ds->gt_description = "from '" + opt.gt_path + "'";
  } else {
    std::fprintf(stderr, "computing exact ground truth with fathom Flat\n");
    const auto start = std::chrono::steady_clock::now();
    Result<std::vector<int64_t>> ids = FathomExactIds(*ds, k, opt.build_threads);
    if (ids.ok()) {
      FATHOM_ASSIGN_OR_RETURN(ds->threshold, ThresholdsFromIds(*ds, k, ids->data(), k));
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      char buf[96];
      std::snprintf(buf, sizeof(buf), "fathom Flat batch search (%.1f s)", secs);
      ds->gt_description = buf;
    } else {
      std::fprintf(stderr, "fathom Flat unavailable (%s); using Faiss IndexFlat for ground truth\n",
                   ids.status().ToString().c_str());
      FATHOM_ASSIGN_OR_RETURN(std::vector<int64_t> faiss_ids, FaissExactIds(*ds, k));
      FATHOM_ASSIGN_OR_RETURN(ds->threshold, ThresholdsFromIds(*ds, k, faiss_ids.data(), k));
      ds->gt_description =
          "Faiss IndexFlat batch search (fathom Flat failed: " + ids.status().ToString() + ")";
    }
  }
  // Whatever produced the ground truth, an independent exact search must score 1 against it.
  Result<std::vector<int64_t>> check = FaissExactIds(*ds, k);
  if (check.ok()) {
    char buf[96];
    std::snprintf(buf, sizeof(buf), "; check: Faiss IndexFlat scores recall %.5f against it",
                  Recall(*ds, ds->queries.rows, k, check->data()));
    ds->gt_description += buf;
  }
  openblas_set_num_threads(1);
  omp_set_num_threads(1);
  return Status::OK();
}

// ---------------------------------------------------------------------------------------------
// Libraries under test

// One built index of one library; the driver times SearchOne.
class Runner {
 public:
  Runner(std::string library, std::string index, bool unit_inputs)
      : library_(std::move(library)), index_(std::move(index)), unit_inputs_(unit_inputs) {}
  virtual ~Runner() = default;

  const std::string& library() const { return library_; }
  const std::string& index() const { return index_; }
  // Whether ef means anything (graph indexes); exact indexes give one point.
  virtual bool sweeps_ef() const = 0;
  // IVF indexes sweep nprobe instead (SetEf receives it).
  virtual bool sweeps_nprobe() const { return false; }
  // Budgeted trees sweep checks (points examined; SetEf receives it).
  virtual bool sweeps_checks() const { return false; }
  virtual Status Build(const Matrix& base, int threads) = 0;
  virtual void SetEf(int ef) = 0;
  virtual std::string Param(int ef) const { return sweeps_ef() ? "ef=" + std::to_string(ef) : "-"; }
  virtual Status SearchOne(const float* query, size_t k, float* distances, int64_t* labels) = 0;
  virtual size_t memory_bytes() const = 0;

  const Matrix& BaseFor(const Dataset& ds) const { return unit_inputs_ ? ds.base_unit : ds.base; }
  const Matrix& QueriesFor(const Dataset& ds) const {
    return unit_inputs_ ? ds.queries_unit : ds.queries;
  }

 private:
  std::string library_;
  std::string index_;
  bool unit_inputs_;
};

class FathomRunner final : public Runner {
 public:
  // `isa`: the kernel path this index is built and searched on (nullopt: the active one).
  FathomRunner(std::string factory, Metric metric, int rerank, std::optional<simd::Isa> isa = std::nullopt)
      : Runner("fathom", isa ? factory + " @" + simd::IsaName(*isa) : factory, false),
        factory_(std::move(factory)),
        metric_(metric),
        rerank_(rerank),
        isa_(isa) {}

  bool ivf() const { return factory_.rfind("IVF", 0) == 0 || factory_.rfind("OPQ", 0) == 0; }
  bool sweeps_ef() const override { return !ivf() && factory_.find("HNSW") != std::string::npos; }
  bool sweeps_nprobe() const override { return ivf(); }
  bool sweeps_checks() const override { return factory_.rfind("BallTree", 0) == 0 || factory_.rfind("KDForest", 0) == 0; }

  Status Build(const Matrix& base, int threads) override {
    UseMyIsa();
    FATHOM_ASSIGN_OR_RETURN(index_, MakeIndex(factory_, base.cols, metric_));
    if (ivf()) FATHOM_RETURN_IF_ERROR(index_->Train(base.rows, base.data.data()));
    std::vector<label_t> labels(base.rows);
    for (size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<label_t>(i);
    return index_->Add(base.rows, base.data.data(), labels.data(), AddOptions{threads});
  }

  void SetEf(int ef) override {
    UseMyIsa();  // (runners run one at a time: the switch holds for this one's sweep)
    (ivf() ? params_.nprobe : sweeps_checks() ? params_.checks : params_.ef) = ef;
    params_.rerank = rerank_;
  }

  std::string Param(int ef) const override {
    std::string p = ivf()             ? "nprobe=" + std::to_string(ef)
                    : sweeps_checks() ? "checks=" + std::to_string(ef)
                                      : Runner::Param(ef);
    if (rerank_ > 0 && (factory_.find("SQ") != std::string::npos || factory_.find("PQ") != std::string::npos || factory_.find("RBQ") != std::string::npos))
      p += ",rerank=" + std::to_string(rerank_);
    return p;
  }

  Status SearchOne(const float* query, size_t k, float* distances, int64_t* labels) override {
    return index_->Search(1, query, k, distances, labels, params_);
  }

  size_t memory_bytes() const override { return index_ ? index_->memory_bytes() : 0; }

 private:
  void UseMyIsa() const {
    if (isa_) simd::UseIsa(*isa_);
  }

  std::string factory_;
  Metric metric_;
  int rerank_;
  std::optional<simd::Isa> isa_;
  std::unique_ptr<Index> index_;
  SearchParams params_;
};

class HnswlibBenchRunner final : public Runner {
 public:
  HnswlibBenchRunner(size_t m, int ef_construction, Metric metric)
      : Runner("hnswlib", "M=" + std::to_string(m) + ",efC=" + std::to_string(ef_construction),
               metric == Metric::kCosine),
        m_(m),
        ef_construction_(ef_construction),
        metric_(metric) {}

  bool sweeps_ef() const override { return true; }

  Status Build(const Matrix& base, int threads) override {
    const auto space =
        metric_ == Metric::kL2 ? HnswlibRunner::Space::kL2 : HnswlibRunner::Space::kInnerProduct;
    FATHOM_ASSIGN_OR_RETURN(index_, HnswlibRunner::Create(base.cols, space, base.rows, m_,
                                                          static_cast<size_t>(ef_construction_)));
    return index_->Add(base.rows, base.data.data(), threads);
  }

  void SetEf(int ef) override { index_->SetEf(static_cast<size_t>(ef)); }

  Status SearchOne(const float* query, size_t k, float* distances, int64_t* labels) override {
    return index_->Search(query, k, distances, labels);
  }

  size_t memory_bytes() const override { return index_ ? index_->memory_bytes() : 0; }

 private:
  size_t m_;
  int ef_construction_;
  Metric metric_;
  std::unique_ptr<HnswlibRunner> index_;
};

class FaissRunner final : public Runner {
 public:
  // spec is "Flat" (IndexFlat) or "HNSW<M>" (IndexHNSWFlat).
  static Result<std::unique_ptr<FaissRunner>> Create(const std::string& spec, int ef_construction,
                                                     Metric metric, int rerank = 0, size_t k = 10) {
    const char* metric_suffix = metric == Metric::kL2 ? "L2" : "IP";
    if (spec.rfind("IVF", 0) == 0 || spec.rfind("OPQ", 0) == 0) {
      auto r = std::make_unique<FaissRunner>(spec, 0, 0, metric);
      r->factory_ = spec;
      r->k_factor_ = rerank > 0 ? float(rerank) / float(k) : 4.0f;
      return r;
    }
    if (spec == "Flat") {
      return std::make_unique<FaissRunner>(std::string("IndexFlat") + metric_suffix, 0, 0, metric);
    }
    if (spec.rfind("HNSW", 0) == 0) {
      char* end = nullptr;
      const long m = std::strtol(spec.c_str() + 4, &end, 10);
      if (m >= 2 && *end == '\0') {
        return std::make_unique<FaissRunner>(
            "HNSWFlat" + std::to_string(m) + ",efC=" + std::to_string(ef_construction),
            static_cast<int>(m), ef_construction, metric);
      }
    }
    return Status::InvalidArgument("unknown Faiss index '" + spec + "': expected Flat or HNSW<M>");
  }

  FaissRunner(std::string name, int m, int ef_construction, Metric metric)
      : Runner("faiss", std::move(name), metric == Metric::kCosine),
        m_(m),
        ef_construction_(ef_construction),
        metric_(metric == Metric::kL2 ? faiss::METRIC_L2 : faiss::METRIC_INNER_PRODUCT) {}

  bool sweeps_ef() const override { return m_ > 0; }
  bool sweeps_nprobe() const override { return !factory_.empty(); }
  std::string Param(int v) const override {
    if (factory_.empty()) return Runner::Param(v);
    std::string p = "nprobe=" + std::to_string(v);
    if (refine_ != nullptr) p += ",k_factor=" + std::to_string(int(k_factor_));
    return p;
  }

  Status Build(const Matrix& base, int threads) override {
    try {
      const int d = static_cast<int>(base.cols);
      if (!factory_.empty()) {
        index_.reset(faiss::index_factory(d, factory_.c_str(), metric_));
        refine_ = dynamic_cast<faiss::IndexRefine*>(index_.get());
        ivf_ = faiss::ivflib::extract_index_ivf(refine_ != nullptr ? refine_->base_index : index_.get());
        if (refine_ != nullptr) refine_->k_factor = k_factor_;
        omp_set_num_threads(threads);
        index_->train(static_cast<FaissId>(base.rows), base.data.data());
      } else if (m_ > 0) {
        auto hnsw = std::make_unique<faiss::IndexHNSWFlat>(d, m_, metric_);
        // Must be set before add: Faiss reads it while inserting.
        hnsw->hnsw.efConstruction = ef_construction_;
        hnsw_ = hnsw.get();
        index_ = std::move(hnsw);
      } else {
        index_ = std::make_unique<faiss::IndexFlat>(d, metric_);
      }
      omp_set_num_threads(threads);
      index_->add(static_cast<FaissId>(base.rows), base.data.data());
      omp_set_num_threads(1);
    } catch (const std::exception& e) {
      omp_set_num_threads(1);
      return Status::Internal("Faiss " + index() + " build failed: " + e.what());
    }
    return Status::OK();
  }

  void SetEf(int ef) override {
    if (hnsw_ != nullptr) hnsw_->hnsw.efSearch = ef;
    if (ivf_ != nullptr) ivf_->nprobe = static_cast<size_t>(ef);
  }

  Status SearchOne(const float* query, size_t k, float* distances, int64_t* labels) override {
    try {
      index_->search(1, query, static_cast<FaissId>(k), distances, labels);
    } catch (const std::exception& e) {
      return Status::Internal("Faiss " + index() + " search failed: " + e.what());
    }
    return Status::OK();
  }

  // Vectors (the flat storage's codes) plus, for HNSW, the neighbour array, the per-node
  // offsets into it and the per-node levels.
  size_t memory_bytes() const override {
    if (!index_) return 0;
    if (ivf_ != nullptr) {
      // Inverted lists (codes and ids) and centroids, plus the float copy a refine stage keeps.
      size_t bytes = ivf_->quantizer->ntotal * ivf_->d * sizeof(float);
      for (size_t l = 0; l < ivf_->nlist; ++l) {
        bytes += ivf_->invlists->list_size(l) * (ivf_->code_size + sizeof(FaissId));
      }
      if (refine_ != nullptr) bytes += refine_->ntotal * ivf_->d * sizeof(float);
      return bytes;
    }
    const faiss::IndexFlatCodes* storage = dynamic_cast<const faiss::IndexFlatCodes*>(
        hnsw_ != nullptr ? hnsw_->storage : index_.get());
    size_t bytes = storage != nullptr ? storage->codes.size() : 0;
    if (hnsw_ != nullptr) {
      const faiss::HNSW& g = hnsw_->hnsw;
      bytes += g.neighbors.size() * sizeof(faiss::HNSW::storage_idx_t) +
               g.offsets.size() * sizeof(size_t) + g.levels.size() * sizeof(int);
    }
    return bytes;
  }

 private:
  int m_;
  int ef_construction_;
  faiss::MetricType metric_;
  std::unique_ptr<faiss::Index> index_;
  faiss::IndexHNSW* hnsw_ = nullptr;
  std::string factory_;  // IVF: the index_factory string
  float k_factor_ = 4;
  faiss::IndexIVF* ivf_ = nullptr;
  faiss::IndexRefine* refine_ = nullptr;
};

// ---------------------------------------------------------------------------------------------
// Measurement

// FLANN 1.9 (Debian libflann-dev): the approximate trees users would otherwise pick. Both are
// searched with a budget of leaf points examined (`checks`), single-threaded. FLANN keeps a
// pointer to the base matrix, which outlives the runner.
class FlannRunner final : public Runner {
 public:
  static Result<std::unique_ptr<FlannRunner>> Create(const std::string& spec, Metric metric) {
    if (metric != Metric::kL2) return Status::InvalidArgument("FLANN runs l2 only here, got '" + spec + "'");
    int param = 0;
    std::string kind;
    for (const char* prefix : {"kdtree", "kmeans", "autotuned"}) {
      if (spec.rfind(prefix, 0) == 0) {
        kind = prefix;
        param = std::atoi(spec.c_str() + kind.size());
      }
    }
    if (kind.empty() || param < 1) {
      return Status::InvalidArgument("FLANN index '" + spec +
                                     "': expected kdtree<trees>, kmeans<branching> or autotuned<target precision %>");
    }
    if (kind == "autotuned" && param > 100) {
      return Status::InvalidArgument("FLANN index '" + spec + "': the target precision is a percentage (1-100)");
    }
    return std::unique_ptr<FlannRunner>(new FlannRunner(kind, param));
  }
  bool sweeps_ef() const override { return false; }
  // An autotuned index picks its own algorithm, parameters and checks: one point.
  bool sweeps_checks() const override { return kind_ != "autotuned"; }
  Status Build(const Matrix& base, int threads) override {
    flann::Matrix<float> data(const_cast<float*>(base.data.data()), base.rows, base.cols);
    flann::IndexParams params;
    if (kind_ == "autotuned") {
      // FLANN's autotuning (target precision, build time weighted 0.01 as in its manual, memory
      // not weighted, a tenth of the points as the tuning sample); the build time includes it.
      params = flann::AutotunedIndexParams(float(param_) / 100.0f, 0.01f, 0.0f, 0.1f);
      checks_ = flann::FLANN_CHECKS_AUTOTUNED;
    } else if (kind_ == "kdtree") {
      params = flann::KDTreeIndexParams(param_);
    } else {
      params = flann::KMeansIndexParams(param_, 11, flann::FLANN_CENTERS_RANDOM, 0.2f);
    }
    index_ = std::make_unique<flann::Index<flann::L2<float>>>(data, params);
    index_->buildIndex();
    dim_ = base.cols;
    return Status::OK();
  }
  void SetEf(int checks) override {
    if (kind_ != "autotuned") checks_ = checks;
  }
  std::string Param(int checks) const override {
    char target[32];
    std::snprintf(target, sizeof(target), "target=%.2f", param_ / 100.0);
    return kind_ == "autotuned" ? std::string(target) : "checks=" + std::to_string(checks);
  }
  Status SearchOne(const float* query, size_t k, float* distances, int64_t* labels) override {
    flann::Matrix<float> q(const_cast<float*>(query), 1, dim_);
    idx_.resize(k);  // (kept between calls: no allocation inside the timed loop)
    std::vector<size_t>& idx = idx_;
    flann::Matrix<size_t> indices(idx.data(), 1, k);
    flann::Matrix<float> dists(distances, 1, k);
    flann::SearchParams params(checks_);
    params.cores = 1;
    index_->knnSearch(q, indices, dists, k, params);
    for (size_t i = 0; i < k; ++i) labels[i] = static_cast<int64_t>(idx[i]);
    return Status::OK();
  }
  size_t memory_bytes() const override { return index_ ? index_->usedMemory() : 0; }

 private:
  FlannRunner(std::string kind, int param)
      : Runner("flann", kind + std::to_string(param), false), kind_(std::move(kind)), param_(param) {}
  std::string kind_;
  int param_;
  int checks_ = 32;
  size_t dim_ = 0;
  std::vector<size_t> idx_;
  std::unique_ptr<flann::Index<flann::L2<float>>> index_;
};

// A Fathom collection (in a temporary directory) with `factory` as its index, tuned by
// Collection::Tune to a target recall@10 (queries made from its own points) and searched with the
// default Tune kept: the counterpart of FLANN's autotuned index. The build time includes tuning.
class FathomTunedRunner final : public Runner {
 public:
  FathomTunedRunner(std::string factory, double target, Metric metric)
      : Runner("fathom", factory + " tuned", false), factory_(std::move(factory)), target_(target), metric_(metric) {}
  ~FathomTunedRunner() override {
    collection_.reset();
    db_.reset();
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }
  bool sweeps_ef() const override { return false; }
  Status Build(const Matrix& base, int threads) override {
    char pattern[] = "/tmp/ann_bench_tuned_XXXXXX";
    if (mkdtemp(pattern) == nullptr) return Status::IOError("cannot create a temporary directory");
    dir_ = pattern;
    DatabaseOptions options;
    options.durability = Durability::kBuffered;
    options.recall_sample_rate = 0;  // (no background exact searches while timing)
    FATHOM_ASSIGN_OR_RETURN(db_, Database::Open(dir_, options));
    CollectionSpec spec;
    spec.name = "tuned";
    spec.vectors.push_back({"", base.cols, metric_, factory_, false});
    FATHOM_ASSIGN_OR_RETURN(collection_, db_->CreateCollection(spec));
    for (size_t begin = 0; begin < base.rows; begin += 10000) {
      std::vector<Record> records;
      for (size_t i = begin; i < std::min(base.rows, begin + 10000); ++i) {
        Record r;
        r.id = uint64_t{i};
        r.vectors[""].assign(base.row(i), base.row(i) + base.cols);
        records.push_back(std::move(r));
      }
      FATHOM_RETURN_IF_ERROR(collection_->Upsert(records));
    }
    TuneRequest request;
    request.target_recall = target_;
    FATHOM_ASSIGN_OR_RETURN(tuned_, collection_->Tune(request));
    request_.with_payload = false;
    dim_ = base.cols;
    (void)threads;
    return Status::OK();
  }
  void SetEf(int) override {}
  std::string Param(int) const override {
    char text[96];
    std::snprintf(text, sizeof(text), "target=%.2f,%s=%d", target_, tuned_.knob.c_str(), tuned_.value);
    return text;
  }
  Status SearchOne(const float* query, size_t k, float* distances, int64_t* labels) override {
    request_.queries.assign(query, query + dim_);
    request_.k = k;
    FATHOM_ASSIGN_OR_RETURN(auto hits, collection_->Search(request_));
    for (size_t i = 0; i < k; ++i) {
      labels[i] = i < hits[0].size() ? int64_t(std::get<uint64_t>(hits[0][i].id)) : -1;
      distances[i] = i < hits[0].size() ? hits[0][i].distance : 0;
    }
    return Status::OK();
  }
  size_t memory_bytes() const override { return collection_ ? collection_->memory_bytes() : 0; }

 private:
  std::string factory_;
  double target_;
  Metric metric_;
  std::string dir_;
  std::unique_ptr<Database> db_;
  std::shared_ptr<Collection> collection_;
  TuneResult tuned_;
  SearchRequest request_;
  size_t dim_ = 0;
};

struct Point {
  std::string library;
  std::string index;
  std::string param;
  int ef = 0;  // 0 for exact indexes
  double recall = 0;
  double qps = 0;
  double build_s = 0;
  size_t memory_bytes = 0;
  long long rss_delta_bytes = 0;
  size_t nq = 0;
  int run = 0;
};

long long ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  long long pages_total = 0, pages_resident = 0;
  statm >> pages_total >> pages_resident;
  return pages_resident * sysconf(_SC_PAGESIZE);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void PrintTableHeader() {
  std::printf("%-8s %-22s %-14s %8s %10s %8s %9s %9s\n", "library", "index", "param", "recall",
              "QPS", "build_s", "mem_MB", "rss_MB");
  std::fflush(stdout);
}

void PrintPoint(const Point& p) {
  std::printf("%-8s %-22s %-14s %8.4f %10.1f %8.2f %9.1f %9.1f\n", p.library.c_str(),
              p.index.c_str(), p.param.c_str(), p.recall, p.qps, p.build_s,
              static_cast<double>(p.memory_bytes) / 1e6,
              static_cast<double>(p.rss_delta_bytes) / 1e6);
  std::fflush(stdout);
}

// Builds one index, then times its ef sweep. Returns the points in sweep order.
Result<std::vector<Point>> Measure(Runner& runner, const Dataset& ds, const Options& opt) {
  std::fprintf(stderr, "building %s %s with %d threads\n", runner.library().c_str(),
               runner.index().c_str(), opt.build_threads);
  // Return freed heap pages first, so the RSS delta is this index's, not a predecessor's
  // recycled memory.
  malloc_trim(0);
  const long long rss_before = ResidentBytes();
  const auto build_start = std::chrono::steady_clock::now();
  FATHOM_RETURN_IF_ERROR(runner.Build(runner.BaseFor(ds), opt.build_threads));
  const double build_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - build_start).count();
  malloc_trim(0);
  const long long rss_delta = ResidentBytes() - rss_before;

  // One search thread everywhere: no BLAS or OpenMP helpers behind any library's back.
  openblas_set_num_threads(1);
  omp_set_num_threads(1);

  const Matrix& queries = runner.QueriesFor(ds);
  const bool sweeps = runner.sweeps_ef() || runner.sweeps_nprobe() || runner.sweeps_checks();
  const size_t nq = sweeps ? queries.rows : std::min(opt.flat_nq, queries.rows);
  const size_t k = opt.k;
  std::vector<float> distances(nq * k);
  std::vector<int64_t> labels(nq * k);
  const std::vector<int> sweep = runner.sweeps_nprobe()   ? opt.nprobe
                                 : runner.sweeps_checks() ? opt.checks
                                 : runner.sweeps_ef()     ? opt.ef
                                                          : std::vector<int>{0};

  std::vector<Point> points;
  for (int ef : sweep) {
    runner.SetEf(ef);
    std::vector<double> qps;
    for (int rep = 0; rep < opt.repeats; ++rep) {
      const auto start = std::chrono::steady_clock::now();
      for (size_t q = 0; q < nq; ++q) {
        FATHOM_RETURN_IF_ERROR(
            runner.SearchOne(queries.row(q), k, &distances[q * k], &labels[q * k]));
      }
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      qps.push_back(static_cast<double>(nq) / secs);
    }
    Point p;
    p.library = runner.library();
    p.index = runner.index();
    p.param = runner.Param(ef);
    p.ef = ef;
    p.recall = Recall(ds, nq, k, labels.data());
    p.qps = Median(qps);
    p.build_s = build_s;
    p.memory_bytes = runner.memory_bytes();
    p.rss_delta_bytes = rss_delta;
    p.nq = nq;
    PrintPoint(p);
    points.push_back(std::move(p));
  }
  return points;
}

// QPS a curve reaches at `target` recall: on the curve's Pareto frontier (the best QPS at each
// recall or above), log(QPS) interpolated linearly in recall between the two frontier points
// around the target. nullopt when the curve never reaches the target; *lower_bound when even
// its fastest point is above the target (the true value is at least the one returned).
std::optional<double> QpsAtRecall(std::vector<Point> curve, double target, bool* lower_bound) {
  *lower_bound = false;
  std::sort(curve.begin(), curve.end(),
            [](const Point& a, const Point& b) { return a.recall > b.recall; });
  std::vector<const Point*> frontier;  // recall falling, QPS rising
  for (const Point& p : curve) {
    if (frontier.empty() || p.qps > frontier.back()->qps) frontier.push_back(&p);
  }
  if (frontier.empty() || frontier.front()->recall < target) return std::nullopt;
  size_t j = 0;
  while (j + 1 < frontier.size() && frontier[j + 1]->recall >= target) ++j;
  if (j + 1 == frontier.size()) {
    *lower_bound = frontier[j]->recall > target;
    return frontier[j]->qps;
  }
  const Point& hi = *frontier[j];      // recall >= target
  const Point& lo = *frontier[j + 1];  // recall < target, faster
  const double t = (target - lo.recall) / (hi.recall - lo.recall);
  return std::exp(std::log(lo.qps) + t * (std::log(hi.qps) - std::log(lo.qps)));
}

// The reference curve: hnswlib with M=16 (the configuration published figures use), else the
// first hnswlib curve run; null without hnswlib.
const std::vector<Point>* Reference(const std::vector<std::vector<Point>>& curves) {
  auto is_m16 = [](const std::vector<Point>& c) { return c.front().index.rfind("M=16,", 0) == 0; };
  const std::vector<Point>* reference = nullptr;
  for (const auto& c : curves) {
    if (c.empty() || c.front().library != "hnswlib") continue;
    if (reference == nullptr || (is_m16(c) && !is_m16(*reference))) reference = &c;
  }
  return reference;
}

constexpr double kTargets[] = {0.9, 0.95, 0.99, 0.999};

void PrintRatios(const std::vector<std::vector<Point>>& curves, const Options& opt) {
  const std::vector<Point>* reference = Reference(curves);
  const auto& targets = kTargets;
  std::printf("\nQPS at equal recall@%zu, and its ratio to hnswlib %s\n", opt.k,
              reference != nullptr ? reference->front().index.c_str() : "(not run)");
  std::printf(
      "(QPS = median of %d passes; per curve, the Pareto frontier with log(QPS) interpolated "
      "linearly in recall;\n '>' = the curve's fastest point is already above that recall, "
      "so the value is a lower bound; n/a = never reaches it)\n",
      opt.repeats);
  std::printf("%-8s %-22s %11s %9s %11s %9s %11s %9s %11s %9s\n", "library", "index", "QPS@0.9", "ratio", "QPS@0.95",
              "ratio", "QPS@0.99", "ratio", "QPS@0.999", "ratio");

  auto format_qps = [](std::optional<double> v, bool bound) -> std::string {
    if (!v) return "n/a";
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%s%.1f", bound ? ">" : "", *v);
    return buf;
  };
  for (const auto& c : curves) {
    if (c.front().ef == 0) continue;  // exact indexes: one point at recall 1, nothing to trade
    std::printf("%-8s %-22s", c.front().library.c_str(), c.front().index.c_str());
    for (double target : targets) {
      bool bound = false, ref_bound = false;
      const std::optional<double> v = QpsAtRecall(c, target, &bound);
      const std::optional<double> ref =
          reference != nullptr ? QpsAtRecall(*reference, target, &ref_bound) : std::nullopt;
      std::string ratio = "n/a";
      if (v && ref) {
        char buf[32];
        // A lower bound on our QPS gives a lower bound on the ratio; one on the reference's an
        // upper.
        const char* mark = bound && !ref_bound ? ">" : !bound && ref_bound ? "<" : bound ? "~" : "";
        std::snprintf(buf, sizeof(buf), "%s%.2f", mark, *v / *ref);
        ratio = buf;
      }
      std::printf(" %11s %9s", format_qps(v, bound).c_str(), ratio.c_str());
    }
    std::printf("\n");
  }
}

// With --runs: per index and target, the median and range over the runs of QPS@recall and of
// its ratio to the reference of the same run (runs where the curve misses the target are
// counted as "n/a" and left out of the median).
void PrintSpread(const std::vector<std::vector<std::vector<Point>>>& runs) {
  std::printf("\nSpread over %zu runs (each run builds every index again): median [min-max] of QPS@recall, and of\n"
              "the ratio to hnswlib in the same run; n/a runs did not reach the recall\n",
              runs.size());
  std::printf("%-8s %-22s", "library", "index");
  for (double t : kTargets) std::printf(" %38s", ("QPS@" + std::to_string(t).substr(0, t == 0.999 ? 5 : 4)).c_str());
  std::printf("\n");
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  };
  for (size_t i = 0; i < runs.front().size(); ++i) {
    const Point& head = runs.front()[i].front();
    if (head.ef == 0) continue;
    std::printf("%-8s %-22s", head.library.c_str(), head.index.c_str());
    for (double t : kTargets) {
      std::vector<double> qps, ratio;
      size_t missed = 0;
      for (const auto& curves : runs) {
        if (i >= curves.size()) continue;
        bool bound = false, ref_bound = false;
        const auto v = QpsAtRecall(curves[i], t, &bound);
        if (!v) {
          ++missed;
          continue;
        }
        qps.push_back(*v);
        const std::vector<Point>* ref = Reference(curves);
        const auto r = ref != nullptr ? QpsAtRecall(*ref, t, &ref_bound) : std::nullopt;
        if (r) ratio.push_back(*v / *r);
      }
      char buf[96] = "n/a";
      if (!qps.empty()) {
        const auto [lo, hi] = std::minmax_element(qps.begin(), qps.end());
        int len = std::snprintf(buf, sizeof(buf), "%.0f [%.0f-%.0f]", median(qps), *lo, *hi);
        if (!ratio.empty()) {
          const auto [rlo, rhi] = std::minmax_element(ratio.begin(), ratio.end());
          std::snprintf(buf + len, sizeof(buf) - size_t(len), " %.2fx[%.2f-%.2f]", median(ratio), *rlo, *rhi);
        }
        if (missed > 0) std::snprintf(buf + std::strlen(buf), sizeof(buf) - std::strlen(buf), " %zu n/a", missed);
      }
      std::printf(" %38s", buf);
    }
    std::printf("\n");
  }
}

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

Status WriteJson(const std::string& path, const std::vector<std::vector<Point>>& curves) {
  std::ostringstream out;
  out << "[\n";
  bool first = true;
  char buf[512];
  for (const auto& curve : curves) {
    for (const Point& p : curve) {
      std::snprintf(buf, sizeof(buf),
                    "\"recall\": %.6f, \"qps\": %.3f, \"build_s\": %.3f, \"memory_bytes\": %zu, "
                    "\"rss_delta_bytes\": %lld, \"ef\": %d, \"nq\": %zu, \"run\": %d}",
                    p.recall, p.qps, p.build_s, p.memory_bytes, p.rss_delta_bytes, p.ef, p.nq, p.run);
      out << (first ? "  " : ",\n  ") << "{\"library\": " << JsonString(p.library)
          << ", \"index\": " << JsonString(p.index) << ", \"param\": " << JsonString(p.param)
          << ", " << buf;
      first = false;
    }
  }
  out << "\n]\n";
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  file << out.str();
  file.close();
  if (!file) return Status::IOError("'" + path + "': cannot write: " + std::strerror(errno));
  return Status::OK();
}

std::string CpuModel() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "unknown CPU";
}

int Run(int argc, char** argv) {
  Result<Options> parsed = ParseOptions(argc, argv);
  if (!parsed.ok()) {
    std::fprintf(stderr, "ann_bench: %s\n", parsed.status().message().c_str());
    return 2;
  }
  const Options& opt = *parsed;

  Dataset ds;
  Status s = LoadDataset(opt, &ds);
  if (!s.ok()) {
    std::fprintf(stderr, "ann_bench: %s\n", s.ToString().c_str());
    return 1;
  }

  // Every configuration is checked before the slow part starts, so a typo costs seconds; with
  // --runs the runners are made again for every run (each is freed after its sweep).
  auto make_runners = [&](std::vector<std::unique_ptr<Runner>>* runners) -> bool {
    runners->clear();
    for (size_t m : opt.hnswlib_m)
      runners->push_back(std::make_unique<HnswlibBenchRunner>(m, opt.ef_construction, ds.metric));
    for (const std::string& f : opt.fathom) {
      Result<std::unique_ptr<Index>> probe = MakeIndex(f, ds.base.cols, ds.metric);
      if (!probe.ok()) {
        std::fprintf(stderr, "ann_bench: --fathom: %s\n", probe.status().message().c_str());
        return false;
      }
      if (opt.isas.empty()) runners->push_back(std::make_unique<FathomRunner>(f, ds.metric, opt.rerank));
      for (simd::Isa isa : opt.isas) runners->push_back(std::make_unique<FathomRunner>(f, ds.metric, opt.rerank, isa));
    }
    for (const std::string& spec : opt.tuned) {
      const size_t at = spec.rfind('@');
      const double target = at == std::string::npos ? 0 : std::atof(spec.c_str() + at + 1);
      if (at == std::string::npos || !(target > 0 && target <= 1) || !MakeIndex(spec.substr(0, at), ds.base.cols, ds.metric).ok()) {
        std::fprintf(stderr, "ann_bench: --tuned '%s': expected FACTORY@TARGET, e.g. 'HNSW32,SQ8@0.9'\n", spec.c_str());
        return false;
      }
      runners->push_back(std::make_unique<FathomTunedRunner>(spec.substr(0, at), target, ds.metric));
    }
    for (const std::string& spec : opt.flann) {
      Result<std::unique_ptr<FlannRunner>> r = FlannRunner::Create(spec, ds.metric);
      if (!r.ok()) {
        std::fprintf(stderr, "ann_bench: --flann: %s\n", r.status().message().c_str());
        return false;
      }
      runners->push_back(std::move(r).value());
    }
    for (const std::string& spec : opt.faiss) {
      Result<std::unique_ptr<FaissRunner>> r =
          FaissRunner::Create(spec, opt.ef_construction, ds.metric, opt.rerank, opt.k);
      if (!r.ok()) {
        std::fprintf(stderr, "ann_bench: --faiss: %s\n", r.status().message().c_str());
        return false;
      }
      runners->push_back(std::move(r).value());
    }
    return true;
  };
  std::vector<std::unique_ptr<Runner>> runners;
  if (!make_runners(&runners)) return 2;

  s = ComputeGroundTruth(opt, &ds);
  if (!s.ok()) {
    std::fprintf(stderr, "ann_bench: %s\n", s.ToString().c_str());
    return 1;
  }

  std::printf("# ann_bench: %s\n", ds.description.c_str());
  std::printf("# ground truth: %s\n", ds.gt_description.c_str());
  std::printf(
      "# build: %d threads per library; search: one query per call, one thread (OpenMP and "
      "OpenBLAS at 1); QPS = median of %d passes\n",
      opt.build_threads, opt.repeats);
  std::printf(
      "# exact (Flat) indexes are timed on the first %zu queries; recall@%zu counts ties with the "
      "true %zu-th neighbour as hits\n",
      std::min(opt.flat_nq, ds.queries.rows), opt.k, opt.k);
  std::printf(
      "# CPU: %s (%ld online); hnswlib 0.6.2 compiled -O3 -mavx2 -mfma -mf16c, kernels: %s; "
      "Faiss %d.%d.%d (Debian build)\n",
      CpuModel().c_str(), sysconf(_SC_NPROCESSORS_ONLN), HnswlibRunner::KernelDescription().c_str(),
      FAISS_VERSION_MAJOR, FAISS_VERSION_MINOR, FAISS_VERSION_PATCH);
  std::printf("# Fathom kernels: %s%s (this CPU runs up to %s)\n",
              opt.isas.empty() ? simd::IsaName(simd::Active().isa) : "per index, after '@'",
              opt.isas.empty() && std::getenv("FATHOM_SIMD") != nullptr ? " (FATHOM_SIMD)" : "",
              simd::IsaName(simd::BestSupportedIsa()));
  std::printf(
      "# mem_MB: structures each library holds (Fathom: memory_bytes(); others counted the same "
      "way, "
      "see the code); rss_MB: resident-set growth over the build\n\n");
  PrintTableHeader();

  std::vector<std::vector<std::vector<Point>>> runs;  // per run, per index: its curve
  std::vector<std::vector<Point>> curves;              // every curve of every run (JSON)
  bool failed = false;
  for (int run = 0; run < opt.runs; ++run) {
    if (run > 0) {
      std::printf("\n# run %d of %d\n", run + 1, opt.runs);
      if (!make_runners(&runners)) return 2;
    }
    std::vector<std::vector<Point>> this_run;
    for (std::unique_ptr<Runner>& runner : runners) {
      Result<std::vector<Point>> points = Measure(*runner, ds, opt);
      if (!points.ok()) {
        // One broken configuration should not cost the others' numbers.
        std::printf("%-8s %-22s FAILED: %s\n", runner->library().c_str(), runner->index().c_str(),
                    points.status().ToString().c_str());
        std::fflush(stdout);
        failed = true;
      } else {
        for (Point& p : *points) p.run = run;
        this_run.push_back(std::move(points).value());
      }
      runner.reset();  // free this index before building the next: memory and caches start clean
    }
    PrintRatios(this_run, opt);
    curves.insert(curves.end(), this_run.begin(), this_run.end());
    runs.push_back(std::move(this_run));
  }
  if (runs.size() > 1 && !failed) PrintSpread(runs);
  if (!opt.json_path.empty()) {
    s = WriteJson(opt.json_path, curves);
    if (!s.ok()) {
      std::fprintf(stderr, "ann_bench: %s\n", s.ToString().c_str());
      return 1;
    }
    std::fprintf(stderr, "wrote %s\n", opt.json_path.c_str());
  }
  return failed ? 1 : 0;
}

}  // namespace
}  // namespace fathom::bench

int main(int argc, char** argv) {
  return fathom::bench::Run(argc, argv);
}
