// PayloadTexts: the payloads a collection caches in RAM, by slot, as their stored JSON text.
//
// A parsed JSON tree costs about 8 bytes of heap per byte of text plus ~64 per payload (a 47-byte
// payload took 448 bytes); the text is what searches return and what the store holds, so it is
// kept as is: 8 bytes per slot plus one allocation of 4 + length bytes per non-empty payload.
// Filters on fields without a payload index parse the text of each point they test.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

namespace fathom {

class PayloadTexts {
 public:
  // Stores `text` for `slot` ("{}" and "" store nothing).
  void Set(uint32_t slot, std::string_view text) {
    if (slot >= texts_.size()) texts_.resize(size_t{slot} + 1);
    Clear(slot);
    if (text.empty() || text == "{}") return;
    const uint32_t n = static_cast<uint32_t>(text.size());
    auto block = std::make_unique<char[]>(sizeof(n) + n);
    std::memcpy(block.get(), &n, sizeof(n));
    std::memcpy(block.get() + sizeof(n), text.data(), n);
    texts_[slot] = std::move(block);
    text_bytes_ += n;
    ++count_;
  }
  // The text for `slot`; "{}" when it has none.
  std::string_view Get(uint32_t slot) const {
    if (slot >= texts_.size() || !texts_[slot]) return "{}";
    uint32_t n;
    std::memcpy(&n, texts_[slot].get(), sizeof(n));
    return {texts_[slot].get() + sizeof(n), n};
  }
  void Clear(uint32_t slot) {
    if (slot >= texts_.size() || !texts_[slot]) return;
    text_bytes_ -= Get(slot).size();
    texts_[slot].reset();
    --count_;
  }
  // Heap bytes: the slot table, the texts and (estimated) 16 bytes of allocator overhead each.
  size_t memory_bytes() const {
    return texts_.capacity() * sizeof(texts_[0]) + text_bytes_ + count_ * (sizeof(uint32_t) + 16);
  }

 private:
  std::vector<std::unique_ptr<char[]>> texts_;
  size_t text_bytes_ = 0;
  size_t count_ = 0;  // non-empty texts
};

}  // namespace fathom
