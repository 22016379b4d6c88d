// tree_bench: exact k-NN in low dimensions — Fathom's KDTree against nanoflann (Debian
// libnanoflann-dev, the single k-d tree most C++ users pick) and Fathom's Flat, on the same
// points, in one process, one query per call on one thread.
//
//   tree_bench [--n 1000000] [--nq 10000] [--dims 3,8] [--k 10] [--leaf 16] [--flat-nq 200]
//              [--repeats 3] [--json FILE]
//
// Data: uniform in [-1, 1]^d and Gaussian clusters (100 centres), queries drawn the same way.
// Recall is checked against Flat's exact answers for every query (ties: a result counts when its
// distance is within 1e-5 of the true k-th). QPS is the median of --repeats passes.
#include <nanoflann.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "fathom/index.h"

using namespace fathom;

namespace {

struct Options {
  size_t n = 1000000, nq = 10000, k = 10, flat_nq = 200;
  std::vector<int> dims = {3, 8};
  int leaf = 16, repeats = 3;
  std::string json;
};

std::vector<float> Make(size_t n, size_t d, bool clustered, uint32_t seed, uint32_t centre_seed) {
  std::mt19937 rng(seed);
  std::vector<float> x(n * d);
  if (!clustered) {
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (float& v : x) v = u(rng);
    return x;
  }
  std::mt19937 crng(centre_seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> centres(100 * d);
  for (float& v : centres) v = u(crng);
  std::normal_distribution<float> g(0.0f, 0.05f);
  for (size_t i = 0; i < n; ++i) {
    const size_t c = rng() % 100;
    for (size_t j = 0; j < d; ++j) x[i * d + j] = centres[c * d + j] + g(rng);
  }
  return x;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <class Fn>
double TimeQps(size_t nq, int repeats, Fn fn) {
  std::vector<double> qps;
  for (int r = 0; r < repeats; ++r) {
    const auto t = std::chrono::steady_clock::now();
    for (size_t q = 0; q < nq; ++q) fn(q);
    qps.push_back(double(nq) / std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count());
  }
  return Median(qps);
}

struct Cloud {
  const float* pts;
  size_t n, d;
  size_t kdtree_get_point_count() const { return n; }
  float kdtree_get_pt(size_t i, size_t j) const { return pts[i * d + j]; }
  template <class BBox>
  bool kdtree_get_bbox(BBox&) const { return false; }
};

struct Row {
  std::string data, library, index;
  int dim;
  double build_s, qps, recall;
  size_t nq;
};

double Exact(const float* a, const float* b, size_t d) {
  double s = 0;
  for (size_t j = 0; j < d; ++j) s += (double(a[j]) - b[j]) * (double(a[j]) - b[j]);
  return s;
}

// Fraction of result slots holding a point at least as close as the true k-th neighbour, with
// every distance recomputed in double precision (no library's rounding decides a tie).
template <class Label>
double Recall(const std::vector<double>& truth_kth, const std::vector<float>& base, const std::vector<float>& queries,
              size_t d, const std::vector<Label>& labels, size_t nq, size_t k) {
  size_t hits = 0;
  for (size_t q = 0; q < nq; ++q) {
    for (size_t j = 0; j < k; ++j) {
      const int64_t l = int64_t(labels[q * k + j]);
      if (l < 0) continue;
      hits += Exact(&queries[q * d], &base[size_t(l) * d], d) <= truth_kth[q] * (1 + 1e-6) + 1e-12;
    }
  }
  return double(hits) / double(nq * k);
}

template <int D>
Row RunNanoflann(const std::vector<float>& base, const std::vector<float>& queries, const Options& opt, size_t d,
                 const std::vector<double>& kth) {
  using Tree = nanoflann::KDTreeSingleIndexAdaptor<nanoflann::L2_Simple_Adaptor<float, Cloud>, Cloud, D, uint32_t>;
  Cloud cloud{base.data(), base.size() / d, d};
  const auto t = std::chrono::steady_clock::now();
  Tree tree(int(d), cloud, nanoflann::KDTreeSingleIndexAdaptorParams(size_t(opt.leaf)));
  tree.buildIndex();
  const double build = std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  std::vector<float> dist(opt.nq * opt.k);
  std::vector<uint32_t> idx(opt.nq * opt.k);
  const double qps = TimeQps(opt.nq, opt.repeats, [&](size_t q) {
    nanoflann::KNNResultSet<float, uint32_t> rs(opt.k);
    rs.init(&idx[q * opt.k], &dist[q * opt.k]);
    tree.findNeighbors(rs, &queries[q * d], nanoflann::SearchParams(10));
  });
  return {"", "nanoflann", "KDTreeSingleIndexAdaptor leaf=" + std::to_string(opt.leaf), int(d), build, qps,
          Recall(kth, base, queries, d, idx, opt.nq, opt.k), opt.nq};
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string f = argv[i], v = argv[i + 1];
    if (f == "--n") opt.n = std::stoul(v);
    else if (f == "--nq") opt.nq = std::stoul(v);
    else if (f == "--k") opt.k = std::stoul(v);
    else if (f == "--leaf") opt.leaf = std::stoi(v);
    else if (f == "--flat-nq") opt.flat_nq = std::stoul(v);
    else if (f == "--repeats") opt.repeats = std::stoi(v);
    else if (f == "--json") opt.json = v;
    else if (f == "--dims") {
      opt.dims.clear();
      for (size_t p = 0; p < v.size();) {
        size_t c = v.find(',', p);
        opt.dims.push_back(std::stoi(v.substr(p, c - p)));
        p = c == std::string::npos ? v.size() : c + 1;
      }
    } else {
      std::fprintf(stderr, "tree_bench: unknown option %s\n", f.c_str());
      return 2;
    }
  }
  std::printf("# tree_bench: n %zu, %zu queries (Flat: %zu), k %zu, one query per call, one thread, SIMD %s\n",
              opt.n, opt.nq, opt.flat_nq, opt.k, "auto");
  std::printf("%-10s %-4s %-10s %-34s %9s %12s %8s\n", "data", "dim", "library", "index", "build_s", "QPS", "recall");
  std::vector<Row> rows;
  for (int dim : opt.dims) {
    const size_t d = size_t(dim);
    for (bool clustered : {false, true}) {
      const std::string name = clustered ? "clustered" : "uniform";
      const auto base = Make(opt.n, d, clustered, 1, 99);
      const auto queries = Make(opt.nq, d, clustered, 2, 99);
      // Exact answers (and the k-th distance per query) from Flat's batch search.
      auto flat = std::move(MakeIndex("Flat", d, Metric::kL2)).value();
      auto t = std::chrono::steady_clock::now();
      (void)flat->Add(opt.n, base.data());
      const double flat_build = std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
      std::vector<float> truth(opt.nq * opt.k);
      std::vector<label_t> truth_l(opt.nq * opt.k);
      (void)flat->Search(opt.nq, queries.data(), opt.k, truth.data(), truth_l.data());
      std::vector<double> kth(opt.nq);
      for (size_t q = 0; q < opt.nq; ++q) {
        double worst = 0;
        for (size_t j = 0; j < opt.k; ++j) worst = std::max(worst, Exact(&queries[q * d], &base[size_t(truth_l[q * opt.k + j]) * d], d));
        kth[q] = worst;
      }
      std::vector<float> dist(opt.nq * opt.k);
      std::vector<label_t> lab(opt.nq * opt.k);
      const size_t fnq = std::min(opt.flat_nq, opt.nq);
      const double flat_qps = TimeQps(fnq, opt.repeats, [&](size_t q) {
        (void)flat->Search(1, &queries[q * d], opt.k, &dist[q * opt.k], &lab[q * opt.k]);
      });
      rows.push_back({name, "fathom", "Flat", dim, flat_build, flat_qps, Recall(kth, base, queries, d, lab, fnq, opt.k), fnq});
      flat.reset();
      const std::string factory = "KDTree" + (opt.leaf == 16 ? std::string() : std::to_string(opt.leaf));
      auto kd = std::move(MakeIndex(factory, d, Metric::kL2)).value();
      t = std::chrono::steady_clock::now();
      (void)kd->Add(opt.n, base.data());
      const double kd_build = std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
      const double kd_qps = TimeQps(opt.nq, opt.repeats, [&](size_t q) {
        (void)kd->Search(1, &queries[q * d], opt.k, &dist[q * opt.k], &lab[q * opt.k]);
      });
      rows.push_back({name, "fathom", factory, dim, kd_build, kd_qps, Recall(kth, base, queries, d, lab, opt.nq, opt.k), opt.nq});
      kd.reset();
      Row nano = dim == 3 ? RunNanoflann<3>(base, queries, opt, d, kth)
                 : dim == 8 ? RunNanoflann<8>(base, queries, opt, d, kth)
                            : RunNanoflann<-1>(base, queries, opt, d, kth);
      nano.data = name;
      rows.push_back(nano);
      for (size_t r = rows.size() - 3; r < rows.size(); ++r) {
        const Row& x = rows[r];
        std::printf("%-10s %-4d %-10s %-34s %9.2f %12.0f %8.4f\n", x.data.c_str(), x.dim, x.library.c_str(),
                    x.index.c_str(), x.build_s, x.qps, x.recall);
      }
      std::printf("%-10s %-4d ratio: KDTree / nanoflann %.2f, KDTree / Flat %.1f\n", name.c_str(), dim,
                  rows[rows.size() - 2].qps / rows.back().qps, rows[rows.size() - 2].qps / rows[rows.size() - 3].qps);
      std::fflush(stdout);
    }
  }
  if (!opt.json.empty()) {
    FILE* f = std::fopen(opt.json.c_str(), "w");
    if (!f) return 1;
    std::fprintf(f, "[\n");
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& x = rows[i];
      std::fprintf(f, "  {\"data\": \"%s\", \"dim\": %d, \"library\": \"%s\", \"index\": \"%s\", \"build_s\": %.3f, "
                      "\"qps\": %.1f, \"recall\": %.5f, \"nq\": %zu}%s\n",
                   x.data.c_str(), x.dim, x.library.c_str(), x.index.c_str(), x.build_s, x.qps, x.recall, x.nq,
                   i + 1 < rows.size() ? "," : "");
    }
    std::fprintf(f, "]\n");
    std::fclose(f);
  }
  return 0;
}
