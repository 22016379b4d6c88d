// Vector codes shared by the indexes: a per-dimension 8-bit scalar quantizer and a product
// quantizer with 8-bit sub-codes (Jegou et al., 2011).
//
// Both answer distances against a float query without decoding: the scalar quantizer through
// the SIMD float x u8 dot product and a per-vector norm term, the product quantizer through a
// per-query table of m x 256 sub-distances summed over the code's bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "fathom/status.h"

namespace fathom {

class ByteSink;
class ByteSource;

// Whether n rows of dim floats fit IEEE half precision (magnitudes up to 65504): the error names
// the row, the dimension and the value, for `what` ("an FP16 index").
Status CheckHalfRange(size_t n, size_t dim, const float* x, const char* what);

// x_j ~ lo_j + scale_j * code_j, code_j in 0..2^bits - 1 (bits 8: one byte per dimension; 4: two
// dimensions per byte, the even one in the low nibble), with lo and scale per dimension, trained
// from the data's range (values outside it are clamped).
class ScalarQuantizer {
 public:
  explicit ScalarQuantizer(size_t dim = 0, int bits = 8) : dim_(dim), bits_(bits), levels_((1 << bits) - 1) {}
  size_t dim() const { return dim_; }
  int bits() const { return bits_; }
  size_t code_size() const { return bits_ == 8 ? dim_ : (dim_ + 1) / 2; }
  bool trained() const { return !lo_.empty(); }
  void Train(size_t n, const float* x);
  // Widens each trained range by `fraction` of itself plus `pad` on both sides (for ranges
  // learnt from a few points, so that later values are less often clamped).
  void Widen(float fraction, float pad);
  void Encode(const float* x, uint8_t* code) const;
  void Decode(const uint8_t* code, float* x) const;
  // |decoded x|^2: the per-vector term of an L2 distance.
  float DecodedNorm(const uint8_t* code) const;

  // Per-query preparation: distances against codes are then one SIMD dot product each.
  struct Query {
    std::vector<float> scaled;  // q_j * scale_j
    float q_lo = 0;             // <q, lo>
    float q_norm = 0;           // |q|^2
    // 4 bits: `scaled` rounded to int8 (weight = w8 * w_step), even dimensions then odd ones,
    // for the integer dot product (DotInt8).
    std::vector<int8_t> w8;
    float w_step = 0;
  };
  void Prepare(const float* q, Query* out) const;
  // <q, decoded x>.
  float Dot(const Query& q, const uint8_t* code) const;
  // 4 bits: <q, decoded x> with the query's weights rounded to int8 (one exact integer dot
  // product, VNNI where the CPU has it): for ranking, not for returned distances.
  float DotInt8(const Query& q, const uint8_t* code) const;

  Status Serialize(ByteSink& out) const;
  Status Deserialize(ByteSource& in);
  size_t memory_bytes() const { return 2 * lo_.capacity() * sizeof(float); }

 private:
  unsigned Level(const uint8_t* code, size_t j) const {
    return bits_ == 8 ? code[j] : (j % 2 ? code[j / 2] >> 4 : code[j / 2] & 0x0F);
  }

  size_t dim_;
  int bits_;
  int levels_;  // 2^bits - 1
  std::vector<float> lo_, scale_;
};

// m sub-spaces of dim/m dimensions, each with 2^bits centroids (bits 8: 256, or 4: 16 for
// fast scan); Encode writes one byte per sub-space (the centroid's number).
class ProductQuantizer {
 public:
  ProductQuantizer(size_t dim = 0, size_t m = 1, int bits = 8)
      : dim_(dim), m_(m), dsub_(m ? dim / m : 0), ksub_(size_t{1} << bits) {}
  size_t dim() const { return dim_; }
  size_t m() const { return m_; }
  size_t ksub() const { return ksub_; }
  bool trained() const { return !centroids_.empty(); }
  // Needs at least ksub() points; `iterations` of k-means per sub-quantizer.
  Status Train(size_t n, const float* x, uint32_t seed = 1234, int iterations = 15);
  void Encode(size_t n, const float* x, uint8_t* codes) const;
  void Decode(const uint8_t* code, float* x) const;
  // table[s * ksub + c] = |q_s - centroid_{s,c}|^2 (L2) or <q_s, centroid_{s,c}> (inner product).
  void L2Table(const float* q, float* table) const;
  void DotTable(const float* q, float* table) const;
  // out[s * ksub + c] = |centroid_{s,c}|^2 + 2 <x_s, centroid_{s,c}>: the query-independent part
  // of |q - x - y|^2 - |q - x|^2 for a code y relative to x (IVF: x a list's centroid).
  void CrossTerms(const float* x, float* out) const;
  // Sum over sub-spaces of table[s * 256 + code[s]].
  float Lookup(const float* table, const uint8_t* code) const {
    float sum = 0;
    for (size_t s = 0; s < m_; ++s) sum += table[s * ksub_ + code[s]];
    return sum;
  }

  Status Serialize(ByteSink& out) const;
  Status Deserialize(ByteSource& in);
  size_t memory_bytes() const { return centroids_.capacity() * sizeof(float); }

 private:
  size_t dim_, m_, dsub_, ksub_;
  std::vector<float> centroids_;  // m * ksub * dsub
  std::vector<float> norms_;      // m * ksub: |centroid|^2
};

// OPQ (Ge, He, Ke & Sun, CVPR 2013, the non-parametric form): an orthogonal rotation R chosen so
// that product-quantizer codes of R x lose less, by balancing the variance across sub-spaces
// and aligning correlated dimensions within one. Training alternates: codebooks for the rotated
// sample, then the R that best maps the sample onto its decoded codes (orthogonal Procrustes:
// the SVD of X^T Y). Distances are unchanged by R (|R a - R b| = |a - b|, <R a, R b> = <a, b>),
// so an index rotates vectors and queries and otherwise works as before.
class OpqRotation {
 public:
  explicit OpqRotation(size_t dim = 0) : dim_(dim) {}
  bool trained() const { return !r_.empty(); }
  // Trains R and `pq` (its codebooks for rotated vectors) on n rows of x.
  Status Train(size_t n, const float* x, ProductQuantizer* pq, int iterations = 10);
  // out = R x for n rows (out may not alias x).
  void Apply(size_t n, const float* x, float* out) const;

  Status Serialize(ByteSink& out) const;
  Status Deserialize(ByteSource& in);
  size_t memory_bytes() const { return r_.capacity() * sizeof(float); }

 private:
  size_t dim_;
  std::vector<float> r_;  // dim x dim, row-major: (R x)_i = sum_j r_[i * dim + j] x_j
};

}  // namespace fathom
