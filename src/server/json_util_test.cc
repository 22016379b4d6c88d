#include "server/json_util.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace fathom::server {
namespace {

TEST(JsonUtilTest, NestingDepthSkipsStringsAndEscapes) {
  EXPECT_EQ(JsonNestingDepth(""), 0u);
  EXPECT_EQ(JsonNestingDepth("{}"), 1u);
  EXPECT_EQ(JsonNestingDepth(R"({"a": [[1], {"b": 2}]})"), 3u);
  EXPECT_EQ(JsonNestingDepth(R"({"a": "[[[[\"{{{{"})"), 1u);
  EXPECT_EQ(JsonNestingDepth(std::string(100000, '[')), 100000u);  // no recursion, no crash
}

TEST(JsonUtilTest, ParseBodyRejectsWithPositionDepthAndType) {
  EXPECT_TRUE(ParseBody("", 8)->is_object());
  EXPECT_TRUE(ParseBody("  \n", 8)->is_object());
  auto bad = ParseBody(R"({"a": [1, 2,)", 8);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("line 1, column 13"), std::string::npos) << bad.status().message();
  auto deep = ParseBody(std::string(10, '[') + std::string(10, ']'), 8);
  EXPECT_EQ(deep.status().message(), "request body nests 10 levels deep; the limit is 8");
  EXPECT_EQ(ParseBody("[1]", 8).status().message(), "request body must be a JSON object, got array");
  auto utf8 = ParseBody("{\"a\": \"\xff\"}", 8);
  ASSERT_FALSE(utf8.ok());
  EXPECT_NE(utf8.status().message().find("UTF-8"), std::string::npos) << utf8.status().message();
  EXPECT_FALSE(ParseBody(R"({"a": NaN})", 8).ok());
  EXPECT_FALSE(ParseBody(R"({"a": 1e400})", 8).ok());
}

TEST(JsonUtilTest, CheckFieldsNamesTheUnknownField) {
  Json j = Json::parse(R"({"vector": [1], "lmit": 3})");
  Status s = CheckFields(j, "search request", {"vector", "limit"});
  EXPECT_EQ(s.message(), "unknown field 'lmit' in search request; expected one of: vector, limit");
  EXPECT_TRUE(CheckFields(j, "x", {"vector", "lmit"}).ok());
  EXPECT_EQ(CheckFields(Json(3), "point", {}).message(), "point must be a JSON object, got number");
}

TEST(JsonUtilTest, TypedGetters) {
  Json j = Json::parse(R"({"b": true, "n": 5, "neg": -2, "f": 2.5, "s": "x", "z": null})");
  EXPECT_TRUE(*GetBool(j, "b", false, ""));
  EXPECT_FALSE(*GetBool(j, "missing", false, ""));
  EXPECT_FALSE(GetBool(j, "n", false, "").ok());
  EXPECT_EQ(*GetUint(j, "n", 0, ""), 5u);
  EXPECT_EQ(*GetUint(j, "z", 7, ""), 7u);
  EXPECT_EQ(GetUint(j, "neg", 0, "search").status().message(), "search: field 'neg' must not be negative, got -2");
  EXPECT_FALSE(GetUint(j, "f", 0, "").ok());
  EXPECT_EQ(*GetString(j, "s", ""), "x");
  EXPECT_FALSE(GetString(j, "n", "").ok());
  EXPECT_FALSE(GetString(j, "missing", "").ok());
}

TEST(JsonUtilTest, PointIds) {
  EXPECT_EQ(std::get<uint64_t>(*ParsePointId(Json(42u), "p")), 42u);
  EXPECT_EQ(std::get<std::string>(*ParsePointId(Json("abc"), "p")), "abc");
  EXPECT_FALSE(ParsePointId(Json(-1), "p").ok());
  EXPECT_FALSE(ParsePointId(Json(1.5), "p").ok());
  EXPECT_FALSE(ParsePointId(Json(true), "p").ok());
  EXPECT_FALSE(ParsePointId(Json(""), "p").ok());
  EXPECT_FALSE(ParsePointId(Json(std::string(257, 'x')), "p").ok());
  EXPECT_EQ(std::get<uint64_t>(PointIdFromPath("18446744073709551615")), 18446744073709551615ull);
  EXPECT_EQ(std::get<std::string>(PointIdFromPath("18446744073709551616")), "18446744073709551616");
  EXPECT_EQ(std::get<std::string>(PointIdFromPath("abc")), "abc");
}

TEST(JsonUtilTest, VectorsFromArraysAndBase64) {
  std::vector<float> v;
  ASSERT_TRUE(ParseVector(Json::parse("[1, -2.5, 3e2]"), "q", &v).ok());
  EXPECT_EQ(v, (std::vector<float>{1, -2.5f, 300}));
  EXPECT_EQ(ParseVector(Json::parse("[1, 1e39]"), "q", &v).message(),
            "q: vector value 1e+39 at index 1 is outside the float32 range");
  EXPECT_FALSE(ParseVector(Json::parse("[1, \"2\"]"), "q", &v).ok());
  EXPECT_FALSE(ParseVector(Json::parse("{}"), "q", &v).ok());
  const std::vector<float> values = {0.f, -1.5f, 3.25f, 1e-20f, std::numeric_limits<float>::max()};
  for (size_t n = 0; n <= values.size(); ++n) {
    std::string text = EncodeBase64Floats(values.data(), n);
    ASSERT_TRUE(DecodeBase64Floats(text, "q", &v).ok()) << text;
    EXPECT_EQ(v, std::vector<float>(values.begin(), values.begin() + n));
    // Padding is optional.
    while (!text.empty() && text.back() == '=') text.pop_back();
    ASSERT_TRUE(DecodeBase64Floats(text, "q", &v).ok());
    EXPECT_EQ(v.size(), n);
  }
  EXPECT_EQ(EncodeBase64Floats(values.data(), 1), "AAAAAA==");
  EXPECT_FALSE(DecodeBase64Floats("AAAA!AAA", "q", &v).ok());
  EXPECT_FALSE(DecodeBase64Floats("AAAAAAA", "q", &v).ok());  // 5 bytes
  const float nan = std::nanf("");
  EXPECT_FALSE(DecodeBase64Floats(EncodeBase64Floats(&nan, 1), "q", &v).ok());
}

TEST(JsonUtilTest, FiltersAreBoundedInDepthAndLength) {
  EXPECT_EQ(*ParseFilter(Json(nullptr), 4, 100), "");
  EXPECT_EQ(*ParseFilter(Json("  "), 4, 100), "");
  EXPECT_EQ(*ParseFilter(Json("a = 1"), 4, 100), "a = 1");
  EXPECT_EQ(*ParseFilter(Json::parse(R"({"must": []})"), 4, 100), R"({"must":[]})");
  EXPECT_FALSE(ParseFilter(Json::parse(R"({"must": [{"must": [{"must": []}]}]})"), 4, 100).ok());
  EXPECT_FALSE(ParseFilter(Json("(((((a = 1)))))"), 4, 100).ok());
  EXPECT_TRUE(ParseFilter(Json("a = \"(((((\""), 4, 100).ok());  // parentheses inside a literal
  EXPECT_FALSE(ParseFilter(Json(std::string(101, 'a')), 4, 100).ok());
  EXPECT_FALSE(ParseFilter(Json(3), 4, 100).ok());
}

TEST(JsonUtilTest, Names) {
  EXPECT_TRUE(ValidateName("items_2024-v1.0", "collection name").ok());
  const std::vector<std::string> bad_names = {"",  ".", "..", "a/b", "../x", "a b", std::string(65, 'x'),
                                             std::string("a\0b", 3), "\xc3\xa9"};
  for (const std::string& bad : bad_names) {
    EXPECT_FALSE(ValidateName(bad, "collection name").ok()) << bad;
  }
}

TEST(JsonUtilTest, Writers) {
  std::string out;
  AppendJsonString(&out, "a\"b\\c\n\x01");
  EXPECT_EQ(out, R"("a\"b\\c\n\u0001")");
  out.clear();
  AppendNumber(&out, 0.5);
  out += ",";
  AppendNumber(&out, std::nan(""));
  EXPECT_EQ(out, "0.5,null");
  out.clear();
  AppendPointId(&out, PointId{uint64_t{7}});
  AppendPointId(&out, PointId{std::string("x")});
  EXPECT_EQ(out, "7\"x\"");
  out.clear();
  AppendFloats(&out, {0.1f, -2.f});
  EXPECT_EQ(out, "[0.1,-2]");
  EXPECT_EQ(Dump(Json("\xff")), "\"\xef\xbf\xbd\"");  // replaced, not thrown
}

}  // namespace
}  // namespace fathom::server
