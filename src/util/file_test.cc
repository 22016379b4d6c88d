#include "util/file.h"

#include <gtest/gtest.h>

#include <filesystem>

namespace fathom {
namespace {

TEST(FileTest, AtomicWriteThenReadRoundTrips) {
  auto dir = std::filesystem::temp_directory_path() / ("fathom_file_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::string path = (dir / "a.bin").string();
  std::string payload("abc\0def", 7);
  ASSERT_TRUE(WriteFileAtomic(path, payload).ok());
  auto r = ReadFile(path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, payload);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  std::filesystem::remove_all(dir);
}

TEST(FileTest, MissingFileIsNotFound) {
  auto r = ReadFile("/nonexistent/fathom/file");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsNotFound());
  EXPECT_NE(r.status().message().find("/nonexistent/fathom/file"), std::string::npos);
}

TEST(FileTest, Crc32KnownValue) {
  // The standard CRC-32 check value.
  EXPECT_EQ(Crc32("123456789"), 0xCBF43926u);
}

TEST(FileTest, ByteReaderReportsTruncation) {
  std::string data("\x01\x00\x00\x00", 4);
  ByteReader reader(data, "test blob");
  uint32_t v = 0;
  ASSERT_TRUE(reader.Read(&v).ok());
  EXPECT_EQ(v, 1u);
  Status s = reader.Read(&v);
  EXPECT_TRUE(s.IsCorruption());
  EXPECT_EQ(s.message(), "test blob is truncated: needed 4 more bytes at offset 4, 0 left");
}

}  // namespace
}  // namespace fathom
