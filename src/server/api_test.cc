// The Api without sockets: handlers driven directly, as a fuzzer would drive them.
#include "server/api.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <random>
#include <shared_mutex>

namespace fathom::server {

struct ApiTestPeer {
  // Whether the simdjson fast path accepts `body` for collection `name`.
  static bool FastPathTakes(Api& api, std::string_view body, bool batch, const std::string& name) {
    std::shared_lock lock(api.db_mutex_);
    auto c = api.Find(name);
    std::vector<Api::ParsedSearch> parsed;
    return c.ok() && api.FastParseSearches(body, (*c)->spec(), batch, &parsed);
  }
};

namespace {
namespace fs = std::filesystem;

class ApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() /
            ("fathom_api_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    fs::remove_all(dir_);
    DatabaseOptions options;
    options.durability = Durability::kBuffered;
    auto db = Database::Open(dir_, options);
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    api_ = std::make_unique<Api>(dir_, std::move(db).value(), ApiLimits{});
  }
  void TearDown() override {
    api_.reset();
    fs::remove_all(dir_);
  }

  // A Euclid collection `name` of points 1..9 at (i, 0) with payload {"n": i}.
  void MakeLine(const std::string& name) {
    Reply r = api_->CreateCollection(Req(R"({"vectors": {"size": 2, "distance": "Euclid"}})", {name}));
    ASSERT_TRUE(r.ok()) << r.error;
    std::string points = R"({"points": [)";
    for (int i = 1; i <= 9; ++i) {
      if (i > 1) points += ",";
      points += R"({"id": )" + std::to_string(i) + R"(, "vector": [)" + std::to_string(i) +
                R"(, 0], "payload": {"n": )" + std::to_string(i) + "}}";
    }
    r = api_->UpsertPoints(Req(points + "]}", {name}));
    ASSERT_TRUE(r.ok()) << r.error;
  }

  static ApiRequest Req(std::string_view body, std::vector<std::string> params) {
    ApiRequest r;
    r.body = body;
    r.params = std::move(params);
    return r;
  }

  // Answers `body` with the fast path on and off; they must agree on status, result and error.
  void ExpectSamePaths(const std::string& body, bool batch, const std::string& collection) {
    ApiRequest fast = Req(body, {collection});
    ApiRequest slow = Req(body, {collection});
    slow.fast_parse = false;
    Reply a = batch ? api_->SearchBatch(fast) : api_->Search(fast);
    Reply b = batch ? api_->SearchBatch(slow) : api_->Search(slow);
    EXPECT_EQ(a.http_status, b.http_status) << body;
    EXPECT_EQ(a.result, b.result) << body;
    EXPECT_EQ(a.error, b.error) << body;
  }

  // A collection "c" (2 dimensions, unnamed, L2, with payloads) and "n" (named vectors "a", 2
  // dimensions, and "b", 3).
  void MakeSearchCollections() {
    ASSERT_TRUE(api_->CreateCollection(Req(R"({"vectors": {"size": 2, "distance": "l2", "index": "Flat"}})", {"c"})).ok());
    ASSERT_TRUE(api_->UpsertPoints(Req(R"({"points": [{"id": 1, "vector": [0, 0], "payload": {"a": 1}},
        {"id": "two", "vector": [1, 1], "payload": {"a": 2}}, {"id": 3, "vector": [-1, 0.5]}]})", {"c"})).ok());
    ASSERT_TRUE(api_->CreateCollection(Req(R"({"vectors": {"a": {"size": 2, "distance": "Dot", "index": "Flat"},
        "b": {"size": 3, "distance": "Cosine", "index": "Flat"}}})", {"n"})).ok());
    ASSERT_TRUE(api_->UpsertPoints(Req(R"({"points": [{"id": 1, "vector": {"a": [1, 0], "b": [0, 1, 0]}},
        {"id": 2, "vector": {"a": [0, 1], "b": [1, 0, 0]}}]})", {"n"})).ok());
  }

  std::string dir_;
  std::unique_ptr<Api> api_;
};

TEST_F(ApiTest, CreateUpsertSearch) {
  Reply r = api_->CreateCollection(Req(R"({"vectors": {"size": 2, "distance": "l2", "index": "Flat"}})", {"c"}));
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.result, "true");
  r = api_->UpsertPoints(Req(R"({"points": [{"id": 1, "vector": [0, 0], "payload": {"a": 1}},
                                            {"id": "two", "vector": [1, 1]}]})", {"c"}));
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.result, R"({"operation_id":1,"status":"completed","upserted":2})");
  r = api_->Search(Req(R"({"vector": [0.9, 0.9], "limit": 2, "with_payload": true})", {"c"}));
  ASSERT_TRUE(r.ok()) << r.error;
  auto hits = Json::parse(r.result);
  EXPECT_EQ(hits[0]["id"], "two");
  EXPECT_EQ(hits[1]["payload"], Json::parse(R"({"a": 1})"));
  EXPECT_NEAR(hits[0]["distance"].get<double>(), 0.02, 1e-6);
  EXPECT_NEAR(hits[0]["score"].get<double>(), std::sqrt(0.02), 1e-6);
}

// params.checks (a Fathom extension) reaches a budgeted tree: a KD forest answers exactly without
// it and approximately with a tiny budget, in single and batch searches alike; out of range is
// a 400 that says the limit.
TEST_F(ApiTest, ChecksBudgetReachesTheTrees) {
  ASSERT_TRUE(api_->CreateCollection(
                      Req(R"({"vectors": {"size": 16, "distance": "Euclid", "index": "KDForest8"}})", {"t"}))
                  .ok());
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Json points = Json::array();
  for (int i = 0; i < 3000; ++i) {
    Json v = Json::array();
    for (int j = 0; j < 16; ++j) v.push_back(normal(rng));
    points.push_back(Json{{"id", i}, {"vector", v}});
  }
  ASSERT_TRUE(api_->UpsertPoints(Req(Json{{"points", points}}.dump(), {"t"})).ok());
  size_t differ = 0;
  for (int q = 0; q < 20; ++q) {
    Json v = Json::array();
    for (int j = 0; j < 16; ++j) v.push_back(normal(rng));
    Json body{{"vector", v}, {"limit", 10}};
    Reply exact = api_->Search(Req(body.dump(), {"t"}));
    body["params"] = Json{{"checks", 1}};
    Reply budget = api_->Search(Req(body.dump(), {"t"}));
    ASSERT_TRUE(exact.ok() && budget.ok()) << exact.error << budget.error;
    Reply batch = api_->SearchBatch(Req(Json{{"searches", Json::array({body})}}.dump(), {"t"}));
    ASSERT_TRUE(batch.ok()) << batch.error;
    EXPECT_EQ(Json::parse(batch.result)[0], Json::parse(budget.result));
    differ += exact.result != budget.result;
  }
  EXPECT_GT(differ, 0u);  // one leaf per tree is not the exact answer every time
  Reply r = api_->Search(Req(R"({"vector": [0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0], "params": {"checks": 2000000000}})", {"t"}));
  EXPECT_EQ(r.http_status, 400);
  EXPECT_NE(r.error.find("params.checks must be at most 1073741824"), std::string::npos) << r.error;
}

TEST_F(ApiTest, ErrorsMapToHttpStatuses) {
  EXPECT_EQ(api_->GetCollection(Req("", {"missing"})).http_status, 404);
  EXPECT_EQ(api_->GetCollection(Req("", {".."})).http_status, 400);
  ASSERT_TRUE(api_->CreateCollection(Req(R"({"vectors": {"size": 2, "distance": "Dot"}})", {"c"})).ok());
  EXPECT_EQ(api_->CreateCollection(Req(R"({"vectors": {"size": 2, "distance": "Dot"}})", {"c"})).http_status, 409);
  Reply r = api_->Search(Req(R"({"vector": [1, 2], "limit": 0})", {"c"}));
  EXPECT_EQ(r.http_status, 400);
  EXPECT_NE(r.error.find("limit must be between 1 and 10000"), std::string::npos) << r.error;
  EXPECT_EQ(api_->UpsertPoints(Req("{", {"c"})).http_status, 400);
  EXPECT_EQ(HttpStatusFor(Status::Internal("x")), 500);
  EXPECT_EQ(HttpStatusFor(Status::AlreadyExists("x")), 409);
}

TEST_F(ApiTest, SnapshotAndRecoverInTheRunningDatabase) {
  ASSERT_TRUE(api_->CreateCollection(Req(R"({"vectors": {"size": 2, "distance": "l2"}})", {"c"})).ok());
  ASSERT_TRUE(api_->UpsertPoints(Req(R"({"points": [{"id": 1, "vector": [1, 2]}]})", {"c"})).ok());
  Reply snap = api_->CreateSnapshot(Req("", {"c"}));
  ASSERT_TRUE(snap.ok()) << snap.error;
  std::string name = Json::parse(snap.result)["name"];
  Reply rec = api_->RecoverSnapshot(Req(R"({"snapshot": ")" + name + R"(", "name": "d"})", {"c"}));
  ASSERT_TRUE(rec.ok()) << rec.error;
  EXPECT_EQ(rec.result, R"({"name":"d","points_count":1})");
  EXPECT_TRUE(api_->GetCollection(Req("", {"c"})).ok());
  EXPECT_EQ(api_->RecoverSnapshot(Req(R"({"snapshot": ")" + name + R"("})", {"c"})).http_status, 409);
  EXPECT_EQ(api_->RecoverSnapshot(Req(R"({"snapshot": "../../x"})", {"c"})).http_status, 400);
  // A cluster's snapshot (cluster.json beside one folder per shard) is refused here, saying why.
  auto path = api_->NewSnapshotPath("c");
  ASSERT_TRUE(path.ok()) << path.status().ToString();
  std::filesystem::create_directories(*path + "/shard-0");
  std::ofstream(*path + "/cluster.json") << R"({"fathom_cluster_snapshot": 1, "shards": 1})";
  Reply cluster = api_->RecoverSnapshot(
      Req(R"({"snapshot": ")" + std::filesystem::path(*path).filename().string() + R"(", "name": "e"})", {"c"}));
  EXPECT_EQ(cluster.http_status, 400);
  EXPECT_NE(cluster.error.find("recover it through a node of a cluster"), std::string::npos) << cluster.error;
  EXPECT_EQ(api_->GetCollection(Req("", {"e"})).http_status, 404);
}

// The simdjson fast path for search bodies must give exactly what the nlohmann path gives:
// the same hits for what it takes, and for everything else the same precise error (it declines
// and the nlohmann path answers).
TEST_F(ApiTest, SearchFastPathMatchesTheNlohmannPath) {
  MakeSearchCollections();
  const float nan_and_one[2] = {std::nanf(""), 1.0f};
  const float one_two[2] = {1.0f, 2.0f};
  const std::string b64 = EncodeBase64Floats(one_two, 2);
  const std::string b64_nan = EncodeBase64Floats(nan_and_one, 2);
  // Bodies the fast path takes (checked below), then ones it must decline or reject alike.
  const std::vector<std::string> taken = {
      R"({"vector": [0.9, 0.9]})",
      R"({"vector":[1,2],"limit":3,"offset":1,"with_payload":true,"with_vector":true})",
      R"({"vector": ")" + b64 + R"("})",
      R"({"vector": ")" + b64 + R"(", "limit": 2, "params": {"ef": 10, "hnsw_ef": 20}})",
      R"({"vector": [1e-400, -0.0], "filter": "a = 1", "with_vectors": true, "with_vector": false})",
      R"({"vector": [1, 2], "filter": null, "params": null, "with_payload": null, "limit": null})",
      R"({"vector": [1, 2], "filter": "   "})",
      R"({"vec\u0074or": [1, 2], "offset": 0})",
      R"( {"vector": [18446744073709551615, -9223372036854775808]} )",
      R"({"vector": [1, 2], "limit": 5000, "offset": 5000})",
      R"({"vector": {"name": "", "vector": [1, 2]}})",
      R"({"vector": [3.4028234663852886e38, -1E5], "limit": 1})",
  };
  const std::vector<std::string> others = {
      "", "   ", "[]", "{", "{}", "null", "\xEF\xBB\xBF{\"vector\": [1, 2]}",
      std::string("{\"vector\": [1, 2]}\0", 19), R"({"vector": [1, 2]} x)", R"({"vector": [1, 2]}{})",
      R"({"vector": [1, 2], "filter": {"must": [{"key": "a", "match": {"value": 1}}]}})",
      R"({"vector": [1, 2], "filter": 5})", R"j({"vector": [1, 2], "filter": "((a = 1)"})j",
      R"({"vector": [1, 2], "lmit": 3})", R"({"vector": [1, 2], "params": {"x": 1}})",
      R"({"vector": [NaN, 1]})", R"({"vector": [1e39, 1]})", R"({"vector": [1e400, 1]})",
      R"({"vector": [-3.5e38, 1]})", R"({"vector": ")" + b64_nan + R"("})", R"({"vector": "AAA"})",
      R"({"vector": "AAAA!AAA"})", R"({"vector": [1, "2"]})", R"({"vector": [1, [2]]})",
      R"({"vector": [1, null]})", R"({"vector": 5})", R"({"vector": null})", R"({"limit": 3})",
      R"({"vector": [1, 2], "limit": "3"})", R"({"vector": [1, 2], "limit": 2.0})",
      R"({"vector": [1, 2], "limit": -1})", R"({"vector": [1, 2], "limit": -0})",
      R"({"vector": [1, 2], "offset": -0})", R"({"vector": [-0, 2], "offset": 0})",
      R"({"vector": [1, 2], "params": {"ef": -0}})", R"({"vector": [1, 2], "limit": 0})",
      R"({"vector": [1, 2], "limit": 10001})", R"({"vector": [1, 2], "limit": 5000, "offset": 5001})",
      R"({"vector": [1, 2], "limit": 18446744073709551615})",
      R"({"vector": [1, 2], "limit": 18446744073709551616})",
      R"({"vector": [1, 2], "params": {"ef": 1000000}})", R"({"vector": [1, 2], "params": [1]})",
      R"({"vector": [1, 2], "limit": 1, "limit": 2})", R"({"vector": [1, 2], "vector": [3, 4]})",
      R"({"vector": [1, 2], "params": {"ef": 1, "ef": 2}})",
      R"({"vector": [1, 2], "with_payload": 1})", R"({"vector": [1, 2], "with_vector": "yes"})",
      R"({"vector": [1, 2, 3]})", R"({"vector": []})", R"({"vector": {"vector": [1, 2]}})",
      R"({"vector": {"name": "a"}})", R"({"vector": {"name": null, "vector": [1, 2]}})",
      R"({"vector": [100000000000000000000000, 1]})", R"({"vector": [1, 2], "filter": "x = \ud800"})",
      "{\"vector\": [1, 2], \"filter\": \"a = \xff\"}", R"({"vector": [01, 2]})",
  };
  for (const auto& body : taken) {
    EXPECT_TRUE(ApiTestPeer::FastPathTakes(*api_, body, false, "c")) << body;
    EXPECT_TRUE(ApiTestPeer::FastPathTakes(*api_, R"({"searches": [)" + body + "]}", true, "c")) << body;
  }
  for (const auto* list : {&taken, &others}) {
    for (const auto& body : *list) {
      ExpectSamePaths(body, false, "c");
      ExpectSamePaths(R"({"searches": [)" + body + "]}", true, "c");
      ExpectSamePaths(R"({"searches": [{"vector": [0, 1]}, )" + body + "]}", true, "c");
    }
  }
  EXPECT_TRUE(ApiTestPeer::FastPathTakes(*api_, R"({"vector": {"name": "b", "vector": [1, 2, 3]}})", false, "n"));
  for (const std::string body : {R"({"vector": {"name": "a", "vector": [1, 2]}, "limit": 1})",
                                 R"({"vector": {"name": "b", "vector": [1, 2, 3]}, "with_vector": true})",
                                 R"({"vector": [1, 2]})", R"({"vector": {"name": "z", "vector": [1, 2]}})",
                                 R"({"vector": {"name": "a", "vector": [1, 2], "name": "b"}})",
                                 R"({"vector": {"name": "a", "vector": [1, 2], "x": 1}})",
                                 R"({"vector": {"name": 5, "vector": [1, 2]}})"}) {
    ExpectSamePaths(body, false, "n");
    ExpectSamePaths(R"({"searches": [)" + body + "]}", true, "n");
  }
  // Batch-level shapes; the grouping of equal searches is shared by both paths.
  const std::string a = R"({"vector": [0, 1], "limit": 2})";
  const std::string b = R"({"vector": [1, 1], "limit": 3, "with_payload": true})";
  EXPECT_TRUE(ApiTestPeer::FastPathTakes(*api_, R"({"searches": []})", true, "c"));
  EXPECT_TRUE(ApiTestPeer::FastPathTakes(*api_, "{\"searches\": [" + a + "," + b + "," + a + "]}", true, "c"));
  for (const std::string& body : std::vector<std::string>{R"({"searches": []})", "{\"searches\": [" + a + "," + b + "," + a + "]}",
                                 R"({"searches": null})", R"({"searches": {}})", R"({"searches": [1]})",
                                 R"({"searches": [[]]})", "{\"searches\": [" + a + "], \"x\": 1}",
                                 "{\"searches\": [" + a + "], \"searches\": [" + b + "]}", R"({})"}) {
    ExpectSamePaths(body, true, "c");
    ExpectSamePaths(body, false, "c");
  }
  // A missing collection: the body's errors come first, as before.
  ExpectSamePaths(R"({"vector": [1, 2]})", false, "missing");
  ExpectSamePaths("{", true, "missing");
}

// Limits that the fast path must honour exactly as the nlohmann path does.
TEST_F(ApiTest, SearchFastPathHonoursLimits) {
  ASSERT_TRUE(api_->CreateCollection(Req(R"({"vectors": {"size": 2, "distance": "l2", "index": "Flat"}})", {"c"})).ok());
  ASSERT_TRUE(api_->UpsertPoints(Req(R"({"points": [{"id": 1, "vector": [0, 0]}]})", {"c"})).ok());
  api_.reset();
  ApiLimits limits;
  limits.max_batch = 2;
  limits.max_batch_results = 25;
  limits.max_k = 20;
  limits.max_ef = 50;
  DatabaseOptions options;
  options.durability = Durability::kBuffered;
  auto db = Database::Open(dir_, options);
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  api_ = std::make_unique<Api>(dir_, std::move(db).value(), limits);
  const std::string one = R"({"vector": [1, 2], "limit": 10})";
  EXPECT_TRUE(ApiTestPeer::FastPathTakes(*api_, "{\"searches\": [" + one + "," + one + "]}", true, "c"));
  for (const std::string& body : std::vector<std::string>{"{\"searches\": [" + one + "," + one + "]}",
                                 "{\"searches\": [" + one + "," + one + "," + one + "]}",
                                 R"({"searches": [{"vector": {"name": "", "vector": [1, 2]}}]})",
                                 R"({"searches": [{"vector": [1, 2], "limit": 13}, {"vector": [1, 2], "limit": 13}]})",
                                 R"({"searches": [{"vector": [1, 2], "limit": 21}]})",
                                 R"({"searches": [{"vector": [1, 2], "params": {"hnsw_ef": 51}}]})"}) {
    ExpectSamePaths(body, true, "c");
  }
  // Below the depth of its deepest body the fast path steps aside: ParseBody refuses first.
  api_.reset();
  limits.max_json_depth = 4;
  db = Database::Open(dir_, options);
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  api_ = std::make_unique<Api>(dir_, std::move(db).value(), limits);
  const std::string deep = R"({"searches": [{"vector": {"name": "", "vector": [1, 2]}}]})";
  EXPECT_FALSE(ApiTestPeer::FastPathTakes(*api_, deep, true, "c"));
  ExpectSamePaths(deep, true, "c");
  EXPECT_EQ(api_->SearchBatch(Req(deep, {"c"})).http_status, 400);
}


// A batch search checks the request deadline between groups of searches: past it, 408 naming
// how far it got; before it, the whole batch runs.
TEST_F(ApiTest, BatchSearchStopsAtTheDeadlineWith408) {
  MakeSearchCollections();
  const std::string body = R"({"searches": [{"vector": [0, 0], "limit": 1}, {"vector": [1, 1], "limit": 2}]})";
  ApiRequest late = Req(body, {"c"});
  late.deadline = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  Reply r = api_->SearchBatch(late);
  EXPECT_EQ(r.http_status, 408);
  EXPECT_EQ(r.error, "batch search ran past the request time limit after 0 of 2 searches; send smaller batches");
  ApiRequest in_time = Req(body, {"c"});
  in_time.deadline = std::chrono::steady_clock::now() + std::chrono::hours(1);
  EXPECT_EQ(api_->SearchBatch(in_time).http_status, 200);
}

// After Close (shutdown), every handler answers 503 rather than touching a closed database.
TEST_F(ApiTest, ClosedDatabaseAnswers503) {
  MakeSearchCollections();
  ASSERT_TRUE(api_->Close().ok());
  EXPECT_FALSE(api_->ready());
  EXPECT_EQ(api_->ListCollections(Req("", {})).http_status, 503);
  EXPECT_EQ(api_->GetCollection(Req("", {"c"})).http_status, 503);
  EXPECT_EQ(api_->CreateCollection(Req(R"({"vectors": {"size": 2, "distance": "l2"}})", {"x"})).http_status, 503);
  EXPECT_EQ(api_->Search(Req(R"({"vector": [0, 0], "limit": 1})", {"c"})).http_status, 503);
  EXPECT_EQ(api_->UpsertPoints(Req(R"({"points": [{"id": 9, "vector": [0, 0]}]})", {"c"})).http_status, 503);
}

}  // namespace
}  // namespace fathom::server

namespace fathom::server {
namespace {

// Qdrant's calls and shapes (issue 14; tests/qdrant-js runs its official client): exists,
// scroll pages with next_page_offset, score_threshold, with_payload selectors, Cosine vectors
// returned normalised, ?wait=false acknowledged, match.text on an indexed field (read from
// payloads, not the index).
// Qdrant's universal query: by vector (the search's answer), by id (its neighbours, itself
// excluded), nearest and recommend objects, the batch form; what it cannot do is a clear 400.
TEST_F(ApiTest, QdrantQueryByVectorIdAndRecommend) {
  ASSERT_NO_FATAL_FAILURE(MakeLine("qq"));
  Reply r(Status::OK());
  auto ids = [](const Json& hits) {
    std::vector<int> out;
    for (const auto& h : hits) out.push_back(h["id"].get<int>());
    return out;
  };
  r = api_->Query(Req(R"({"query": [4.2, 0], "limit": 3, "with_payload": true})", {"qq"}));
  ASSERT_TRUE(r.ok()) << r.error;
  Json answer = Json::parse(r.result);
  EXPECT_EQ(ids(answer["points"]), (std::vector<int>{4, 5, 3}));
  EXPECT_EQ(answer["points"][0]["payload"]["n"], 4);
  Reply search = api_->Search(Req(R"({"vector": [4.2, 0], "limit": 3, "with_payload": true})", {"qq"}));
  EXPECT_EQ(answer["points"], Json::parse(search.result));  // the same hits as a search
  r = api_->Query(Req(R"({"query": 5, "limit": 2})", {"qq"}));
  ASSERT_TRUE(r.ok()) << r.error;
  std::vector<int> near = ids(Json::parse(r.result)["points"]);
  std::sort(near.begin(), near.end());
  EXPECT_EQ(near, (std::vector<int>{4, 6}));  // not 5 itself
  r = api_->Query(Req(R"({"query": {"nearest": [9, 0]}, "limit": 1, "filter": {"must": [{"key": "n", "range": {"lt": 5}}]}})", {"qq"}));
  EXPECT_EQ(ids(Json::parse(r.result)["points"]), (std::vector<int>{4}));
  r = api_->Query(Req(R"({"query": {"recommend": {"positive": [2], "negative": [9]}}, "limit": 1})", {"qq"}));
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(ids(Json::parse(r.result)["points"]), (std::vector<int>{1}));
  r = api_->QueryBatch(Req(R"({"searches": [{"query": [1, 0], "limit": 1}, {"query": 1, "limit": 1}]})", {"qq"}));
  ASSERT_TRUE(r.ok()) << r.error;
  answer = Json::parse(r.result);
  ASSERT_EQ(answer.size(), 2u);
  EXPECT_EQ(ids(answer[0]["points"]), (std::vector<int>{1}));
  EXPECT_EQ(ids(answer[1]["points"]), (std::vector<int>{2}));
  r = api_->Query(Req(R"({"limit": 1})", {"qq"}));
  EXPECT_EQ(r.http_status, 400);
  EXPECT_EQ(r.error, "query request: field 'query' is required (to list points, use scroll)");
  r = api_->Query(Req(R"({"query": {"fusion": "rrf"}})", {"qq"}));
  EXPECT_EQ(r.error, "query request: query 'fusion' fuses the results of prefetches: give 'prefetch'");
  r = api_->Query(Req(R"({"query": {"order_by": "n"}})", {"qq"}));
  EXPECT_EQ(r.error, "query request: query 'order_by' is not supported (a vector, a point id, nearest, recommend, or "
                     "with prefetch fusion are)");
  r = api_->Query(Req(R"({"query": 77})", {"qq"}));
  EXPECT_EQ(r.http_status, 404);
}

// Hybrid and multi-stage queries (Qdrant's prefetch): points 1..9 at (i, 0), Euclid. Expected
// answers worked out by hand from Qdrant's definitions: RRF adds 1 / (k + rank) per list (rank
// from 0, k = 2; weighted: 1 / ((rank + 1) / w + k - 1)); DBSF maps each list's scores from
// [mean - 3 sd, mean + 3 sd] onto [0, 1] and adds them; a vector over prefetches re-scores their
// points exactly; the request's filter applies inside every prefetch.
TEST_F(ApiTest, QdrantQueryPrefetchFusionAndRescoring) {
  ASSERT_NO_FATAL_FAILURE(MakeLine("hy"));
  Reply r(Status::OK());
  auto query = [&](const std::string& body) {
    Reply reply = api_->Query(Req(body, {"hy"}));
    EXPECT_TRUE(reply.ok()) << body << ": " << reply.error;
    return reply.ok() ? Json::parse(reply.result)["points"] : Json::array();
  };
  auto ids = [](const Json& hits) {
    std::vector<int> out;
    for (const auto& h : hits) out.push_back(h["id"].get<int>());
    return out;
  };
  // Lists: A = 4, 5, 3 (from 4.2); B = 6, 7, 5 (from 6.1).
  const std::string two = R"("prefetch": [{"query": [4.2, 0], "limit": 3}, {"query": [6.1, 0], "limit": 3}])";
  // RRF: 5 = 1/3 + 1/4, 4 = 6 = 1/2 (4 found first), 7 = 1/3, 3 = 1/4.
  Json hits = query("{" + two + R"(, "query": {"fusion": "rrf"}, "limit": 3, "with_payload": true})");
  EXPECT_EQ(ids(hits), (std::vector<int>{5, 4, 6}));
  ASSERT_EQ(hits.size(), 3u);
  EXPECT_NEAR(hits[0]["score"].get<double>(), 1.0 / 3 + 1.0 / 4, 1e-6);
  EXPECT_NEAR(hits[1]["score"].get<double>(), 0.5, 1e-6);
  EXPECT_EQ(hits[0]["payload"]["n"], 5);
  EXPECT_EQ(ids(query("{" + two + R"(, "query": {"fusion": "rrf"}, "limit": 2, "offset": 1})")), (std::vector<int>{4, 6}));
  // Weighted, k = 60, B counting 3x: 5 = 1/61 + 1/(3/3 + 59), 6 = 1/(1/3 + 59), 7 = 1/(2/3 + 59),
  // then 4 = 1/60.
  EXPECT_EQ(ids(query("{" + two + R"(, "query": {"rrf": {"k": 60, "weights": [1, 3]}}, "limit": 4})")),
            (std::vector<int>{5, 6, 7, 4}));
  // DBSF on the scores as reported (Euclid distances, negated: A -0.2, -0.8, -1.2; B -0.1, -0.9,
  // -1.1): 5 = 0.4730 + 0.3457, 6 = 0.7315, 4 = 0.7163.
  hits = query("{" + two + R"(, "query": {"fusion": "dbsf"}, "limit": 3})");
  EXPECT_EQ(ids(hits), (std::vector<int>{5, 6, 4}));
  ASSERT_EQ(hits.size(), 3u);
  EXPECT_NEAR(hits[0]["score"].get<double>(), 0.8187, 2e-3);
  EXPECT_NEAR(hits[1]["score"].get<double>(), 0.7315, 2e-3);
  EXPECT_NEAR(hits[2]["score"].get<double>(), 0.7163, 2e-3);
  // At most 64 prefetches in one request.
  std::string many = R"({"query": {"fusion": "rrf"}, "prefetch": [)";
  for (int i = 0; i < 65; ++i) many += std::string(i ? "," : "") + R"({"query": [1, 0], "limit": 1})";
  EXPECT_EQ(api_->Query(Req(many + "]}", {"hy"})).error, "query request: 65 prefetches in all; the limit is 64");
  // Re-scoring: the 5 points found near 4.2 (2..6), ordered by their distance to (2, 0): 1 is
  // nearer but was not prefetched. Scores are Euclid distances.
  hits = query(R"({"prefetch": {"query": [4.2, 0], "limit": 5}, "query": [2, 0], "limit": 3})");
  EXPECT_EQ(ids(hits), (std::vector<int>{2, 3, 4}));
  ASSERT_EQ(hits.size(), 3u);
  EXPECT_NEAR(hits[2]["score"].get<double>(), 2.0, 1e-5);
  // By a point id: its vector, itself left out.
  std::vector<int> near = ids(query(R"({"prefetch": {"query": [4.2, 0], "limit": 4}, "query": 5, "limit": 2})"));
  std::sort(near.begin(), near.end());
  EXPECT_EQ(near, (std::vector<int>{4, 6}));
  // The request's filter inside the prefetch: n < 5 near 6.1 is 4, 3, 2 (not 6, 7, 5 then nothing).
  EXPECT_EQ(ids(query(R"({"prefetch": {"query": [6.1, 0], "limit": 3}, "query": {"fusion": "rrf"},
                          "filter": {"must": [{"key": "n", "range": {"lt": 5}}]}})")),
            (std::vector<int>{4, 3, 2}));
  // A prefetch's score_threshold (Euclid: at most 1.0 away): 4 and 5, not 3.
  EXPECT_EQ(ids(query(R"({"prefetch": {"query": [4.2, 0], "limit": 5, "score_threshold": 1.0}, "query": {"fusion": "rrf"}})")),
            (std::vector<int>{4, 5}));
  // Nested: 2..6 re-scored by (9, 0) keeps 6 and 5.
  EXPECT_EQ(ids(query(R"({"prefetch": {"prefetch": {"query": [4.2, 0], "limit": 5}, "query": [9, 0], "limit": 2},
                          "query": {"fusion": "rrf"}})")),
            (std::vector<int>{6, 5}));
  auto error = [&](const std::string& body) { return api_->Query(Req(body, {"hy"})).error; };
  EXPECT_EQ(error(R"({"prefetch": {"query": [1, 0]}})"),
            "query request: with 'prefetch', 'query' says what to do with their results: a fusion "
            "({\"fusion\": \"rrf\"} or \"dbsf\"), a vector or a point id");
  EXPECT_EQ(error(R"({"prefetch": {"query": [1, 0]}, "query": {"fusion": "max"}})"),
            "query request: 'fusion' must be \"rrf\" or \"dbsf\", got \"max\"");
  EXPECT_EQ(error("{" + two + R"(, "query": {"rrf": {"weights": [1]}}})"),
            "query request: rrf 'weights' must be an array of one number per prefetch (2)");
  EXPECT_EQ(error(R"({"prefetch": {"query": [1, 0], "offset": 2}, "query": {"fusion": "rrf"}})"),
            "unknown field 'offset' in query request prefetch[0]; expected one of: prefetch, query, using, filter, "
            "params, score_threshold, limit, lookup_from");
  EXPECT_EQ(error(R"({"prefetch": {"query": [1, 0]}, "query": {"recommend": {"positive": [1]}}})"),
            "query request: query 'recommend' over prefetch results is not supported (a fusion, a vector or a point "
            "id is)");
  EXPECT_EQ(error(R"({"prefetch": {"query": [1, 0]}, "query": [1, 0, 0]})"),
            "query request: query vector has 3 dimensions; vector '' has 2");
  std::string deep = R"({"query": [1, 0]})";
  for (int i = 0; i < 5; ++i) deep = R"({"query": {"fusion": "rrf"}, "prefetch": )" + deep + "}";
  EXPECT_EQ(error(deep), "query request prefetch[0] prefetch[0] prefetch[0] prefetch[0]: prefetches nest more than 4 "
                         "levels deep");
}

// Qdrant's payload index endpoints on a live collection: PUT .../index with field_schema as a
// name or an object, listed in payload_schema, upserts then held to the type, DELETE drops it;
// unsupported kinds and missing indexes are clear errors.
TEST_F(ApiTest, QdrantFieldIndexCreatedAndDeleted) {
  Reply r = api_->CreateCollection(Req(R"({"vectors": {"size": 2, "distance": "Dot"}})", {"fi"}));
  ASSERT_TRUE(r.ok()) << r.error;
  r = api_->UpsertPoints(Req(R"({"points": [{"id": 1, "vector": [1, 0], "payload": {"n": 1, "t": "a", "at": "2024-01-02T03:04:05Z"}},
                                           {"id": 2, "vector": [0, 1], "payload": {"n": 2, "t": "b", "at": "2025-01-01"}}]})", {"fi"}));
  ASSERT_TRUE(r.ok()) << r.error;
  r = api_->CreateFieldIndex(Req(R"({"field_name": "n", "field_schema": "integer"})", {"fi"}));
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(Json::parse(r.result)["status"], "completed");
  r = api_->CreateFieldIndex(Req(R"({"field_name": "at", "field_schema": {"type": "datetime", "is_principal": true}})", {"fi"}));
  ASSERT_TRUE(r.ok()) << r.error;
  r = api_->CreateFieldIndex(Req(R"({"field_name": "t", "field_schema": "uuid"})", {"fi"}));
  ASSERT_TRUE(r.ok()) << r.error;
  Json info = Json::parse(api_->GetCollection(Req("", {"fi"})).result);
  EXPECT_EQ(info["payload_schema"]["n"]["data_type"], "integer");
  EXPECT_EQ(info["payload_schema"]["at"]["data_type"], "datetime");
  EXPECT_EQ(info["payload_schema"]["t"]["data_type"], "keyword");
  r = api_->UpsertPoints(Req(R"({"points": [{"id": 3, "vector": [1, 1], "payload": {"n": "three"}}]})", {"fi"}));
  EXPECT_EQ(r.http_status, 400);
  EXPECT_NE(r.error.find("payload field 'n' is indexed as integer"), std::string::npos) << r.error;
  r = api_->CountPoints(Req(R"({"filter": {"must": [{"key": "at", "range": {"lt": "2024-06-01"}}]}})", {"fi"}));
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(Json::parse(r.result)["count"], 1);
  r = api_->DeleteFieldIndex(Req("", {"fi", "n"}));
  ASSERT_TRUE(r.ok()) << r.error;
  r = api_->UpsertPoints(Req(R"({"points": [{"id": 3, "vector": [1, 1], "payload": {"n": "three"}}]})", {"fi"}));
  EXPECT_TRUE(r.ok()) << r.error;  // not indexed any more
  r = api_->DeleteFieldIndex(Req("", {"fi", "n"}));
  EXPECT_EQ(r.http_status, 404);
  EXPECT_EQ(r.error, "collection 'fi' has no payload index on 'n'");
  r = api_->CreateFieldIndex(Req(R"({"field_name": "t", "field_schema": "text"})", {"fi"}));
  EXPECT_EQ(r.error, "create-index request: 'text' indexes are not supported: match.text reads payloads, with no "
                     "index needed");
  r = api_->CreateFieldIndex(Req(R"({"field_name": "t", "field_schema": "colour"})", {"fi"}));
  EXPECT_EQ(r.error, "unknown field type 'colour': expected keyword, integer, float, bool or datetime");
  r = api_->CreateFieldIndex(Req(R"({"field_name": "t"})", {"fi"}));
  EXPECT_EQ(r.http_status, 400);
}

// Qdrant's Manhattan distance: the L1 order (not the L2 one: 1 = (2, 2), 2 = (3, 0), 3 = (0, 2.9)
// from the origin rank 3, 2, 1 by L1 and 1, 3, 2 by L2), scores are the distances, info names it;
// codes are refused with what works.
TEST_F(ApiTest, QdrantManhattanDistance) {
  Reply r = api_->CreateCollection(Req(R"({"vectors": {"size": 2, "distance": "Manhattan"}})", {"l1"}));
  ASSERT_TRUE(r.ok()) << r.error;
  r = api_->UpsertPoints(Req(R"({"points": [{"id": 1, "vector": [2, 2]}, {"id": 2, "vector": [3, 0]},
                                           {"id": 3, "vector": [0, 2.9]}]})", {"l1"}));
  ASSERT_TRUE(r.ok()) << r.error;
  for (const char* body : {R"({"vector": [0, 0], "limit": 3})", R"({"vector": [0, 0], "limit": 3, "params": {"exact": true}})"}) {
    r = api_->Search(Req(body, {"l1"}));
    ASSERT_TRUE(r.ok()) << r.error;
    Json hits = Json::parse(r.result);
    ASSERT_EQ(hits.size(), 3u);
    EXPECT_EQ(hits[0]["id"], 3);
    EXPECT_EQ(hits[1]["id"], 2);
    EXPECT_EQ(hits[2]["id"], 1);
    EXPECT_NEAR(hits[0]["score"].get<double>(), 2.9, 1e-5);
    EXPECT_NEAR(hits[2]["score"].get<double>(), 4.0, 1e-5);
  }
  r = api_->Search(Req(R"({"vector": [0, 0], "limit": 3, "score_threshold": 3.5})", {"l1"}));
  EXPECT_EQ(Json::parse(r.result).size(), 2u);  // (a distance: at most 3.5)
  Json info = Json::parse(api_->GetCollection(Req("", {"l1"})).result);
  EXPECT_EQ(info["config"]["params"]["vectors"]["distance"], "Manhattan");
  r = api_->CreateCollection(Req(R"({"vectors": {"size": 2, "distance": "Manhattan"},
                                     "quantization_config": {"scalar": {"type": "int8"}}})", {"l1q"}));
  EXPECT_EQ(r.http_status, 400);
  EXPECT_NE(r.error.find("l1 (Manhattan) distance is served by 'Flat' and 'HNSW<M>' on float32 vectors"), std::string::npos)
      << r.error;
}

// Qdrant's payload endpoints, with their request shapes; errors name what was wrong.
TEST_F(ApiTest, QdrantPayloadSetOverwriteDeleteClear) {
  Reply r = api_->CreateCollection(Req(R"({"vectors": {"size": 2, "distance": "Dot"}, "indexed_fields": {"t": "keyword"}})", {"p"}));
  ASSERT_TRUE(r.ok()) << r.error;
  r = api_->UpsertPoints(Req(R"({"points": [{"id": 1, "vector": [1, 0], "payload": {"t": "a", "n": 1}},
                                            {"id": 2, "vector": [0, 1], "payload": {"t": "b", "n": 2}},
                                            {"id": 3, "vector": [1, 1], "payload": {"t": "b", "n": 3}}]})", {"p"}));
  ASSERT_TRUE(r.ok()) << r.error;
  auto payload = [&](int id) {
    Reply got = api_->GetPoint(Req("", {"p", std::to_string(id)}));
    return Json::parse(got.result)["payload"];
  };
  r = api_->SetPayload(Req(R"({"payload": {"color": "red", "n": 10}, "points": [1, 2]})", {"p"}));
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(Json::parse(r.result)["status"], "completed");
  EXPECT_EQ(payload(1), Json::parse(R"({"t": "a", "n": 10, "color": "red"})"));
  r = api_->OverwritePayload(Req(R"({"payload": {"t": "c"}, "filter": {"must": [{"key": "t", "match": {"value": "b"}}]}})", {"p"}));
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(Json::parse(r.result)["updated"], 2);
  EXPECT_EQ(payload(3), Json::parse(R"({"t": "c"})"));
  r = api_->CountPoints(Req(R"({"filter": {"must": [{"key": "t", "match": {"value": "c"}}]}})", {"p"}));
  EXPECT_EQ(Json::parse(r.result)["count"], 2);
  r = api_->DeletePayload(Req(R"({"keys": ["color", "n"], "points": [1]})", {"p"}));
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(payload(1), Json::parse(R"({"t": "a"})"));
  r = api_->ClearPayload(Req(R"({"points": [1, 3]})", {"p"}));
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(payload(3), Json::object());
  r = api_->SetPayload(Req(R"({"payload": {"x": 1}, "points": [2, 42]})", {"p"}));
  EXPECT_EQ(r.http_status, 404);
  EXPECT_EQ(r.error, "point 42 does not exist in collection 'p' (no payload was changed)");
  EXPECT_FALSE(payload(2).contains("x"));
  r = api_->SetPayload(Req(R"({"payload": {"x": 1}})", {"p"}));
  EXPECT_EQ(r.http_status, 400);
  EXPECT_EQ(r.error, "send either 'points' (a list of ids) or 'filter', exactly one");
  r = api_->DeletePayload(Req(R"({"keys": [], "points": [2]})", {"p"}));
  EXPECT_EQ(r.error, "'keys' must be a non-empty list of payload keys");
  r = api_->SetPayload(Req(R"({"payload": {"x": 1}, "points": [2], "key": "a.b"})", {"p"}));
  EXPECT_EQ(r.http_status, 400);
}

TEST_F(ApiTest, QdrantScrollExistsThresholdAndSelectors) {
  Reply r = api_->CreateCollection(Req(R"({"vectors": {"size": 2, "distance": "Cosine"},
                                           "indexed_fields": {"t": "keyword"}, "hnsw_config": {"m": 8}})", {"q"}));
  ASSERT_TRUE(r.ok()) << r.error;
  r = api_->CollectionExists(Req("", {"q"}));
  EXPECT_EQ(r.result, R"({"exists":true})");
  r = api_->CollectionExists(Req("", {"nope"}));
  EXPECT_EQ(r.result, R"({"exists":false})");
  r = api_->GetCollection(Req("", {"q"}));
  auto info = Json::parse(r.result);
  EXPECT_EQ(info["config"]["params"]["vectors"]["distance"], "Cosine");
  EXPECT_EQ(info["config"]["hnsw_config"]["m"], 8);
  EXPECT_EQ(info["config"]["vectors"]["index"], "HNSW8");
  std::string points = R"({"points": [)";
  for (int i = 1; i <= 7; ++i) {
    if (i > 1) points += ",";
    points += R"({"id": )" + std::to_string(i) + R"(, "vector": [)" + std::to_string(i) +
              R"(, 1], "payload": {"t": "item )" + std::to_string(i) + R"(", "n": )" + std::to_string(i) + "}}";
  }
  points += "]}";
  ApiRequest upsert = Req(points, {"q"});
  upsert.query = {{"wait", "false"}};
  r = api_->UpsertPoints(upsert);
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(Json::parse(r.result)["status"], "acknowledged");

  std::vector<int> seen;
  Json offset = nullptr;
  for (int page = 0; page < 5; ++page) {
    Json body{{"limit", 3}, {"with_payload", {"n"}}};
    if (!offset.is_null()) body["offset"] = offset;
    const std::string text = body.dump();
    r = api_->ScrollPoints(Req(text, {"q"}));
    ASSERT_TRUE(r.ok()) << r.error;
    auto answer = Json::parse(r.result);
    for (const auto& p : answer["points"]) {
      seen.push_back(p["id"].get<int>());
      EXPECT_EQ(p["payload"].size(), 1u);  // only "n"
    }
    offset = answer["next_page_offset"];
    if (offset.is_null()) break;
  }
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, (std::vector<int>{1, 2, 3, 4, 5, 6, 7}));
  r = api_->ScrollPoints(Req(R"({"filter": {"must": [{"key": "t", "match": {"text": "m 3"}}]}})", {"q"}));
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(Json::parse(r.result)["points"].size(), 1u);
  r = api_->ScrollPoints(Req(R"({"offset": 99})", {"q"}));
  EXPECT_EQ(r.http_status, 404);

  r = api_->Search(Req(R"({"vector": [1, 1], "limit": 7, "score_threshold": 0.9, "with_payload": {"exclude": ["t"]}})", {"q"}));
  ASSERT_TRUE(r.ok()) << r.error;
  auto hits = Json::parse(r.result);
  ASSERT_FALSE(hits.empty());
  for (const auto& h : hits) {
    EXPECT_GE(h["score"].get<double>(), 0.9);
    EXPECT_FALSE(h["payload"].contains("t"));
  }
  EXPECT_LT(hits.size(), 7u);
  r = api_->GetPoints(Req(R"({"ids": [3], "with_vector": true})", {"q"}));
  auto v = Json::parse(r.result)[0]["vector"];
  EXPECT_NEAR(v[0].get<double>(), 3 / std::sqrt(10.0), 1e-6);
  EXPECT_NEAR(v[1].get<double>(), 1 / std::sqrt(10.0), 1e-6);
}

}  // namespace
}  // namespace fathom::server
