#include "index/test_data.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <unordered_set>

#include "util/vector_file.h"

namespace fathom::testing {

Dataset Clustered(size_t n, size_t nq, size_t dim, size_t clusters, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> unit(0.f, 1.f);
  std::vector<float> centres(clusters * dim);
  for (auto& c : centres) c = unit(rng) * 4.f;
  std::uniform_int_distribution<size_t> pick(0, clusters - 1);
  auto fill = [&](std::vector<float>& out, size_t rows) {
    out.resize(rows * dim);
    for (size_t i = 0; i < rows; ++i) {
      const float* c = centres.data() + pick(rng) * dim;
      for (size_t j = 0; j < dim; ++j) out[i * dim + j] = c[j] + unit(rng);
    }
  };
  Dataset d;
  d.dim = dim;
  fill(d.base, n);
  fill(d.queries, nq);
  return d;
}

Dataset FashionMnist(size_t n, size_t nq) {
  Dataset d;
  auto base = ReadIdxImages("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", n);
  auto queries = ReadIdxImages("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz", nq);
  if (!base.ok() || !queries.ok()) return d;
  d.dim = base->cols;
  d.base = std::move(base->data);
  d.queries = std::move(queries->data);
  return d;
}

std::vector<std::vector<label_t>> BruteForce(const Dataset& data, size_t k, Metric metric,
                                             const std::vector<bool>* alive) {
  const size_t dim = data.dim;
  auto norm = [&](const float* v) {
    double s = 0;
    for (size_t j = 0; j < dim; ++j) s += double(v[j]) * v[j];
    return std::sqrt(s);
  };
  std::vector<std::vector<label_t>> truth(data.nq());
  std::vector<std::pair<double, label_t>> all;
  for (size_t q = 0; q < data.nq(); ++q) {
    const float* qv = data.queries.data() + q * dim;
    double qn = norm(qv);
    all.clear();
    for (size_t i = 0; i < data.n(); ++i) {
      if (alive != nullptr && !(*alive)[i]) continue;
      const float* v = data.base.data() + i * dim;
      double l2 = 0, dot = 0;
      for (size_t j = 0; j < dim; ++j) {
        double diff = double(qv[j]) - v[j];
        l2 += diff * diff;
        dot += double(qv[j]) * v[j];
      }
      double dist = metric == Metric::kL2             ? l2
                    : metric == Metric::kInnerProduct ? -dot
                                                      : 1 - dot / (qn * norm(v) + 1e-30);
      all.emplace_back(dist, static_cast<label_t>(i));
    }
    size_t kk = std::min(k, all.size());
    std::partial_sort(all.begin(), all.begin() + kk, all.end());
    for (size_t i = 0; i < kk; ++i) truth[q].push_back(all[i].second);
  }
  return truth;
}

double Recall(const std::vector<std::vector<label_t>>& truth, const std::vector<label_t>& found,
              size_t k) {
  double hits = 0, total = 0;
  for (size_t q = 0; q < truth.size(); ++q) {
    std::unordered_set<label_t> t(truth[q].begin(), truth[q].end());
    for (size_t i = 0; i < k; ++i) hits += t.count(found[q * k + i]);
    total += truth[q].size();
  }
  return total == 0 ? 1.0 : hits / total;
}

}  // namespace fathom::testing
