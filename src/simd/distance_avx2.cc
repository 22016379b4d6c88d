// AVX2 + FMA kernels. Only this file is compiled with -mavx2 -mfma; it is called through the
// dispatch table when the CPU supports it.
#include <immintrin.h>

#include <cmath>

#include "simd/distance.h"

namespace fathom::simd {
namespace {

inline float HorizontalSum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v);
  __m128 hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

inline uint32_t HorizontalSumI32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return static_cast<uint32_t>(_mm_cvtsi128_si32(s));
}

float L2Sqr(const float* a, const float* b, size_t d) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 32 <= d; i += 32) {
    __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
    __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8));
    __m256 d2 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16));
    __m256 d3 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24));
    acc0 = _mm256_fmadd_ps(d0, d0, acc0);
    acc1 = _mm256_fmadd_ps(d1, d1, acc1);
    acc2 = _mm256_fmadd_ps(d2, d2, acc2);
    acc3 = _mm256_fmadd_ps(d3, d3, acc3);
  }
  for (; i + 8 <= d; i += 8) {
    __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
    acc0 = _mm256_fmadd_ps(d0, d0, acc0);
  }
  float sum = HorizontalSum(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
  for (; i < d; ++i) {
    float diff = a[i] - b[i];
    sum += diff * diff;
  }
  return sum;
}

float Dot(const float* a, const float* b, size_t d) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 32 <= d; i += 32) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), acc2);
    acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), acc3);
  }
  for (; i + 8 <= d; i += 8) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  }
  float sum = HorizontalSum(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
  for (; i < d; ++i) sum += a[i] * b[i];
  return sum;
}

uint32_t L2SqrU8(const uint8_t* a, const uint8_t* b, size_t d) {
  const __m256i zero = _mm256_setzero_si256();
  __m256i acc0 = _mm256_setzero_si256(), acc1 = _mm256_setzero_si256();
  size_t i = 0;
  for (; i + 32 <= d; i += 32) {
    __m256i va = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + i));
    __m256i vb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + i));
    // |a - b| in u8 is exact: max - min.
    __m256i diff = _mm256_sub_epi8(_mm256_max_epu8(va, vb), _mm256_min_epu8(va, vb));
    __m256i lo = _mm256_unpacklo_epi8(diff, zero);
    __m256i hi = _mm256_unpackhi_epi8(diff, zero);
    acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(lo, lo));
    acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(hi, hi));
  }
  uint32_t sum = HorizontalSumI32(_mm256_add_epi32(acc0, acc1));
  for (; i < d; ++i) {
    int diff = int{a[i]} - int{b[i]};
    sum += static_cast<uint32_t>(diff * diff);
  }
  return sum;
}

// Widened to 16 bits (vpmaddubsw would saturate: 255 * -128 * 2 leaves int16), then vpmaddwd.
int32_t DotU8S8(const uint8_t* codes, const int8_t* q, size_t d) {
  __m256i acc0 = _mm256_setzero_si256(), acc1 = _mm256_setzero_si256();
  size_t i = 0;
  for (; i + 32 <= d; i += 32) {
    const __m128i* c = reinterpret_cast<const __m128i*>(codes + i);
    const __m128i* v = reinterpret_cast<const __m128i*>(q + i);
    acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm_loadu_si128(c)),
                                                    _mm256_cvtepi8_epi16(_mm_loadu_si128(v))));
    acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm_loadu_si128(c + 1)),
                                                    _mm256_cvtepi8_epi16(_mm_loadu_si128(v + 1))));
  }
  int32_t sum = static_cast<int32_t>(HorizontalSumI32(_mm256_add_epi32(acc0, acc1)));
  for (; i < d; ++i) sum += int32_t{codes[i]} * int32_t{q[i]};
  return sum;
}

// Nibbles are at most 15, so vpmaddubsw cannot saturate (15 * -128 * 2 fits int16).
int32_t DotU4S8(const uint8_t* codes, const int8_t* q, size_t bytes) {
  const __m256i nibble = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
  __m256i acc = _mm256_setzero_si256();
  size_t t = 0;
  for (; t + 32 <= bytes; t += 32) {
    const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + t));
    const __m256i lo = _mm256_and_si256(c, nibble), hi = _mm256_and_si256(_mm256_srli_epi16(c, 4), nibble);
    const __m256i even = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + t));
    const __m256i odd = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + bytes + t));
    const __m256i pairs = _mm256_add_epi16(_mm256_maddubs_epi16(lo, even), _mm256_maddubs_epi16(hi, odd));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, ones));
  }
  int32_t sum = static_cast<int32_t>(HorizontalSumI32(acc));
  for (; t < bytes; ++t) sum += int32_t{codes[t] & 15} * q[t] + int32_t{codes[t] >> 4} * q[bytes + t];
  return sum;
}

float DotF32U8(const float* q, const uint8_t* codes, size_t d) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 16 <= d; i += 16) {
    __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + i));
    __m256 c0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(c));
    __m256 c1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(c, 8)));
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), c0, acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), c1, acc1);
  }
  float sum = HorizontalSum(_mm256_add_ps(acc0, acc1));
  for (; i < d; ++i) sum += q[i] * static_cast<float>(codes[i]);
  return sum;
}

// 16 codes per step: 8 bytes split into low and high nibbles, interleaved back into order.
float DotF32U4(const float* q, const uint8_t* codes, size_t d) {
  const __m128i nibble = _mm_set1_epi8(0x0F);
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 16 <= d; i += 16) {
    const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + i / 2));
    const __m128i c = _mm_unpacklo_epi8(_mm_and_si128(b, nibble), _mm_and_si128(_mm_srli_epi16(b, 4), nibble));
    __m256 c0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(c));
    __m256 c1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(c, 8)));
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), c0, acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), c1, acc1);
  }
  float sum = HorizontalSum(_mm256_add_ps(acc0, acc1));
  for (; i < d; ++i) sum += q[i] * static_cast<float>(i % 2 ? codes[i / 2] >> 4 : codes[i / 2] & 0x0F);
  return sum;
}

// Two sub-quantizers per 256-bit step (one per 128-bit lane): vpshufb looks up 16 codes in a
// 16-entry table per lane; the 8-bit results are added into 16-bit accumulators as even and odd
// bytes (mask and shift), so no widening instruction is needed.
void Pq4BlockSums(const uint8_t* codes, const uint8_t* luts, size_t m, uint16_t* out) {
  const __m256i nibble = _mm256_set1_epi8(0x0F);
  const __m256i low_byte = _mm256_set1_epi16(0x00FF);
  __m256i lo_even = _mm256_setzero_si256(), lo_odd = _mm256_setzero_si256();
  __m256i hi_even = _mm256_setzero_si256(), hi_odd = _mm256_setzero_si256();
  for (size_t s = 0; s < m; s += 2) {
    const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + s * 16));
    const __m256i t = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(luts + s * 16));
    const __m256i dlo = _mm256_shuffle_epi8(t, _mm256_and_si256(c, nibble));
    const __m256i dhi = _mm256_shuffle_epi8(t, _mm256_and_si256(_mm256_srli_epi16(c, 4), nibble));
    lo_even = _mm256_add_epi16(lo_even, _mm256_and_si256(dlo, low_byte));
    lo_odd = _mm256_add_epi16(lo_odd, _mm256_srli_epi16(dlo, 8));
    hi_even = _mm256_add_epi16(hi_even, _mm256_and_si256(dhi, low_byte));
    hi_odd = _mm256_add_epi16(hi_odd, _mm256_srli_epi16(dhi, 8));
  }
  // Fold the two lanes (even and odd sub-quantizers), then interleave even/odd vectors.
  auto fold = [](__m256i v) {
    return _mm_add_epi16(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  };
  const __m128i le = fold(lo_even), lo = fold(lo_odd), he = fold(hi_even), ho = fold(hi_odd);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm_unpacklo_epi16(le, lo));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 8), _mm_unpackhi_epi16(le, lo));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 16), _mm_unpacklo_epi16(he, ho));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 24), _mm_unpackhi_epi16(he, ho));
}

float L2SqrF16(const float* q, const uint16_t* x, size_t d) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 16 <= d; i += 16) {
    __m256 x0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i)));
    __m256 x1 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i + 8)));
    __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(q + i), x0);
    __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(q + i + 8), x1);
    acc0 = _mm256_fmadd_ps(d0, d0, acc0);
    acc1 = _mm256_fmadd_ps(d1, d1, acc1);
  }
  for (; i + 8 <= d; i += 8) {
    __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(q + i),
                              _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i))));
    acc0 = _mm256_fmadd_ps(d0, d0, acc0);
  }
  float sum = HorizontalSum(_mm256_add_ps(acc0, acc1));
  for (; i < d; ++i) {
    float diff = q[i] - _cvtsh_ss(x[i]);
    sum += diff * diff;
  }
  return sum;
}

float DotF16(const float* q, const uint16_t* x, size_t d) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 16 <= d; i += 16) {
    __m256 x0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i)));
    __m256 x1 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i + 8)));
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), x0, acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), x1, acc1);
  }
  for (; i + 8 <= d; i += 8) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i),
                           _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i))), acc0);
  }
  float sum = HorizontalSum(_mm256_add_ps(acc0, acc1));
  for (; i < d; ++i) sum += q[i] * _cvtsh_ss(x[i]);
  return sum;
}

void F16ToF32(const uint16_t* x, float* out, size_t d) {
  size_t i = 0;
  for (; i + 8 <= d; i += 8) {
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i))));
  }
  for (; i < d; ++i) out[i] = _cvtsh_ss(x[i]);
}

}  // namespace

namespace detail {
// (The AVX-512 table's too: without AVX512_VPOPCNTDQ, which many AVX-512 CPUs lack, the scalar
// popcnt instruction on 64-bit words is the fastest way.)
uint32_t RbqDotPopcnt(const uint64_t* code, const uint64_t* planes, size_t words) {
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (size_t w = 0; w < words; ++w) {
    const uint64_t c = code[w];
    s0 += _mm_popcnt_u64(c & planes[w]);
    s1 += _mm_popcnt_u64(c & planes[words + w]);
    s2 += _mm_popcnt_u64(c & planes[2 * words + w]);
    s3 += _mm_popcnt_u64(c & planes[3 * words + w]);
  }
  return uint32_t(s0 + 2 * s1 + 4 * s2 + 8 * s3);
}
void Pq4BlockSumsAvx2(const uint8_t* codes, const uint8_t* luts, size_t m, uint16_t* out) {
  Pq4BlockSums(codes, luts, m, out);
}
namespace {
float L1(const float* a, const float* b, size_t d) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 16 <= d; i += 16) {
    acc0 = _mm256_add_ps(acc0, _mm256_andnot_ps(sign, _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i))));
    acc1 = _mm256_add_ps(acc1, _mm256_andnot_ps(sign, _mm256_sub_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8))));
  }
  for (; i + 8 <= d; i += 8) {
    acc0 = _mm256_add_ps(acc0, _mm256_andnot_ps(sign, _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i))));
  }
  float sum = HorizontalSum(_mm256_add_ps(acc0, acc1));
  for (; i < d; ++i) sum += std::fabs(a[i] - b[i]);
  return sum;
}

float L2SqrF32U8Weighted(const float* a, const float* w, const uint8_t* codes, size_t d) {
  __m256 acc = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 8 <= d; i += 8) {
    const __m256 c = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + i))));
    const __m256 diff = _mm256_sub_ps(_mm256_loadu_ps(a + i), c);
    acc = _mm256_fmadd_ps(_mm256_mul_ps(diff, diff), _mm256_loadu_ps(w + i), acc);
  }
  float sum = HorizontalSum(acc);
  for (; i < d; ++i) {
    const float diff = a[i] - float(codes[i]);
    sum += w[i] * diff * diff;
  }
  return sum;
}

int32_t L2SqrS16U8x2(const int16_t* q2, const uint8_t* codes, size_t d) {
  __m256i acc0 = _mm256_setzero_si256(), acc1 = _mm256_setzero_si256();
  size_t i = 0;
  for (; i + 32 <= d; i += 32) {
    const __m256i x0 =
        _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + i)));
    const __m256i x1 =
        _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + i + 16)));
    const __m256i d0 = _mm256_sub_epi16(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q2 + i)), _mm256_add_epi16(x0, x0));
    const __m256i d1 =
        _mm256_sub_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q2 + i + 16)),
                         _mm256_add_epi16(x1, x1));
    acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(d0, d0));
    acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(d1, d1));
  }
  int32_t sum = static_cast<int32_t>(HorizontalSumI32(_mm256_add_epi32(acc0, acc1)));
  for (; i < d; ++i) {
    const int32_t diff = int32_t{q2[i]} - 2 * int32_t{codes[i]};
    sum += diff * diff;
  }
  return sum;
}
}  // namespace

const Kernels kAvx2Kernels{Isa::kAvx2,         L2Sqr,       Dot,     L2SqrU8,  DotF32U8,
                           Pq4BlockSumsAvx2,   L2SqrF16,    DotF16,  F16ToF32, DotF32U4,
                           RbqDotPopcnt,       DotU8S8,     DotU4S8, false,    L1,
                           L2SqrF32U8Weighted, L2SqrS16U8x2};
}  // namespace detail

}  // namespace fathom::simd
