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
// A query is rotated and quantised to 4 bits per dimension once, relative to the mean m of the
// centres: s0 = R(q - m). Against centre c, s = s0 - R(c - m), so
//   sum_i (2 b_i - 1) s_i = sum_i (2 b_i - 1) s0_i - sum_i (2 b_i - 1) R(c - m)_i,
// and the second term is a constant of the code, computed when it is encoded; |s|^2 is one dot
// product per centre the query meets. The first term is four AND + popcount passes over D' bits
// (simd::Kernels::rbq_dot): ~50 instructions for 784 dimensions, where a float32 distance moves
// 3 KB.
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
  // What re-ranking uses: at 1.9 standard deviations ~3% of candidates are wrongly ruled out
  // (recall@10 capped at 0.987 on 128-d CNN features); at 3, ~0.1% (0.997).
  static constexpr float kRerankEpsilon = 3.0f;
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
  // min(max_centres, n / kPointsPerCentre) centres, or the mean when that is fewer than two
  // (IVF codes residuals to its lists' centroids: one centre, max_centres 1).
  Status Train(size_t n, const float* x, uint64_t seed = 0x5ab17c0deull, size_t max_centres = kMaxCentres);
  // The mean m of the centres (queries are rotated relative to it).
  const std::vector<float>& centre_mean() const { return mean_; }
  // out (padded_dim() floats) = R x, x zero-padded. R is linear: R(q - c) = R q - R c, which
  // lets IVF rotate a query once and subtract each probed list's rotated centroid.
  void RotateVector(const float* x, float* out) const;
  // False when a code's factors are not finite or name a centre the quantizer lacks (a file
  // that would make Estimate read out of bounds).
  bool ValidCode(const uint8_t* code) const;

  // Codes x relative to its nearest centre.
  void Encode(const float* x, uint8_t* code) const;

  // Per-search state: the rotated, quantised query and, per centre, its distance to the centre
  // (made on first use; a Query serves one search at a time).
  struct Query {
    std::vector<float> rotated;    // s0 = R(q - m), D' floats
    std::vector<uint64_t> planes;  // kQueryBits bit planes of words() words
    std::vector<uint8_t> levels;   // working memory: the 4-bit values
    float lo = 0, delta = 0;       // s0_i ~ lo + delta u_i, u_i in 0..15
    float sum_u = 0;               // sum of u_i
    float norm2 = 0;               // |s0|^2
    struct PerCentre {
      float norm2, norm;  // |q - c|^2, |q - c|
      uint32_t stamp;
    };
    mutable std::vector<PerCentre> per_centre;
    mutable uint32_t stamp = 0;
  };
  void Prepare(const float* q, Query* out) const;
  // The same, from out->rotated already holding R(q - m) (padded_dim() floats).
  void PrepareRotated(Query* out) const;
  // Estimated squared L2 distance between the query and the coded vector; *bound (optional)
  // gets the error bound of the estimate (|true - estimate| <= bound with high probability).
  float Estimate(const Query& q, const uint8_t* code, float* bound = nullptr) const {
    Factors f;
    std::memcpy(&f, code + padded_ / 8, sizeof(f));
    if (q.per_centre[f.centre].stamp != q.stamp) PrepareCentre(q, f.centre);
    const auto& p = q.per_centre[f.centre];
    const uint32_t dot = rbq_dot_(reinterpret_cast<const uint64_t*>(code), q.planes.data(), padded_ / 64);
    // sqrt(D') <x, s> = sum_i (2 b_i - 1) s0_i - shift, with s0_i = lo + delta u_i.
    const float xs = 2 * q.delta * float(dot) + q.lo * (2 * f.ones - float(padded_)) - q.delta * q.sum_u - f.shift;
    if (bound != nullptr) *bound = f.error * p.norm * kEpsilon0;
    return f.add + p.norm2 + f.rescale * xs;
  }
  // The error bound alone, at `epsilon` standard deviations (the code's centre must have been met
  // by Estimate for this query).
  float Bound(const Query& q, const uint8_t* code, float epsilon = kEpsilon0) const {
    Factors f;
    std::memcpy(&f, code + padded_ / 8, sizeof(f));
    return f.error * q.per_centre[f.centre].norm * epsilon;
  }

  Status Serialize(ByteSink& out) const;
  Status Deserialize(ByteSource& in);
  size_t memory_bytes() const {
    return (centres_.capacity() + offsets_.capacity() + signs_.capacity()) * sizeof(float);
  }

 private:
  struct Factors {
    float add;      // |r|^2
    float rescale;  // -2 |r| / (<x, r/|r|> sqrt(D'))
    float ones;     // number of set bits
    float error;    // 2 |r| sqrt((1 - ip^2) / ip^2) / sqrt(D' - 1), times |s| eps0 at query time
    uint32_t centre;
    float shift;    // sum_i (2 b_i - 1) R(c - m)_i
  };
  static constexpr int kRounds = 4;
  // In place: D' floats (the input zero-padded).
  void Rotate(float* v) const;
  // The query's distance to centre c.
  void PrepareCentre(const Query& q, uint32_t c) const;
  void FinishCentres();

  size_t dim_, padded_, block_;
  uint32_t (*rbq_dot_)(const uint64_t*, const uint64_t*, size_t);  // simd::Active().rbq_dot
  bool trained_ = false;
  std::vector<float> centres_;          // centres() * dim
  std::vector<float> mean_;             // m, the mean of the centres
  std::vector<float> offsets_;          // centres() * D': R(c - m)
  std::vector<float> offset_norms_;     // |c - m|^2
  std::vector<float> signs_;            // kRounds * 2 * D' values of +-1
};

}  // namespace fathom
