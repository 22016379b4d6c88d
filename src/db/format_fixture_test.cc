// Files written by earlier versions open in this one; files from a future version are refused
// with a clear error. The fixtures in tests/fixtures/ are small, committed, and never rewritten:
//   database_v1/   a database directory from before the format_version key existed
//   snapshot_v0/   a snapshot from before records.bin had a magic and version
//   snapshot_v1/   a snapshot of the current format
// All hold collection 'golden' (4-d cosine, HNSW16, 20 points of tests/fixtures/points.jsonl).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "fathom/database.h"
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
