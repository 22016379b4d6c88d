// VisitedSet: the nodes a graph search has reached (HNSW's visited marks).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace fathom {

// The nodes one search (or one relink) has reached. Up to dense_max_nodes nodes: a 16-bit
// epoch per node, so starting a search clears nothing. Larger graphs: an open-addressing hash set
// of (node, epoch) entries sized to what a search visits (a few thousand nodes at usual ef), so a
// searching thread's memory follows its work rather than the collection (a per-node array is
// 20 MB per thread at 10M points, 200 MB at 100M), and the set stays in the CPU's caches.
class VisitedSet {
 public:
  static constexpr size_t kDenseMaxNodes = size_t{1} << 21;  // 4 MB of epochs (6 MB with slack)

  // Starts a new search over a graph of `nodes` nodes (ids below it).
  void Reset(size_t nodes, size_t dense_max_nodes = kDenseMaxNodes) {
    if (nodes <= dense_max_nodes) {
      if (!table_.empty()) table_ = {};
      if (dense_.size() < nodes) dense_.resize(nodes + nodes / 2 + 16, 0);
      if (++dense_epoch_ == 0) {
        std::fill(dense_.begin(), dense_.end(), 0);
        dense_epoch_ = 1;
      }
      hashed_ = false;
      return;
    }
    if (!dense_.empty()) dense_ = {};
    hashed_ = true;
    // A set grown by one wide search shrinks back after many narrow ones.
    if (table_.size() > kInitialSlots && used_ * 8 < table_.size()) {
      if (++light_searches_ >= 256) {
        table_ = std::vector<Slot>(table_.size() / 2);  // (assign would keep the capacity)
        epoch_ = 0;
        light_searches_ = 0;
      }
    } else {
      light_searches_ = 0;
    }
    if (table_.empty()) table_.assign(kInitialSlots, Slot{});
    if (++epoch_ == 0) {
      std::fill(table_.begin(), table_.end(), Slot{});
      epoch_ = 1;
    }
    used_ = 0;
  }
  // True the first time `node` is seen since Reset.
  bool Insert(uint32_t node) {
    if (!hashed_) {
      if (dense_[node] == dense_epoch_) return false;
      dense_[node] = dense_epoch_;
      return true;
    }
    const size_t mask = table_.size() - 1;
    for (size_t i = Hash(node) & mask;; i = (i + 1) & mask) {
      Slot& slot = table_[i];
      if (slot.epoch != epoch_) {
        slot = {node, epoch_};
        if (++used_ * 2 > table_.size()) Grow();
        return true;
      }
      if (slot.node == node) return false;
    }
  }
  bool hashed() const { return hashed_; }
  // The dense path's marks, for loops that test and set without a branch: node n was visited
  // since Reset when dense_marks()[n] == dense_epoch() (only while !hashed()).
  uint16_t* dense_marks() { return dense_.data(); }
  uint16_t dense_epoch() const { return dense_epoch_; }
  size_t bytes() const { return dense_.capacity() * sizeof(uint16_t) + table_.capacity() * sizeof(Slot); }

 private:
  struct Slot {
    uint32_t node = 0;
    uint32_t epoch = 0;  // the slot holds `node` only when this is the current epoch
  };
  static constexpr size_t kInitialSlots = 8192;
  static size_t Hash(uint32_t node) { return size_t(uint32_t(node * 0x9E3779B1u) ^ (node >> 16)); }
  void Grow() {
    std::vector<Slot> old(table_.size() * 2);
    old.swap(table_);
    const size_t mask = table_.size() - 1;
    for (const Slot& slot : old) {
      if (slot.epoch != epoch_) continue;
      size_t i = Hash(slot.node) & mask;
      while (table_[i].epoch == epoch_) i = (i + 1) & mask;
      table_[i] = slot;
    }
  }

  bool hashed_ = false;
  std::vector<uint16_t> dense_;
  uint16_t dense_epoch_ = 0;
  std::vector<Slot> table_;  // size a power of two, at most half full
  uint32_t epoch_ = 0;
  size_t used_ = 0;
  size_t light_searches_ = 0;
};

}  // namespace fathom
