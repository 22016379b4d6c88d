// k-means (Lloyd's algorithm) and nearest-centroid assignment: the shared core of the IVF
// coarse quantizer and the product quantizer's sub-codebooks.
//
// Assignment computes |x|^2 - 2 x.c + |c|^2 block by block with BLAS sgemm (OpenBLAS), so a
// training round over n points and k centroids costs one n x k x d matrix product. Training
// samples at most `max_points_per_centroid` * k points (Faiss's default of 256), starts from k
// distinct random points, and splits the largest cluster to refill an empty one (so every
// centroid ends up in use when there are at least k distinct points).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "fathom/status.h"

namespace fathom {

struct KMeansOptions {
  int iterations = 20;
  uint32_t seed = 1234;
  size_t max_points_per_centroid = 256;
  // Renormalise centroids to unit length after each round (spherical k-means, for cosine and
  // inner product on normalised data).
  bool spherical = false;
};

// Trains k centroids (k * dim floats, row-major) on n points. InvalidArgument when n < k.
Result<std::vector<float>> TrainKMeans(size_t n, size_t dim, const float* x, size_t k,
                                       const KMeansOptions& options = {});

// For each of the n points, the index of its nearest centroid (squared L2) and, when `dist` is
// not null, the squared distance to it. `centroid_norms` holds |c|^2 per centroid.
void AssignNearest(size_t n, size_t dim, const float* x, size_t k, const float* centroids,
                   const float* centroid_norms, uint32_t* assign, float* dist = nullptr);

// |c|^2 of each of the k rows.
std::vector<float> RowNorms(size_t k, size_t dim, const float* rows);

}  // namespace fathom
