// Distance kernels with run-time CPU dispatch.
//
// One binary carries a scalar, an AVX2+FMA and an AVX-512 version of each kernel; Active() picks
// the best one the CPU supports, once, unless FATHOM_SIMD=scalar|avx2|avx512 asks for a specific
// path (a path the CPU cannot run falls back to the best supported one, with a warning on stderr).
// All kernels are pure functions: safe to call from any number of threads.
//
// Conventions: l2_sqr is the squared Euclidean distance; l1 the Manhattan distance; dot is the
// inner product. The u8
// kernels serve scalar-quantized codes: l2_sqr_u8 is exact integer arithmetic, dot_f32_u8 takes
// a float query against u8 codes. The f16 kernels take a float query against IEEE half-precision
// values (FP16 codes).
#pragma once

#include <cstddef>
#include <cstdint>

namespace fathom::simd {

enum class Isa : uint8_t { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };

const char* IsaName(Isa isa);

struct Kernels {
  Isa isa;
  float (*l2_sqr)(const float* a, const float* b, size_t d);
  float (*dot)(const float* a, const float* b, size_t d);
  uint32_t (*l2_sqr_u8)(const uint8_t* a, const uint8_t* b, size_t d);
  float (*dot_f32_u8)(const float* q, const uint8_t* codes, size_t d);
  // 4-bit product-quantizer fast scan: for one block of 32 vectors, out[i] = sum over the m
  // sub-quantizers s of luts[s * 16 + code_{s,i}]. codes holds m * 16 bytes: for sub-quantizer
  // s, byte j has vector j's code in its low nibble and vector j + 16's in its high nibble.
  // m must be even; each lut entry is uint8, sums are exact in uint16 for m <= 256.
  void (*pq4_block_sums)(const uint8_t* codes, const uint8_t* luts, size_t m, uint16_t* out);
  float (*l2_sqr_f16)(const float* q, const uint16_t* x, size_t d);
  float (*dot_f16)(const float* q, const uint16_t* x, size_t d);
  void (*f16_to_f32)(const uint16_t* x, float* out, size_t d);
  // 4-bit scalar codes: sum_i q[i] * code_i, code_i the low nibble of codes[i / 2] for even i
  // and its high nibble for odd i.
  float (*dot_f32_u4)(const float* q, const uint8_t* codes, size_t d);
  // RaBitQ: sum over j in 0..3 of 2^j * popcount(code & planes[j]), where code and each of the
  // four bit planes of the quantised query are `words` 64-bit words (planes[j] starts at
  // planes + j * words). Exact integer arithmetic: every path returns the same value.
  uint32_t (*rbq_dot)(const uint64_t* code, const uint64_t* planes, size_t words);
  // sum_i codes[i] * q[i], exact on every path (|result| < 2^31 for d <= 65536): the SQ8 walk
  // computes |q - b|^2 as |q|^2 + (|b|^2 - 256 sum b) - 2 dot_u8_s8(b, q - 128). AVX-512 uses
  // VNNI (vpdpbusd, one instruction per 64 bytes) where the CPU has it.
  int32_t (*dot_u8_s8)(const uint8_t* codes, const int8_t* q, size_t d);
  // 4-bit codes against int8 weights: sum over bytes t < `bytes` of (codes[t] & 15) * q[t] +
  // (codes[t] >> 4) * q[bytes + t] (q holds the even dimensions' weights, then the odd ones').
  // Exact on every path.
  int32_t (*dot_u4_s8)(const uint8_t* codes, const int8_t* q, size_t bytes);
  bool vnni;  // dot_u8_s8, dot_u4_s8 and l2_sqr_s16_u8x2 are the VNNI kernels
  // sum_i |a[i] - b[i]| (Manhattan distance).
  float (*l1)(const float* a, const float* b, size_t d);
  // sum_i w[i] * (a[i] - codes[i])^2: the squared distance from a float point to 8-bit codes
  // with a step per dimension (a and w in code units: a = (x - lo) / step, w = step^2). The
  // HNSW pca walk where it cannot run in integers (index files written before 2026-12-04, with a
  // step per component; p = 1 or p > 8255; see l2_sqr_s16_u8x2).
  float (*l2_sqr_f32_u8_weighted)(const float* a, const float* w, const uint8_t* codes, size_t d);
  // sum_i (q2[i] - 2 codes[i])^2 in int32: the squared distance, in half steps, from a point
  // given in half steps (q2, rounded) to 8-bit codes with one step for every dimension (the
  // HNSW pca walk). Exact when every |q2[i] - 2 codes[i]| <= 32767 (the SIMD paths subtract in
  // int16) and d * max |q2[i] - 2 codes[i]|^2 < 2^31.
  int32_t (*l2_sqr_s16_u8x2)(const int16_t* q2, const uint8_t* codes, size_t d);
};

// The kernels used by every index; chosen once per process.
const Kernels& Active();

// Switches the kernels Active() returns from now on, for benchmarks that compare paths in one
// process (ann_bench --isa); false (and no change) when this CPU cannot run `isa`. Call it only
// while no index is being built or searched: an index may hold data encoded for one path.
bool UseIsa(Isa isa);

// The kernels for one ISA, or nullptr when this CPU cannot run them.
const Kernels* ForIsa(Isa isa);

// The AVX-512 kernels without VNNI (what a CPU with AVX-512 but no VNNI runs), for tests on a
// CPU that has VNNI; nullptr when this CPU cannot run AVX-512.
const Kernels* Avx512WithoutVnniForTesting();

// The scalar fast-scan kernel, shared as the reference for tests.
void Pq4BlockSumsScalar(const uint8_t* codes, const uint8_t* luts, size_t m, uint16_t* out);

// IEEE 754 half precision: round to nearest even; magnitudes above 65504 become infinity (FP16
// indexes reject such values before encoding).
uint16_t FloatToHalf(float f);
float HalfToFloat(uint16_t h);
constexpr float kHalfMax = 65504.0f;

// The widest ISA this CPU (and OS) supports.
Isa BestSupportedIsa();

// Scales v to unit length; returns its original norm (a zero vector is left as is).
float Normalize(float* v, size_t d);

// Per-ISA tables, defined in distance_<isa>.cc.
namespace detail {
extern const Kernels kScalarKernels;
extern const Kernels kAvx2Kernels;
// The AVX2 fast-scan kernel, also the AVX-512 table's (its 32-vector block fills 256 bits).
void Pq4BlockSumsAvx2(const uint8_t* codes, const uint8_t* luts, size_t m, uint16_t* out);
// The popcnt RaBitQ kernel of the AVX2 and AVX-512 tables.
uint32_t RbqDotPopcnt(const uint64_t* code, const uint64_t* planes, size_t words);
extern const Kernels kAvx512Kernels;      // AVX-512 F, BW, VL, DQ
extern const Kernels kAvx512VnniKernels;  // the same with the VNNI dot_u8_s8
}  // namespace detail

}  // namespace fathom::simd
