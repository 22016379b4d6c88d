// Region: a large block of anonymous memory that grows without copying its bytes.
//
// Growing maps a new address range and moves the old pages into it with mremap (the kernel
// moves page-table entries; the data is neither read nor written), so growing a multi-gigabyte
// HNSW graph takes milliseconds under its structure lock instead of a copy of every byte plus a
// page fault for every fresh page (seconds at 10M points). Regions of 4 MiB and more are 2 MiB
// aligned and advised for transparent huge pages. Bytes never written read as zero.
#pragma once

#include <cstddef>

namespace fathom {

class Region {
 public:
  Region() = default;
  ~Region() { Reset(); }
  Region(Region&& other) noexcept;
  Region& operator=(Region&& other) noexcept;
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;

  // Grows to at least `bytes`, keeping the contents; the data may move (data() changes). Returns
  // false, with nothing changed, when the system refuses the memory.
  bool Grow(size_t bytes);
  // Frees the memory.
  void Reset();
  char* data() const { return data_; }
  size_t size() const { return size_; }
  explicit operator bool() const { return data_ != nullptr; }

 private:
  char* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace fathom
