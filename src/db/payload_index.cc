#include "db/payload_index.h"

#include <cmath>
#include <new>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace fathom {

namespace {

using json = nlohmann::json;

// 2^63 as a double: the first double above every int64.
constexpr double kTwoPow63 = 9223372036854775808.0;

// The int64 key an integer field files `number` under, if it is an integer value in range
// (5.0 files as 5, so users sending floats for integer fields still get the index).
std::optional<int64_t> IntegerKey(const Number& number) {
  if (number.is_int()) return number.int_value();
  const double d = number.float_value();
  if (!(d >= -kTwoPow63 && d < kTwoPow63) || d != std::trunc(d)) return std::nullopt;
  return static_cast<int64_t>(d);
}

// The double key a float field files `number` under, if a double holds it exactly.
std::optional<double> FloatKey(const Number& number) {
  if (!number.is_int()) {
    if (std::isnan(number.float_value())) return std::nullopt;
    return number.float_value();
  }
  const auto d = static_cast<double>(number.int_value());
  if (!(d < kTwoPow63) || static_cast<int64_t>(d) != number.int_value()) return std::nullopt;
  return d;
}

template <class Map, class Key>
void AddTo(Map* map, const Key& key, uint32_t slot, bool insert) {
  if (insert) {
    (*map)[key].add(slot);
    return;
  }
  const auto it = map->find(key);
  if (it == map->end()) return;
  it->second.remove(slot);
  // Dropping empty entries keeps memory bounded and range scans free of dead keys.
  if (it->second.isEmpty()) map->erase(it);
}

// Unions the bitmaps of every key of a sorted map within `condition`'s bounds: O(log k) to find
// the ends, then one bitmap per distinct key in between.
template <class Map>
SlotBitmap RangeUnion(const Map& map, const Condition& condition) {
  using Iterator = typename Map::const_iterator;
  // True when `a` lies strictly after `b` (end() lies after every key).
  const auto after = [&](Iterator a, Iterator b) {
    if (a == map.end()) return b != map.end();
    if (b == map.end()) return false;
    return map.key_comp()(b->first, a->first);
  };
  Iterator first = map.begin();
  Iterator last = map.end();  // one past the final key in range
  const auto raise = [&](Iterator at) {
    if (after(at, first)) first = at;
  };
  const auto lower = [&](Iterator at) {
    if (after(last, at)) last = at;
  };
  if (condition.gt) raise(map.upper_bound(*condition.gt));
  if (condition.gte) raise(map.lower_bound(*condition.gte));
  if (condition.lt) lower(map.lower_bound(*condition.lt));
  if (condition.lte) lower(map.upper_bound(*condition.lte));
  if (!after(last, first)) return SlotBitmap();
  std::vector<const SlotBitmap*> parts;
  for (Iterator it = first; it != last; ++it) parts.push_back(&it->second);
  if (parts.size() == 1) return *parts.front();
  return SlotBitmap::fastunion(parts.size(), parts.data());
}

size_t CountConditions(const FilterNode& node) {
  if (node.type == FilterNode::Type::kCondition) return 1;
  size_t count = 0;
  for (const FilterNode& child : node.children) count += CountConditions(child);
  return count;
}

// The first condition key under `node`, for messages; empty if there is none.
std::string FirstKey(const FilterNode& node) {
  if (node.type == FilterNode::Type::kCondition) return node.condition.key;
  for (const FilterNode& child : node.children) {
    std::string key = FirstKey(child);
    if (!key.empty()) return key;
  }
  return std::string();
}

}  // namespace

std::string EvalStats::ToString() const {
  return "indexed_conditions=" + std::to_string(indexed_conditions) +
         " scanned_conditions=" + std::to_string(scanned_conditions) +
         " slots_scanned=" + std::to_string(slots_scanned);
}

Result<PayloadIndex> PayloadIndex::Create(std::map<std::string, FieldType> fields) {
  PayloadIndex index(std::move(fields));
  for (const auto& [key, type] : index.types_) {
    FATHOM_ASSIGN_OR_RETURN(std::vector<std::string> path, SplitFieldPath(key));
    FieldIndex& field = index.indexes_[key];
    field.type = type;
    field.path = std::move(path);
  }
  return index;
}

Status PayloadIndex::Validate(const json& payload, const std::string& who) const {
  std::vector<const json*> values;
  for (const auto& [key, field] : indexes_) {
    values.clear();
    CollectFieldValues(payload, field.path, &values);
    for (const json* value : values) {
      if (value->is_null()) continue;
      bool fits = false;
      switch (field.type) {
        case FieldType::kKeyword: fits = value->is_string(); break;
        case FieldType::kBool: fits = value->is_boolean(); break;
        case FieldType::kInteger: {
          const std::optional<Number> number = Number::FromJson(*value);
          fits = number && IntegerKey(*number);
          break;
        }
        case FieldType::kFloat: {
          const std::optional<Number> number = Number::FromJson(*value);
          fits = number && FloatKey(*number);
          break;
        }
        case FieldType::kDatetime:
          fits = value->is_string() && ParseDatetime(value->get_ref<const std::string&>()).has_value();
          break;
      }
      if (!fits) {
        std::string text = value->dump();
        if (text.size() > 64) text = text.substr(0, 61) + "...";
        return Status::InvalidArgument(
            who + ": payload field '" + key + "' is indexed as " + FieldTypeName(field.type) + ", got " + text +
            (field.type == FieldType::kInteger && value->is_number() ? " (integers must be whole numbers from -2^63 to 2^63-1)" : ""));
      }
    }
  }
  return Status::OK();
}

void PayloadIndex::Insert(uint32_t slot, const json& payload) {
  Update(slot, payload, true);
}

void PayloadIndex::Remove(uint32_t slot, const json& payload) {
  Update(slot, payload, false);
}

void PayloadIndex::Update(uint32_t slot, const json& payload, bool insert) {
  std::vector<const json*> values;
  for (auto& [key, field] : indexes_) {
    values.clear();
    CollectFieldValues(payload, field.path, &values);
    bool has_value = false;
    bool irregular = false;
    for (const json* value : values) {
      if (value->is_null()) continue;
      has_value = true;
      switch (field.type) {
        case FieldType::kKeyword:
          if (value->is_string()) {
            AddTo(&field.keywords, value->get_ref<const std::string&>(), slot, insert);
          } else {
            irregular = true;
          }
          break;
        case FieldType::kBool:
          if (value->is_boolean()) {
            SlotBitmap& bitmap = value->get<bool>() ? field.bool_true : field.bool_false;
            insert ? bitmap.add(slot) : bitmap.remove(slot);
          } else {
            irregular = true;
          }
          break;
        case FieldType::kInteger: {
          const std::optional<Number> number = Number::FromJson(*value);
          const std::optional<int64_t> k = number ? IntegerKey(*number) : std::nullopt;
          if (k) {
            AddTo(&field.integers, *k, slot, insert);
          } else {
            irregular = true;
          }
          break;
        }
        case FieldType::kFloat: {
          const std::optional<Number> number = Number::FromJson(*value);
          const std::optional<double> k = number ? FloatKey(*number) : std::nullopt;
          if (k) {
            AddTo(&field.floats, *k, slot, insert);
          } else {
            irregular = true;
          }
          break;
        }
        case FieldType::kDatetime: {
          const std::optional<int64_t> micros =
              value->is_string() ? ParseDatetime(value->get_ref<const std::string&>()) : std::nullopt;
          if (micros) {
            AddTo(&field.integers, *micros, slot, insert);
          } else {
            irregular = true;
          }
          break;
        }
      }
    }
    if (has_value) insert ? field.has_value.add(slot) : field.has_value.remove(slot);
    if (irregular) insert ? field.irregular.add(slot) : field.irregular.remove(slot);
  }
}

size_t PayloadIndex::memory_bytes() const {
  // Per-entry overheads are rough (a map node or hash bucket plus the bitmap object).
  constexpr size_t kEntryOverhead = 64;
  size_t bytes = 0;
  for (const auto& [key, field] : indexes_) {
    for (const auto& [value, bitmap] : field.keywords) {
      bytes += kEntryOverhead + value.capacity() + bitmap.getSizeInBytes(false);
    }
    for (const auto& [value, bitmap] : field.integers)
      bytes += kEntryOverhead + bitmap.getSizeInBytes(false);
    for (const auto& [value, bitmap] : field.floats)
      bytes += kEntryOverhead + bitmap.getSizeInBytes(false);
    for (const SlotBitmap* bitmap :
         {&field.bool_true, &field.bool_false, &field.has_value, &field.irregular}) {
      bytes += bitmap->getSizeInBytes(false);
    }
  }
  return bytes;
}

// Walks a filter tree, narrowing candidate sets as it goes. Holds no state beyond one call.
class PayloadIndex::Evaluator {
 public:
  Evaluator(const PayloadIndex& index, const PayloadLookup& payload_of, EvalStats* stats, const IdLookup& id_of)
      : index_(index), payload_of_(payload_of), stats_(stats), id_of_(id_of) {}

  // The slots of `candidates` that satisfy `node`.
  Result<SlotBitmap> Eval(const FilterNode& node, const SlotBitmap& candidates) {
    if (candidates.isEmpty()) return SlotBitmap();
    const Coverage coverage = CoverageOf(node);
    if (coverage == Coverage::kNone) return Scan({&node}, candidates, /*all=*/true);
    switch (node.type) {
      case FilterNode::Type::kCondition: return EvalIndexed(node.condition, candidates);
      case FilterNode::Type::kNot: {
        FATHOM_ASSIGN_OR_RETURN(SlotBitmap inner, Eval(node.children.front(), candidates));
        return candidates - inner;
      }
      case FilterNode::Type::kAnd: return EvalAnd(node, candidates);
      case FilterNode::Type::kOr: return EvalOr(node, candidates);
      case FilterNode::Type::kAtLeast: return EvalAtLeast(node, candidates);
    }
    return Status::Internal("unknown filter node type");
  }

 private:
  enum class Coverage : uint8_t { kFull, kPartial, kNone };

  // Whether the index can answer every condition under `node`, some, or none. A node without
  // conditions (an empty AND/OR) counts as fully indexed: it needs no payloads.
  Coverage CoverageOf(const FilterNode& node) const {
    if (node.type == FilterNode::Type::kCondition) {
      // Substring tests are not in the index: they read payloads. Ids are answered from the
      // id map, without payloads.
      switch (node.condition.op) {
        case Condition::Op::kText:
        case Condition::Op::kValuesCount:
        case Condition::Op::kGeoRadius:
        case Condition::Op::kGeoBox:
        case Condition::Op::kGeoPolygon:
        case Condition::Op::kNested: return Coverage::kNone;
        default: break;
      }
      if (node.condition.op == Condition::Op::kHasId || node.condition.op == Condition::Op::kHasVector) return Coverage::kFull;
      const auto it = index_.indexes_.find(node.condition.key);
      if (it == index_.indexes_.end()) return Coverage::kNone;
      // A datetime field orders its values as times: it answers datetime ranges and IS NULL;
      // other tests of its strings (equality is of the text) read payloads. Other fields hold
      // no times, so a datetime range on them reads payloads too.
      if (it->second.type == FieldType::kDatetime) {
        const bool covered = (node.condition.datetime && node.condition.op == Condition::Op::kRange) ||
                             node.condition.op == Condition::Op::kIsNull;
        return covered ? Coverage::kFull : Coverage::kNone;
      }
      return node.condition.datetime ? Coverage::kNone : Coverage::kFull;
    }
    bool any_full = false;
    bool any_none = false;
    for (const FilterNode& child : node.children) {
      switch (CoverageOf(child)) {
        case Coverage::kFull: any_full = true; break;
        case Coverage::kNone: any_none = true; break;
        case Coverage::kPartial: return Coverage::kPartial;
      }
    }
    if (any_none) return any_full ? Coverage::kPartial : Coverage::kNone;
    return Coverage::kFull;
  }

  // Splits children into those the index serves (full first, then partial) and the unindexed
  // rest, which are scanned together so each slot's payload is read once.
  void Order(const FilterNode& node, std::vector<const FilterNode*>* indexed,
             std::vector<const FilterNode*>* unindexed) const {
    std::vector<const FilterNode*> partial;
    for (const FilterNode& child : node.children) {
      switch (CoverageOf(child)) {
        case Coverage::kFull: indexed->push_back(&child); break;
        case Coverage::kPartial: partial.push_back(&child); break;
        case Coverage::kNone: unindexed->push_back(&child); break;
      }
    }
    indexed->insert(indexed->end(), partial.begin(), partial.end());
  }

  Result<SlotBitmap> EvalAnd(const FilterNode& node, const SlotBitmap& candidates) {
    std::vector<const FilterNode*> indexed;
    std::vector<const FilterNode*> unindexed;
    Order(node, &indexed, &unindexed);
    SlotBitmap result = candidates;
    for (const FilterNode* child : indexed) {
      if (result.isEmpty()) return result;
      FATHOM_ASSIGN_OR_RETURN(result, Eval(*child, result));
    }
    if (unindexed.empty() || result.isEmpty()) return result;
    return Scan(unindexed, result, /*all=*/true);
  }

  Result<SlotBitmap> EvalOr(const FilterNode& node, const SlotBitmap& candidates) {
    std::vector<const FilterNode*> indexed;
    std::vector<const FilterNode*> unindexed;
    Order(node, &indexed, &unindexed);
    SlotBitmap result;
    SlotBitmap undecided = candidates;  // slots no child has accepted yet
    for (const FilterNode* child : indexed) {
      if (undecided.isEmpty()) return result;
      FATHOM_ASSIGN_OR_RETURN(SlotBitmap accepted, Eval(*child, undecided));
      result |= accepted;
      undecided -= accepted;
    }
    if (unindexed.empty() || undecided.isEmpty()) return result;
    FATHOM_ASSIGN_OR_RETURN(SlotBitmap accepted, Scan(unindexed, undecided, /*all=*/false));
    result |= accepted;
    return result;
  }

  // at_least[j]: the slots that j + 1 or more of the children accept so far.
  Result<SlotBitmap> EvalAtLeast(const FilterNode& node, const SlotBitmap& candidates) {
    if (node.min_count == 0) return candidates;
    if (node.min_count > node.children.size()) return SlotBitmap();
    std::vector<SlotBitmap> at_least(node.min_count);
    for (const FilterNode& child : node.children) {
      FATHOM_ASSIGN_OR_RETURN(SlotBitmap accepted, Eval(child, candidates));
      for (size_t j = node.min_count - 1; j > 0; --j) at_least[j] |= at_least[j - 1] & accepted;
      at_least[0] |= accepted;
    }
    return std::move(at_least.back());
  }

  // Reads the payload of every candidate and keeps those where all (or any) of `nodes` match.
  Result<SlotBitmap> Scan(const std::vector<const FilterNode*>& nodes, const SlotBitmap& candidates,
                          bool all) {
    if (!payload_of_) {
      // Scanned nodes hold no indexed condition, so any key in them is an unindexed one.
      return Status::FailedPrecondition("filter needs payloads (field '" +
                                        FirstKey(*nodes.front()) +
                                        "' is not indexed) but no payload lookup was given");
    }
    if (stats_ != nullptr) {
      for (const FilterNode* node : nodes) stats_->scanned_conditions += CountConditions(*node);
      stats_->slots_scanned += candidates.cardinality();
    }
    SlotBitmap result;
    std::vector<uint32_t> batch;
    for (const uint32_t slot : candidates) {
      const json* payload = payload_of_(slot);
      const json& value = payload != nullptr ? *payload : EmptyObject();
      bool keep = all;
      for (const FilterNode* node : nodes) {
        if (node->Matches(value) != all) {
          keep = !all;
          break;
        }
      }
      if (keep) batch.push_back(slot);
    }
    // Slots arrive in increasing order, so a bulk add is cheap.
    result.addMany(batch.size(), batch.data());
    return result;
  }

  Result<SlotBitmap> EvalIndexed(const Condition& condition, const SlotBitmap& candidates) {
    if (condition.op == Condition::Op::kHasId) {
      if (!id_of_) return Status::FailedPrecondition("has_id needs the collection's ids, which were not given");
      SlotBitmap hits;
      for (const Literal& id : condition.values) {
        if (std::optional<uint32_t> slot = id_of_(id)) hits.add(*slot);
      }
      return hits & candidates;
    }
    if (condition.op == Condition::Op::kHasVector) return candidates;  // (the collection checked the name)
    const FieldIndex& field = index_.indexes_.find(condition.key)->second;
    if (stats_ != nullptr) ++stats_->indexed_conditions;
    // IS NULL reads only has_value, which holds every non-null value whatever its type: exact.
    if (condition.op == Condition::Op::kIsNull) return candidates - field.has_value;

    SlotBitmap hits;
    switch (condition.op) {
      case Condition::Op::kEqual:
        if (const SlotBitmap* equal = Lookup(field, condition.values.front()))
          hits = *equal & candidates;
        break;
      case Condition::Op::kNotEqual:
        hits = field.has_value & candidates;
        if (const SlotBitmap* equal = Lookup(field, condition.values.front())) hits -= *equal;
        break;
      case Condition::Op::kIn: {
        std::vector<const SlotBitmap*> parts;
        for (const Literal& literal : condition.values) {
          if (const SlotBitmap* equal = Lookup(field, literal)) parts.push_back(equal);
        }
        if (!parts.empty()) hits = SlotBitmap::fastunion(parts.size(), parts.data()) & candidates;
        break;
      }
      case Condition::Op::kRange:
        if (field.type == FieldType::kInteger || field.type == FieldType::kDatetime)
          hits = RangeUnion(field.integers, condition) & candidates;
        if (field.type == FieldType::kFloat)
          hits = RangeUnion(field.floats, condition) & candidates;
        break;
      case Condition::Op::kIsNull: break;
      case Condition::Op::kText:  // never indexed (CoverageOf)
      case Condition::Op::kValuesCount:
      case Condition::Op::kGeoRadius:
      case Condition::Op::kGeoBox:
      case Condition::Op::kGeoPolygon:
      case Condition::Op::kNested: break;
      case Condition::Op::kHasId:  // answered above
      case Condition::Op::kHasVector: break;
    }

    // An irregular slot's values are only partly in the typed structure; decide it from its
    // payload. These are rare (a type the field was not declared with), so this stays cheap.
    const SlotBitmap irregular = field.irregular & candidates;
    if (irregular.isEmpty()) return hits;
    if (!payload_of_) {
      return Status::FailedPrecondition("field '" + condition.key +
                                        "' holds values of another type than " +
                                        FieldTypeName(field.type) +
                                        ", so filtering it needs payloads, but no payload lookup "
                                        "was given");
    }
    hits -= irregular;
    if (stats_ != nullptr) stats_->slots_scanned += irregular.cardinality();
    for (const uint32_t slot : irregular) {
      const json* payload = payload_of_(slot);
      if (condition.Matches(payload != nullptr ? *payload : EmptyObject())) hits.add(slot);
    }
    return hits;
  }

  // The slots holding a value equal to `literal`, or null when none do. A literal of another
  // type than the field finds nothing here (irregular slots are checked separately).
  static const SlotBitmap* Lookup(const FieldIndex& field, const Literal& literal) {
    switch (field.type) {
      case FieldType::kKeyword:
        if (const auto* text = std::get_if<std::string>(&literal)) {
          const auto it = field.keywords.find(*text);
          if (it != field.keywords.end()) return &it->second;
        }
        return nullptr;
      case FieldType::kBool:
        if (const bool* flag = std::get_if<bool>(&literal)) {
          return *flag ? &field.bool_true : &field.bool_false;
        }
        return nullptr;
      case FieldType::kInteger:
        if (const auto* number = std::get_if<Number>(&literal)) {
          const auto it = field.integers.find(*number);
          if (it != field.integers.end()) return &it->second;
        }
        return nullptr;
      case FieldType::kFloat:
        if (const auto* number = std::get_if<Number>(&literal)) {
          const auto it = field.floats.find(*number);
          if (it != field.floats.end()) return &it->second;
        }
        return nullptr;
      case FieldType::kDatetime: return nullptr;  // (only ranges are answered from the index)
    }
    return nullptr;
  }

  static const json& EmptyObject() {
    static const json empty = json::object();
    return empty;
  }

  const PayloadIndex& index_;
  const PayloadLookup& payload_of_;
  EvalStats* stats_;
  const IdLookup& id_of_;
};

Result<SlotBitmap> PayloadIndex::Evaluate(const Filter& filter, const SlotBitmap& all_slots,
                                          const PayloadLookup& payload_of, EvalStats* stats,
                                          const IdLookup& id_of) const {
  try {
    Evaluator evaluator(*this, payload_of, stats, id_of);
    return evaluator.Eval(filter.root(), all_slots);
  } catch (const std::bad_alloc&) {
    return Status::ResourceExhausted("out of memory while evaluating a filter");
  } catch (const std::runtime_error& e) {
    // CRoaring's C++ wrapper reports allocation failures as runtime_error.
    return Status::ResourceExhausted(std::string("filter evaluation failed: ") + e.what());
  }
}

}  // namespace fathom
