#include "index/hnsw.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <cmath>
#include <ostream>
#include <random>
#include <thread>

#include "index/test_data.h"
#include "index/vector_store.h"
#include "simd/distance.h"

namespace fathom {
namespace {

using testing::BruteForce;
using testing::Clustered;
using testing::Dataset;
using testing::Recall;

std::vector<label_t> SearchAll(const Index& index, const Dataset& data, size_t k, int ef,
                               const LabelFilter* filter = nullptr, SearchCounters* counters = nullptr) {
  std::vector<float> dist(data.nq() * k);
  std::vector<label_t> labels(data.nq() * k);
  SearchParams params;
  params.ef = ef;
  params.filter = filter;
  params.counters = counters;
  Status s = index.Search(data.nq(), data.queries.data(), k, dist.data(), labels.data(), params);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return labels;
}

std::unique_ptr<Index> Build(const std::string& factory, const Dataset& data, Metric metric,
                             int threads = 2) {
  auto made = MakeIndex(factory, data.dim, metric);
  EXPECT_TRUE(made.ok()) << made.status().ToString();
  auto index = std::move(made).value();
  AddOptions opts;
  opts.threads = threads;
  Status s = index->Add(data.n(), data.base.data(), nullptr, opts);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return index;
}

struct RecallCase {
  const char* factory;
  Metric metric;
};
// Stable, readable parameter text in test listings (not the bytes of a pointer).
void PrintTo(const RecallCase& c, std::ostream* os) { *os << c.factory << " " << MetricName(c.metric); }

class HnswRecallTest : public ::testing::TestWithParam<RecallCase> {};

// Documented parameters: M=16, efConstruction=200, ef=64, k=10.
TEST_P(HnswRecallTest, ClusteredSyntheticRecallAtLeast95) {
  auto [factory, metric] = GetParam();
  auto data = Clustered(10000, 200, 48, 40, 17);
  auto index = Build(factory, data, metric);
  auto truth = BruteForce(data, 10, metric);
  double recall = Recall(truth, SearchAll(*index, data, 10, 64), 10);
  EXPECT_GE(recall, 0.95) << factory << " " << MetricName(metric);
  // A wider beam never hurts much and usually helps.
  EXPECT_GE(Recall(truth, SearchAll(*index, data, 10, 200), 10), recall - 0.005);
}

INSTANTIATE_TEST_SUITE_P(
    Configs, HnswRecallTest,
    ::testing::Values(RecallCase{"HNSW16", Metric::kL2}, RecallCase{"HNSW16", Metric::kInnerProduct},
                      RecallCase{"HNSW16", Metric::kCosine}, RecallCase{"HNSW16,SQ8", Metric::kL2},
                      RecallCase{"HNSW16,SQ8", Metric::kCosine},
                      RecallCase{"HNSW16,SQ8", Metric::kInnerProduct}, RecallCase{"HNSW16,FP16", Metric::kL2},
                      RecallCase{"HNSW16,FP16", Metric::kCosine},
                      RecallCase{"HNSW16,FP16", Metric::kInnerProduct}, RecallCase{"HNSW16,RBQ", Metric::kL2},
                      RecallCase{"HNSW16,RBQ", Metric::kCosine}, RecallCase{"HNSW16,SQ4", Metric::kL2},
                      RecallCase{"HNSW16,SQ4", Metric::kCosine},
                      RecallCase{"HNSW16,SQ4", Metric::kInnerProduct}, RecallCase{"HNSW16", Metric::kL1}),
    [](const auto& info) {
      std::string name = std::string(info.param.factory) + "_" + MetricName(info.param.metric);
      for (char& c : name) {
        if (c == ',') c = '_';
      }
      return name;
    });

// Tight clusters (noise 1/20 of the spread of the centres), as real embeddings of similar items:
// the ten nearest neighbours have nearly equal similarities. With a beam as wide as the index
// the graph plays no part, so recall measures how well quantised distances order candidates for
// re-ranking. Cosine used to walk on the inner product with dequantised vectors, whose lengths
// are off by the quantisation error: recall@10 was ~0.4 here. L2 between codes gives ~0.99.
TEST(HnswTest, Sq8CosineOrdersCloseNeighbours) {
  constexpr size_t kDim = 64, kClusters = 20;
  std::mt19937 rng(5);
  std::normal_distribution<float> unit(0.f, 1.f);
  std::vector<float> centres(kClusters * kDim);
  for (float& c : centres) c = unit(rng);
  auto fill = [&](std::vector<float>* out, size_t rows) {
    for (size_t i = 0; i < rows; ++i) {
      size_t c = rng() % kClusters;
      for (size_t j = 0; j < kDim; ++j) out->push_back(centres[c * kDim + j] + 0.05f * unit(rng));
    }
  };
  Dataset data;
  data.dim = kDim;
  fill(&data.base, 2000);
  fill(&data.queries, 200);
  for (Metric metric : {Metric::kCosine, Metric::kL2}) {
    auto index = Build("HNSW16,SQ8", data, metric);
    auto truth = BruteForce(data, 10, metric);
    EXPECT_GE(Recall(truth, SearchAll(*index, data, 10, 2000), 10), 0.97) << MetricName(metric);
  }
  // FP16 keeps no floats to re-rank with, so its own distances must order such neighbours:
  // walking cosine on 1 - q.x fell below 0.97 here (and capped CNN embeddings at 0.95); on L2 between
  // unit vectors it passes, and the distances it returns are cosine distances.
  for (Metric metric : {Metric::kCosine, Metric::kL2}) {
    auto index = Build("HNSW16,FP16", data, metric);
    auto truth = BruteForce(data, 10, metric);
    EXPECT_GE(Recall(truth, SearchAll(*index, data, 10, 2000), 10), 0.97) << "FP16 " << MetricName(metric);
  }
  auto fp16 = Build("HNSW16,FP16", data, Metric::kCosine);
  auto exact = Build("Flat", data, Metric::kCosine);
  float d16, dflat;
  label_t l16, lflat;
  ASSERT_TRUE(fp16->Search(1, data.queries.data(), 1, &d16, &l16).ok());
  ASSERT_TRUE(exact->Search(1, data.queries.data(), 1, &dflat, &lflat).ok());
  EXPECT_EQ(l16, lflat);
  EXPECT_NEAR(d16, dflat, 1e-3 * std::max(dflat, 1e-3f));
}

TEST(HnswTest, FashionMnistSubsetRecallAtLeast95) {
  auto data = testing::FashionMnist(10000, 200);
  if (data.dim == 0) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  auto truth = BruteForce(data, 10, Metric::kL2);
  for (const char* factory : {"HNSW16", "HNSW16,SQ8", "HNSW16,RBQ"}) {
    auto index = Build(factory, data, Metric::kL2);
    double recall = Recall(truth, SearchAll(*index, data, 10, 64), 10);
    EXPECT_GE(recall, 0.95) << factory;
    EXPECT_GE(Recall(truth, SearchAll(*index, data, 10, 256), 10), 0.99) << factory;
  }
}

TEST(HnswTest, EmptyIndexAndTinyIndexes) {
  auto index = std::move(MakeIndex("HNSW8", 4, Metric::kL2)).value();
  float q[4] = {0, 0, 0, 0};
  float d[3];
  label_t l[3];
  ASSERT_TRUE(index->Search(1, q, 3, d, l).ok());
  EXPECT_EQ(l[0], kNoLabel);
  float v[8] = {1, 0, 0, 0, 0, 2, 0, 0};
  ASSERT_TRUE(index->Add(2, v).ok());
  ASSERT_TRUE(index->Search(1, q, 3, d, l).ok());
  EXPECT_EQ(l[0], 0);
  EXPECT_EQ(l[1], 1);
  EXPECT_EQ(l[2], kNoLabel);
  EXPECT_FLOAT_EQ(d[0], 1.f);
  EXPECT_FLOAT_EQ(d[1], 4.f);
}

TEST(HnswTest, ReplacingALabelMovesItAndKeepsOneCopy) {
  auto data = Clustered(2000, 1, 16, 8, 3);
  auto index = Build("HNSW16", data, Metric::kL2);
  std::vector<float> target(data.queries.begin(), data.queries.begin() + 16);
  label_t label = 1234;
  ASSERT_TRUE(index->Add(1, target.data(), &label).ok());
  EXPECT_EQ(index->size(), 2000u);
  float d[10];
  label_t l[10];
  ASSERT_TRUE(index->Search(1, target.data(), 10, d, l).ok());
  EXPECT_EQ(l[0], 1234);
  EXPECT_NEAR(d[0], 0.f, 1e-5);
  EXPECT_EQ(std::count(l, l + 10, 1234), 1);
}

// Each point, searched by its own vector with a beam wider than the index, is found first.
size_t FoundSelf(const Index& index, const Dataset& data, label_t first_label, int ef) {
  size_t found = 0;
  SearchParams params;
  params.ef = ef;
  for (size_t i = 0; i < data.n(); ++i) {
    float d;
    label_t l;
    EXPECT_TRUE(index.Search(1, data.base.data() + i * data.dim, 1, &d, &l, params).ok());
    found += l == first_label + label_t(i);
  }
  return found;
}

// Regression (issue 9.1): once every point was removed, the entry point stayed on a tombstone
// whose links led only to tombstones, new nodes were linked to nothing, and the index answered
// [] forever. Covers: remove all then add many, remove a few (all) then add, and replacing the
// only point, for float and SQ8 traversal.
TEST(HnswTest, EmptiedIndexAnswersAgain) {
  for (const char* factory : {"HNSW16", "HNSW16,SQ8"}) {
    for (size_t first : {20, 5}) {
      auto old_data = Clustered(first, 1, 16, 2, 5);
      auto index = Build(factory, old_data, Metric::kL2, 1);
      std::vector<label_t> old_labels(first);
      for (size_t i = 0; i < first; ++i) old_labels[i] = label_t(i);
      size_t removed = 0;
      ASSERT_TRUE(index->Remove(first, old_labels.data(), &removed).ok());
      ASSERT_EQ(removed, first);
      float d;
      label_t l;
      ASSERT_TRUE(index->Search(1, old_data.base.data(), 1, &d, &l).ok());
      EXPECT_EQ(l, kNoLabel);
      auto fresh = Clustered(first == 20 ? 1000 : 100, 1, 16, 8, 6);
      std::vector<label_t> labels(fresh.n());
      for (size_t i = 0; i < fresh.n(); ++i) labels[i] = label_t(1000 + i);
      AddOptions opts;
      opts.threads = 1;
      ASSERT_TRUE(index->Add(fresh.n(), fresh.base.data(), labels.data(), opts).ok());
      EXPECT_EQ(FoundSelf(*index, fresh, 1000, 2000), fresh.n()) << factory << " first=" << first;
    }
    // Upserting the only point again.
    auto one = Clustered(1, 1, 16, 1, 7);
    auto index = MakeIndex(factory, 16, Metric::kL2).value();
    label_t label = 1;
    ASSERT_TRUE(index->Add(1, one.base.data(), &label).ok());
    ASSERT_TRUE(index->Add(1, one.base.data(), &label).ok());
    float d;
    label_t l = kNoLabel;
    ASSERT_TRUE(index->Search(1, one.base.data(), 1, &d, &l).ok());
    EXPECT_EQ(l, 1) << factory;
  }
}

// Regression: a new node used to be back-linked on its upper levels before its level-0 list was
// written, so a concurrent search could descend into it, find no level-0 neighbours, and return
// fewer than k results (or miss the point it looked for). Searches during inserts must always
// return k stored points at their true distances.
TEST(HnswTest, ConcurrentInsertsNeverShortenResults) {
  auto data = Clustered(6000, 50, 16, 32, 3);
  size_t short_results = 0, wrong_distances = 0, searches = 0;
  for (int trial = 0; trial < 4; ++trial) {
    auto index = MakeIndex("HNSW16", data.dim, Metric::kL2).value();
    ASSERT_TRUE(index->Add(2000, data.base.data()).ok());
    std::atomic<bool> adding{true};
    std::atomic<size_t> shorts{0}, wrongs{0}, done{0};
    auto searcher = [&] {
      std::vector<float> d(50 * 5);
      std::vector<label_t> l(50 * 5);
      SearchParams p;
      p.ef = 128;
      do {
        ASSERT_TRUE(index->Search(50, data.base.data(), 5, d.data(), l.data(), p).ok());
        for (size_t q = 0; q < 50; ++q) {
          for (size_t i = 0; i < 5; ++i) {
            const label_t got = l[q * 5 + i];
            if (got == kNoLabel) {
              ++shorts;
              continue;
            }
            double ref = testing::ReferenceDistance(Metric::kL2, data.base.data() + q * data.dim,
                                                    data.base.data() + size_t(got) * data.dim, data.dim);
            if (std::fabs(ref - d[q * 5 + i]) > 1e-3 * std::max(1.0, ref)) ++wrongs;
          }
        }
        ++done;
      } while (adding);
    };
    std::thread a(searcher), b(searcher);
    std::vector<label_t> labels(data.n());
    for (size_t i = 0; i < data.n(); ++i) labels[i] = label_t(i);
    for (size_t first = 2000; first < data.n(); first += 500) {
      ASSERT_TRUE(index->Add(500, data.base.data() + first * data.dim, labels.data() + first).ok());
    }
    adding = false;
    a.join();
    b.join();
    short_results += shorts;
    wrong_distances += wrongs;
    searches += done;
  }
  EXPECT_EQ(short_results, 0u) << "over " << searches << " batches of 50 searches";
  EXPECT_EQ(wrong_distances, 0u);
}

// Reachability (issue 12): pruning during inserts can drop a node's last in-link, leaving it
// unreachable whatever the beam. After a 4-thread build, and after churn with consolidation,
// every live node is reachable on level 0 from the entry point (a second EnsureReachable finds
// nothing to relink), and searching each stored vector at a wide beam finds it.
TEST(HnswTest, EveryLiveNodeIsReachableAfterBuildAndChurn) {
  auto data = Clustered(20000, 1, 64, 32, 1);
  auto made = MakeIndex("HNSW16", data.dim, Metric::kL2);
  auto* index = static_cast<HnswIndex*>(made->get());
  AddOptions opts;
  opts.threads = 4;
  ASSERT_TRUE(index->Add(data.n(), data.base.data(), nullptr, opts).ok());
  EXPECT_EQ(index->EnsureReachable(), 0u) << "the build left unreachable nodes";
  auto self_found = [&](int ef, const std::vector<bool>& live) {
    SearchParams p;
    p.ef = ef;
    size_t found = 0, total = 0;
    float d;
    label_t l;
    for (size_t i = 0; i < data.n(); ++i) {
      if (!live[i]) continue;
      EXPECT_TRUE(index->Search(1, data.base.data() + i * data.dim, 1, &d, &l, p).ok());
      found += l == label_t(i);
      ++total;
    }
    return double(found) / double(total);
  };
  std::vector<bool> live(data.n(), true);
  EXPECT_GE(self_found(512, live), 0.9999);
  // Churn: remove half, add it back (consolidation runs on the way).
  std::vector<label_t> gone;
  for (size_t i = 0; i < data.n(); i += 2) gone.push_back(label_t(i));
  ASSERT_TRUE(index->Remove(gone.size(), gone.data()).ok());
  for (label_t g : gone) live[g] = false;
  index->Consolidate();
  EXPECT_EQ(index->EnsureReachable(), 0u) << "consolidation left unreachable nodes";
  EXPECT_GE(self_found(512, live), 0.9999);
  std::vector<float> back;
  for (label_t g : gone) back.insert(back.end(), data.base.begin() + g * data.dim, data.base.begin() + (g + 1) * data.dim);
  ASSERT_TRUE(index->Add(gone.size(), back.data(), gone.data(), opts).ok());
  for (label_t g : gone) live[g] = true;
  EXPECT_EQ(index->EnsureReachable(), 0u) << "re-adding left unreachable nodes";
  EXPECT_GE(self_found(512, live), 0.9999);
}

// Deleting and re-adding half the points: deleted labels never come back, nodes are reused
// (no growth), and recall stays within 0.01 of a fresh build of the same final data.
TEST(HnswTest, ChurnKeepsRecallAndReusesNodes) {
  auto data = Clustered(10000, 200, 32, 40, 23);
  for (const char* factory : {"HNSW16", "HNSW16,SQ8"}) {
    auto index = Build(factory, data, Metric::kL2);
    auto* hnsw = dynamic_cast<HnswIndex*>(index.get());
    const size_t allocated = hnsw->allocated_nodes();
    std::vector<label_t> odd;
    for (label_t i = 1; i < label_t(data.n()); i += 2) odd.push_back(i);
    size_t removed = 0;
    ASSERT_TRUE(index->Remove(odd.size(), odd.data(), &removed).ok());
    EXPECT_EQ(removed, odd.size());
    EXPECT_EQ(index->size(), data.n() - odd.size());
    auto labels = SearchAll(*index, data, 10, 64);
    for (label_t l : labels) EXPECT_TRUE(l == kNoLabel || l % 2 == 0) << "deleted label " << l;
    std::vector<bool> alive(data.n());
    for (size_t i = 0; i < data.n(); i += 2) alive[i] = true;
    EXPECT_GE(Recall(BruteForce(data, 10, Metric::kL2, &alive), labels, 10), 0.95);

    // Re-add the odd rows under their old labels.
    std::vector<float> rows;
    for (label_t i : odd) {
      rows.insert(rows.end(), data.base.begin() + i * data.dim, data.base.begin() + (i + 1) * data.dim);
    }
    AddOptions opts;
    opts.threads = 2;
    ASSERT_TRUE(index->Add(odd.size(), rows.data(), odd.data(), opts).ok());
    hnsw->Consolidate();
    EXPECT_EQ(index->size(), data.n());
    EXPECT_LE(hnsw->allocated_nodes(), allocated + allocated / 10) << factory;
    auto truth = BruteForce(data, 10, Metric::kL2);
    double churned = Recall(truth, SearchAll(*index, data, 10, 64), 10);
    auto fresh_index = Build(factory, data, Metric::kL2);
    double fresh = Recall(truth, SearchAll(*fresh_index, data, 10, 64), 10);
    EXPECT_GE(churned, fresh - 0.01) << factory << " fresh=" << fresh << " churned=" << churned;
    EXPECT_LE(index->memory_bytes(), fresh_index->memory_bytes() * 11 / 10) << factory;
  }
}

TEST(HnswTest, FilterIsHonouredDuringSearchWithHighRecall) {
  auto data = Clustered(10000, 100, 32, 40, 29);
  auto rbq = Build("HNSW16,RBQ", data, Metric::kL2);
  auto index = Build("HNSW16", data, Metric::kL2);
  for (const Index* searched : {rbq.get(), index.get()}) {
    SCOPED_TRACE(searched->factory_string());
    for (int modulus : {2, 10}) {  // 50% and 10% of the points allowed
      FunctionFilter filter([modulus](label_t l) { return l % modulus == 0; });
      std::vector<bool> alive(data.n());
      for (size_t i = 0; i < data.n(); ++i) alive[i] = (i % modulus == 0);
      auto labels = SearchAll(*searched, data, 10, 64, &filter);
      for (label_t l : labels) ASSERT_TRUE(l != kNoLabel && l % modulus == 0);
      EXPECT_GE(Recall(BruteForce(data, 10, Metric::kL2, &alive), labels, 10), 0.95) << modulus;
    }
    BitsetFilter bits(data.n());
    bits.Set(17);
    bits.Set(4242);
    EXPECT_EQ(bits.count(), 2u);
    auto labels = SearchAll(*searched, data, 3, 64, &bits);
    for (size_t q = 0; q < data.nq(); ++q) {
      EXPECT_TRUE((labels[q * 3] == 17 && labels[q * 3 + 1] == 4242) ||
                  (labels[q * 3] == 4242 && labels[q * 3 + 1] == 17));
      EXPECT_EQ(labels[q * 3 + 2], kNoLabel);
    }
  }
}

// The filtered walk is filter-aware: it steps through rejected neighbours to their allowed
// neighbours (two hops) and computes distances for allowed nodes only, so at 10% selectivity a
// search costs about what an unfiltered one does rather than ~10 rejected nodes per allowed
// one (the walk that computed every neighbour's distance did 3.2x the unfiltered distances
// here). Also: it still finds the allowed points when they are too few to be within two hops
// of each other, and recall stays at the unfiltered level.
TEST(HnswTest, FilteredWalkComputesDistancesForAllowedNodes) {
  auto data = Clustered(20000, 200, 32, 40, 31);
  for (const char* factory : {"HNSW16", "HNSW16,SQ8"}) {
    SCOPED_TRACE(factory);
    auto index = Build(factory, data, Metric::kL2);
    SearchCounters plain;
    SearchAll(*index, data, 10, 64, nullptr, &plain);
    for (int modulus : {10, 2}) {
      BitsetFilter bits(data.n());
      std::vector<bool> allowed(data.n());
      for (size_t i = 0; i < data.n(); i += modulus) {
        bits.Set(label_t(i));
        allowed[i] = true;
      }
      SearchCounters filtered;
      auto labels = SearchAll(*index, data, 10, 64, &bits, &filtered);
      for (label_t l : labels) ASSERT_TRUE(l != kNoLabel && l % modulus == 0);
      EXPECT_GE(Recall(BruteForce(data, 10, Metric::kL2, &allowed), labels, 10), 0.97) << modulus;
      double ratio = double(filtered.distances) / double(plain.distances);
      EXPECT_LE(ratio, 2.0) << "1/" << modulus << " allowed: " << filtered.distances << " distances against "
                            << plain.distances << " unfiltered";
      std::printf("1/%d allowed: %.2fx the unfiltered distances, %.2fx the expansions\n", modulus, ratio,
                  double(filtered.expansions) / double(plain.expansions));
    }
    // Three allowed points in different clusters, none within two hops of another.
    BitsetFilter three(data.n());
    for (label_t l : {label_t(5), label_t(10005), label_t(19999)}) three.Set(l);
    auto labels = SearchAll(*index, data, 4, 64, &three);
    for (size_t q = 0; q < data.nq(); ++q) {
      std::vector<label_t> got(labels.begin() + q * 4, labels.begin() + q * 4 + 3);
      std::sort(got.begin(), got.end());
      EXPECT_EQ(got, (std::vector<label_t>{5, 10005, 19999})) << "query " << q;
      EXPECT_EQ(labels[q * 4 + 3], kNoLabel);
    }
  }
}

// A BitsetFilter used by many searches is turned into a bitset over nodes (cached by the index
// per filter, filter version and index generation): the walk must find exactly what it finds
// through the labels, and a point added, removed or newly allowed after the cache was built must
// be seen by the next search (the cache keyed on the filter alone returned no added point).
TEST(HnswTest, RepeatedBitsetFilterSeesEveryChange) {
  auto data = Clustered(6000, 40, 16, 20, 37);
  auto index = Build("HNSW16", data, Metric::kL2);
  const size_t n = data.n();
  BitsetFilter bits(n + 100);
  for (size_t i = 0; i < n + 100; i += 2) bits.Set(label_t(i));
  FunctionFilter by_label([&](label_t l) { return bits.Allowed(l); });  // the label path
  auto search_one = [&](size_t q, const LabelFilter* filter, size_t k = 10) {
    std::vector<float> dist(k);
    std::vector<label_t> labels(k);
    SearchParams params;
    params.ef = 48;
    params.filter = filter;
    Status s = index->Search(1, data.queries.data() + q * data.dim, k, dist.data(), labels.data(), params);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return labels;
  };
  for (int pass = 0; pass < 3; ++pass) {  // (the first uses read labels; later ones the node bitset)
    for (size_t q = 0; q < data.nq(); ++q) {
      auto got = search_one(q, &bits);
      EXPECT_EQ(got, search_one(q, &by_label)) << "pass " << pass << " query " << q;
      for (label_t l : got) ASSERT_TRUE(l >= 0 && l % 2 == 0);
    }
  }
  // Added: query 0's own vector under an allowed label, and under a rejected one.
  const std::vector<label_t> added = {label_t(n), label_t(n + 1)};
  std::vector<float> twice(data.queries.begin(), data.queries.begin() + data.dim);
  twice.insert(twice.end(), data.queries.begin(), data.queries.begin() + data.dim);
  ASSERT_TRUE(index->Add(2, twice.data(), added.data()).ok());
  for (int pass = 0; pass < 3; ++pass) EXPECT_EQ(search_one(0, &bits, 1)[0], label_t(n)) << pass;
  // Removed: query 1's nearest allowed point is never returned again.
  const label_t removed = search_one(1, &bits, 1)[0];
  ASSERT_TRUE(index->Remove(1, &removed).ok());
  for (int pass = 0; pass < 3; ++pass) {
    for (label_t l : search_one(1, &bits)) EXPECT_NE(l, removed) << pass;
  }
  // Newly allowed (the filter object changed): the rejected copy of query 0 is found.
  bits.Set(label_t(n + 1));
  for (int pass = 0; pass < 3; ++pass) {
    auto got = search_one(0, &bits, 2);
    std::sort(got.begin(), got.end());
    EXPECT_EQ(got, (std::vector<label_t>{label_t(n), label_t(n + 1)})) << pass;
  }
  // A copy is a filter of its own: changing it does not change what the original allows.
  BitsetFilter copy = bits;
  EXPECT_NE(copy.id(), bits.id());
  for (int pass = 0; pass < 3; ++pass) EXPECT_EQ(search_one(2, &copy), search_one(2, &bits)) << pass;
}

// Writers add disjoint label ranges from several threads while readers search; every result a
// reader sees must be a label that exists, with its exact distance, in order. Run under
// ThreadSanitizer with -DFATHOM_SANITIZE=thread.
// A database checkpoint saves the graph while writers run (SaveOptions::concurrent) and then
// replays every change made after the save began. Whatever mix of states the file catches
// (labels on two nodes, links to nodes allocated later, lists mid-update), loading it and
// re-applying the touched labels must give exactly the written state, searchable.
TEST(HnswTest, ConcurrentSaveWithReplayMatchesTheWrittenState) {
  for (const char* factory : {"HNSW16", "HNSW16,SQ8", "HNSW16,RBQ"}) {
    SCOPED_TRACE(factory);
    auto data = Clustered(6000, 60, 32, 30, 77);
    auto index = std::move(MakeIndex(factory, data.dim, Metric::kL2)).value();
    std::unordered_map<label_t, size_t> truth;  // label -> row of data.base
    std::vector<label_t> first(4000);
    for (label_t i = 0; i < 4000; ++i) {
      first[i] = i;
      truth[i] = size_t(i);
    }
    ASSERT_TRUE(index->Add(first.size(), data.base.data(), first.data()).ok());
    const std::string path = (std::filesystem::temp_directory_path() /
                              ("fathom_concurrent_save_" + std::to_string(::getpid()) + ".fathom")).string();
    std::mutex mu;
    std::unordered_set<label_t> touched;
    std::atomic<bool> saving{false}, done{false};
    std::atomic<size_t> ops{0};
    std::thread writer([&] {
      std::mt19937 rng(5);
      while (!done.load()) {
        const label_t label = label_t(rng() % 6000);
        const size_t row = rng() % 6000;
        std::lock_guard lock(mu);
        if (rng() % 4 == 0) {
          ASSERT_TRUE(index->Remove(1, &label).ok());
          truth.erase(label);
        } else {
          ASSERT_TRUE(index->Add(1, data.base.data() + row * data.dim, &label).ok());
          truth[label] = row;
        }
        if (saving.load()) touched.insert(label);
        ops.fetch_add(1);
      }
    });
    while (ops.load() < 200) std::this_thread::yield();
    saving = true;
    SaveOptions options;
    options.concurrent = true;
    Status saved = index->Save(path, options);
    const size_t at_end = ops.load();
    while (ops.load() < at_end + 200) std::this_thread::yield();
    done = true;
    writer.join();
    ASSERT_TRUE(saved.ok()) << saved.ToString();

    auto loaded = Index::Load(path);
    std::filesystem::remove(path);
    ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
    Index& restored = **loaded;
    for (label_t label : touched) {
      auto it = truth.find(label);
      if (it == truth.end()) {
        ASSERT_TRUE(restored.Remove(1, &label).ok());
      } else {
        ASSERT_TRUE(restored.Add(1, data.base.data() + it->second * data.dim, &label).ok());
      }
    }
    ASSERT_EQ(restored.size(), truth.size());
    Dataset live;
    live.dim = data.dim;
    live.queries = data.queries;
    std::vector<label_t> label_of;
    std::vector<float> v(data.dim);
    for (const auto& [label, row] : truth) {
      ASSERT_TRUE(restored.Contains(label)) << label;
      ASSERT_TRUE(restored.Reconstruct(label, v.data()).ok());
      ASSERT_TRUE(std::equal(v.begin(), v.end(), data.base.begin() + row * data.dim)) << label;
      live.base.insert(live.base.end(), v.begin(), v.end());
      label_of.push_back(label);
    }
    auto exact = BruteForce(live, 10, Metric::kL2);
    for (auto& list : exact) {
      for (auto& l : list) l = label_of[size_t(l)];
    }
    auto found = SearchAll(restored, live, 10, 64);
    for (label_t l : found) ASSERT_TRUE(l == kNoLabel || truth.count(l)) << l;
    EXPECT_GE(Recall(exact, found, 10), 0.95);
  }
}

TEST(HnswTest, ConcurrentAddRemoveAndSearchStress) {
  auto data = Clustered(6000, 50, 24, 20, 31);
  auto index = std::move(MakeIndex("HNSW12,efC=64", data.dim, Metric::kL2)).value();
  const size_t writers = 3;
  const size_t per_writer = data.n() / writers;
  std::atomic<bool> done{false};
  std::atomic<size_t> bad{0}, searches{0};
  std::vector<std::thread> threads;
  for (size_t w = 0; w < writers; ++w) {
    threads.emplace_back([&, w] {
      for (size_t i = w * per_writer; i < (w + 1) * per_writer; i += 50) {
        std::vector<label_t> ids;
        for (size_t j = i; j < i + 50; ++j) ids.push_back(label_t(j));
        ASSERT_TRUE(index->Add(50, data.base.data() + i * data.dim, ids.data()).ok());
        // Remove every 7th label of the chunk again: it must never be returned afterwards.
        std::vector<label_t> gone;
        for (label_t id : ids) {
          if (id % 7 == 0) gone.push_back(id);
        }
        ASSERT_TRUE(index->Remove(gone.size(), gone.data()).ok());
      }
    });
  }
  // The third reader filters with one BitsetFilter throughout (even labels), so the index builds
  // its cached set of allowed nodes while writers add, remove and consolidate.
  BitsetFilter even(data.n());
  for (size_t i = 0; i < data.n(); i += 2) even.Set(label_t(i));
  for (int r = 0; r < 3; ++r) {
    threads.emplace_back([&, r] {
      const size_t k = 10;
      std::vector<float> d(k);
      std::vector<label_t> l(k);
      SearchParams params;
      if (r == 2) params.filter = &even;
      for (size_t q = r; !done.load(); q = (q + 1) % data.nq()) {
        const float* qv = data.queries.data() + q * data.dim;
        if (!index->Search(1, qv, k, d.data(), l.data(), params).ok()) ++bad;
        for (size_t i = 0; i < k; ++i) {
          if (l[i] == kNoLabel) continue;
          if (l[i] < 0 || l[i] >= label_t(data.n())) ++bad;
          if (r == 2 && l[i] % 2 != 0) ++bad;
          float exact = simd::ForIsa(simd::Isa::kScalar)->l2_sqr(
              qv, data.base.data() + l[i] * data.dim, data.dim);
          if (std::fabs(exact - d[i]) > 1e-3f * std::max(1.f, exact)) ++bad;
          if (i > 0 && d[i] < d[i - 1]) ++bad;
        }
        ++searches;
      }
    });
  }
  for (size_t w = 0; w < writers; ++w) threads[w].join();
  done = true;
  for (size_t t = writers; t < threads.size(); ++t) threads[t].join();
  EXPECT_EQ(bad.load(), 0u);
  EXPECT_GT(searches.load(), 0u);
  std::vector<bool> alive(data.n());
  for (size_t i = 0; i < data.n(); ++i) alive[i] = (i % 7 != 0);
  auto labels = SearchAll(*index, data, 10, 128);
  for (label_t l : labels) EXPECT_NE(l % 7, 0) << "removed label returned";
  EXPECT_GE(Recall(BruteForce(data, 10, Metric::kL2, &alive), labels, 10), 0.95);
}

TEST(HnswTest, RejectsBadSearchInput) {
  auto index = std::move(MakeIndex("HNSW8", 2, Metric::kL2)).value();
  float q[2] = {0, INFINITY};
  float d;
  label_t l;
  Status s = index->Search(1, q, 1, &d, &l);
  EXPECT_EQ(s.message(), "vector 0 has a non-finite value (inf) at dimension 1");
  q[1] = 0;
  SearchParams params;
  params.ef = -1;
  s = index->Search(1, q, 1, &d, &l, params);
  EXPECT_EQ(s.message(), "ef must be >= 0, got -1");
}

}  // namespace
}  // namespace fathom

namespace fathom {
namespace {

// SearchAmong is exact within the candidates, for both index kinds and every metric.
TEST(SearchAmongTest, ExactWithinCandidates) {
  auto data = testing::Clustered(2000, 20, 12, 8, 37);
  for (const char* factory : {"Flat", "HNSW8", "HNSW8,SQ8", "HNSW8,FP16", "HNSW8,RBQ", "HNSW8,SQ4"}) {
    for (Metric metric : {Metric::kL2, Metric::kInnerProduct, Metric::kCosine}) {
      if (std::string(factory).ends_with("RBQ") && metric == Metric::kInnerProduct) continue;  // (l2, cosine)
      auto index = std::move(MakeIndex(factory, data.dim, metric)).value();
      ASSERT_TRUE(index->Add(data.n(), data.base.data()).ok());
      std::vector<label_t> candidates;
      std::vector<bool> alive(data.n());
      for (label_t i = 3; i < label_t(data.n()); i += 7) {
        candidates.push_back(i);
        alive[i] = true;
      }
      candidates.push_back(999999);  // unknown labels are skipped
      std::vector<float> d(data.nq() * 5);
      std::vector<label_t> l(data.nq() * 5);
      ASSERT_TRUE(index->SearchAmong(data.nq(), data.queries.data(), 5, candidates.data(),
                                     candidates.size(), d.data(), l.data()).ok());
      auto truth = testing::BruteForce(data, 5, metric, &alive);
      if (std::string(factory).ends_with("FP16")) {
        // Exact over the half-precision vectors it holds (no float copy to re-rank with): the
        // order of near ties can differ from float32's.
        EXPECT_GE(testing::Recall(truth, l, 5), 0.95) << factory << " " << MetricName(metric);
        continue;
      }
      EXPECT_EQ(testing::Recall(truth, l, 5), 1.0) << factory << " " << MetricName(metric);
      for (size_t q = 0; q < data.nq(); ++q) {
        EXPECT_EQ(testing::CheckAgainstReference(data, metric, q, 5, &d[q * 5], &l[q * 5], &alive), "")
            << factory << " " << MetricName(metric);
      }
    }
  }
}

// SQ8 with l2 or cosine ranks the candidates by their codes and re-ranks with floats until the
// codes' lower bound passes the k-th exact distance: the answer stays exact. Most points here
// lie far outside the range the first batch trained, so their codes are clamped; and the same
// holds for the index loaded from its file.
TEST(SearchAmongTest, Sq8CodeScanIsExactWhenCodesAreClamped) {
  auto data = testing::Clustered(3000, 30, 48, 10, 41);
  for (size_t i = 300 * data.dim; i < data.base.size(); ++i) data.base[i] *= 4;  // beyond the range
  const std::string path = ::testing::TempDir() + "/sq8_search_among.fathom";
  for (Metric metric : {Metric::kL2, Metric::kCosine}) {
    auto built = std::move(MakeIndex("HNSW8,SQ8", data.dim, metric)).value();
    ASSERT_TRUE(built->Add(300, data.base.data()).ok());  // trains the range
    std::vector<label_t> rest(data.n() - 300);
    for (size_t i = 0; i < rest.size(); ++i) rest[i] = label_t(300 + i);
    ASSERT_TRUE(built->Add(rest.size(), data.base.data() + 300 * data.dim, rest.data()).ok());
    ASSERT_TRUE(built->Save(path).ok());
    auto loaded = std::move(Index::Load(path)).value();
    std::vector<label_t> candidates;
    std::vector<bool> allowed(data.n());
    for (label_t i = 1; i < label_t(data.n()); i += 2) {
      candidates.push_back(i);
      allowed[i] = true;
    }
    for (Index* index : {built.get(), loaded.get()}) {
      const size_t k = 10;
      std::vector<float> d(data.nq() * k);
      std::vector<label_t> l(data.nq() * k);
      ASSERT_TRUE(index->SearchAmong(data.nq(), data.queries.data(), k, candidates.data(), candidates.size(),
                                     d.data(), l.data()).ok());
      for (size_t q = 0; q < data.nq(); ++q) {
        EXPECT_EQ(testing::CheckAgainstReference(data, metric, q, k, &d[q * k], &l[q * k], &allowed), "")
            << MetricName(metric) << (index == loaded.get() ? " (loaded)" : "");
      }
    }
  }
}

}  // namespace
}  // namespace fathom

namespace fathom {
namespace {

// Reconstruct returns what each index stores: the vector itself (normalised for cosine), for
// every index kind; unknown labels are NotFound.
TEST(ReconstructTest, EveryIndexReturnsItsStoredVector) {
  auto data = testing::Clustered(500, 1, 12, 4, 8);
  for (const char* factory : {"Flat", "HNSW8", "HNSW8,SQ8", "HNSW8,FP16", "HNSW8,RBQ"}) {
    for (Metric metric : {Metric::kL2, Metric::kInnerProduct, Metric::kCosine}) {
      if (std::string(factory).ends_with("RBQ") && metric == Metric::kInnerProduct) continue;  // (l2, cosine)
      auto index = std::move(MakeIndex(factory, data.dim, metric)).value();
      ASSERT_TRUE(index->Add(data.n(), data.base.data()).ok());
      for (label_t l : {label_t(0), label_t(123), label_t(499)}) {
        std::vector<float> out(data.dim);
        ASSERT_TRUE(index->Reconstruct(l, out.data()).ok()) << factory;
        std::vector<float> want(data.base.begin() + l * data.dim, data.base.begin() + (l + 1) * data.dim);
        if (metric == Metric::kCosine) {
          double norm = 0;
          for (float v : want) norm += double(v) * v;
          for (float& v : want) v = float(v / std::sqrt(norm));
        }
        for (size_t j = 0; j < data.dim; ++j) {
          // FP16 keeps 11 significant bits: relative error at most 2^-11.
          const double tol = std::string(factory).ends_with("FP16") ? std::fabs(want[j]) / 2048 + 1e-7 : 1e-6;
          EXPECT_NEAR(out[j], want[j], tol) << factory << " " << MetricName(metric) << " label " << l;
        }
      }
      std::vector<float> out(data.dim);
      EXPECT_TRUE(index->Reconstruct(777, out.data()).IsNotFound()) << factory;
    }
  }
}

// SQ4 learns its per-dimension ranges from the first batch; a first batch of a few points (a
// collection's first upsert) gives ranges that clamp most later values, so the ranges are learnt
// again, and every node re-encoded, once 1,000 points are in. Built one point at a time, recall
// must match a build from one batch (it was 0.5 with the ranges of the first point).
TEST(HnswTest, Sq4RangesFromATinyFirstBatchAreLearntAgain) {
  auto data = testing::Clustered(3000, 50, 32, 12, 41);
  {
    auto index = std::move(MakeIndex("HNSW16,SQ4", data.dim, Metric::kL2)).value();
    const label_t first_label = 0;
    ASSERT_TRUE(index->Add(1, data.base.data(), &first_label).ok());
    for (size_t i = 1; i < data.n(); i += 100) {  // then batches of 100
      const size_t n = std::min<size_t>(100, data.n() - i);
      std::vector<label_t> labels(n);
      for (size_t j = 0; j < n; ++j) labels[j] = label_t(i + j);
      ASSERT_TRUE(index->Add(n, data.base.data() + i * data.dim, labels.data()).ok());
    }
    const double recall = Recall(BruteForce(data, 10, Metric::kL2), SearchAll(*index, data, 10, 64), 10);
    EXPECT_GE(recall, 0.95);
    // Saved and loaded: the same answers.
    const std::string path = ::testing::TempDir() + "/sq4_retrain.fidx";
    ASSERT_TRUE(index->Save(path).ok());
    auto loaded = Index::Load(path);
    ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
    EXPECT_EQ(SearchAll(**loaded, data, 10, 64), SearchAll(*index, data, 10, 64));
  }
}

// SearchParams::rerank (SQ8): every returned distance is exact whatever the re-rank depth, and
// re-ranking more candidates never loses recall.
TEST(HnswSq8Test, RerankDepthKeepsExactDistancesAndRecall) {
  auto data = testing::Clustered(4000, 40, 24, 16, 12);
  auto index = std::move(MakeIndex("HNSW16,SQ8", data.dim, Metric::kL2)).value();
  ASSERT_TRUE(index->Add(data.n(), data.base.data()).ok());
  auto truth = testing::BruteForce(data, 10, Metric::kL2);
  double previous = 0;
  for (int rerank : {10, 20, 80}) {
    SearchParams p;
    p.ef = 128;
    p.rerank = rerank;
    std::vector<float> d(data.nq() * 10);
    std::vector<label_t> l(data.nq() * 10);
    ASSERT_TRUE(index->Search(data.nq(), data.queries.data(), 10, d.data(), l.data(), p).ok());
    for (size_t q = 0; q < data.nq(); ++q) {
      for (size_t i = 0; i < 10; ++i) {
        double ref = testing::ReferenceDistance(Metric::kL2, data.queries.data() + q * data.dim,
                                                data.base.data() + size_t(l[q * 10 + i]) * data.dim, data.dim);
        EXPECT_NEAR(d[q * 10 + i], ref, 1e-3 * std::max(1.0, ref)) << "rerank " << rerank;
      }
    }
    double recall = testing::Recall(truth, l, 10);
    EXPECT_GE(recall, previous - 1e-9) << "rerank " << rerank;
    previous = recall;
  }
  EXPECT_GE(previous, 0.95);
}

}  // namespace
}  // namespace fathom

namespace fathom {
namespace {

// The first insert after a load must not reallocate the graph: a loaded index keeps room for
// 1/8 more nodes (untouched pages cost nothing), where it used to be exactly full, so a
// 10-point upsert after opening a 10M-point collection copied the whole graph under the
// structure lock (11 s without searches).
// pca=<p> (issue 12): searches walk on projections of the SQ8 codes, then rank the beam by the
// whole codes and re-rank with floats. On Fashion-MNIST (784-d, integer pixels) the walk reaches
// the recall of the whole-code walk at a wider beam; returned distances are exact; a collection's
// small first upserts train it once 1,000 points are in, the points before are projected too;
// a saved index answers the same after loading, and one saved before training loads untrained
// and learns the projection as it grows.
TEST(HnswTest, PcaWalkKeepsRecallExactDistancesAndSurvivesSaveLoad) {
  auto data = testing::FashionMnist(6000, 200);
  if (data.dim == 0) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  auto truth = BruteForce(data, 10, Metric::kL2);
  auto index = std::move(MakeIndex("HNSW16,SQ8,pca=64", data.dim, Metric::kL2)).value();
  auto* hnsw = dynamic_cast<HnswIndex*>(index.get());
  ASSERT_NE(hnsw, nullptr);
  // Batches of 100: untrained until the 1,000th point.
  for (size_t at = 0; at < data.n(); at += 100) {
    ASSERT_TRUE(index->Add(100, data.base.data() + at * data.dim).ok());
    EXPECT_EQ(hnsw->pca_ready(), at + 100 >= 1000) << "after " << at + 100 << " points";
  }
  const auto found = SearchAll(*index, data, 10, 128);
  EXPECT_GE(Recall(truth, found, 10), 0.99);
  hnsw->set_pca_enabled_for_testing(false);
  const double whole = Recall(truth, SearchAll(*index, data, 10, 128), 10);
  hnsw->set_pca_enabled_for_testing(true);
  EXPECT_GE(Recall(truth, found, 10), whole - 0.01);
  // The projection has one step for all components, so the walk runs in integers (a query's
  // rounded half levels); the float walk (what files with a step per component use) on the same
  // index finds nearly the same neighbours.
  EXPECT_TRUE(hnsw->pca_int_walk());
  hnsw->set_pca_int_walk_enabled_for_testing(false);
  const auto found_float = SearchAll(*index, data, 10, 128);
  hnsw->set_pca_int_walk_enabled_for_testing(true);
  EXPECT_GE(Recall(truth, found_float, 10), 0.99);
  EXPECT_NEAR(Recall(truth, found, 10), Recall(truth, found_float, 10), 0.005);
  size_t same = 0;  // neighbours both walks return, per query
  for (size_t q = 0; q < data.nq(); ++q) {
    for (size_t a = 0; a < 10; ++a) {
      same += std::count(found_float.begin() + q * 10, found_float.begin() + (q + 1) * 10,
                         found[q * 10 + a]);
    }
  }
  EXPECT_GE(double(same) / double(found.size()), 0.99);
  // Queries far outside the projection's training range (all black, all white, and values the
  // SQ8 range clamps): their half levels are clamped so the integer distances cannot overflow,
  // and each still finds its true nearest neighbour with its exact distance.
  for (float value : {0.0f, 255.0f, 5000.0f}) {
    std::vector<float> extreme(data.dim, value);
    float best_ref = std::numeric_limits<float>::infinity();
    label_t best_label = -1;
    for (size_t i = 0; i < data.n(); ++i) {
      const float d = testing::ReferenceDistance(Metric::kL2, extreme.data(),
                                                 data.base.data() + i * data.dim, data.dim);
      if (d < best_ref) best_ref = d, best_label = label_t(i);
    }
    float got_dist;
    label_t got_label;
    SearchParams wide;
    wide.ef = 256;
    ASSERT_TRUE(index->Search(1, extreme.data(), 1, &got_dist, &got_label, wide).ok());
    EXPECT_EQ(got_label, best_label) << "query of " << value << "s";
    EXPECT_NEAR(got_dist, best_ref, 1e-4 * best_ref + 1e-3) << "query of " << value << "s";
  }
  // Exact distances (the float re-ranking), for every query.
  std::vector<float> dist(data.nq() * 10);
  std::vector<label_t> labels(data.nq() * 10);
  SearchParams params;
  params.ef = 128;
  ASSERT_TRUE(index->Search(data.nq(), data.queries.data(), 10, dist.data(), labels.data(), params).ok());
  for (size_t q = 0; q < data.nq(); ++q) {
    for (size_t j = 0; j < 10; ++j) {
      const double ref = testing::ReferenceDistance(Metric::kL2, data.queries.data() + q * data.dim,
                                                    data.base.data() + size_t(labels[q * 10 + j]) * data.dim, data.dim);
      ASSERT_NEAR(dist[q * 10 + j], ref, 1e-4 * ref + 1e-3) << "query " << q;
    }
  }
  // Saved and loaded: the same answers, walking on the projection read from the file.
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("fathom_hnsw_pca_" + std::to_string(::getpid()) + ".fathom")).string();
  ASSERT_TRUE(index->Save(path).ok());
  auto loaded = std::move(Index::Load(path)).value();
  EXPECT_EQ(loaded->factory_string(), "HNSW16,SQ8,pca=64");
  EXPECT_TRUE(dynamic_cast<HnswIndex*>(loaded.get())->pca_ready());
  EXPECT_TRUE(dynamic_cast<HnswIndex*>(loaded.get())->pca_int_walk());
  EXPECT_EQ(SearchAll(*loaded, data, 10, 128), found);
  // Saved before training (500 nodes): loads untrained, learns with its 1,000th point.
  auto small = std::move(MakeIndex("HNSW16,SQ8,pca=64", data.dim, Metric::kL2)).value();
  ASSERT_TRUE(small->Add(500, data.base.data()).ok());
  ASSERT_TRUE(small->Save(path).ok());
  auto small_loaded = std::move(Index::Load(path)).value();
  auto* small_hnsw = dynamic_cast<HnswIndex*>(small_loaded.get());
  EXPECT_FALSE(small_hnsw->pca_ready());
  ASSERT_TRUE(small_loaded->Add(data.n() - 500, data.base.data() + 500 * data.dim, nullptr).ok());
  EXPECT_TRUE(small_hnsw->pca_ready());
  EXPECT_GE(Recall(truth, SearchAll(*small_loaded, data, 10, 128), 10), 0.99);
  std::filesystem::remove(path);
}

// pca=<p> with cosine (the walk on L2 between projections of unit vectors' codes) and clustered
// float data: recall reaches the whole-code walk's at a wide beam, with a filter too.
TEST(HnswTest, PcaWalkServesCosineAndFilters) {
  auto data = testing::Clustered(4000, 100, 256, 40, 91);
  auto truth = BruteForce(data, 10, Metric::kCosine);
  auto index = Build("HNSW16,SQ8,pca=64", data, Metric::kCosine);
  ASSERT_TRUE(dynamic_cast<HnswIndex*>(index.get())->pca_ready());
  EXPECT_GE(Recall(truth, SearchAll(*index, data, 10, 256), 10), 0.97);
  // Even labels only.
  std::vector<bool> allowed(data.n());
  for (size_t i = 0; i < data.n(); i += 2) allowed[i] = true;
  auto filtered_truth = BruteForce(data, 10, Metric::kCosine, &allowed);
  struct Even : LabelFilter {
    bool Allowed(label_t label) const override { return label % 2 == 0; }
  } even;
  const auto found = SearchAll(*index, data, 10, 256, &even);
  for (label_t l : found) ASSERT_EQ(l % 2, 0);
  EXPECT_GE(Recall(filtered_truth, found, 10), 0.95);
}

// pca=1 walks in float (a file from before the shared step with one component looks like a new
// one, so neither walks in integers); pca=2 in integers. One or two components are a coarse walk
// (recall@10 at ef 256 here: 0.57 and 0.93), but a working one.
TEST(HnswTest, PcaWalkOfOneComponentStaysInFloat) {
  auto data = testing::Clustered(3000, 100, 32, 20, 93);
  auto truth = BruteForce(data, 10, Metric::kL2);
  for (const char* factory : {"HNSW16,SQ8,pca=1", "HNSW16,SQ8,pca=2"}) {
    SCOPED_TRACE(factory);
    auto index = Build(factory, data, Metric::kL2);
    auto* hnsw = dynamic_cast<HnswIndex*>(index.get());
    ASSERT_TRUE(hnsw->pca_ready());
    const bool two = std::string(factory).back() == '2';
    EXPECT_EQ(hnsw->pca_int_walk(), two);
    EXPECT_GE(Recall(truth, SearchAll(*index, data, 10, 256), 10), two ? 0.9 : 0.5);
  }
}

TEST(HnswTest, FirstInsertAfterLoadDoesNotReallocate) {
  auto data = testing::Clustered(5000, 1, 16, 10, 77);
  auto index = std::move(MakeIndex("HNSW8,SQ8", data.dim, Metric::kL2)).value();
  ASSERT_TRUE(index->Add(data.n(), data.base.data()).ok());
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("fathom_hnsw_headroom_" + std::to_string(::getpid()) + ".fathom")).string();
  ASSERT_TRUE(index->Save(path).ok());
  auto loaded = std::move(Index::Load(path)).value();
  std::filesystem::remove(path);
  const size_t before = loaded->memory_bytes();
  ASSERT_TRUE(loaded->Add(1, data.queries.data()).ok());
  EXPECT_LT(double(loaded->memory_bytes()), 1.05 * double(before)) << "the first insert regrew the arrays";
}


// VisitedSet (issue 10: visited marks sized to the work): the per-node array and the hashed set
// answer exactly as a std::unordered_set does, across growth of the hashed set, and the hashed
// set gives back the memory one wide search took after many narrow ones.
TEST(VisitedSetTest, BothModesMatchAnOracle) {
  std::mt19937 rng(5);
  for (size_t dense_max : {size_t{1} << 30, size_t{0}}) {
    VisitedSet visited;
    const size_t nodes = 200000;
    for (int round = 0; round < 60; ++round) {
      visited.Reset(nodes, dense_max);
      EXPECT_EQ(visited.hashed(), dense_max == 0);
      std::unordered_set<uint32_t> oracle;
      const size_t inserts = round % 10 == 0 ? 60000 : rng() % 3000;
      for (size_t i = 0; i < inserts; ++i) {
        uint32_t node = rng() % (round % 2 ? nodes : 5000);  // dense and sparse id ranges
        ASSERT_EQ(visited.Insert(node), oracle.insert(node).second) << "round " << round;
      }
    }
  }
  VisitedSet visited;
  visited.Reset(1000000, 0);
  for (uint32_t i = 0; i < 100000; ++i) visited.Insert(i * 7);
  const size_t wide = visited.bytes();
  for (int round = 0; round < 2000; ++round) {
    visited.Reset(1000000, 0);
    for (uint32_t i = 0; i < 100; ++i) visited.Insert(i);
  }
  EXPECT_LE(visited.bytes(), 128u << 10) << "after a wide search: " << wide;
  EXPECT_GE(wide, 1u << 20);
}

// The hashed visited set (what graphs above 2M nodes use) builds the same graph and finds the
// same neighbours as the per-node array, for searches, filtered searches and consolidation.
TEST(HnswTest, HashedVisitedSetGivesTheSameGraphAndResults) {
  auto data = Clustered(6000, 100, 24, 20, 31);
  std::vector<std::unique_ptr<Index>> indexes;
  for (size_t dense_max : {VisitedSet::kDenseMaxNodes, size_t{0}}) {
    auto index = std::move(MakeIndex("HNSW16,SQ8", data.dim, Metric::kL2)).value();
    dynamic_cast<HnswIndex*>(index.get())->set_dense_visited_max_nodes_for_testing(dense_max);
    AddOptions one_thread;  // a deterministic build
    one_thread.threads = 1;
    ASSERT_TRUE(index->Add(data.n(), data.base.data(), nullptr, one_thread).ok());
    std::vector<label_t> gone;
    for (label_t i = 0; i < label_t(data.n()); i += 3) gone.push_back(i);
    ASSERT_TRUE(index->Remove(gone.size(), gone.data()).ok());
    dynamic_cast<HnswIndex*>(index.get())->Consolidate();
    indexes.push_back(std::move(index));
  }
  BitsetFilter even(data.n());
  for (label_t i = 0; i < label_t(data.n()); i += 2) even.Set(i);
  for (int ef : {16, 128}) {
    EXPECT_EQ(SearchAll(*indexes[0], data, 10, ef), SearchAll(*indexes[1], data, 10, ef)) << ef;
    EXPECT_EQ(SearchAll(*indexes[0], data, 10, ef, &even), SearchAll(*indexes[1], data, 10, ef, &even)) << ef;
  }
  std::vector<bool> alive(data.n(), true);
  for (size_t i = 0; i < data.n(); i += 3) alive[i] = false;
  EXPECT_GE(Recall(BruteForce(data, 10, Metric::kL2, &alive), SearchAll(*indexes[1], data, 10, 128), 10), 0.95);
}


// Builds are reproducible on one thread (AddOptions::threads = 1, ann_bench --build-threads 1):
// node levels come from a counter, the SQ8 range and the RaBitQ centres and rotation from the
// first batch and fixed seeds, so the same vectors in the same order give the same graph: the
// same answers and the same file, byte for byte. (A parallel build's graph depends on thread
// timing; A/B comparisons of graph changes use one build thread, or report the spread over
// several builds: ann_bench --runs.)
TEST(HnswTest, SingleThreadedBuildsAreReproducible) {
  auto data = Clustered(4000, 50, 32, 20, 37);
  const auto dir = std::filesystem::temp_directory_path() / ("fathom_repro_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  for (const char* factory : {"HNSW16", "HNSW16,SQ8", "HNSW16,FP16", "HNSW16,RBQ"}) {
    SCOPED_TRACE(factory);
    auto a = Build(factory, data, Metric::kL2, 1);
    auto b = Build(factory, data, Metric::kL2, 1);
    for (int ef : {10, 64}) EXPECT_EQ(SearchAll(*a, data, 10, ef), SearchAll(*b, data, 10, ef)) << ef;
    ASSERT_TRUE(a->Save((dir / "a.fathom").string()).ok());
    ASSERT_TRUE(b->Save((dir / "b.fathom").string()).ok());
    std::ifstream fa(dir / "a.fathom", std::ios::binary), fb(dir / "b.fathom", std::ios::binary);
    const std::string bytes_a((std::istreambuf_iterator<char>(fa)), std::istreambuf_iterator<char>());
    const std::string bytes_b((std::istreambuf_iterator<char>(fb)), std::istreambuf_iterator<char>());
    EXPECT_FALSE(bytes_a.empty());
    EXPECT_TRUE(bytes_a == bytes_b) << "the two files differ";
  }
  std::filesystem::remove_all(dir);
}

// The reachability check walks the graph beside searches and inserts (under the shared lock,
// reading links atomically) and only takes the exclusive lock when it finds an unreached node.
// Run under ThreadSanitizer in the test command; afterwards every node is reachable.
TEST(HnswTest, ConcurrentReachabilityChecksSearchesAndInserts) {
  auto data = Clustered(8000, 50, 32, 16, 41);
  auto made = MakeIndex("HNSW16,SQ8", data.dim, Metric::kL2);
  auto* index = static_cast<HnswIndex*>(made->get());
  const size_t first = 4000;
  ASSERT_TRUE(index->Add(first, data.base.data()).ok());
  std::atomic<bool> done{false};
  std::thread checker([&] {
    while (!done.load()) index->EnsureReachable();
  });
  std::thread searcher([&] {
    while (!done.load()) {
      auto labels = SearchAll(*index, data, 5, 32);
      for (label_t l : labels) ASSERT_TRUE(l == kNoLabel || (l >= 0 && l < label_t(data.n())));
    }
  });
  for (size_t b = first; b < data.n(); b += 200) {
    std::vector<label_t> ids(200);
    for (size_t i = 0; i < 200; ++i) ids[i] = label_t(b + i);
    AddOptions one;
    one.threads = 1;
    ASSERT_TRUE(index->Add(200, data.base.data() + b * data.dim, ids.data(), one).ok());
  }
  done = true;
  checker.join();
  searcher.join();
  EXPECT_EQ(index->EnsureReachable(), 0u);
  size_t found = 0;
  SearchParams p;
  p.ef = 256;
  for (size_t i = 0; i < data.n(); ++i) {
    float d;
    label_t l;
    ASSERT_TRUE(index->Search(1, data.base.data() + i * data.dim, 1, &d, &l, p).ok());
    found += l == label_t(i);
  }
  EXPECT_GE(double(found) / double(data.n()), 0.999);
}


// SearchParams::upper_ef (a beam on level 1 seeding level 0): on data of many separated
// clusters, where a greedy descent often ends beside the query's cluster, it finds clearly
// more of the true neighbours at the same ef; with the default (greedy) results are unchanged.
TEST(HnswTest, UpperBeamFindsTheRightClusterInManyClusteredData) {
  constexpr size_t kDim = 48, kLatent = 8, kClusters = 1000, kN = 20000, kNq = 200;
  std::mt19937 rng(1);
  std::normal_distribution<float> unit(0.f, 1.f);
  std::vector<float> centres(kClusters * kDim), bases(kClusters * kLatent * kDim);
  for (float& c : centres) c = 4.0f * unit(rng);
  for (float& b : bases) b = unit(rng) / std::sqrt(float(kLatent));
  Dataset data;
  data.dim = kDim;
  auto fill = [&](std::vector<float>* out, size_t rows) {
    for (size_t i = 0; i < rows; ++i) {
      const size_t c = rng() % kClusters;
      float z[kLatent];
      for (float& v : z) v = 2.0f * unit(rng);
      for (size_t j = 0; j < kDim; ++j) {
        float v = centres[c * kDim + j] + 0.05f * unit(rng);
        for (size_t l = 0; l < kLatent; ++l) v += z[l] * bases[(c * kLatent + l) * kDim + j];
        out->push_back(v);
      }
    }
  };
  fill(&data.base, kN);
  fill(&data.queries, kNq);
  auto index = Build("HNSW4,efC=32", data, Metric::kL2, /*threads=*/1);
  auto truth = BruteForce(data, 10, Metric::kL2);
  auto search = [&](int upper_ef, const LabelFilter* filter = nullptr) {
    std::vector<float> d(kNq * 10);
    std::vector<label_t> l(kNq * 10);
    SearchParams p;
    p.ef = 16;
    p.upper_ef = upper_ef;
    p.filter = filter;
    EXPECT_TRUE(index->Search(kNq, data.queries.data(), 10, d.data(), l.data(), p).ok());
    return l;
  };
  const double greedy = Recall(truth, search(0), 10), beam = Recall(truth, search(64), 10);
  EXPECT_EQ(search(0), SearchAll(*index, data, 10, 16));  // the default is the greedy descent
  EXPECT_EQ(search(1), search(0));
  EXPECT_GE(beam, greedy + 0.08) << "greedy " << greedy << ", upper_ef 64 " << beam;
  // Filtered searches take the same beam: half the points allowed.
  BitsetFilter even(kN);
  for (label_t i = 0; i < label_t(kN); i += 2) even.Set(i);
  std::vector<bool> allowed(kN);
  for (size_t i = 0; i < kN; i += 2) allowed[i] = true;
  auto filtered_truth = BruteForce(data, 10, Metric::kL2, &allowed);
  auto filtered = [&](int upper_ef) {
    auto l = search(upper_ef, &even);
    for (label_t x : l) EXPECT_TRUE(x == kNoLabel || x % 2 == 0);
    return Recall(filtered_truth, l, 10);
  };
  const double greedy_f = filtered(0), beam_f = filtered(64);
  EXPECT_GE(beam_f, greedy_f + 0.05) << "filtered: greedy " << greedy_f << ", upper_ef 64 " << beam_f;
}

// SQ8 walk (issue 12): where the code's last cache line has room, the walk computes |q - b|^2 as
// |q|^2 + (|b|^2 - 256 sum b) - 2 <b, q - 128>, one VNNI instruction per 64 bytes, with the
// per-node constant kept in the block (not in the file: set on load). It must give exactly
// l2_sqr_u8's integers: single-threaded builds on every kernel path write the same file and
// answer the same, and so does the file loaded on the path that uses the constant.
TEST(HnswTest, Sq8DotProductWalkEqualsTheIntegerL2OnEveryPath) {
  auto data = Clustered(3000, 50, 100, 20, 41);  // 100-d, M=16: the code's last line has room
  const simd::Isa before = simd::Active().isa;
  const auto dir = std::filesystem::temp_directory_path() / ("fathom_sq8dot_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto read = [](const std::filesystem::path& p) {
    std::ifstream f(p, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  };
  std::vector<label_t> reference;
  std::string reference_file;
  bool dot_path_seen = false;
  for (simd::Isa isa : {simd::Isa::kScalar, simd::Isa::kAvx2, simd::Isa::kAvx512}) {
    if (!simd::UseIsa(isa)) continue;
    SCOPED_TRACE(simd::IsaName(isa));
    dot_path_seen |= simd::Active().vnni;
    auto index = Build("HNSW16,SQ8", data, Metric::kL2, 1);
    std::vector<label_t> got = SearchAll(*index, data, 10, 10);
    const auto path = dir / (std::string(simd::IsaName(isa)) + ".fathom");
    ASSERT_TRUE(index->Save(path.string()).ok());
    auto loaded = std::move(Index::Load(path.string())).value();
    EXPECT_EQ(SearchAll(*loaded, data, 10, 10), got) << "after load";
    if (reference.empty()) {
      reference = got;
      reference_file = read(path);
    } else {
      EXPECT_EQ(got, reference);
      EXPECT_TRUE(read(path) == reference_file) << "the files differ";
    }
  }
  simd::UseIsa(before);
  std::filesystem::remove_all(dir);
  if (!dot_path_seen) std::printf("(this CPU has no VNNI: the dot-product walk was not exercised)\n");
}

// Integer data (pixels, SIFT): SQ8 takes a unit step, every code decodes exactly, and a query
// that is exact too skips re-ranking. Distances stay exact: against a double-precision loop,
// with the same neighbours as a forced re-rank, after a reload, and once a non-integer vector
// arrives (the skip ends for good).
TEST(HnswTest, IntegerDataSkipsRerankingAndStaysExact) {
  auto data = Clustered(3000, 40, 32, 20, 43);
  for (float& x : data.base) x = std::clamp(std::round(x * 20 + 100), 0.0f, 220.0f);
  for (float& x : data.queries) x = std::clamp(std::round(x * 20 + 100), 0.0f, 220.0f);
  auto index = Build("HNSW16,SQ8", data, Metric::kL2, 1);
  const size_t k = 10;
  auto search = [&](const Index& ix, const float* q, int rerank, std::vector<float>* d, std::vector<label_t>* l) {
    SearchParams p;
    p.ef = 64;
    p.rerank = rerank;
    d->assign(k, 0);
    l->assign(k, -1);
    ASSERT_TRUE(ix.Search(1, q, k, d->data(), l->data(), p).ok());
  };
  auto exact = [&](const float* q, label_t label) {
    double sum = 0;
    for (size_t j = 0; j < data.dim; ++j) {
      const double diff = double(q[j]) - data.base[size_t(label) * data.dim + j];
      sum += diff * diff;
    }
    return sum;
  };
  const std::string path = ::testing::TempDir() + "/hnsw_integer_sq8.fathom";
  ASSERT_TRUE(index->Save(path).ok());
  auto loaded = std::move(Index::Load(path)).value();
  for (size_t qi = 0; qi < data.nq(); ++qi) {
    const float* q = data.queries.data() + qi * data.dim;
    std::vector<float> d, d_forced, d_loaded;
    std::vector<label_t> l, l_forced, l_loaded;
    search(*index, q, 0, &d, &l);
    search(*index, q, int(2 * k), &d_forced, &l_forced);
    search(*loaded, q, 0, &d_loaded, &l_loaded);
    EXPECT_EQ(l, l_forced);
    EXPECT_EQ(l, l_loaded);
    for (size_t j = 0; j < k; ++j) {
      ASSERT_GE(l[j], 0);
      EXPECT_NEAR(d[j], exact(q, l[j]), 1e-6 * exact(q, l[j]) + 1e-6);
      EXPECT_EQ(d[j], d_loaded[j]);
    }
  }
  // A vector half a step off the first query: its distance is 0.25, which codes cannot say.
  std::vector<float> off(data.queries.begin(), data.queries.begin() + data.dim);
  off[0] += 0.5f;
  const label_t off_label = 100000;
  ASSERT_TRUE(index->Add(1, off.data(), &off_label).ok());
  std::vector<float> d;
  std::vector<label_t> l;
  search(*index, data.queries.data(), 0, &d, &l);
  EXPECT_EQ(l[0], off_label);
  EXPECT_FLOAT_EQ(d[0], 0.25f);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace fathom

namespace fathom {
namespace {

// SQ4 and RBQ codes with the float vectors in a vector store (an on_disk collection): the graph
// is built as in RAM (candidates found on the codes, then ranked and selected by float vectors
// read back from the store), so recall matches the in-RAM index while RAM holds no floats; a
// load with the store answers exactly as before the save, and removals stay removed.
TEST(HnswTest, Sq4AndRbqBuildWithTheirFloatsOnDisk) {
  auto data = Clustered(6000, 100, 48, 40, 17);
  const auto dir = std::filesystem::temp_directory_path() / ("fathom_hnsw_store_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  for (const char* factory : {"HNSW16,SQ4", "HNSW16,RBQ"}) {
    for (const Metric metric : {Metric::kL2, Metric::kCosine}) {
      SCOPED_TRACE(std::string(factory) + " " + MetricName(metric));
      const std::string path = (dir / "v.vectors").string();
      std::filesystem::remove(path);
      auto opened = FileVectorStore::Open(path, data.dim);
      ASSERT_TRUE(opened.ok()) << opened.status().ToString();
      std::shared_ptr<VectorStore> store = std::move(opened).value();
      std::vector<float> row(data.dim);
      for (size_t i = 0; i < data.n(); ++i) {
        row.assign(data.base.begin() + i * data.dim, data.base.begin() + (i + 1) * data.dim);
        if (metric == Metric::kCosine) simd::Normalize(row.data(), data.dim);
        ASSERT_TRUE(store->Write(label_t(i), row.data()).ok());
      }
      auto disk = std::move(MakeIndex(factory, data.dim, metric)).value();
      ASSERT_TRUE(disk->SetVectorStore(store).ok());
      auto ram = std::move(MakeIndex(factory, data.dim, metric)).value();
      // A first batch of 10 (SQ4 learns its ranges again at 1,000 points, from the store), then
      // batches of 1,000 from 2 threads.
      for (Index* index : {disk.get(), ram.get()}) {
        for (size_t b = 0; b < data.n(); b = b == 0 ? 10 : b + 1000) {
          const size_t n = std::min<size_t>(b == 0 ? 10 : 1000, data.n() - b);
          std::vector<label_t> labels(n);
          for (size_t j = 0; j < n; ++j) labels[j] = label_t(b + j);
          AddOptions opts;
          opts.threads = 2;
          ASSERT_TRUE(index->Add(n, data.base.data() + b * data.dim, labels.data(), opts).ok());
        }
      }
      const auto truth = BruteForce(data, 10, metric);
      const double disk_recall = Recall(truth, SearchAll(*disk, data, 10, 128), 10);
      const double ram_recall = Recall(truth, SearchAll(*ram, data, 10, 128), 10);
      EXPECT_GE(ram_recall, 0.97);
      EXPECT_GE(disk_recall, 0.97);
      EXPECT_GE(disk_recall, ram_recall - 0.02) << ram_recall;
      // At ef 64 RBQ had 0.61 in RAM and on disk while its quantizer kept the centres of the
      // first 10 points (0.81 with those of the first 1,010; 0.96-0.98 now).
      EXPECT_GE(Recall(truth, SearchAll(*ram, data, 10, 64), 10), 0.9);
      EXPECT_GE(Recall(truth, SearchAll(*disk, data, 10, 64), 10), 0.9);
      // No float vectors in RAM (6,000 x 48 x 4 bytes).
      EXPECT_LE(disk->memory_bytes() + data.n() * data.dim * 4, ram->memory_bytes());
      // Saved and loaded with the store: the same answers.
      const std::string file = (dir / "i.fidx").string();
      ASSERT_TRUE(disk->Save(file).ok());
      LoadOptions options;
      options.vectors = store;
      auto loaded = Index::Load(file, options);
      ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
      EXPECT_EQ(SearchAll(**loaded, data, 10, 128), SearchAll(*disk, data, 10, 128));
      // A fifth removed (consolidation relinks around them with floats from the store).
      std::vector<label_t> gone;
      for (label_t l = 0; l < label_t(data.n()); l += 5) gone.push_back(l);
      ASSERT_TRUE(disk->Remove(gone.size(), gone.data()).ok());
      const auto after = SearchAll(*disk, data, 10, 128);
      for (label_t l : after) EXPECT_NE(l % 5, 0) << l;
      size_t hits = 0, total = 0;
      for (size_t q = 0; q < data.nq(); ++q) {
        std::vector<label_t> kept;
        for (label_t l : truth[q]) {
          if (l % 5 != 0) kept.push_back(l);
        }
        total += kept.size();
        for (label_t l : kept) hits += std::count(after.begin() + q * 10, after.begin() + (q + 1) * 10, l);
      }
      EXPECT_GE(double(hits) / double(total), 0.95);
    }
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace fathom
