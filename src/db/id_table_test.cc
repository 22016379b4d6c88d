#include "db/id_table.h"

#include <gtest/gtest.h>

namespace fathom {
namespace {

TEST(IdTableTest, NumericAndStringIdsBothWaysWithReuse) {
  IdTable t;
  t.Set(0, PointId(uint64_t{42}));
  t.Set(3, PointId(std::string("p-7")));
  t.Set(1, PointId(uint64_t{0}));
  EXPECT_EQ(t.size(), 3u);
  EXPECT_EQ(t.slots(), 4u);
  EXPECT_EQ(t.Find(PointId(uint64_t{42})), std::optional<uint32_t>(0));
  EXPECT_EQ(t.Find(PointId(std::string("p-7"))), std::optional<uint32_t>(3));
  EXPECT_EQ(t.Find(PointId(uint64_t{7})), std::nullopt);
  // A numeric id and a string of the same digits are different ids.
  EXPECT_EQ(t.Find(PointId(std::string("42"))), std::nullopt);
  EXPECT_FALSE(t.Has(2));
  EXPECT_EQ(t.IdOf(3), PointId(std::string("p-7")));
  EXPECT_EQ(t.IdOf(1), PointId(uint64_t{0}));
  t.Clear(3);
  t.Clear(2);  // empty: nothing happens
  EXPECT_FALSE(t.Has(3));
  EXPECT_EQ(t.Find(PointId(std::string("p-7"))), std::nullopt);
  t.Set(3, PointId(uint64_t{9}));  // the slot is reused by a numeric id
  EXPECT_EQ(t.IdOf(3), PointId(uint64_t{9}));
  EXPECT_EQ(t.size(), 3u);
  EXPECT_GT(t.memory_bytes(), 0u);
}

}  // namespace
}  // namespace fathom
