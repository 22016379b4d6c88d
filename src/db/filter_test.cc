#include "db/filter.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "db/field_type.h"

namespace fathom {
namespace {

using json = nlohmann::json;

Filter Text(std::string_view text) {
  Result<Filter> filter = Filter::ParseText(text);
  EXPECT_TRUE(filter.ok()) << text << ": " << filter.status().ToString();
  return filter.ok() ? *filter : Filter();
}

Filter Json(std::string_view text) {
  Result<Filter> filter = Filter::ParseJson(text);
  EXPECT_TRUE(filter.ok()) << text << ": " << filter.status().ToString();
  return filter.ok() ? *filter : Filter();
}

std::string TextError(std::string_view text) {
  Result<Filter> filter = Filter::ParseText(text);
  if (filter.ok()) return "parsed OK";
  EXPECT_TRUE(filter.status().IsInvalidArgument());
  return filter.status().message();
}

std::string JsonError(std::string_view text) {
  Result<Filter> filter = Filter::ParseJson(text);
  if (filter.ok()) return "parsed OK";
  EXPECT_TRUE(filter.status().IsInvalidArgument());
  return filter.status().message();
}

bool M(std::string_view filter_text, const char* payload) {
  return Text(filter_text).Matches(json::parse(payload));
}

// ---- FieldType ----------------------------------------------------------------------------

TEST(FieldTypeTest, NamesRoundTrip) {
  for (FieldType type :
       {FieldType::kKeyword, FieldType::kInteger, FieldType::kFloat, FieldType::kBool, FieldType::kDatetime}) {
    Result<FieldType> parsed = ParseFieldType(FieldTypeName(type));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, type);
  }
  EXPECT_STREQ(FieldTypeName(FieldType::kInteger), "integer");
  Result<FieldType> bad = ParseFieldType("Keyword");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(),
            "unknown field type 'Keyword': expected keyword, integer, float, bool or datetime");
}

// ---- Number -------------------------------------------------------------------------------

TEST(NumberTest, ComparesIntegersAndDoublesExactly) {
  const int64_t two53 = int64_t{1} << 53;
  EXPECT_TRUE(Number::Int(two53 + 1) > Number::Float(static_cast<double>(two53)));
  EXPECT_FALSE(Number::Int(two53 + 1) ==
               Number::Float(static_cast<double>(two53 + 1)));  // rounds to 2^53
  EXPECT_TRUE(Number::Int(5) == Number::Float(5.0));
  EXPECT_TRUE(Number::Int(0) < Number::Float(0.5));
  EXPECT_TRUE(Number::Int(1) > Number::Float(0.5));
  EXPECT_TRUE(Number::Int(-1) < Number::Float(-0.5));
  EXPECT_TRUE(Number::Int(std::numeric_limits<int64_t>::max()) <
              Number::Float(9223372036854775808.0));
  EXPECT_TRUE(Number::Int(std::numeric_limits<int64_t>::min()) ==
              Number::Float(-9223372036854775808.0));
  EXPECT_TRUE(Number::Int(std::numeric_limits<int64_t>::min()) > Number::Float(-1e300));
  const Number nan = Number::Float(std::numeric_limits<double>::quiet_NaN());
  EXPECT_FALSE(nan == Number::Int(0));
  EXPECT_FALSE(nan < Number::Int(0));
  EXPECT_FALSE(nan > Number::Int(0));
  EXPECT_EQ(Number::Float(5.0).ToString(), "5.0");
  EXPECT_EQ(Number::Float(2.5).ToString(), "2.5");
  EXPECT_EQ(Number::Int(-3).ToString(), "-3");
}

TEST(NumberTest, ReadsJsonNumbers) {
  EXPECT_TRUE(Number::FromJson(json::parse("7"))->is_int());
  EXPECT_FALSE(Number::FromJson(json::parse("7.0"))->is_int());
  EXPECT_FALSE(Number::FromJson(json("7")).has_value());
  // Unsigned values above int64 become doubles.
  const std::optional<Number> big = Number::FromJson(json::parse("18446744073709551615"));
  ASSERT_TRUE(big.has_value());
  EXPECT_FALSE(big->is_int());
  EXPECT_TRUE(*big > Number::Int(std::numeric_limits<int64_t>::max()));
}

// ---- text form: semantics -----------------------------------------------------------------

TEST(FilterTextTest, TheExampleFromTheDesign) {
  const Filter filter =
      Text(R"(category = "shoe" AND price < 50 AND tag IN ("a", "b") AND NOT sold)");
  EXPECT_TRUE(
      filter.Matches(json::parse(R"({"category":"shoe","price":20,"tag":"a","sold":false})")));
  EXPECT_TRUE(filter.Matches(json::parse(R"({"category":"shoe","price":49.5,"tag":["x","b"]})")));
  EXPECT_FALSE(filter.Matches(json::parse(R"({"category":"shoe","price":50,"tag":"a"})")));
  EXPECT_FALSE(filter.Matches(json::parse(R"({"category":"shoe","price":20,"tag":"c"})")));
  EXPECT_FALSE(
      filter.Matches(json::parse(R"({"category":"shoe","price":20,"tag":"a","sold":true})")));
  EXPECT_FALSE(filter.Matches(json::parse(R"({"category":"boot","price":20,"tag":"a"})")));
  EXPECT_FALSE(filter.Matches(json::parse(R"({"category":"shoe","tag":"a"})")));  // no price
  EXPECT_EQ(filter.Fields(), (std::vector<std::string>{"category", "price", "tag", "sold"}));
}

TEST(FilterTextTest, PrecedenceIsNotThenAndThenOr) {
  // a OR b AND c == a OR (b AND c)
  const Filter f = Text("a OR b AND c");
  ASSERT_EQ(f.root().type, FilterNode::Type::kOr);
  ASSERT_EQ(f.root().children.size(), 2u);
  EXPECT_EQ(f.root().children[1].type, FilterNode::Type::kAnd);
  EXPECT_TRUE(f.Matches(json::parse(R"({"a":true,"b":false,"c":false})")));
  EXPECT_FALSE(Text("(a OR b) AND c").Matches(json::parse(R"({"a":true,"b":false,"c":false})")));

  // NOT a AND b == (NOT a) AND b
  const Filter g = Text("NOT a AND b");
  ASSERT_EQ(g.root().type, FilterNode::Type::kAnd);
  EXPECT_EQ(g.root().children[0].type, FilterNode::Type::kNot);
  EXPECT_FALSE(g.Matches(json::parse(R"({"a":false,"b":false})")));
  EXPECT_TRUE(Text("NOT (a AND b)").Matches(json::parse(R"({"a":false,"b":false})")));

  // Chains flatten: one AND node with three children, not nested pairs.
  const Filter h = Text("a AND b AND c OR d");
  ASSERT_EQ(h.root().type, FilterNode::Type::kOr);
  EXPECT_EQ(h.root().children[0].children.size(), 3u);
  EXPECT_EQ(h.Depth(), 3u);
}

TEST(FilterTextTest, KeywordsAreCaseInsensitiveAndOperatorsHaveAliases) {
  const char* payload = R"({"x":1,"y":false,"z":null,"t":"b"})";
  EXPECT_TRUE(M("x = 1 and not y or z is null", payload));
  EXPECT_TRUE(M("x == 1 AnD t iN ('a', 'b')", payload));
  EXPECT_TRUE(M("x <> 2 AND x != 2", payload));
  EXPECT_TRUE(M("z Is NuLl AND x iS nOt NULL", payload));
  EXPECT_TRUE(M("y = FALSE AND NOT y = TRUE", payload));
}

TEST(FilterTextTest, BareFieldMeansEqualsTrue) {
  const Filter f = Text("sold");
  ASSERT_EQ(f.root().type, FilterNode::Type::kCondition);
  EXPECT_EQ(f.root().condition.op, Condition::Op::kEqual);
  EXPECT_TRUE(std::get<bool>(f.root().condition.values[0]));
  EXPECT_TRUE(M("sold", R"({"sold":true})"));
  EXPECT_FALSE(M("sold", R"({"sold":1})"));  // no coercion
  EXPECT_TRUE(M("NOT sold", R"({"sold":false})"));
  EXPECT_TRUE(M("NOT sold", R"({})"));
  EXPECT_TRUE(M("sold", R"({"sold":[false,true]})"));
}

TEST(FilterTextTest, MissingFieldsNeverMatchComparisons) {
  const char* empty = "{}";
  for (const char* f :
       {"x = 1", "x != 1", "x < 1", "x >= 1", "x IN (1, 2)", "x = \"a\"", "x", "x.y = 1"}) {
    EXPECT_FALSE(M(f, empty)) << f;
    EXPECT_FALSE(M(f, R"({"x":null})")) << f;
  }
  EXPECT_TRUE(M("x IS NULL", empty));
  EXPECT_TRUE(M("NOT x = 1", empty));
}

TEST(FilterTextTest, IsNullMeansNoNonNullValue) {
  EXPECT_TRUE(M("x IS NULL", R"({})"));
  EXPECT_TRUE(M("x IS NULL", R"({"x":null})"));
  EXPECT_TRUE(M("x IS NULL", R"({"x":[]})"));
  EXPECT_TRUE(M("x IS NULL", R"({"x":[null]})"));
  EXPECT_FALSE(M("x IS NULL", R"({"x":[1,null]})"));
  EXPECT_FALSE(M("x IS NULL", R"({"x":0})"));
  EXPECT_FALSE(M("x IS NULL", R"({"x":{}})"));
  EXPECT_TRUE(M("x IS NOT NULL", R"({"x":""})"));
  EXPECT_FALSE(M("x IS NOT NULL", R"({"x":[null]})"));
}

TEST(FilterTextTest, NotEqualNeedsAValue) {
  EXPECT_TRUE(M("x != 1", R"({"x":2})"));
  EXPECT_TRUE(M("x != 1", R"({"x":"1"})"));
  EXPECT_FALSE(M("x != 1", R"({"x":1.0})"));
  EXPECT_FALSE(M("x != 1", R"({})"));
  EXPECT_FALSE(M("x != 1", R"({"x":[]})"));
  EXPECT_FALSE(M("x != 1", R"({"x":[2,1]})"));  // one value equals
  EXPECT_TRUE(M("x != 1", R"({"x":[2,3]})"));
}

TEST(FilterTextTest, NumbersCompareByValueAcrossIntAndFloat) {
  EXPECT_TRUE(M("x = 5.0", R"({"x":5})"));
  EXPECT_TRUE(M("x = 5", R"({"x":5.0})"));
  EXPECT_FALSE(M("x = 5", R"({"x":5.5})"));
  EXPECT_TRUE(M("x < 5.5", R"({"x":5})"));
  EXPECT_FALSE(M("x > 5.5", R"({"x":5})"));
  EXPECT_TRUE(M("x >= -1.5", R"({"x":-1})"));
  EXPECT_FALSE(M("x = \"5\"", R"({"x":5})"));
  EXPECT_FALSE(M("x = 1", R"({"x":true})"));
  // 2^53 + 1 is not the double 2^53.
  EXPECT_FALSE(M("x = 9007199254740992.0", R"({"x":9007199254740993})"));
  EXPECT_TRUE(M("x > 9007199254740992.0", R"({"x":9007199254740993})"));
  EXPECT_TRUE(M("x = 9007199254740993", R"({"x":9007199254740993})"));
  // Integers beyond int64 in the text become doubles, like unsigned JSON integers do.
  EXPECT_TRUE(M("x = 18446744073709551615", R"({"x":18446744073709551615})"));
  EXPECT_TRUE(M("x > 9223372036854775807", R"({"x":18446744073709551615})"));
  EXPECT_TRUE(M("x < 1e3 AND x > -2.5E-1", R"({"x":0})"));
}

TEST(FilterTextTest, ArraysMatchWhenAnyElementMatches) {
  EXPECT_TRUE(M(R"(tags = "b")", R"({"tags":["a","b"]})"));
  EXPECT_TRUE(M(R"(tags IN ("x", "a"))", R"({"tags":["a","b"]})"));
  EXPECT_FALSE(M(R"(tags = "c")", R"({"tags":["a","b"]})"));
  // Two conditions may be satisfied by different elements.
  EXPECT_TRUE(M("n > 10 AND n < 50", R"({"n":[1,100]})"));
  // Arrays nested directly in arrays are not unwrapped.
  EXPECT_FALSE(M("n = 1", R"({"n":[[1]]})"));
}

TEST(FilterTextTest, NestedPathsWalkObjectsAndArraysOfObjects) {
  EXPECT_TRUE(M(R"(meta.color = "red")", R"({"meta":{"color":"red"}})"));
  EXPECT_TRUE(M(R"(meta.color = "red")", R"({"meta":[{"color":"blue"},{"color":["red"]}]})"));
  EXPECT_FALSE(M(R"(meta.color = "red")", R"({"meta":"red"})"));
  EXPECT_FALSE(M(R"(meta.color = "red")", R"({"meta.color":"red"})"));  // dots always nest
  EXPECT_TRUE(M("a.b.c >= 2", R"({"a":{"b":{"c":2}}})"));
  EXPECT_TRUE(M("meta.color IS NULL", R"({"meta":[{"size":1}]})"));
  std::vector<const json*> values;
  const json payload = json::parse(R"({"m":[{"c":1},{"c":[2,[3]]},{"d":4},5]})");
  CollectFieldValues(payload, {"m", "c"}, &values);
  ASSERT_EQ(values.size(), 2u);
  EXPECT_EQ(*values[0], 1);
  EXPECT_EQ(*values[1], 2);
}

TEST(FilterTextTest, StringLiteralsAndEscapes) {
  EXPECT_TRUE(M(R"(s = "a\"b\\c\/\n\t")", R"({"s":"a\"b\\c/\n\t"})"));
  EXPECT_TRUE(M(R"(s = "caf\u00e9 \ud83d\ude00")", "{\"s\":\"caf\xc3\xa9 \xf0\x9f\x98\x80\"}"));
  EXPECT_TRUE(M(R"(s = 'it\'s')", R"({"s":"it's"})"));
  EXPECT_TRUE(M(R"(s = "it's")", R"({"s":"it's"})"));
  EXPECT_TRUE(M(R"(s = "")", R"({"s":""})"));
}

TEST(FilterTextTest, EmptyInListMatchesNothing) {
  EXPECT_FALSE(M("x IN ()", R"({"x":1})"));
  EXPECT_TRUE(M("NOT x IN ()", R"({"x":1})"));
}

// ---- text form: errors --------------------------------------------------------------------

TEST(FilterTextTest, ErrorsNameTheColumnAndWhatWasExpected) {
  EXPECT_EQ(TextError("price_total <"),
            "filter parse error at column 14: expected a value (string, number, true or false) "
            "after '<', found end of input");
  EXPECT_EQ(TextError("x = null"),
            "filter parse error at column 5: expected a value (string, number, true or false) "
            "after '=', found 'null' (use IS NULL)");
  EXPECT_EQ(TextError("x != NULL"),
            "filter parse error at column 6: expected a value (string, number, true or false) "
            "after '!=', found 'NULL' (use IS NOT NULL)");
  EXPECT_EQ(TextError("a = 1 b = 2"),
            "filter parse error at column 7: expected AND, OR or end of input, found 'b'");
  EXPECT_EQ(TextError("(a = 1"),
            "filter parse error at column 7: expected AND, OR or ')' to close the '(' at column 1, "
            "found end of input");
  EXPECT_EQ(TextError("a AND"),
            "filter parse error at column 6: expected a condition (a field name, NOT or '(') after "
            "'AND', found end of input");
  EXPECT_EQ(
      TextError(""),
      "filter parse error at column 1: expected a condition (a field name, NOT or '('), found "
      "end of input");
  EXPECT_EQ(TextError("a OR = 1"),
            "filter parse error at column 6: expected a condition (a field name, NOT or '(') after "
            "'OR', found '='");
  EXPECT_EQ(TextError(R"(name < "b")"),
            R"(filter parse error at column 8: '<' needs a number, found string "b")");
  EXPECT_EQ(TextError("x >= true"),
            "filter parse error at column 6: '>=' needs a number, found bool true");
  EXPECT_EQ(TextError("x IN 1"),
            "filter parse error at column 6: expected '(' after IN, found number 1");
  EXPECT_EQ(TextError("x IN (1 2)"),
            "filter parse error at column 9: expected ',' or ')' in the IN list, found number 2");
  EXPECT_EQ(TextError("x IN (1,)"),
            "filter parse error at column 9: expected a value (string, number, true or false) in "
            "the IN list, found ')'");
  EXPECT_EQ(TextError("x IS 5"),
            "filter parse error at column 6: expected NULL or NOT NULL after IS, found number 5");
  EXPECT_EQ(TextError("x IS NOT 5"),
            "filter parse error at column 10: expected NULL after IS NOT, found number 5");
  EXPECT_EQ(
      TextError("x = 1 AND AND"),
      "filter parse error at column 11: expected a condition (a field name, NOT or '(') after "
      "'AND', found 'AND'");
}

TEST(FilterTextTest, LexicalErrors) {
  EXPECT_EQ(TextError(R"(x = "abc)"), "filter parse error at column 5: unterminated string");
  EXPECT_EQ(TextError(R"(x = "a\qb")"),
            R"(filter parse error at column 7: invalid escape '\q' in string)");
  EXPECT_EQ(
      TextError(R"(x = "\u12")"),
      R"(filter parse error at column 6: invalid \u escape in string: expected 4 hex digits)");
  EXPECT_EQ(TextError(R"(x = "\ud800")"),
            R"(filter parse error at column 6: invalid \u escape in string: unpaired surrogate)");
  EXPECT_EQ(TextError("x = 5abc"), "filter parse error at column 5: invalid number '5abc'");
  EXPECT_EQ(TextError("x = 1.5.3"), "filter parse error at column 5: invalid number '1.5.3'");
  EXPECT_EQ(TextError("x = 1e999"),
            "filter parse error at column 5: number '1e999' is out of range");
  EXPECT_EQ(TextError("x = -"),
            "filter parse error at column 5: expected a number after '-', found end of input");
  EXPECT_EQ(TextError("x @ 5"), "filter parse error at column 3: unexpected character '@'");
  EXPECT_EQ(TextError("x = 1 \x01"),
            "filter parse error at column 7: unexpected character byte 0x01");
  EXPECT_EQ(TextError("x ! 5"),
            "filter parse error at column 3: unexpected character '!' (use != or NOT)");
  EXPECT_EQ(TextError("a. = 1"),
            "filter parse error at column 3: expected a field name segment after '.', found ' '");
}

TEST(FilterTextTest, DeepNestingIsAnErrorNotACrash) {
  std::string nots;
  for (size_t i = 0; i < kMaxFilterDepth; ++i) nots += "NOT ";
  EXPECT_TRUE(Filter::ParseText(nots + "x").ok());
  EXPECT_EQ(Text(nots + "x").Depth(), kMaxFilterDepth + 1);
  EXPECT_EQ(TextError(nots + "NOT x"), "filter parse error at column " +
                                           std::to_string(4 * kMaxFilterDepth + 1) +
                                           ": filter is nested deeper than 64 levels");
  const std::string deep = std::string(200000, '(') + "x" + std::string(200000, ')');
  EXPECT_EQ(TextError(deep),
            "filter parse error at column 65: filter is nested deeper than 64 levels");
  std::string not_flood;
  for (int i = 0; i < 100000; ++i) not_flood += "NOT ";
  EXPECT_FALSE(Filter::ParseText(not_flood + "x").ok());
}

// ---- JSON form ----------------------------------------------------------------------------

TEST(FilterJsonTest, QdrantStyleClauses) {
  const Filter filter = Json(R"({
      "must": [{"key": "category", "match": {"value": "shoe"}},
               {"key": "price", "range": {"lt": 50}}],
      "should": [{"key": "tag", "match": {"any": ["a", "b"]}}, {"key": "promo", "match": {"value": true}}],
      "must_not": [{"key": "sold", "match": {"value": true}}]})");
  EXPECT_TRUE(filter.Matches(json::parse(R"({"category":"shoe","price":10,"tag":"a"})")));
  EXPECT_TRUE(filter.Matches(json::parse(R"({"category":"shoe","price":10,"promo":true})")));
  EXPECT_FALSE(filter.Matches(json::parse(R"({"category":"shoe","price":10})")));  // no should
  EXPECT_FALSE(
      filter.Matches(json::parse(R"({"category":"shoe","price":10,"tag":"a","sold":true})")));
  EXPECT_FALSE(filter.Matches(json::parse(R"({"category":"shoe","price":50,"tag":"a"})")));
  EXPECT_EQ(filter.Depth(), 3u);  // AND -> OR / NOT -> condition
  EXPECT_EQ(filter.Fields(),
            (std::vector<std::string>{"category", "price", "tag", "promo", "sold"}));
}

TEST(FilterJsonTest, NestedClausesIsNullAndRanges) {
  const Filter filter = Json(R"({"should": [
      {"must": [{"key": "meta.size", "range": {"gte": 2, "lte": 4.5}}, {"is_null": {"key": "deleted"}}]},
      {"must_not": [{"key": "meta.color", "match": {"any": ["red", "blue"]}}], "must": {"key": "x", "match": {"value": 1}}}]})");
  EXPECT_TRUE(filter.Matches(json::parse(R"({"meta":{"size":4.5}})")));
  EXPECT_FALSE(filter.Matches(json::parse(R"({"meta":{"size":4.5},"deleted":true})")));
  EXPECT_FALSE(filter.Matches(json::parse(R"({"meta":{"size":5}})")));
  EXPECT_TRUE(filter.Matches(json::parse(R"({"x":1,"meta":{"color":"green"}})")));
  EXPECT_FALSE(filter.Matches(json::parse(R"({"x":1,"meta":{"color":"red"}})")));
  // A range is one condition: one element must satisfy every bound.
  EXPECT_FALSE(
      Json(R"({"key":"n","range":{"gt":10,"lt":50}})").Matches(json::parse(R"({"n":[1,100]})")));
  EXPECT_TRUE(
      Json(R"({"key":"n","range":{"gt":10,"lt":50}})").Matches(json::parse(R"({"n":[1,20]})")));
  // Null bounds are absent bounds (some clients serialise every optional field).
  EXPECT_TRUE(Json(R"({"key":"n","range":{"gt":null,"gte":null,"lt":3,"lte":null}})")
                  .Matches(json::parse(R"({"n":2})")));
}

TEST(FilterJsonTest, EmptyPartsAndEmptyFilter) {
  EXPECT_TRUE(Json("{}").Matches(json::parse(R"({"a":1})")));
  EXPECT_EQ(Json("{}").Depth(), 1u);
  EXPECT_TRUE(Filter().Matches(json::object()));
  EXPECT_TRUE(Json(R"({"must":[],"should":[],"must_not":[]})").Matches(json::parse("{}")));
  EXPECT_TRUE(Json(R"({"must":null})").Matches(json::parse("{}")));
  EXPECT_FALSE(Json(R"({"key":"t","match":{"any":[]}})").Matches(json::parse(R"({"t":"a"})")));
}

TEST(FilterJsonTest, AcceptsAParsedJsonValue) {
  const json value = {{"must", json::array({{{"key", "a"}, {"match", {{"value", 1}}}}})}};
  Result<Filter> filter = Filter::ParseJson(value);
  ASSERT_TRUE(filter.ok()) << filter.status().ToString();
  EXPECT_TRUE(filter->Matches(json::parse(R"({"a":1})")));
  // Text in a std::string goes to the text overload, not through json's converting constructor.
  const std::string text = R"({"key":"a","match":{"value":2}})";
  ASSERT_TRUE(Filter::ParseJson(text).ok());
  EXPECT_TRUE(Filter::ParseJson(text)->Matches(json::parse(R"({"a":2})")));
}

TEST(FilterJsonTest, ErrorsArePrecise) {
  EXPECT_EQ(JsonError(R"({"mustt":[]})"),
            "unknown filter clause 'mustt': expected must, should, must_not, min_should, key, is_null, is_empty, has_id, has_vector, nested");
  EXPECT_EQ(JsonError(R"({"must":[{"key":"price","range":{"lt":"cheap"}}]})"),
            "range bound 'lt' for key 'price' must be a number or an RFC 3339 datetime (e.g. \"2024-05-01T10:00:00Z\"), got \"cheap\"");
  EXPECT_EQ(
      JsonError(R"({"must": [})"),
      "filter is not valid JSON at byte 11: syntax error while parsing value - unexpected '}'; "
      "expected '[', '{', or a literal");
  EXPECT_EQ(
      JsonError(R"({"key":"a"  )"),
      "filter is not valid JSON at byte 13: syntax error while parsing object - unexpected end of "
      "input; expected '}'");
  EXPECT_EQ(JsonError("[1]"), "filter must be a JSON object, got array");
  EXPECT_EQ(JsonError(R"({"must":"a"})"),
            "filter clause 'must' must be an array of clauses, got string");
  EXPECT_EQ(JsonError(R"({"should":[{}, 3]})"),
            "filter clause 'should' element 1 must be an object, got number");
  EXPECT_EQ(JsonError(R"({"key":5,"match":{"value":1}})"),
            "filter 'key' must be a string, got number");
  EXPECT_EQ(JsonError(R"({"key":"a..b","match":{"value":1}})"),
            "field path 'a..b' has an empty segment");
  EXPECT_EQ(JsonError(R"({"key":"","match":{"value":1}})"), "field path is empty");
  EXPECT_EQ(JsonError(R"({"key":"price","matc":{"value":1}})"),
            "unknown filter clause 'matc' in condition on key 'price': expected match, range, values_count, "
            "geo_radius, geo_bounding_box or geo_polygon");
  EXPECT_EQ(JsonError(R"({"key":"price","must":[]})"),
            "filter clause cannot mix 'key' with 'must'");
  EXPECT_EQ(JsonError(R"({"key":"price"})"), "condition on key 'price' needs 'match' or 'range'");
  EXPECT_EQ(JsonError(R"({"key":"p","match":{"value":1},"range":{"lt":1}})"),
            "condition on key 'p' has both 'match' and 'range'; use one per condition");
  EXPECT_EQ(JsonError(R"({"match":{"value":1}})"), "filter clause has 'match' but no 'key'");
  EXPECT_EQ(JsonError(R"({"key":"p","match":"x"})"),
            "'match' for key 'p' must be an object, got string");
  EXPECT_EQ(JsonError(R"({"key":"p","match":{}})"), "'match' for key 'p' needs 'value', 'any', 'except' or 'text'");
  EXPECT_EQ(JsonError(R"({"key":"p","match":{"phrase":"x"}})"),
            "unknown match kind 'phrase' for key 'p': expected value, any, except or text");
  EXPECT_EQ(JsonError(R"({"key":"p","match":{"value":1,"any":[1]}})"),
            "'match' for key 'p' has more than one of 'value', 'any', 'except' and 'text'");
  EXPECT_EQ(JsonError(R"({"key":"p","match":{"value":null}})"),
            "match value for key 'p' must be a string, number or bool, got null");
  EXPECT_EQ(JsonError(R"({"key":"p","match":{"any":"a"}})"),
            "match 'any' for key 'p' must be an array, got string");
  EXPECT_EQ(JsonError(R"({"key":"p","match":{"any":["a",{}]}})"),
            "match 'any' for key 'p' element 1 must be a string, number or bool, got object");
  EXPECT_EQ(JsonError(R"({"key":"p","range":[1]})"),
            "'range' for key 'p' must be an object, got array");
  EXPECT_EQ(JsonError(R"({"key":"p","range":{}})"),
            "'range' for key 'p' needs at least one of gt, gte, lt, lte");
  EXPECT_EQ(JsonError(R"({"key":"p","range":{"lt":null}})"),
            "'range' for key 'p' needs at least one of gt, gte, lt, lte");
  EXPECT_EQ(JsonError(R"({"key":"p","range":{"below":1}})"),
            "unknown range bound 'below' for key 'p': expected gt, gte, lt, lte");
  EXPECT_EQ(JsonError(R"({"is_null":"p"})"),
            "'is_null' must be an object with a 'key', got string");
  EXPECT_EQ(JsonError(R"({"is_null":{}})"), "'is_null' needs a 'key'");
  EXPECT_EQ(JsonError(R"({"is_null":{"key":"p","x":1}})"),
            "unknown field 'x' in 'is_null': expected key");
  EXPECT_EQ(JsonError(R"({"is_null":{"key":"p"},"must":[]})"),
            "filter clause cannot mix 'is_null' with 'must'");
  EXPECT_EQ(JsonError(R"({"a": 1e999})"),
            "filter is not valid JSON: number overflow parsing '1e999'");
  // A NaN can only arrive through an in-memory json; it would compare unordered with everything.
  json nan_range = {{"key", "p"}, {"range", {{"lt", std::numeric_limits<double>::quiet_NaN()}}}};
  EXPECT_EQ(Filter::ParseJson(nan_range).status().message(), "range bound 'lt' for key 'p' is NaN");
}

TEST(FilterJsonTest, DeepNestingIsAnErrorNotACrash) {
  auto nested = [](size_t levels) {
    std::string text = R"({"key":"x","match":{"value":1}})";
    for (size_t i = 1; i < levels; ++i) text = R"({"must":[)" + text + "]}";
    return text;
  };
  EXPECT_TRUE(Filter::ParseJson(nested(kMaxFilterDepth)).ok());
  EXPECT_EQ(JsonError(nested(kMaxFilterDepth + 1)), "filter is nested deeper than 64 levels");
  EXPECT_EQ(JsonError(nested(5000)), "filter is nested deeper than 64 levels");
  // Deep JSON that is not clauses fails on its shape; parsing and freeing it must not recurse.
  const std::string arrays = std::string(1000000, '[') + std::string(1000000, ']');
  EXPECT_EQ(JsonError(R"({"must":)" + arrays + "}"),
            "filter clause 'must' element 0 must be an object, got array");
}

// ---- text and JSON agree ------------------------------------------------------------------

TEST(FilterEquivalenceTest, TextAndJsonFormsAgreeOnRandomPayloads) {
  struct Pair {
    const char* text;
    const char* json;
  };
  const Pair pairs[] = {
      {R"(c = "a")", R"({"key":"c","match":{"value":"a"}})"},
      {R"(c IN ("a", "b"))", R"({"key":"c","match":{"any":["a","b"]}})"},
      {"n < 3", R"({"key":"n","range":{"lt":3}})"},
      {"n >= 2.5", R"({"key":"n","range":{"gte":2.5}})"},
      {"n IS NULL", R"({"is_null":{"key":"n"}})"},
      {"NOT n IS NULL", R"({"must_not":[{"is_null":{"key":"n"}}]})"},
      {R"(c = "a" AND n > 1)",
       R"({"must":[{"key":"c","match":{"value":"a"}},{"key":"n","range":{"gt":1}}]})"},
      {R"(c = "a" OR b)",
       R"({"should":[{"key":"c","match":{"value":"a"}},{"key":"b","match":{"value":true}}]})"},
      {R"(NOT c = "a" AND NOT b)",
       R"({"must_not":[{"key":"c","match":{"value":"a"}},{"key":"b","match":{"value":true}}]})"},
      {R"(n <= 4 AND (c = "b" OR m.k = 1) AND NOT b)",
       R"({"must":[{"key":"n","range":{"lte":4}}],"should":[{"key":"c","match":{"value":"b"}},{"key":"m.k","match":{"value":1}}],"must_not":[{"key":"b","match":{"value":true}}]})"},
  };
  std::mt19937 rng(7);
  std::vector<json> payloads;
  for (int i = 0; i < 400; ++i) {
    json p = json::object();
    if (rng() % 4 != 0) p["c"] = std::string(1, static_cast<char>('a' + rng() % 3));
    if (rng() % 5 == 0) p["c"] = json::array({"a", "c"});
    switch (rng() % 5) {
      case 0: break;
      case 1: p["n"] = nullptr; break;
      case 2: p["n"] = static_cast<int>(rng() % 6); break;
      case 3: p["n"] = (rng() % 12) / 2.0; break;
      case 4: p["n"] = json::array({static_cast<int>(rng() % 6), nullptr}); break;
    }
    if (rng() % 2 != 0) p["b"] = rng() % 2 == 0;
    if (rng() % 2 != 0) p["m"] = {{"k", static_cast<int>(rng() % 3)}};
    payloads.push_back(p);
  }
  for (const Pair& pair : pairs) {
    const Filter text = Text(pair.text);
    const Filter from_json = Json(pair.json);
    int matched = 0;
    for (const json& p : payloads) {
      ASSERT_EQ(text.Matches(p), from_json.Matches(p)) << pair.text << " on " << p.dump();
      matched += text.Matches(p) ? 1 : 0;
    }
    // Each pair must separate the payloads, or the comparison proves nothing.
    EXPECT_GT(matched, 0) << pair.text;
    EXPECT_LT(matched, 400) << pair.text;
  }
}

// ---- Depth, Fields, CheckTypes ------------------------------------------------------------

TEST(FilterTest, DepthAndFields) {
  EXPECT_EQ(Text("a").Depth(), 1u);
  EXPECT_EQ(Text("NOT a").Depth(), 2u);
  EXPECT_EQ(Text("a AND (b OR NOT c)").Depth(), 4u);
  EXPECT_EQ(Text("x IS NOT NULL").Depth(), 2u);
  EXPECT_EQ(Text("b = 1 OR a = 2 OR b > 3 AND meta.c IS NULL").Fields(),
            (std::vector<std::string>{"b", "a", "meta.c"}));
}

TEST(FilterTest, CheckTypesRejectsLiteralsThatCannotFitTheIndexedType) {
  const std::map<std::string, FieldType> indexed = {{"price", FieldType::kInteger},
                                                    {"score", FieldType::kFloat},
                                                    {"color", FieldType::kKeyword},
                                                    {"sold", FieldType::kBool}};
  EXPECT_TRUE(Text(R"(price < 5.5 AND score = 3 AND color IN ("a") AND NOT sold AND other = "x")")
                  .CheckTypes(indexed)
                  .ok());
  EXPECT_TRUE(Text("price IS NULL AND color IS NOT NULL").CheckTypes(indexed).ok());
  Status s = Text(R"(price = "cheap")").CheckTypes(indexed);
  EXPECT_TRUE(s.IsInvalidArgument());
  EXPECT_EQ(s.message(), R"(filter compares field 'price' (integer) with string "cheap")");
  EXPECT_EQ(Text("a OR color > 5").CheckTypes(indexed).message(),
            "filter compares field 'color' (keyword) with number 5");
  EXPECT_EQ(Text(R"(color IN ("a", true))").CheckTypes(indexed).message(),
            "filter compares field 'color' (keyword) with bool true");
  EXPECT_EQ(Text("sold = 1.0").CheckTypes(indexed).message(),
            "filter compares field 'sold' (bool) with number 1.0");
  EXPECT_EQ(Json(R"({"key":"score","match":{"value":"high"}})").CheckTypes(indexed).message(),
            R"(filter compares field 'score' (float) with string "high")");
}

}  // namespace
}  // namespace fathom

namespace fathom {
namespace {

// Qdrant's match.except, match.text and is_empty (issue 14), on payloads and through the
// payload index of a collection (where text is read from payloads, never from the index).
TEST(FilterTest, QdrantExceptTextAndIsEmpty) {
  auto m = [](std::string_view filter, const char* payload) {
    return Json(filter).Matches(json::parse(payload));
  };
  const char* except = R"({"must": [{"key": "c", "match": {"except": ["red", "green"]}}]})";
  EXPECT_TRUE(m(except, R"({"c": "blue"})"));
  EXPECT_FALSE(m(except, R"({"c": "red"})"));
  EXPECT_FALSE(m(except, R"({"c": ["blue", "green"]})"));  // any value in the list
  EXPECT_TRUE(m(except, R"({})"));                          // NOT IN: a missing field passes
  const char* text = R"({"must": [{"key": "t", "match": {"text": "number 1"}}]})";
  EXPECT_TRUE(m(text, R"({"t": "point number 12"})"));
  EXPECT_FALSE(m(text, R"({"t": "point number 2"})"));
  EXPECT_FALSE(m(text, R"({"t": 1})"));
  EXPECT_TRUE(m(text, R"({"t": ["x", "a number 1"]})"));
  const char* empty = R"({"must": [{"is_empty": {"key": "tag"}}]})";
  EXPECT_TRUE(m(empty, R"({})"));
  EXPECT_TRUE(m(empty, R"({"tag": []})"));
  EXPECT_TRUE(m(empty, R"({"tag": null})"));
  EXPECT_FALSE(m(empty, R"({"tag": "x"})"));
  EXPECT_EQ(JsonError(R"({"key": "c", "match": {"text": 5}})"), "match 'text' for key 'c' must be a string, got number");
  EXPECT_EQ(JsonError(R"({"key": "c", "match": {"except": "red"}})"), "match 'except' for key 'c' must be an array, got string");
  EXPECT_EQ(JsonError(R"({"key": "c", "match": {"value": 1, "text": "a"}})"),
            "'match' for key 'c' has more than one of 'value', 'any', 'except' and 'text'");
  EXPECT_EQ(JsonError(R"({"is_empty": {"key": "a"}, "is_null": {"key": "a"}})"),
            "filter clause cannot mix 'is_null' with 'is_empty'");
}

// has_id parses to a condition the collection decides from its ids (a payload alone never
// matches it); bad ids are errors that say what was expected.
TEST(FilterTest, QdrantHasIdParsesAndRefusesBadIds) {
  auto f = Json(R"({"must_not": [{"has_id": [1, "doc-7"]}]})");
  EXPECT_FALSE(f.root().children.empty());
  EXPECT_TRUE(f.Fields().empty());  // not a payload field
  EXPECT_TRUE(f.CheckTypes({{"has_id", FieldType::kBool}}).ok());
  EXPECT_EQ(JsonError(R"({"has_id": 5})"), "'has_id' must be an array of point ids, got number");
  EXPECT_EQ(JsonError(R"({"has_id": [-1]})"), "'has_id' ids must be non-negative integers or non-empty strings, got -1");
  EXPECT_EQ(JsonError(R"({"has_id": [1], "key": "a"})"),
            "unknown filter clause 'has_id' in condition on key 'a': expected match, range, values_count, "
            "geo_radius, geo_bounding_box or geo_polygon");
  EXPECT_EQ(JsonError(R"({"has_id": [1], "is_null": {"key": "a"}})"), "filter clause cannot mix 'is_null' with 'has_id'");
  EXPECT_EQ(JsonError(R"({"has_id": [1], "must": []})"), "filter clause cannot mix 'has_id' with 'must'");
}

// values_count (issue 14): the number of non-null values the key reaches; a single value is one,
// a missing field none.
TEST(FilterTest, ValuesCountCountsNonNullValues) {
  const Filter two_or_more = Json(R"({"key": "c", "values_count": {"gte": 2}})");
  const Filter none = Json(R"({"key": "c", "values_count": {"lt": 1}})");
  EXPECT_TRUE(two_or_more.Matches(json::parse(R"({"c": [1, 2, 3]})")));
  EXPECT_TRUE(two_or_more.Matches(json::parse(R"({"c": ["a", "b"]})")));
  EXPECT_FALSE(two_or_more.Matches(json::parse(R"({"c": 5})")));
  EXPECT_FALSE(two_or_more.Matches(json::parse(R"({"c": [null, 1]})")));
  EXPECT_TRUE(none.Matches(json::parse(R"({})")));
  EXPECT_TRUE(none.Matches(json::parse(R"({"c": []})")));
  EXPECT_FALSE(none.Matches(json::parse(R"({"c": 0})")));
  // Counting is not comparing values: a keyword field takes numeric bounds.
  EXPECT_TRUE(two_or_more.CheckTypes({{"c", FieldType::kKeyword}}).ok());
  EXPECT_EQ(JsonError(R"({"key": "c", "values_count": {}})"), "'values_count' for key 'c' needs at least one of gt, gte, lt, lte");
  EXPECT_EQ(JsonError(R"({"key": "c", "values_count": {"gte": 1}, "match": {"value": 1}})"),
            "condition on key 'c' has both 'match' and 'values_count'; use one per condition");
}

// geo_radius: great-circle distance. London to Paris is 343.6 km on the mean-radius sphere.
TEST(FilterTest, GeoRadiusUsesGreatCircleDistance) {
  const json paris = json::parse(R"({"loc": {"lon": 2.3522, "lat": 48.8566}})");
  auto within = [](double metres) {
    return Json(R"({"key": "loc", "geo_radius": {"center": {"lon": -0.1278, "lat": 51.5074}, "radius": )" +
                std::to_string(metres) + "}}");
  };
  EXPECT_TRUE(within(344000).Matches(paris));
  EXPECT_FALSE(within(343000).Matches(paris));
  // Any point of an array; values that are not points never match.
  EXPECT_TRUE(within(1000).Matches(json::parse(R"({"loc": [{"lon": 2.35, "lat": 48.85}, {"lon": -0.1278, "lat": 51.5074}]})")));
  EXPECT_FALSE(within(1e7).Matches(json::parse(R"({"loc": "London"})")));
  EXPECT_FALSE(within(1e7).Matches(json::parse(R"({"loc": {"lon": 1}})")));
  EXPECT_FALSE(within(1e7).Matches(json::parse(R"({})")));
  EXPECT_EQ(JsonError(R"({"key": "loc", "geo_radius": {"center": {"lon": 0, "lat": 91}, "radius": 1}})"),
            "'geo_radius' for key 'loc' center 'lat' 91 is outside [-90, 90]");
  EXPECT_EQ(JsonError(R"({"key": "loc", "geo_radius": {"center": {"lon": 0, "lat": 0}}})"), "'geo_radius' for key 'loc' needs 'radius'");
  EXPECT_EQ(JsonError(R"({"key": "loc", "geo_radius": {"center": {"lon": 0, "lat": 0}, "radius": -1}})"),
            "'geo_radius' for key 'loc' radius must be a non-negative number of metres, got -1");
  EXPECT_EQ(JsonError(R"({"geo_radius": {"center": {"lon": 0, "lat": 0}, "radius": 1}})"), "filter clause has 'geo_radius' but no 'key'");
}

TEST(FilterTest, GeoBoundingBoxIncludingAcrossTheAntimeridian) {
  const Filter europe = Json(R"({"key": "p", "geo_bounding_box": {"top_left": {"lon": -10, "lat": 60}, "bottom_right": {"lon": 30, "lat": 35}}})");
  EXPECT_TRUE(europe.Matches(json::parse(R"({"p": {"lon": 2.35, "lat": 48.85}})")));
  EXPECT_TRUE(europe.Matches(json::parse(R"({"p": {"lon": 30, "lat": 35}})")));  // corner
  EXPECT_FALSE(europe.Matches(json::parse(R"({"p": {"lon": -74, "lat": 40.7}})")));
  const Filter pacific = Json(R"({"key": "p", "geo_bounding_box": {"top_left": {"lon": 170, "lat": 10}, "bottom_right": {"lon": -170, "lat": -10}}})");
  EXPECT_TRUE(pacific.Matches(json::parse(R"({"p": {"lon": 179, "lat": 0}})")));
  EXPECT_TRUE(pacific.Matches(json::parse(R"({"p": {"lon": -175, "lat": 5}})")));
  EXPECT_FALSE(pacific.Matches(json::parse(R"({"p": {"lon": 0, "lat": 0}})")));
  EXPECT_EQ(JsonError(R"({"key": "p", "geo_bounding_box": {"top_left": {"lon": 0, "lat": 0}, "bottom_right": {"lon": 1, "lat": 1}}})"),
            "'geo_bounding_box' for key 'p' top_left lat must not be below bottom_right lat");
}

// A square with a square hole; the border (outer and the hole's) belongs to the polygon.
TEST(FilterTest, GeoPolygonWithAHole) {
  const Filter ring = Json(R"({"key": "p", "geo_polygon": {
      "exterior": {"points": [{"lon": 0, "lat": 0}, {"lon": 10, "lat": 0}, {"lon": 10, "lat": 10}, {"lon": 0, "lat": 10}]},
      "interiors": [{"points": [{"lon": 4, "lat": 4}, {"lon": 6, "lat": 4}, {"lon": 6, "lat": 6}, {"lon": 4, "lat": 6}, {"lon": 4, "lat": 4}]}]}})");
  auto at = [](double lon, double lat) { return json{{"p", {{"lon", lon}, {"lat", lat}}}}; };
  EXPECT_TRUE(ring.Matches(at(1, 1)));
  EXPECT_TRUE(ring.Matches(at(10, 5)));  // outer edge
  EXPECT_TRUE(ring.Matches(at(4, 5)));   // the hole's edge
  EXPECT_FALSE(ring.Matches(at(5, 5)));  // in the hole
  EXPECT_FALSE(ring.Matches(at(11, 5)));
  EXPECT_FALSE(ring.Matches(at(-0.5, 5)));
  EXPECT_EQ(JsonError(R"({"key": "p", "geo_polygon": {"exterior": {"points": [{"lon": 0, "lat": 0}, {"lon": 1, "lat": 1}]}}})"),
            "'geo_polygon' for key 'p' exterior needs at least 3 distinct points, got 2");
  EXPECT_EQ(JsonError(R"({"key": "p", "geo_polygon": {"outside": {}}})"),
            "unknown field 'outside' in 'geo_polygon' for key 'p': expected exterior, interiors");
}

// nested: all of the inner filter on one element. The classic case: no dish is both meat and
// liked, although the point has a meat dish and a liked dish.
TEST(FilterTest, NestedHoldsForOneElementAtATime) {
  const json payload = json::parse(R"({"diet": [{"food": "meat", "likes": false}, {"food": "veg", "likes": true}]})");
  const Filter flat = Json(R"({"must": [{"key": "diet[].food", "match": {"value": "meat"}}, {"key": "diet[].likes", "match": {"value": true}}]})");
  const Filter nested = Json(R"({"nested": {"key": "diet", "filter": {"must": [{"key": "food", "match": {"value": "meat"}}, {"key": "likes", "match": {"value": true}}]}}})");
  const Filter liked_veg = Json(R"({"nested": {"key": "diet", "filter": {"must": [{"key": "food", "match": {"value": "veg"}}, {"key": "likes", "match": {"value": true}}]}}})");
  EXPECT_TRUE(flat.Matches(payload));
  EXPECT_FALSE(nested.Matches(payload));
  EXPECT_TRUE(liked_veg.Matches(payload));
  EXPECT_TRUE(liked_veg.Matches(json::parse(R"({"diet": {"food": "veg", "likes": true}})")));  // an object is one element
  EXPECT_FALSE(liked_veg.Matches(json::parse(R"({"diet": "veg"})")));
  EXPECT_EQ(JsonError(R"({"nested": {"key": "diet", "filter": {"has_id": [1]}}})"),
            "'has_id' cannot be used inside 'nested' (ids belong to points, not elements)");
  EXPECT_EQ(JsonError(R"({"nested": {"key": "diet"}})"), "'nested' needs 'filter'");
}

TEST(FilterTest, MinShouldNeedsAtLeastNConditions) {
  const Filter two = Json(R"({"min_should": {"min_count": 2, "conditions": [
      {"key": "a", "match": {"value": 1}}, {"key": "b", "match": {"value": 1}}, {"key": "c", "match": {"value": 1}}]}})");
  EXPECT_TRUE(two.Matches(json::parse(R"({"a": 1, "c": 1})")));
  EXPECT_FALSE(two.Matches(json::parse(R"({"a": 1, "c": 2})")));
  EXPECT_EQ(JsonError(R"({"min_should": {"min_count": -1, "conditions": []}})"), "'min_should' min_count must be a non-negative integer, got -1");
  EXPECT_EQ(JsonError(R"({"min_should": {"conditions": []}})"), "'min_should' needs 'min_count'");
}

// Datetime ranges (Qdrant's): string bounds in RFC 3339, values read the same way.
TEST(FilterTest, DatetimeRangesCompareTimes) {
  EXPECT_EQ(ParseDatetime("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(ParseDatetime("1970-01-02"), int64_t{86400} * 1000000);
  EXPECT_EQ(ParseDatetime("2000-03-01T00:00:00Z"), int64_t{951868800} * 1000000);
  EXPECT_EQ(ParseDatetime("2024-05-01T12:00:00+02:00"), ParseDatetime("2024-05-01T10:00:00Z"));
  EXPECT_EQ(ParseDatetime("2024-05-01 10:00:00.25"), *ParseDatetime("2024-05-01T10:00:00Z") + 250000);
  EXPECT_EQ(ParseDatetime("2024-05-01T10:00Z"), ParseDatetime("2024-05-01T10:00:00Z"));
  for (const char* bad : {"2023-02-29", "2024-13-01", "2024-05-01T25:00:00Z", "2024-05-01X", "yesterday", "2024-5-1",
                          "2024-05-01T10:00:00+2", "2024-05-01T10:00:00.Z"}) {
    EXPECT_FALSE(ParseDatetime(bad).has_value()) << bad;
  }
  const Filter may = Json(R"({"key": "t", "range": {"gte": "2024-05-01T00:00:00Z", "lt": "2024-06-01"}})");
  EXPECT_TRUE(may.Matches(json::parse(R"({"t": "2024-05-31T23:59:59.999Z"})")));
  EXPECT_TRUE(may.Matches(json::parse(R"({"t": ["2023-01-01", "2024-05-02 08:00:00+03:00"]})")));
  EXPECT_FALSE(may.Matches(json::parse(R"({"t": "2024-06-01T00:00:00Z"})")));
  EXPECT_FALSE(may.Matches(json::parse(R"({"t": "2024-04-30T23:00:00-00:30"})")));
  EXPECT_FALSE(may.Matches(json::parse(R"({"t": 1714521600})")));  // a number is not a datetime
  EXPECT_TRUE(may.CheckTypes({{"t", FieldType::kKeyword}}).ok());
  EXPECT_EQ(JsonError(R"({"key": "t", "range": {"gte": "soon"}})"),
            "range bound 'gte' for key 't' must be a number or an RFC 3339 datetime (e.g. \"2024-05-01T10:00:00Z\"), got \"soon\"");
  EXPECT_EQ(JsonError(R"({"key": "t", "range": {"gte": "2024-05-01", "lt": 5}})"), "range for key 't' mixes datetime and number bounds");
}

TEST(FilterTest, HasVectorNamesVectorsAndHoldsForEveryPoint) {
  const Filter f = Json(R"({"must": [{"has_vector": "image"}, {"nested": {"key": "a", "filter": {"has_vector": ""}}}]})");
  EXPECT_EQ(f.VectorNames(), (std::vector<std::string>{"image", ""}));
  EXPECT_TRUE(Json(R"({"has_vector": "image"})").Matches(json::parse("{}")));
  EXPECT_TRUE(f.Fields() == std::vector<std::string>{"a"});
  EXPECT_EQ(JsonError(R"({"has_vector": 3})"), "'has_vector' must be a vector name (a string), got number");
}

}  // namespace
}  // namespace fathom
