#include "cluster/node.h"

#include <gtest/gtest.h>

#include <map>

namespace fathom::cluster {
namespace {

TEST(ClusterTest, ShardOfIsFixedAcrossReleases) {
  // Changing the hash would send existing points to other shards: these values are a contract.
  EXPECT_EQ(ShardOf(PointId(uint64_t{0}), 3), ShardOf(PointId(uint64_t{0}), 3));
  std::vector<uint32_t> got;
  for (uint64_t id : {0, 1, 2, 3, 42, 1000000}) got.push_back(ShardOf(PointId(id), 7));
  std::vector<uint32_t> strings;
  for (const char* id : {"a", "b", "550e8400-e29b-41d4-a716-446655440000"})
    strings.push_back(ShardOf(PointId(std::string(id)), 7));
  EXPECT_EQ(got, (std::vector<uint32_t>{2, 2, 4, 2, 5, 4}));
  EXPECT_EQ(strings, (std::vector<uint32_t>{5, 2, 4}));
}

TEST(ClusterTest, ShardOfSpreadsSequentialIdsEvenly) {
  std::map<uint32_t, int> count;
  for (uint64_t id = 0; id < 30000; ++id) ++count[ShardOf(PointId(id), 3)];
  ASSERT_EQ(count.size(), 3u);
  for (const auto& [shard, n] : count) EXPECT_NEAR(n, 10000, 300) << "shard " << shard;
}

TEST(ClusterTest, SplitUrlsAndNodeIds) {
  EXPECT_EQ(SplitUrls("nats://a:4222, nats://b:4223,,"),
            (std::vector<std::string>{"nats://a:4222", "nats://b:4223"}));
  EXPECT_TRUE(SplitUrls("").empty());
  EXPECT_TRUE(ValidateNodeId("n1").ok());
  EXPECT_TRUE(ValidateNodeId("node_2-b").ok());
  Status bad = ValidateNodeId("n.1");
  EXPECT_EQ(bad.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(bad.message().find("letters, digits"), std::string::npos) << bad.message();
  EXPECT_FALSE(ValidateNodeId("").ok());
}

}  // namespace
}  // namespace fathom::cluster
