// The Api without sockets: handlers driven directly, as a fuzzer would drive them.
#include "server/api.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

namespace fathom::server {
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
    api_ = std::make_unique<Api>(dir_, options, std::move(db).value(), ApiLimits{});
  }
  void TearDown() override {
    api_.reset();
    fs::remove_all(dir_);
  }

  static ApiRequest Req(std::string_view body, std::vector<std::string> params) {
    ApiRequest r;
    r.body = body;
    r.params = std::move(params);
    return r;
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
  EXPECT_EQ(r.result, R"({"status":"completed","upserted":2})");
  r = api_->Search(Req(R"({"vector": [0.9, 0.9], "limit": 2, "with_payload": true})", {"c"}));
  ASSERT_TRUE(r.ok()) << r.error;
  auto hits = Json::parse(r.result);
  EXPECT_EQ(hits[0]["id"], "two");
  EXPECT_EQ(hits[1]["payload"], Json::parse(R"({"a": 1})"));
  EXPECT_NEAR(hits[0]["distance"].get<double>(), 0.02, 1e-6);
  EXPECT_NEAR(hits[0]["score"].get<double>(), std::sqrt(0.02), 1e-6);
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
}

}  // namespace
}  // namespace fathom::server
