#include "simd/distance.h"

#include <atomic>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace fathom::simd {
namespace {

float L2SqrScalar(const float* a, const float* b, size_t d) {
  float sum = 0;
  for (size_t i = 0; i < d; ++i) {
    float diff = a[i] - b[i];
    sum += diff * diff;
  }
  return sum;
}

float DotScalar(const float* a, const float* b, size_t d) {
  float sum = 0;
  for (size_t i = 0; i < d; ++i) sum += a[i] * b[i];
  return sum;
}

uint32_t L2SqrU8Scalar(const uint8_t* a, const uint8_t* b, size_t d) {
  uint32_t sum = 0;
  for (size_t i = 0; i < d; ++i) {
    int diff = int{a[i]} - int{b[i]};
    sum += static_cast<uint32_t>(diff * diff);
  }
  return sum;
}

float DotF32U8Scalar(const float* q, const uint8_t* codes, size_t d) {
  float sum = 0;
  for (size_t i = 0; i < d; ++i) sum += q[i] * static_cast<float>(codes[i]);
  return sum;
}

float DotF32U4Scalar(const float* q, const uint8_t* codes, size_t d) {
  float sum = 0;
  for (size_t i = 0; i < d; ++i) sum += q[i] * static_cast<float>(i % 2 ? codes[i / 2] >> 4 : codes[i / 2] & 0x0F);
  return sum;
}

float L2SqrF16Scalar(const float* q, const uint16_t* x, size_t d) {
  float sum = 0;
  for (size_t i = 0; i < d; ++i) {
    float diff = q[i] - HalfToFloat(x[i]);
    sum += diff * diff;
  }
  return sum;
}

float DotF16Scalar(const float* q, const uint16_t* x, size_t d) {
  float sum = 0;
  for (size_t i = 0; i < d; ++i) sum += q[i] * HalfToFloat(x[i]);
  return sum;
}

void F16ToF32Scalar(const uint16_t* x, float* out, size_t d) {
  for (size_t i = 0; i < d; ++i) out[i] = HalfToFloat(x[i]);
}

bool CpuHasAvx2() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("popcnt");
}
bool CpuHasAvx512() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}
bool CpuHasVnni() { return CpuHasAvx512() && __builtin_cpu_supports("avx512vnni"); }

const Kernels& Choose() {
  Isa best = BestSupportedIsa();
  Isa want = best;
  if (const char* env = std::getenv("FATHOM_SIMD"); env != nullptr && *env != '\0') {
    if (std::strcmp(env, "scalar") == 0) {
      want = Isa::kScalar;
    } else if (std::strcmp(env, "avx2") == 0) {
      want = Isa::kAvx2;
    } else if (std::strcmp(env, "avx512") == 0) {
      want = Isa::kAvx512;
    } else {
      std::fprintf(stderr, "fathom: FATHOM_SIMD='%s' is not one of scalar|avx2|avx512; using %s\n",
                   env, IsaName(best));
    }
    if (static_cast<int>(want) > static_cast<int>(best)) {
      std::fprintf(stderr, "fathom: FATHOM_SIMD=%s is not supported by this CPU; using %s\n", env,
                   IsaName(best));
      want = best;
    }
  }
  return *ForIsa(want);
}

}  // namespace

void Pq4BlockSumsScalar(const uint8_t* codes, const uint8_t* luts, size_t m, uint16_t* out) {
  uint16_t acc[32] = {};
  for (size_t s = 0; s < m; ++s) {
    const uint8_t* c = codes + s * 16;
    const uint8_t* t = luts + s * 16;
    for (size_t j = 0; j < 16; ++j) {
      acc[j] = uint16_t(acc[j] + t[c[j] & 15]);
      acc[j + 16] = uint16_t(acc[j + 16] + t[c[j] >> 4]);
    }
  }
  std::memcpy(out, acc, sizeof(acc));
}

int32_t DotU8S8Scalar(const uint8_t* codes, const int8_t* q, size_t d) {
  int32_t sum = 0;
  for (size_t i = 0; i < d; ++i) sum += int32_t{codes[i]} * int32_t{q[i]};
  return sum;
}

int32_t L2SqrS16U8x2Scalar(const int16_t* q2, const uint8_t* codes, size_t d) {
  int32_t sum = 0;
  for (size_t i = 0; i < d; ++i) {
    const int32_t diff = int32_t{q2[i]} - 2 * int32_t{codes[i]};
    sum += diff * diff;
  }
  return sum;
}

int32_t DotU4S8Scalar(const uint8_t* codes, const int8_t* q, size_t bytes) {
  int32_t sum = 0;
  for (size_t t = 0; t < bytes; ++t) sum += int32_t{codes[t] & 15} * q[t] + int32_t{codes[t] >> 4} * q[bytes + t];
  return sum;
}

namespace detail {
uint32_t RbqDotScalar(const uint64_t* code, const uint64_t* planes, size_t words) {
  uint32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (size_t w = 0; w < words; ++w) {
    const uint64_t c = code[w];
    s0 += uint32_t(std::popcount(c & planes[w]));
    s1 += uint32_t(std::popcount(c & planes[words + w]));
    s2 += uint32_t(std::popcount(c & planes[2 * words + w]));
    s3 += uint32_t(std::popcount(c & planes[3 * words + w]));
  }
  return s0 + 2 * s1 + 4 * s2 + 8 * s3;
}

float L1Scalar(const float* a, const float* b, size_t d) {
  float sum = 0;
  for (size_t i = 0; i < d; ++i) sum += std::fabs(a[i] - b[i]);
  return sum;
}

float L2SqrF32U8WeightedScalar(const float* a, const float* w, const uint8_t* codes, size_t d) {
  float sum = 0;
  for (size_t i = 0; i < d; ++i) {
    const float diff = a[i] - float(codes[i]);
    sum += w[i] * diff * diff;
  }
  return sum;
}

const Kernels kScalarKernels{Isa::kScalar,      L2SqrScalar,
                             DotScalar,         L2SqrU8Scalar,
                             DotF32U8Scalar,    Pq4BlockSumsScalar,
                             L2SqrF16Scalar,    DotF16Scalar,
                             F16ToF32Scalar,    DotF32U4Scalar,
                             RbqDotScalar,      DotU8S8Scalar,
                             DotU4S8Scalar,     false,
                             L1Scalar,          L2SqrF32U8WeightedScalar,
                             L2SqrS16U8x2Scalar};
}  // namespace detail

const char* IsaName(Isa isa) {
  switch (isa) {
    case Isa::kScalar: return "scalar";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvx512: return "avx512";
  }
  return "unknown";
}

Isa BestSupportedIsa() {
  if (CpuHasAvx512()) return Isa::kAvx512;
  if (CpuHasAvx2()) return Isa::kAvx2;
  return Isa::kScalar;
}

const Kernels* ForIsa(Isa isa) {
  if (static_cast<int>(isa) > static_cast<int>(BestSupportedIsa())) return nullptr;
  switch (isa) {
    case Isa::kScalar: return &detail::kScalarKernels;
    case Isa::kAvx2: return &detail::kAvx2Kernels;
    case Isa::kAvx512: return CpuHasVnni() ? &detail::kAvx512VnniKernels : &detail::kAvx512Kernels;
  }
  return nullptr;
}

const Kernels* Avx512WithoutVnniForTesting() { return CpuHasAvx512() ? &detail::kAvx512Kernels : nullptr; }

namespace {
// Set once from FATHOM_SIMD (Choose), or by UseIsa; read with one relaxed load per call.
std::atomic<const Kernels*> g_active{nullptr};
}  // namespace

const Kernels& Active() {
  const Kernels* k = g_active.load(std::memory_order_relaxed);
  if (k != nullptr) return *k;
  static const Kernels& chosen = Choose();
  const Kernels* expected = nullptr;
  g_active.compare_exchange_strong(expected, &chosen, std::memory_order_relaxed);
  return *g_active.load(std::memory_order_relaxed);
}

bool UseIsa(Isa isa) {
  const Kernels* k = ForIsa(isa);
  if (k == nullptr) return false;
  g_active.store(k, std::memory_order_relaxed);
  return true;
}

uint16_t FloatToHalf(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof(x));
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  x &= 0x7fffffffu;
  if (x >= 0x7f800000u) return sign | (x > 0x7f800000u ? 0x7e00u : 0x7c00u);  // NaN, infinity
  if (x >= 0x477ff000u) return sign | 0x7c00u;  // rounds above 65504: infinity
  if (x < 0x38800000u) {
    // Subnormal half (or zero): value / 2^-24, rounded to nearest even.
    if (x < 0x33000000u) return sign;  // below half the smallest subnormal
    const uint32_t mant = (x & 0x7fffffu) | 0x800000u;
    const int shift = 126 - int(x >> 23);  // 14..24 for exponents -12..-2 (as float: 113..103)
    uint32_t h = mant >> shift;
    const uint32_t rest = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rest > half || (rest == half && (h & 1))) ++h;
    return sign | static_cast<uint16_t>(h);
  }
  // Normal: rebias the exponent (127 -> 15), keep 10 mantissa bits, round to nearest even (a
  // carry into the exponent is the correct result).
  uint32_t h = ((x - 0x38000000u) >> 13);
  const uint32_t rest = x & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1))) ++h;
  return sign | static_cast<uint16_t>(h);
}

float HalfToFloat(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  uint32_t x;
  if (exp == 0) {
    if (mant == 0) {
      x = sign;
    } else {  // subnormal: normalise
      int e = -1;
      uint32_t m = mant;
      do {
        ++e;
        m <<= 1;
      } while ((m & 0x400u) == 0);
      x = sign | (uint32_t(112 - e) << 23) | ((m & 0x3ffu) << 13);
    }
  } else if (exp == 31) {
    x = sign | 0x7f800000u | (mant << 13);
  } else {
    x = sign | ((exp + 112) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &x, sizeof(f));
  return f;
}

float Normalize(float* v, size_t d) {
  float norm = std::sqrt(Active().dot(v, v, d));
  if (norm > 0) {
    float inv = 1.0f / norm;
    for (size_t i = 0; i < d; ++i) v[i] *= inv;
  }
  return norm;
}

}  // namespace fathom::simd
