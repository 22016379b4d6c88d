#include "index/balltree.h"
#include "index/kdtree.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "index/test_data.h"

namespace fathom {
namespace {

using testing::Dataset;

Dataset Uniform(size_t n, size_t nq, size_t dim, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  Dataset d;
  d.dim = dim;
  d.base.resize(n * dim);
  d.queries.resize(nq * dim);
  for (float& x : d.base) x = u(rng);
  for (float& x : d.queries) x = u(rng);
  return d;
}

void ExpectExact(const Index& index, const Dataset& data, Metric metric, size_t k,
                 const std::vector<bool>* alive = nullptr, const LabelFilter* filter = nullptr) {
  std::vector<float> d(data.nq() * k);
  std::vector<label_t> l(data.nq() * k);
  SearchParams p;
  p.filter = filter;
  ASSERT_TRUE(index.Search(data.nq(), data.queries.data(), k, d.data(), l.data(), p).ok());
  for (size_t q = 0; q < data.nq(); ++q) {
    ASSERT_EQ(testing::CheckAgainstReference(data, metric, q, k, d.data() + q * k, l.data() + q * k, alive), "")
        << "query " << q;
  }
}

// Exact: every result list equals brute force (distances by an independent double loop), in
// 2, 3, 8 and 20 dimensions (the last through the generic code path), uniform and clustered,
// l2 and cosine, with leaves of 1, 16 and 64 points.
TEST(KdTreeTest, ExactOnUniformAndClusteredData) {
  for (size_t dim : {2, 3, 8, 20}) {
    for (const char* factory : {"KDTree", "KDTree1", "KDTree64", "BallTree", "BallTree2", "BallTree32", "KDForest", "KDForest1"}) {
      for (Metric metric : {Metric::kL2, Metric::kCosine}) {
        SCOPED_TRACE(std::string(factory) + " dim " + std::to_string(dim) + " " + MetricName(metric));
        for (const Dataset& data : {Uniform(5000, 30, dim, 7), testing::Clustered(5000, 30, dim, 12, 8)}) {
          auto index = std::move(MakeIndex(factory, dim, metric)).value();
          ASSERT_TRUE(index->Add(data.n(), data.base.data()).ok());
          ExpectExact(*index, data, metric, 10);
        }
      }
    }
  }
}

// Points added after the build (the buffer), removed points and replaced labels: still exact,
// across the rebuilds that updates trigger; a filter is honoured exactly.
TEST(KdTreeTest, UpdatesStayExact) {
  for (const char* factory : {"KDTree", "BallTree", "KDForest"}) {
  SCOPED_TRACE(factory);
  Dataset data = Uniform(20000, 40, 3, 11);
  auto index = std::move(MakeIndex(factory, 3, Metric::kL2)).value();
  for (size_t b = 0; b < data.n(); b += 700) {
    const size_t n = std::min<size_t>(700, data.n() - b);
    std::vector<label_t> labels(n);
    for (size_t i = 0; i < n; ++i) labels[i] = label_t(b + i);
    ASSERT_TRUE(index->Add(n, data.base.data() + b * 3, labels.data()).ok());
  }
  ExpectExact(*index, data, Metric::kL2, 10);
  std::vector<label_t> gone;
  std::vector<bool> alive(data.n(), true);
  for (size_t i = 0; i < data.n(); i += 3) gone.push_back(label_t(i)), alive[i] = false;
  size_t removed = 0;
  ASSERT_TRUE(index->Remove(gone.size(), gone.data(), &removed).ok());
  EXPECT_EQ(removed, gone.size());
  EXPECT_EQ(index->size(), data.n() - gone.size());
  ExpectExact(*index, data, Metric::kL2, 10, &alive);
  FunctionFilter even([](label_t x) { return x % 2 == 0; });
  std::vector<bool> allowed(data.n());
  for (size_t i = 0; i < data.n(); ++i) allowed[i] = alive[i] && i % 2 == 0;
  ExpectExact(*index, data, Metric::kL2, 5, &allowed, &even);
  // Replacing a live label moves its point.
  const float there[3] = {5.0f, 5.0f, 5.0f};
  label_t one = 1;
  ASSERT_TRUE(index->Add(1, there, &one).ok());
  float d;
  label_t l;
  ASSERT_TRUE(index->Search(1, there, 1, &d, &l).ok());
  EXPECT_EQ(l, 1);
  EXPECT_EQ(d, 0.0f);
  EXPECT_EQ(index->size(), data.n() - gone.size());
  }
}

// The ball tree's checks budget trades recall for work: recall grows with it, and no budget is
// exact search; the tree also answers in 64 dimensions, where a k-d tree degrades.
TEST(KdTreeTest, BallTreeChecksBudgetAndHigherDimensions) {
  auto data = testing::Clustered(20000, 50, 64, 40, 17);
  auto index = std::move(MakeIndex("BallTree", 64, Metric::kL2)).value();
  ASSERT_TRUE(index->Add(data.n(), data.base.data()).ok());
  ExpectExact(*index, data, Metric::kL2, 10);
  auto truth = testing::BruteForce(data, 10, Metric::kL2);
  double previous = 0;
  for (int checks : {64, 512, 4096}) {
    std::vector<float> d(data.nq() * 10);
    std::vector<label_t> l(data.nq() * 10);
    SearchParams p;
    p.checks = checks;
    ASSERT_TRUE(index->Search(data.nq(), data.queries.data(), 10, d.data(), l.data(), p).ok());
    const double recall = testing::Recall(truth, l, 10);
    EXPECT_GE(recall, previous - 0.01) << "checks " << checks;
    previous = recall;
  }
  EXPECT_GE(previous, 0.9);
  SearchParams bad;
  bad.checks = -1;
  float d;
  label_t l;
  EXPECT_EQ(index->Search(1, data.queries.data(), 1, &d, &l, bad).message(), "checks must be >= 0, got -1");
}

// In high dimensions a budgeted search must not rank nodes by their balls' lower bounds: every
// ball holds the query's neighbourhood, the bounds are all zero, and the order is arbitrary
// (recall@10 0.40 at 512 checks on Fashion-MNIST, against 0.91 for FLANN's k-means tree). It
// descends to the nearest centre, as FLANN does.
TEST(KdTreeTest, BallTreeBudgetFollowsNearestCentresOnFashionMnist) {
  auto data = testing::FashionMnist(10000, 200);
  if (data.dim == 0) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  auto index = std::move(MakeIndex("BallTree16", data.dim, Metric::kL2)).value();
  ASSERT_TRUE(index->Add(data.n(), data.base.data()).ok());
  auto truth = testing::BruteForce(data, 10, Metric::kL2);
  std::vector<float> d(data.nq() * 10);
  std::vector<label_t> l(data.nq() * 10);
  SearchParams p;
  p.checks = 256;
  ASSERT_TRUE(index->Search(data.nq(), data.queries.data(), 10, d.data(), l.data(), p).ok());
  const double recall = testing::Recall(truth, l, 10);
  EXPECT_GE(recall, 0.9);
}

// The randomized k-d forest on Fashion-MNIST (784-d): recall grows with the checks budget, more
// trees find more of the true neighbours for the same budget (FLANN's reason for the forest), a point reached through several trees
// counts once against the budget (else 8 trees would examine fewer distinct points than 1), and
// the same points build the same forest (seeded), so results repeat exactly.
TEST(KdTreeTest, KdForestBudgetTreesAndReproducibility) {
  auto data = testing::FashionMnist(10000, 200);
  if (data.dim == 0) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  auto truth = testing::BruteForce(data, 10, Metric::kL2);
  auto recall_at = [&](const Index& index, int checks, std::vector<label_t>* out = nullptr) {
    std::vector<float> d(data.nq() * 10);
    std::vector<label_t> l(data.nq() * 10);
    SearchParams p;
    p.checks = checks;
    EXPECT_TRUE(index.Search(data.nq(), data.queries.data(), 10, d.data(), l.data(), p).ok());
    if (out) *out = l;
    return testing::Recall(truth, l, 10);
  };
  auto one = std::move(MakeIndex("KDForest1", data.dim, Metric::kL2)).value();
  auto eight = std::move(MakeIndex("KDForest8", data.dim, Metric::kL2)).value();
  auto again = std::move(MakeIndex("KDForest8", data.dim, Metric::kL2)).value();
  for (auto* index : {one.get(), eight.get(), again.get()}) ASSERT_TRUE(index->Add(data.n(), data.base.data()).ok());
  double previous = 0;
  for (int checks : {64, 256, 1024}) {
    const double r1 = recall_at(*one, checks), r8 = recall_at(*eight, checks);
    EXPECT_GT(r8, r1 + 0.02) << "checks " << checks;
    EXPECT_GE(r8, previous) << "checks " << checks;
    previous = r8;
  }
  EXPECT_GE(previous, 0.9);
  std::vector<label_t> a, b;
  recall_at(*eight, 256, &a);
  recall_at(*again, 256, &b);
  EXPECT_EQ(a, b);
  // No budget: exact, also in 784 dimensions.
  auto small = testing::FashionMnist(2000, 20);
  auto exact = std::move(MakeIndex("KDForest8", data.dim, Metric::kL2)).value();
  ASSERT_TRUE(exact->Add(small.n(), small.base.data()).ok());
  ExpectExact(*exact, small, Metric::kL2, 10);
}

TEST(KdTreeTest, SaveLoadDuplicatesAndErrors) {
  for (const char* factory : {"KDTree8", "BallTree4", "KDForest2"}) {
  SCOPED_TRACE(factory);
  Dataset data = Uniform(3000, 20, 8, 13);
  // Many identical points must not break the build (one large leaf).
  std::fill(data.base.begin(), data.base.begin() + 1000 * 8, 0.25f);
  auto index = std::move(MakeIndex(factory, 8, Metric::kL2)).value();
  ASSERT_TRUE(index->Add(data.n(), data.base.data()).ok());
  ExpectExact(*index, data, Metric::kL2, 10);
  auto dir = std::filesystem::temp_directory_path() / ("fathom_kd_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "kd.fathom").string();
  ASSERT_TRUE(index->Save(path).ok());
  auto loaded = Index::Load(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ((*loaded)->factory_string(), factory);
  ExpectExact(**loaded, data, Metric::kL2, 10);
  std::filesystem::remove_all(dir);
  }
  EXPECT_EQ(MakeIndex("KDTree", 8, Metric::kInnerProduct).status().message(),
            "'KDTree' answers l2 and cosine queries; inner product has no metric tree (use Flat, HNSW or IVF)");
  EXPECT_EQ(MakeIndex("BallTree", 8, Metric::kInnerProduct).status().message(),
            "'BallTree' answers l2 and cosine queries; inner product has no metric tree (use Flat, HNSW or IVF)");
  EXPECT_EQ(MakeIndex("BallTree1", 8, Metric::kL2).status().message(),
            "'BallTree1' needs a branching factor between 2 and 256 after BallTree (e.g. BallTree8) in index spec 'BallTree1'");
  EXPECT_EQ(MakeIndex("KDForest", 8, Metric::kInnerProduct).status().message(),
            "'KDForest' answers l2 and cosine queries; inner product has no metric tree (use Flat, HNSW or IVF)");
  EXPECT_EQ(MakeIndex("KDForest65", 8, Metric::kL2).status().message(),
            "'KDForest65' needs a tree count between 1 and 64 after KDForest (e.g. KDForest8) in index spec 'KDForest65'");
  EXPECT_EQ(MakeIndex("KDForest8,SQ8", 8, Metric::kL2).status().message(),
            "unexpected option 'SQ8' after KDForest: it takes none in index spec 'KDForest8,SQ8'");
  EXPECT_EQ(MakeIndex("KDTree0", 8, Metric::kL2).status().message(),
            "'KDTree0' needs a leaf size between 1 and 4096 after KDTree (e.g. KDTree16) in index spec 'KDTree0'");
}

}  // namespace
}  // namespace fathom
