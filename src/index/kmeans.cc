#include "index/kmeans.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

#include "simd/distance.h"

namespace fathom {
namespace {
constexpr size_t kPointBlock = 1024;
constexpr size_t kCentroidBlock = 4096;
}  // namespace

std::vector<float> RowNorms(size_t k, size_t dim, const float* rows) {
  const auto& kernels = simd::Active();
  std::vector<float> norms(k);
  for (size_t c = 0; c < k; ++c) norms[c] = kernels.dot(rows + c * dim, rows + c * dim, dim);
  return norms;
}

void AssignNearest(size_t n, size_t dim, const float* x, size_t k, const float* centroids,
                   const float* centroid_norms, uint32_t* assign, float* dist) {
  if (n == 0 || k == 0) return;
  const auto& kernels = simd::Active();
  if (n < 8) {
    // A few points (single queries): direct kernels beat a GEMM call.
    for (size_t i = 0; i < n; ++i) {
      float best = std::numeric_limits<float>::infinity();
      uint32_t arg = 0;
      for (size_t c = 0; c < k; ++c) {
        const float d = kernels.l2_sqr(x + i * dim, centroids + c * dim, dim);
        if (d < best) best = d, arg = uint32_t(c);
      }
      assign[i] = arg;
      if (dist) dist[i] = best;
    }
    return;
  }
  std::vector<float> dots(kPointBlock * std::min(k, kCentroidBlock));
  std::vector<float> best(kPointBlock);
  for (size_t i0 = 0; i0 < n; i0 += kPointBlock) {
    const size_t bn = std::min(kPointBlock, n - i0);
    std::fill(best.begin(), best.begin() + bn, std::numeric_limits<float>::infinity());
    for (size_t c0 = 0; c0 < k; c0 += kCentroidBlock) {
      const size_t bk = std::min(kCentroidBlock, k - c0);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(bn), int(bk), int(dim), 1.0f,
                  x + i0 * dim, int(dim), centroids + c0 * dim, int(dim), 0.0f, dots.data(), int(bk));
      for (size_t i = 0; i < bn; ++i) {
        const float* row = dots.data() + i * bk;
        float b = best[i];
        uint32_t arg = c0 == 0 ? 0 : assign[i0 + i];
        for (size_t c = 0; c < bk; ++c) {
          const float d = centroid_norms[c0 + c] - 2 * row[c];
          if (d < b) b = d, arg = uint32_t(c0 + c);
        }
        best[i] = b;
        assign[i0 + i] = arg;
      }
    }
    if (dist) {
      for (size_t i = 0; i < bn; ++i) {
        const float* p = x + (i0 + i) * dim;
        dist[i0 + i] = std::max(0.0f, best[i] + kernels.dot(p, p, dim));
      }
    }
  }
}

Result<std::vector<float>> TrainKMeans(size_t n, size_t dim, const float* x, size_t k,
                                       const KMeansOptions& options) {
  if (k == 0) return Status::InvalidArgument("k-means needs at least one centroid");
  if (n < k) {
    return Status::InvalidArgument("k-means with " + std::to_string(k) + " centroids needs at least " +
                                   std::to_string(k) + " training points, got " + std::to_string(n));
  }
  std::mt19937_64 rng(options.seed);
  // Sample (without replacement) when there are more points than the centroids need.
  std::vector<float> sample;
  const float* data = x;
  size_t m = n;
  const size_t cap = std::max<size_t>(k, k * options.max_points_per_centroid);
  if (n > cap) {
    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    for (size_t i = 0; i < cap; ++i) std::swap(order[i], order[i + rng() % (n - i)]);
    std::sort(order.begin(), order.begin() + cap);
    sample.resize(cap * dim);
    for (size_t i = 0; i < cap; ++i) std::copy(x + order[i] * dim, x + (order[i] + 1) * dim, sample.begin() + i * dim);
    data = sample.data();
    m = cap;
  }
  // Start from k distinct random points.
  std::vector<float> centroids(k * dim);
  {
    std::vector<size_t> order(m);
    std::iota(order.begin(), order.end(), 0);
    for (size_t i = 0; i < k; ++i) std::swap(order[i], order[i + rng() % (m - i)]);
    for (size_t c = 0; c < k; ++c) {
      std::copy(data + order[c] * dim, data + (order[c] + 1) * dim, centroids.begin() + c * dim);
    }
  }
  std::vector<uint32_t> assign(m);
  std::vector<double> sums(k * dim);
  std::vector<size_t> counts(k);
  for (int it = 0; it < options.iterations; ++it) {
    const std::vector<float> norms = RowNorms(k, dim, centroids.data());
    AssignNearest(m, dim, data, k, centroids.data(), norms.data(), assign.data());
    std::fill(sums.begin(), sums.end(), 0.0);
    std::fill(counts.begin(), counts.end(), 0);
    for (size_t i = 0; i < m; ++i) {
      double* s = sums.data() + size_t{assign[i]} * dim;
      const float* p = data + i * dim;
      for (size_t j = 0; j < dim; ++j) s[j] += p[j];
      ++counts[assign[i]];
    }
    for (size_t c = 0; c < k; ++c) {
      if (counts[c] == 0) continue;
      for (size_t j = 0; j < dim; ++j) centroids[c * dim + j] = float(sums[c * dim + j] / double(counts[c]));
    }
    // Empty clusters: move each next to the centroid of the largest cluster, nudged apart in
    // opposite directions, and let that cluster's points split between the two.
    for (size_t c = 0; c < k; ++c) {
      if (counts[c] != 0) continue;
      size_t big = size_t(std::max_element(counts.begin(), counts.end()) - counts.begin());
      if (counts[big] < 2) break;
      for (size_t j = 0; j < dim; ++j) {
        const float v = centroids[big * dim + j];
        const float eps = (j % 2 ? 1 : -1) * (std::fabs(v) * 1e-3f + 1e-6f);
        centroids[c * dim + j] = v + eps;
        centroids[big * dim + j] = v - eps;
      }
      counts[c] = counts[big] / 2;
      counts[big] -= counts[c];
    }
    if (options.spherical) {
      for (size_t c = 0; c < k; ++c) simd::Normalize(centroids.data() + c * dim, dim);
    }
  }
  return centroids;
}

}  // namespace fathom
