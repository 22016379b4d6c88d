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

double ReferenceDistance(Metric metric, const float* a, const float* b, size_t dim) {
  double l2 = 0, l1 = 0, dot = 0, na = 0, nb = 0;
  for (size_t j = 0; j < dim; ++j) {
    const double x = a[j], y = b[j];
    l2 += (x - y) * (x - y);
    l1 += std::fabs(x - y);
    dot += x * y;
    na += x * x;
    nb += y * y;
  }
  if (metric == Metric::kL2) return l2;
  if (metric == Metric::kL1) return l1;
  if (metric == Metric::kInnerProduct) return -dot;
  return 1 - dot / (std::sqrt(na) * std::sqrt(nb) + 1e-30);
}

std::string CheckAgainstReference(const Dataset& data, Metric metric, size_t q, size_t k,
                                  const float* distances, const label_t* labels,
                                  const std::vector<bool>* allowed, double tolerance) {
  const float* qv = data.queries.data() + q * data.dim;
  std::vector<double> all;
  for (size_t i = 0; i < data.n(); ++i) {
    if (allowed == nullptr || (*allowed)[i]) {
      all.push_back(ReferenceDistance(metric, qv, data.base.data() + i * data.dim, data.dim));
    }
  }
  std::sort(all.begin(), all.end());
  auto close = [&](double got, double want) {
    return std::fabs(got - want) <= std::max(1e-4, tolerance * std::fabs(want));
  };
  for (size_t i = 0; i < std::min(k, all.size()); ++i) {
    const label_t l = labels[i];
    if (l < 0 || size_t(l) >= data.n()) return "query " + std::to_string(q) + " rank " + std::to_string(i) + ": label " + std::to_string(l);
    const double own = ReferenceDistance(metric, qv, data.base.data() + size_t(l) * data.dim, data.dim);
    if (!close(distances[i], own)) {
      return "query " + std::to_string(q) + " rank " + std::to_string(i) + ": distance " +
             std::to_string(distances[i]) + " but the reference distance of label " + std::to_string(l) +
             " is " + std::to_string(own);
    }
    if (!close(distances[i], all[i])) {
      return "query " + std::to_string(q) + " rank " + std::to_string(i) + ": distance " +
             std::to_string(distances[i]) + ", the true " + std::to_string(i) + "-th is " + std::to_string(all[i]);
    }
  }
  return "";
}

std::vector<std::vector<label_t>> BruteForce(const Dataset& data, size_t k, Metric metric,
                                             const std::vector<bool>* alive) {
  std::vector<std::vector<label_t>> truth(data.nq());
  std::vector<std::pair<double, label_t>> all;
  for (size_t q = 0; q < data.nq(); ++q) {
    const float* qv = data.queries.data() + q * data.dim;
    all.clear();
    for (size_t i = 0; i < data.n(); ++i) {
      if (alive != nullptr && !(*alive)[i]) continue;
      all.emplace_back(ReferenceDistance(metric, qv, data.base.data() + i * data.dim, data.dim),
                       static_cast<label_t>(i));
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
