// PayloadIndex: in-memory secondary indexes over the payload fields a collection declares, used
// to turn a Filter into the set of record slots it allows (a Roaring bitmap).
//
// One structure per indexed field, shaped by its FieldType:
//   keyword  hash map   value -> slots        (= and IN: O(1) per literal)
//   bool     two bitmaps (true, false)
//   integer  ordered map int64 -> slots       (= and IN: O(log k); range: O(log k + m))
//   float    ordered map double -> slots      (same)
//   datetime ordered map int64 -> slots       (RFC 3339 strings as microseconds since 1970 UTC:
//                                              datetime ranges; other tests read payloads)
// where k is the number of distinct values of the field and m the number of distinct values a
// range covers (their bitmaps are unioned, so a range's cost grows with the values it spans, not
// with the collection). Each field also keeps `has_value` (slots with any non-null value: IS NULL
// is its complement) and `irregular` (slots holding a value the typed structure cannot hold, e.g.
// a string in an integer field, or a number beyond int64 in it): those few slots are decided by
// reading their payloads, so results never depend on payloads obeying the declared types.
//
// Evaluate answers conditions on indexed fields from bitmaps and falls back to reading payloads
// (through the caller's lookup) for conditions on other fields, reading only the slots still
// possible: an AND evaluates its indexed children first and scans the survivors; an OR scans
// only the slots no indexed child has already accepted. The result always equals
// {slot in all_slots : filter.Matches(payload_of(slot))}.
//
// Thread-safety: const methods (Evaluate, fields, memory_bytes) never modify state and may run
// concurrently with each other; Insert and Remove need exclusive access. The owning collection
// guards the index with its own reader/writer lock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <roaring/roaring.hh>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "db/field_type.h"
#include "db/filter.h"
#include "fathom/status.h"

// CRoaring declares its C++ class as roaring::Roaring since 0.3 and as ::Roaring before (Debian
// 12 ships 0.2.66). A using-directive finds whichever exists, so SlotBitmap names the same class
// on both.
namespace roaring {}
namespace fathom {
namespace roaring_compat {
using namespace ::roaring;  // NOLINT(google-build-using-namespace)
using Bitmap = Roaring;
}  // namespace roaring_compat

// A set of record slots.
using SlotBitmap = roaring_compat::Bitmap;

// How Evaluate answered a filter, for logs and "explain" output.
struct EvalStats {
  size_t indexed_conditions = 0;  // conditions answered from the payload index
  size_t scanned_conditions = 0;  // conditions decided by reading payloads
  size_t slots_scanned = 0;       // payload reads (one slot read for two conditions counts once)

  // "indexed_conditions=2 scanned_conditions=1 slots_scanned=118"
  std::string ToString() const;
};

// Returns the payload stored for a slot; nullptr is read as an empty object.
using PayloadLookup = std::function<const nlohmann::json*(uint32_t slot)>;
// Returns the slot of a point id (an integer Number or a string Literal), nullopt when unknown:
// how has_id conditions are decided.
using IdLookup = std::function<std::optional<uint32_t>(const Literal& id)>;

class PayloadIndex {
 public:
  // Indexes `fields` (key path -> type). Fails if a key is not a valid field path
  // (see SplitFieldPath).
  static Result<PayloadIndex> Create(std::map<std::string, FieldType> fields);

  const std::map<std::string, FieldType>& fields() const { return types_; }

  // InvalidArgument, beginning with `who`, when a value of an indexed field does not have the
  // field's type (an array's elements are checked one by one; null and absent pass).
  Status Validate(const nlohmann::json& payload, const std::string& who) const;

  // Adds the indexed fields of `payload` under `slot`. The slot must not be indexed already
  // (Remove the old payload first when a record is replaced).
  void Insert(uint32_t slot, const nlohmann::json& payload);
  // Removes `slot`; `payload` must be exactly what was inserted for it.
  void Remove(uint32_t slot, const nlohmann::json& payload);

  // The slots of `all_slots` whose payload matches `filter`. `payload_of` is called only for
  // slots that must be read (unindexed fields, irregular values); it may be empty when every
  // condition is on an indexed field, otherwise Evaluate fails with FailedPrecondition.
  // `stats` may be null. has_id conditions need `id_of` (else FailedPrecondition). Fails with
  // ResourceExhausted if memory runs out.
  Result<SlotBitmap> Evaluate(const Filter& filter, const SlotBitmap& all_slots,
                              const PayloadLookup& payload_of, EvalStats* stats,
                              const IdLookup& id_of = {}) const;

  // Approximate heap bytes held by the bitmaps and maps.
  size_t memory_bytes() const;

 private:
  // Orders int64, double and Number keys by exact numeric value, so a bound of either kind can
  // be looked up in a map of either kind without rounding.
  struct NumberLess {
    using is_transparent = void;
    static Number AsNumber(int64_t value) { return Number::Int(value); }
    static Number AsNumber(double value) { return Number::Float(value); }
    static const Number& AsNumber(const Number& value) { return value; }
    template <class A, class B>
    bool operator()(const A& a, const B& b) const {
      if constexpr (std::is_same_v<A, B> && std::is_arithmetic_v<A>) {
        return a < b;
      } else {
        return AsNumber(a) < AsNumber(b);
      }
    }
  };

  struct FieldIndex {
    FieldType type = FieldType::kKeyword;
    std::vector<std::string> path;
    std::unordered_map<std::string, SlotBitmap> keywords;  // kKeyword
    SlotBitmap bool_true;                                  // kBool
    SlotBitmap bool_false;                                 // kBool
    std::map<int64_t, SlotBitmap, NumberLess> integers;    // kInteger, kDatetime (microseconds)
    std::map<double, SlotBitmap, NumberLess> floats;       // kFloat (NaN never stored)
    SlotBitmap has_value;                                  // slots with at least one non-null value
    SlotBitmap irregular;  // slots with a non-null value the typed structure does not hold
  };
  class Evaluator;

  explicit PayloadIndex(std::map<std::string, FieldType> types) : types_(std::move(types)) {}
  // Adds (insert) or removes (!insert) `slot` under every indexed value of `payload`.
  void Update(uint32_t slot, const nlohmann::json& payload, bool insert);

  std::map<std::string, FieldType> types_;
  std::map<std::string, FieldIndex, std::less<>> indexes_;  // same keys as types_
};

}  // namespace fathom
