// IdTable: a collection's point id <-> slot maps, sized for tens of millions of points.
//
// Numeric ids (the common case) cost about 27 bytes each: 8 for slot -> id, 1 for the slot's
// kind, and an entry of a flat (open-addressing) hash map id -> slot; string ids live in two
// more flat maps. (The node-based std::unordered_map of strings used before cost ~130 bytes per
// point.) Not thread-safe: the collection guards it with its state lock.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <absl/container/flat_hash_map.h>

#include "fathom/database.h"

namespace fathom {

class IdTable {
 public:
  void Reserve(size_t n);
  std::optional<uint32_t> Find(const PointId& id) const;
  bool Has(uint32_t slot) const { return slot < kind_.size() && kind_[slot] != kEmpty; }
  // The id in `slot`; requires Has(slot).
  PointId IdOf(uint32_t slot) const;
  // Puts `id` in `slot` (which must hold no id; `id` must be in no slot).
  void Set(uint32_t slot, const PointId& id);
  // Removes the id of `slot`, if any.
  void Clear(uint32_t slot);
  size_t size() const { return numeric_slot_.size() + string_slot_.size(); }
  // One past the largest slot ever set.
  uint32_t slots() const { return static_cast<uint32_t>(kind_.size()); }
  size_t memory_bytes() const;

 private:
  static constexpr uint8_t kEmpty = 0, kNumeric = 1, kString = 2;
  std::vector<uint64_t> numeric_of_;  // slot -> numeric id
  std::vector<uint8_t> kind_;         // slot -> kEmpty / kNumeric / kString
  absl::flat_hash_map<uint64_t, uint32_t> numeric_slot_;
  absl::flat_hash_map<std::string, uint32_t> string_slot_;
  absl::flat_hash_map<uint32_t, std::string> string_of_;
};

}  // namespace fathom
