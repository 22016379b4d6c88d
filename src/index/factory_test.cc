#include "index/factory.h"

#include <gtest/gtest.h>

#include "fathom/index.h"

namespace fathom {
namespace {

TEST(FactoryTest, ParsesAndRoundTripsCanonicalForms) {
  for (const char* s : {"Flat", "HNSW32", "HNSW16,efC=100", "HNSW32,SQ8", "HNSW8,SQ8,efC=50,efS=20", "HNSW16,FP16", "HNSW32,RBQ", "HNSW16,SQ4,efS=32", "HNSW16,SQ8,pca=128", "KDForest", "KDForest8"}) {
    auto spec = ParseFactory(s);
    ASSERT_TRUE(spec.ok()) << s << ": " << spec.status().ToString();
    EXPECT_EQ(ToFactoryString(*spec), s);
    EXPECT_EQ(*ParseFactory(ToFactoryString(*spec)), *spec);
  }
  auto spec = ParseFactory("HNSW16, efS=32 ,SQ8,efC=200");
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->m, 16);
  EXPECT_TRUE(spec->sq8);
  EXPECT_EQ(spec->ef_search, 32);
  EXPECT_EQ(ToFactoryString(*spec), "HNSW16,SQ8,efS=32");  // canonical order, defaults omitted
}

TEST(FactoryTest, MakeIndexReportsItsFactoryString) {
  auto index = MakeIndex("HNSW24,efC=120", 8, Metric::kCosine);
  ASSERT_TRUE(index.ok());
  EXPECT_EQ((*index)->factory_string(), "HNSW24,efC=120");
  EXPECT_EQ((*index)->dim(), 8u);
  EXPECT_EQ((*index)->metric(), Metric::kCosine);
}

TEST(FactoryTest, ErrorsSayWhatWasExpected) {
  auto expect_error = [](const char* s, const std::string& message) {
    auto spec = ParseFactory(s);
    ASSERT_FALSE(spec.ok()) << s;
    EXPECT_TRUE(spec.status().IsInvalidArgument());
    EXPECT_EQ(spec.status().message(), message);
  };
  expect_error("HNSX32", "unknown index type 'HNSX32': expected Flat, HNSW<M> (e.g. HNSW32), IVF<nlist> (e.g. IVF1024,Flat), KDTree, KDForest or BallTree in index spec 'HNSX32'");
  expect_error("", "empty index type: expected Flat, HNSW<M> (e.g. HNSW32), IVF<nlist> (e.g. IVF1024,Flat), KDTree, KDForest or BallTree in index spec ''");
  expect_error("HNSW", "'HNSW' needs a link count M between 2 and 256 after HNSW (e.g. HNSW32) in index spec 'HNSW'");
  expect_error("HNSW1000", "'HNSW1000' needs a link count M between 2 and 256 after HNSW (e.g. HNSW32) in index spec 'HNSW1000'");
  expect_error("HNSW32,efC=abc", "option 'efC=abc' needs an integer between 1 and 100000 in index spec 'HNSW32,efC=abc'");
  expect_error("HNSW32,PQ16", "unknown HNSW option 'PQ16': expected SQ8, SQ4, FP16, RBQ, efC=<n>, efS=<n> or pca=<n> in index spec 'HNSW32,PQ16'");
  expect_error("HNSW16,pca=64", "pca=64 walks on projections of SQ8 codes: it needs SQ8 (e.g. HNSW16,SQ8,pca=128) in index spec 'HNSW16,pca=64'");
  expect_error("HNSW16,SQ4,pca=64", "pca=64 walks on projections of SQ8 codes: it needs SQ8 (e.g. HNSW16,SQ8,pca=128) in index spec 'HNSW16,SQ4,pca=64'");
  expect_error("HNSW16,SQ8,pca=64,pca=32", "pca given twice in index spec 'HNSW16,SQ8,pca=64,pca=32'");
  expect_error("HNSW16,SQ8,pca=0", "option 'pca=0' needs an integer between 1 and 100000 in index spec 'HNSW16,SQ8,pca=0'");
  expect_error("Flat,SQ8", "unexpected option 'SQ8' after Flat: Flat takes no options in index spec 'Flat,SQ8'");
  expect_error("HNSW32,SQ8,SQ8", "give one code (SQ8, SQ4, FP16 or RBQ), once in index spec 'HNSW32,SQ8,SQ8'");
  expect_error("HNSW32,FP16,SQ8", "give one code (SQ8, SQ4, FP16 or RBQ), once in index spec 'HNSW32,FP16,SQ8'");
  expect_error("HNSW32,SQ4,SQ8", "give one code (SQ8, SQ4, FP16 or RBQ), once in index spec 'HNSW32,SQ4,SQ8'");
  expect_error("HNSW32,RBQ,SQ8", "give one code (SQ8, SQ4, FP16 or RBQ), once in index spec 'HNSW32,RBQ,SQ8'");
}

TEST(FactoryTest, RaBitQRejectsInnerProduct) {
  auto made = MakeIndex("HNSW32,RBQ", 64, Metric::kInnerProduct);
  ASSERT_FALSE(made.ok());
  EXPECT_EQ(made.status().message(),
            "'HNSW32,RBQ': RaBitQ codes estimate l2 distances (and cosine, on unit vectors); for inner product "
            "use SQ8, FP16 or float32");
  EXPECT_TRUE(MakeIndex("HNSW32,RBQ", 64, Metric::kCosine).ok());
}

TEST(FactoryTest, PcaWalkNeedsL2OrCosineAndFewerComponentsThanDimensions) {
  auto ip = MakeIndex("HNSW16,SQ8,pca=32", 64, Metric::kInnerProduct);
  ASSERT_FALSE(ip.ok());
  EXPECT_EQ(ip.status().message(),
            "'HNSW16,SQ8,pca=32': pca=32 walks on l2 between projections: it serves l2 and cosine, not inner product");
  auto wide = MakeIndex("HNSW16,SQ8,pca=64", 64, Metric::kL2);
  ASSERT_FALSE(wide.ok());
  EXPECT_EQ(wide.status().message(), "'HNSW16,SQ8,pca=64': pca=64 must be below the dimension (64)");
  EXPECT_TRUE(MakeIndex("HNSW16,SQ8,pca=32", 64, Metric::kCosine).ok());
}

TEST(FactoryTest, MakeIndexRejectsBadDimensionAndMetricNames) {
  auto index = MakeIndex("Flat", 0, Metric::kL2);
  ASSERT_FALSE(index.ok());
  EXPECT_EQ(index.status().message(), "dimension 0 is out of range: expected 1 to 65536");
  auto metric = ParseMetric("hamming");
  ASSERT_FALSE(metric.ok());
  EXPECT_EQ(metric.status().message(), "unknown metric 'hamming': expected l2 (or euclidean), ip (or inner_product, dot), "
                                      "cosine or l1 (or manhattan)");
  EXPECT_EQ(*ParseMetric("Manhattan"), Metric::kL1);
  // l1 needs float32 vectors in Flat or HNSW.
  EXPECT_TRUE(MakeIndex("HNSW16", 8, Metric::kL1).ok());
  for (const char* factory : {"HNSW16,SQ8", "HNSW16,RBQ", "IVF16,Flat", "KDTree"}) {
    auto refused = MakeIndex(factory, 8, Metric::kL1);
    ASSERT_FALSE(refused.ok()) << factory;
    EXPECT_EQ(refused.status().message(), "'" + std::string(factory) + "': l1 (Manhattan) distance is served by 'Flat' "
                                          "and 'HNSW<M>' on float32 vectors (codes and trees assume l2, ip or cosine)");
  }
  EXPECT_EQ(*ParseMetric("cosine"), Metric::kCosine);
  EXPECT_EQ(*ParseMetric("Cosine"), Metric::kCosine);  // any case, as users type it
  EXPECT_EQ(*ParseMetric("IP"), Metric::kInnerProduct);
  EXPECT_EQ(*ParseMetric("Euclidean"), Metric::kL2);
}

}  // namespace
}  // namespace fathom
