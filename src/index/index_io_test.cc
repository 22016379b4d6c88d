#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "fathom/index.h"
#include "index/hnsw.h"
#include "index/test_data.h"
#include "util/file.h"

namespace fathom {
namespace {

class IndexFileTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("fathom_io_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    for (char& c : name_) c = c == '/' ? '_' : c;
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  std::filesystem::path dir_;
  std::string name_;
};

TEST_P(IndexFileTest, SaveThenLoadGivesIdenticalResults) {
  auto data = testing::Clustered(3000, 50, 20, 10, 41);
  auto index = std::move(MakeIndex(GetParam(), data.dim, Metric::kL2)).value();
  ASSERT_TRUE(index->Add(data.n(), data.base.data()).ok());
  std::vector<label_t> gone = {1, 5, 9, 200};  // tombstones must survive the round trip
  ASSERT_TRUE(index->Remove(gone.size(), gone.data()).ok());
  std::string path = Path("index.fathom");
  ASSERT_TRUE(index->Save(path).ok());
  auto loaded = Index::Load(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ((*loaded)->factory_string(), index->factory_string());
  EXPECT_EQ((*loaded)->size(), index->size());
  const size_t k = 10;
  std::vector<float> d1(data.nq() * k), d2(data.nq() * k);
  std::vector<label_t> l1(data.nq() * k), l2(data.nq() * k);
  ASSERT_TRUE(index->Search(data.nq(), data.queries.data(), k, d1.data(), l1.data()).ok());
  ASSERT_TRUE((*loaded)->Search(data.nq(), data.queries.data(), k, d2.data(), l2.data()).ok());
  EXPECT_EQ(l1, l2);
  EXPECT_EQ(d1, d2);
  // The loaded index keeps working: add more, labels continue after the largest one.
  ASSERT_TRUE((*loaded)->Add(1, data.queries.data()).ok());
  EXPECT_TRUE((*loaded)->Contains(3000));
}

TEST_P(IndexFileTest, TruncatedCorruptedAndForeignFilesAreRejected) {
  auto data = testing::Clustered(500, 1, 8, 4, 43);
  auto index = std::move(MakeIndex(GetParam(), data.dim, Metric::kCosine)).value();
  ASSERT_TRUE(index->Add(data.n(), data.base.data()).ok());
  std::string path = Path("index.fathom");
  ASSERT_TRUE(index->Save(path).ok());
  std::string bytes = *ReadFile(path);

  std::string truncated = Path("truncated.fathom");
  ASSERT_TRUE(WriteFileAtomic(truncated, bytes.substr(0, bytes.size() / 2)).ok());
  auto r = Index::Load(truncated);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsCorruption());
  EXPECT_NE(r.status().message().find("is truncated"), std::string::npos) << r.status().message();

  std::string corrupted = Path("corrupted.fathom");
  std::string flipped = bytes;
  flipped[flipped.size() / 2] ^= 0x40;
  ASSERT_TRUE(WriteFileAtomic(corrupted, flipped).ok());
  r = Index::Load(corrupted);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "index file '" + corrupted + "' is corrupted: checksum mismatch");

  std::string foreign = Path("foreign.bin");
  ASSERT_TRUE(WriteFileAtomic(foreign, "\x89PNG\r\n\x1a\n some other file").ok());
  r = Index::Load(foreign);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "index file '" + foreign + "' is not a Fathom index (bad magic; expected 'FATHOMIX')");

  std::string future = Path("future.fathom");
  std::string v3 = bytes;
  v3[8] = 3;  // format version field
  ASSERT_TRUE(WriteFileAtomic(future, v3).ok());
  r = Index::Load(future);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsNotSupported());
  EXPECT_EQ(r.status().message(),
            "index file '" + future + "' has format version 3; this build reads versions 1 to 2");

  r = Index::Load(Path("missing.fathom"));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsNotFound());
}

INSTANTIATE_TEST_SUITE_P(Kinds, IndexFileTest, ::testing::Values("Flat", "HNSW16", "HNSW16,SQ8", "HNSW16,FP16", "HNSW16,RBQ", "HNSW16,SQ4", "IVF16,Flat", "IVF16,SQ8",
                                                           "IVF8,PQ4", "IVF8,PQ4x4fs", "IVF16_HNSW8,SQ8", "KDTree", "BallTree", "KDForest8", "IVF16,RBQ", "IVF16,FP16", "OPQ4,IVF8,PQ4", "IVF16,SQ4"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n) {
                             if (c == ',') c = '_';
                           }
                           return n;
                         });

}  // namespace
}  // namespace fathom
