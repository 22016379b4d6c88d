// Files written by earlier versions open in this one; files from a future version are refused
// with a clear error. The fixtures in tests/fixtures/ are small, committed, and never rewritten:
//   database_v1/   a database directory from before the format_version key existed
//   snapshot_v0/   a snapshot from before records.bin had a magic and version
//   snapshot_v1/   a snapshot of the current format
// All hold collection 'golden' (4-d cosine, HNSW16, 20 points of tests/fixtures/points.jsonl).
//   index_v2/      index files (format version 2) written before HNSW moved its codes onto a
//                  cache line in memory: 200 64-d l2 vectors, "HNSW4,FP16" and "HNSW8,SQ8";
//                  and hnsw8_sq8_pca8.fathom, written before the pca walk's components shared
//                  one step (2026-12-04): 1,200 32-d l2 vectors (PcaFixtureVectors),
//                  "HNSW8,SQ8,pca=8".
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "fathom/database.h"
#include "fathom/index.h"
#include "index/hnsw.h"
#include "storage/kv_store.h"
#include "util/file.h"

#ifndef FATHOM_FIXTURES_DIR
#error "FATHOM_FIXTURES_DIR must name tests/fixtures"
#endif

namespace fathom {
namespace {
namespace fs = std::filesystem;

class FormatFixtureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp_ = fs::temp_directory_path() /
           ("fathom_fixture_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(tmp_);
    fs::create_directories(tmp_);
  }
  void TearDown() override { fs::remove_all(tmp_); }

  // A copy, so the committed fixture is never modified.
  std::string Copy(const std::string& name) {
    fs::copy(fs::path(FATHOM_FIXTURES_DIR) / name, tmp_ / name, fs::copy_options::recursive);
    return (tmp_ / name).string();
  }

  // The collection answers as the fixture's data says.
  static void ExpectGolden(Collection& c, size_t count = 20) {
    EXPECT_EQ(c.Count(), count);
    EXPECT_EQ(c.CountByFilter("label = 1").value(), 7u);
    auto got = std::move(c.Get({PointId(std::string("p-5")), PointId(uint64_t{3})})).value();
    ASSERT_TRUE(got[0].has_value());
    ASSERT_TRUE(got[1].has_value());
    EXPECT_EQ(got[0]->payload, R"({"color":"green","label":2})");
    SearchRequest req;
    req.queries = got[1]->vectors.at("");
    req.k = 1;
    auto hits = std::move(c.Search(req)).value();
    ASSERT_EQ(hits[0].size(), 1u);
    EXPECT_EQ(hits[0][0].id, PointId(uint64_t{3}));
    EXPECT_NEAR(hits[0][0].distance, 0.f, 1e-6);
  }

  fs::path tmp_;
};

// The fixture's vectors (multiples of 1/64, exact in half precision).
std::vector<float> IndexFixtureVectors() {
  const size_t n = 200, d = 64;
  std::vector<float> x(n * d);
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < d; ++j) x[i * d + j] = float(int((i * 131 + j * 71 + i * j) % 129) - 64) / 64.0f;
  }
  return x;
}

// The file keeps each code right after its node's links; memory keeps it on a cache line. A
// code read from the wrong place decodes to other values (FP16) or misleads the walk (SQ8).
TEST_F(FormatFixtureTest, HnswIndexFilesFromBeforeTheCacheLineLayoutLoad) {
  const std::vector<float> x = IndexFixtureVectors();
  const size_t d = 64, n = x.size() / d;
  for (const char* name : {"hnsw4_fp16.fathom", "hnsw8_sq8.fathom"}) {
    SCOPED_TRACE(name);
    const fs::path path = fs::path(FATHOM_FIXTURES_DIR) / "index_v2" / name;
    auto index = Index::Load(path.string());
    ASSERT_TRUE(index.ok()) << index.status().ToString();
    ASSERT_EQ((*index)->size(), n);
    std::vector<float> back(d);
    size_t found = 0;
    for (size_t i = 0; i < n; ++i) {
      ASSERT_TRUE((*index)->Reconstruct(label_t(i), back.data()).ok());
      ASSERT_EQ(std::memcmp(back.data(), &x[i * d], d * sizeof(float)), 0) << "vector " << i;
      float dist;
      label_t label;
      SearchParams params;
      params.ef = 16;  // a narrow walk: finds each point only if the codes are where they belong
      ASSERT_TRUE((*index)->Search(1, &x[i * d], 1, &dist, &label, params).ok());
      found += dist == 0.0f;  // (vectors i and i + 129 are equal: either is the point)
    }
    EXPECT_GE(found, n * 9 / 10);  // (194-200 here; 0-8 with the codes misplaced)
    // Written back, the file is the file read: the layout on disk did not change.
    const std::string again = (tmp_ / name).string();
    ASSERT_TRUE((*index)->Save(again).ok());
    std::ifstream a(path, std::ios::binary), b(again, std::ios::binary);
    EXPECT_TRUE(std::equal(std::istreambuf_iterator<char>(a), {}, std::istreambuf_iterator<char>(b), {}));
  }
}

// n 32-d vectors of 4 latent factors plus noise, the same on every machine (the generator of
// hnsw8_sq8_pca8.fathom used seed 12345 and n = 1,200).
std::vector<float> PcaFixtureVectors(size_t n, uint64_t seed) {
  const size_t d = 32;
  std::vector<float> x(n * d);
  uint64_t state = seed;
  auto next = [&]() {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return int((state >> 33) % 201) - 100;
  };
  for (size_t i = 0; i < n; ++i) {
    int f[4];
    for (auto& v : f) v = next();
    for (size_t j = 0; j < d; ++j) {
      int v = next() / 10;
      for (int r = 0; r < 4; ++r) v += f[r] * (int((j * 7 + size_t(r) * 13) % 5) - 2);
      x[i * d + j] = float(v) / 64.0f;
    }
  }
  return x;
}

// A pca index from before the shared step has a step per component: it keeps projecting nodes
// and queries in float and walking with the float kernel (projecting its queries through the
// int8 components, as new files do, would not match its nodes), finds every stored point, encodes
// new points as its old ones, and is written back unchanged.
TEST_F(FormatFixtureTest, PcaIndexWithAStepPerComponentLoadsAndSearches) {
  const size_t d = 32, n = 1200;
  const std::vector<float> x = PcaFixtureVectors(n, 12345);
  const fs::path path = fs::path(FATHOM_FIXTURES_DIR) / "index_v2" / "hnsw8_sq8_pca8.fathom";
  auto loaded = Index::Load(path.string());
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  Index& index = **loaded;
  auto* hnsw = dynamic_cast<HnswIndex*>(&index);
  ASSERT_NE(hnsw, nullptr);
  EXPECT_TRUE(hnsw->pca_ready());
  EXPECT_FALSE(hnsw->pca_int_walk());
  ASSERT_EQ(index.size(), n);
  auto found_itself = [&](const std::vector<float>& v, label_t first) {
    size_t found = 0;
    for (size_t i = 0; i < v.size() / d; ++i) {
      float dist;
      label_t label;
      SearchParams params;
      params.ef = 32;
      EXPECT_TRUE(index.Search(1, &v[i * d], 1, &dist, &label, params).ok());
      found += label == first + label_t(i) && dist == 0.0f;
    }
    return found;
  };
  EXPECT_EQ(found_itself(x, 0), n);  // (1,200 of 1,200 with the code that wrote the file)
  const std::string again = (tmp_ / "again.fathom").string();
  ASSERT_TRUE(index.Save(again).ok());
  std::ifstream a(path, std::ios::binary), b(again, std::ios::binary);
  EXPECT_TRUE(
      std::equal(std::istreambuf_iterator<char>(a), {}, std::istreambuf_iterator<char>(b), {}));
  // New points after the load are projected as the file's nodes were.
  const std::vector<float> more = PcaFixtureVectors(200, 999);
  std::vector<label_t> labels(200);
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = label_t(n + i);
  ASSERT_TRUE(index.Add(labels.size(), more.data(), labels.data()).ok());
  EXPECT_GE(found_itself(more, label_t(n)), 196u);
  EXPECT_GE(found_itself(x, 0), n - 6);
}

TEST_F(FormatFixtureTest, DatabaseVersion1Opens) {
  const std::string dir = Copy("database_v1");
  {
    auto db = Database::Open(dir);
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    auto c = (*db)->GetCollection("golden");
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    ExpectGolden(**c);
    // Format 2 writes (vectors apart from the record) beside format-1 records (inline vectors).
    auto old = std::move((*c)->Get({PointId(uint64_t{3})})).value();
    Record fresh;
    fresh.id = uint64_t{1000};
    fresh.vectors[""] = old[0]->vectors.at("");
    fresh.vectors[""][0] += 1.0f;
    fresh.payload = R"({"label":9})";
    ASSERT_TRUE((*c)->Upsert({fresh}).ok());
    ASSERT_TRUE((*c)->Snapshot((tmp_ / "mixed").string()).ok());
  }
  // Rebuilt from the records alone (no checkpoint): both kinds give their vectors.
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.path().extension() == ".fathom") fs::remove(e.path());
  }
  for (const std::string& source : {std::string("reopened"), std::string("restored")}) {
    SCOPED_TRACE(source);
    auto db = std::move(Database::Open(source == "reopened" ? dir : (tmp_ / "restored_db").string())).value();
    std::shared_ptr<Collection> c;
    if (source == "reopened") {
      c = std::move(db->GetCollection("golden")).value();
    } else {
      c = std::move(db->RestoreSnapshot((tmp_ / "mixed").string(), "golden")).value();
    }
    ExpectGolden(*c, 21);
    auto got = std::move(c->Get({PointId(uint64_t{1000})})).value();
    ASSERT_TRUE(got[0].has_value());
    SearchRequest req;
    req.queries = got[0]->vectors.at("");
    req.k = 1;
    auto hits = std::move(c->Search(req)).value();
    ASSERT_EQ(hits[0].size(), 1u);
    EXPECT_EQ(hits[0][0].id, PointId(uint64_t{1000}));
  }
}

TEST_F(FormatFixtureTest, SnapshotsOfEveryVersionRestore) {
  auto db = std::move(Database::Open((tmp_ / "db").string())).value();
  for (const char* version : {"snapshot_v0", "snapshot_v1"}) {
    SCOPED_TRACE(version);
    auto c = db->RestoreSnapshot(Copy(version), std::string("golden_") + version);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    ExpectGolden(**c);
  }
}

TEST_F(FormatFixtureTest, FutureVersionsAreRefusedClearly) {
  // A snapshot claiming format version 99.
  const std::string snap = Copy("snapshot_v1");
  {
    std::fstream f(snap + "/records.bin", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(8);
    const uint32_t v = 99;
    f.write(reinterpret_cast<const char*>(&v), 4);
  }
  auto db = std::move(Database::Open((tmp_ / "db").string())).value();
  auto restored = db->RestoreSnapshot(snap, "future");
  ASSERT_FALSE(restored.ok());
  // The checksum is checked first: a flipped version byte is corruption, not a version.
  EXPECT_TRUE(restored.status().IsCorruption()) << restored.status().ToString();

  // A well-formed snapshot of version 99 (checksum recomputed) is refused by version.
  std::ifstream in(snap + "/records.bin", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  bytes.resize(bytes.size() - 4);
  const uint32_t crc = Crc32(bytes);
  bytes.append(reinterpret_cast<const char*>(&crc), 4);
  std::ofstream(snap + "/records.bin", std::ios::binary | std::ios::trunc) << bytes;
  restored = db->RestoreSnapshot(snap, "future");
  ASSERT_FALSE(restored.ok());
  EXPECT_EQ(restored.status().code(), Status::Code::kNotSupported) << restored.status().ToString();
  EXPECT_NE(restored.status().message().find("format version 99; this build reads versions 0 to 1"),
            std::string::npos)
      << restored.status().ToString();
  EXPECT_FALSE(db->GetCollection("future").ok());
}

TEST_F(FormatFixtureTest, FutureDatabaseVersionIsRefusedClearly) {
  const std::string dir = Copy("database_v1");
  {
    auto kv = std::move(KvStore::Open(dir + "/store", true)).value();
    KvStore::Batch batch(*kv);
    std::string v;
    AppendBigEndian32(&v, 7);
    batch.Put(Cf::kMeta, "format_version", v);
    ASSERT_TRUE(kv->Write(batch).ok());
  }
  auto db = Database::Open(dir);
  ASSERT_FALSE(db.ok());
  EXPECT_EQ(db.status().code(), Status::Code::kNotSupported) << db.status().ToString();
  EXPECT_NE(db.status().message().find("has format version 7; this build reads versions 1 to 2"), std::string::npos)
      << db.status().ToString();
}

TEST_F(FormatFixtureTest, CorruptSnapshotIsRejected) {
  const std::string snap = Copy("snapshot_v1");
  {
    std::fstream f(snap + "/records.bin", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(40);
    f.put('\x7f');
  }
  auto db = std::move(Database::Open((tmp_ / "db").string())).value();
  auto restored = db->RestoreSnapshot(snap, "corrupt");
  ASSERT_FALSE(restored.ok());
  EXPECT_TRUE(restored.status().IsCorruption()) << restored.status().ToString();
  EXPECT_NE(restored.status().message().find("checksum mismatch"), std::string::npos);
  EXPECT_FALSE(db->GetCollection("corrupt").ok());
}

}  // namespace
}  // namespace fathom
