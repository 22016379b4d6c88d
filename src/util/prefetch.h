// Software prefetch of a byte range, a cache line at a time.
#pragma once

#include <cstddef>
#include <cstdint>

namespace fathom {

constexpr size_t kCacheLine = 64;

// Calls f(line address) for every cache line [p, p + bytes) touches: an unaligned range spans
// one line more than bytes / 64, and a line left out is a miss on the caller's critical path.
template <class F>
inline void ForEachCacheLine(const void* p, size_t bytes, F&& f) {
  const uintptr_t begin = reinterpret_cast<uintptr_t>(p) & ~uintptr_t{kCacheLine - 1};
  const uintptr_t end = reinterpret_cast<uintptr_t>(p) + bytes;
  for (uintptr_t line = begin; line < end; line += kCacheLine) f(line);
}

// Requests every cache line of [p, p + bytes) for reading.
inline void Prefetch(const void* p, size_t bytes) {
  ForEachCacheLine(p, bytes, [](uintptr_t line) { __builtin_prefetch(reinterpret_cast<const void*>(line), 0, 3); });
}

}  // namespace fathom
