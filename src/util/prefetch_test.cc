#include "util/prefetch.h"

#include <vector>

#include <gtest/gtest.h>

namespace fathom {
namespace {

std::vector<uintptr_t> Lines(uintptr_t p, size_t bytes) {
  std::vector<uintptr_t> lines;
  ForEachCacheLine(reinterpret_cast<const void*>(p), bytes, [&](uintptr_t line) { lines.push_back(line); });
  return lines;
}

// Regression: HNSW prefetched a code at offset 132 of its node block by stepping 64 bytes from
// its first byte, which left out the code's last line (a 128-byte code there spans 3 lines),
// so every distance of the walk waited on one uncached line.
TEST(PrefetchTest, CoversEveryLineOfAnUnalignedRange) {
  EXPECT_EQ(Lines(4096 + 132, 128), (std::vector<uintptr_t>{4096 + 128, 4096 + 192, 4096 + 256}));
  EXPECT_EQ(Lines(4096, 128), (std::vector<uintptr_t>{4096, 4096 + 64}));
  EXPECT_EQ(Lines(4096 + 63, 2), (std::vector<uintptr_t>{4096, 4096 + 64}));
  EXPECT_EQ(Lines(4096 + 10, 1), (std::vector<uintptr_t>{4096}));
  EXPECT_TRUE(Lines(4096, 0).empty());
}

}  // namespace
}  // namespace fathom
