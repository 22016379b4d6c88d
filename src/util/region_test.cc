#include "util/region.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>

namespace fathom {
namespace {

// Growing keeps every byte written (across the move from 4 KiB pages to a huge-page-aligned
// region), new bytes read as zero, large regions are 2 MiB aligned, and a refused growth
// changes nothing.
TEST(RegionTest, GrowKeepsContentsAndZeroFillsTheRest) {
  Region r;
  EXPECT_FALSE(r);
  size_t written = 0;
  auto byte_at = [](size_t i) { return static_cast<char>((i * 2654435761u) >> 13); };
  for (size_t bytes : {size_t{100}, size_t{70000}, size_t{5} << 20, size_t{13} << 20, size_t{64} << 20}) {
    ASSERT_TRUE(r.Grow(bytes));
    ASSERT_GE(r.size(), bytes);
    for (size_t i = 0; i < written; i += 4093) ASSERT_EQ(r.data()[i], byte_at(i)) << "lost at " << i;
    for (size_t i = written; i < r.size(); i += 4093) ASSERT_EQ(r.data()[i], 0) << "not zero at " << i;
    if (bytes >= (size_t{4} << 20)) {
      EXPECT_EQ(reinterpret_cast<uintptr_t>(r.data()) % (size_t{2} << 20), 0u);
    }
    for (size_t i = 0; i < r.size(); ++i) r.data()[i] = byte_at(i);
    written = r.size();
  }
  const char* before = r.data();
  const size_t size = r.size();
  EXPECT_FALSE(r.Grow(size_t{1} << 62));  // more address space than a process has
  EXPECT_EQ(r.data(), before);
  EXPECT_EQ(r.size(), size);
  EXPECT_EQ(r.data()[size - 1], byte_at(size - 1));
  EXPECT_TRUE(r.Grow(size / 2));  // never shrinks
  EXPECT_EQ(r.size(), size);
  Region moved = std::move(r);
  EXPECT_FALSE(r);
  EXPECT_EQ(moved.data()[12345], byte_at(12345));
  moved.Reset();
  EXPECT_EQ(moved.size(), 0u);
}

}  // namespace
}  // namespace fathom
