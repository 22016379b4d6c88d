#include "fathom/database.h"

#include <gtest/gtest.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "db/recall_monitor.h"
#include "index/test_data.h"

namespace fathom {
namespace {
namespace fs = std::filesystem;

// Polls `done` for up to 30 s (background work such as checkpoints); true once it holds.
template <class F>
bool WaitUntil(F done) {
  for (int i = 0; i < 3000; ++i) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return done();
}

// A file system whose log syncs (RocksDB's *.log files) wait while the gate is closed and are
// counted: a test holds one commit inside its fsync while other writers queue behind it.
class GatedLogFs final : public rocksdb::FileSystemWrapper {
 public:
  explicit GatedLogFs(std::shared_ptr<rocksdb::FileSystem> base) : rocksdb::FileSystemWrapper(std::move(base)) {}
  const char* Name() const override { return "GatedLogFs"; }
  void Close() { std::lock_guard l(mu_); open_ = false; }
  void Open() {
    std::lock_guard l(mu_);
    open_ = true;
    cv_.notify_all();
  }
  int waiting() const { std::lock_guard l(mu_); return waiting_; }
  int syncs() const { std::lock_guard l(mu_); return syncs_; }

  rocksdb::IOStatus NewWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                    std::unique_ptr<rocksdb::FSWritableFile>* r,
                                    rocksdb::IODebugContext* d) override {
    return Gated(f, target()->NewWritableFile(f, o, r, d), r);
  }
  rocksdb::IOStatus ReopenWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                       std::unique_ptr<rocksdb::FSWritableFile>* r,
                                       rocksdb::IODebugContext* d) override {
    return Gated(f, target()->ReopenWritableFile(f, o, r, d), r);
  }

 private:
  class File final : public rocksdb::FSWritableFileOwnerWrapper {
   public:
    File(std::unique_ptr<rocksdb::FSWritableFile> f, GatedLogFs* fs)
        : rocksdb::FSWritableFileOwnerWrapper(std::move(f)), fs_(fs) {}
    rocksdb::IOStatus Sync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* d) override {
      fs_->Pass();
      return target()->Sync(o, d);
    }
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* d) override {
      fs_->Pass();
      return target()->Fsync(o, d);
    }

   private:
    GatedLogFs* fs_;
  };
  // Wraps the log files (*.log) that `s` opened.
  rocksdb::IOStatus Gated(const std::string& f, rocksdb::IOStatus s, std::unique_ptr<rocksdb::FSWritableFile>* r) {
    if (s.ok() && f.ends_with(".log")) *r = std::make_unique<File>(std::move(*r), this);
    return s;
  }
  void Pass() {
    std::unique_lock l(mu_);
    ++syncs_;
    ++waiting_;
    cv_.wait(l, [&] { return open_; });
    --waiting_;
  }
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = true;
  int waiting_ = 0;
  int syncs_ = 0;
};

// Fsync durability on a GatedLogFs; *env owns the environment the options point to.
DatabaseOptions GatedOptions(const std::shared_ptr<GatedLogFs>& fs, std::unique_ptr<rocksdb::Env>* env) {
  *env = rocksdb::NewCompositeEnv(fs);
  DatabaseOptions options;
  options.durability = Durability::kFsync;
  options.env = env->get();
  return options;
}

// A crashed process's files: `from` copied as it is while its background work (RocksDB's
// compactions, checkpoints) may still create and delete files; one deleted while the copy runs
// is left out, as if it had gone just before the crash (fs::copy would throw instead).
void CopyLiveTree(const std::string& from, const std::string& to) {
  std::error_code ec;
  fs::create_directories(to, ec);
  for (auto it = fs::recursive_directory_iterator(from, fs::directory_options::skip_permission_denied, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const fs::path target = fs::path(to) / fs::relative(it->path(), from, ec);
    if (it->is_directory(ec)) {
      fs::create_directories(target, ec);
    } else {
      fs::copy_file(it->path(), target, fs::copy_options::overwrite_existing, ec);
    }
    ec.clear();  // a file that vanished meanwhile
  }
}

class DatabaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() /
            ("fathom_db_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::unique_ptr<Database> OpenDb(Durability durability = Durability::kBuffered) {
    DatabaseOptions options;
    options.durability = durability;
    auto db = Database::Open(dir_ + "/db", options);
    EXPECT_TRUE(db.ok()) << db.status().ToString();
    return std::move(db).value();
  }

  static CollectionSpec Spec(const std::string& name, size_t dim, const std::string& index = "HNSW16") {
    CollectionSpec spec;
    spec.name = name;
    spec.vectors.push_back({"", dim, Metric::kL2, index});
    spec.indexed_fields = {{"label", FieldType::kInteger}, {"color", FieldType::kKeyword}};
    return spec;
  }

  static std::vector<Record> Records(const testing::Dataset& data, size_t begin, size_t end) {
    std::vector<Record> out;
    for (size_t i = begin; i < end; ++i) {
      Record r;
      r.id = uint64_t(i);
      r.vectors[""] = std::vector<float>(data.base.begin() + i * data.dim,
                                         data.base.begin() + (i + 1) * data.dim);
      r.payload = "{\"label\": " + std::to_string(i % 1000) + ", \"color\": \"" +
                  (i % 2 ? "red" : "blue") + "\", \"i\": " + std::to_string(i) + "}";
      out.push_back(std::move(r));
    }
    return out;
  }

  // Point `id` (row `id` of `data`) is the first hit for its own vector.
  static void ExpectFoundByOwnVector(Collection& c, const testing::Dataset& data, uint64_t id) {
    SearchRequest req;
    req.queries.assign(data.base.begin() + id * data.dim, data.base.begin() + (id + 1) * data.dim);
    req.k = 1;
    req.ef = 200;
    auto hits = std::move(c.Search(req)).value();
    ASSERT_EQ(hits[0].size(), 1u);
    EXPECT_EQ(std::get<uint64_t>(hits[0][0].id), id);
  }

  std::string dir_;
};

TEST_F(DatabaseTest, UpsertGetSearchDeleteAndReopen) {
  auto data = testing::Clustered(2000, 20, 16, 10, 3);
  {
    auto db = OpenDb();
    auto c = db->CreateCollection(Spec("items", 16));
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    ASSERT_TRUE((*c)->Upsert(Records(data, 0, 2000)).ok());
    EXPECT_EQ((*c)->Count(), 2000u);
    // A string id next to integer ids.
    Record s;
    s.id = std::string("alpha");
    s.vectors[""] = std::vector<float>(16, 0.5f);
    s.payload = R"({"label": 7, "color": "green"})";
    ASSERT_TRUE((*c)->Upsert({s}).ok());
    auto deleted = (*c)->Delete({PointId{uint64_t{5}}, PointId{uint64_t{999999}}});
    ASSERT_TRUE(deleted.ok());
    EXPECT_EQ(*deleted, 1u);
    EXPECT_EQ(db->ListCollections(), std::vector<std::string>{"items"});
  }
  auto db = OpenDb();
  auto c = db->GetCollection("items");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ((*c)->Count(), 2000u);
  auto got = (*c)->Get({PointId{std::string("alpha")}, PointId{uint64_t{5}}, PointId{uint64_t{6}}});
  ASSERT_TRUE(got.ok());
  ASSERT_TRUE((*got)[0].has_value());
  EXPECT_EQ((*got)[0]->payload, R"({"color":"green","label":7})");
  EXPECT_EQ((*got)[0]->vectors.at("")[3], 0.5f);
  EXPECT_FALSE((*got)[1].has_value());
  ASSERT_TRUE((*got)[2].has_value());
  // "More like this": search with point 6's own vector finds point 6 first at distance 0.
  SearchRequest req;
  req.queries = (*got)[2]->vectors.at("");
  req.k = 5;
  req.filter = "color = \"blue\"";
  SearchStats stats;
  auto res = (*c)->Search(req, &stats);
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  ASSERT_FALSE((*res)[0].empty());
  EXPECT_EQ(std::get<uint64_t>((*res)[0][0].id), 6u);
  EXPECT_FLOAT_EQ((*res)[0][0].distance, 0.f);
  for (const auto& p : (*res)[0]) EXPECT_NE(p.payload.find("\"blue\""), std::string::npos);
  EXPECT_EQ(stats.allowed, 1000u);
  auto count = (*c)->CountByFilter(R"({"must": [{"key": "color", "match": {"value": "red"}}]})");
  ASSERT_TRUE(count.ok()) << count.status().ToString();
  EXPECT_EQ(*count, 999u);  // 1000 red minus deleted id 5
  auto removed = (*c)->DeleteByFilter("label < 10");
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(*removed, 20u);  // ids 0..9 and 1000..1009, minus 5, plus "alpha" (label 7)
  EXPECT_EQ((*c)->Count(), 1980u);
}

// Cluster replicas resume their shard's log from Collection::log_position: every kind of write
// must store its position with its data (also one that changes nothing), it must survive a
// reopen, a failed write must not advance it, and a dropped collection must not leave it behind.
TEST_F(DatabaseTest, LogPositionIsStoredWithEachWriteAndSurvivesReopen) {
  auto data = testing::Clustered(100, 5, 8, 10, 3);
  {
    auto db = OpenDb();
    auto c = std::move(db->CreateCollection(Spec("shard", 8))).value();
    EXPECT_EQ(c->log_position(), 0u);
    ASSERT_TRUE(c->Upsert(Records(data, 0, 50), 3).ok());
    EXPECT_EQ(c->log_position(), 3u);
    ASSERT_TRUE(c->Upsert(Records(data, 50, 60)).ok());  // no position: unchanged
    EXPECT_EQ(c->log_position(), 3u);
    auto none = c->Delete({PointId{uint64_t{424242}}}, 4);  // deletes nothing, still applied
    ASSERT_TRUE(none.ok());
    EXPECT_EQ(*none, 0u);
    EXPECT_EQ(c->log_position(), 4u);
    PayloadUpdate u;
    u.op = PayloadUpdate::Op::kSet;
    u.payload = R"({"seen": true})";
    u.filter = "label = 999";  // matches nothing
    ASSERT_TRUE(c->UpdatePayload(u, 5).ok());
    EXPECT_EQ(c->log_position(), 5u);
    ASSERT_TRUE(c->DeleteByFilter("label < 5", 6).ok());
    EXPECT_EQ(c->log_position(), 6u);
    ASSERT_TRUE(c->SkipLogPosition(7).ok());
    // A rejected write (wrong dimension) applies nothing and records nothing.
    Record bad;
    bad.id = uint64_t{1000};
    bad.vectors[""] = {1, 2, 3};
    EXPECT_EQ(c->Upsert({bad}, 8).code(), Status::Code::kInvalidArgument);
    EXPECT_EQ(c->log_position(), 7u);
    EXPECT_EQ(c->ValidateUpsert({bad}).code(), Status::Code::kInvalidArgument);
    EXPECT_TRUE(c->ValidateUpsert(Records(data, 0, 1)).ok());
    EXPECT_EQ(c->Count(), 55u);
  }
  {
    auto db = OpenDb();
    auto c = std::move(db->GetCollection("shard")).value();
    EXPECT_EQ(c->log_position(), 7u);
    EXPECT_EQ(c->Count(), 55u);
    ASSERT_TRUE(db->DropCollection("shard").ok());
    auto again = std::move(db->CreateCollection(Spec("shard", 8))).value();
    EXPECT_EQ(again->log_position(), 0u);
  }
}

// A cluster replica installed from a peer's snapshot must go on applying the log right after
// the snapshot's last entry: the snapshot carries log_position with the records it matches, and a
// restore keeps it (across a reopen too). A snapshot of a collection without one restores at 0.
TEST_F(DatabaseTest, SnapshotCarriesTheLogPosition) {
  auto data = testing::Clustered(100, 5, 8, 10, 3);
  {
  auto db = OpenDb();
  auto c = std::move(db->CreateCollection(Spec("replica", 8))).value();
  ASSERT_TRUE(c->Upsert(Records(data, 0, 40), 11).ok());
  ASSERT_TRUE(c->Delete({PointId{uint64_t{3}}}, 12).ok());
  auto plain = std::move(db->CreateCollection(Spec("plain", 8))).value();
  ASSERT_TRUE(plain->Upsert(Records(data, 0, 10)).ok());
  const std::string snap = dir_ + "/snap-replica", plain_snap = dir_ + "/snap-plain";
  ASSERT_TRUE(c->Snapshot(snap).ok());
  ASSERT_TRUE(plain->Snapshot(plain_snap).ok());
  ASSERT_TRUE(c->Upsert(Records(data, 40, 50), 13).ok());  // after the snapshot: not in it
  auto restored = db->RestoreSnapshot(snap, "copy");
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();
  EXPECT_EQ((*restored)->log_position(), 12u);
  EXPECT_EQ((*restored)->Count(), 39u);
  auto restored_plain = db->RestoreSnapshot(plain_snap, "plain_copy");
  ASSERT_TRUE(restored_plain.ok());
  EXPECT_EQ((*restored_plain)->log_position(), 0u);
  }
  auto again = OpenDb();
  EXPECT_EQ(std::move(again->GetCollection("copy")).value()->log_position(), 12u);
  EXPECT_EQ(std::move(again->GetCollection("replica")).value()->log_position(), 13u);
}

TEST_F(DatabaseTest, SnapshotIsOneMomentWhileWritesGoOn) {
  // Records stream from a read view after the write lock is let go: a snapshot taken while a
  // writer upserts must still be one moment, consistent with its index files and log position.
  // Entry p adds point p and sets point 0's payload to p, so a copy at position L holds points
  // 0..L exactly, point 0 says L, and its index finds every point it holds.
  auto data = testing::Clustered(2000, 5, 8, 10, 9);
  auto db = OpenDb();
  CollectionSpec spec = Spec("moving", 8);
  spec.indexed_fields.clear();
  auto c = std::move(db->CreateCollection(spec)).value();
  auto entry = [&](uint64_t p) {
    std::vector<Record> r = Records(data, p, p + 1);
    Record zero = Records(data, 0, 1)[0];
    zero.payload = R"({"p": )" + std::to_string(p) + "}";
    r.push_back(zero);
    return r;
  };
  ASSERT_TRUE(c->Upsert(entry(1), 1).ok());
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> written{1};
  std::thread writer([&] {
    for (uint64_t p = 2; p < 2000 && !stop.load(); ++p) {
      if (!c->Upsert(entry(p), p).ok()) break;
      written.store(p);
    }
  });
  for (int round = 0; round < 4; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    const std::string snap = dir_ + "/moving-" + std::to_string(round);
    ASSERT_TRUE(c->Snapshot(snap).ok());
    auto copy = db->RestoreSnapshot(snap, "copy" + std::to_string(round));
    ASSERT_TRUE(copy.ok()) << copy.status().ToString();
    const uint64_t at = (*copy)->log_position();
    ASSERT_GE(at, 1u);
    EXPECT_EQ((*copy)->Count(), at + 1);
    auto zero = (*copy)->Get({PointId{uint64_t{0}}}, false);
    ASSERT_TRUE(zero.ok() && (*zero)[0].has_value());
    EXPECT_EQ((*zero)[0]->payload, R"({"p":)" + std::to_string(at) + "}");
    SearchRequest last;
    last.queries.assign(data.base.begin() + at * 8, data.base.begin() + (at + 1) * 8);
    last.k = 1;
    auto found = (*copy)->Search(last);
    ASSERT_TRUE(found.ok());
    ASSERT_EQ((*found)[0].size(), 1u);
    EXPECT_EQ((*found)[0][0].id, PointId{at});  // its index holds the last point it has
    auto beyond = (*copy)->Get({PointId{at + 1}}, false);
    ASSERT_TRUE(beyond.ok());
    EXPECT_FALSE((*beyond)[0].has_value());  // and no record of a later entry
  }
  stop.store(true);
  writer.join();
  EXPECT_GT(written.load(), 1u);
}

TEST_F(DatabaseTest, MetadataIsKeptReplacedAndCarriedBySnapshots) {
  const std::string model = R"({"model":{"dimension":8,"name":"resnet50","version":"2"}})";
  {
    auto db = OpenDb();
    CollectionSpec spec = Spec("described", 8);
    spec.metadata = model;
    auto c = std::move(db->CreateCollection(spec)).value();
    EXPECT_EQ(c->metadata(), model);
    CollectionSpec plain = Spec("plain", 8);
    EXPECT_EQ(std::move(db->CreateCollection(plain)).value()->metadata(), "{}");
    // Not an object, not JSON, too large: refused, nothing created or changed.
    for (const std::string bad : {"[1]", "{", "\"text\""}) {
      CollectionSpec wrong = Spec("wrong", 8);
      wrong.metadata = bad;
      EXPECT_EQ(db->CreateCollection(wrong).status().code(), Status::Code::kInvalidArgument) << bad;
      EXPECT_EQ(db->UpdateCollectionMetadata("described", bad).status().code(), Status::Code::kInvalidArgument) << bad;
    }
    const std::string huge = R"({"x":")" + std::string(CollectionSpec::kMaxMetadataBytes, 'a') + R"("})";
    EXPECT_EQ(db->UpdateCollectionMetadata("described", huge).status().code(), Status::Code::kInvalidArgument);
    EXPECT_EQ(db->UpdateCollectionMetadata("missing", "{}").status().code(), Status::Code::kNotFound);
    EXPECT_FALSE(db->GetCollection("wrong").ok());
    EXPECT_EQ(c->metadata(), model);
  }
  auto db = OpenDb();
  auto c = std::move(db->GetCollection("described")).value();
  EXPECT_EQ(c->metadata(), model);
  const std::string v3 = R"({"image_field":"thumb","model":{"name":"resnet50","version":"3"}})";
  ASSERT_TRUE(db->UpdateCollectionMetadata("described", v3).ok());
  EXPECT_EQ(c->metadata(), v3);
  ASSERT_TRUE(c->Snapshot(dir_ + "/snap").ok());
  auto copy = std::move(db->RestoreSnapshot(dir_ + "/snap", "restored")).value();
  EXPECT_EQ(copy->metadata(), v3);
  c.reset();
  copy.reset();
  db.reset();
  auto reopened = OpenDb();
  EXPECT_EQ(std::move(reopened->GetCollection("described")).value()->metadata(), v3);
  EXPECT_EQ(std::move(reopened->GetCollection("restored")).value()->metadata(), v3);
  EXPECT_EQ(std::move(reopened->GetCollection("plain")).value()->metadata(), "{}");
}

// Online recall monitoring: the estimate from re-running sampled searches exactly agrees with
// the true recall (from the independent brute-force oracle) over the same searches, falls when
// the index is made to answer badly, and survives a clean close.
TEST_F(DatabaseTest, RecallEstimateFollowsTheTrueRecall) {
  auto data = testing::Clustered(4000, 1000, 32, 20, 11);
  const size_t k = 10;
  const auto truth = testing::BruteForce(data, k, Metric::kL2);
  DatabaseOptions options;
  options.durability = Durability::kBuffered;
  options.recall_sample_rate = 0.1;  // every 10th search
  options.recall_cpu_share = 1.0;    // never rests: the test waits for it, not for time
  double degraded = 0;
  {
    auto db = std::move(Database::Open(dir_ + "/db", options)).value();
    auto c = std::move(db->CreateCollection(Spec("watched", 32))).value();
    ASSERT_TRUE(c->Upsert(Records(data, 0, data.n())).ok());
    EXPECT_EQ(c->recall_estimate().samples, 0u);
    std::mt19937 rng(5);
    uint64_t searches = 0;
    // Runs `n` searches at `ef` on random queries; returns their true mean recall@k.
    auto run = [&](size_t n, int ef) {
      double sum = 0;
      for (size_t i = 0; i < n; ++i) {
        const size_t q = rng() % data.nq();
        SearchRequest req;
        req.queries.assign(data.queries.begin() + q * data.dim, data.queries.begin() + (q + 1) * data.dim);
        req.k = k;
        req.ef = ef;
        req.with_payload = false;
        auto hits = std::move(c->Search(req)).value();
        size_t found = 0;
        for (const ScoredPoint& p : hits[0]) {
          found += std::count(truth[q].begin(), truth[q].end(), label_t(std::get<uint64_t>(p.id)));
        }
        sum += double(found) / k;
      }
      searches += n;
      // Every sampled search is re-run or dropped; wait for the thread to get through them.
      for (int wait = 0; wait < 6000; ++wait) {
        const RecallEstimate e = c->recall_estimate();
        if (e.total_samples + e.dropped >= searches / 10) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      return sum / n;
    };
    const double good = run(10000, 128);
    RecallEstimate e = c->recall_estimate();
    EXPECT_EQ(e.total_samples + e.dropped, 1000u);
    EXPECT_GE(e.samples, 500u);
    EXPECT_NEAR(e.recall, good, 0.02) << "true recall " << good;
    EXPECT_FALSE(e.from_store);
    // A tiny ef: the same index answers worse, and the estimate (its window now all new
    // samples) says so.
    // (Compared with the true recall of the searches the window's samples come from: against
    // all 40,000 searches, the one sample in ten of the last 20,000 was 0.0214 off once.)
    run(RecallMonitor::kWindow * 10, 10);
    degraded = run(RecallMonitor::kWindow * 10, 10);
    ASSERT_LT(degraded, good - 0.05) << "ef=10 should be visibly worse";
    e = c->recall_estimate();
    EXPECT_EQ(e.samples, RecallMonitor::kWindow - 0u) << "dropped " << e.dropped;
    EXPECT_NEAR(e.recall, degraded, 0.02) << "true recall " << degraded;
    // Exact searches are the reference, never sampled.
    SearchRequest exact;
    exact.queries.assign(data.queries.begin(), data.queries.begin() + data.dim);
    exact.exact = true;
    const uint64_t before = c->recall_estimate().total_samples + c->recall_estimate().dropped;
    for (int i = 0; i < 50; ++i) ASSERT_TRUE(c->Search(exact).ok());
    EXPECT_EQ(c->recall_estimate().total_samples + c->recall_estimate().dropped, before);
    degraded = c->recall_estimate().recall;
  }
  auto db = std::move(Database::Open(dir_ + "/db", options)).value();
  auto c = std::move(db->GetCollection("watched")).value();
  const RecallEstimate kept = c->recall_estimate();
  EXPECT_TRUE(kept.from_store);
  EXPECT_EQ(kept.samples, RecallMonitor::kWindow);
  EXPECT_DOUBLE_EQ(kept.recall, degraded);
  EXPECT_EQ(kept.total_samples, 0u);
}

// The monitor's brute force walks the points in chunks of 65,536 slots (locks released between
// chunks): over several chunks, with and without a filter, an exact index must score 1.0.
TEST_F(DatabaseTest, RecallMonitorMergesChunksExactly) {
  auto data = testing::Clustered(150000, 40, 4, 50, 3);
  DatabaseOptions options;
  options.durability = Durability::kBuffered;
  options.recall_sample_rate = 1;
  options.recall_cpu_share = 1;
  auto db = std::move(Database::Open(dir_ + "/db", options)).value();
  auto c = std::move(db->CreateCollection(Spec("chunks", 4, "Flat"))).value();
  for (size_t begin = 0; begin < data.n(); begin += 10000) {
    ASSERT_TRUE(c->Upsert(Records(data, begin, std::min(data.n(), begin + 10000))).ok());
  }
  // Holes in the slot space: the chunks skip deleted slots.
  std::vector<PointId> gone;
  for (uint64_t i = 0; i < data.n(); i += 7) gone.push_back(i);
  ASSERT_TRUE(c->Delete(gone).ok());
  for (size_t q = 0; q < data.nq(); ++q) {
    SearchRequest req;
    req.queries.assign(data.queries.begin() + q * data.dim, data.queries.begin() + (q + 1) * data.dim);
    req.k = 10;
    req.with_payload = false;
    if (q % 2) req.filter = "label < 300 AND color = 'red'";
    ASSERT_TRUE(c->Search(req).ok());
  }
  RecallEstimate e;
  for (int wait = 0; wait < 6000; ++wait) {
    e = c->recall_estimate();
    if (e.total_samples + e.dropped >= data.nq()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(e.total_samples + e.dropped, data.nq());
  ASSERT_GT(e.samples, 0u);
  EXPECT_EQ(e.recall, 1.0) << e.samples << " samples";
}

// Tune: the setting it picks on held-out points of the collection reaches the target on fresh
// queries (the dataset's own query set, never stored) within 0.01, on clustered data and on
// Fashion-MNIST, for HNSW (ef) and IVF (nprobe); a higher target costs a higher setting; the
// default is used by searches that leave the knob at 0 and is kept across a reopen.
TEST_F(DatabaseTest, TuneMeetsTheTargetOnFreshQueries) {
  struct Case {
    std::string name;
    testing::Dataset data;
    std::string index;
    std::string knob;
    std::vector<double> targets;
  };
  std::vector<Case> cases;
  cases.push_back({"clustered", testing::Clustered(10000, 500, 32, 50, 21), "HNSW16", "ef", {0.9, 0.95, 0.99}});
  cases.push_back({"clustered_ivf", testing::Clustered(10000, 500, 32, 50, 22), "IVF64,Flat", "nprobe", {0.95}});
  testing::Dataset fashion = testing::FashionMnist(10000, 500);
  if (fashion.n() > 0) cases.push_back({"fashion", std::move(fashion), "HNSW16", "ef", {0.95, 0.99}});
  ASSERT_GE(cases.size(), 3u) << "Fashion-MNIST is missing (apt-get install dataset-fashion-mnist)";
  auto fresh_recall = [](Collection& c, const testing::Dataset& data, const std::vector<std::vector<label_t>>& truth) {
    SearchRequest req;
    req.queries = data.queries;
    req.k = 10;
    req.with_payload = false;
    auto hits = std::move(c.Search(req)).value();
    size_t found = 0;
    for (size_t q = 0; q < hits.size(); ++q) {
      for (const ScoredPoint& p : hits[q]) {
        found += std::count(truth[q].begin(), truth[q].end(), label_t(std::get<uint64_t>(p.id)));
      }
    }
    return double(found) / double(10 * hits.size());
  };
  std::map<std::string, SearchDefaults> kept;
  {
    auto db = OpenDb();
    for (Case& test : cases) {
      SCOPED_TRACE(test.name);
      CollectionSpec spec = Spec(test.name, test.data.dim, test.index);
      auto c = std::move(db->CreateCollection(spec)).value();
      for (size_t begin = 0; begin < test.data.n(); begin += 5000) {
        ASSERT_TRUE(c->Upsert(Records(test.data, begin, std::min(test.data.n(), begin + 5000))).ok());
      }
      const auto truth = testing::BruteForce(test.data, 10, Metric::kL2);
      int previous = 0;
      for (double target : test.targets) {
        TuneRequest request;
        request.target_recall = target;
        auto tuned = c->Tune(request);
        ASSERT_TRUE(tuned.ok()) << tuned.status().ToString();
        EXPECT_EQ(tuned->knob, test.knob);
        EXPECT_TRUE(tuned->reached);
        EXPECT_GE(tuned->recall, target);
        EXPECT_EQ(tuned->queries, 500u);
        EXPECT_GE(tuned->value, previous) << "a higher target needs at least as much work";
        previous = tuned->value;
        const double fresh = fresh_recall(*c, test.data, truth);
        EXPECT_GE(fresh, target - 0.01) << test.knob << "=" << tuned->value << " tuned to " << tuned->recall;
        const SearchDefaults d = c->search_defaults();
        EXPECT_EQ(test.knob == "ef" ? d.ef : d.nprobe, tuned->value);
        EXPECT_EQ(d.target_recall, target);
      }
      kept[test.name] = c->search_defaults();
    }
    // Bad requests say what was expected.
    auto c = std::move(db->GetCollection("clustered")).value();
    TuneRequest bad;
    bad.target_recall = 1.5;
    EXPECT_EQ(c->Tune(bad).status().code(), Status::Code::kInvalidArgument);
    bad = TuneRequest{};
    bad.vector = "nope";
    EXPECT_EQ(c->Tune(bad).status().code(), Status::Code::kInvalidArgument);
    bad = TuneRequest{};
    bad.queries = {1, 2, 3};
    EXPECT_EQ(c->Tune(bad).status().code(), Status::Code::kInvalidArgument);
    // An exact index has nothing to tune.
    auto flat = std::move(db->CreateCollection(Spec("flat", 32, "Flat"))).value();
    ASSERT_TRUE(flat->Upsert(Records(cases[0].data, 0, 100)).ok());
    auto exact = flat->Tune(TuneRequest{});
    ASSERT_TRUE(exact.ok());
    EXPECT_EQ(exact->knob, "");
    EXPECT_EQ(exact->recall, 1.0);
  }
  auto db = OpenDb();
  for (const auto& [name, d] : kept) {
    auto c = std::move(db->GetCollection(name)).value();
    const SearchDefaults again = c->search_defaults();
    EXPECT_EQ(again.ef, d.ef) << name;
    EXPECT_EQ(again.nprobe, d.nprobe) << name;
    EXPECT_GT(again.target_recall, 0.9) << name;
  }
  // A snapshot keeps them: the restored collection searches with the same defaults.
  {
    auto original = std::move(db->GetCollection("clustered")).value();
    ASSERT_TRUE(original->Snapshot(dir_ + "/tuned_snap").ok());
    auto restored = db->RestoreSnapshot(dir_ + "/tuned_snap", "clustered_copy");
    ASSERT_TRUE(restored.ok()) << restored.status().ToString();
    EXPECT_EQ((*restored)->search_defaults().ef, kept["clustered"].ef);
    EXPECT_EQ((*restored)->search_defaults().target_recall, kept["clustered"].target_recall);
    // Measuring without storing: one setting, the defaults untouched.
    TuneRequest measure;
    measure.values = {256};
    measure.store = false;
    measure.sample = 50;
    auto measured = original->Tune(measure);
    ASSERT_TRUE(measured.ok()) << measured.status().ToString();
    EXPECT_EQ(measured->value, 256);
    ASSERT_EQ(measured->tried.size(), 1u);
    EXPECT_GE(measured->recall, 0.9);
    EXPECT_EQ(original->search_defaults().ef, kept["clustered"].ef);
    measure.values = {64, 16};
    EXPECT_EQ(original->Tune(measure).status().code(), Status::Code::kInvalidArgument);
    // Reset forgets them, durably; a second reset has nothing to forget.
    EXPECT_TRUE(original->ResetSearchDefaults().value());
    EXPECT_FALSE(original->ResetSearchDefaults().value());
    EXPECT_EQ(original->search_defaults().ef, 0);
    EXPECT_EQ(original->ResetSearchDefaults("nope").status().code(), Status::Code::kInvalidArgument);
  }
  // Stored as given (a cluster gives every replica the setting tuned across its shards), durably.
  {
    auto flat = std::move(db->GetCollection("flat")).value();
    SearchDefaults given;
    given.ef = 77;
    given.target_recall = 0.97;
    given.recall = 0.975;
    ASSERT_TRUE(flat->StoreSearchDefaults("", given).ok());
    EXPECT_EQ(flat->search_defaults().ef, 77);
    EXPECT_EQ(flat->StoreSearchDefaults("nope", given).code(), Status::Code::kInvalidArgument);
    given.target_recall = 1.5;
    EXPECT_EQ(flat->StoreSearchDefaults("", given).code(), Status::Code::kInvalidArgument);
  }
  db.reset();
  db = OpenDb();
  EXPECT_EQ(std::move(db->GetCollection("flat")).value()->search_defaults().ef, 77);
  EXPECT_EQ(std::move(db->GetCollection("flat")).value()->search_defaults().recall, 0.975);
  ASSERT_TRUE(std::move(db->GetCollection("flat")).value()->StoreSearchDefaults("", SearchDefaults{}).ok());
  EXPECT_EQ(std::move(db->GetCollection("flat")).value()->search_defaults().target_recall, 0.0);
  EXPECT_EQ(std::move(db->GetCollection("clustered")).value()->search_defaults().target_recall, 0.0);
  EXPECT_EQ(std::move(db->GetCollection("clustered_copy")).value()->search_defaults().ef, kept["clustered"].ef);
  // An untuned collection's snapshot has no tuned.json, and restores untuned.
  auto flat = std::move(db->GetCollection("flat")).value();
  ASSERT_TRUE(flat->Snapshot(dir_ + "/flat_snap").ok());
  EXPECT_FALSE(fs::exists(dir_ + "/flat_snap/tuned.json"));
  EXPECT_EQ(std::move(db->RestoreSnapshot(dir_ + "/flat_snap", "flat_copy")).value()->search_defaults().target_recall, 0.0);
}

TEST_F(DatabaseTest, BadInputIsRejectedWithPreciseErrorsAndNothingIsWritten) {
  auto db = OpenDb();
  auto c = std::move(db->CreateCollection(Spec("items", 4))).value();
  Record good;
  good.id = uint64_t{1};
  good.vectors[""] = {1, 2, 3, 4};
  good.payload = R"({"label": 1})";
  auto expect_error = [&](std::vector<Record> batch, const std::string& message) {
    Status s = c->Upsert(batch);
    EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
    EXPECT_EQ(s.message(), message);
    EXPECT_EQ(c->Count(), 0u);
  };
  Record wrong_dim = good;
  wrong_dim.id = uint64_t{2};
  wrong_dim.vectors[""] = {1, 2, 3};
  expect_error({good, wrong_dim}, "point 2: the vector has 3 dimensions, collection 'items' expects 4");
  Record nan = good;
  nan.vectors[""][2] = NAN;
  expect_error({nan}, "point 1: the vector has a non-finite value (nan) at dimension 2");
  // Regression (issue 9.11): finite values whose squared norm overflows float32 made distances
  // infinite (hits with "score": null, others missing).
  Record huge = good;
  huge.vectors[""] = {1, 3e38f, 2, 0};
  expect_error({huge}, "point 1: the vector has squared norm 9e+76, above the limit of 8.51e+37 that keeps "
                       "distances finite in float32 (largest value 3e+38 at dimension 1): scale it down");
  // Regression (issue 9.12): payload values must have their indexed field's type.
  Record text_label = good;
  text_label.payload = R"({"label": "abc"})";
  expect_error({text_label}, "point 1: payload field 'label' is indexed as integer, got \"abc\"");
  Record big_label = good;
  big_label.payload = R"({"label": 1180591620717411303424})";
  expect_error({big_label}, "point 1: payload field 'label' is indexed as integer, got 1.1805916207174113e+21 "
                            "(integers must be whole numbers from -2^63 to 2^63-1)");
  Record number_color = good;
  number_color.payload = R"({"color": ["red", 7]})";
  expect_error({number_color}, "point 1: payload field 'color' is indexed as keyword, got 7");
  expect_error({}, "upsert batch is empty");
  expect_error({good, good}, "point 1 appears more than once in the batch");
  Record array_payload = good;
  array_payload.payload = "[1, 2]";
  expect_error({array_payload}, "point 1: payload must be a JSON object, got array");
  Record broken_payload = good;
  broken_payload.payload = "{\"label\": ";
  expect_error({broken_payload}, "point 1: payload is not valid JSON");
  Record extra = good;
  extra.vectors["text"] = {1};
  expect_error({extra}, "point 1 has vector 'text', which collection 'items' does not define");

  auto missing = db->GetCollection("nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(missing.status().IsNotFound());
  EXPECT_EQ(missing.status().message(), "collection 'nope' does not exist");
  auto slash = db->CreateCollection(Spec("a/b", 4));
  ASSERT_FALSE(slash.ok());
  EXPECT_EQ(slash.status().message(), "collection name 'a/b' contains '/': use letters, digits, '_', '-' and '.'");
  auto dup = db->CreateCollection(Spec("items", 4));
  EXPECT_TRUE(dup.status().IsAlreadyExists());
  auto bad_index = db->CreateCollection(Spec("x", 4, "HNSX"));
  EXPECT_TRUE(bad_index.status().IsInvalidArgument());

  ASSERT_TRUE(c->Upsert({good}).ok());
  SearchRequest req;
  req.queries = {1, 2, 3, 4};
  req.filter = "label = \"one\"";
  auto res = c->Search(req);
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.status().message(), "filter compares field 'label' (integer) with string \"one\"");
  req.filter = "label = ";
  res = c->Search(req);
  ASSERT_FALSE(res.ok());
  EXPECT_NE(res.status().message().find("column"), std::string::npos) << res.status().message();
  req.filter = "";
  req.queries = {1, 2, 3};
  res = c->Search(req);
  EXPECT_EQ(res.status().message(), "query has 3 values, collection 'items' expects a multiple of 4");
  req.queries = {1, 2, 3, 4};
  req.k = 0;
  res = c->Search(req);
  EXPECT_EQ(res.status().message(), "k must be between 1 and 10000, got 0");
  EXPECT_EQ(c->Count(), 1u);
}

TEST_F(DatabaseTest, NamedVectorsAreSearchedByName) {
  auto db = OpenDb();
  CollectionSpec spec;
  spec.name = "media";
  spec.vectors = {{"image", 3, Metric::kL2, "Flat"}, {"text", 2, Metric::kCosine, "HNSW8"}};
  auto c = std::move(db->CreateCollection(spec)).value();
  std::vector<Record> batch;
  for (uint64_t i = 0; i < 50; ++i) {
    Record r;
    r.id = i;
    r.vectors["image"] = {float(i), 0, 0};
    r.vectors["text"] = {std::cos(i * 0.1f), std::sin(i * 0.1f)};
    batch.push_back(r);
  }
  ASSERT_TRUE(c->Upsert(batch).ok());
  SearchRequest req;
  req.vector = "image";
  req.queries = {20.2f, 0, 0};
  req.k = 1;
  EXPECT_EQ(std::get<uint64_t>((*c->Search(req))[0][0].id), 20u);
  req.vector = "text";
  req.queries = {std::cos(3.0f), std::sin(3.0f)};
  EXPECT_EQ(std::get<uint64_t>((*c->Search(req))[0][0].id), 30u);
  req.vector = "audio";
  EXPECT_EQ(c->Search(req).status().message(),
            "collection 'media' has no vector 'audio': its vectors are 'image', 'text'");
  req.vector = "";
  EXPECT_EQ(c->Search(req).status().message(),
            "collection 'media' has named vectors 'image', 'text': say which one to search");
}

// Filtered search keeps recall@10 >= 0.95 against exact filtered search from 90% down to 0.1%.
TEST_F(DatabaseTest, FilteredRecallAtEverySelectivity) {
  auto data = testing::Clustered(20000, 50, 24, 40, 11);
  auto db = OpenDb();
  auto c = std::move(db->CreateCollection(Spec("items", 24))).value();
  for (size_t b = 0; b < data.n(); b += 5000) ASSERT_TRUE(c->Upsert(Records(data, b, b + 5000)).ok());
  for (int cut : {900, 100, 10, 1}) {  // label < cut: 90%, 10%, 1%, 0.1%
    std::vector<bool> alive(data.n());
    for (size_t i = 0; i < data.n(); ++i) alive[i] = int(i % 1000) < cut;
    auto truth = testing::BruteForce(data, 10, Metric::kL2, &alive);
    SearchRequest req;
    req.queries = data.queries;
    req.k = 10;
    req.ef = 64;
    req.with_payload = false;
    req.filter = "label < " + std::to_string(cut);
    SearchStats stats;
    auto res = c->Search(req, &stats);
    ASSERT_TRUE(res.ok()) << res.status().ToString();
    std::vector<label_t> found(data.nq() * 10, kNoLabel);
    for (size_t q = 0; q < data.nq(); ++q) {
      for (size_t i = 0; i < (*res)[q].size(); ++i) {
        found[q * 10 + i] = label_t(std::get<uint64_t>((*res)[q][i].id));
        EXPECT_TRUE(alive[found[q * 10 + i]]);
      }
    }
    double recall = testing::Recall(truth, found, 10);
    EXPECT_GE(recall, 0.95) << "cut=" << cut << " strategy=" << stats.strategy;
    EXPECT_EQ(stats.allowed, data.n() * cut / 1000);
  }
}

TEST_F(DatabaseTest, SecondOpenOfTheSameDirectoryIsRefused) {
  auto db = OpenDb();
  auto again = Database::Open(dir_ + "/db");
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), Status::Code::kFailedPrecondition);
  EXPECT_NE(again.status().message().find("' is already open (by this or another process)"),
            std::string::npos)
      << again.status().message();
}

// Filter plans are cached by filter text: every change to the records (insert, payload
// replaced, delete) must be seen by the next search with the same filter, for both strategies.
TEST_F(DatabaseTest, RepeatedFiltersSeeEveryChange) {
  auto data = testing::Clustered(10000, 1, 24, 40, 12);
  auto db = OpenDb();
  auto c = std::move(db->CreateCollection(Spec("items", 24))).value();
  ASSERT_TRUE(c->Upsert(Records(data, 0, data.n())).ok());
  std::vector<float> query(data.queries.begin(), data.queries.begin() + 24);
  auto top = [&](const std::string& filter, std::string* strategy) {
    SearchRequest req;
    req.queries = query;
    req.k = 1;
    req.ef = 64;
    req.with_payload = false;
    req.filter = filter;
    SearchStats stats;
    auto res = c->Search(req, &stats);
    EXPECT_TRUE(res.ok()) << res.status().ToString();
    *strategy = stats.strategy;
    return res.ok() && !(*res)[0].empty() ? std::get<uint64_t>((*res)[0][0].id) : ~uint64_t{0};
  };
  const uint64_t probe = 1000000;
  Record r;
  r.id = probe;
  r.vectors[""] = query;  // exactly at the query: the nearest whenever the filter allows it
  for (const std::string filter : {"label = 7", "label >= 100"}) {  // exact scan; graph walk
    std::string strategy, expected = filter == "label = 7" ? "exact-scan" : "graph+filter";
    EXPECT_NE(top(filter, &strategy), probe);  // cached before the probe exists
    EXPECT_EQ(strategy, expected);
    r.payload = filter == "label = 7" ? R"({"label": 7})" : R"({"label": 500})";
    ASSERT_TRUE(c->Upsert({r}).ok());
    EXPECT_EQ(top(filter, &strategy), probe) << filter << ": new point not seen";
    r.payload = R"({"label": 3})";
    ASSERT_TRUE(c->Upsert({r}).ok());
    EXPECT_NE(top(filter, &strategy), probe) << filter << ": replaced payload not seen";
    r.payload = filter == "label = 7" ? R"({"label": 7})" : R"({"label": 500})";
    ASSERT_TRUE(c->Upsert({r}).ok());
    EXPECT_EQ(top(filter, &strategy), probe);
    ASSERT_TRUE(c->Delete({PointId(probe)}).ok());
    EXPECT_NE(top(filter, &strategy), probe) << filter << ": deleted point returned";
  }
}

TEST_F(DatabaseTest, SnapshotThenRestoreGivesIdenticalResults) {
  auto data = testing::Clustered(3000, 30, 16, 10, 13);
  SearchRequest req;
  req.queries = data.queries;
  req.k = 10;
  std::vector<std::vector<ScoredPoint>> before;
  {
    auto db = OpenDb();
    auto c = std::move(db->CreateCollection(Spec("items", 16))).value();
    ASSERT_TRUE(c->Upsert(Records(data, 0, 3000)).ok());
    ASSERT_TRUE(c->Delete({PointId{uint64_t{7}}}).ok());
    before = std::move(c->Search(req)).value();
    ASSERT_TRUE(c->Snapshot(dir_ + "/snap").ok());
    Status again = c->Snapshot(dir_ + "/snap");
    EXPECT_TRUE(again.IsAlreadyExists());
  }
  ASSERT_TRUE(Database::Restore(dir_ + "/snap", dir_ + "/db2", "copy").ok());
  auto db2 = Database::Open(dir_ + "/db2");
  ASSERT_TRUE(db2.ok());
  auto c2 = std::move((*db2)->GetCollection("copy")).value();
  EXPECT_EQ(c2->Count(), 2999u);
  auto after = std::move(c2->Search(req)).value();
  ASSERT_EQ(before.size(), after.size());
  for (size_t q = 0; q < before.size(); ++q) {
    ASSERT_EQ(before[q].size(), after[q].size());
    for (size_t i = 0; i < before[q].size(); ++i) {
      EXPECT_EQ(before[q][i].id, after[q][i].id);
      EXPECT_EQ(before[q][i].distance, after[q][i].distance);
      EXPECT_EQ(before[q][i].payload, after[q][i].payload);
    }
  }
}

// A corrupt checkpoint is detected, skipped and the index rebuilt from the records.
TEST_F(DatabaseTest, CorruptCheckpointIsSkippedAndIndexRebuilt) {
  auto data = testing::Clustered(1000, 10, 8, 5, 17);
  {
    auto db = OpenDb();
    auto c = std::move(db->CreateCollection(Spec("items", 8))).value();
    ASSERT_TRUE(c->Upsert(Records(data, 0, 1000)).ok());
    ASSERT_TRUE(c->Checkpoint().ok());
  }
  size_t corrupted = 0;
  for (const auto& entry : fs::recursive_directory_iterator(dir_ + "/db/indexes")) {
    if (entry.path().extension() != ".fathom") continue;
    fs::resize_file(entry.path(), fs::file_size(entry.path()) / 2);
    ++corrupted;
  }
  ASSERT_EQ(corrupted, 1u);
  auto db = OpenDb();
  auto c = std::move(db->GetCollection("items")).value();
  EXPECT_EQ(c->Count(), 1000u);
  SearchRequest req;
  req.queries.assign(data.base.begin() + 42 * 8, data.base.begin() + 43 * 8);
  req.k = 1;
  EXPECT_EQ(std::get<uint64_t>((*c->Search(req))[0][0].id), 42u);
}

// Deleting and re-inserting half the points: recall within 0.01 of a fresh build, memory
// within 10% of it, slots reused.
TEST_F(DatabaseTest, ChurnKeepsRecallAndMemory) {
  auto data = testing::Clustered(10000, 100, 32, 40, 19);
  auto db = OpenDb();
  auto churned = std::move(db->CreateCollection(Spec("churned", 32))).value();
  auto fresh = std::move(db->CreateCollection(Spec("fresh", 32))).value();
  ASSERT_TRUE(churned->Upsert(Records(data, 0, 10000)).ok());
  std::vector<PointId> odd;
  for (uint64_t i = 1; i < 10000; i += 2) odd.push_back(i);
  ASSERT_EQ(*churned->Delete(odd), 5000u);
  // Housekeeping runs in the background; Optimize runs it now, so that the re-inserted points
  // reuse the freed nodes.
  ASSERT_TRUE(churned->Optimize().ok());
  std::vector<Record> again;
  for (auto& r : Records(data, 0, 10000)) {
    if (std::get<uint64_t>(r.id) % 2 == 1) again.push_back(std::move(r));
  }
  ASSERT_TRUE(churned->Upsert(again).ok());
  ASSERT_TRUE(fresh->Upsert(Records(data, 0, 10000)).ok());
  auto truth = testing::BruteForce(data, 10, Metric::kL2);
  auto recall = [&](Collection* c) {
    SearchRequest req;
    req.queries = data.queries;
    req.k = 10;
    req.ef = 64;
    req.with_payload = false;
    auto res = std::move(c->Search(req)).value();
    std::vector<label_t> found(data.nq() * 10, kNoLabel);
    for (size_t q = 0; q < data.nq(); ++q) {
      for (size_t i = 0; i < res[q].size(); ++i) found[q * 10 + i] = label_t(std::get<uint64_t>(res[q][i].id));
    }
    return testing::Recall(truth, found, 10);
  };
  double r_churned = recall(churned.get()), r_fresh = recall(fresh.get());
  EXPECT_GE(r_churned, r_fresh - 0.01) << "fresh " << r_fresh;
  EXPECT_LE(churned->memory_bytes(), fresh->memory_bytes() * 11 / 10)
      << "fresh " << fresh->memory_bytes();
}


// Regression (issue 9.1): upserting the only point again left the HNSW entry point on a
// tombstone and search answered [] forever, also after a restart (the graph was checkpointed).
TEST_F(DatabaseTest, UpsertingTheOnlyPointAgainKeepsItSearchable) {
  Record r;
  r.id = uint64_t{1};
  r.vectors[""] = {1, 2, 3, 4};
  SearchRequest req;
  req.queries = {1, 2, 3, 4};
  req.k = 3;
  {
    auto db = OpenDb();
    auto c = std::move(db->CreateCollection(Spec("items", 4))).value();
    ASSERT_TRUE(c->Upsert({r}).ok());
    ASSERT_TRUE(c->Upsert({r}).ok());
    auto res = std::move(c->Search(req)).value();
    ASSERT_EQ(res[0].size(), 1u);
    EXPECT_EQ(std::get<uint64_t>(res[0][0].id), 1u);
    // Delete everything by filter, then insert again.
    ASSERT_EQ(c->DeleteByFilter("{}").value(), 1u);
    ASSERT_TRUE(c->Upsert({r}).ok());
    ASSERT_TRUE(c->Checkpoint().ok());
  }
  auto db = OpenDb();
  auto c = std::move(db->GetCollection("items")).value();
  auto res = std::move(c->Search(req)).value();
  ASSERT_EQ(res[0].size(), 1u);
  EXPECT_EQ(std::get<uint64_t>(res[0][0].id), 1u);
}

// Regression (issue 9.3): dropping a collection while other threads use it freed it under them
// (segfaults). Handles keep it alive; the drop waits for running calls; later calls fail with
// NotFound; a new collection of the same name is unaffected by old handles.
TEST_F(DatabaseTest, DropWhileOtherThreadsUseTheCollection) {
  auto data = testing::Clustered(2000, 20, 8, 4, 3);
  for (int round = 0; round < 3; ++round) {
    auto db = OpenDb();
    const std::string name = "items" + std::to_string(round);
    auto c = std::move(db->CreateCollection(Spec(name, 8))).value();
    ASSERT_TRUE(c->Upsert(Records(data, 0, 500)).ok());
    std::atomic<bool> stop{false};
    std::atomic<int> started{0};
    std::atomic<size_t> ok_calls{0}, dropped_errors{0}, other_errors{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 3; ++t) {
      threads.emplace_back([&, t] {
        std::shared_ptr<Collection> mine = c;
        ++started;
        size_t i = 0;
        while (!stop) {
          Status s;
          if (t == 0) {
            s = mine->Upsert(Records(data, 500 + i % 1500, 500 + i % 1500 + 1));
          } else if (t == 1) {
            SearchRequest req;
            req.queries.assign(data.queries.begin(), data.queries.begin() + 8);
            req.with_vectors = true;
            s = mine->Search(req).status();
          } else {
            s = mine->Get({PointId(uint64_t(i % 500))}).status();
          }
          ++i;
          if (s.ok()) {
            ++ok_calls;
          } else if (s.IsNotFound() && s.message().find("was dropped") != std::string::npos) {
            ++dropped_errors;
          } else {
            ++other_errors;
            ADD_FAILURE() << s.ToString();
          }
          if (dropped_errors >= 30) break;
        }
      });
    }
    while (started < 3 || ok_calls < 50) std::this_thread::yield();
    ASSERT_TRUE(db->DropCollection(name).ok());
    c.reset();  // the threads' copies are the last handles
    while (dropped_errors < 30 && other_errors == 0) std::this_thread::yield();
    stop = true;
    for (auto& t : threads) t.join();
    EXPECT_EQ(other_errors.load(), 0u);
    EXPECT_FALSE(db->GetCollection(name).ok());
    // Same name again: a fresh, empty collection.
    auto again = std::move(db->CreateCollection(Spec(name, 8))).value();
    EXPECT_EQ(again->Count(), 0u);
  }
}

// Closing the database under a held handle: later calls fail cleanly instead of using the
// closed store.
TEST_F(DatabaseTest, HandlesOutliveTheDatabaseSafely) {
  auto db = OpenDb();
  auto c = std::move(db->CreateCollection(Spec("items", 4))).value();
  Record r;
  r.id = uint64_t{1};
  r.vectors[""] = {1, 2, 3, 4};
  ASSERT_TRUE(c->Upsert({r}).ok());
  ASSERT_TRUE(db->Close().ok());
  db.reset();
  Status s = c->Upsert({r});
  EXPECT_EQ(s.code(), Status::Code::kFailedPrecondition) << s.ToString();
  EXPECT_NE(s.message().find("is closed"), std::string::npos) << s.ToString();
  EXPECT_FALSE(c->Get({PointId(uint64_t{1})}).ok());
}

// Regression (issue 9.9): Get read the record by slot after dropping the lock; a concurrent
// delete + insert that reused the slot returned another point.
TEST_F(DatabaseTest, ConcurrentGetNeverReturnsAnotherPoint) {
  auto db = OpenDb();
  auto c = std::move(db->CreateCollection(Spec("items", 4))).value();
  std::atomic<bool> stop{false};
  std::atomic<size_t> wrong{0}, reads{0};
  std::thread reader([&] {
    while (!stop) {
      auto got = c->Get({PointId(uint64_t{1})}, false);
      if (got.ok() && (*got)[0] && std::get<uint64_t>((*got)[0]->id) != 1) ++wrong;
      ++reads;
    }
  });
  Record a, b;
  a.id = uint64_t{1};
  a.vectors[""] = {1, 0, 0, 0};
  b.id = uint64_t{2};
  b.vectors[""] = {0, 1, 0, 0};
  for (int i = 0; i < 2000 || reads < 2000; ++i) {
    ASSERT_TRUE(c->Upsert({a}).ok());
    ASSERT_EQ(c->Delete({PointId(uint64_t{1})}).value(), 1u);
    ASSERT_TRUE(c->Upsert({b}).ok());  // takes the slot id 1 had
    ASSERT_EQ(c->Delete({PointId(uint64_t{2})}).value(), 1u);
  }
  stop = true;
  reader.join();
  EXPECT_EQ(wrong.load(), 0u);
}

// Regression (issue 9.8): points replayed at open did not count toward the next checkpoint, so
// a process that crashed before the interval never checkpointed and each open replayed more.
TEST_F(DatabaseTest, ReplayedPointsCountTowardTheNextCheckpoint) {
  DatabaseOptions options;
  options.checkpoint_every = 100;
  options.durability = Durability::kBuffered;
  auto data = testing::Clustered(300, 1, 8, 4, 9);
  const std::string index_dir = dir_ + "/indexes/1";
  auto checkpoints = [&] {
    size_t n = 0;
    for (const auto& e : std::filesystem::directory_iterator(index_dir)) n += e.path().extension() == ".fathom";
    return n;
  };
  {
    auto db = std::move(Database::Open(dir_, options)).value();
    auto c = std::move(db->CreateCollection(Spec("items", 8))).value();
    for (size_t i = 0; i < 60; ++i) ASSERT_TRUE(c->Upsert(Records(data, i, i + 1)).ok());
    ASSERT_TRUE(c->Checkpoint().ok());  // sequence 60
    for (size_t i = 60; i < 150; ++i) ASSERT_TRUE(c->Upsert(Records(data, i, i + 1)).ok());
    // 90 points after the checkpoint: below the interval. Simulate a crash: no Close.
    CopyLiveTree(dir_, dir_ + ".crashed");
  }
  std::filesystem::remove_all(dir_);
  std::filesystem::rename(dir_ + ".crashed", dir_);
  {
    auto db = std::move(Database::Open(dir_, options)).value();
    auto c = std::move(db->GetCollection("items")).value();
    EXPECT_EQ(c->Count(), 150u);
    // 90 replayed + 10 new reach the interval of 100: a checkpoint at sequence 160.
    for (size_t i = 150; i < 160; ++i) ASSERT_TRUE(c->Upsert(Records(data, i, i + 1)).ok());
    // Checkpoints run in the background.
    EXPECT_TRUE(WaitUntil([&] { return std::filesystem::exists(index_dir + "/0.160.fathom"); }))
        << checkpoints();
  }
}

// Regression (issue 9.2): a full disk must refuse writes cleanly (NoSpace, nothing written)
// before RocksDB's log meets it, keep reads working, and let writes resume once space is free.
// The reserve is set above the free space of the test's disk to make it "full".
TEST_F(DatabaseTest, DiskReserveRefusesWritesAndKeepsReads) {
  auto data = testing::Clustered(20, 1, 8, 2, 4);
  {
    auto db = std::move(Database::Open(dir_)).value();
    auto c = std::move(db->CreateCollection(Spec("items", 8))).value();
    ASSERT_TRUE(c->Upsert(Records(data, 0, 10)).ok());
  }
  DatabaseOptions full;
  full.min_free_disk_bytes = uint64_t{1} << 62;
  {
    auto db = std::move(Database::Open(dir_, full)).value();
    auto c = std::move(db->GetCollection("items")).value();
    Status s = c->Upsert(Records(data, 10, 20));
    EXPECT_TRUE(s.IsNoSpace()) << s.ToString();
    EXPECT_NE(s.message().find("nothing was written"), std::string::npos) << s.ToString();
    EXPECT_TRUE(c->Delete({PointId(uint64_t{0})}).status().IsNoSpace());
    EXPECT_TRUE(c->Snapshot(dir_ + "/snap").IsNoSpace());
    EXPECT_EQ(c->Count(), 10u);
    SearchRequest req;
    req.queries.assign(data.base.begin(), data.base.begin() + 8);
    EXPECT_EQ(std::move(c->Search(req)).value()[0].size(), 10u);
  }
  auto db = std::move(Database::Open(dir_)).value();
  auto c = std::move(db->GetCollection("items")).value();
  EXPECT_EQ(c->Count(), 10u);
  ASSERT_TRUE(c->Upsert(Records(data, 10, 20)).ok());
  EXPECT_EQ(c->Count(), 20u);
}

// Close after a few writes syncs the log instead of rewriting the index (seconds at 10M
// points); the next open replays them. Many writes still get a checkpoint at Close.
TEST_F(DatabaseTest, CloseCheckpointsOnlyWhenTheLogIsWorthIt) {
  auto data = testing::Clustered(3000, 10, 8, 4, 13);
  auto checkpoint_files = [&] {
    std::vector<std::string> names;
    for (const auto& e : fs::recursive_directory_iterator(dir_ + "/db/indexes")) {
      if (e.path().extension() == ".fathom") names.push_back(e.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  };
  {
    auto db = OpenDb();
    auto c = std::move(db->CreateCollection(Spec("items", 8))).value();
    ASSERT_TRUE(c->Upsert(Records(data, 0, 1500)).ok());
    ASSERT_TRUE(c->Checkpoint().ok());
  }
  const auto after_checkpoint = checkpoint_files();
  ASSERT_EQ(after_checkpoint.size(), 1u);
  {
    auto db = OpenDb();
    auto c = std::move(db->GetCollection("items")).value();
    ASSERT_TRUE(c->Upsert(Records(data, 1500, 1600)).ok());  // 1 operation, 100 points
    ASSERT_TRUE(c->Delete({PointId(uint64_t{3})}).ok());
  }
  EXPECT_EQ(checkpoint_files(), after_checkpoint) << "a close after 2 operations rewrote the index";
  {
    auto db = OpenDb();
    auto c = std::move(db->GetCollection("items")).value();
    EXPECT_EQ(c->Count(), 1599u);
    ExpectFoundByOwnVector(*c, data, 1550);
    EXPECT_FALSE(std::move(c->Get({PointId(uint64_t{3})}, false)).value()[0]);
    for (size_t b = 1600; b < 3000; b += 1) {
      ASSERT_TRUE(c->Upsert(Records(data, b, b + 1)).ok());  // 1,400 operations: worth a checkpoint
    }
  }
  EXPECT_NE(checkpoint_files(), after_checkpoint);
  auto db = OpenDb();
  EXPECT_EQ(std::move(db->GetCollection("items")).value()->Count(), 2999u);
}

// Issue 14: aliases resolve wherever a collection name does, switch in one all-or-none write,
// survive a reopen, block the name for collections, and go when their collection is dropped.
// Qdrant's payload operations: set merges keys, overwrite replaces, delete removes keys, clear
// empties; by ids or by filter; all or nothing; payload indexes follow; durable across a
// reopen; vectors untouched. With payloads in RAM and on disk.
// Payload indexes made and dropped on a live collection (Qdrant's PUT/DELETE .../index): counts
// stay those of a payload scan, the index holds later upserts to its type (it did not before),
// values of another type written before it are read from payloads, the spec says what is indexed, and
// all of it survives a reopen and a crash; metadata updates and index changes keep each other.
TEST_F(DatabaseTest, ReplicatedWritesApplyWhateverAPayloadIndexMadeSinceSays) {
  // A cluster replica applies its shard's log: a write the accepting node checked before a
  // payload index existed may reach the log after the index's entry. Refusing it on apply would
  // drop an acknowledged write on every replica; it is kept as values from before an index are.
  auto data = testing::Clustered(10, 1, 8, 2, 5);
  auto db = OpenDb();
  CollectionSpec spec = Spec("replica", data.dim);
  spec.indexed_fields.clear();
  auto c = std::move(db->CreateCollection(spec)).value();
  ASSERT_TRUE(c->Upsert(Records(data, 0, 4), 1).ok());
  ASSERT_TRUE(db->CreatePayloadIndex("replica", "label", FieldType::kInteger).ok());
  Record text = Records(data, 4, 5)[0];
  text.payload = R"({"label": "four"})";
  EXPECT_TRUE(c->Upsert({text}).IsInvalidArgument());  // a client's write: refused, as before
  EXPECT_EQ(c->log_position(), 1u);
  Status applied = c->Upsert({text}, 2);  // the log's: applied, and its position kept
  ASSERT_TRUE(applied.ok()) << applied.ToString();
  EXPECT_EQ(c->log_position(), 2u);
  EXPECT_EQ(c->Count(), 5u);
  PayloadUpdate set;
  set.op = PayloadUpdate::Op::kSet;
  set.ids = {PointId{uint64_t{0}}};
  set.payload = R"({"label": "zero"})";
  EXPECT_TRUE(c->UpdatePayload(set).status().IsInvalidArgument());
  auto updated = c->UpdatePayload(set, 3);
  ASSERT_TRUE(updated.ok()) << updated.status().ToString();
  EXPECT_EQ(*updated, 1u);
  EXPECT_EQ(c->log_position(), 3u);
  // Filters on the indexed field still see both: numbers from the index, text from payloads.
  EXPECT_EQ(std::move(c->CountByFilter("label >= 0")).value(), 3u);
  EXPECT_EQ(std::move(c->CountByFilter(R"({"must_not": [{"is_null": {"key": "label"}}]})")).value(), 5u);
}

TEST_F(DatabaseTest, PayloadIndexesMadeAndDroppedOnALiveCollection) {
  auto data = testing::Clustered(61, 1, 8, 2, 72);
  for (bool on_disk : {false, true}) {
    SCOPED_TRACE(on_disk ? "on-disk payloads" : "payloads in RAM");
    fs::remove_all(dir_);
    {
      auto db = std::move(Database::Open(dir_)).value();
      CollectionSpec spec = Spec("p", data.dim);
      spec.indexed_fields.clear();
      spec.on_disk_payload = on_disk;
      auto c = std::move(db->CreateCollection(spec)).value();
      ASSERT_TRUE(c->Upsert(Records(data, 0, 60)).ok());  // label i, color red (odd) / blue
      Record odd = Records(data, 60, 61)[0];
      odd.payload = R"({"label": "sixty", "when": "2024-05-01T10:00:00Z"})";
      ASSERT_TRUE(c->Upsert({odd}).ok());  // no index yet: any type goes
      const size_t blue = std::move(c->CountByFilter("color = 'blue'")).value();
      const size_t small = std::move(c->CountByFilter("label < 20")).value();
      EXPECT_EQ(blue, 30u);
      EXPECT_EQ(small, 20u);
      ASSERT_TRUE(db->CreatePayloadIndex("p", "label", FieldType::kInteger).ok());
      ASSERT_TRUE(db->CreatePayloadIndex("p", "color", FieldType::kKeyword).ok());
      ASSERT_TRUE(db->CreatePayloadIndex("p", "when", FieldType::kDatetime).ok());
      ASSERT_TRUE(db->CreatePayloadIndex("p", "color", FieldType::kKeyword).ok());  // (again: no change)
      EXPECT_EQ(c->spec().indexed_fields,
                (std::map<std::string, FieldType>{{"color", FieldType::kKeyword}, {"label", FieldType::kInteger},
                                                  {"when", FieldType::kDatetime}}));
      EXPECT_EQ(std::move(c->CountByFilter("color = 'blue'")).value(), blue);
      EXPECT_EQ(std::move(c->CountByFilter("label < 20")).value(), small);
      // The point whose label is text: not a number at least 0, and text is no longer a label.
      EXPECT_EQ(std::move(c->CountByFilter("label >= 0")).value(), 60u);
      EXPECT_EQ(std::move(c->CountByFilter(R"({"must_not": [{"is_null": {"key": "label"}}]})")).value(), 61u);
      EXPECT_EQ(c->CountByFilter(R"({"must": [{"key": "label", "match": {"value": "sixty"}}]})").status().message(),
                "filter compares field 'label' (integer) with string \"sixty\"");
      EXPECT_EQ(std::move(c->CountByFilter(R"({"must": [{"key": "when", "range": {"gte": "2024-05-01"}}]})")).value(), 1u);
      Record typed = odd;
      typed.id = uint64_t{61};
      Status refused = c->Upsert({typed});
      EXPECT_TRUE(refused.IsInvalidArgument()) << refused.ToString();
      EXPECT_NE(refused.message().find("payload field 'label' is indexed as integer"), std::string::npos) << refused.message();
      // A snapshot carries the indexes as they are now (it held those of the opening).
      const std::string snap = dir_ + ".snap";
      fs::remove_all(snap);
      ASSERT_TRUE(c->Snapshot(snap).ok());
      auto restored = db->RestoreSnapshot(snap, "p_restored");
      ASSERT_TRUE(restored.ok()) << restored.status().ToString();
      EXPECT_EQ((*restored)->spec().indexed_fields, c->spec().indexed_fields);
      ASSERT_TRUE(db->DropCollection("p_restored").ok());
      fs::remove_all(snap);
      // Metadata and indexes, each changed after the other, both kept.
      ASSERT_TRUE(db->UpdateCollectionMetadata("p", R"({"model": "m1"})").ok());
      ASSERT_TRUE(db->DropPayloadIndex("p", "when").ok());
      EXPECT_TRUE(db->DropPayloadIndex("p", "when").IsNotFound());
      EXPECT_TRUE(db->CreatePayloadIndex("nope", "x", FieldType::kKeyword).IsNotFound());
      EXPECT_FALSE(db->CreatePayloadIndex("p", "a..b", FieldType::kKeyword).ok());
      CopyLiveTree(dir_, dir_ + ".crashed");
    }
    for (const std::string& path : {dir_, dir_ + ".crashed"}) {
      SCOPED_TRACE(path);
      auto db = std::move(Database::Open(path)).value();
      auto c = std::move(db->GetCollection("p")).value();
      EXPECT_EQ(c->spec().indexed_fields,
                (std::map<std::string, FieldType>{{"color", FieldType::kKeyword}, {"label", FieldType::kInteger}}));
      EXPECT_EQ(c->metadata(), R"({"model":"m1"})");
      EXPECT_EQ(std::move(c->CountByFilter("color = 'blue'")).value(), 30u);
      Record typed = Records(data, 0, 1)[0];
      typed.payload = R"({"label": "x"})";
      EXPECT_TRUE(c->Upsert({typed}).IsInvalidArgument());
      ASSERT_TRUE(db->DropPayloadIndex("p", "label").ok());
      EXPECT_TRUE(c->Upsert({typed}).ok());  // no index on label: any type again
      EXPECT_EQ(std::move(c->CountByFilter("label < 20")).value(), 19u);
    }
    fs::remove_all(dir_ + ".crashed");
  }
}

// A payload index made and dropped during writes and filtered searches (run under
// ThreadSanitizer too): no call fails, and afterwards counts equal a scan of what was written.
TEST_F(DatabaseTest, PayloadIndexBuiltDuringWritesAndSearches) {
  auto data = testing::Clustered(3000, 5, 8, 4, 73);
  auto db = std::move(Database::Open(dir_)).value();
  CollectionSpec spec = Spec("live", data.dim, "HNSW16");
  spec.indexed_fields.clear();
  auto c = std::move(db->CreateCollection(spec)).value();
  ASSERT_TRUE(c->Upsert(Records(data, 0, 1000)).ok());
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (size_t b = 1000; b < 3000; b += 100) ASSERT_TRUE(c->Upsert(Records(data, b, b + 100)).ok());
  });
  std::thread reader([&] {
    SearchRequest req;
    req.queries = data.queries;
    req.k = 5;
    req.filter = "label < 500 and color = 'red'";
    while (!done.load()) {
      ASSERT_TRUE(c->Search(req).ok());
      ASSERT_TRUE(c->CountByFilter("label >= 100").ok());
    }
  });
  for (int round = 0; round < 3; ++round) {
    ASSERT_TRUE(db->CreatePayloadIndex("live", "label", FieldType::kInteger).ok());
    ASSERT_TRUE(db->CreatePayloadIndex("live", "color", FieldType::kKeyword).ok());
    if (round < 2) ASSERT_TRUE(db->DropPayloadIndex("live", "color").ok());
  }
  writer.join();
  done = true;
  reader.join();
  // Labels are i % 1000 over 3,000 points: 300 below 100, red on odd i.
  EXPECT_EQ(std::move(c->CountByFilter("label < 100")).value(), 300u);
  EXPECT_EQ(std::move(c->CountByFilter("color = 'red' and label < 100")).value(), 150u);
  EXPECT_EQ(c->spec().indexed_fields.size(), 2u);
}

TEST_F(DatabaseTest, PayloadUpdatesMergeReplaceDeleteAndPersist) {
  using Op = PayloadUpdate::Op;
  auto data = testing::Clustered(40, 1, 8, 2, 71);
  auto update = [](Op op, std::string payload, std::vector<PointId> ids, std::string filter = "",
                   std::vector<std::string> keys = {}) {
    PayloadUpdate u;
    u.op = op;
    u.payload = std::move(payload);
    u.ids = std::move(ids);
    u.filter = std::move(filter);
    u.keys = std::move(keys);
    return u;
  };
  auto payload_of = [](Collection& c, uint64_t id) {
    return std::move(c.Get({PointId(id)}, false)).value()[0]->payload;
  };
  for (bool on_disk : {false, true}) {
    SCOPED_TRACE(on_disk ? "on-disk payloads" : "payloads in RAM");
    fs::remove_all(dir_);
    {
      auto db = std::move(Database::Open(dir_)).value();
      CollectionSpec spec = Spec("p", data.dim);
      spec.on_disk_payload = on_disk;
      auto c = std::move(db->CreateCollection(spec)).value();
      ASSERT_TRUE(c->Upsert(Records(data, 0, 40)).ok());  // odd ids red, even blue
      EXPECT_EQ(std::move(c->UpdatePayload(update(Op::kSet, R"({"size": 3, "color": "green"})", {PointId(uint64_t{1}), PointId(uint64_t{2})}))).value(), 2u);
      EXPECT_EQ(payload_of(*c, 1), R"({"color":"green","i":1,"label":1,"size":3})");
      EXPECT_EQ(std::move(c->CountByFilter("color = 'green'")).value(), 2u);  // the index followed
      EXPECT_EQ(std::move(c->CountByFilter("color = 'red'")).value(), 19u);
      // By filter: every red point loses its colour.
      EXPECT_EQ(std::move(c->UpdatePayload(update(Op::kDeleteKeys, "", {}, "color = 'red'", {"color", "nope"}))).value(), 19u);
      EXPECT_EQ(payload_of(*c, 3), R"({"i":3,"label":3})");
      EXPECT_EQ(std::move(c->CountByFilter("color = 'red'")).value(), 0u);
      EXPECT_EQ(std::move(c->UpdatePayload(update(Op::kOverwrite, R"({"label": 7})", {PointId(uint64_t{4})}))).value(), 1u);
      EXPECT_EQ(payload_of(*c, 4), R"({"label":7})");
      EXPECT_EQ(std::move(c->UpdatePayload(update(Op::kClear, "", {PointId(uint64_t{5})}))).value(), 1u);
      EXPECT_EQ(payload_of(*c, 5), "{}");
      // All or nothing: a missing id, or a value an index cannot hold, changes no point.
      Status missing = c->UpdatePayload(update(Op::kSet, R"({"x": 1})", {PointId(uint64_t{6}), PointId(uint64_t{999})})).status();
      EXPECT_TRUE(missing.IsNotFound()) << missing.ToString();
      EXPECT_EQ(missing.message(), "point 999 does not exist in collection 'p' (no payload was changed)");
      Status typed = c->UpdatePayload(update(Op::kSet, R"({"label": "seven"})", {}, "label < 10")).status();
      EXPECT_TRUE(typed.IsInvalidArgument()) << typed.ToString();
      EXPECT_EQ(payload_of(*c, 6), R"({"color":"blue","i":6,"label":6})");
      EXPECT_TRUE(c->UpdatePayload(update(Op::kSet, "[1]", {PointId(uint64_t{6})})).status().IsInvalidArgument());
      EXPECT_TRUE(c->UpdatePayload(update(Op::kSet, "{}", {})).status().IsInvalidArgument());
      // The vectors did not move: each point still finds itself.
      for (uint64_t id : {1, 3, 4, 5}) ExpectFoundByOwnVector(*c, data, id);
    }
    auto db = std::move(Database::Open(dir_)).value();
    auto c = std::move(db->GetCollection("p")).value();
    EXPECT_EQ(payload_of(*c, 1), R"({"color":"green","i":1,"label":1,"size":3})");
    EXPECT_EQ(payload_of(*c, 3), R"({"i":3,"label":3})");
    EXPECT_EQ(payload_of(*c, 5), "{}");
    EXPECT_EQ(std::move(c->CountByFilter("color = 'green'")).value(), 2u);
    EXPECT_EQ(std::move(c->CountByFilter("label = 7")).value(), 2u);  // points 4 and 7
    ExpectFoundByOwnVector(*c, data, 4);
  }
}

// Qdrant's has_id: integer and string ids, unknown ids match nothing, combined with payload
// conditions (indexed and not) and negated, in count, search, scroll and delete.
TEST_F(DatabaseTest, HasIdFilterSelectsPoints) {
  auto data = testing::Clustered(30, 1, 8, 2, 73);
  auto db = std::move(Database::Open(dir_)).value();
  auto c = std::move(db->CreateCollection(Spec("ids", data.dim))).value();
  std::vector<Record> records = Records(data, 0, 30);
  records[29].id = PointId(std::string("doc-7"));
  ASSERT_TRUE(c->Upsert(records).ok());
  const std::string has = R"({"must": [{"has_id": [1, 2, 3, "doc-7", 999, "nope"]}]})";
  EXPECT_EQ(std::move(c->CountByFilter(has)).value(), 4u);
  EXPECT_EQ(std::move(c->CountByFilter(R"({"must": [{"has_id": [1, 2, 3]}, {"key": "color", "match": {"value": "red"}}]})")).value(), 2u);
  EXPECT_EQ(std::move(c->CountByFilter(R"({"must": [{"has_id": [1, 2, 3]}, {"key": "i", "range": {"gte": 2}}]})")).value(), 2u);
  EXPECT_EQ(std::move(c->CountByFilter(R"({"must_not": [{"has_id": [1, 2]}]})")).value(), 28u);
  EXPECT_EQ(std::move(c->CountByFilter(R"({"should": [{"has_id": [4]}, {"key": "i", "match": {"value": 5}}]})")).value(), 2u);
  SearchRequest req;
  req.queries.assign(data.base.begin(), data.base.begin() + data.dim);
  req.k = 10;
  req.filter = has;
  auto hits = std::move(c->Search(req)).value();
  std::set<std::string> found;
  for (const auto& h : hits[0]) found.insert(PointIdToString(h.id));
  EXPECT_EQ(found, (std::set<std::string>{"1", "2", "3", "\"doc-7\""}));
  EXPECT_EQ(std::move(c->DeleteByFilter(R"({"must": [{"has_id": ["doc-7", 5]}]})")).value(), 2u);
  EXPECT_EQ(c->Count(), 28u);
}

TEST_F(DatabaseTest, AliasesSwitchAtomicallyAndPersist) {
  using Op = AliasOperation;
  auto create = [](std::string alias, std::string collection) {
    Op op;
    op.alias = std::move(alias);
    op.collection = std::move(collection);
    return op;
  };
  auto remove = [](std::string alias) {
    Op op;
    op.kind = Op::Kind::kDelete;
    op.alias = std::move(alias);
    return op;
  };
  {
    auto db = std::move(Database::Open(dir_)).value();
    ASSERT_TRUE(db->CreateCollection(Spec("v1", 4)).ok());
    ASSERT_TRUE(db->CreateCollection(Spec("v2", 4)).ok());
    ASSERT_TRUE(db->UpdateAliases({create("images", "v1")}).ok());
    EXPECT_EQ(std::move(db->GetCollection("images")).value()->spec().name, "v1");
    // Switch: delete and create in one request.
    ASSERT_TRUE(db->UpdateAliases({remove("images"), create("images", "v2")}).ok());
    EXPECT_EQ(std::move(db->GetCollection("images")).value()->spec().name, "v2");
    // All or none: the second action fails, so the first is not applied either.
    Status bad = db->UpdateAliases({remove("images"), create("images", "v3")});
    EXPECT_TRUE(bad.IsNotFound()) << bad.ToString();
    EXPECT_EQ(bad.message(), "alias action 1: collection 'v3' does not exist");
    EXPECT_EQ(db->ListAliases(), (std::map<std::string, std::string>{{"images", "v2"}}));
    EXPECT_EQ(db->UpdateAliases({create("images", "v1")}).message(),
              "alias action 0: alias 'images' already exists (of collection 'v2'); delete it first in the same "
              "request to switch it");
    EXPECT_TRUE(db->UpdateAliases({create("v1", "v2")}).IsAlreadyExists());
    EXPECT_TRUE(db->UpdateAliases({create("a/b", "v2")}).IsInvalidArgument());
    EXPECT_TRUE(db->CreateCollection(Spec("images", 4)).status().IsAlreadyExists());
    Op rename;
    rename.kind = Op::Kind::kRename;
    rename.alias = "images";
    rename.new_alias = "photos";
    ASSERT_TRUE(db->UpdateAliases({rename, create("old", "v1")}).ok());
  }
  auto db = std::move(Database::Open(dir_)).value();
  EXPECT_EQ(db->ListAliases(), (std::map<std::string, std::string>{{"old", "v1"}, {"photos", "v2"}}));
  EXPECT_EQ(std::move(db->GetCollection("photos")).value()->spec().name, "v2");
  EXPECT_TRUE(db->GetCollection("images").status().IsNotFound());
  ASSERT_TRUE(db->DropCollection("v2").ok());
  EXPECT_EQ(db->ListAliases(), (std::map<std::string, std::string>{{"old", "v1"}}));
  ASSERT_TRUE(db->Close().ok());
  auto again = std::move(Database::Open(dir_)).value();
  EXPECT_EQ(again->ListAliases(), (std::map<std::string, std::string>{{"old", "v1"}}));
}

// Issue 9.13: one corrupt RocksDB table made the database refuse to open, with no way back.
// Repair keeps what can be read, rebuilds the indexes, and says how much was lost.
TEST_F(DatabaseTest, RepairSalvagesACorruptStore) {
  auto data = testing::Clustered(400, 1, 8, 4, 11);
  {
    auto db = std::move(Database::Open(dir_)).value();
    auto c = std::move(db->CreateCollection(Spec("items", 8))).value();
    ASSERT_TRUE(c->Upsert(Records(data, 0, 200)).ok());
  }  // closing flushes the first 200 records into a table file
  {
    auto db = std::move(Database::Open(dir_)).value();
    auto c = std::move(db->GetCollection("items")).value();
    ASSERT_TRUE(c->Upsert(Records(data, 200, 400)).ok());
    ASSERT_TRUE(c->Checkpoint().ok());  // Close alone would not: 400 operations are cheap to replay
  }
  // Damage the largest table file of the records column family (its name is in the file's
  // properties) in its middle.
  fs::path victim;
  uintmax_t largest = 0;
  for (const auto& e : fs::directory_iterator(dir_ + "/store")) {
    if (e.path().extension() != ".sst") continue;
    std::ifstream in(e.path(), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (bytes.find("records") == std::string::npos) continue;
    if (e.file_size() > largest) {
      largest = e.file_size();
      victim = e.path();
    }
  }
  ASSERT_FALSE(victim.empty());
  {
    std::fstream f(victim, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(std::streamoff(largest / 3));
    std::string junk(64, '\x5a');
    f.write(junk.data(), std::streamsize(junk.size()));
  }
  auto broken = Database::Open(dir_);
  ASSERT_FALSE(broken.ok());
  EXPECT_TRUE(broken.status().IsCorruption()) << broken.status().ToString();

  auto report = Database::Repair(dir_);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  ASSERT_EQ(report->collections.size(), 1u);
  const auto& c = report->collections[0];
  EXPECT_EQ(c.name, "items");
  EXPECT_EQ(c.checkpoint_points, 400u);
  EXPECT_LT(c.records, 400u);

  auto db = Database::Open(dir_);
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  auto col = std::move((*db)->GetCollection("items")).value();
  EXPECT_EQ(col->Count(), c.records);
  // Every point that survived is found by its own vector.
  for (size_t i = 0; i < 400; ++i) {
    auto got = std::move(col->Get({PointId(uint64_t(i))}, false)).value();
    if (got[0]) ExpectFoundByOwnVector(*col, data, i);
  }
}

// SearchRequest::exact (the recall reference of `fathom bench`) is brute force: it equals a
// double-precision oracle, with and without a filter.
TEST_F(DatabaseTest, ExactSearchIsBruteForce) {
  auto data = testing::Clustered(3000, 20, 16, 8, 21);
  auto db = OpenDb();
  auto c = std::move(db->CreateCollection(Spec("items", 16, "HNSW8"))).value();
  ASSERT_TRUE(c->Upsert(Records(data, 0, 3000)).ok());
  for (const std::string filter : {"", "color = 'red'"}) {
    SearchRequest req;
    req.queries = data.queries;
    req.k = 10;
    req.exact = true;
    req.filter = filter;
    req.with_payload = false;
    SearchStats stats;
    auto res = std::move(c->Search(req, &stats)).value();
    EXPECT_EQ(stats.strategy, "exact");
    std::vector<bool> allowed(3000, true);
    if (!filter.empty()) {
      for (size_t i = 0; i < 3000; ++i) allowed[i] = i % 2 == 1;
    }
    auto truth = testing::BruteForce(data, 10, Metric::kL2, &allowed);
    for (size_t q = 0; q < data.nq(); ++q) {
      ASSERT_EQ(res[q].size(), 10u);
      std::vector<label_t> got;
      std::vector<float> dist;
      for (const auto& p : res[q]) {
        got.push_back(label_t(std::get<uint64_t>(p.id)));
        dist.push_back(p.distance);
      }
      EXPECT_EQ(testing::CheckAgainstReference(data, Metric::kL2, q, 10, dist.data(), got.data(), &allowed), "")
          << "filter '" << filter << "'";
      EXPECT_EQ(got, truth[q]) << "filter '" << filter << "'";
    }
  }
}

// A snapshot taken while another thread upserts and a third searches is a consistent copy:
// restored, it holds a whole number of the writer's batches (each batch is all or nothing), and
// every restored point is found by its own vector.
TEST_F(DatabaseTest, SnapshotDuringWritesAndSearchesIsConsistent) {
  auto data = testing::Clustered(4000, 10, 8, 8, 31);
  auto db = OpenDb();
  auto c = std::move(db->CreateCollection(Spec("items", 8))).value();
  ASSERT_TRUE(c->Upsert(Records(data, 0, 1000)).ok());
  std::atomic<bool> stop{false};
  std::atomic<size_t> batches{0};
  std::thread writer([&] {
    for (size_t b = 1000; b + 100 <= 4000 && !stop; b += 100) {
      ASSERT_TRUE(c->Upsert(Records(data, b, b + 100)).ok());
      ++batches;
    }
  });
  std::thread searcher([&] {
    SearchRequest req;
    req.queries = data.queries;
    while (!stop) ASSERT_TRUE(c->Search(req).ok());
  });
  while (batches < 3) std::this_thread::yield();
  const std::string snap = dir_ + "/snap";
  ASSERT_TRUE(c->Snapshot(snap).ok());
  const size_t after = batches;
  stop = true;
  writer.join();
  searcher.join();
  auto restored = std::move(db->RestoreSnapshot(snap, "copy")).value();
  const size_t n = restored->Count();
  EXPECT_EQ((n - 1000) % 100, 0u) << n;
  EXPECT_GE(n, 1000 + 3 * 100u);
  EXPECT_LE(n, 1000 + 100 * (after + 1));
  for (size_t i = 0; i < n; i += 37) ExpectFoundByOwnVector(*restored, data, i);
}

// Regression (issue 9.7): a write whose automatic checkpoint failed was durable but answered
// with an error (naming an internal path), and every later write retried and failed again.
// Also: leftover *.tmp files of an interrupted checkpoint are removed at open.
TEST_F(DatabaseTest, FailingCheckpointNeverFailsTheWrite) {
  DatabaseOptions options;
  options.checkpoint_every = 5;
  auto data = testing::Clustered(100, 1, 8, 4, 9);
  const std::string index_dir = dir_ + "/indexes/1";
  {
    auto db = std::move(Database::Open(dir_, options)).value();
    auto c = std::move(db->CreateCollection(Spec("items", 8))).value();
    // A directory where the checkpoint file must go: writing it fails.
    std::filesystem::create_directories(index_dir + "/0.5.fathom.tmp/blocker");
    for (size_t i = 0; i < 5; ++i) {
      Status s = c->Upsert(Records(data, i, i + 1));
      EXPECT_TRUE(s.ok()) << s.ToString();
    }
    EXPECT_TRUE(WaitUntil([&] { return c->checkpoint_failures() >= 1; }));
    EXPECT_EQ(c->checkpoint_failures(), 1u);
    // Back-off: the next writes do not retry (and fail) at once.
    for (size_t i = 5; i < 8; ++i) ASSERT_TRUE(c->Upsert(Records(data, i, i + 1)).ok());
    EXPECT_EQ(c->checkpoint_failures(), 1u);
    EXPECT_EQ(c->Count(), 8u);
    std::filesystem::remove_all(index_dir + "/0.5.fathom.tmp");
    std::ofstream(index_dir + "/0.7.fathom.tmp") << "torn";
  }
  auto db = std::move(Database::Open(dir_, options)).value();
  auto c = std::move(db->GetCollection("items")).value();
  EXPECT_EQ(c->Count(), 8u);
  EXPECT_FALSE(std::filesystem::exists(index_dir + "/0.7.fathom.tmp"));
}

}  // namespace
}  // namespace fathom

namespace fathom {
namespace {

// Searches, gets and filtered counts run while another thread upserts and deletes; every result
// must be internally consistent (payload belongs to the id, distances ordered). Run under
// ThreadSanitizer with -DFATHOM_SANITIZE=thread.
TEST_F(DatabaseTest, ConcurrentSearchesDuringUpsertsAndDeletes) {
  auto data = testing::Clustered(3000, 20, 16, 10, 23);
  auto db = OpenDb();
  auto c = std::move(db->CreateCollection(Spec("items", 16))).value();
  ASSERT_TRUE(c->Upsert(Records(data, 0, 1000)).ok());
  std::atomic<bool> done{false};
  std::atomic<size_t> bad{0}, searches{0};
  std::thread writer([&] {
    std::mt19937 rng(5);
    for (size_t round = 0; round < 60; ++round) {
      size_t begin = rng() % 2900;
      if (!c->Upsert(Records(data, begin, begin + 50)).ok()) ++bad;
      std::vector<PointId> ids;
      for (int i = 0; i < 20; ++i) ids.push_back(uint64_t(rng() % 3000));
      std::sort(ids.begin(), ids.end());
      ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
      if (!c->Delete(ids).ok()) ++bad;
    }
    done = true;
  });
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; ++r) {
    readers.emplace_back([&, r] {
      for (size_t q = r; !done.load(); q = (q + 1) % data.nq()) {
        SearchRequest req;
        req.queries.assign(data.queries.begin() + q * 16, data.queries.begin() + (q + 1) * 16);
        req.k = 10;
        if (q % 2 == 0) req.filter = "color = \"red\"";
        auto res = c->Search(req);
        if (!res.ok()) {
          ++bad;
          continue;
        }
        const auto& list = (*res)[0];
        for (size_t i = 0; i < list.size(); ++i) {
          uint64_t id = std::get<uint64_t>(list[i].id);
          if (list[i].payload.find("\"i\":" + std::to_string(id) + ",") == std::string::npos) ++bad;
          if (q % 2 == 0 && id % 2 == 0) ++bad;  // red points have odd ids
          if (i > 0 && list[i].distance < list[i - 1].distance) ++bad;
        }
        if (!c->Get({PointId{uint64_t(q)}}).ok()) ++bad;
        ++searches;
      }
    });
  }
  writer.join();
  for (auto& t : readers) t.join();
  EXPECT_EQ(bad.load(), 0u);
  EXPECT_GT(searches.load(), 0u);
}


}  // namespace
}  // namespace fathom

namespace fathom {
namespace {

// Collections whose float vectors live on disk (VectorSpec::on_disk) and whose payloads are
// not cached (CollectionSpec::on_disk_payload): the same answers as in RAM, a fraction of the
// memory, and everything back after a clean close, a crash (no close) and a lost vector file.
// The share of the exact answers' ids that `found` holds (recall@k over all queries).
double RecallOf(const std::vector<std::vector<ScoredPoint>>& truth, const std::vector<std::vector<ScoredPoint>>& found) {
  size_t hits = 0, total = 0;
  for (size_t q = 0; q < truth.size(); ++q) {
    for (const auto& t : truth[q]) {
      for (const auto& f : found[q]) hits += f.id == t.id;
    }
    total += truth[q].size();
  }
  return total == 0 ? 1.0 : double(hits) / double(total);
}

class OnDiskTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() / ("fathom_ondisk_" + std::to_string(::getpid()) + "_" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  static CollectionSpec Spec(const std::string& name, bool on_disk) {
    CollectionSpec spec;
    spec.name = name;
    spec.vectors.push_back({"", kDim, Metric::kCosine, "HNSW16,SQ8", on_disk});
    spec.indexed_fields = {{"label", FieldType::kInteger}};
    spec.on_disk_payload = on_disk;
    return spec;
  }
  static std::vector<Record> Records(const testing::Dataset& data, size_t begin, size_t end,
                                     size_t row_offset = 0) {
    std::vector<Record> out;
    for (size_t i = begin; i < end; ++i) {
      Record r;
      r.id = uint64_t(i);
      const size_t row = (i + row_offset) % data.n();
      r.vectors[""].assign(data.base.begin() + row * data.dim, data.base.begin() + (row + 1) * data.dim);
      r.payload = "{\"label\":" + std::to_string(i % 10) + ",\"tag\":\"t" + std::to_string(i % 7) + "\"}";
      out.push_back(std::move(r));
    }
    return out;
  }
  // Top-10 ids and distances of every query.
  static std::vector<std::vector<ScoredPoint>> Answers(Collection& c, const testing::Dataset& data,
                                                       const std::string& filter = "") {
    SearchRequest req;
    req.queries = data.queries;
    req.k = 10;
    req.ef = 96;
    req.filter = filter;
    req.with_payload = true;
    auto res = c.Search(req);
    EXPECT_TRUE(res.ok()) << res.status().ToString();
    return res.ok() ? std::move(res).value() : std::vector<std::vector<ScoredPoint>>{};
  }
  static void ExpectSameAnswers(const std::vector<std::vector<ScoredPoint>>& a,
                                const std::vector<std::vector<ScoredPoint>>& b) {
    ASSERT_EQ(a.size(), b.size());
    size_t same = 0, total = 0;
    for (size_t q = 0; q < a.size(); ++q) {
      ASSERT_EQ(a[q].size(), b[q].size());
      for (size_t i = 0; i < a[q].size(); ++i) {
        ++total;
        if (a[q][i].id == b[q][i].id) {
          ++same;
          EXPECT_NEAR(a[q][i].distance, b[q][i].distance, 1e-5);
          EXPECT_EQ(a[q][i].payload, b[q][i].payload);
        }
      }
    }
    // Both walk the same kind of graph on the same codes; graphs built in different orders
    // may differ in a few places.
    EXPECT_GE(double(same) / double(total), 0.97);
  }

  static constexpr size_t kDim = 48;
  std::string dir_;
};

TEST_F(OnDiskTest, AnswersLikeInRamWithAFractionOfTheMemory) {
  auto data = testing::Clustered(4000, 40, kDim, 20, 91);
  auto db = std::move(Database::Open(dir_)).value();
  auto ram = std::move(db->CreateCollection(Spec("ram", false))).value();
  auto disk = std::move(db->CreateCollection(Spec("disk", true))).value();
  for (auto* c : {ram.get(), disk.get()}) {
    ASSERT_TRUE(c->Upsert(Records(data, 0, 4000)).ok());
    // Replace a quarter (new vectors and payloads), delete a tenth.
    ASSERT_TRUE(c->Upsert(Records(data, 0, 1000, 1234)).ok());
    std::vector<PointId> gone;
    for (uint64_t i = 3600; i < 4000; ++i) gone.push_back(i);
    ASSERT_EQ(c->Delete(gone).value(), 400u);
  }
  // Exact distances after re-ranking from disk, the same neighbours, the same payloads.
  ExpectSameAnswers(Answers(*ram, data), Answers(*disk, data));
  ExpectSameAnswers(Answers(*ram, data, "tag = 't3'"), Answers(*disk, data, "tag = 't3'"));
  ExpectSameAnswers(Answers(*ram, data, "label = 4"), Answers(*disk, data, "label = 4"));
  EXPECT_EQ(ram->CountByFilter("label = 4 and tag = 't2'").value(),
            disk->CountByFilter("label = 4 and tag = 't2'").value());
  // Recall against exact search, and the stored vectors come back unchanged.
  SearchRequest exact;
  exact.queries = data.queries;
  exact.k = 10;
  exact.exact = true;
  auto truth = std::move(disk->Search(exact)).value();
  auto found = Answers(*disk, data);
  EXPECT_GE(RecallOf(truth, found), 0.95);
  auto got = std::move(disk->Get({PointId(uint64_t{5})}, true)).value();
  ASSERT_TRUE(got[0]);
  const size_t row = (5 + 1234) % data.n();
  EXPECT_EQ(got[0]->vectors.at(""), std::vector<float>(data.base.begin() + row * kDim, data.base.begin() + (row + 1) * kDim));
  // Floats (4000 x 48 x 4 bytes = 768 KB) and payload trees are not in RAM; the vector file
  // holds the floats.
  const StorageUsage in_ram = ram->usage(), on_disk = disk->usage();
  EXPECT_LE(on_disk.ram_bytes + 700000, in_ram.ram_bytes) << in_ram.ram_bytes << " vs " << on_disk.ram_bytes;
  EXPECT_GE(on_disk.vectors_disk_bytes, 4000u * kDim * 4);
  EXPECT_EQ(in_ram.vectors_disk_bytes, 0u);
}

TEST_F(OnDiskTest, SurvivesCloseCrashAndALostVectorFile) {
  auto data = testing::Clustered(3000, 30, kDim, 15, 92);
  std::vector<std::vector<ScoredPoint>> before;
  {
    auto db = std::move(Database::Open(dir_)).value();
    auto c = std::move(db->CreateCollection(Spec("disk", true))).value();
    ASSERT_TRUE(c->Upsert(Records(data, 0, 2000)).ok());
    ASSERT_TRUE(c->Checkpoint().ok());
    // After the checkpoint: replacements and deletions that only the log knows.
    ASSERT_TRUE(c->Upsert(Records(data, 1500, 3000, 77)).ok());
    ASSERT_TRUE(c->Delete({PointId(uint64_t{1}), PointId(uint64_t{2})}).ok());
    before = Answers(*c, data);
    // A crash: no close (copy the files as they are).
    CopyLiveTree(dir_, dir_ + ".crashed");
  }
  for (const std::string& variant : {std::string("clean"), std::string("crashed"), std::string("no vector file")}) {
    SCOPED_TRACE(variant);
    std::string path = variant == "clean" ? dir_ : dir_ + ".crashed";
    if (variant == "no vector file") {
      size_t removed = 0;
      for (const auto& e : fs::recursive_directory_iterator(path)) {
        if (e.path().extension() == ".vectors") removed += fs::remove(e.path());
      }
      ASSERT_EQ(removed, 1u);
    }
    auto db = std::move(Database::Open(path)).value();
    auto c = std::move(db->GetCollection("disk")).value();
    EXPECT_EQ(c->Count(), 2998u);
    ExpectSameAnswers(before, Answers(*c, data));
  }
  fs::remove_all(dir_ + ".crashed");
}

// FP16 codes in RAM, floats on disk (issue 11): the graph walks half-precision vectors and the
// final candidates are re-ranked from the vector file, so distances are exact and the answers
// are those of a float graph; the RAM is well under the float collection's.
TEST_F(OnDiskTest, Fp16WalksHalvesAndReranksExactlyFromDisk) {
  auto data = testing::Clustered(4000, 40, kDim, 20, 93);
  auto db = std::move(Database::Open(dir_)).value();
  CollectionSpec float_spec = Spec("float", false), half_spec = Spec("half", true);
  float_spec.vectors[0].index = "HNSW16";
  half_spec.vectors[0].index = "HNSW16,FP16";
  auto floats = std::move(db->CreateCollection(float_spec)).value();
  auto halves = std::move(db->CreateCollection(half_spec)).value();
  for (auto* c : {floats.get(), halves.get()}) ASSERT_TRUE(c->Upsert(Records(data, 0, 4000)).ok());
  const auto want = Answers(*floats, data), got = Answers(*halves, data);
  ExpectSameAnswers(want, got);
  for (size_t q = 0; q < got.size(); ++q) {
    for (const ScoredPoint& p : got[q]) {  // exact cosine distance of the float vectors
      const float* x = data.base.data() + std::get<uint64_t>(p.id) * kDim;
      const float* y = data.queries.data() + q * kDim;
      double dot = 0, nx = 0, ny = 0;
      for (size_t j = 0; j < kDim; ++j) {
        dot += double(x[j]) * y[j];
        nx += double(x[j]) * x[j];
        ny += double(y[j]) * y[j];
      }
      EXPECT_NEAR(p.distance, 1.0 - dot / std::sqrt(nx * ny), 1e-5);
    }
  }
  EXPECT_LE(halves->usage().ram_bytes * 10, floats->usage().ram_bytes * 7)
      << halves->usage().ram_bytes << " vs " << floats->usage().ram_bytes;
  // Values an FP16 code cannot hold are refused with the reason, and nothing is written.
  CollectionSpec l2 = half_spec;
  l2.name = "half_l2";
  l2.vectors[0].metric = Metric::kL2;
  auto c = std::move(db->CreateCollection(l2)).value();
  Record r;
  r.id = uint64_t{1};
  r.vectors[""] = std::vector<float>(kDim, 1.0f);
  r.vectors[""][5] = 70000.0f;
  Status s = c->Upsert({r});
  EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_NE(s.message().find("beyond the range of an FP16 index (magnitudes up to 65504)"), std::string::npos) << s.message();
  EXPECT_EQ(c->Count(), 0u);
}

TEST_F(OnDiskTest, NeedsAnIndexThatWalksCodes) {
  auto db = std::move(Database::Open(dir_)).value();
  CollectionSpec spec = Spec("bad", true);
  spec.vectors[0].index = "HNSW16";
  auto made = db->CreateCollection(spec);
  ASSERT_FALSE(made.ok());
  EXPECT_EQ(made.status().message(),
            "the vector: on_disk keeps float vectors on disk and re-ranks from there, so its index must walk "
            "compressed codes in RAM: use 'HNSW16,SQ8' or '...,RBQ' with l2 or cosine, '...,FP16' or '...,SQ4' "
            "(any metric), or IVF lists of codes such as 'IVF1024,SQ8' (got 'HNSW16' with cosine)");
  spec.vectors[0].index = "HNSW16,SQ8";
  spec.vectors[0].metric = Metric::kInnerProduct;
  EXPECT_FALSE(db->CreateCollection(spec).ok());
  spec.vectors[0].index = "IVF16,Flat";
  EXPECT_FALSE(db->CreateCollection(spec).ok());
}

// SQ4 and RBQ HNSW codes with the float vectors on disk: built as in RAM (floats read back from
// the vector file while linking), the same answers as in RAM with the floats out of RAM, and the
// same answers again after a clean close and after a crash (log replay).
TEST_F(OnDiskTest, Sq4AndRbqCodesWithVectorsOnDisk) {
  auto data = testing::Clustered(3000, 40, kDim, 20, 97);
  for (const char* factory : {"HNSW16,SQ4", "HNSW16,RBQ"}) {
    SCOPED_TRACE(factory);
    fs::remove_all(dir_);
    std::vector<std::vector<ScoredPoint>> before;
    {
      auto db = std::move(Database::Open(dir_)).value();
      CollectionSpec ram_spec = Spec("ram", false), disk_spec = Spec("disk", true);
      ram_spec.vectors[0].index = disk_spec.vectors[0].index = factory;
      auto ram = std::move(db->CreateCollection(ram_spec)).value();
      auto disk = std::move(db->CreateCollection(disk_spec)).value();
      for (auto* c : {ram.get(), disk.get()}) {
        // A first upsert of 10 points trains the codes; they are trained again as points come.
        ASSERT_TRUE(c->Upsert(Records(data, 0, 10)).ok());
        for (size_t b = 10; b < 3000; b += 500) ASSERT_TRUE(c->Upsert(Records(data, b, std::min<size_t>(b + 500, 3000))).ok());
        ASSERT_TRUE(c->Upsert(Records(data, 0, 500, 777)).ok());  // replaced
        std::vector<PointId> gone;
        for (uint64_t i = 2700; i < 3000; ++i) gone.push_back(i);
        ASSERT_EQ(c->Delete(gone).value(), 300u);
      }
      ExpectSameAnswers(Answers(*ram, data), Answers(*disk, data));
      ExpectSameAnswers(Answers(*ram, data, "label = 4"), Answers(*disk, data, "label = 4"));
      SearchRequest exact;
      exact.queries = data.queries;
      exact.k = 10;
      exact.exact = true;
      EXPECT_GE(RecallOf(std::move(disk->Search(exact)).value(), Answers(*disk, data)), 0.95);
      // 3,000 x 48 floats (576 KB) are not in RAM.
      EXPECT_LE(disk->usage().ram_bytes + 500000, ram->usage().ram_bytes);
      ASSERT_TRUE(disk->Checkpoint().ok());
      ASSERT_TRUE(disk->Upsert(Records(data, 500, 800, 99)).ok());  // only the log knows these
      before = Answers(*disk, data);
      CopyLiveTree(dir_, dir_ + ".crashed");
    }
    for (const std::string& path : {dir_, dir_ + ".crashed"}) {
      SCOPED_TRACE(path);
      auto db = std::move(Database::Open(path)).value();
      auto c = std::move(db->GetCollection("disk")).value();
      ExpectSameAnswers(before, Answers(*c, data));
    }
    fs::remove_all(dir_ + ".crashed");
  }
}

// 4-bit HNSW codes as a collection's index: the first upsert of 10 points trains the ranges, which
// are learnt again at 1,000 points; recall holds against the exact search, and a reopen after a
// checkpoint and after a crash (log replay) answers exactly as before.
TEST_F(OnDiskTest, Sq4HnswCollectionKeepsRecallAcrossReopen) {
  auto data = testing::Clustered(2000, 30, kDim, 15, 96);
  CollectionSpec spec = Spec("sq4", false);
  spec.vectors[0].index = "HNSW16,SQ4";
  std::vector<std::vector<ScoredPoint>> before;
  SearchRequest req;
  req.queries = data.queries;
  req.k = 10;
  {
    auto db = std::move(Database::Open(dir_)).value();
    auto c = std::move(db->CreateCollection(spec)).value();
    ASSERT_TRUE(c->Upsert(Records(data, 0, 10)).ok());
    for (size_t b = 10; b < 1500; b += 245) ASSERT_TRUE(c->Upsert(Records(data, b, std::min<size_t>(b + 245, 1500))).ok());
    ASSERT_TRUE(c->Checkpoint().ok());
    ASSERT_TRUE(c->Upsert(Records(data, 1500, 2000)).ok());  // only the log knows these
    SearchRequest exact = req;
    exact.exact = true;
    auto truth = std::move(c->Search(exact)).value();
    before = std::move(c->Search(req)).value();
    EXPECT_GE(RecallOf(truth, before), 0.95);
    CopyLiveTree(dir_, dir_ + ".crashed");
  }
  for (const std::string& path : {dir_, dir_ + ".crashed"}) {
    SCOPED_TRACE(path);
    auto db = std::move(Database::Open(path)).value();
    auto c = std::move(db->GetCollection("sq4")).value();
    auto after = std::move(c->Search(req)).value();
    ASSERT_EQ(after.size(), before.size());
    for (size_t q = 0; q < after.size(); ++q) {
      ASSERT_EQ(after[q].size(), before[q].size());
      for (size_t i = 0; i < after[q].size(); ++i) EXPECT_EQ(after[q][i].id, before[q][i].id) << q << " " << i;
    }
  }
  fs::remove_all(dir_ + ".crashed");
}

// An IVF index as a collection's index: it trains itself once the collection holds 39 points
// per list, vectors can live on disk, and a reopen (checkpoint, and log replay after a crash)
// answers exactly as before.
TEST_F(OnDiskTest, IvfCollectionTrainsItselfAndSurvivesReopen) {
  auto data = testing::Clustered(3000, 30, kDim, 15, 95);
  for (const bool on_disk : {false, true}) {
    SCOPED_TRACE(on_disk ? "on disk" : "in RAM");
    fs::remove_all(dir_);
    CollectionSpec spec = Spec("ivf", on_disk);
    spec.vectors[0].index = "IVF32,PQ8";  // trains itself at 2,560 points (PQ needs 10 per code)
    std::vector<std::vector<ScoredPoint>> before;
    {
      auto db = std::move(Database::Open(dir_)).value();
      auto c = std::move(db->CreateCollection(spec)).value();
      for (size_t b = 0; b < 3000; b += 500) ASSERT_TRUE(c->Upsert(Records(data, b, b + 500)).ok());
      ASSERT_TRUE(c->Checkpoint().ok());
      ASSERT_TRUE(c->Delete({PointId(uint64_t{7})}).ok());  // only the log knows this one
      SearchRequest exact;
      exact.queries = data.queries;
      exact.k = 10;
      exact.exact = true;
      auto truth = std::move(c->Search(exact)).value();
      SearchRequest req = exact;
      req.exact = false;
      req.nprobe = 16;
      req.rerank = 300;  // PQ8 on 48-d isotropic clusters needs a deep re-rank
      before = std::move(c->Search(req)).value();
      EXPECT_GE(RecallOf(truth, before), 0.9);
      CopyLiveTree(dir_, dir_ + ".crashed");
    }
    for (const std::string& path : {dir_, dir_ + ".crashed"}) {
      auto db = std::move(Database::Open(path)).value();
      auto c = std::move(db->GetCollection("ivf")).value();
      SearchRequest req;
      req.queries = data.queries;
      req.k = 10;
      req.nprobe = 16;
      req.rerank = 300;  // PQ8 on 48-d isotropic clusters needs a deep re-rank
      auto after = std::move(c->Search(req)).value();
      ASSERT_EQ(after.size(), before.size());
      for (size_t q = 0; q < after.size(); ++q) {
        ASSERT_EQ(after[q].size(), before[q].size());
        for (size_t i = 0; i < after[q].size(); ++i) {
          EXPECT_EQ(after[q][i].id, before[q][i].id);
          EXPECT_NE(after[q][i].id, PointId(uint64_t{7}));
        }
      }
    }
    fs::remove_all(dir_ + ".crashed");
  }
}

}  // namespace
}  // namespace fathom

namespace fathom {
namespace {

// Checkpoints (background ones every 50 operations and explicit ones in a loop) run while one
// thread upserts and deletes and another searches; afterwards a reopen must hold exactly the
// written state. Run under ThreadSanitizer too (the name matches its filter).
TEST_F(DatabaseTest, ConcurrentWritesAndSearchesDuringCheckpoints) {
  auto data = testing::Clustered(3000, 20, 16, 10, 29);
  DatabaseOptions options;
  options.durability = Durability::kBuffered;
  options.checkpoint_every = 50;
  std::map<uint64_t, size_t> truth;  // id -> row
  {
    auto db = std::move(Database::Open(dir_, options)).value();
    auto c = std::move(db->CreateCollection(Spec("items", 16, "HNSW16,SQ8"))).value();
    ASSERT_TRUE(c->Upsert(Records(data, 0, 1000)).ok());
    for (uint64_t i = 0; i < 1000; ++i) truth[i] = i;
    std::atomic<bool> done{false};
    std::atomic<size_t> checkpoints{0}, searches{0};
    std::thread checkpointer([&] {
      while (!done) {
        ASSERT_TRUE(c->Checkpoint().ok());
        ++checkpoints;
      }
    });
    std::thread searcher([&] {
      SearchRequest req;
      req.queries.assign(data.queries.begin(), data.queries.begin() + 16);
      req.k = 5;
      while (!done) {
        auto res = c->Search(req);
        ASSERT_TRUE(res.ok()) << res.status().ToString();
        ++searches;
      }
    });
    std::mt19937 rng(3);
    for (int round = 0; round < 60; ++round) {
      std::vector<Record> batch;
      std::set<uint64_t> ids;
      for (int j = 0; j < 20; ++j) ids.insert(rng() % 3000);
      for (uint64_t id : ids) {
        size_t row = rng() % 3000;
        Record rec = Records(data, row, row + 1)[0];
        rec.id = id;
        batch.push_back(std::move(rec));
        truth[id] = row;
      }
      ASSERT_TRUE(c->Upsert(batch).ok());
      std::vector<PointId> gone;
      for (int j = 0; j < 5; ++j) {
        uint64_t id = rng() % 3000;
        gone.push_back(id);
        truth.erase(id);
      }
      ASSERT_TRUE(c->Delete(gone).ok());
    }
    done = true;
    checkpointer.join();
    searcher.join();
    EXPECT_GT(checkpoints.load(), 0u);
    EXPECT_GT(searches.load(), 0u);
    // A crash: copy the files as they are, without closing.
    CopyLiveTree(dir_, dir_ + ".crashed");
  }
  for (const std::string& path : {dir_, dir_ + ".crashed"}) {
    SCOPED_TRACE(path);
    auto db = std::move(Database::Open(path, options)).value();
    auto c = std::move(db->GetCollection("items")).value();
    ASSERT_EQ(c->Count(), truth.size());
    for (const auto& [id, row] : truth) {
      auto got = std::move(c->Get({PointId(id)})).value();
      ASSERT_TRUE(got[0].has_value()) << id;
      ASSERT_EQ(got[0]->vectors.at(""),
                std::vector<float>(data.base.begin() + row * 16, data.base.begin() + (row + 1) * 16));
    }
    for (size_t i = 0; i < 50; ++i) {
      auto it = std::next(truth.begin(), (i * 37) % truth.size());
      SearchRequest req;
      req.queries.assign(data.base.begin() + it->second * 16, data.base.begin() + (it->second + 1) * 16);
      req.k = 20;
      // Exact among the points written from this row (the payload's "i"): the index must hold
      // this one, at distance 0.
      req.filter = "i = " + std::to_string(it->second);
      auto hits = std::move(c->Search(req)).value();
      bool found = false;
      for (const auto& h : hits[0]) found = found || (h.id == PointId(it->first) && h.distance == 0.0f);
      EXPECT_TRUE(found) << it->first;
    }
  }
  fs::remove_all(dir_ + ".crashed");
}


// Group commit (issue 10): upserts that arrive while one is inside its log fsync are committed
// together, with one more fsync, and all of them are acknowledged and searchable.
TEST_F(DatabaseTest, ConcurrentUpsertsShareOneLogCommit) {
  auto fs = std::make_shared<GatedLogFs>(rocksdb::FileSystem::Default());
  std::unique_ptr<rocksdb::Env> env;
  const DatabaseOptions options = GatedOptions(fs, &env);
  auto data = testing::Clustered(100, 1, 8, 10, 5);
  {
    auto db = std::move(Database::Open(dir_ + "/db", options)).value();
    auto c = std::move(db->CreateCollection(Spec("items", 8))).value();
    ASSERT_TRUE(c->Upsert(Records(data, 0, 10)).ok());
    fs->Close();
    const int syncs_before = fs->syncs();
    std::thread first([&] { EXPECT_TRUE(c->Upsert(Records(data, 10, 11)).ok()); });
    bool first_in_fsync = WaitUntil([&] { return fs->waiting() == 1; });
    std::vector<std::thread> rest;
    for (size_t t = 0; t < 7; ++t) {
      rest.emplace_back([&, t] { EXPECT_TRUE(c->Upsert(Records(data, 11 + t, 12 + t)).ok()); });
    }
    bool all_queued = WaitUntil([&] { return c->write_stats().queued == 7; });
    fs->Open();
    first.join();
    for (auto& t : rest) t.join();
    ASSERT_TRUE(first_in_fsync);
    ASSERT_TRUE(all_queued) << "queued: " << c->write_stats().queued;
    // The first upsert's fsync, then one for the seven that queued behind it.
    EXPECT_EQ(fs->syncs() - syncs_before, 2);
    WriteStats w = c->write_stats();
    EXPECT_EQ(w.upsert_requests, 9u);
    EXPECT_EQ(w.upsert_commits, 3u);
    EXPECT_EQ(w.queued, 0u);
    EXPECT_EQ(c->Count(), 18u);
    for (uint64_t id = 0; id < 18; ++id) ExpectFoundByOwnVector(*c, data, id);
  }
  // Nothing checkpointed: the reopen replays the group's log entries.
  auto db = std::move(Database::Open(dir_ + "/db", options)).value();
  auto c = std::move(db->GetCollection("items")).value();
  EXPECT_EQ(c->Count(), 18u);
  for (uint64_t id = 0; id < 18; ++id) ExpectFoundByOwnVector(*c, data, id);
}

// Two upserts of one group that write the same ids (an existing one and a new one) apply in
// arrival order: the later wins in the record, the vector index and the payload index, the new
// id takes one slot, and a reopen (log replay) agrees. With payloads cached and on disk.
TEST_F(DatabaseTest, ConcurrentUpsertsOfSameIdsApplyInArrivalOrder) {
  for (bool on_disk_payload : {false, true}) {
    SCOPED_TRACE(on_disk_payload ? "on_disk_payload" : "payloads in RAM");
    fs::remove_all(dir_);
    auto fs = std::make_shared<GatedLogFs>(rocksdb::FileSystem::Default());
    std::unique_ptr<rocksdb::Env> env;
    const DatabaseOptions options = GatedOptions(fs, &env);
    auto data = testing::Clustered(20, 1, 4, 2, 9);
    auto point = [](uint64_t id, float value, int label) {
      Record r;
      r.id = id;
      r.vectors[""] = std::vector<float>(4, value);
      r.payload = "{\"label\": " + std::to_string(label) + "}";
      return r;
    };
    auto check = [&](Collection& c) {
      EXPECT_EQ(c.Count(), 12u);
      auto got = std::move(c.Get({PointId(uint64_t{1}), PointId(uint64_t{100})})).value();
      ASSERT_TRUE(got[0] && got[1]);
      EXPECT_EQ(got[0]->payload, R"({"label":101})");
      EXPECT_EQ(got[0]->vectors.at("")[0], -30.0f);
      EXPECT_EQ(got[1]->payload, R"({"label":201})");
      EXPECT_EQ(got[1]->vectors.at("")[0], -50.0f);
      EXPECT_EQ(c.CountByFilter("label = 100").value(), 0u);
      EXPECT_EQ(c.CountByFilter("label = 101").value(), 1u);
      EXPECT_EQ(c.CountByFilter("label = 200").value(), 0u);
      EXPECT_EQ(c.CountByFilter("label = 201").value(), 1u);
      for (auto [value, id, exact] : {std::tuple{-30.0f, 1u, true}, std::tuple{-50.0f, 100u, true},
                                      std::tuple{30.0f, 1u, false}, std::tuple{50.0f, 100u, false}}) {
        SearchRequest req;
        req.queries = std::vector<float>(4, value);
        req.k = 1;
        auto hits = std::move(c.Search(req)).value();
        ASSERT_EQ(hits[0].size(), 1u);
        EXPECT_EQ(hits[0][0].distance == 0.0f, exact) << value;
        if (exact) EXPECT_EQ(std::get<uint64_t>(hits[0][0].id), id);
      }
    };
    {
      auto db = std::move(Database::Open(dir_ + "/db", options)).value();
      CollectionSpec spec = Spec("items", 4, "Flat");
      spec.on_disk_payload = on_disk_payload;
      auto c = std::move(db->CreateCollection(spec)).value();
      ASSERT_TRUE(c->Upsert(Records(data, 0, 10)).ok());
      fs->Close();
      std::thread leader([&] { EXPECT_TRUE(c->Upsert({point(50, 7.0f, 7)}).ok()); });
      bool in_fsync = WaitUntil([&] { return fs->waiting() == 1; });
      std::thread a([&] { EXPECT_TRUE(c->Upsert({point(1, 30.0f, 100), point(100, 50.0f, 200)}).ok()); });
      bool a_queued = WaitUntil([&] { return c->write_stats().queued == 1; });
      std::thread b([&] { EXPECT_TRUE(c->Upsert({point(100, -50.0f, 201), point(1, -30.0f, 101)}).ok()); });
      bool b_queued = WaitUntil([&] { return c->write_stats().queued == 2; });
      fs->Open();
      leader.join();
      a.join();
      b.join();
      ASSERT_TRUE(in_fsync && a_queued && b_queued);
      EXPECT_EQ(c->write_stats().upsert_commits, 3u);  // the first batch, the leader, a and b together
      check(*c);
    }
    auto db = std::move(Database::Open(dir_ + "/db", options)).value();
    check(*std::move(db->GetCollection("items")).value());
  }
}


// checkpoint_after_seconds (issue 13's replicas, and any slowly written collection): a few logged
// writes, far below checkpoint_every, are checkpointed once the last checkpoint is old enough,
// so a restart replays nothing. (Waits for the event with a generous bound; measures no time.)
TEST_F(DatabaseTest, OldCheckpointIsRenewedWhenTheLogHoldsWrites) {
  DatabaseOptions options;
  options.checkpoint_after_seconds = 1;
  options.checkpoint_every = 1000000;  // (never by count here)
  options.durability = Durability::kBuffered;
  const auto data = testing::Clustered(200, 1, 8, 4, 31);
  {
    auto db = std::move(Database::Open(dir_, options)).value();
    auto c = std::move(db->CreateCollection(Spec("trickle", 8, "HNSW16"))).value();
    const auto before = c->last_checkpoint();
    ASSERT_TRUE(c->Upsert(Records(data, 0, 5)).ok());
    bool renewed = false;
    for (int i = 0; i < 300 && !renewed; ++i) {  // up to 30 s
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      renewed = c->last_checkpoint() > before;
    }
    EXPECT_TRUE(renewed) << "5 logged writes were not checkpointed by age";
    ASSERT_TRUE(db->Close().ok());
  }
  auto db = std::move(Database::Open(dir_, options)).value();
  auto c = std::move(db->GetCollection("trickle")).value();
  EXPECT_EQ(c->Count(), 5u);
}

}  // namespace
}  // namespace fathom
