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

TEST_P(KernelTest, ExtremeValuesDoNotOverflowU8Accumulators) {
  const Kernels* k = ForIsa(GetParam());
  if (k == nullptr) GTEST_SKIP() << "this CPU cannot run " << IsaName(GetParam());
  const size_t d = 4096;
  std::vector<uint8_t> zeros(d, 0), full(d, 255);
  EXPECT_EQ(k->l2_sqr_u8(zeros.data(), full.data(), d), uint32_t{255 * 255} * d);
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
