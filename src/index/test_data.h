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
// Mean fraction of the true k neighbours found among the k returned labels.
double Recall(const std::vector<std::vector<label_t>>& truth, const std::vector<label_t>& found,
              size_t k);

}  // namespace fathom::testing
