#include "index/rabitq.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "util/file.h"

namespace fathom {
namespace {

double L2(const float* a, const float* b, size_t d) {
  double s = 0;
  for (size_t i = 0; i < d; ++i) s += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
  return s;
}

std::vector<float> Gaussian(size_t n, size_t d, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g;
  std::vector<float> x(n * d);
  for (auto& v : x) v = g(rng);
  return x;
}

// The estimator is unbiased and its error is as the paper says: roughly Gaussian with the
// bound at eps0 = 1.9 standard deviations, so ~6% of pairs fall outside it (both sides; re-ranking
// only needs the lower side near the k-th distance), and twice the bound (3.8 sigma) holds for
// all but ~0.01%. For dimensions that are and are not multiples of 64.
TEST(RaBitQTest, EstimatesAreUnbiasedAndWithinTheirBound) {
  for (size_t d : {size_t{64}, size_t{100}, size_t{784}}) {
    const size_t n = 400, nq = 20;
    std::vector<float> x = Gaussian(n, d, 1), q = Gaussian(nq, d, 2);
    RaBitQuantizer rq(d);
    ASSERT_TRUE(rq.Train(n, x.data()).ok());
    ASSERT_EQ(rq.padded_dim() % 64, 0u);
    ASSERT_EQ(rq.code_size(), rq.padded_dim() / 8 + 24);  // bits, 4 factors, the centre, the shift
    std::vector<uint8_t> codes(n * rq.code_size());
    for (size_t i = 0; i < n; ++i) rq.Encode(x.data() + i * d, codes.data() + i * rq.code_size());
    double sum_error = 0, sum_true = 0;
    size_t outside = 0, far_outside = 0;
    RaBitQuantizer::Query prepared;
    for (size_t j = 0; j < nq; ++j) {
      rq.Prepare(q.data() + j * d, &prepared);
      for (size_t i = 0; i < n; ++i) {
        float bound;
        const double estimate = rq.Estimate(prepared, codes.data() + i * rq.code_size(), &bound);
        const double truth = L2(q.data() + j * d, x.data() + i * d, d);
        sum_error += estimate - truth;
        sum_true += truth;
        if (std::fabs(estimate - truth) > bound) ++outside;
        if (std::fabs(estimate - truth) > 2 * bound) ++far_outside;
        EXPECT_FLOAT_EQ(bound, rq.Bound(prepared, codes.data() + i * rq.code_size()));
      }
    }
    EXPECT_LT(std::fabs(sum_error) / sum_true, 0.01) << "d=" << d << ": biased";
    EXPECT_LE(outside, n * nq * 8 / 100) << "d=" << d << ": the bound failed for " << outside << " pairs";
    EXPECT_LE(far_outside, n * nq / 1000) << "d=" << d << ": twice the bound failed for " << far_outside << " pairs";
  }
}

// The rotation is orthogonal: a vector coded at the centre has distance |q - c|^2 exactly, and
// estimates are exact where they must be (the query equals the centre: |x - c|^2).
TEST(RaBitQTest, CentreAndQueryAtTheCentreAreExact) {
  const size_t d = 96;
  std::vector<float> x = Gaussian(50, d, 5);
  RaBitQuantizer rq(d);
  ASSERT_TRUE(rq.Train(50, x.data()).ok());
  ASSERT_EQ(rq.centres(), 1u);  // (too few points for more: the mean)
  std::vector<uint8_t> code(rq.code_size());
  std::vector<float> centre(d, 0.0f);
  for (size_t i = 0; i < 50 * d; ++i) centre[i % d] += x[i] / 50;
  rq.Encode(centre.data(), code.data());
  RaBitQuantizer::Query prepared;
  rq.Prepare(x.data(), &prepared);
  EXPECT_NEAR(rq.Estimate(prepared, code.data()), L2(x.data(), centre.data(), d), 1e-3);
  rq.Encode(x.data() + d, code.data());
  rq.Prepare(centre.data(), &prepared);
  EXPECT_NEAR(rq.Estimate(prepared, code.data()), L2(x.data() + d, centre.data(), d), 1e-2);
}

TEST(RaBitQTest, SerializedQuantizerCodesTheSame) {
  const size_t d = 130;
  std::vector<float> x = Gaussian(200, d, 7);
  RaBitQuantizer a(d);
  ASSERT_TRUE(a.Train(200, x.data()).ok());
  ASSERT_EQ(a.centres(), 3u);
  std::string bytes;
  StringSink sink(&bytes);
  ASSERT_TRUE(a.Serialize(sink).ok());
  RaBitQuantizer b(d);
  ByteReader reader(bytes, "quantizer");
  ASSERT_TRUE(b.Deserialize(reader).ok());
  std::vector<uint8_t> ca(a.code_size()), cb(b.code_size());
  for (size_t i = 0; i < 200; ++i) {
    a.Encode(x.data() + i * d, ca.data());
    b.Encode(x.data() + i * d, cb.data());
    ASSERT_EQ(ca, cb) << "row " << i;
  }
  // A truncated quantizer is an error, not a crash.
  RaBitQuantizer c(d);
  ByteReader cut(std::string_view(bytes).substr(0, bytes.size() - 3), "quantizer");
  EXPECT_FALSE(c.Deserialize(cut).ok());
}

}  // namespace
}  // namespace fathom
