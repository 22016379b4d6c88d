#include "simd/distance.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <ostream>
#include <string>

#include <cmath>
#include <random>
#include <vector>

namespace fathom::simd {

// Names in test listings ("GetParam() = avx2", not "1-byte object <01>"); found by ADL, so
// outside the unnamed namespace.
void PrintTo(Isa isa, std::ostream* os) { *os << IsaName(isa); }

namespace {

double RefL2(const float* a, const float* b, size_t d) {
  double s = 0;
  for (size_t i = 0; i < d; ++i) s += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
  return s;
}
double RefDot(const float* a, const float* b, size_t d) {
  double s = 0;
  for (size_t i = 0; i < d; ++i) s += double(a[i]) * b[i];
  return s;
}

const size_t kDims[] = {1, 2, 3, 7, 8, 15, 16, 17, 31, 33, 63, 64, 65, 100, 127, 128, 129, 255,
                        256, 257, 784, 1000, 1023, 1536, 4096, 4097};

class KernelTest : public ::testing::TestWithParam<Isa> {};

TEST_P(KernelTest, FloatKernelsMatchDoubleReferenceForEveryDimension) {
  const Kernels* k = ForIsa(GetParam());
  if (k == nullptr) GTEST_SKIP() << "this CPU cannot run " << IsaName(GetParam());
  ASSERT_EQ(k->isa, GetParam());
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.f, 1.f);
  for (size_t d : kDims) {
    // Offset by one float so that unaligned loads are exercised too.
    std::vector<float> buf_a(d + 1), buf_b(d + 1);
    for (auto& v : buf_a) v = dist(rng);
    for (auto& v : buf_b) v = dist(rng);
    const float* a = buf_a.data() + 1;
    const float* b = buf_b.data() + 1;
    double tol = 1e-4 * std::sqrt(double(d)) + 1e-5;
    EXPECT_NEAR(k->l2_sqr(a, b, d), RefL2(a, b, d), tol * RefL2(a, b, d) + 1e-5) << "d=" << d;
    EXPECT_NEAR(k->dot(a, b, d), RefDot(a, b, d), tol * std::sqrt(double(d))) << "d=" << d;
    double l1 = 0;
    for (size_t i = 0; i < d; ++i) l1 += std::fabs(double(a[i]) - double(b[i]));
    EXPECT_NEAR(k->l1(a, b, d), l1, tol * l1 + 1e-5) << "d=" << d;
  }
}

// FP16 kernels against a double reference over the decoded halves (so only the kernels'
// arithmetic is tested here; the encoding is tested below), every dimension, unaligned.
TEST_P(KernelTest, F16KernelsMatchDoubleReferenceForEveryDimension) {
  const Kernels* k = ForIsa(GetParam());
  if (k == nullptr) GTEST_SKIP() << "this CPU cannot run " << IsaName(GetParam());
  std::mt19937 rng(11);
  std::normal_distribution<float> dist(0.f, 3.f);
  for (size_t d : kDims) {
    std::vector<float> q_buf(d + 1), decoded(d);
    std::vector<uint16_t> h_buf(d + 1);
    for (auto& v : q_buf) v = dist(rng);
    for (size_t i = 0; i < d; ++i) {
      h_buf[i + 1] = FloatToHalf(dist(rng));
      decoded[i] = HalfToFloat(h_buf[i + 1]);
    }
    const float* q = q_buf.data() + 1;
    const uint16_t* h = h_buf.data() + 1;
    const double l2 = RefL2(q, decoded.data(), d), dot = RefDot(q, decoded.data(), d);
    double tol = 1e-4 * std::sqrt(double(d)) + 1e-5;
    EXPECT_NEAR(k->l2_sqr_f16(q, h, d), l2, tol * l2 + 1e-5) << "d=" << d;
    EXPECT_NEAR(k->dot_f16(q, h, d), dot, tol * 9 * std::sqrt(double(d))) << "d=" << d;
    std::vector<float> out(d + 1, -7.0f);
    k->f16_to_f32(h, out.data(), d);
    for (size_t i = 0; i < d; ++i) ASSERT_EQ(out[i], decoded[i]) << "d=" << d << " i=" << i;
    EXPECT_EQ(out[d], -7.0f) << "wrote past the end, d=" << d;
  }
}

TEST_P(KernelTest, U8KernelsAreExactOrNearExact) {
  const Kernels* k = ForIsa(GetParam());
  if (k == nullptr) GTEST_SKIP() << "this CPU cannot run " << IsaName(GetParam());
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> byte(0, 255);
  std::normal_distribution<float> dist(0.f, 1.f);
  for (size_t d : kDims) {
    std::vector<uint8_t> a(d + 1), b(d + 1);
    std::vector<float> q(d + 1);
    for (auto& v : a) v = static_cast<uint8_t>(byte(rng));
    for (auto& v : b) v = static_cast<uint8_t>(byte(rng));
    for (auto& v : q) v = dist(rng);
    uint64_t ref = 0;
    double ref_dot = 0;
    for (size_t i = 1; i <= d; ++i) {
      int64_t diff = int64_t{a[i]} - int64_t{b[i]};
      ref += static_cast<uint64_t>(diff * diff);
      ref_dot += double(q[i]) * b[i];
    }
    EXPECT_EQ(k->l2_sqr_u8(a.data() + 1, b.data() + 1, d), ref) << "d=" << d;
    EXPECT_NEAR(k->dot_f32_u8(q.data() + 1, b.data() + 1, d), ref_dot,
                1e-4 * 255 * std::sqrt(double(d)) * std::sqrt(double(d)))
        << "d=" << d;
  }
}

// The weighted float-to-code distance of the HNSW sketch bound, unaligned, every length: matches
// a double-precision loop (the tails of every path included).
TEST_P(KernelTest, WeightedU8DistanceMatchesReference) {
  const Kernels* k = ForIsa(GetParam());
  if (k == nullptr) GTEST_SKIP() << "this CPU cannot run " << IsaName(GetParam());
  std::mt19937 rng(17);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> pos(-20.f, 280.f), weight(0.01f, 4.f);
  for (size_t d : kDims) {
    std::vector<uint8_t> codes(d + 1);
    std::vector<float> a(d + 1), w(d + 1);
    for (auto& v : codes) v = static_cast<uint8_t>(byte(rng));
    for (auto& v : a) v = pos(rng);
    for (auto& v : w) v = weight(rng);
    double ref = 0;
    for (size_t i = 1; i <= d; ++i) ref += double(w[i]) * (double(a[i]) - codes[i]) * (double(a[i]) - codes[i]);
    EXPECT_NEAR(k->l2_sqr_f32_u8_weighted(a.data() + 1, w.data() + 1, codes.data() + 1, d), ref, 1e-5 * ref + 1e-3)
        << "d=" << d;
  }
}

// 4-bit codes, two per byte (low nibble first), unaligned, every length including odd ones: the
// dot product with a float query matches a double-precision loop over the unpacked codes.
TEST_P(KernelTest, U4DotReadsNibblesInOrder) {
  const Kernels* k = ForIsa(GetParam());
  if (k == nullptr) GTEST_SKIP() << "this CPU cannot run " << IsaName(GetParam());
  std::mt19937 rng(13);
  std::uniform_int_distribution<int> nibble(0, 15);
  std::normal_distribution<float> dist(0.f, 1.f);
  for (size_t d : kDims) {
    std::vector<uint8_t> codes((d + 1) / 2 + 1, 0);
    std::vector<int> values(d);
    std::vector<float> q(d + 1);
    for (size_t i = 0; i < d; ++i) {
      values[i] = nibble(rng);
      codes[1 + i / 2] |= static_cast<uint8_t>(i % 2 ? values[i] << 4 : values[i]);
    }
    for (auto& v : q) v = dist(rng);
    double ref = 0;
    for (size_t i = 0; i < d; ++i) ref += double(q[1 + i]) * values[i];
    EXPECT_NEAR(k->dot_f32_u4(q.data() + 1, codes.data() + 1, d), ref, 1e-5 * 15 * (double(d) + 1)) << "d=" << d;
  }
}

TEST_P(KernelTest, ExtremeValuesDoNotOverflowU8Accumulators) {
  const Kernels* k = ForIsa(GetParam());
  if (k == nullptr) GTEST_SKIP() << "this CPU cannot run " << IsaName(GetParam());
  const size_t d = 4096;
  std::vector<uint8_t> zeros(d, 0), full(d, 255);
  EXPECT_EQ(k->l2_sqr_u8(zeros.data(), full.data(), d), uint32_t{255 * 255} * d);
}

// u8 x s8 dot products are exact on every path, and on AVX-512 both with and without VNNI (a CPU
// with AVX-512 but no VNNI runs the second): random values at every length, unaligned, and the
// extremes (255 x -128 and 255 x 127 over 65,536 dimensions, the largest a collection allows).
void CheckDotU8S8(const Kernels& k, const std::string& name) {
  std::mt19937 rng(17);
  std::uniform_int_distribution<int> byte(0, 255), sbyte(-128, 127);
  for (size_t d : kDims) {
    std::vector<uint8_t> c(d + 1);
    std::vector<int8_t> q(d + 1);
    for (auto& v : c) v = static_cast<uint8_t>(byte(rng));
    for (auto& v : q) v = static_cast<int8_t>(sbyte(rng));
    int64_t ref = 0;
    for (size_t i = 1; i <= d; ++i) ref += int64_t{c[i]} * q[i];
    EXPECT_EQ(k.dot_u8_s8(c.data() + 1, q.data() + 1, d), ref) << name << " d=" << d;
  }
  const size_t d = 65536;
  std::vector<uint8_t> full(d, 255);
  std::vector<int8_t> low(d, -128), high(d, 127);
  EXPECT_EQ(k.dot_u8_s8(full.data(), low.data(), d), int64_t{255} * -128 * int64_t(d)) << name;
  EXPECT_EQ(k.dot_u8_s8(full.data(), high.data(), d), int64_t{255} * 127 * int64_t(d)) << name;
}

// 4-bit codes against int8 weights (even dimensions' weights, then odd ones'): exact.
void CheckDotU4S8(const Kernels& k, const std::string& name) {
  std::mt19937 rng(19);
  std::uniform_int_distribution<int> byte(0, 255), sbyte(-128, 127);
  for (size_t bytes : kDims) {
    std::vector<uint8_t> c(bytes + 1);
    std::vector<int8_t> q(2 * bytes + 1);
    for (auto& v : c) v = static_cast<uint8_t>(byte(rng));
    for (auto& v : q) v = static_cast<int8_t>(sbyte(rng));
    int64_t ref = 0;
    for (size_t t = 0; t < bytes; ++t) ref += int64_t{c[1 + t] & 15} * q[1 + t] + int64_t{c[1 + t] >> 4} * q[1 + bytes + t];
    EXPECT_EQ(k.dot_u4_s8(c.data() + 1, q.data() + 1, bytes), ref) << name << " bytes=" << bytes;
  }
  const size_t bytes = 32768;  // 65,536 dimensions of 15 x -128
  std::vector<uint8_t> full(bytes, 255);
  std::vector<int8_t> low(2 * bytes, -128);
  EXPECT_EQ(k.dot_u4_s8(full.data(), low.data(), bytes), int64_t{15} * -128 * 2 * int64_t(bytes)) << name;
}

// The pca walk's integer distance (half levels against 8-bit codes): exact at every length,
// unaligned, and at the extremes its caller allows (|q2 - 2 code| up to 4,095 over 128 dimensions).
void CheckL2SqrS16U8x2(const Kernels& k, const std::string& name) {
  std::mt19937 rng(29);
  std::uniform_int_distribution<int> byte(0, 255), half(-200, 700);
  for (size_t d : kDims) {
    std::vector<int16_t> q(d + 1);
    std::vector<uint8_t> c(d + 1);
    for (auto& v : q) v = static_cast<int16_t>(half(rng));
    for (auto& v : c) v = static_cast<uint8_t>(byte(rng));
    int64_t ref = 0;
    for (size_t i = 1; i <= d; ++i) ref += (int64_t{q[i]} - 2 * c[i]) * (int64_t{q[i]} - 2 * c[i]);
    EXPECT_EQ(k.l2_sqr_s16_u8x2(q.data() + 1, c.data() + 1, d), ref) << name << " d=" << d;
  }
  const size_t d = 128;
  std::vector<int16_t> high(d, 4095), low(d, 510 - 4095);
  std::vector<uint8_t> zeros(d, 0), full(d, 255);
  EXPECT_EQ(k.l2_sqr_s16_u8x2(high.data(), zeros.data(), d), int64_t{4095} * 4095 * int64_t(d))
      << name;
  EXPECT_EQ(k.l2_sqr_s16_u8x2(low.data(), full.data(), d), int64_t{4095} * 4095 * int64_t(d))
      << name;
}

TEST_P(KernelTest, IntegerDotProductsAreExact) {
  const Kernels* k = ForIsa(GetParam());
  if (k == nullptr) GTEST_SKIP() << "this CPU cannot run " << IsaName(GetParam());
  CheckDotU8S8(*k, std::string(IsaName(GetParam())) + (k->vnni ? " (VNNI)" : ""));
  CheckDotU4S8(*k, std::string(IsaName(GetParam())) + (k->vnni ? " (VNNI)" : ""));
  CheckL2SqrS16U8x2(*k, std::string(IsaName(GetParam())) + (k->vnni ? " (VNNI)" : ""));
  if (GetParam() == Isa::kAvx512) {
    const Kernels* plain = Avx512WithoutVnniForTesting();
    ASSERT_NE(plain, nullptr);
    EXPECT_FALSE(plain->vnni);
    CheckDotU8S8(*plain, "avx512 without VNNI");
    CheckDotU4S8(*plain, "avx512 without VNNI");
    CheckL2SqrS16U8x2(*plain, "avx512 without VNNI");
  }
}

// The RaBitQ kernel is exact integer arithmetic: every path equals a bit-by-bit count.
TEST_P(KernelTest, RbqDotCountsBitsExactly) {
  const Kernels* k = ForIsa(GetParam());
  if (k == nullptr) GTEST_SKIP() << "this CPU cannot run " << IsaName(GetParam());
  std::mt19937_64 rng(3);
  for (size_t words : {size_t{1}, size_t{2}, size_t{13}, size_t{16}, size_t{64}}) {
    std::vector<uint64_t> code(words), planes(4 * words);
    for (auto& w : code) w = rng();
    for (auto& w : planes) w = rng();
    if (words == 2) std::fill(code.begin(), code.end(), ~uint64_t{0});  // every bit set
    uint32_t expected = 0;
    for (size_t bit = 0; bit < words * 64; ++bit) {
      if (!((code[bit / 64] >> (bit % 64)) & 1)) continue;
      for (int j = 0; j < 4; ++j) expected += uint32_t((planes[j * words + bit / 64] >> (bit % 64)) & 1) << j;
    }
    EXPECT_EQ(k->rbq_dot(code.data(), planes.data(), words), expected) << words << " words";
  }
}

INSTANTIATE_TEST_SUITE_P(AllIsas, KernelTest,
                         ::testing::Values(Isa::kScalar, Isa::kAvx2, Isa::kAvx512),
                         [](const auto& info) { return std::string(IsaName(info.param)); });

// tests/simd/kernel_paths.sh runs the suites under each FATHOM_SIMD value and reads the
// "kernel path:" line to prove which path ran; a forced path the CPU supports must be the one used.
TEST(DispatchTest, ActiveIsTheBestSupportedUnlessForced) {
  const char* env = std::getenv("FATHOM_SIMD");
  if (env == nullptr || *env == '\0') {
    EXPECT_EQ(Active().isa, BestSupportedIsa());
  } else {
    for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
      if (std::string(env) == IsaName(isa) && ForIsa(isa) != nullptr) EXPECT_EQ(Active().isa, isa);
    }
  }
  EXPECT_NE(ForIsa(Isa::kScalar), nullptr);
  std::printf("kernel path: %s\n", IsaName(Active().isa));
}

// Half-precision conversion: every half survives a round trip through float; known values;
// rounding to nearest even at a tie; overflow to infinity beyond 65504; subnormals; and for
// random floats in range the relative error is at most 2^-11.
TEST(HalfTest, ConversionIsIeeeRoundToNearestEven) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = HalfToFloat(uint16_t(h));
    if (std::isnan(f)) {
      EXPECT_TRUE((h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0) << h;
      continue;
    }
    ASSERT_EQ(FloatToHalf(f), h) << "half " << h << " -> " << f;
  }
  EXPECT_EQ(FloatToHalf(1.0f), 0x3c00u);
  EXPECT_EQ(FloatToHalf(-2.0f), 0xc000u);
  EXPECT_EQ(FloatToHalf(65504.0f), 0x7bffu);
  EXPECT_EQ(FloatToHalf(65519.0f), 0x7bffu);
  EXPECT_EQ(FloatToHalf(65520.0f), 0x7c00u);  // the tie rounds to even: infinity
  EXPECT_EQ(FloatToHalf(1e9f), 0x7c00u);
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -24)), 0x0001u);    // smallest subnormal
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -25)), 0x0000u);    // its half: tie to even (zero)
  EXPECT_EQ(FloatToHalf(std::ldexp(1.5f, -25)), 0x0001u);
  EXPECT_EQ(FloatToHalf(1.0f + std::ldexp(1.0f, -11)), 0x3c00u);  // tie, even stays
  EXPECT_EQ(FloatToHalf(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02u);  // tie, odd rounds up
  EXPECT_EQ(HalfToFloat(0x0001u), std::ldexp(1.0f, -24));
  EXPECT_EQ(HalfToFloat(0x03ffu), std::ldexp(1023.0f, -24));
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-60000.f, 60000.f);
  for (int i = 0; i < 100000; ++i) {
    float f = u(rng) * (i % 2 ? 1.0f : 1e-3f);
    EXPECT_LE(std::fabs(HalfToFloat(FloatToHalf(f)) - f), std::fabs(f) * std::ldexp(1.0f, -11) + 1e-7f) << f;
  }
}

TEST(NormalizeTest, UnitLengthAndZeroVectorUntouched) {
  std::vector<float> v = {3, 4};
  EXPECT_FLOAT_EQ(Normalize(v.data(), 2), 5.f);
  EXPECT_FLOAT_EQ(v[0], 0.6f);
  EXPECT_FLOAT_EQ(v[1], 0.8f);
  std::vector<float> z = {0, 0, 0};
  EXPECT_EQ(Normalize(z.data(), 3), 0.f);
  EXPECT_EQ(z[0], 0.f);
}

}  // namespace
}  // namespace fathom::simd
