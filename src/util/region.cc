#include "util/region.h"

#include <sys/mman.h>

#include <cstdint>
#include <utility>

namespace fathom {
namespace {

constexpr size_t kPage = 4096;
constexpr size_t kHugePage = size_t{2} << 20;

size_t RoundUp(size_t x, size_t to) { return (x + to - 1) / to * to; }

// Address space for `bytes` (a multiple of `align`) at an `align`-aligned address, mapped
// inaccessible and reserving no memory; nullptr when refused.
char* Reserve(size_t bytes, size_t align) {
  const size_t span = bytes + align - kPage;
  void* p = ::mmap(nullptr, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  const uintptr_t start = reinterpret_cast<uintptr_t>(p);
  const uintptr_t aligned = (start + align - 1) & ~(uintptr_t{align} - 1);
  if (aligned > start) ::munmap(p, aligned - start);
  const uintptr_t end = start + span, used_end = aligned + bytes;
  if (end > used_end) ::munmap(reinterpret_cast<void*>(used_end), end - used_end);
  return reinterpret_cast<char*>(aligned);
}

}  // namespace

Region::Region(Region&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

Region& Region::operator=(Region&& other) noexcept {
  if (this != &other) {
    Reset();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

void Region::Reset() {
  if (data_ != nullptr) ::munmap(data_, size_);
  data_ = nullptr;
  size_ = 0;
}

bool Region::Grow(size_t bytes) {
  if (bytes <= size_) return true;
  const bool huge = bytes >= 2 * kHugePage;
  const size_t align = huge ? kHugePage : kPage;
  bytes = RoundUp(bytes, align);
  char* target = Reserve(bytes, align);
  if (target == nullptr) return false;
  void* p;
  if (data_ == nullptr) {
    p = ::mmap(target, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  } else {
    // Replaces the reservation at `target` with the old pages, extended by fresh zero pages.
    p = ::mremap(data_, size_, bytes, MREMAP_MAYMOVE | MREMAP_FIXED, target);
  }
  if (p == MAP_FAILED) {
    ::munmap(target, bytes);
    return false;
  }
  // Graph search touches nodes at random: with huge pages most visits do not also miss the TLB.
  if (huge) ::madvise(p, bytes, MADV_HUGEPAGE);
  data_ = static_cast<char*>(p);
  size_ = bytes;
  return true;
}

}  // namespace fathom
