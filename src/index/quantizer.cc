#include "index/quantizer.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "index/kmeans.h"
#include "simd/distance.h"
#include "util/file.h"

namespace fathom {

Status CheckHalfRange(size_t n, size_t dim, const float* x, const char* what) {
  for (size_t i = 0; i < n * dim; ++i) {
    if (std::fabs(x[i]) > simd::kHalfMax) {
      return Status::InvalidArgument("row " + std::to_string(i / dim) + ", dimension " + std::to_string(i % dim) +
                                     ": " + std::to_string(x[i]) + " is beyond the range of " + what +
                                     " (magnitudes up to 65504)");
    }
  }
  return Status::OK();
}

// ---------------------------------------------------------------- ScalarQuantizer

void ScalarQuantizer::Train(size_t n, const float* x) {
  lo_.assign(dim_, std::numeric_limits<float>::infinity());
  std::vector<float> hi(dim_, -std::numeric_limits<float>::infinity());
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < dim_; ++j) {
      lo_[j] = std::min(lo_[j], x[i * dim_ + j]);
      hi[j] = std::max(hi[j], x[i * dim_ + j]);
    }
  }
  scale_.assign(dim_, 0.0f);
  for (size_t j = 0; j < dim_; ++j) {
    if (n == 0) lo_[j] = 0, hi[j] = 0;
    // A constant dimension gets a tiny positive step so encoding never divides by zero.
    scale_[j] = std::max((hi[j] - lo_[j]) / float(levels_), std::numeric_limits<float>::min() * 256);
  }
}

void ScalarQuantizer::Widen(float fraction, float pad) {
  for (size_t j = 0; j < dim_; ++j) {
    const float range = scale_[j] * float(levels_);
    lo_[j] -= fraction * range + pad;
    scale_[j] = (range * (1 + 2 * fraction) + 2 * pad) / float(levels_);
  }
}

void ScalarQuantizer::Encode(const float* x, uint8_t* code) const {
  if (bits_ == 4) std::fill(code, code + code_size(), uint8_t{0});
  for (size_t j = 0; j < dim_; ++j) {
    const float t = std::nearbyint((x[j] - lo_[j]) / scale_[j]);
    const auto level = static_cast<uint8_t>(std::clamp(t, 0.0f, float(levels_)));
    if (bits_ == 8) {
      code[j] = level;
    } else {
      code[j / 2] |= j % 2 ? uint8_t(level << 4) : level;
    }
  }
}

void ScalarQuantizer::Decode(const uint8_t* code, float* x) const {
  for (size_t j = 0; j < dim_; ++j) x[j] = lo_[j] + scale_[j] * float(Level(code, j));
}

float ScalarQuantizer::DecodedNorm(const uint8_t* code) const {
  double sum = 0;
  for (size_t j = 0; j < dim_; ++j) {
    const double v = double(lo_[j]) + double(scale_[j]) * Level(code, j);
    sum += v * v;
  }
  return float(sum);
}

void ScalarQuantizer::Prepare(const float* q, Query* out) const {
  out->scaled.resize(dim_);
  double q_lo = 0, q_norm = 0;
  for (size_t j = 0; j < dim_; ++j) {
    out->scaled[j] = q[j] * scale_[j];
    q_lo += double(q[j]) * lo_[j];
    q_norm += double(q[j]) * q[j];
  }
  out->q_lo = float(q_lo);
  out->q_norm = float(q_norm);
  if (bits_ == 4) {
    float peak = 0;
    for (float w : out->scaled) peak = std::max(peak, std::abs(w));
    const size_t bytes = code_size();
    out->w_step = peak > 0 ? peak / 127.0f : 1.0f;
    const float inv = 1.0f / out->w_step;
    out->w8.assign(2 * bytes, 0);
    for (size_t j = 0; j < dim_; ++j) {
      out->w8[(j % 2) * bytes + j / 2] = static_cast<int8_t>(std::lrint(std::clamp(out->scaled[j] * inv, -127.0f, 127.0f)));
    }
  }
}

float ScalarQuantizer::DotInt8(const Query& q, const uint8_t* code) const {
  return q.q_lo + q.w_step * float(simd::Active().dot_u4_s8(code, q.w8.data(), code_size()));
}

float ScalarQuantizer::Dot(const Query& q, const uint8_t* code) const {
  const auto& kernels = simd::Active();
  return q.q_lo + (bits_ == 8 ? kernels.dot_f32_u8 : kernels.dot_f32_u4)(q.scaled.data(), code, dim_);
}

Status ScalarQuantizer::Serialize(ByteSink& out) const {
  FATHOM_RETURN_IF_ERROR(out.Write(lo_.data(), dim_ * sizeof(float)));
  return out.Write(scale_.data(), dim_ * sizeof(float));
}

Status ScalarQuantizer::Deserialize(ByteSource& in) {
  lo_.resize(dim_);
  scale_.resize(dim_);
  FATHOM_RETURN_IF_ERROR(in.ReadBytes(lo_.data(), dim_ * sizeof(float)));
  FATHOM_RETURN_IF_ERROR(in.ReadBytes(scale_.data(), dim_ * sizeof(float)));
  for (size_t j = 0; j < dim_; ++j) {
    if (!std::isfinite(lo_[j]) || !std::isfinite(scale_[j]) || scale_[j] <= 0) {
      return Status::Corruption("scalar quantizer range of dimension " + std::to_string(j) + " is invalid");
    }
  }
  return Status::OK();
}

// ---------------------------------------------------------------- ProductQuantizer

Status ProductQuantizer::Train(size_t n, const float* x, uint32_t seed, int iterations) {
  if (n < ksub_) {
    return Status::InvalidArgument("product quantizer training needs at least " + std::to_string(ksub_) +
                                   " vectors, got " + std::to_string(n));
  }
  KMeansOptions options;
  options.seed = seed;
  options.max_points_per_centroid = 64;
  options.iterations = iterations;
  centroids_.assign(m_ * ksub_ * dsub_, 0.0f);
  std::vector<float> sub(n * dsub_);
  for (size_t s = 0; s < m_; ++s) {
    for (size_t i = 0; i < n; ++i) {
      std::copy(x + i * dim_ + s * dsub_, x + i * dim_ + (s + 1) * dsub_, sub.begin() + i * dsub_);
    }
    options.seed = seed + uint32_t(s);
    FATHOM_ASSIGN_OR_RETURN(std::vector<float> c, TrainKMeans(n, dsub_, sub.data(), ksub_, options));
    std::copy(c.begin(), c.end(), centroids_.begin() + s * ksub_ * dsub_);
  }
  norms_ = RowNorms(m_ * ksub_, dsub_, centroids_.data());
  return Status::OK();
}

void ProductQuantizer::Encode(size_t n, const float* x, uint8_t* codes) const {
  std::vector<float> sub(n * dsub_);
  std::vector<uint32_t> assign(n);
  for (size_t s = 0; s < m_; ++s) {
    for (size_t i = 0; i < n; ++i) {
      std::copy(x + i * dim_ + s * dsub_, x + i * dim_ + (s + 1) * dsub_, sub.begin() + i * dsub_);
    }
    AssignNearest(n, dsub_, sub.data(), ksub_, centroids_.data() + s * ksub_ * dsub_,
                  norms_.data() + s * ksub_, assign.data());
    for (size_t i = 0; i < n; ++i) codes[i * m_ + s] = static_cast<uint8_t>(assign[i]);
  }
}

void ProductQuantizer::Decode(const uint8_t* code, float* x) const {
  for (size_t s = 0; s < m_; ++s) {
    const float* c = centroids_.data() + (s * ksub_ + code[s]) * dsub_;
    std::copy(c, c + dsub_, x + s * dsub_);
  }
}

// Tables cost m * ksub * dsub = ksub * dim multiply-adds: the SIMD dot kernel does them.
void ProductQuantizer::L2Table(const float* q, float* table) const {
  const auto& kernels = simd::Active();
  for (size_t s = 0; s < m_; ++s) {
    const float* qs = q + s * dsub_;
    const float* c = centroids_.data() + s * ksub_ * dsub_;
    float* t = table + s * ksub_;
    const float qn = kernels.dot(qs, qs, dsub_);
    for (size_t k = 0; k < ksub_; ++k) {
      t[k] = std::max(0.0f, qn - 2 * kernels.dot(qs, c + k * dsub_, dsub_) + norms_[s * ksub_ + k]);
    }
  }
}

void ProductQuantizer::DotTable(const float* q, float* table) const {
  const auto& kernels = simd::Active();
  for (size_t s = 0; s < m_; ++s) {
    const float* qs = q + s * dsub_;
    const float* c = centroids_.data() + s * ksub_ * dsub_;
    float* t = table + s * ksub_;
    for (size_t k = 0; k < ksub_; ++k) t[k] = kernels.dot(qs, c + k * dsub_, dsub_);
  }
}

void ProductQuantizer::CrossTerms(const float* x, float* out) const {
  DotTable(x, out);
  for (size_t i = 0; i < m_ * ksub_; ++i) out[i] = norms_[i] + 2 * out[i];
}

Status ProductQuantizer::Serialize(ByteSink& out) const {
  return out.Write(centroids_.data(), centroids_.size() * sizeof(float));
}

Status ProductQuantizer::Deserialize(ByteSource& in) {
  centroids_.resize(m_ * ksub_ * dsub_);
  FATHOM_RETURN_IF_ERROR(in.ReadBytes(centroids_.data(), centroids_.size() * sizeof(float)));
  for (float v : centroids_) {
    if (!std::isfinite(v)) return Status::Corruption("product quantizer codebook holds a non-finite value");
  }
  norms_ = RowNorms(m_ * ksub_, dsub_, centroids_.data());
  return Status::OK();
}

// ---------------------------------------------------------------- OpqRotation

extern "C" void sgesvd_(const char* jobu, const char* jobvt, const int* m, const int* n, float* a, const int* lda,
                        float* s, float* u, const int* ldu, float* vt, const int* ldvt, float* work,
                        const int* lwork, int* info);

Status OpqRotation::Train(size_t n, const float* x, ProductQuantizer* pq, int iterations) {
  const size_t d = dim_;
  const int di = int(d);
  r_.assign(d * d, 0.0f);
  for (size_t i = 0; i < d; ++i) r_[i * d + i] = 1.0f;
  std::vector<float> rotated(n * d), decoded(n * d), m(d * d), u(d * d), vt(d * d), sv(d);
  std::vector<uint8_t> codes(n * pq->m());
  for (int it = 0; it < iterations; ++it) {
    Apply(n, x, rotated.data());
    // Few k-means rounds per step, as Faiss's OPQMatrix does; the final codebooks get all.
    FATHOM_RETURN_IF_ERROR(pq->Train(n, rotated.data(), 1234 + uint32_t(it), 4));
    pq->Encode(n, rotated.data(), codes.data());
    for (size_t i = 0; i < n; ++i) pq->Decode(codes.data() + i * pq->m(), decoded.data() + i * d);
    // M = X^T Y (row-major); LAPACK, column-major, sees M^T = V S U^T for M = U S V^T.
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, di, di, int(n), 1.0f, x, di, decoded.data(), di, 0.0f,
                m.data(), di);
    int lwork = -1, info = 0;
    float query;
    sgesvd_("A", "A", &di, &di, m.data(), &di, sv.data(), u.data(), &di, vt.data(), &di, &query, &lwork, &info);
    lwork = std::max(1, int(query));
    std::vector<float> work(static_cast<size_t>(lwork));
    sgesvd_("A", "A", &di, &di, m.data(), &di, sv.data(), u.data(), &di, vt.data(), &di, work.data(), &lwork, &info);
    if (info != 0) return Status::Internal("OPQ: the SVD did not converge (LAPACK sgesvd info " + std::to_string(info) + ")");
    // u holds V and vt holds U^T (column-major); R = (U V^T)^T = V U^T, whose (i, j) is the
    // column-major product u * vt at (i, j): computed column-major, then stored row-major.
    std::vector<float> r_col(d * d);
    cblas_sgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, di, di, di, 1.0f, u.data(), di, vt.data(), di, 0.0f,
                r_col.data(), di);
    for (size_t i = 0; i < d; ++i) {
      for (size_t j = 0; j < d; ++j) r_[i * d + j] = r_col[i + j * d];
    }
  }
  Apply(n, x, rotated.data());
  return pq->Train(n, rotated.data());
}

void OpqRotation::Apply(size_t n, const float* x, float* out) const {
  if (n < 8) {  // single queries: direct kernels beat a GEMM call (as in AssignNearest)
    const auto& kernels = simd::Active();
    for (size_t i = 0; i < n; ++i) {
      for (size_t r = 0; r < dim_; ++r) out[i * dim_ + r] = kernels.dot(r_.data() + r * dim_, x + i * dim_, dim_);
    }
    return;
  }
  const int di = int(dim_);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(n), di, di, 1.0f, x, di, r_.data(), di, 0.0f, out, di);
}

Status OpqRotation::Serialize(ByteSink& out) const { return out.Write(r_.data(), r_.size() * sizeof(float)); }

Status OpqRotation::Deserialize(ByteSource& in) {
  r_.resize(dim_ * dim_);
  FATHOM_RETURN_IF_ERROR(in.ReadBytes(r_.data(), r_.size() * sizeof(float)));
  for (float v : r_) {
    if (!std::isfinite(v)) return Status::Corruption("OPQ rotation holds a non-finite value");
  }
  // Orthogonal up to rounding: rows of unit length (a cheap check against a corrupted matrix).
  for (size_t i = 0; i < dim_; ++i) {
    double norm = 0;
    for (size_t j = 0; j < dim_; ++j) norm += double(r_[i * dim_ + j]) * r_[i * dim_ + j];
    if (std::fabs(norm - 1.0) > 1e-3) return Status::Corruption("OPQ rotation is not orthogonal (row " + std::to_string(i) + ")");
  }
  return Status::OK();
}

}  // namespace fathom
