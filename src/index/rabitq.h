// RaBitQ (Gao & Long, SIGMOD 2024): 1-bit codes with an unbiased distance estimator and an
// error bound.
//
// A vector o is coded relative to the nearest of a few centres c (k-means on the training
// sample; the estimator's error grows with |o - c|, so clustered data needs centres near its
// clusters, as IVF lists have): r = R(o - c), with R a random rotation, padded to D' = dim
// rounded up to 64, and the code keeps one bit per rotated dimension (the sign of r_i), the
// centre's number and four floats. The quantised unit vector x = sign(r) / sqrt(D') estimates
// <r / |r|, s / |s|> for a query s = R(q - c) as <x, s / |s|> / <x, r / |r|>, which is
// unbiased, with an error below eps0 * sqrt((1 - <x, r/|r|>^2) / <x, r/|r|>^2) / sqrt(D' - 1)
// with high probability (eps0 = 1.9, the paper's choice: about 1.9 standard deviations). The
// squared L2 distance follows: |o - q|^2 = |r|^2 + |s|^2 - 2 <r, s>.
//
// A query is rotated once (R(q - c) = Rq - Rc, with Rc kept per centre) and, for each centre it
// meets, quantised to 4 bits per dimension on first use, so the inner product of a code's bits
// with it is four AND + popcount passes over D' bits (simd::Kernels::rbq_dot): ~50 instructions
// for 784 dimensions, where a float32 distance moves 3 KB.
//
// The rotation: four rounds of random sign flips and normalised fast Walsh-Hadamard transforms
// on the first and the last power-of-two block of the D' dimensions (blocks overlap when D' is
// not a power of two, so every coordinate mixes with all). Orthogonal, O(D' log D') per vector,
// and its signs are stored with the quantizer, so a file decodes the same on any build.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "fathom/status.h"

namespace fathom {

class ByteSink;
class ByteSource;

class RaBitQuantizer {
 public:
  // The paper's confidence constant for the error bound.
  static constexpr float kEpsilon0 = 1.9f;
  static constexpr int kQueryBits = 4;
  // Centres: one per this many training points, at most kMaxCentres.
  static constexpr size_t kPointsPerCentre = 64;
  static constexpr size_t kMaxCentres = 64;

  explicit RaBitQuantizer(size_t dim = 0);
  size_t dim() const { return dim_; }
  size_t padded_dim() const { return padded_; }
  size_t words() const { return padded_ / 64; }
  size_t centres() const { return centres_.size() / (dim_ ? dim_ : 1); }
  // Bytes per code: the sign bits, then the factors (Factors).
  size_t code_size() const { return padded_ / 8 + sizeof(Factors); }
  bool trained() const { return trained_; }

  // Draws the rotation from `seed` and trains the centres on x (n rows): k-means with
  // min(kMaxCentres, n / kPointsPerCentre) centres, or the mean when that is fewer than two.
  Status Train(size_t n, const float* x, uint64_t seed = 0x5ab17c0deull);

  // Codes x relative to its nearest centre.
  void Encode(const float* x, uint8_t* code) const;

  // Per-search state: the rotated query and, per centre, its quantised form (made on first use;
  // a Query serves one search at a time).
  struct Query {
    std::vector<float> rotated;      // Rq, D' floats
    struct PerCentre {
      float lo, delta, sum_u, norm2, norm;
      uint32_t stamp;
    };
    mutable std::vector<PerCentre> per_centre;
    mutable std::vector<uint64_t> planes;  // per centre, kQueryBits planes of words() words
    mutable uint32_t stamp = 0;
  };
  void Prepare(const float* q, Query* out) const;
  // Estimated squared L2 distance between the query and the coded vector; *bound (optional)
  // gets the error bound of the estimate (|true - estimate| <= bound with high probability).
  float Estimate(const Query& q, const uint8_t* code, float* bound = nullptr) const;
  // The error bound alone (the code's centre must have been met by Estimate for this query).
  float Bound(const Query& q, const uint8_t* code) const {
    Factors f;
    std::memcpy(&f, code + padded_ / 8, sizeof(f));
    return f.error * q.per_centre[f.centre].norm * kEpsilon0;
  }

  Status Serialize(ByteSink& out) const;
  Status Deserialize(ByteSource& in);
  size_t memory_bytes() const {
    return (centres_.capacity() + rotated_centres_.capacity() + signs_.capacity()) * sizeof(float);
  }

 private:
  struct Factors {
    float add;      // |r|^2
    float rescale;  // -2 |r| / (<x, r/|r|> sqrt(D'))
    float ones;     // number of set bits
    float error;    // 2 |r| sqrt((1 - ip^2) / ip^2) / sqrt(D' - 1), times |s| eps0 at query time
    uint32_t centre;
  };
  static constexpr int kRounds = 4;
  // In place: D' floats (the input zero-padded).
  void Rotate(float* v) const;
  // The query's quantised form against centre c.
  void PrepareCentre(const Query& q, uint32_t c) const;
  void FinishCentres();

  size_t dim_, padded_, block_;
  bool trained_ = false;
  std::vector<float> centres_;          // centres() * dim
  std::vector<float> centre_norms_;     // |c|^2
  std::vector<float> rotated_centres_;  // centres() * D': Rc
  std::vector<float> signs_;            // kRounds * 2 * D' values of +-1
};

}  // namespace fathom
