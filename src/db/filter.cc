#include "db/filter.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <system_error>

namespace fathom {
namespace {

using json = nlohmann::json;

// 2^63 as a double: the first double above every int64.
constexpr double kTwoPow63 = 9223372036854775808.0;

std::partial_ordering CompareIntDouble(int64_t i, double d) {
  if (std::isnan(d)) return std::partial_ordering::unordered;
  if (d >= kTwoPow63) return std::partial_ordering::less;
  if (d < -kTwoPow63) return std::partial_ordering::greater;
  // d is now within int64 range, so its integral part converts exactly; the fraction decides ties.
  const double whole = std::trunc(d);
  const auto whole_int = static_cast<int64_t>(whole);
  if (i != whole_int) return i <=> whole_int;
  const double fraction = d - whole;
  if (fraction > 0) return std::partial_ordering::less;
  if (fraction < 0) return std::partial_ordering::greater;
  return std::partial_ordering::equivalent;
}

std::partial_ordering Reverse(std::partial_ordering order) {
  if (order == std::partial_ordering::less) return std::partial_ordering::greater;
  if (order == std::partial_ordering::greater) return std::partial_ordering::less;
  return order;
}

// Calls `visit` on each value `path` reaches from `node` (see the array rules in filter.h) and
// returns true as soon as `visit` does. Recursion is bounded by twice the path length, whatever
// the payload's nesting, because arrays are unwrapped only once per path position.
template <class Visit>
bool AnyValue(const json& node, const std::vector<std::string>& path, size_t position,
              bool may_unwrap, const Visit& visit) {
  if (node.is_array()) {
    if (!may_unwrap) return false;
    for (const json& element : node) {
      if (AnyValue(element, path, position, false, visit)) return true;
    }
    return false;
  }
  if (position == path.size()) return visit(node);
  if (!node.is_object()) return false;
  const auto it = node.find(path[position]);
  if (it == node.end()) return false;
  return AnyValue(*it, path, position + 1, true, visit);
}

const char* JsonTypeName(const json& value) {
  switch (value.type()) {
    case json::value_t::null: return "null";
    case json::value_t::object: return "object";
    case json::value_t::array: return "array";
    case json::value_t::string: return "string";
    case json::value_t::boolean: return "bool";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float: return "number";
    case json::value_t::binary: return "binary";
    case json::value_t::discarded: return "discarded";
  }
  return "unknown";
}

// A string as a JSON literal, never throwing on invalid UTF-8 (messages must always render).
std::string QuoteJson(const std::string& text) {
  return json(text).dump(-1, ' ', false, json::error_handler_t::replace);
}

FilterNode MakeCondition(Condition condition) {
  FilterNode node;
  node.type = FilterNode::Type::kCondition;
  node.condition = std::move(condition);
  return node;
}

FilterNode MakeNot(FilterNode child) {
  FilterNode node;
  node.type = FilterNode::Type::kNot;
  node.children.push_back(std::move(child));
  return node;
}

Status NestedTooDeep() {
  return Status::InvalidArgument("filter is nested deeper than " + std::to_string(kMaxFilterDepth) +
                                 " levels");
}

// ---- JSON form ----------------------------------------------------------------------------

Result<Literal> JsonLiteral(const json& value, const std::string& what) {
  if (value.is_boolean()) return Literal(value.get<bool>());
  if (value.is_string()) return Literal(value.get<std::string>());
  if (value.is_number()) {
    Number number = *Number::FromJson(value);
    if (!number.is_int() && std::isnan(number.float_value())) {
      return Status::InvalidArgument(what + " is NaN");
    }
    return Literal(number);
  }
  return Status::InvalidArgument(what + " must be a string, number or bool, got " +
                                 JsonTypeName(value));
}

// `*negate` is set for {"except": [...]}: the caller wraps the IN condition in a NOT.
Status ParseMatch(const json& match, Condition* condition, bool* negate) {
  const std::string& key = condition->key;
  if (!match.is_object()) {
    return Status::InvalidArgument("'match' for key '" + key + "' must be an object, got " +
                                   JsonTypeName(match));
  }
  const json* value = nullptr;
  const json* any = nullptr;
  const json* text = nullptr;
  size_t kinds = 0;
  for (const auto& [kind, operand] : match.items()) {
    ++kinds;
    if (kind == "value") {
      value = &operand;
    } else if (kind == "any") {
      any = &operand;
    } else if (kind == "except") {
      any = &operand;
      *negate = true;
    } else if (kind == "text") {
      text = &operand;
    } else {
      return Status::InvalidArgument("unknown match kind '" + kind + "' for key '" + key +
                                     "': expected value, any, except or text");
    }
  }
  if (kinds > 1) {
    return Status::InvalidArgument("'match' for key '" + key +
                                   "' has more than one of 'value', 'any', 'except' and 'text'");
  }
  if (text != nullptr) {
    if (!text->is_string()) {
      return Status::InvalidArgument("match 'text' for key '" + key + "' must be a string, got " +
                                     JsonTypeName(*text));
    }
    condition->op = Condition::Op::kText;
    condition->values.push_back(text->get<std::string>());
    return Status::OK();
  }
  if (value != nullptr) {
    FATHOM_ASSIGN_OR_RETURN(Literal literal,
                            JsonLiteral(*value, "match value for key '" + key + "'"));
    condition->op = Condition::Op::kEqual;
    condition->values.push_back(std::move(literal));
    return Status::OK();
  }
  if (any != nullptr) {
    if (!any->is_array()) {
      return Status::InvalidArgument(std::string("match '") + (*negate ? "except" : "any") + "' for key '" +
                                     key + "' must be an array, got " + JsonTypeName(*any));
    }
    condition->op = Condition::Op::kIn;
    for (size_t i = 0; i < any->size(); ++i) {
      FATHOM_ASSIGN_OR_RETURN(
          Literal literal,
          JsonLiteral((*any)[i], "match 'any' for key '" + key + "' element " + std::to_string(i)));
      condition->values.push_back(std::move(literal));
    }
    return Status::OK();
  }
  return Status::InvalidArgument("'match' for key '" + key + "' needs 'value', 'any', 'except' or 'text'");
}

// `name`: "range", or "values_count" (the same bounds, on the number of values).
Status ParseRange(const json& range, Condition* condition, const std::string& name = "range") {
  const std::string& key = condition->key;
  if (!range.is_object()) {
    return Status::InvalidArgument("'" + name + "' for key '" + key + "' must be an object, got " +
                                   JsonTypeName(range));
  }
  condition->op = name == "range" ? Condition::Op::kRange : Condition::Op::kValuesCount;
  bool numeric = false;  // a number bound (a datetime range takes strings only)
  for (const auto& [bound, operand] : range.items()) {
    std::optional<Number>* slot = nullptr;
    if (bound == "gt")
      slot = &condition->gt;
    else if (bound == "gte")
      slot = &condition->gte;
    else if (bound == "lt")
      slot = &condition->lt;
    else if (bound == "lte")
      slot = &condition->lte;
    else {
      return Status::InvalidArgument("unknown range bound '" + bound + "' for key '" + key +
                                     "': expected gt, gte, lt, lte");
    }
    // Clients that serialise every optional field (Qdrant's Python models) send null bounds.
    if (operand.is_null()) continue;
    if (operand.is_string() && name == "range") {
      const std::optional<int64_t> micros = ParseDatetime(operand.get_ref<const std::string&>());
      if (!micros) {
        return Status::InvalidArgument("range bound '" + bound + "' for key '" + key +
                                       "' must be a number or an RFC 3339 datetime (e.g. \"2024-05-01T10:00:00Z\"), got " +
                                       operand.dump());
      }
      condition->datetime = true;
      *slot = Number::Int(*micros);
      continue;
    }
    if (!operand.is_number()) {
      return Status::InvalidArgument("range bound '" + bound + "' for key '" + key +
                                     "' must be a number, got " + JsonTypeName(operand));
    }
    Number number = *Number::FromJson(operand);
    if (!number.is_int() && std::isnan(number.float_value())) {
      return Status::InvalidArgument("range bound '" + bound + "' for key '" + key + "' is NaN");
    }
    *slot = number;
    numeric = true;
  }
  if (!condition->gt && !condition->gte && !condition->lt && !condition->lte) {
    return Status::InvalidArgument("'" + name + "' for key '" + key +
                                   "' needs at least one of gt, gte, lt, lte");
  }
  if (condition->datetime && numeric) {
    return Status::InvalidArgument("range for key '" + key + "' mixes datetime and number bounds");
  }
  return Status::OK();
}

// {"lon": x, "lat": y} in degrees.
Result<GeoShape::Point> ParseGeoPoint(const json& value, const std::string& what) {
  if (!value.is_object()) {
    return Status::InvalidArgument(what + " must be an object with 'lon' and 'lat', got " + JsonTypeName(value));
  }
  std::optional<double> lon, lat;
  for (const auto& [field, operand] : value.items()) {
    if (field != "lon" && field != "lat") {
      return Status::InvalidArgument("unknown field '" + field + "' in " + what + ": expected lon, lat");
    }
    if (!operand.is_number()) {
      return Status::InvalidArgument(what + " '" + field + "' must be a number, got " + JsonTypeName(operand));
    }
    (field == "lon" ? lon : lat) = operand.get<double>();
  }
  if (!lon || !lat) return Status::InvalidArgument(what + " needs both 'lon' and 'lat'");
  if (!(*lon >= -180 && *lon <= 180)) {
    return Status::InvalidArgument(what + " 'lon' " + value["lon"].dump() + " is outside [-180, 180]");
  }
  if (!(*lat >= -90 && *lat <= 90)) {
    return Status::InvalidArgument(what + " 'lat' " + value["lat"].dump() + " is outside [-90, 90]");
  }
  return GeoShape::Point{*lon, *lat};
}

// Fields of a geo condition's object, each required once; unknown fields are refused.
Status CheckFields(const json& object, const std::string& what, std::initializer_list<const char*> allowed,
                   std::initializer_list<const char*> required) {
  if (!object.is_object()) return Status::InvalidArgument(what + " must be an object, got " + JsonTypeName(object));
  std::string expected;
  for (const char* field : allowed) expected += (expected.empty() ? "" : ", ") + std::string(field);
  for (const auto& [field, operand] : object.items()) {
    bool known = false;
    for (const char* name : allowed) known = known || field == name;
    if (!known) return Status::InvalidArgument("unknown field '" + field + "' in " + what + ": expected " + expected);
  }
  for (const char* field : required) {
    if (!object.contains(field)) return Status::InvalidArgument(what + " needs '" + field + "'");
  }
  return Status::OK();
}

// {"points": [{lon, lat}, ...]}: at least 3 distinct points; closed here if it was not.
Result<std::vector<GeoShape::Point>> ParseRing(const json& ring, const std::string& what) {
  FATHOM_RETURN_IF_ERROR(CheckFields(ring, what, {"points"}, {"points"}));
  const json& points = ring["points"];
  if (!points.is_array()) {
    return Status::InvalidArgument(what + " 'points' must be an array, got " + JsonTypeName(points));
  }
  std::vector<GeoShape::Point> out;
  for (size_t i = 0; i < points.size(); ++i) {
    FATHOM_ASSIGN_OR_RETURN(GeoShape::Point p, ParseGeoPoint(points[i], what + " point " + std::to_string(i)));
    out.push_back(p);
  }
  auto same = [](const GeoShape::Point& a, const GeoShape::Point& b) { return a.lon == b.lon && a.lat == b.lat; };
  if (out.size() >= 2 && !same(out.front(), out.back())) out.push_back(out.front());
  if (out.size() < 4) {
    return Status::InvalidArgument(what + " needs at least 3 distinct points, got " +
                                   std::to_string(out.empty() ? 0 : out.size() - 1));
  }
  return out;
}

Status ParseGeo(const std::string& name, const json& operand, Condition* condition) {
  const std::string what = "'" + name + "' for key '" + condition->key + "'";
  auto shape = std::make_shared<GeoShape>();
  if (name == "geo_radius") {
    FATHOM_RETURN_IF_ERROR(CheckFields(operand, what, {"center", "radius"}, {"center", "radius"}));
    condition->op = Condition::Op::kGeoRadius;
    shape->kind = GeoShape::Kind::kRadius;
    FATHOM_ASSIGN_OR_RETURN(shape->center, ParseGeoPoint(operand["center"], what + " center"));
    const json& radius = operand["radius"];
    if (!radius.is_number() || !(radius.get<double>() >= 0) || !std::isfinite(radius.get<double>())) {
      return Status::InvalidArgument(what + " radius must be a non-negative number of metres, got " + radius.dump());
    }
    shape->radius = radius.get<double>();
  } else if (name == "geo_bounding_box") {
    FATHOM_RETURN_IF_ERROR(CheckFields(operand, what, {"top_left", "bottom_right"}, {"top_left", "bottom_right"}));
    condition->op = Condition::Op::kGeoBox;
    shape->kind = GeoShape::Kind::kBox;
    FATHOM_ASSIGN_OR_RETURN(shape->top_left, ParseGeoPoint(operand["top_left"], what + " top_left"));
    FATHOM_ASSIGN_OR_RETURN(shape->bottom_right, ParseGeoPoint(operand["bottom_right"], what + " bottom_right"));
    if (shape->top_left.lat < shape->bottom_right.lat) {
      return Status::InvalidArgument(what + " top_left lat must not be below bottom_right lat");
    }
  } else {
    FATHOM_RETURN_IF_ERROR(CheckFields(operand, what, {"exterior", "interiors"}, {"exterior"}));
    condition->op = Condition::Op::kGeoPolygon;
    shape->kind = GeoShape::Kind::kPolygon;
    FATHOM_ASSIGN_OR_RETURN(shape->exterior, ParseRing(operand["exterior"], what + " exterior"));
    const json& interiors = operand.contains("interiors") ? operand["interiors"] : json();
    if (!interiors.is_null()) {
      if (!interiors.is_array()) {
        return Status::InvalidArgument(what + " interiors must be an array of rings, got " + JsonTypeName(interiors));
      }
      for (size_t i = 0; i < interiors.size(); ++i) {
        FATHOM_ASSIGN_OR_RETURN(auto ring, ParseRing(interiors[i], what + " interior " + std::to_string(i)));
        shape->interiors.push_back(std::move(ring));
      }
    }
  }
  condition->geo = std::move(shape);
  return Status::OK();
}

bool IsGeo(const std::string& name) {
  return name == "geo_radius" || name == "geo_bounding_box" || name == "geo_polygon";
}

bool IsCombinator(const std::string& name) {
  return name == "must" || name == "should" || name == "must_not";
}

Result<FilterNode> ParseFieldCondition(const json& clause) {
  const json& key_json = clause["key"];
  if (!key_json.is_string()) {
    return Status::InvalidArgument(std::string("filter 'key' must be a string, got ") +
                                   JsonTypeName(key_json));
  }
  Condition condition;
  condition.key = key_json.get<std::string>();
  FATHOM_ASSIGN_OR_RETURN(condition.path, SplitFieldPath(condition.key));
  const json* match = nullptr;
  const json* range = nullptr;
  const json* other = nullptr;  // values_count or a geo shape
  std::string chosen;           // the first of them, for messages
  for (const auto& [name, operand] : clause.items()) {
    if (name == "key") continue;
    if (name == "match" || name == "range" || name == "values_count" || IsGeo(name)) {
      if (!chosen.empty()) {
        return Status::InvalidArgument("condition on key '" + condition.key + "' has both '" + chosen + "' and '" +
                                       name + "'; use one per condition");
      }
      chosen = name;
      (name == "match" ? match : name == "range" ? range : other) = &operand;
    } else if (IsCombinator(name) || name == "is_null" || name == "is_empty" || name == "nested") {
      return Status::InvalidArgument("filter clause cannot mix 'key' with '" + name + "'");
    } else {
      return Status::InvalidArgument("unknown filter clause '" + name + "' in condition on key '" +
                                     condition.key +
                                     "': expected match, range, values_count, geo_radius, geo_bounding_box or geo_polygon");
    }
  }
  if (other != nullptr) {
    if (chosen == "values_count") {
      FATHOM_RETURN_IF_ERROR(ParseRange(*other, &condition, chosen));
    } else {
      FATHOM_RETURN_IF_ERROR(ParseGeo(chosen, *other, &condition));
    }
    return MakeCondition(std::move(condition));
  }
  if (match != nullptr) {
    bool negate = false;
    FATHOM_RETURN_IF_ERROR(ParseMatch(*match, &condition, &negate));
    if (negate) {
      FilterNode node;
      node.type = FilterNode::Type::kNot;
      FilterNode in = MakeCondition(std::move(condition));
      node.children.push_back(std::move(in));
      return node;
    }
  } else if (range != nullptr) {
    FATHOM_RETURN_IF_ERROR(ParseRange(*range, &condition));
  } else {
    return Status::InvalidArgument("condition on key '" + condition.key +
                                   "' needs 'match' or 'range'");
  }
  return MakeCondition(std::move(condition));
}

// {"has_id": [1, "doc-7"]}: ids as unsigned integers or strings.
Result<FilterNode> ParseHasId(const json& clause) {
  for (const auto& [other, operand] : clause.items()) {
    if (other != "has_id") return Status::InvalidArgument("filter clause cannot mix 'has_id' with '" + other + "'");
  }
  const json& ids = clause["has_id"];
  if (!ids.is_array()) return Status::InvalidArgument(std::string("'has_id' must be an array of point ids, got ") + JsonTypeName(ids));
  Condition condition;
  condition.op = Condition::Op::kHasId;  // (no key: not a payload field)
  for (const json& id : ids) {
    if (id.is_number_unsigned()) {
      const uint64_t n = id.get<uint64_t>();
      if (n > uint64_t(std::numeric_limits<int64_t>::max())) {
        return Status::InvalidArgument("'has_id' id " + id.dump() + " is out of range");
      }
      condition.values.emplace_back(Number::Int(int64_t(n)));
    } else if (id.is_string() && !id.get_ref<const std::string&>().empty()) {
      condition.values.emplace_back(id.get<std::string>());
    } else {
      return Status::InvalidArgument("'has_id' ids must be non-negative integers or non-empty strings, got " + id.dump());
    }
  }
  return MakeCondition(std::move(condition));
}

// {"is_null": {"key": k}} and {"is_empty": {"key": k}} (`name`): both are IS NULL.
Result<FilterNode> ParseIsNull(const json& clause, const std::string& name) {
  for (const auto& [other, operand] : clause.items()) {
    if (other == name) continue;
    if (IsCombinator(other) || other == "is_null" || other == "is_empty" || other == "has_id" || other == "nested") {
      return Status::InvalidArgument("filter clause cannot mix '" + name + "' with '" + other + "'");
    }
    return Status::InvalidArgument("unknown filter clause '" + other +
                                   "': expected must, should, must_not, min_should, key, is_null, is_empty, has_id, has_vector, nested");
  }
  const json& operand = clause[name];
  if (!operand.is_object()) {
    return Status::InvalidArgument("'" + name + "' must be an object with a 'key', got " +
                                   JsonTypeName(operand));
  }
  const json* key = nullptr;
  for (const auto& [field, value] : operand.items()) {
    if (field != "key") {
      return Status::InvalidArgument("unknown field '" + field + "' in '" + name + "': expected key");
    }
    key = &value;
  }
  if (key == nullptr) return Status::InvalidArgument("'" + name + "' needs a 'key'");
  if (!key->is_string()) {
    return Status::InvalidArgument("'" + name + "' key must be a string, got " + JsonTypeName(*key));
  }
  Condition condition;
  condition.op = Condition::Op::kIsNull;
  condition.key = key->get<std::string>();
  FATHOM_ASSIGN_OR_RETURN(condition.path, SplitFieldPath(condition.key));
  return MakeCondition(std::move(condition));
}

Result<FilterNode> ParseClause(const json& clause, size_t depth);

Result<std::vector<FilterNode>> ParseClauseList(const json& list, const std::string& name,
                                                size_t depth) {
  std::vector<FilterNode> nodes;
  if (list.is_null()) return nodes;
  // Qdrant accepts a single clause where a list is expected; so do we.
  if (list.is_object()) {
    FATHOM_ASSIGN_OR_RETURN(FilterNode node, ParseClause(list, depth + 1));
    nodes.push_back(std::move(node));
    return nodes;
  }
  if (!list.is_array()) {
    return Status::InvalidArgument("filter clause '" + name +
                                   "' must be an array of clauses, got " + JsonTypeName(list));
  }
  for (size_t i = 0; i < list.size(); ++i) {
    const json& element = list[i];
    if (!element.is_object()) {
      return Status::InvalidArgument("filter clause '" + name + "' element " + std::to_string(i) +
                                     " must be an object, got " + JsonTypeName(element));
    }
    FATHOM_ASSIGN_OR_RETURN(FilterNode node, ParseClause(element, depth + 1));
    nodes.push_back(std::move(node));
  }
  return nodes;
}

bool HasIdInside(const FilterNode& node) {
  if (node.type == FilterNode::Type::kCondition) return node.condition.op == Condition::Op::kHasId;
  for (const FilterNode& child : node.children) {
    if (HasIdInside(child)) return true;
  }
  return false;
}

// {"nested": {"key": k, "filter": {...}}}: the inner filter is read relative to each element.
Result<FilterNode> ParseNested(const json& clause, size_t depth) {
  for (const auto& [other, operand] : clause.items()) {
    if (other != "nested") return Status::InvalidArgument("filter clause cannot mix 'nested' with '" + other + "'");
  }
  const json& nested = clause["nested"];
  FATHOM_RETURN_IF_ERROR(CheckFields(nested, "'nested'", {"key", "filter"}, {"key", "filter"}));
  const json& key = nested["key"];
  if (!key.is_string()) return Status::InvalidArgument(std::string("'nested' key must be a string, got ") + JsonTypeName(key));
  Condition condition;
  condition.op = Condition::Op::kNested;
  condition.key = key.get<std::string>();
  FATHOM_ASSIGN_OR_RETURN(condition.path, SplitFieldPath(condition.key));
  const json& inner = nested["filter"];
  if (!inner.is_object()) {
    return Status::InvalidArgument(std::string("'nested' filter must be an object, got ") + JsonTypeName(inner));
  }
  FATHOM_ASSIGN_OR_RETURN(FilterNode node, ParseClause(inner, depth + 1));
  if (HasIdInside(node)) return Status::InvalidArgument("'has_id' cannot be used inside 'nested' (ids belong to points, not elements)");
  condition.nested = std::make_shared<const FilterNode>(std::move(node));
  return MakeCondition(std::move(condition));
}

// `depth` counts clause objects from the root (1); only objects recurse, so it bounds the stack.
Result<FilterNode> ParseClause(const json& clause, size_t depth) {
  if (depth > kMaxFilterDepth) return NestedTooDeep();
  if (clause.contains("key")) return ParseFieldCondition(clause);
  if (clause.contains("nested")) return ParseNested(clause, depth);
  if (clause.contains("has_vector")) {
    for (const auto& [other, operand] : clause.items()) {
      if (other != "has_vector") return Status::InvalidArgument("filter clause cannot mix 'has_vector' with '" + other + "'");
    }
    const json& name = clause["has_vector"];
    if (!name.is_string()) {
      return Status::InvalidArgument(std::string("'has_vector' must be a vector name (a string), got ") + JsonTypeName(name));
    }
    Condition condition;
    condition.op = Condition::Op::kHasVector;
    condition.values.emplace_back(name.get<std::string>());
    return MakeCondition(std::move(condition));
  }
  if (clause.contains("is_null")) return ParseIsNull(clause, "is_null");
  if (clause.contains("is_empty")) return ParseIsNull(clause, "is_empty");
  if (clause.contains("has_id")) return ParseHasId(clause);

  std::vector<FilterNode> must;
  std::vector<FilterNode> should;
  std::vector<FilterNode> must_not;
  std::optional<FilterNode> at_least;
  for (const auto& [name, operand] : clause.items()) {
    if (name == "min_should") {
      if (operand.is_null()) continue;
      FATHOM_RETURN_IF_ERROR(CheckFields(operand, "'min_should'", {"conditions", "min_count"}, {"conditions", "min_count"}));
      const json& count = operand["min_count"];
      if (!count.is_number_unsigned()) {
        return Status::InvalidArgument("'min_should' min_count must be a non-negative integer, got " + count.dump());
      }
      FilterNode node;
      node.type = FilterNode::Type::kAtLeast;
      node.min_count = count.get<size_t>();
      FATHOM_ASSIGN_OR_RETURN(node.children, ParseClauseList(operand["conditions"], "min_should conditions", depth));
      at_least = std::move(node);
    } else if (name == "must") {
      FATHOM_ASSIGN_OR_RETURN(must, ParseClauseList(operand, name, depth));
    } else if (name == "should") {
      FATHOM_ASSIGN_OR_RETURN(should, ParseClauseList(operand, name, depth));
    } else if (name == "must_not") {
      FATHOM_ASSIGN_OR_RETURN(must_not, ParseClauseList(operand, name, depth));
    } else if (name == "match" || name == "range" || name == "values_count" || IsGeo(name)) {
      return Status::InvalidArgument("filter clause has '" + name + "' but no 'key'");
    } else {
      return Status::InvalidArgument("unknown filter clause '" + name +
                                     "': expected must, should, must_not, min_should, key, is_null, is_empty, has_id, has_vector, nested");
    }
  }

  FilterNode node;  // AND of: every must, at least one should, no must_not
  node.type = FilterNode::Type::kAnd;
  for (FilterNode& child : must) node.children.push_back(std::move(child));
  if (should.size() == 1) {
    node.children.push_back(std::move(should.front()));
  } else if (should.size() > 1) {
    FilterNode any;
    any.type = FilterNode::Type::kOr;
    any.children = std::move(should);
    node.children.push_back(std::move(any));
  }
  for (FilterNode& child : must_not) node.children.push_back(MakeNot(std::move(child)));
  if (at_least) node.children.push_back(std::move(*at_least));
  // A lone part needs no AND around it; keeping the tree shallow keeps Depth() honest.
  if (node.children.size() == 1) return std::move(node.children.front());
  return node;
}

// ---- Text form ----------------------------------------------------------------------------

enum class Tok : uint8_t {
  kEnd,
  kField,
  kString,
  kNumber,
  kLParen,
  kRParen,
  kComma,
  kEq,
  kNe,
  kLt,
  kLe,
  kGt,
  kGe,
  kAnd,
  kOr,
  kNot,
  kIn,
  kIs,
  kNull,
  kTrue,
  kFalse,
};

struct Token {
  Tok kind = Tok::kEnd;
  size_t column = 0;         // 1-based byte column of the first character
  std::string_view text;     // as written
  std::string string_value;  // kString: unescaped
  std::optional<Number> number;
};

bool IsWordStart(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool IsWordChar(char c) {
  return IsWordStart(c) || (c >= '0' && c <= '9');
}
bool IsDigit(char c) {
  return c >= '0' && c <= '9';
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (x != b[i]) return false;
  }
  return true;
}

std::string DescribeChar(char c) {
  if (c >= 0x20 && c < 0x7f) return std::string("'") + c + "'";
  static constexpr char kHex[] = "0123456789abcdef";
  const auto byte = static_cast<unsigned char>(c);
  return std::string("byte 0x") + kHex[byte >> 4] + kHex[byte & 15];
}

void AppendUtf8(uint32_t code_point, std::string* out) {
  if (code_point < 0x80) {
    out->push_back(static_cast<char>(code_point));
  } else if (code_point < 0x800) {
    out->push_back(static_cast<char>(0xc0 | (code_point >> 6)));
    out->push_back(static_cast<char>(0x80 | (code_point & 0x3f)));
  } else if (code_point < 0x10000) {
    out->push_back(static_cast<char>(0xe0 | (code_point >> 12)));
    out->push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | (code_point & 0x3f)));
  } else {
    out->push_back(static_cast<char>(0xf0 | (code_point >> 18)));
    out->push_back(static_cast<char>(0x80 | ((code_point >> 12) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | (code_point & 0x3f)));
  }
}

class TextParser {
 public:
  explicit TextParser(std::string_view text) : text_(text) {}

  Result<FilterNode> Parse() {
    FATHOM_RETURN_IF_ERROR(Advance());
    FATHOM_ASSIGN_OR_RETURN(FilterNode node, ParseOr(0));
    if (tok_.kind != Tok::kEnd) {
      return Error(tok_.column, "expected AND, OR or end of input, found " + Describe(tok_));
    }
    return node;
  }

 private:
  Status Error(size_t column, const std::string& message) const {
    return Status::InvalidArgument("filter parse error at column " + std::to_string(column) + ": " +
                                   message);
  }

  static std::string Describe(const Token& token) {
    switch (token.kind) {
      case Tok::kEnd: return "end of input";
      case Tok::kString: return "string " + QuoteJson(token.string_value);
      case Tok::kNumber: return "number " + std::string(token.text);
      default: return "'" + std::string(token.text) + "'";
    }
  }

  Status Advance() {
    prev_text_ = tok_.text;
    has_prev_ = tok_.column != 0;
    tok_ = Token();
    return Lex(&tok_);
  }

  // ---- grammar: or := and (OR and)*; and := not (AND not)*; not := NOT not | primary ----

  Result<FilterNode> ParseOr(size_t depth) {
    FATHOM_ASSIGN_OR_RETURN(FilterNode first, ParseAnd(depth));
    if (tok_.kind != Tok::kOr) return first;
    FilterNode node;
    node.type = FilterNode::Type::kOr;
    node.children.push_back(std::move(first));
    while (tok_.kind == Tok::kOr) {
      FATHOM_RETURN_IF_ERROR(Advance());
      FATHOM_ASSIGN_OR_RETURN(FilterNode next, ParseAnd(depth));
      node.children.push_back(std::move(next));
    }
    return node;
  }

  Result<FilterNode> ParseAnd(size_t depth) {
    FATHOM_ASSIGN_OR_RETURN(FilterNode first, ParseNot(depth));
    if (tok_.kind != Tok::kAnd) return first;
    FilterNode node;
    node.type = FilterNode::Type::kAnd;
    node.children.push_back(std::move(first));
    while (tok_.kind == Tok::kAnd) {
      FATHOM_RETURN_IF_ERROR(Advance());
      FATHOM_ASSIGN_OR_RETURN(FilterNode next, ParseNot(depth));
      node.children.push_back(std::move(next));
    }
    return node;
  }

  // `depth` counts NOTs and parentheses around the current point; each one is a recursion.
  Result<FilterNode> ParseNot(size_t depth) {
    if (tok_.kind != Tok::kNot) return ParsePrimary(depth);
    if (depth + 1 > kMaxFilterDepth) return Error(tok_.column, NestedTooDeep().message());
    FATHOM_RETURN_IF_ERROR(Advance());
    FATHOM_ASSIGN_OR_RETURN(FilterNode child, ParseNot(depth + 1));
    return MakeNot(std::move(child));
  }

  Result<FilterNode> ParsePrimary(size_t depth) {
    if (tok_.kind == Tok::kLParen) {
      if (depth + 1 > kMaxFilterDepth) return Error(tok_.column, NestedTooDeep().message());
      const size_t open_column = tok_.column;
      FATHOM_RETURN_IF_ERROR(Advance());
      FATHOM_ASSIGN_OR_RETURN(FilterNode inner, ParseOr(depth + 1));
      if (tok_.kind != Tok::kRParen) {
        return Error(tok_.column, "expected AND, OR or ')' to close the '(' at column " +
                                      std::to_string(open_column) + ", found " + Describe(tok_));
      }
      FATHOM_RETURN_IF_ERROR(Advance());
      return inner;
    }
    if (tok_.kind == Tok::kField) return ParseCondition();
    std::string after = has_prev_ ? " after '" + std::string(prev_text_) + "'" : "";
    return Error(tok_.column, "expected a condition (a field name, NOT or '(')" + after +
                                  ", found " + Describe(tok_));
  }

  Result<FilterNode> ParseCondition() {
    Condition condition;
    condition.key = std::string(tok_.text);
    FATHOM_ASSIGN_OR_RETURN(condition.path, SplitFieldPath(condition.key));
    FATHOM_RETURN_IF_ERROR(Advance());

    switch (tok_.kind) {
      case Tok::kEq:
      case Tok::kNe:
      case Tok::kLt:
      case Tok::kLe:
      case Tok::kGt:
      case Tok::kGe: {
        const Tok op = tok_.kind;
        const std::string op_text(tok_.text);
        FATHOM_RETURN_IF_ERROR(Advance());
        const size_t value_column = tok_.column;
        const char* null_hint = op == Tok::kEq   ? "IS NULL"
                                : op == Tok::kNe ? "IS NOT NULL"
                                                 : nullptr;
        FATHOM_ASSIGN_OR_RETURN(Literal value, ParseValue("after '" + op_text + "'", null_hint));
        if (op == Tok::kEq || op == Tok::kNe) {
          condition.op = op == Tok::kEq ? Condition::Op::kEqual : Condition::Op::kNotEqual;
          condition.values.push_back(std::move(value));
          return MakeCondition(std::move(condition));
        }
        if (!std::holds_alternative<Number>(value)) {
          return Error(value_column,
                       "'" + op_text + "' needs a number, found " + DescribeLiteral(value));
        }
        const Number bound = std::get<Number>(value);
        condition.op = Condition::Op::kRange;
        if (op == Tok::kLt) condition.lt = bound;
        if (op == Tok::kLe) condition.lte = bound;
        if (op == Tok::kGt) condition.gt = bound;
        if (op == Tok::kGe) condition.gte = bound;
        return MakeCondition(std::move(condition));
      }
      case Tok::kIn: {
        FATHOM_RETURN_IF_ERROR(Advance());
        if (tok_.kind != Tok::kLParen) {
          return Error(tok_.column, "expected '(' after IN, found " + Describe(tok_));
        }
        FATHOM_RETURN_IF_ERROR(Advance());
        condition.op = Condition::Op::kIn;
        if (tok_.kind == Tok::kRParen) {
          FATHOM_RETURN_IF_ERROR(Advance());
          return MakeCondition(std::move(condition));
        }
        while (true) {
          FATHOM_ASSIGN_OR_RETURN(Literal value, ParseValue("in the IN list", nullptr));
          condition.values.push_back(std::move(value));
          if (tok_.kind == Tok::kComma) {
            FATHOM_RETURN_IF_ERROR(Advance());
            continue;
          }
          if (tok_.kind == Tok::kRParen) {
            FATHOM_RETURN_IF_ERROR(Advance());
            return MakeCondition(std::move(condition));
          }
          return Error(tok_.column, "expected ',' or ')' in the IN list, found " + Describe(tok_));
        }
      }
      case Tok::kIs: {
        FATHOM_RETURN_IF_ERROR(Advance());
        bool negated = false;
        if (tok_.kind == Tok::kNot) {
          negated = true;
          FATHOM_RETURN_IF_ERROR(Advance());
        }
        if (tok_.kind != Tok::kNull) {
          return Error(tok_.column, std::string(negated ? "expected NULL after IS NOT"
                                                        : "expected NULL or NOT NULL after IS") +
                                        ", found " + Describe(tok_));
        }
        FATHOM_RETURN_IF_ERROR(Advance());
        condition.op = Condition::Op::kIsNull;
        FilterNode node = MakeCondition(std::move(condition));
        return negated ? MakeNot(std::move(node)) : std::move(node);
      }
      default:
        // A bare field name is a flag: `NOT sold` reads as NOT (sold = true).
        condition.op = Condition::Op::kEqual;
        condition.values.push_back(Literal(true));
        return MakeCondition(std::move(condition));
    }
  }

  Result<Literal> ParseValue(const std::string& context, const char* null_hint) {
    Literal value;
    switch (tok_.kind) {
      case Tok::kString: value = std::move(tok_.string_value); break;
      case Tok::kNumber: value = *tok_.number; break;
      case Tok::kTrue: value = true; break;
      case Tok::kFalse: value = false; break;
      default: {
        std::string message = "expected a value (string, number, true or false) " + context +
                              ", found " + Describe(tok_);
        if (tok_.kind == Tok::kNull && null_hint != nullptr) {
          message += std::string(" (use ") + null_hint + ")";
        }
        return Error(tok_.column, message);
      }
    }
    FATHOM_RETURN_IF_ERROR(Advance());
    return value;
  }

  // ---- lexer ----

  Status Lex(Token* token) {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' ||
                                   text_[pos_] == '\n' || text_[pos_] == '\r')) {
      ++pos_;
    }
    token->column = pos_ + 1;
    const size_t start = pos_;
    if (pos_ == text_.size()) {
      token->kind = Tok::kEnd;
      token->text = text_.substr(start, 0);
      return Status::OK();
    }
    const char c = text_[pos_];
    const char next = pos_ + 1 < text_.size() ? text_[pos_ + 1] : '\0';
    auto punct = [&](Tok kind, size_t length) {
      token->kind = kind;
      token->text = text_.substr(start, length);
      pos_ += length;
      return Status::OK();
    };
    switch (c) {
      case '(': return punct(Tok::kLParen, 1);
      case ')': return punct(Tok::kRParen, 1);
      case ',': return punct(Tok::kComma, 1);
      case '=': return punct(Tok::kEq, next == '=' ? 2 : 1);
      case '!':
        if (next == '=') return punct(Tok::kNe, 2);
        return Error(token->column, "unexpected character '!' (use != or NOT)");
      case '<':
        if (next == '=') return punct(Tok::kLe, 2);
        if (next == '>') return punct(Tok::kNe, 2);
        return punct(Tok::kLt, 1);
      case '>':
        if (next == '=') return punct(Tok::kGe, 2);
        return punct(Tok::kGt, 1);
      case '"':
      case '\'': return LexString(token);
      default: break;
    }
    if (c == '-' || IsDigit(c)) return LexNumber(token);
    if (IsWordStart(c)) return LexWord(token);
    return Error(token->column, "unexpected character " + DescribeChar(c));
  }

  Status LexWord(Token* token) {
    const size_t start = pos_;
    while (pos_ < text_.size() && IsWordChar(text_[pos_])) ++pos_;
    bool dotted = false;
    while (pos_ < text_.size() && text_[pos_] == '.') {
      if (pos_ + 1 >= text_.size() || !IsWordChar(text_[pos_ + 1])) {
        const std::string found =
            pos_ + 1 >= text_.size() ? "end of input" : DescribeChar(text_[pos_ + 1]);
        return Error(pos_ + 2, "expected a field name segment after '.', found " + found);
      }
      dotted = true;
      ++pos_;
      while (pos_ < text_.size() && IsWordChar(text_[pos_])) ++pos_;
    }
    token->text = text_.substr(start, pos_ - start);
    token->kind = Tok::kField;
    if (dotted) return Status::OK();
    static constexpr std::pair<std::string_view, Tok> kKeywords[] = {
        {"and", Tok::kAnd}, {"or", Tok::kOr},     {"not", Tok::kNot},   {"in", Tok::kIn},
        {"is", Tok::kIs},   {"null", Tok::kNull}, {"true", Tok::kTrue}, {"false", Tok::kFalse},
    };
    for (const auto& [word, kind] : kKeywords) {
      if (EqualsIgnoreCase(token->text, word)) token->kind = kind;
    }
    return Status::OK();
  }

  Status LexNumber(Token* token) {
    const size_t start = pos_;
    if (text_[pos_] == '-') {
      ++pos_;
      if (pos_ >= text_.size() || !IsDigit(text_[pos_])) {
        const std::string found = pos_ >= text_.size() ? "end of input" : DescribeChar(text_[pos_]);
        return Error(start + 1, "expected a number after '-', found " + found);
      }
    }
    bool is_float = false;
    while (pos_ < text_.size() && IsDigit(text_[pos_])) ++pos_;
    if (pos_ + 1 < text_.size() && text_[pos_] == '.' && IsDigit(text_[pos_ + 1])) {
      is_float = true;
      ++pos_;
      while (pos_ < text_.size() && IsDigit(text_[pos_])) ++pos_;
    }
    if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      size_t p = pos_ + 1;
      if (p < text_.size() && (text_[p] == '+' || text_[p] == '-')) ++p;
      if (p < text_.size() && IsDigit(text_[p])) {
        is_float = true;
        pos_ = p;
        while (pos_ < text_.size() && IsDigit(text_[pos_])) ++pos_;
      }
    }
    // "5abc", "1.2.3", "5." are typos, not a number followed by a field.
    if (pos_ < text_.size() && (IsWordChar(text_[pos_]) || text_[pos_] == '.')) {
      while (pos_ < text_.size() && (IsWordChar(text_[pos_]) || text_[pos_] == '.')) ++pos_;
      return Error(start + 1,
                   "invalid number '" + std::string(text_.substr(start, pos_ - start)) + "'");
    }
    token->kind = Tok::kNumber;
    token->text = text_.substr(start, pos_ - start);
    const char* first = token->text.data();
    const char* last = first + token->text.size();
    if (!is_float) {
      int64_t value = 0;
      const auto [ptr, ec] = std::from_chars(first, last, value);
      if (ec == std::errc() && ptr == last) {
        token->number = Number::Int(value);
        return Status::OK();
      }
      // Integers beyond int64 become doubles, as unsigned JSON integers above 2^63-1 do.
    }
    double value = 0;
    const auto [ptr, ec] = std::from_chars(first, last, value);
    if (ec != std::errc() || ptr != last || !std::isfinite(value)) {
      return Error(start + 1, "number '" + std::string(token->text) + "' is out of range");
    }
    token->number = Number::Float(value);
    return Status::OK();
  }

  Status LexString(Token* token) {
    const size_t start = pos_;
    const char quote = text_[pos_++];
    std::string value;
    while (true) {
      if (pos_ >= text_.size()) return Error(start + 1, "unterminated string");
      const char c = text_[pos_];
      if (c == quote) {
        ++pos_;
        break;
      }
      if (c != '\\') {
        value.push_back(c);
        ++pos_;
        continue;
      }
      const size_t escape_column = pos_ + 1;
      if (pos_ + 1 >= text_.size()) return Error(start + 1, "unterminated string");
      const char e = text_[pos_ + 1];
      pos_ += 2;
      switch (e) {
        case '"':
        case '\'':
        case '\\':
        case '/': value.push_back(e); break;
        case 'b': value.push_back('\b'); break;
        case 'f': value.push_back('\f'); break;
        case 'n': value.push_back('\n'); break;
        case 'r': value.push_back('\r'); break;
        case 't': value.push_back('\t'); break;
        case 'u': {
          uint32_t code_point = 0;
          if (!ReadHex4(&code_point)) {
            return Error(escape_column, "invalid \\u escape in string: expected 4 hex digits");
          }
          if (code_point >= 0xd800 && code_point <= 0xdbff) {
            uint32_t low = 0;
            if (pos_ + 1 < text_.size() && text_[pos_] == '\\' && text_[pos_ + 1] == 'u') {
              pos_ += 2;
              if (!ReadHex4(&low)) {
                return Error(escape_column, "invalid \\u escape in string: expected 4 hex digits");
              }
            }
            if (low < 0xdc00 || low > 0xdfff) {
              return Error(escape_column, "invalid \\u escape in string: unpaired surrogate");
            }
            code_point = 0x10000 + ((code_point - 0xd800) << 10) + (low - 0xdc00);
          } else if (code_point >= 0xdc00 && code_point <= 0xdfff) {
            return Error(escape_column, "invalid \\u escape in string: unpaired surrogate");
          }
          AppendUtf8(code_point, &value);
          break;
        }
        default:
          return Error(escape_column, "invalid escape " + std::string("'\\") + e + "' in string");
      }
    }
    token->kind = Tok::kString;
    token->text = text_.substr(start, pos_ - start);
    token->string_value = std::move(value);
    return Status::OK();
  }

  bool ReadHex4(uint32_t* out) {
    if (pos_ + 4 > text_.size()) return false;
    uint32_t value = 0;
    for (size_t i = 0; i < 4; ++i) {
      const char h = text_[pos_ + i];
      value <<= 4;
      if (h >= '0' && h <= '9')
        value |= static_cast<uint32_t>(h - '0');
      else if (h >= 'a' && h <= 'f')
        value |= static_cast<uint32_t>(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F')
        value |= static_cast<uint32_t>(h - 'A' + 10);
      else
        return false;
    }
    pos_ += 4;
    *out = value;
    return true;
  }

  std::string_view text_;
  size_t pos_ = 0;
  Token tok_;
  std::string_view prev_text_;
  bool has_prev_ = false;
};

// ---- tree walks ---------------------------------------------------------------------------

size_t NodeDepth(const FilterNode& node) {
  size_t deepest_child = 0;
  for (const FilterNode& child : node.children)
    deepest_child = std::max(deepest_child, NodeDepth(child));
  return 1 + deepest_child;
}

void CollectKeys(const FilterNode& node, std::vector<std::string>* keys) {
  if (node.type == FilterNode::Type::kCondition) {
    if (node.condition.op == Condition::Op::kHasId || node.condition.op == Condition::Op::kHasVector) return;
    for (const std::string& key : *keys) {
      if (key == node.condition.key) return;
    }
    keys->push_back(node.condition.key);
    return;
  }
  for (const FilterNode& child : node.children) CollectKeys(child, keys);
}

bool Fits(FieldType type, const Literal& literal) {
  switch (type) {
    case FieldType::kKeyword: return std::holds_alternative<std::string>(literal);
    case FieldType::kInteger:
    case FieldType::kFloat: return std::holds_alternative<Number>(literal);
    case FieldType::kBool: return std::holds_alternative<bool>(literal);
    case FieldType::kDatetime: return std::holds_alternative<std::string>(literal);
  }
  return false;
}

Status CheckNodeTypes(const FilterNode& node, const std::map<std::string, FieldType>& indexed) {
  if (node.type != FilterNode::Type::kCondition) {
    for (const FilterNode& child : node.children) {
      FATHOM_RETURN_IF_ERROR(CheckNodeTypes(child, indexed));
    }
    return Status::OK();
  }
  const Condition& condition = node.condition;
  // Ids, counts of values, geo shapes, nested filters and datetimes compare no literal with the
  // field's values as typed (a nested filter's keys are relative to its elements; a datetime
  // bound is a string read as a time).
  if (condition.datetime) return Status::OK();
  switch (condition.op) {
    case Condition::Op::kHasId:
    case Condition::Op::kHasVector:
    case Condition::Op::kValuesCount:
    case Condition::Op::kGeoRadius:
    case Condition::Op::kGeoBox:
    case Condition::Op::kGeoPolygon:
    case Condition::Op::kNested: return Status::OK();
    default: break;
  }
  const auto it = indexed.find(condition.key);
  if (it == indexed.end()) return Status::OK();
  auto check = [&](const Literal& literal) {
    if (Fits(it->second, literal)) return Status::OK();
    return Status::InvalidArgument("filter compares field '" + condition.key + "' (" +
                                   FieldTypeName(it->second) + ") with " +
                                   DescribeLiteral(literal));
  };
  for (const Literal& literal : condition.values) FATHOM_RETURN_IF_ERROR(check(literal));
  for (const auto* bound : {&condition.gt, &condition.gte, &condition.lt, &condition.lte}) {
    if (bound->has_value()) FATHOM_RETURN_IF_ERROR(check(Literal(**bound)));
  }
  return Status::OK();
}

}  // namespace

// ---- Number, literals ---------------------------------------------------------------------

std::optional<Number> Number::FromJson(const json& value) {
  if (value.is_number_unsigned()) {
    const auto u = value.get<uint64_t>();
    if (u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Int(static_cast<int64_t>(u));
    }
    return Float(static_cast<double>(u));
  }
  if (value.is_number_integer()) return Int(value.get<int64_t>());
  if (value.is_number_float()) return Float(value.get<double>());
  return std::nullopt;
}

std::string Number::ToString() const {
  if (is_int_) return std::to_string(int_);
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), float_);
  std::string text(buffer, result.ptr);
  // Keep floats recognisable as floats ("5.0", not "5"); 'n' covers inf and nan.
  if (text.find_first_of(".en") == std::string::npos) text += ".0";
  return text;
}

std::partial_ordering operator<=>(const Number& a, const Number& b) {
  if (a.is_int_ && b.is_int_) return a.int_ <=> b.int_;
  if (!a.is_int_ && !b.is_int_) return a.float_ <=> b.float_;
  if (a.is_int_) return CompareIntDouble(a.int_, b.float_);
  return Reverse(CompareIntDouble(b.int_, a.float_));
}

std::string DescribeLiteral(const Literal& literal) {
  if (const bool* b = std::get_if<bool>(&literal)) return *b ? "bool true" : "bool false";
  if (const Number* n = std::get_if<Number>(&literal)) return "number " + n->ToString();
  return "string " + QuoteJson(std::get<std::string>(literal));
}

bool LiteralEquals(const Literal& literal, const json& value) {
  if (const bool* b = std::get_if<bool>(&literal))
    return value.is_boolean() && value.get<bool>() == *b;
  if (const Number* n = std::get_if<Number>(&literal)) {
    const std::optional<Number> number = Number::FromJson(value);
    return number.has_value() && *number == *n;
  }
  return value.is_string() && value.get_ref<const std::string&>() == std::get<std::string>(literal);
}

// ---- Condition, FilterNode ----------------------------------------------------------------

bool Condition::InRange(const Number& number) const {
  if (gt && !(number > *gt)) return false;
  if (gte && !(number >= *gte)) return false;
  if (lt && !(number < *lt)) return false;
  if (lte && !(number <= *lte)) return false;
  return true;
}

bool Condition::Matches(const json& payload) const {
  switch (op) {
    case Op::kIsNull:
      return !AnyValue(payload, path, 0, true, [](const json& v) { return !v.is_null(); });
    case Op::kEqual:
      if (values.empty()) return false;
      return AnyValue(payload, path, 0, true,
                      [&](const json& v) { return LiteralEquals(values.front(), v); });
    case Op::kNotEqual: {
      if (values.empty()) return false;
      bool has_value = false;
      const bool equal = AnyValue(payload, path, 0, true, [&](const json& v) {
        has_value = has_value || !v.is_null();
        return LiteralEquals(values.front(), v);
      });
      return has_value && !equal;
    }
    case Op::kIn:
      return AnyValue(payload, path, 0, true, [&](const json& v) {
        for (const Literal& literal : values) {
          if (LiteralEquals(literal, v)) return true;
        }
        return false;
      });
    case Op::kRange:
      if (datetime) {
        return AnyValue(payload, path, 0, true, [&](const json& v) {
          if (!v.is_string()) return false;
          const std::optional<int64_t> micros = ParseDatetime(v.get_ref<const std::string&>());
          return micros.has_value() && InRange(Number::Int(*micros));
        });
      }
      return AnyValue(payload, path, 0, true, [&](const json& v) {
        const std::optional<Number> number = Number::FromJson(v);
        return number.has_value() && InRange(*number);
      });
    case Op::kHasId:
      return false;  // (ids are not in payloads: the evaluator decides)
    case Op::kHasVector:
      return true;  // (every point has every vector of its collection, which checked the name)
    case Op::kValuesCount: {
      int64_t count = 0;
      AnyValue(payload, path, 0, true, [&](const json& v) {
        count += v.is_null() ? 0 : 1;
        return false;
      });
      return InRange(Number::Int(count));
    }
    case Op::kGeoRadius:
    case Op::kGeoBox:
    case Op::kGeoPolygon:
      if (geo == nullptr) return false;
      return AnyValue(payload, path, 0, true, [&](const json& v) {
        if (!v.is_object()) return false;
        const auto lon = v.find("lon"), lat = v.find("lat");
        if (lon == v.end() || lat == v.end() || !lon->is_number() || !lat->is_number()) return false;
        return geo->Contains({lon->get<double>(), lat->get<double>()});
      });
    case Op::kNested:
      if (nested == nullptr) return false;
      return AnyValue(payload, path, 0, true, [&](const json& v) { return v.is_object() && nested->Matches(v); });
    case Op::kText: {
      if (values.empty()) return false;
      const auto* text = std::get_if<std::string>(&values.front());
      if (text == nullptr) return false;
      return AnyValue(payload, path, 0, true, [&](const json& v) {
        return v.is_string() && v.get_ref<const std::string&>().find(*text) != std::string::npos;
      });
    }
  }
  return false;
}

namespace {
constexpr double kEarthRadiusMetres = 6371008.8;  // mean radius
constexpr double kPi = 3.14159265358979323846;

double Radians(double degrees) { return degrees * (kPi / 180.0); }

// Great-circle distance (haversine) in metres.
double GreatCircleMetres(const GeoShape::Point& a, const GeoShape::Point& b) {
  const double dlat = Radians(b.lat - a.lat), dlon = Radians(b.lon - a.lon);
  const double h = std::sin(dlat / 2) * std::sin(dlat / 2) +
                   std::cos(Radians(a.lat)) * std::cos(Radians(b.lat)) * std::sin(dlon / 2) * std::sin(dlon / 2);
  return 2 * kEarthRadiusMetres * std::asin(std::min(1.0, std::sqrt(h)));
}

bool OnSegment(const GeoShape::Point& p, const GeoShape::Point& a, const GeoShape::Point& b) {
  const double cross = (b.lon - a.lon) * (p.lat - a.lat) - (b.lat - a.lat) * (p.lon - a.lon);
  if (std::abs(cross) > 1e-12 * (1 + std::abs(b.lon - a.lon) + std::abs(b.lat - a.lat))) return false;
  return p.lon >= std::min(a.lon, b.lon) && p.lon <= std::max(a.lon, b.lon) && p.lat >= std::min(a.lat, b.lat) &&
         p.lat <= std::max(a.lat, b.lat);
}

// 1: inside, 0: on the ring, -1: outside (the ring is closed: first == last).
int RingSide(const std::vector<GeoShape::Point>& ring, const GeoShape::Point& p) {
  bool inside = false;
  for (size_t i = 0; i + 1 < ring.size(); ++i) {
    const GeoShape::Point& a = ring[i];
    const GeoShape::Point& b = ring[i + 1];
    if (OnSegment(p, a, b)) return 0;
    // Crossing number: edges that straddle the horizontal line through p, right of p.
    if ((a.lat > p.lat) != (b.lat > p.lat)) {
      const double lon = a.lon + (p.lat - a.lat) * (b.lon - a.lon) / (b.lat - a.lat);
      if (p.lon < lon) inside = !inside;
    }
  }
  return inside ? 1 : -1;
}
}  // namespace

bool GeoShape::Contains(const Point& p) const {
  switch (kind) {
    case Kind::kRadius: return GreatCircleMetres(center, p) <= radius;
    case Kind::kBox: {
      if (p.lat > top_left.lat || p.lat < bottom_right.lat) return false;
      if (top_left.lon <= bottom_right.lon) return p.lon >= top_left.lon && p.lon <= bottom_right.lon;
      return p.lon >= top_left.lon || p.lon <= bottom_right.lon;  // across the antimeridian
    }
    case Kind::kPolygon: {
      if (RingSide(exterior, p) < 0) return false;
      for (const auto& hole : interiors) {
        if (RingSide(hole, p) > 0) return false;
      }
      return true;
    }
  }
  return false;
}

bool FilterNode::Matches(const json& payload) const {
  switch (type) {
    case Type::kAnd:
      for (const FilterNode& child : children) {
        if (!child.Matches(payload)) return false;
      }
      return true;
    case Type::kOr:
      for (const FilterNode& child : children) {
        if (child.Matches(payload)) return true;
      }
      return false;
    case Type::kNot: return children.empty() || !children.front().Matches(payload);
    case Type::kAtLeast: {
      size_t held = 0;
      for (const FilterNode& child : children) {
        if (held >= min_count) break;
        held += child.Matches(payload) ? 1 : 0;
      }
      return held >= min_count;
    }
    case Type::kCondition: return condition.Matches(payload);
  }
  return false;
}

// ---- Filter -------------------------------------------------------------------------------

Result<Filter> Filter::ParseJson(std::string_view json_text) {
  json parsed;
  try {
    parsed = json::parse(json_text);
  } catch (const json::parse_error& e) {
    // nlohmann says "[json.exception.parse_error.101] parse error at line 1, column 17: <why>";
    // keep <why> and report the byte offset, which is unambiguous for one-line bodies too.
    std::string detail = e.what();
    const size_t at = detail.find("parse error");
    const size_t colon = at == std::string::npos ? std::string::npos : detail.find(": ", at);
    if (colon != std::string::npos) detail = detail.substr(colon + 2);
    return Status::InvalidArgument("filter is not valid JSON at byte " + std::to_string(e.byte) +
                                   ": " + detail);
  } catch (const json::exception& e) {
    std::string detail = e.what();
    const size_t bracket = detail.find("] ");
    if (bracket != std::string::npos) detail = detail.substr(bracket + 2);
    return Status::InvalidArgument("filter is not valid JSON: " + detail);
  }
  return ParseJsonValue(parsed);
}

Result<Filter> Filter::ParseJsonValue(const json& value) {
  if (!value.is_object()) {
    return Status::InvalidArgument(std::string("filter must be a JSON object, got ") +
                                   JsonTypeName(value));
  }
  try {
    FATHOM_ASSIGN_OR_RETURN(FilterNode root, ParseClause(value, 1));
    return Filter(std::move(root));
  } catch (const json::exception& e) {
    // Every access above is type-checked first; this only guards against a library surprise.
    return Status::InvalidArgument(std::string("filter could not be read: ") + e.what());
  }
}

Result<Filter> Filter::ParseText(std::string_view text) {
  TextParser parser(text);
  FATHOM_ASSIGN_OR_RETURN(FilterNode root, parser.Parse());
  return Filter(std::move(root));
}

size_t Filter::Depth() const {
  return NodeDepth(root_);
}

std::vector<std::string> Filter::Fields() const {
  std::vector<std::string> keys;
  CollectKeys(root_, &keys);
  return keys;
}

std::vector<std::string> Filter::VectorNames() const {
  std::vector<std::string> names;
  auto walk = [&](const FilterNode& node, auto&& self) -> void {
    if (node.type == FilterNode::Type::kCondition) {
      const Condition& c = node.condition;
      if (c.op == Condition::Op::kHasVector && !c.values.empty()) names.push_back(std::get<std::string>(c.values.front()));
      if (c.op == Condition::Op::kNested && c.nested != nullptr) self(*c.nested, self);
      return;
    }
    for (const FilterNode& child : node.children) self(child, self);
  };
  walk(root_, walk);
  return names;
}

Status Filter::CheckTypes(const std::map<std::string, FieldType>& indexed) const {
  return CheckNodeTypes(root_, indexed);
}

// ---- datetimes ----------------------------------------------------------------------------

namespace {
// Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (Howard Hinnant's method).
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

bool Digits(std::string_view text, size_t at, size_t n, int* out) {
  if (at + n > text.size()) return false;
  int value = 0;
  for (size_t i = at; i < at + n; ++i) {
    if (text[i] < '0' || text[i] > '9') return false;
    value = value * 10 + (text[i] - '0');
  }
  *out = value;
  return true;
}
}  // namespace

std::optional<int64_t> ParseDatetime(std::string_view t) {
  int year, month, day, hour = 0, minute = 0, second = 0;
  if (!Digits(t, 0, 4, &year) || t.size() < 10 || t[4] != '-' || !Digits(t, 5, 2, &month) || t[7] != '-' ||
      !Digits(t, 8, 2, &day)) {
    return std::nullopt;
  }
  static constexpr int kDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  if (month < 1 || month > 12 || day < 1 || day > kDays[month - 1] || (month == 2 && day == 29 && !leap)) return std::nullopt;
  int64_t micros = 0;
  int64_t offset_seconds = 0;
  size_t i = 10;
  if (i < t.size()) {
    if (t[i] != 'T' && t[i] != 't' && t[i] != ' ') return std::nullopt;
    if (!Digits(t, i + 1, 2, &hour) || i + 3 >= t.size() || t[i + 3] != ':' || !Digits(t, i + 4, 2, &minute)) return std::nullopt;
    i += 6;
    if (i < t.size() && t[i] == ':') {
      if (!Digits(t, i + 1, 2, &second)) return std::nullopt;
      i += 3;
      if (i < t.size() && t[i] == '.') {
        ++i;
        int64_t scale = 100000;
        const size_t start = i;
        for (; i < t.size() && t[i] >= '0' && t[i] <= '9'; ++i) {
          micros += (t[i] - '0') * scale;
          scale /= 10;
        }
        if (i == start) return std::nullopt;
      }
    }
    if (hour > 23 || minute > 59 || second > 60) return std::nullopt;
    if (i < t.size()) {
      if ((t[i] == 'Z' || t[i] == 'z') && i + 1 == t.size()) {
        ++i;
      } else if (t[i] == '+' || t[i] == '-') {
        int oh, om;
        if (!Digits(t, i + 1, 2, &oh) || i + 3 >= t.size() || t[i + 3] != ':' || !Digits(t, i + 4, 2, &om) ||
            i + 6 != t.size() || oh > 23 || om > 59) {
          return std::nullopt;
        }
        offset_seconds = (t[i] == '+' ? 1 : -1) * int64_t(oh * 3600 + om * 60);
        i += 6;
      } else {
        return std::nullopt;
      }
    }
  }
  if (i != t.size() && t.size() != 10) return std::nullopt;
  const int64_t seconds = DaysFromCivil(year, unsigned(month), unsigned(day)) * 86400 + hour * 3600 + minute * 60 + second -
                          offset_seconds;
  return seconds * 1000000 + micros;
}

// ---- field paths --------------------------------------------------------------------------

Result<std::vector<std::string>> SplitFieldPath(std::string_view key) {
  if (key.empty()) return Status::InvalidArgument("field path is empty");
  std::vector<std::string> path;
  size_t begin = 0;
  while (true) {
    const size_t dot = key.find('.', begin);
    std::string_view segment =
        key.substr(begin, dot == std::string_view::npos ? std::string_view::npos : dot - begin);
    // Qdrant's "diet[].food": arrays unwrap anyway, so "[]" adds nothing.
    if (segment.size() > 2 && segment.ends_with("[]")) segment.remove_suffix(2);
    if (segment.empty()) {
      return Status::InvalidArgument("field path '" + std::string(key) + "' has an empty segment");
    }
    path.emplace_back(segment);
    if (dot == std::string_view::npos) break;
    begin = dot + 1;
  }
  return path;
}

void CollectFieldValues(const json& payload, const std::vector<std::string>& path,
                        std::vector<const json*>* out) {
  AnyValue(payload, path, 0, true, [out](const json& value) {
    out->push_back(&value);
    return false;
  });
}

}  // namespace fathom
