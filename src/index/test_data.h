// Test data for index tests: clustered synthetic sets, a Fashion-MNIST subset, exact ground
// truth by brute force (double precision, independent of the code under test) and recall.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fathom/index.h"

namespace fathom::testing {

struct Dataset {
  size_t dim = 0;
  std::vector<float> base;     // n * dim
  std::vector<float> queries;  // nq * dim
  size_t n() const { return base.size() / dim; }
  size_t nq() const { return queries.size() / dim; }
};

// Gaussian clusters around random centres: harder for graphs than uniform noise.
Dataset Clustered(size_t n, size_t nq, size_t dim, size_t clusters, uint32_t seed);
// The first n training and nq test images of Fashion-MNIST; empty when the dataset is missing.
Dataset FashionMnist(size_t n, size_t nq);

// Exact k-NN labels (row indices) per query, by a plain double-precision loop.
std::vector<std::vector<label_t>> BruteForce(const Dataset& data, size_t k, Metric metric,
                                             const std::vector<bool>* alive = nullptr);
// The library's distance between a and b, by hand in double precision: squared L2, negated
// inner product, or 1 - cosine similarity. An oracle independent of the kernels and BLAS.
double ReferenceDistance(Metric metric, const float* a, const float* b, size_t dim);
// Checks a result list against ReferenceDistance: each returned distance is the reference
// distance of the returned label, and the i-th returned distance is the i-th smallest reference
// distance over `allowed` rows (all rows when null). Returns a description of the first
// mismatch, or "" when everything agrees within `tolerance` (relative, at least absolute 1e-4).
std::string CheckAgainstReference(const Dataset& data, Metric metric, size_t q, size_t k,
                                  const float* distances, const label_t* labels,
                                  const std::vector<bool>* allowed = nullptr, double tolerance = 1e-4);
// Mean fraction of the true k neighbours found among the k returned labels.
double Recall(const std::vector<std::vector<label_t>>& truth, const std::vector<label_t>& found,
              size_t k);

}  // namespace fathom::testing
