#include "index/ivf.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <ostream>
#include <random>

#include "index/test_data.h"
#include "index/vector_store.h"
#include "simd/distance.h"

namespace fathom {
namespace {

using testing::BruteForce;
using testing::Clustered;
using testing::Dataset;
using testing::Recall;

struct Result2 {
  std::vector<float> d;
  std::vector<label_t> l;
};

Result2 SearchAll(const Index& index, const Dataset& data, size_t k, int nprobe, int rerank = 0,
                  const LabelFilter* filter = nullptr) {
  Result2 r{std::vector<float>(data.nq() * k), std::vector<label_t>(data.nq() * k)};
  SearchParams p;
  p.nprobe = nprobe;
  p.rerank = rerank;
  p.filter = filter;
  Status s = index.Search(data.nq(), data.queries.data(), k, r.d.data(), r.l.data(), p);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return r;
}

std::unique_ptr<Index> Make(const std::string& factory, size_t dim, Metric metric) {
  auto made = MakeIndex(factory, dim, metric);
  EXPECT_TRUE(made.ok()) << made.status().ToString();
  return std::move(made).value();
}

struct IvfCase {
  const char* factory;
  Metric metric;
  double min_recall;  // at nprobe 16 of 64 lists
};
void PrintTo(const IvfCase& c, std::ostream* os) { *os << c.factory << " " << MetricName(c.metric); }

class IvfRecallTest : public ::testing::TestWithParam<IvfCase> {};

// Trained explicitly, then added; every returned distance is the exact distance of its label
// (codes are re-ranked with floats), and probing every list of ",Flat" is exact search.
TEST_P(IvfRecallTest, RecallAgainstBruteForceAndExactDistances) {
  const IvfCase& c = GetParam();
  auto data = Clustered(8000, 50, 32, 40, 71);
  auto index = Make(c.factory, data.dim, c.metric);
  EXPECT_FALSE(index->is_trained());
  ASSERT_TRUE(index->Train(data.n(), data.base.data()).ok());
  EXPECT_TRUE(index->is_trained());
  ASSERT_TRUE(index->Add(data.n(), data.base.data()).ok());
  EXPECT_EQ(index->size(), data.n());
  auto truth = BruteForce(data, 10, c.metric);
  auto r = SearchAll(*index, data, 10, 16, 100);
  EXPECT_GE(Recall(truth, r.l, 10), c.min_recall);
  for (size_t q = 0; q < data.nq(); ++q) {
    for (size_t i = 0; i < 10; ++i) {
      const double ref = testing::ReferenceDistance(c.metric, data.queries.data() + q * data.dim,
                                                    data.base.data() + size_t(r.l[q * 10 + i]) * data.dim, data.dim);
      // (FP16 lists: the half-precision distance)
      const double tolerance = std::string(c.factory).find("FP16") != std::string::npos ? 5e-3 : 1e-3;
      ASSERT_NEAR(r.d[q * 10 + i], ref, tolerance * std::max(1.0, std::fabs(ref)));
    }
  }
  // More lists never hurt; all of them with float lists is exact search.
  auto all = SearchAll(*index, data, 10, 64, 400);
  EXPECT_GE(Recall(truth, all.l, 10), Recall(truth, r.l, 10) - 1e-9);
  if (std::string(c.factory).find("Flat") != std::string::npos) {
    for (size_t q = 0; q < data.nq(); ++q) {
      EXPECT_EQ(testing::CheckAgainstReference(data, c.metric, q, 10, all.d.data() + q * 10, all.l.data() + q * 10), "");
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Codes, IvfRecallTest,
                         ::testing::Values(IvfCase{"IVF64,Flat", Metric::kL2, 0.97},
                                           IvfCase{"IVF64,Flat", Metric::kInnerProduct, 0.9},
                                           IvfCase{"IVF64,Flat", Metric::kCosine, 0.97},
                                           IvfCase{"IVF64,SQ8", Metric::kL2, 0.95},
                                           IvfCase{"IVF64,SQ8", Metric::kCosine, 0.95},
                                           IvfCase{"IVF64,SQ8", Metric::kInnerProduct, 0.9},
                                           IvfCase{"IVF64,PQ16", Metric::kL2, 0.9},
                                           IvfCase{"IVF64,PQ16", Metric::kCosine, 0.9},
                                           IvfCase{"IVF64,PQ16", Metric::kInnerProduct, 0.85},
                                           IvfCase{"IVF64,PQ16x4fs", Metric::kL2, 0.9},
                                           IvfCase{"IVF64,PQ16x4fs", Metric::kCosine, 0.9},
                                           IvfCase{"IVF64,PQ16x4fs", Metric::kInnerProduct, 0.85},
                                           IvfCase{"IVF64,SQ4", Metric::kL2, 0.9},
                                           IvfCase{"IVF64,SQ4", Metric::kCosine, 0.9},
                                           IvfCase{"IVF64,SQ4", Metric::kInnerProduct, 0.85},
                                           IvfCase{"IVF64,FP16", Metric::kL2, 0.97},
                                           IvfCase{"IVF64,FP16", Metric::kInnerProduct, 0.9},
                                           IvfCase{"IVF64,FP16", Metric::kCosine, 0.97},
                                           IvfCase{"OPQ16,IVF64,PQ16", Metric::kL2, 0.9},
                                           IvfCase{"OPQ16,IVF64,PQ16", Metric::kCosine, 0.9},
                                           IvfCase{"OPQ16,IVF64,PQ16x4fs", Metric::kInnerProduct, 0.85},
                                           IvfCase{"IVF64,RBQ", Metric::kL2, 0.95},
                                           IvfCase{"IVF64,RBQ", Metric::kCosine, 0.95},
                                           IvfCase{"IVF64_HNSW8,SQ8", Metric::kL2, 0.95}));

// OPQ rotates residuals so that product codes lose less: on Fashion-MNIST the codes alone (no
// re-ranking beyond k) rank better than plain PQ's (0.52 against 0.39 with 16 4-bit codes on 20,000
// images), and the rotation survives save and load.
TEST(IvfTest, OpqRotationImprovesProductCodes) {
  auto images = testing::FashionMnist(5000, 100);
  if (images.dim == 0) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  const auto truth = BruteForce(images, 10, Metric::kL2);
  auto pq = Make("IVF16,PQ16x4fs", images.dim, Metric::kL2);
  auto opq = Make("OPQ16,IVF16,PQ16x4fs", images.dim, Metric::kL2);
  for (auto* index : {pq.get(), opq.get()}) {
    ASSERT_TRUE(index->Train(images.n(), images.base.data()).ok());
    ASSERT_TRUE(index->Add(images.n(), images.base.data()).ok());
  }
  const auto with_opq = SearchAll(*opq, images, 10, 16, 10);
  EXPECT_GT(Recall(truth, with_opq.l, 10), Recall(truth, SearchAll(*pq, images, 10, 16, 10).l, 10) + 0.03);
  const auto path = std::filesystem::temp_directory_path() / ("fathom_opq_" + std::to_string(::getpid()) + ".fathom");
  ASSERT_TRUE(opq->Save(path.string()).ok());
  auto loaded = Index::Load(path.string());
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ((*loaded)->factory_string(), "OPQ16,IVF16,PQ16x4fs");
  EXPECT_EQ(SearchAll(**loaded, images, 10, 16, 10).l, with_opq.l);
  std::filesystem::remove(path);
}

// FP16 lists: half the bytes of float lists and no float copy; distances are the half-precision
// ones (within 2^-10 relative of the exact), Reconstruct decodes, and values beyond the half
// range are refused before anything is added.
TEST(IvfTest, HalfPrecisionListsKeepNoFloats) {
  auto data = Clustered(4000, 30, 32, 20, 89);
  auto half = Make("IVF32,FP16", data.dim, Metric::kL2);
  auto flat = Make("IVF32,Flat", data.dim, Metric::kL2);
  for (auto* index : {half.get(), flat.get()}) {
    ASSERT_TRUE(index->Train(data.n(), data.base.data()).ok());
    ASSERT_TRUE(index->Add(data.n(), data.base.data()).ok());
  }
  // Lists: 8-byte ids + 64 bytes of half floats against + 128 of floats.
  EXPECT_LT(half->memory_bytes() + data.n() * data.dim * 2, flat->memory_bytes() + 1);
  auto a = SearchAll(*half, data, 10, 32);
  auto b = SearchAll(*flat, data, 10, 32);
  size_t same = 0;
  for (size_t i = 0; i < a.l.size(); ++i) {
    same += a.l[i] == b.l[i];
    ASSERT_NEAR(a.d[i], testing::ReferenceDistance(Metric::kL2, data.queries.data() + (i / 10) * data.dim,
                                                   data.base.data() + size_t(a.l[i]) * data.dim, data.dim),
                2e-3 * std::max(1.0f, a.d[i]));
  }
  EXPECT_GE(double(same) / double(a.l.size()), 0.98);
  std::vector<float> v(data.dim);
  ASSERT_TRUE(half->Reconstruct(7, v.data()).ok());
  for (size_t j = 0; j < data.dim; ++j) EXPECT_NEAR(v[j], data.base[7 * data.dim + j], 1e-3 * std::max(1.0f, std::fabs(v[j])));
  std::vector<float> big(2 * data.dim, 1.0f);
  big[data.dim + 5] = 70000.0f;
  const size_t before = half->size();
  label_t ids[2] = {100000, 100001};
  EXPECT_EQ(half->Add(2, big.data(), ids).message(),
            "row 1, dimension 5: 70000.000000 is beyond the range of an FP16 index (magnitudes up to 65504)");
  EXPECT_EQ(half->size(), before);
  // With a vector store (an on_disk collection) the best candidates are re-ranked exactly.
  auto dir = std::filesystem::temp_directory_path() / ("fathom_ivf_half_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto store = FileVectorStore::Open((dir / "v.vectors").string(), data.dim);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  std::shared_ptr<VectorStore> shared = std::move(store).value();
  for (size_t i = 0; i < data.n(); ++i) ASSERT_TRUE(shared->Write(label_t(i), data.base.data() + i * data.dim).ok());
  auto on_disk = Make("IVF32,FP16", data.dim, Metric::kL2);
  ASSERT_TRUE(on_disk->SetVectorStore(shared).ok());
  ASSERT_TRUE(on_disk->Train(data.n(), data.base.data()).ok());
  ASSERT_TRUE(on_disk->Add(data.n(), data.base.data()).ok());
  auto exact = SearchAll(*on_disk, data, 10, 32, 50);
  for (size_t q = 0; q < data.nq(); ++q) {
    EXPECT_EQ(testing::CheckAgainstReference(data, Metric::kL2, q, 10, exact.d.data() + q * 10, exact.l.data() + q * 10), "");
  }
  std::filesystem::remove_all(dir);
}

// Cosine on FP16, SQ8 and PQ lists: close neighbours of unit vectors differ by less than the
// error of a dot product with the coded x (tight clusters, as CNN features have), so 1 - <q, x>
// ranked them at recall@10 0.86 here with FP16 (on 128-d CNN features: FP16 0.95, SQ8 0.965 even
// re-ranking 2k, PQ32 0.43) probing every list; |q - x|^2 / 2 cancels most of the error with the
// coded x's own norm (FP16 0.989 here; on the CNN features FP16 0.9993, SQ8 1.000, PQ32 0.9998).
TEST(IvfTest, CosineOnCodesRanksCloseNeighbours) {
  std::mt19937 rng(41);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const size_t dim = 128, n = 8000, nq = 100, clusters = 20;
  std::vector<float> centres(clusters * dim);
  for (float& x : centres) x = normal(rng);
  Dataset data;
  data.dim = dim;
  auto draw = [&](std::vector<float>& out, size_t rows) {
    out.resize(rows * dim);
    for (size_t i = 0; i < rows; ++i) {
      const size_t c = rng() % clusters;
      for (size_t j = 0; j < dim; ++j) out[i * dim + j] = centres[c * dim + j] + 0.05f * normal(rng);
    }
  };
  draw(data.base, n);
  draw(data.queries, nq);
  const auto truth = BruteForce(data, 10, Metric::kCosine);
  for (const char* factory : {"IVF16,FP16", "IVF16,SQ8"}) {
    SCOPED_TRACE(factory);
    auto index = Make(factory, dim, Metric::kCosine);
    ASSERT_TRUE(index->Train(data.n(), data.base.data()).ok());
    ASSERT_TRUE(index->Add(data.n(), data.base.data()).ok());
    EXPECT_GE(Recall(truth, SearchAll(*index, data, 10, 16).l, 10), 0.98);  // SQ8: default re-ranking (2k)
  }
  // PQ: Gaussian noise is incompressible, so on Fashion-MNIST (10,000 images, cosine): the dot
  // form reached 0.69 (PQ16) and 0.28 (PQ16x4fs) where l2 on the same unit vectors has 0.96 and
  // 0.73.
  auto images = testing::FashionMnist(10000, 200);
  if (images.dim == 0) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  const auto image_truth = BruteForce(images, 10, Metric::kCosine);
  for (auto [factory, floor] : {std::pair{"IVF16,PQ16", 0.9}, std::pair{"IVF16,PQ16x4fs", 0.65}}) {
    SCOPED_TRACE(factory);
    auto index = Make(factory, images.dim, Metric::kCosine);
    ASSERT_TRUE(index->Train(images.n(), images.base.data()).ok());
    ASSERT_TRUE(index->Add(images.n(), images.base.data()).ok());
    EXPECT_GE(Recall(image_truth, SearchAll(*index, images, 10, 16).l, 10), floor);
  }
}

// RaBitQ lists with the floats in RAM re-rank by the codes' error bound (no rerank depth): the
// bound rules a code out only when its true distance is surely worse than the k-th found, so
// the results are those of float lists probed alike, at a fraction of the exact distances.
TEST(IvfTest, RabitqListsRerankByTheirErrorBound) {
  for (Metric metric : {Metric::kL2, Metric::kCosine}) {
    SCOPED_TRACE(MetricName(metric));
    auto data = Clustered(8000, 50, 64, 40, 73);
    auto rbq = Make("IVF64,RBQ", data.dim, metric);
    auto flat = Make("IVF64,Flat", data.dim, metric);
    ASSERT_TRUE(rbq->Train(data.n(), data.base.data()).ok());
    ASSERT_TRUE(flat->Train(data.n(), data.base.data()).ok());
    ASSERT_TRUE(rbq->Add(data.n(), data.base.data()).ok());
    ASSERT_TRUE(flat->Add(data.n(), data.base.data()).ok());
    auto truth = BruteForce(data, 10, metric);
    for (int nprobe : {4, 16}) {
      const double r_rbq = Recall(truth, SearchAll(*rbq, data, 10, nprobe).l, 10);
      const double r_flat = Recall(truth, SearchAll(*flat, data, 10, nprobe).l, 10);
      EXPECT_GE(r_rbq, r_flat - 0.005) << "nprobe " << nprobe;
    }
    // 1-bit codes: 64 bits + 24 bytes of factors per 64-d vector, against 256 bytes of floats.
    EXPECT_EQ(dynamic_cast<const IvfIndex&>(*rbq).factory_string(), "IVF64,RBQ");
  }
  EXPECT_EQ(MakeIndex("IVF16,RBQ", 8, Metric::kInnerProduct).status().message(),
            "'IVF16,RBQ': RaBitQ codes estimate l2 distances (and cosine, on unit vectors); for inner product use "
            "Flat, SQ8 or PQ lists");
}

// The fast-scan kernel of every ISA this CPU runs gives the scalar kernel's sums exactly.
TEST(IvfTest, FastScanKernelsAgreeWithScalar) {
  std::mt19937 rng(5);
  for (size_t m : {2, 8, 16, 64}) {
    std::vector<uint8_t> codes(m * 16), luts(m * 16);
    for (auto& c : codes) c = uint8_t(rng());
    for (auto& t : luts) t = uint8_t(rng());
    uint16_t want[32];
    simd::Pq4BlockSumsScalar(codes.data(), luts.data(), m, want);
    for (simd::Isa isa : {simd::Isa::kScalar, simd::Isa::kAvx2, simd::Isa::kAvx512}) {
      const simd::Kernels* k = simd::ForIsa(isa);
      if (k == nullptr) continue;
      uint16_t got[32];
      k->pq4_block_sums(codes.data(), luts.data(), m, got);
      EXPECT_EQ(std::vector<uint16_t>(got, got + 32), std::vector<uint16_t>(want, want + 32))
          << simd::IsaName(isa) << " m " << m;
    }
    // By hand for one vector: vector 20 is the high nibble of byte 4.
    uint32_t sum = 0;
    for (size_t s = 0; s < m; ++s) sum += luts[s * 16 + (codes[s * 16 + 4] >> 4)];
    EXPECT_EQ(want[20], sum);
  }
}

// A collection never calls Train: the index searches its first vectors exactly and trains
// itself when it holds 39 per list, keeping every label.
TEST(IvfTest, UntrainedIndexSearchesExactlyThenTrainsItself) {
  auto data = Clustered(3000, 40, 16, 20, 73);
  auto index = Make("IVF32,Flat", data.dim, Metric::kL2);
  const size_t first = 1000;  // below 32 * 39 = 1248
  ASSERT_TRUE(index->Add(first, data.base.data()).ok());
  EXPECT_FALSE(index->is_trained());
  Dataset head = data;
  head.base.resize(first * data.dim);
  auto r = SearchAll(*index, head, 10, 1);
  for (size_t q = 0; q < head.nq(); ++q) {
    EXPECT_EQ(testing::CheckAgainstReference(head, Metric::kL2, q, 10, r.d.data() + q * 10, r.l.data() + q * 10), "");
  }
  std::vector<label_t> labels(data.n() - first);
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = label_t(first + i);
  ASSERT_TRUE(index->Add(labels.size(), data.base.data() + first * data.dim, labels.data()).ok());
  EXPECT_TRUE(index->is_trained());
  EXPECT_EQ(index->size(), data.n());
  auto truth = BruteForce(data, 10, Metric::kL2);
  EXPECT_EQ(Recall(truth, SearchAll(*index, data, 10, 32).l, 10), 1.0);
  std::vector<float> v(data.dim);
  ASSERT_TRUE(index->Reconstruct(5, v.data()).ok());
  EXPECT_EQ(v, std::vector<float>(data.base.begin() + 5 * data.dim, data.base.begin() + 6 * data.dim));
}

TEST(IvfTest, RemoveReplaceAndFilter) {
  for (const char* factory : {"IVF32,SQ8", "IVF32,SQ4", "IVF32,PQ8x4fs", "IVF32,RBQ", "IVF32,FP16"}) {
  SCOPED_TRACE(factory);
  auto data = Clustered(4000, 30, 16, 20, 79);
  auto index = Make(factory, data.dim, Metric::kL2);
  ASSERT_TRUE(index->Add(data.n(), data.base.data()).ok());
  ASSERT_TRUE(index->is_trained());
  std::vector<label_t> odd;
  for (label_t i = 1; i < label_t(data.n()); i += 2) odd.push_back(i);
  size_t removed = 0;
  ASSERT_TRUE(index->Remove(odd.size(), odd.data(), &removed).ok());
  EXPECT_EQ(removed, odd.size());
  EXPECT_EQ(index->size(), data.n() - odd.size());
  EXPECT_FALSE(index->Contains(1));
  std::vector<bool> alive(data.n());
  for (size_t i = 0; i < data.n(); i += 2) alive[i] = true;
  auto truth = BruteForce(data, 10, Metric::kL2, &alive);
  auto r = SearchAll(*index, data, 10, 32, 100);
  for (label_t l : r.l) EXPECT_EQ(l % 2, 0) << "removed label " << l << " returned";
  EXPECT_GE(Recall(truth, r.l, 10), 0.95);
  // Replacing label 0 moves it: a search for the new vector finds it first.
  std::vector<float> moved(data.base.begin() + 2 * data.dim, data.base.begin() + 3 * data.dim);
  for (float& x : moved) x += 0.001f;
  label_t zero = 0;
  ASSERT_TRUE(index->Add(1, moved.data(), &zero).ok());
  EXPECT_EQ(index->size(), data.n() - odd.size());
  float d;
  label_t l;
  ASSERT_TRUE(index->Search(1, moved.data(), 1, &d, &l).ok());
  EXPECT_EQ(l, 0);
  // A filter admitting multiples of 4 only.
  FunctionFilter filter([](label_t x) { return x % 4 == 0; });
  std::vector<bool> allowed(data.n());
  for (size_t i = 4; i < data.n(); i += 4) allowed[i] = true;
  auto fr = SearchAll(*index, data, 10, 32, 100, &filter);
  for (label_t x : fr.l) EXPECT_TRUE(x == kNoLabel || x % 4 == 0) << x;
  EXPECT_GE(Recall(BruteForce(data, 10, Metric::kL2, &allowed), fr.l, 10), 0.9);
  }
}

TEST(IvfTest, BadParametersSayWhatWasExpected) {
  auto expect_error = [](const std::string& factory, size_t dim, const std::string& message) {
    auto made = MakeIndex(factory, dim, Metric::kL2);
    ASSERT_FALSE(made.ok()) << factory;
    EXPECT_EQ(made.status().message(), message);
  };
  expect_error("IVF0,Flat", 8, "'IVF0' needs a list count between 1 and 1048576 after IVF (e.g. IVF1024) in index spec 'IVF0,Flat'");
  expect_error("IVF16", 8, "IVF needs the code of its lists after a comma: Flat, FP16, SQ8, SQ4, PQ<m> or RBQ (e.g. IVF1024,Flat) in index spec 'IVF16'");
  expect_error("IVF16,PQ3", 8, "'IVF16,PQ3': PQ3 splits vectors into 3 equal parts, but dimension 8 is not a multiple of 3");
  expect_error("IVF16,PQ3x4fs", 9, "'PQ3x4fs': fast scan packs sub-quantizers in pairs: m must be even and at most 256 in index spec 'IVF16,PQ3x4fs'");
  expect_error("IVF16,PQ4x5", 8, "'PQ4x5': expected PQ<m> (8-bit codes), PQ<m>x8 (the same) or PQ<m>x4fs (4-bit fast scan) in index spec 'IVF16,PQ4x5'");
  expect_error("IVF16,SQ6", 8, "unknown IVF code 'SQ6': expected Flat, FP16, SQ8, SQ4, PQ<m> or RBQ (e.g. PQ32) in index spec 'IVF16,SQ6'");
  expect_error("OPQ4,IVF16,PQ2", 8, "'OPQ4' must be followed by PQ lists of the same sub-quantizer count (e.g. OPQ4,IVF1024,PQ4) in index spec 'OPQ4,IVF16,PQ2'");
  expect_error("OPQ4,IVF16,SQ8", 8, "'OPQ4' must be followed by PQ lists of the same sub-quantizer count (e.g. OPQ4,IVF1024,PQ4) in index spec 'OPQ4,IVF16,SQ8'");
  expect_error("OPQ4,HNSW32", 8, "OPQ rotates for a product quantizer: expected an IVF index with PQ lists after it (e.g. OPQ32,IVF1024,PQ32) in index spec 'OPQ4,HNSW32'");
  expect_error("OPQ,IVF16,PQ4", 8, "'OPQ' needs a sub-quantizer count after OPQ (e.g. OPQ32,IVF1024,PQ32) in index spec 'OPQ,IVF16,PQ4'");
  expect_error("IVF16_HNSW,Flat", 8, "unknown coarse quantizer 'HNSW': expected HNSW<M> with M between 2 and 256 (e.g. IVF1024_HNSW32) in index spec 'IVF16_HNSW,Flat'");
  expect_error("IVF16,Flat,nprobe=0", 8, "option 'nprobe=0' needs an integer between 1 and 1048576 in index spec 'IVF16,Flat,nprobe=0'");
  auto index = Make("IVF16,PQ4", 8, Metric::kL2);
  std::vector<float> few(100 * 8, 1.0f);
  Status s = index->Train(10, few.data());
  EXPECT_EQ(s.message(), "index 'IVF16,PQ4' needs at least 16 training vectors (one per list; 39 per list recommended), got 10");
  s = index->Train(100, few.data());
  EXPECT_EQ(s.message(), "index 'IVF16,PQ4' needs at least 256 training vectors for its product quantizer, got 100");
  auto data = Clustered(1000, 1, 8, 10, 3);
  ASSERT_TRUE(index->Train(data.n(), data.base.data()).ok());
  s = index->Train(data.n(), data.base.data());
  EXPECT_EQ(s.message(), "index 'IVF16,PQ4' is already trained (it trains once, before vectors are added to its lists)");
  SearchParams p;
  p.nprobe = -1;
  float d;
  label_t l;
  EXPECT_EQ(index->Search(1, data.queries.data(), 1, &d, &l, p).message(), "nprobe must be >= 0, got -1");
  EXPECT_TRUE(MakeIndex("IVF16,Flat", 8, Metric::kL2).value()->SetVectorStore(nullptr).IsNotSupported());
}

TEST(IvfTest, FactoryStringsRoundTrip) {
  for (const char* f : {"IVF1024,Flat", "IVF1024,SQ8", "IVF4096,PQ32", "IVF1024_HNSW32,PQ32", "IVF1024_HNSW32,PQ32x4fs",
                        "IVF64,Flat,nprobe=8", "IVF1024,RBQ", "IVF1024,FP16", "IVF1024,SQ4",
                        "OPQ32,IVF1024,PQ32", "OPQ32,IVF1024_HNSW32,PQ32x4fs,nprobe=8"}) {
    auto index = Make(f, 64, Metric::kL2);
    EXPECT_EQ(index->factory_string(), f);
  }
  EXPECT_EQ(Make("IVF64,PQ8x8", 64, Metric::kL2)->factory_string(), "IVF64,PQ8");
  EXPECT_EQ(Make("IVF64,Flat,nprobe=16", 64, Metric::kL2)->factory_string(), "IVF64,Flat");
}

// Codes in RAM, float vectors in a file: re-ranking reads them back; the results match the
// in-RAM index exactly.
TEST(IvfTest, VectorsOnDiskGiveTheSameResults) {
  for (const char* factory : {"IVF32,PQ4", "IVF32,RBQ", "IVF32,SQ4"}) {
  SCOPED_TRACE(factory);
  auto dir = std::filesystem::temp_directory_path() / ("fathom_ivf_store_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto data = Clustered(3000, 30, 16, 20, 83);
  auto store = FileVectorStore::Open((dir / "v.vectors").string(), data.dim);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  std::shared_ptr<VectorStore> shared = std::move(store).value();
  for (size_t i = 0; i < data.n(); ++i) ASSERT_TRUE(shared->Write(label_t(i), data.base.data() + i * data.dim).ok());
  auto on_disk = Make(factory, data.dim, Metric::kL2);
  ASSERT_TRUE(on_disk->SetVectorStore(shared).ok());
  auto in_ram = Make(factory, data.dim, Metric::kL2);
  ASSERT_TRUE(on_disk->Train(data.n(), data.base.data()).ok());
  ASSERT_TRUE(in_ram->Train(data.n(), data.base.data()).ok());
  ASSERT_TRUE(on_disk->Add(data.n(), data.base.data()).ok());
  ASSERT_TRUE(in_ram->Add(data.n(), data.base.data()).ok());
  // The floats (64 bytes each here) leave RAM: half of it or more for PQ4, less for RBQ's
  // 32-byte codes.
  EXPECT_LT(on_disk->memory_bytes() + data.n() * data.dim * sizeof(float), in_ram->memory_bytes() + 1);
  auto a = SearchAll(*on_disk, data, 10, 8, 50);
  auto b = SearchAll(*in_ram, data, 10, 8, 50);
  EXPECT_EQ(a.l, b.l);
  EXPECT_EQ(a.d, b.d);
  const std::string path = (dir / "i.fathom").string();
  ASSERT_TRUE(on_disk->Save(path).ok());
  LoadOptions lo;
  lo.vectors = shared;
  auto loaded = Index::Load(path, lo);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(SearchAll(**loaded, data, 10, 8, 50).l, a.l);
  EXPECT_FALSE(Index::Load(path).ok());  // without its store the file is refused, not misread
  std::filesystem::remove_all(dir);
  }
}

}  // namespace
}  // namespace fathom
