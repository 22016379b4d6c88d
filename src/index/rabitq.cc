#include "index/rabitq.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include <emmintrin.h>

#include "index/kmeans.h"
#include "simd/distance.h"
#include "util/file.h"

namespace fathom {
namespace {

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Normalised fast Walsh-Hadamard transform of n (a power of two, at least 64) values, in place.
// The first three stages run as one radix-8 pass per group of 8; the rest are loops over
// contiguous halves the compiler vectorises.
void Fwht(float* v, size_t n) {
  for (size_t i = 0; i < n; i += 8) {
    float* x = v + i;
    const float a0 = x[0] + x[1], a1 = x[0] - x[1], a2 = x[2] + x[3], a3 = x[2] - x[3];
    const float a4 = x[4] + x[5], a5 = x[4] - x[5], a6 = x[6] + x[7], a7 = x[6] - x[7];
    const float b0 = a0 + a2, b1 = a1 + a3, b2 = a0 - a2, b3 = a1 - a3;
    const float b4 = a4 + a6, b5 = a5 + a7, b6 = a4 - a6, b7 = a5 - a7;
    x[0] = b0 + b4, x[1] = b1 + b5, x[2] = b2 + b6, x[3] = b3 + b7;
    x[4] = b0 - b4, x[5] = b1 - b5, x[6] = b2 - b6, x[7] = b3 - b7;
  }
  for (size_t h = 8; h < n; h *= 2) {
    for (size_t i = 0; i < n; i += 2 * h) {
      float* __restrict lo = v + i;
      float* __restrict hi = v + i + h;
      for (size_t j = 0; j < h; ++j) {
        const float a = lo[j], b = hi[j];
        lo[j] = a + b;
        hi[j] = a - b;
      }
    }
  }
  const float scale = 1.0f / std::sqrt(float(n));
  for (size_t i = 0; i < n; ++i) v[i] *= scale;
}

}  // namespace

RaBitQuantizer::RaBitQuantizer(size_t dim)
    : dim_(dim),
      padded_((dim + 63) / 64 * 64),
      block_(padded_ ? std::bit_floor(padded_) : 0),
      rbq_dot_(simd::Active().rbq_dot) {}

void RaBitQuantizer::Rotate(float* v) const {
  for (int round = 0; round < kRounds; ++round) {
    const float* s = signs_.data() + size_t(2 * round) * padded_;
    for (size_t i = 0; i < padded_; ++i) v[i] *= s[i];
    Fwht(v, block_);
    s += padded_;
    for (size_t i = 0; i < padded_; ++i) v[i] *= s[i];
    Fwht(v + (padded_ - block_), block_);
  }
}

Status RaBitQuantizer::Train(size_t n, const float* x, uint64_t seed, size_t max_centres) {
  signs_.resize(size_t(2 * kRounds) * padded_);
  uint64_t state = seed;
  for (size_t i = 0; i < signs_.size(); i += 64) {
    const uint64_t bits = SplitMix64(state);
    for (size_t b = 0; b < 64 && i + b < signs_.size(); ++b) signs_[i + b] = (bits >> b) & 1 ? 1.0f : -1.0f;
  }
  const size_t k = std::min({kMaxCentres, max_centres, n / kPointsPerCentre});
  if (k >= 2) {
    KMeansOptions options;
    options.seed = uint32_t(seed);
    options.iterations = 10;
    FATHOM_ASSIGN_OR_RETURN(centres_, TrainKMeans(n, dim_, x, k, options));
  } else {
    std::vector<double> sum(dim_, 0.0);
    for (size_t i = 0; i < n; ++i) {
      for (size_t j = 0; j < dim_; ++j) sum[j] += x[i * dim_ + j];
    }
    centres_.resize(dim_);
    for (size_t j = 0; j < dim_; ++j) centres_[j] = n ? float(sum[j] / double(n)) : 0.0f;
  }
  FinishCentres();
  trained_ = true;
  return Status::OK();
}

void RaBitQuantizer::FinishCentres() {
  const size_t k = centres();
  mean_.assign(dim_, 0.0f);
  for (size_t c = 0; c < k; ++c) {
    for (size_t j = 0; j < dim_; ++j) mean_[j] += centres_[c * dim_ + j] / float(k);
  }
  offsets_.assign(k * padded_, 0.0f);
  offset_norms_.assign(k, 0.0f);
  for (size_t c = 0; c < k; ++c) {
    float* o = offsets_.data() + c * padded_;
    for (size_t j = 0; j < dim_; ++j) o[j] = centres_[c * dim_ + j] - mean_[j];
    offset_norms_[c] = simd::Active().dot(o, o, padded_);
    Rotate(o);
  }
}

void RaBitQuantizer::Encode(const float* x, uint8_t* code) const {
  const auto& kern = simd::Active();
  uint32_t nearest = 0;
  float best = std::numeric_limits<float>::infinity();
  for (uint32_t c = 0; c < centres(); ++c) {
    const float d = kern.l2_sqr(x, centres_.data() + size_t{c} * dim_, dim_);
    if (d < best) best = d, nearest = c;
  }
  const float* centre = centres_.data() + size_t{nearest} * dim_;
  thread_local std::vector<float> v;  // (one allocation per thread, not per code)
  v.assign(padded_, 0.0f);
  double norm2 = 0;
  for (size_t j = 0; j < dim_; ++j) {
    v[j] = x[j] - centre[j];
    norm2 += double(v[j]) * v[j];
  }
  Rotate(v.data());
  auto* bits = reinterpret_cast<uint64_t*>(code);
  std::memset(bits, 0, padded_ / 8);
  const float* offset = offsets_.data() + size_t{nearest} * padded_;
  double sum_abs = 0, shift = 0;
  size_t ones = 0;
  for (size_t i = 0; i < padded_; ++i) {
    sum_abs += std::fabs(v[i]);
    if (v[i] > 0) {
      bits[i / 64] |= uint64_t{1} << (i % 64);
      ++ones;
      shift += offset[i];
    } else {
      shift -= offset[i];
    }
  }
  Factors f{float(norm2), 0.0f, float(ones), 0.0f, nearest, float(shift)};
  if (norm2 > 0 && sum_abs > 0) {
    // <x, r/|r|> = sum|r_i| / (sqrt(D') |r|); rescale = -2 |r| / (ip sqrt(D')) = -2 |r|^2 / sum|r_i|.
    const double norm = std::sqrt(norm2);
    const double ip = std::min(1.0, sum_abs / (std::sqrt(double(padded_)) * norm));
    f.rescale = float(-2.0 * norm2 / sum_abs);
    f.error = float(2.0 * norm * std::sqrt(std::max(0.0, 1.0 - ip * ip)) / ip / std::sqrt(double(padded_ - 1)));
  }
  std::memcpy(code + padded_ / 8, &f, sizeof(f));
}

void RaBitQuantizer::RotateVector(const float* x, float* out) const {
  std::copy(x, x + dim_, out);
  std::fill(out + dim_, out + padded_, 0.0f);
  Rotate(out);
}

bool RaBitQuantizer::ValidCode(const uint8_t* code) const {
  Factors f;
  std::memcpy(&f, code + padded_ / 8, sizeof(f));
  return f.centre < centres() && std::isfinite(f.add) && std::isfinite(f.rescale) && std::isfinite(f.ones) &&
         std::isfinite(f.error) && std::isfinite(f.shift);
}

void RaBitQuantizer::Prepare(const float* q, Query* out) const {
  auto& s = out->rotated;
  s.assign(padded_, 0.0f);
  for (size_t j = 0; j < dim_; ++j) s[j] = q[j] - mean_[j];
  Rotate(s.data());
  PrepareRotated(out);
}

void RaBitQuantizer::PrepareRotated(Query* out) const {
  const auto& s = out->rotated;
  float lo = s[0], hi = s[0], norm2 = 0;
  for (size_t i = 0; i < padded_; ++i) {
    lo = std::min(lo, s[i]);
    hi = std::max(hi, s[i]);
    norm2 += s[i] * s[i];
  }
  const float delta = (hi - lo) / float((1 << kQueryBits) - 1);
  const float inv = delta > 0 ? 1.0f / delta : 0.0f;
  auto& u = out->levels;
  u.resize(padded_);
  uint32_t sum_u = 0;
  for (size_t i = 0; i < padded_; ++i) {
    // (s - lo) * inv is in [0, 15] up to rounding: +0.5 and truncation round it to nearest.
    u[i] = static_cast<uint8_t>(std::min(15.0f, std::max(0.0f, (s[i] - lo) * inv) + 0.5f));
    sum_u += u[i];
  }
  // Bit plane b: bit b of each u_i, 16 at a time (a 16-bit shift by 7 - b puts bit b of both
  // bytes of a lane at their top bits, which movemask collects).
  const size_t w = words();
  out->planes.resize(size_t{kQueryBits} * w);
  for (int b = 0; b < kQueryBits; ++b) {
    const __m128i shift = _mm_cvtsi32_si128(7 - b);
    for (size_t word = 0; word < w; ++word) {
      uint64_t bits = 0;
      for (int part = 0; part < 4; ++part) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(u.data() + word * 64 + part * 16));
        bits |= uint64_t(uint16_t(_mm_movemask_epi8(_mm_sll_epi16(v, shift)))) << (16 * part);
      }
      out->planes[size_t(b) * w + word] = bits;
    }
  }
  out->lo = lo;
  out->delta = delta;
  out->sum_u = float(sum_u);
  out->norm2 = norm2;
  out->per_centre.resize(centres());
  if (++out->stamp == 0) {  // (wrapped: forget every centre's stamp)
    for (auto& p : out->per_centre) p.stamp = 0;
    out->stamp = 1;
  }
}

void RaBitQuantizer::PrepareCentre(const Query& q, uint32_t c) const {
  // |q - c|^2 = |s0 - R(c - m)|^2 = |s0|^2 - 2 <s0, R(c - m)> + |c - m|^2.
  const float dot = simd::Active().dot(q.rotated.data(), offsets_.data() + size_t{c} * padded_, padded_);
  auto& p = q.per_centre[c];
  p.norm2 = std::max(0.0f, q.norm2 - 2 * dot + offset_norms_[c]);
  p.norm = std::sqrt(p.norm2);
  p.stamp = q.stamp;
}

Status RaBitQuantizer::Serialize(ByteSink& out) const {
  const uint32_t k = uint32_t(centres());
  FATHOM_RETURN_IF_ERROR(out.Write(&k, sizeof(k)));
  FATHOM_RETURN_IF_ERROR(out.Write(centres_.data(), centres_.size() * sizeof(float)));
  std::vector<uint8_t> bits((signs_.size() + 7) / 8, 0);
  for (size_t i = 0; i < signs_.size(); ++i) {
    if (signs_[i] > 0) bits[i / 8] |= uint8_t(1u << (i % 8));
  }
  return out.Write(bits.data(), bits.size());
}

Status RaBitQuantizer::Deserialize(ByteSource& in) {
  uint32_t k;
  FATHOM_RETURN_IF_ERROR(in.ReadBytes(&k, sizeof(k)));
  if (k < 1 || k > kMaxCentres) {
    return Status::Corruption("RaBitQ quantizer has " + std::to_string(k) + " centres (expected 1 to " +
                              std::to_string(kMaxCentres) + ")");
  }
  centres_.resize(size_t{k} * dim_);
  FATHOM_RETURN_IF_ERROR(in.ReadBytes(centres_.data(), centres_.size() * sizeof(float)));
  for (float v : centres_) {
    if (!std::isfinite(v)) return Status::Corruption("RaBitQ centre holds a non-finite value");
  }
  signs_.resize(size_t(2 * kRounds) * padded_);
  std::vector<uint8_t> bits((signs_.size() + 7) / 8);
  FATHOM_RETURN_IF_ERROR(in.ReadBytes(bits.data(), bits.size()));
  for (size_t i = 0; i < signs_.size(); ++i) signs_[i] = (bits[i / 8] >> (i % 8)) & 1 ? 1.0f : -1.0f;
  FinishCentres();
  trained_ = true;
  return Status::OK();
}

}  // namespace fathom
