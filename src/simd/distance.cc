#include "simd/distance.h"

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

bool CpuHasAvx2() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
bool CpuHasAvx512() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}

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

namespace detail {
const Kernels kScalarKernels{Isa::kScalar, L2SqrScalar, DotScalar, L2SqrU8Scalar, DotF32U8Scalar, Pq4BlockSumsScalar};
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
    case Isa::kAvx512: return &detail::kAvx512Kernels;
  }
  return nullptr;
}

const Kernels& Active() {
  static const Kernels& kernels = Choose();
  return kernels;
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
