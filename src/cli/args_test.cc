#include "cli/args.h"

#include <gtest/gtest.h>

namespace fathom::cli {
namespace {

TEST(ParsePointIdTest, DigitsAreIntegersAndEverythingElseIsAString) {
  auto id = ParsePointId("42");
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(std::get<uint64_t>(*id), 42u);
  id = ParsePointId("18446744073709551615");
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(std::get<uint64_t>(*id), UINT64_MAX);
  id = ParsePointId("doc-7");
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(std::get<std::string>(*id), "doc-7");
  id = ParsePointId("-3");  // not all digits: a string, never a negative integer
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(std::get<std::string>(*id), "-3");
  id = ParsePointId("42", /*force_string=*/true);
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(std::get<std::string>(*id), "42");
}

TEST(ParsePointIdTest, RejectsEmptyAndOverflow) {
  EXPECT_TRUE(ParsePointId("").status().IsInvalidArgument());
  auto id = ParsePointId("18446744073709551616");
  ASSERT_FALSE(id.ok());
  EXPECT_NE(id.status().message().find("--string-id"), std::string::npos);
}

TEST(ParseFloatListTest, AcceptsCommonSpellings) {
  auto v = ParseFloatList(" [0.5, -1, 2e-3,+4] ");
  ASSERT_TRUE(v.ok()) << v.status().message();
  EXPECT_EQ(*v, (std::vector<float>{0.5f, -1.0f, 2e-3f, 4.0f}));
}

TEST(ParseFloatListTest, NamesTheBadComponent) {
  auto v = ParseFloatList("1,abc,3");
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.status().message().find("component 1"), std::string::npos);
  EXPECT_FALSE(ParseFloatList("1,,3").ok());
  EXPECT_FALSE(ParseFloatList("").ok());
  EXPECT_FALSE(ParseFloatList("1e39").ok());  // overflows float32
  EXPECT_FALSE(ParseFloatList("nan").ok());
  EXPECT_FALSE(ParseFloatList("[1,2").ok());
}

TEST(ParseVectorSpecTest, DefaultsAndIndexWithCommas) {
  auto spec = ParseVectorSpec("image:512");
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->name, "image");
  EXPECT_EQ(spec->dim, 512u);
  EXPECT_EQ(spec->metric, Metric::kL2);
  EXPECT_EQ(spec->index, "HNSW32");
  spec = ParseVectorSpec("text:768:cosine:HNSW16,SQ8");
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->metric, Metric::kCosine);
  EXPECT_EQ(spec->index, "HNSW16,SQ8");
}

TEST(ParseVectorSpecTest, RejectsMalformed) {
  EXPECT_FALSE(ParseVectorSpec("image").ok());
  EXPECT_FALSE(ParseVectorSpec(":512").ok());
  EXPECT_FALSE(ParseVectorSpec("image:0").ok());
  EXPECT_FALSE(ParseVectorSpec("image:12x").ok());
  EXPECT_FALSE(ParseVectorSpec("image:12:hamming").ok());
}

TEST(ParseFieldSpecTest, NameAndType) {
  auto field = ParseFieldSpec("label:integer");
  ASSERT_TRUE(field.ok());
  EXPECT_EQ(field->first, "label");
  EXPECT_EQ(field->second, FieldType::kInteger);
  EXPECT_FALSE(ParseFieldSpec("label").ok());
  EXPECT_FALSE(ParseFieldSpec("label:int").ok());
  EXPECT_FALSE(ParseFieldSpec(":keyword").ok());
}

TEST(ResolveVectorTest, OnlyVectorOrByName) {
  CollectionSpec spec;
  spec.name = "c";
  spec.vectors = {VectorSpec{"image", 4, Metric::kL2, "Flat"}};
  auto v = ResolveVector(spec, "");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ((*v)->name, "image");
  spec.vectors.push_back(VectorSpec{"text", 8, Metric::kCosine, "Flat"});
  EXPECT_FALSE(ResolveVector(spec, "").ok());
  v = ResolveVector(spec, "text");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ((*v)->dim, 8u);
  auto missing = ResolveVector(spec, "audio");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("image, text"), std::string::npos);
}

TEST(FormatTest, IdsAndBytes) {
  EXPECT_EQ(FormatPointId(PointId(uint64_t{7})), "7");
  EXPECT_EQ(FormatPointId(PointId(std::string("7"))), "\"7\"");
  EXPECT_EQ(FormatPointId(PointId(std::string("a7"))), "a7");
  EXPECT_EQ(FormatBytes(512), "512 B");
  EXPECT_EQ(FormatBytes(1536), "1.5 KiB");
}

TEST(ExitCodeTest, Classes) {
  EXPECT_EQ(ExitCodeFor(Status::OK()), 0);
  EXPECT_EQ(ExitCodeFor(Status::InvalidArgument("x")), 1);
  EXPECT_EQ(ExitCodeFor(Status::NotFound("x")), 2);
  EXPECT_EQ(ExitCodeFor(Status::IOError("x")), 3);
}

}  // namespace
}  // namespace fathom::cli
