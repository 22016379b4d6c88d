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

// Normalised fast Walsh-Hadamard transform of n (a power of two) values, in place.
void Fwht(float* v, size_t n) {
  for (size_t h = 1; h < n; h *= 2) {
    for (size_t i = 0; i < n; i += 2 * h) {
      for (size_t j = i; j < i + h; ++j) {
        const float a = v[j], b = v[j + h];
        v[j] = a + b;
        v[j + h] = a - b;
      }
    }
  }
  const float scale = 1.0f / std::sqrt(float(n));
  for (size_t i = 0; i < n; ++i) v[i] *= scale;
}

}  // namespace

RaBitQuantizer::RaBitQuantizer(size_t dim)
    : dim_(dim), padded_((dim + 63) / 64 * 64), block_(padded_ ? std::bit_floor(padded_) : 0) {}

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

Status RaBitQuantizer::Train(size_t n, const float* x, uint64_t seed) {
  signs_.resize(size_t(2 * kRounds) * padded_);
  uint64_t state = seed;
  for (size_t i = 0; i < signs_.size(); i += 64) {
    const uint64_t bits = SplitMix64(state);
    for (size_t b = 0; b < 64 && i + b < signs_.size(); ++b) signs_[i + b] = (bits >> b) & 1 ? 1.0f : -1.0f;
  }
  const size_t k = std::min(kMaxCentres, n / kPointsPerCentre);
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
  centre_norms_ = RowNorms(k, dim_, centres_.data());
  rotated_centres_.assign(k * padded_, 0.0f);
  for (size_t c = 0; c < k; ++c) {
    float* rc = rotated_centres_.data() + c * padded_;
    std::copy(centres_.begin() + c * dim_, centres_.begin() + (c + 1) * dim_, rc);
    Rotate(rc);
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
  thread_local std::vector<float> v;
  v.assign(padded_, 0.0f);
  double norm2 = 0;
  for (size_t j = 0; j < dim_; ++j) {
    v[j] = x[j] - centre[j];
    norm2 += double(v[j]) * v[j];
  }
  Rotate(v.data());
  auto* bits = reinterpret_cast<uint64_t*>(code);
  std::memset(bits, 0, padded_ / 8);
  double sum_abs = 0;
  size_t ones = 0;
  for (size_t i = 0; i < padded_; ++i) {
    sum_abs += std::fabs(v[i]);
    if (v[i] > 0) {
      bits[i / 64] |= uint64_t{1} << (i % 64);
      ++ones;
    }
  }
  Factors f{float(norm2), 0.0f, float(ones), 0.0f, nearest};
  if (norm2 > 0 && sum_abs > 0) {
    // <x, r/|r|> = sum|r_i| / (sqrt(D') |r|); rescale = -2 |r| / (ip sqrt(D')) = -2 |r|^2 / sum|r_i|.
    const double norm = std::sqrt(norm2);
    const double ip = std::min(1.0, sum_abs / (std::sqrt(double(padded_)) * norm));
    f.rescale = float(-2.0 * norm2 / sum_abs);
    f.error = float(2.0 * norm * std::sqrt(std::max(0.0, 1.0 - ip * ip)) / ip / std::sqrt(double(padded_ - 1)));
  }
  std::memcpy(code + padded_ / 8, &f, sizeof(f));
}

void RaBitQuantizer::Prepare(const float* q, Query* out) const {
  out->rotated.assign(padded_, 0.0f);
  std::copy(q, q + dim_, out->rotated.begin());
  Rotate(out->rotated.data());
  out->per_centre.resize(centres());
  out->planes.resize(centres() * kQueryBits * words());
  if (++out->stamp == 0) {  // (wrapped: forget every centre's stamp)
    for (auto& p : out->per_centre) p.stamp = 0;
    out->stamp = 1;
  }
}

void RaBitQuantizer::PrepareCentre(const Query& q, uint32_t c) const {
  thread_local std::vector<float> s;
  thread_local std::vector<uint8_t> u;
  s.resize(padded_);
  u.resize(padded_);
  const float* rc = rotated_centres_.data() + size_t{c} * padded_;
  float lo = std::numeric_limits<float>::infinity(), hi = -lo, norm2 = 0;
  for (size_t i = 0; i < padded_; ++i) {
    s[i] = q.rotated[i] - rc[i];
    lo = std::min(lo, s[i]);
    hi = std::max(hi, s[i]);
    norm2 += s[i] * s[i];
  }
  const float delta = (hi - lo) / float((1 << kQueryBits) - 1);
  const float inv = delta > 0 ? 1.0f / delta : 0.0f;
  uint32_t sum_u = 0;
  for (size_t i = 0; i < padded_; ++i) {
    u[i] = static_cast<uint8_t>(std::clamp(std::nearbyint((s[i] - lo) * inv), 0.0f, 15.0f));
    sum_u += u[i];
  }
  // Bit plane b: bit b of each u_i, 16 at a time (a 16-bit shift by 7 - b puts bit b of both
  // bytes of a lane at their top bits, which movemask collects).
  const size_t w = words();
  uint64_t* planes = q.planes.data() + size_t{c} * kQueryBits * w;
  for (int b = 0; b < kQueryBits; ++b) {
    const __m128i shift = _mm_cvtsi32_si128(7 - b);
    for (size_t word = 0; word < w; ++word) {
      uint64_t bits = 0;
      for (int part = 0; part < 4; ++part) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(u.data() + word * 64 + part * 16));
        bits |= uint64_t(uint16_t(_mm_movemask_epi8(_mm_sll_epi16(v, shift)))) << (16 * part);
      }
      planes[size_t(b) * w + word] = bits;
    }
  }
  auto& p = q.per_centre[c];
  p.lo = lo;
  p.delta = delta;
  p.sum_u = float(sum_u);
  p.norm2 = norm2;
  p.norm = std::sqrt(norm2);
  p.stamp = q.stamp;
}

float RaBitQuantizer::Estimate(const Query& q, const uint8_t* code, float* bound) const {
  Factors f;
  std::memcpy(&f, code + padded_ / 8, sizeof(f));
  if (q.per_centre[f.centre].stamp != q.stamp) PrepareCentre(q, f.centre);
  const auto& p = q.per_centre[f.centre];
  const uint64_t* planes = q.planes.data() + size_t{f.centre} * kQueryBits * words();
  const uint32_t dot = simd::Active().rbq_dot(reinterpret_cast<const uint64_t*>(code), planes, words());
  // sqrt(D') <x, s> = sum_i (2 b_i - 1) s_i with s_i = lo + delta u_i.
  const float xs = 2 * p.delta * float(dot) + p.lo * (2 * f.ones - float(padded_)) - p.delta * p.sum_u;
  if (bound != nullptr) *bound = f.error * p.norm * kEpsilon0;
  return f.add + p.norm2 + f.rescale * xs;
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
