#include "cli/import.h"

#include <gtest/gtest.h>

#include <random>

namespace fathom::cli {
namespace {

CollectionSpec Unnamed(size_t dim) {
  CollectionSpec spec;
  spec.name = "c";
  spec.vectors = {VectorSpec{"", dim, Metric::kL2, "Flat"}};
  return spec;
}

CollectionSpec Named() {
  CollectionSpec spec;
  spec.name = "m";
  spec.vectors = {VectorSpec{"image", 2, Metric::kL2, "Flat"},
                  VectorSpec{"text", 3, Metric::kCosine, "Flat"}};
  return spec;
}

std::string ErrorOf(std::string_view line, const CollectionSpec& spec) {
  auto r = ParseJsonRecord(line, spec, "", 0);
  return r.ok() ? "" : r.status().message();
}

TEST(ParseJsonRecordTest, IntegerAndStringIdsPayloadAndVector) {
  auto r = ParseJsonRecord(R"({"id": 7, "vector": [1, 2.5], "payload": {"a": [1, "x"]}})",
                           Unnamed(2), "", 0);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(std::get<uint64_t>(r->id), 7u);
  EXPECT_EQ(r->vectors.at(""), (std::vector<float>{1.0f, 2.5f}));
  EXPECT_EQ(r->payload, R"({"a":[1,"x"]})");
  r = ParseJsonRecord(R"({"id": "7", "vector": [1, 2]})", Unnamed(2), "", 0);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(std::get<std::string>(r->id), "7");  // JSON says string: it stays one
  EXPECT_EQ(r->payload, "{}");
}

TEST(ParseJsonRecordTest, MissingIdUsesDefault) {
  auto r = ParseJsonRecord(R"({"vector": [1, 2]})", Unnamed(2), "", 99);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(std::get<uint64_t>(r->id), 99u);
}

TEST(ParseJsonRecordTest, NamedVectors) {
  auto r = ParseJsonRecord(R"({"id": 1, "vectors": {"image": [1, 2], "text": [1, 2, 3]}})", Named(),
                           "", 0);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->vectors.size(), 2u);
  r = ParseJsonRecord(R"({"id": 1, "vector": [1, 2, 3]})", Named(), "text", 0);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->vectors.count("text"), 1u);
  EXPECT_NE(
      ErrorOf(R"({"id": 1, "vectors": {"audio": [1]}})", Named()).find("no vector named 'audio'"),
      std::string::npos);
  EXPECT_NE(ErrorOf(R"({"id": 1, "vectors": {"text": [1, 2]}})", Named()).find("expects 3"),
            std::string::npos);
}

TEST(ParseJsonRecordTest, RejectsBadInputWithAReason) {
  const CollectionSpec spec = Unnamed(2);
  EXPECT_NE(ErrorOf(R"({"id": 1, "vector": [1, 2)", spec).find("invalid JSON"), std::string::npos);
  EXPECT_NE(ErrorOf(R"([1, 2])", spec).find("expected a JSON object"), std::string::npos);
  EXPECT_NE(ErrorOf(R"({"id": -1, "vector": [1, 2]})", spec).find("non-negative"),
            std::string::npos);
  EXPECT_NE(ErrorOf(R"({"id": 1.5, "vector": [1, 2]})", spec).find("non-negative"),
            std::string::npos);
  EXPECT_NE(ErrorOf(R"({"id": 1, "vector": [1, 2, 3]})", spec).find("has 3 dimensions"),
            std::string::npos);
  EXPECT_NE(ErrorOf(R"({"id": 1, "vector": [1, "x"]})", spec).find("not a number"),
            std::string::npos);
  EXPECT_NE(ErrorOf(R"({"id": 1, "vector": [1, 1e39]})", spec).find("finite float32"),
            std::string::npos);
  EXPECT_NE(ErrorOf(R"({"id": 1, "vector": [1, 2], "payload": 3})", spec).find("JSON object"),
            std::string::npos);
  EXPECT_NE(ErrorOf(R"({"id": 1, "vector": [1, 2], "paylod": {}})", spec).find("unknown key"),
            std::string::npos);
  EXPECT_NE(ErrorOf(R"({"id": 1})", spec).find("no \"vector\""), std::string::npos);
  EXPECT_NE(
      ErrorOf(R"({"id": 1, "vector": [1, 2], "vectors": {"": [1, 2]}})", spec).find("not both"),
      std::string::npos);
}

// Mutated lines (bytes flipped, dropped, duplicated, truncated) must give a record or an
// InvalidArgument, never a crash or an exception: import is fed whatever file a user has.
TEST(ParseJsonRecordTest, SurvivesMutatedInput) {
  const std::vector<std::string> seeds = {
      R"({"id": 7, "vector": [1, 2.5], "payload": {"a": [1, "x", {"b": null}]}})",
      R"({"id": "s", "vectors": {"image": [1, 2], "text": [1e-3, -2, 3]}, "payload": {}})",
  };
  const CollectionSpec unnamed = Unnamed(2);
  const CollectionSpec named = Named();
  std::mt19937 rng(1234);
  for (int iter = 0; iter < 20000; ++iter) {
    std::string line = seeds[iter % seeds.size()];
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !line.empty(); ++e) {
      size_t pos = rng() % line.size();
      switch (rng() % 4) {
        case 0: line[pos] = static_cast<char>(rng() % 256); break;
        case 1: line.erase(pos, 1); break;
        case 2: line.insert(pos, 1, line[rng() % line.size()]); break;
        case 3: line.resize(pos); break;
      }
    }
    for (const CollectionSpec* spec : {&unnamed, &named}) {
      auto r = ParseJsonRecord(line, *spec, "", 0);
      if (!r.ok()) {
        EXPECT_TRUE(r.status().IsInvalidArgument()) << line << ": " << r.status().ToString();
      }
    }
  }
}

}  // namespace
}  // namespace fathom::cli
