// Filter: a predicate over a record's JSON-object payload, parsed from a Qdrant-style JSON form or
// a text form for people, and evaluated either directly (Matches) or through a PayloadIndex.
//
//   JSON: {"must": [{"key": "category", "match": {"value": "shoe"}},
//                   {"key": "price", "range": {"lt": 50}}],
//          "should": [...], "must_not": [{"key": "sold", "match": {"value": true}}]}
//   text: category = "shoe" AND price < 50 AND tag IN ("a", "b") AND NOT sold
//
// The parsed form is a small tree (FilterNode): AND / OR / NOT over conditions on a field path
// ("meta.color" walks nested objects). Semantics, shared by Matches and the payload index:
//   * A field's values are what its path reaches: arrays are unwrapped one level wherever they
//     appear (so "tags" over ["a","b"] has the values "a" and "b", and "meta.color" over
//     {"meta": [{"color": "red"}, {"color": "blue"}]} has "red" and "blue"); arrays nested
//     directly in arrays are not unwrapped further.
//   * A condition holds when ANY value satisfies it (Qdrant's array semantics); a missing field
//     has no values, so it never satisfies =, IN or a range.
//   * Numbers compare by value across integer and float (5 = 5.0), exactly: an int64 and a
//     double are never rounded into each other. Unsigned JSON integers above 2^63-1 are read as
//     doubles. Strings match strings, bools match bools; no cross-type coercion ("5" != 5).
//   * IS NULL holds when the field has no non-null value (missing, null, [] or [null]);
//     IS NOT NULL is its negation. Qdrant's is_empty is the same test; its is_null (an explicit
//     null only) is read as IS NULL too.
//   * {"match": {"except": [a, b]}} is NOT (x IN (a, b)): it holds for a missing field.
//   * {"match": {"text": "t"}} holds when a string value contains "t" (substring, case
//     sensitive; Qdrant without a full-text index does the same). The payload index does not
//     answer it: payloads are read.
//   * `x != v` holds when x has a non-null value and no value of x equals v (so a missing field
//     never matches it, as in SQL); it is text-form only.
//   * {"has_id": [ids]} holds for the points with those ids (unknown ids match nothing).
//   * {"key": k, "values_count": {"gte": 2}} counts k's non-null values (arrays unwrapped as
//     above; a single value is one, a missing field none) and compares the count.
//   * Geo conditions hold when a value of k is a point {"lon": x, "lat": y} (degrees) inside
//     the shape: "geo_radius" (center, radius in metres, great-circle distance on a sphere of
//     6,371,008.8 m), "geo_bounding_box" (top_left, bottom_right; a box whose left edge is east
//     of its right edge spans the antimeridian) or "geo_polygon" (exterior ring, optional
//     interior rings that cut holes; edges are straight lines in lon/lat, a point on an edge is
//     inside). Values that are not points never match.
//   * {"nested": {"key": k, "filter": F}} holds when one element of the array at k (or the
//     object at k) satisfies all of F on its own, F's keys read from the element.
//   * A key segment may end in "[]" (Qdrant's "diet[].food"): arrays unwrap anyway, so it reads
//     the same as "diet.food".
//   * A range whose bounds are strings compares datetimes: "2024-05-01", "2024-05-01T10:00:00Z",
//     "2024-05-01 10:00:00.5+02:00" (no offset: UTC); values are strings in the same forms, and
//     a value that is not one never matches.
//   * {"has_vector": "image"} holds for every point of a collection with that vector (each
//     point has all of its collection's vectors; "" names the unnamed one).
//   * {"min_should": {"conditions": [...], "min_count": n}} holds when at least n of the
//     conditions do (n = 0 always holds; n above their number never does).
//   * An empty AND (the filter `{}`) matches everything; an empty "should" list adds no
//     constraint; an empty IN list matches nothing.
//
// Both parsers refuse trees nested deeper than kMaxFilterDepth, so a hostile filter gets an error
// instead of exhausting the stack. Errors are InvalidArgument with a message meant for the user.
//
// Thread-safety: a Filter is an immutable value after parsing; all const methods may run
// concurrently from any number of threads.
#pragma once

#include <compare>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "db/field_type.h"
#include "fathom/status.h"

namespace fathom {

// Deepest AND/OR/NOT/parenthesis nesting the parsers accept.
inline constexpr size_t kMaxFilterDepth = 64;

// A number from a payload or a filter literal, kept as the int64 or double it was written as so
// that comparisons are exact (2^53 + 1 is not equal to the double 2^53).
class Number {
 public:
  static Number Int(int64_t value) { return Number(true, value, 0.0); }
  static Number Float(double value) { return Number(false, 0, value); }
  // The number a JSON value holds; nullopt for anything that is not a number.
  static std::optional<Number> FromJson(const nlohmann::json& value);

  bool is_int() const { return is_int_; }
  int64_t int_value() const { return int_; }     // valid when is_int()
  double float_value() const { return float_; }  // valid when !is_int()

  // "5", "-3", "2.5", "5.0" (floats always show a '.' or an exponent).
  std::string ToString() const;

  // Exact comparison; unordered only when a NaN is involved.
  friend std::partial_ordering operator<=>(const Number& a, const Number& b);
  friend bool operator==(const Number& a, const Number& b) {
    return (a <=> b) == std::partial_ordering::equivalent;
  }

 private:
  Number(bool is_int, int64_t i, double d) : is_int_(is_int), int_(i), float_(d) {}
  bool is_int_;
  int64_t int_;
  double float_;
};

// A literal in a condition: true/false, a number, or a string.
using Literal = std::variant<bool, Number, std::string>;

// `string "shoe"`, `number 5`, `bool true`: how error messages name a literal.
std::string DescribeLiteral(const Literal& literal);

// True when the payload value `value` equals the literal under the rules above.
bool LiteralEquals(const Literal& literal, const nlohmann::json& value);

struct FilterNode;

// The shape of a geo condition; coordinates in degrees.
struct GeoShape {
  struct Point {
    double lon = 0, lat = 0;
  };
  enum class Kind : uint8_t { kRadius, kBox, kPolygon };
  Kind kind = Kind::kRadius;
  Point center;                               // geo_radius
  double radius = 0;                          // geo_radius, metres
  Point top_left, bottom_right;               // geo_bounding_box
  std::vector<Point> exterior;                // geo_polygon, closed (first == last)
  std::vector<std::vector<Point>> interiors;  // geo_polygon holes, closed

  // Whether p is inside the shape (on its border counts as inside).
  bool Contains(const Point& p) const;
};

// A test on one field.
struct Condition {
  enum class Op : uint8_t {
    kEqual,     // values[0]; `x = v`, {"match": {"value": v}}
    kNotEqual,  // values[0]; `x != v` (text form only)
    kIn,        // any of values; `x IN (a, b)`, {"match": {"any": [a, b]}}
    kRange,     // gt/gte/lt/lte, all of which one value must satisfy
    kIsNull,    // `x IS NULL`, {"is_null": {"key": "x"}} or {"is_empty": {"key": "x"}}
    kText,      // a string value contains values[0] (a string); {"match": {"text": "..."}}
    kHasId,     // the point's id is one of values (integers or strings); {"has_id": [1, "a"]}, JSON
                // form only. Decided by the collection's ids (PayloadIndex::Evaluate's id lookup),
                // never by a payload: Matches() is false.
    kValuesCount,  // gt/gte/lt/lte bound the number of non-null values; {"values_count": {...}}
    kGeoRadius,    // geo: a point value within geo->radius metres of geo->center
    kGeoBox,       // geo: a point value within the box
    kGeoPolygon,   // geo: a point value inside the exterior ring and outside every interior one
    kNested,       // some element at the path satisfies *nested (keys relative to the element)
    kHasVector,    // values[0]: a vector name; {"has_vector": "image"}. Every point has every
                   // vector of its collection, so this holds for all points; the collection
                   // refuses a name it does not have (VectorNames).
  };

  Op op = Op::kEqual;
  std::string key;                // as written: "meta.color"
  std::vector<std::string> path;  // key split at the dots: {"meta", "color"}
  std::vector<Literal> values;
  std::optional<Number> gt, gte, lt, lte;
  // kRange with RFC 3339 strings as bounds (Qdrant's datetime range): the bounds hold
  // microseconds since 1970-01-01 UTC, and values are strings read the same way.
  bool datetime = false;
  std::shared_ptr<const GeoShape> geo;        // kGeoRadius, kGeoBox, kGeoPolygon
  std::shared_ptr<const FilterNode> nested;   // kNested

  // True when `number` satisfies every bound of a kRange condition.
  bool InRange(const Number& number) const;
  // Evaluates this condition against a payload (the payload's root should be an object).
  bool Matches(const nlohmann::json& payload) const;
};

// One node of a parsed filter.
struct FilterNode {
  // kAtLeast: at least min_count of the children hold (Qdrant's min_should).
  enum class Type : uint8_t { kAnd, kOr, kNot, kCondition, kAtLeast };

  Type type = Type::kAnd;            // a default node is an empty AND: it matches everything
  std::vector<FilterNode> children;  // kAnd / kOr / kAtLeast: any number; kNot: exactly one
  Condition condition;               // kCondition only
  size_t min_count = 0;              // kAtLeast only

  bool Matches(const nlohmann::json& payload) const;
};

class Filter {
 public:
  // The filter that matches every payload.
  Filter() = default;

  // Qdrant-style JSON. The first overload reports malformed text with its byte position.
  static Result<Filter> ParseJson(std::string_view json_text);
  // Taking exactly an nlohmann::json (not anything convertible to one) keeps
  // ParseJson("...") unambiguous.
  template <class Json>
  requires std::same_as<Json, nlohmann::json>
  static Result<Filter> ParseJson(const Json& json) { return ParseJsonValue(json); }

  // The text form (see the file comment); errors name the 1-based column and what was expected.
  static Result<Filter> ParseText(std::string_view text);

  bool Matches(const nlohmann::json& payload) const { return root_.Matches(payload); }

  // Nesting depth of the tree: 1 for a single condition or an empty filter, +1 per AND/OR/NOT.
  size_t Depth() const;
  // Every field key the filter mentions, once each, in order of first appearance.
  std::vector<std::string> Fields() const;
  // The vector names its has_vector conditions ask for ("" is the unnamed vector).
  std::vector<std::string> VectorNames() const;
  // Rejects a condition whose literal cannot be a value of the field's declared type, e.g.
  // "filter compares field 'price' (integer) with string "cheap"". Integer and float fields
  // accept any number; keyword fields strings; bool fields true/false. Unlisted fields pass.
  Status CheckTypes(const std::map<std::string, FieldType>& indexed) const;

  const FilterNode& root() const { return root_; }

 private:
  explicit Filter(FilterNode root) : root_(std::move(root)) {}
  static Result<Filter> ParseJsonValue(const nlohmann::json& json);

  FilterNode root_;
};

// RFC 3339 (and the forms above) as microseconds since 1970-01-01 UTC; nullopt if not one.
std::optional<int64_t> ParseDatetime(std::string_view text);

// Splits "meta.color" into {"meta", "color"}; rejects an empty key or an empty segment.
Result<std::vector<std::string>> SplitFieldPath(std::string_view key);

// Appends to `out` every value `path` reaches in `payload`, under the array rules in the file
// comment (null values included). The pointers point into `payload`.
void CollectFieldValues(const nlohmann::json& payload, const std::vector<std::string>& path,
                        std::vector<const nlohmann::json*>* out);

}  // namespace fathom
