#include "db/id_table.h"

namespace fathom {

void IdTable::Reserve(size_t n) {
  numeric_of_.reserve(n);
  kind_.reserve(n);
  numeric_slot_.reserve(n);
}

std::optional<uint32_t> IdTable::Find(const PointId& id) const {
  if (const auto* n = std::get_if<uint64_t>(&id)) {
    auto it = numeric_slot_.find(*n);
    if (it == numeric_slot_.end()) return std::nullopt;
    return it->second;
  }
  auto it = string_slot_.find(std::get<std::string>(id));
  if (it == string_slot_.end()) return std::nullopt;
  return it->second;
}

PointId IdTable::IdOf(uint32_t slot) const {
  if (kind_[slot] == kNumeric) return numeric_of_[slot];
  return string_of_.at(slot);
}

void IdTable::Set(uint32_t slot, const PointId& id) {
  if (slot >= kind_.size()) {
    kind_.resize(size_t{slot} + 1, kEmpty);
    numeric_of_.resize(size_t{slot} + 1, 0);
  }
  if (const auto* n = std::get_if<uint64_t>(&id)) {
    kind_[slot] = kNumeric;
    numeric_of_[slot] = *n;
    numeric_slot_[*n] = slot;
  } else {
    const auto& s = std::get<std::string>(id);
    kind_[slot] = kString;
    string_of_[slot] = s;
    string_slot_[s] = slot;
  }
}

void IdTable::Clear(uint32_t slot) {
  if (!Has(slot)) return;
  if (kind_[slot] == kNumeric) {
    numeric_slot_.erase(numeric_of_[slot]);
  } else {
    auto it = string_of_.find(slot);
    string_slot_.erase(it->second);
    string_of_.erase(it);
  }
  kind_[slot] = kEmpty;
}

size_t IdTable::memory_bytes() const {
  size_t bytes = numeric_of_.capacity() * sizeof(uint64_t) + kind_.capacity();
  bytes += numeric_slot_.capacity() * (sizeof(std::pair<uint64_t, uint32_t>) + 1);
  bytes += string_slot_.capacity() * (sizeof(std::pair<std::string, uint32_t>) + 1) +
           string_of_.capacity() * (sizeof(std::pair<uint32_t, std::string>) + 1);
  for (const auto& [slot, s] : string_of_) bytes += 2 * (s.size() > 15 ? s.size() + 1 : 0);
  return bytes;
}

}  // namespace fathom
