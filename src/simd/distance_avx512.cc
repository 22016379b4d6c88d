// AVX-512 (F, BW, VL, DQ) kernels. Only this file is compiled with AVX-512 flags; it is called
// through the dispatch table when the CPU supports it. Tails use masked loads, not scalar loops.
#include <immintrin.h>

#include "simd/distance.h"

namespace fathom::simd {
namespace {

inline __mmask16 TailMask16(size_t n) { return static_cast<__mmask16>((1u << n) - 1u); }
// The first min(n, 32) lanes.
inline __mmask32 TailMask32(size_t n) {
  return n >= 32 ? ~__mmask32{0} : static_cast<__mmask32>((1u << n) - 1u);
}

float L2Sqr(const float* a, const float* b, size_t d) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  __m512 acc2 = _mm512_setzero_ps(), acc3 = _mm512_setzero_ps();
  size_t i = 0;
  for (; i + 64 <= d; i += 64) {
    __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
    __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16));
    __m512 d2 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32));
    __m512 d3 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48));
    acc0 = _mm512_fmadd_ps(d0, d0, acc0);
    acc1 = _mm512_fmadd_ps(d1, d1, acc1);
    acc2 = _mm512_fmadd_ps(d2, d2, acc2);
    acc3 = _mm512_fmadd_ps(d3, d3, acc3);
  }
  for (; i + 16 <= d; i += 16) {
    __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
    acc0 = _mm512_fmadd_ps(d0, d0, acc0);
  }
  if (i < d) {
    __mmask16 m = TailMask16(d - i);
    __m512 d0 = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i));
    acc1 = _mm512_fmadd_ps(d0, d0, acc1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3)));
}

float Dot(const float* a, const float* b, size_t d) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  __m512 acc2 = _mm512_setzero_ps(), acc3 = _mm512_setzero_ps();
  size_t i = 0;
  for (; i + 64 <= d; i += 64) {
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
    acc2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), acc2);
    acc3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), acc3);
  }
  for (; i + 16 <= d; i += 16) {
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
  }
  if (i < d) {
    __mmask16 m = TailMask16(d - i);
    acc1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), acc1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3)));
}

uint32_t L2SqrU8(const uint8_t* a, const uint8_t* b, size_t d) {
  const __m512i zero = _mm512_setzero_si512();
  __m512i acc0 = _mm512_setzero_si512(), acc1 = _mm512_setzero_si512();
  size_t i = 0;
  auto step = [&](__m512i va, __m512i vb) {
    __m512i diff = _mm512_sub_epi8(_mm512_max_epu8(va, vb), _mm512_min_epu8(va, vb));
    __m512i lo = _mm512_unpacklo_epi8(diff, zero);
    __m512i hi = _mm512_unpackhi_epi8(diff, zero);
    acc0 = _mm512_add_epi32(acc0, _mm512_madd_epi16(lo, lo));
    acc1 = _mm512_add_epi32(acc1, _mm512_madd_epi16(hi, hi));
  };
  for (; i + 64 <= d; i += 64) step(_mm512_loadu_si512(a + i), _mm512_loadu_si512(b + i));
  if (i < d) {
    __mmask64 m = (d - i == 64) ? ~__mmask64{0} : ((__mmask64{1} << (d - i)) - 1);
    step(_mm512_maskz_loadu_epi8(m, a + i), _mm512_maskz_loadu_epi8(m, b + i));
  }
  return static_cast<uint32_t>(_mm512_reduce_add_epi32(_mm512_add_epi32(acc0, acc1)));
}

inline __mmask64 TailMask64(size_t n) { return n >= 64 ? ~__mmask64{0} : (__mmask64{1} << n) - 1; }

// Without VNNI: widened to 16 bits, then vpmaddwd (exact).
int32_t DotU8S8(const uint8_t* codes, const int8_t* q, size_t d) {
  __m512i acc0 = _mm512_setzero_si512(), acc1 = _mm512_setzero_si512();
  for (size_t i = 0; i < d; i += 64) {
    const __mmask64 m = TailMask64(d - i);
    const __m512i c = _mm512_maskz_loadu_epi8(m, codes + i), v = _mm512_maskz_loadu_epi8(m, q + i);
    acc0 = _mm512_add_epi32(acc0, _mm512_madd_epi16(_mm512_cvtepu8_epi16(_mm512_castsi512_si256(c)),
                                                    _mm512_cvtepi8_epi16(_mm512_castsi512_si256(v))));
    acc1 = _mm512_add_epi32(acc1, _mm512_madd_epi16(_mm512_cvtepu8_epi16(_mm512_extracti64x4_epi64(c, 1)),
                                                    _mm512_cvtepi8_epi16(_mm512_extracti64x4_epi64(v, 1))));
  }
  return _mm512_reduce_add_epi32(_mm512_add_epi32(acc0, acc1));
}

// VNNI: one vpdpbusd (u8 x s8, four products summed into each int32 lane) per 64 bytes.
__attribute__((target("avx512vnni"))) int32_t DotU8S8Vnni(const uint8_t* codes, const int8_t* q, size_t d) {
  __m512i acc0 = _mm512_setzero_si512(), acc1 = _mm512_setzero_si512();
  size_t i = 0;
  for (; i + 128 <= d; i += 128) {
    acc0 = _mm512_dpbusd_epi32(acc0, _mm512_loadu_si512(codes + i), _mm512_loadu_si512(q + i));
    acc1 = _mm512_dpbusd_epi32(acc1, _mm512_loadu_si512(codes + i + 64), _mm512_loadu_si512(q + i + 64));
  }
  for (; i < d; i += 64) {
    const __mmask64 m = TailMask64(d - i);
    acc0 = _mm512_dpbusd_epi32(acc0, _mm512_maskz_loadu_epi8(m, codes + i), _mm512_maskz_loadu_epi8(m, q + i));
  }
  return _mm512_reduce_add_epi32(_mm512_add_epi32(acc0, acc1));
}

// Nibbles are at most 15: vpmaddubsw cannot saturate.
int32_t DotU4S8(const uint8_t* codes, const int8_t* q, size_t bytes) {
  const __m512i nibble = _mm512_set1_epi8(0x0F), ones = _mm512_set1_epi16(1);
  __m512i acc = _mm512_setzero_si512();
  for (size_t t = 0; t < bytes; t += 64) {
    const __mmask64 m = TailMask64(bytes - t);
    const __m512i c = _mm512_maskz_loadu_epi8(m, codes + t);
    const __m512i lo = _mm512_and_si512(c, nibble), hi = _mm512_and_si512(_mm512_srli_epi16(c, 4), nibble);
    const __m512i pairs = _mm512_add_epi16(_mm512_maddubs_epi16(lo, _mm512_maskz_loadu_epi8(m, q + t)),
                                           _mm512_maddubs_epi16(hi, _mm512_maskz_loadu_epi8(m, q + bytes + t)));
    acc = _mm512_add_epi32(acc, _mm512_madd_epi16(pairs, ones));
  }
  return _mm512_reduce_add_epi32(acc);
}

__attribute__((target("avx512vnni"))) int32_t DotU4S8Vnni(const uint8_t* codes, const int8_t* q, size_t bytes) {
  const __m512i nibble = _mm512_set1_epi8(0x0F);
  __m512i acc0 = _mm512_setzero_si512(), acc1 = _mm512_setzero_si512();
  for (size_t t = 0; t < bytes; t += 64) {
    const __mmask64 m = TailMask64(bytes - t);
    const __m512i c = _mm512_maskz_loadu_epi8(m, codes + t);
    acc0 = _mm512_dpbusd_epi32(acc0, _mm512_and_si512(c, nibble), _mm512_maskz_loadu_epi8(m, q + t));
    acc1 = _mm512_dpbusd_epi32(acc1, _mm512_and_si512(_mm512_srli_epi16(c, 4), nibble),
                               _mm512_maskz_loadu_epi8(m, q + bytes + t));
  }
  return _mm512_reduce_add_epi32(_mm512_add_epi32(acc0, acc1));
}

float DotF32U8(const float* q, const uint8_t* codes, size_t d) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  size_t i = 0;
  for (; i + 32 <= d; i += 32) {
    __m512 c0 = _mm512_cvtepi32_ps(
        _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + i))));
    __m512 c1 = _mm512_cvtepi32_ps(
        _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + i + 16))));
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), c0, acc0);
    acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i + 16), c1, acc1);
  }
  for (; i < d; i += 16) {
    __mmask16 m = (d - i >= 16) ? __mmask16{0xffff} : TailMask16(d - i);
    __m512 c = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, codes + i)));
    acc0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + i), c, acc0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

// 32 codes per step: 16 bytes split into low and high nibbles, interleaved back into order.
float DotF32U4(const float* q, const uint8_t* codes, size_t d) {
  const __m128i nibble = _mm_set1_epi8(0x0F);
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  size_t i = 0;
  for (; i + 32 <= d; i += 32) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + i / 2));
    const __m128i lo = _mm_and_si128(b, nibble), hi = _mm_and_si128(_mm_srli_epi16(b, 4), nibble);
    __m512 c0 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_unpacklo_epi8(lo, hi)));
    __m512 c1 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_unpackhi_epi8(lo, hi)));
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), c0, acc0);
    acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i + 16), c1, acc1);
  }
  float sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
  for (; i < d; ++i) sum += q[i] * static_cast<float>(i % 2 ? codes[i / 2] >> 4 : codes[i / 2] & 0x0F);
  return sum;
}

float L2SqrF16(const float* q, const uint16_t* x, size_t d) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  size_t i = 0;
  for (; i + 32 <= d; i += 32) {
    __m512 x0 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i)));
    __m512 x1 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i + 16)));
    __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(q + i), x0);
    __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(q + i + 16), x1);
    acc0 = _mm512_fmadd_ps(d0, d0, acc0);
    acc1 = _mm512_fmadd_ps(d1, d1, acc1);
  }
  for (; i < d; i += 16) {
    const __mmask16 m = d - i >= 16 ? __mmask16(0xffff) : TailMask16(d - i);
    __m512 x0 = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x + i));
    __m512 d0 = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, q + i), x0);
    acc0 = _mm512_fmadd_ps(d0, d0, acc0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

float DotF16(const float* q, const uint16_t* x, size_t d) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  size_t i = 0;
  for (; i + 32 <= d; i += 32) {
    __m512 x0 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i)));
    __m512 x1 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i + 16)));
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), x0, acc0);
    acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i + 16), x1, acc1);
  }
  for (; i < d; i += 16) {
    const __mmask16 m = d - i >= 16 ? __mmask16(0xffff) : TailMask16(d - i);
    __m512 x0 = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x + i));
    acc0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + i), x0, acc0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

void F16ToF32(const uint16_t* x, float* out, size_t d) {
  for (size_t i = 0; i < d; i += 16) {
    const __mmask16 m = d - i >= 16 ? __mmask16(0xffff) : TailMask16(d - i);
    _mm512_mask_storeu_ps(out + i, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x + i)));
  }
}

}  // namespace

namespace {
float L1(const float* a, const float* b, size_t d) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  size_t i = 0;
  for (; i + 32 <= d; i += 32) {
    acc0 = _mm512_add_ps(acc0, _mm512_abs_ps(_mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i))));
    acc1 = _mm512_add_ps(acc1, _mm512_abs_ps(_mm512_sub_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16))));
  }
  for (; i + 16 <= d; i += 16) {
    acc0 = _mm512_add_ps(acc0, _mm512_abs_ps(_mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i))));
  }
  if (i < d) {
    __mmask16 m = TailMask16(d - i);
    acc1 = _mm512_add_ps(acc1, _mm512_abs_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i))));
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

float L2SqrF32U8Weighted(const float* a, const float* w, const uint8_t* codes, size_t d) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  size_t i = 0;
  for (; i + 32 <= d; i += 32) {
    const __m512 c0 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + i))));
    const __m512 c1 =
        _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + i + 16))));
    const __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(a + i), c0);
    const __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 16), c1);
    acc0 = _mm512_fmadd_ps(_mm512_mul_ps(d0, d0), _mm512_loadu_ps(w + i), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_mul_ps(d1, d1), _mm512_loadu_ps(w + i + 16), acc1);
  }
  for (; i < d; i += 16) {
    const __mmask16 m = (d - i >= 16) ? __mmask16{0xffff} : TailMask16(d - i);
    const __m512 c = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, codes + i)));
    const __m512 diff = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, a + i), c);
    acc0 = _mm512_fmadd_ps(_mm512_mul_ps(diff, diff), _mm512_maskz_loadu_ps(m, w + i), acc0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

// 32 lanes of q2 - 2 * codes as int16, from position i (the lanes in m; the rest are zero).
inline __m512i HalfStepDiff(const int16_t* q2, const uint8_t* codes, size_t i, __mmask32 m) {
  const __m512i x = _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(m, codes + i));
  return _mm512_sub_epi16(_mm512_maskz_loadu_epi16(m, q2 + i), _mm512_add_epi16(x, x));
}

int32_t L2SqrS16U8x2(const int16_t* q2, const uint8_t* codes, size_t d) {
  __m512i acc0 = _mm512_setzero_si512(), acc1 = _mm512_setzero_si512();
  for (size_t i = 0; i < d; i += 64) {
    const __m512i d0 = HalfStepDiff(q2, codes, i, TailMask32(d - i));
    const __m512i d1 = HalfStepDiff(q2, codes, i + 32, d - i > 32 ? TailMask32(d - i - 32) : 0);
    acc0 = _mm512_add_epi32(acc0, _mm512_madd_epi16(d0, d0));
    acc1 = _mm512_add_epi32(acc1, _mm512_madd_epi16(d1, d1));
  }
  return _mm512_reduce_add_epi32(_mm512_add_epi32(acc0, acc1));
}

// VNNI: the squares summed by vpdpwssd.
__attribute__((target("avx512vnni"))) int32_t L2SqrS16U8x2Vnni(const int16_t* q2,
                                                               const uint8_t* codes, size_t d) {
  __m512i acc0 = _mm512_setzero_si512(), acc1 = _mm512_setzero_si512();
  for (size_t i = 0; i < d; i += 64) {
    const __m512i d0 = HalfStepDiff(q2, codes, i, TailMask32(d - i));
    const __m512i d1 = HalfStepDiff(q2, codes, i + 32, d - i > 32 ? TailMask32(d - i - 32) : 0);
    acc0 = _mm512_dpwssd_epi32(acc0, d0, d0);
    acc1 = _mm512_dpwssd_epi32(acc1, d1, d1);
  }
  return _mm512_reduce_add_epi32(_mm512_add_epi32(acc0, acc1));
}
}  // namespace

namespace detail {
const Kernels kAvx512Kernels{Isa::kAvx512,       L2Sqr,       Dot,     L2SqrU8,  DotF32U8,
                             Pq4BlockSumsAvx2,   L2SqrF16,    DotF16,  F16ToF32, DotF32U4,
                             RbqDotPopcnt,       DotU8S8,     DotU4S8, false,    L1,
                             L2SqrF32U8Weighted, L2SqrS16U8x2};
const Kernels kAvx512VnniKernels{
    Isa::kAvx512,       L2Sqr,           Dot,         L2SqrU8,  DotF32U8,
    Pq4BlockSumsAvx2,   L2SqrF16,        DotF16,      F16ToF32, DotF32U4,
    RbqDotPopcnt,       DotU8S8Vnni,     DotU4S8Vnni, true,     L1,
    L2SqrF32U8Weighted, L2SqrS16U8x2Vnni};
}  // namespace detail

}  // namespace fathom::simd
