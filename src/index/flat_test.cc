#include "index/flat.h"

#include <gtest/gtest.h>

#include <cmath>
#include <ostream>

#include "index/test_data.h"

namespace fathom {

// Readable parameter names in test listings; found by ADL, so outside the unnamed namespace.
void PrintTo(Metric metric, std::ostream* os) { *os << MetricName(metric); }

namespace {

using testing::BruteForce;
using testing::Clustered;

class FlatMetricTest : public ::testing::TestWithParam<Metric> {};

// Both the BLAS batch path (>= 8 queries) and the one-query kernel path match a naive reference.
TEST_P(FlatMetricTest, MatchesNaiveReferenceOnBothPaths) {
  const Metric metric = GetParam();
  auto data = Clustered(3000, 40, 37, 10, 5);
  auto made = MakeIndex("Flat", data.dim, metric);
  ASSERT_TRUE(made.ok()) << made.status().ToString();
  auto& index = **made;
  ASSERT_TRUE(index.Add(data.n(), data.base.data()).ok());
  ASSERT_EQ(index.size(), 3000u);
  const size_t k = 10;
  auto truth = BruteForce(data, k, metric);
  std::vector<float> dist(data.nq() * k);
  std::vector<label_t> labels(data.nq() * k);
  ASSERT_TRUE(index.Search(data.nq(), data.queries.data(), k, dist.data(), labels.data()).ok());
  EXPECT_GE(testing::Recall(truth, labels, k), 0.999);
  for (size_t q = 0; q < 3; ++q) {  // single-query path
    std::vector<float> d1(k);
    std::vector<label_t> l1(k);
    ASSERT_TRUE(index.Search(1, data.queries.data() + q * data.dim, k, d1.data(), l1.data()).ok());
    for (size_t i = 0; i < k; ++i) {
      EXPECT_NEAR(d1[i], dist[q * k + i], 1e-2 * std::max(1.f, std::fabs(d1[i])));
    }
    EXPECT_EQ(l1[0], labels[q * k]);
  }
  for (size_t q = 0; q < data.nq(); ++q) {
    for (size_t i = 1; i < k; ++i) EXPECT_LE(dist[q * k + i - 1], dist[q * k + i]);
    // The batch (BLAS) distances against a hand-computed double-precision oracle.
    EXPECT_EQ(testing::CheckAgainstReference(data, metric, q, k, &dist[q * k], &labels[q * k]), "")
        << MetricName(metric);
  }
}

INSTANTIATE_TEST_SUITE_P(Metrics, FlatMetricTest,
                         ::testing::Values(Metric::kL2, Metric::kInnerProduct, Metric::kCosine, Metric::kL1),
                         [](const auto& info) { return std::string(MetricName(info.param)); });

TEST(FlatTest, DistancesFollowTheDocumentedConventions) {
  std::vector<float> base = {1, 0, 0, 2};  // two 2-d vectors: (1,0) and (0,2)
  std::vector<float> q = {1, 1};
  for (Metric m : {Metric::kL2, Metric::kInnerProduct, Metric::kCosine, Metric::kL1}) {
    auto index = std::move(MakeIndex("Flat", 2, m)).value();
    ASSERT_TRUE(index->Add(2, base.data()).ok());
    float d[2];
    label_t l[2];
    ASSERT_TRUE(index->Search(1, q.data(), 2, d, l).ok());
    if (m == Metric::kL2) {
      EXPECT_EQ(l[0], 0);
      EXPECT_FLOAT_EQ(d[0], 1.f);  // (1-1)^2 + (1-0)^2
      EXPECT_FLOAT_EQ(d[1], 2.f);  // 1 + 1
    } else if (m == Metric::kInnerProduct) {
      EXPECT_EQ(l[0], 1);
      EXPECT_FLOAT_EQ(d[0], -2.f);
    } else if (m == Metric::kL1) {
      EXPECT_EQ(l[0], 0);
      EXPECT_FLOAT_EQ(d[0], 1.f);  // |1-1| + |1-0|
      EXPECT_FLOAT_EQ(d[1], 2.f);  // |1-0| + |1-2|
    } else {
      EXPECT_NEAR(d[0], 1 - 1 / std::sqrt(2.f), 1e-6);
    }
  }
}

TEST(FlatTest, RemoveReplaceAndFilter) {
  auto index = std::move(MakeIndex("Flat", 2, Metric::kL2)).value();
  std::vector<float> v = {0, 0, 1, 0, 2, 0, 3, 0};
  std::vector<label_t> ids = {10, 11, 12, 13};
  ASSERT_TRUE(index->Add(4, v.data(), ids.data()).ok());
  label_t gone = 10;
  size_t removed = 0;
  ASSERT_TRUE(index->Remove(1, &gone, &removed).ok());
  EXPECT_EQ(removed, 1u);
  EXPECT_FALSE(index->Contains(10));
  // Replace label 13 with a vector at the origin.
  std::vector<float> moved = {0, 0.1f};
  label_t thirteen = 13;
  ASSERT_TRUE(index->Add(1, moved.data(), &thirteen).ok());
  EXPECT_EQ(index->size(), 3u);
  float q[2] = {0, 0};
  float d[4];
  label_t l[4];
  ASSERT_TRUE(index->Search(1, q, 4, d, l).ok());
  EXPECT_EQ(l[0], 13);
  EXPECT_EQ(l[1], 11);
  EXPECT_EQ(l[3], kNoLabel);
  EXPECT_TRUE(std::isinf(d[3]));
  FunctionFilter only_even([](label_t x) { return x % 2 == 0; });
  SearchParams params;
  params.filter = &only_even;
  ASSERT_TRUE(index->Search(1, q, 2, d, l, params).ok());
  EXPECT_EQ(l[0], 12);
  EXPECT_EQ(l[1], kNoLabel);
}

// The one-pass check every query takes (a SIMD sum of squares) never accepts what the exact
// check rejects: NaN and infinities anywhere (also past the last full SIMD block), and norms
// at the limit go to the exact check, which decides.
TEST(FlatTest, QuickVectorCheckDefersToTheExactOne) {
  for (size_t dim : {3, 16, 37, 128}) {
    for (float bad : {NAN, INFINITY, -INFINITY}) {
      std::vector<float> v(dim, 0.5f);
      v[dim - 1] = bad;
      EXPECT_FALSE(VectorLooksValid(v.data(), dim)) << dim;
      EXPECT_FALSE(CheckVector(v.data(), dim, "q").ok());
    }
    std::vector<float> fine(dim, -3.0f);
    EXPECT_TRUE(VectorLooksValid(fine.data(), dim));
  }
  const float edge = float(std::sqrt(kMaxSquaredNorm));
  std::vector<float> above = {edge * 1.001f, 0};
  std::vector<float> below = {edge * 0.9999f, 0};
  EXPECT_FALSE(VectorLooksValid(above.data(), 2));
  EXPECT_NE(CheckVector(above.data(), 2, "q").message().find("above the limit"), std::string::npos);
  EXPECT_FALSE(VectorLooksValid(below.data(), 2));  // inside the margin: the exact check decides
  EXPECT_TRUE(CheckVector(below.data(), 2, "q").ok());
}

TEST(FlatTest, RejectsBadInputWithPreciseErrors) {
  auto index = std::move(MakeIndex("Flat", 3, Metric::kL2)).value();
  std::vector<float> v = {1, 2, NAN};
  Status s = index->Add(1, v.data());
  EXPECT_TRUE(s.IsInvalidArgument());
  EXPECT_EQ(s.message(), "vector 0 has a non-finite value (nan) at dimension 2");
  std::vector<float> two = {1, 2, 3, 4, 5, 6};
  std::vector<label_t> dup = {7, 7};
  s = index->Add(2, two.data(), dup.data());
  EXPECT_EQ(s.message(), "label 7 appears more than once in the batch (again at position 1)");
  label_t neg = -4;
  s = index->Add(1, two.data(), &neg);
  EXPECT_EQ(s.message(), "label -4 at position 0 is negative: labels must be >= 0");
  EXPECT_EQ(index->size(), 0u);  // nothing from the failed batches was added
  float d;
  label_t l;
  s = index->Search(1, two.data(), 0, &d, &l);
  EXPECT_EQ(s.message(), "k must be at least 1");
}

}  // namespace
}  // namespace fathom
