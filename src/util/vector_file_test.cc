#include "util/vector_file.h"

#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

namespace fathom {
namespace {

constexpr char kFashionMnistTestImages[] =
    "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
constexpr char kFashionMnistTestLabels[] =
    "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz";

class VectorFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           ("fathom_vector_file_test_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  static void WriteRaw(const std::string& path, const std::string& bytes) {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr) << path;
    ASSERT_EQ(std::fwrite(bytes.data(), 1, bytes.size(), f), bytes.size());
    ASSERT_EQ(std::fclose(f), 0);
  }

  template <class T>
  static void Append(std::string* out, const T& v) {
    out->append(reinterpret_cast<const char*>(&v), sizeof(T));
  }

  // A version 1.0 .npy with an arbitrary header dict and payload, for the cases WriteNpy
  // deliberately cannot produce (float64, Fortran order, 3-D, foreign dtypes).
  static std::string NpyBytes(const std::string& dict, const std::string& payload) {
    std::string header = dict;
    while ((10 + header.size() + 1) % 64 != 0) header.push_back(' ');
    header.push_back('\n');
    std::string out = "\x93NUMPY";
    out.push_back(1);
    out.push_back(0);
    out.push_back(static_cast<char>(header.size() & 0xff));
    out.push_back(static_cast<char>(header.size() >> 8));
    return out + header + payload;
  }

  static std::string IdxBytes(uint8_t rank, const std::vector<uint32_t>& dims,
                              const std::vector<uint8_t>& payload) {
    std::string out = {0, 0, 0x08, static_cast<char>(rank)};
    for (uint32_t d : dims) {
      for (int shift = 24; shift >= 0; shift -= 8)
        out.push_back(static_cast<char>((d >> shift) & 0xff));
    }
    out.append(payload.begin(), payload.end());
    return out;
  }

  static void WriteGz(const std::string& path, const std::string& bytes) {
    gzFile f = gzopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())),
              static_cast<int>(bytes.size()));
    ASSERT_EQ(gzclose(f), Z_OK);
  }

  static Matrix Sample(size_t rows, size_t cols) {
    Matrix m;
    m.rows = rows;
    m.cols = cols;
    for (size_t i = 0; i < rows * cols; ++i) m.data.push_back(static_cast<float>(i) * 0.5f - 3.25f);
    return m;
  }

  std::filesystem::path dir_;
};

TEST_F(VectorFileTest, FvecsRoundTrip) {
  const Matrix m = Sample(5, 7);
  const std::string path = Path("a.fvecs");
  ASSERT_TRUE(WriteFvecs(path, m).ok());
  EXPECT_EQ(std::filesystem::file_size(path), 5u * (4 + 7 * 4));

  Result<Matrix> back = ReadFvecs(path);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->rows, 5u);
  EXPECT_EQ(back->cols, 7u);
  EXPECT_EQ(back->data, m.data);

  Result<Matrix> head = ReadFvecs(path, 3);
  ASSERT_TRUE(head.ok()) << head.status().ToString();
  EXPECT_EQ(head->rows, 3u);
  EXPECT_TRUE(std::equal(head->data.begin(), head->data.end(), m.data.begin()));

  Result<Matrix> by_name = ReadVectors(path);
  ASSERT_TRUE(by_name.ok()) << by_name.status().ToString();
  EXPECT_EQ(by_name->data, m.data);
}

TEST_F(VectorFileTest, IvecsRoundTrip) {
  IntMatrix m{3, 4, {0, 1, 2, 3, -4, 5, 6, 7, 8, 9, 10, 2147483647}};
  const std::string path = Path("gt.ivecs");
  ASSERT_TRUE(WriteIvecs(path, m).ok());
  Result<IntMatrix> back = ReadIntVectors(path);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->rows, 3u);
  EXPECT_EQ(back->cols, 4u);
  EXPECT_EQ(back->data, m.data);
}

TEST_F(VectorFileTest, BvecsWidensBytes) {
  std::string bytes;
  for (int row = 0; row < 2; ++row) {
    Append(&bytes, int32_t{3});
    for (uint8_t v : {uint8_t(row), uint8_t(128), uint8_t(255)})
      bytes.push_back(static_cast<char>(v));
  }
  const std::string path = Path("a.bvecs");
  WriteRaw(path, bytes);
  Result<Matrix> m = ReadVectors(path);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->data, (std::vector<float>{0, 128, 255, 1, 128, 255}));
}

TEST_F(VectorFileTest, TruncatedFvecsNamesVectorAndBytes) {
  std::string bytes;
  for (int row = 0; row < 17; ++row) {
    Append(&bytes, int32_t{128});
    for (int j = 0; j < 128; ++j) Append(&bytes, static_cast<float>(j));
  }
  bytes.append(100, '\0');  // a torn 18th record
  const std::string path = Path("torn.fvecs");
  WriteRaw(path, bytes);

  Result<Matrix> m = ReadFvecs(path);
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(m.status().IsCorruption());
  EXPECT_EQ(m.status().message(),
            "'" + path + "': truncated at vector 17: expected 516 bytes, found 100");

  // Reading only the intact prefix succeeds: the damage is past what was asked for.
  Result<Matrix> head = ReadFvecs(path, 17);
  ASSERT_TRUE(head.ok()) << head.status().ToString();
  EXPECT_EQ(head->rows, 17u);
}

TEST_F(VectorFileTest, FvecsRowWithWrongDimension) {
  std::string bytes;
  Append(&bytes, int32_t{4});
  for (int j = 0; j < 4; ++j) Append(&bytes, 1.0f);
  Append(&bytes, int32_t{2});  // same byte length as 4 floats would need, wrong header
  for (int j = 0; j < 4; ++j) Append(&bytes, 1.0f);
  const std::string path = Path("mixed.fvecs");
  WriteRaw(path, bytes);

  Result<Matrix> m = ReadFvecs(path);
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(m.status().IsCorruption());
  EXPECT_EQ(m.status().message(),
            "'" + path + "': vector 1 has dimension 2, expected 4 (the dimension of vector 0)");
}

TEST_F(VectorFileTest, FvecsInvalidAndEmpty) {
  std::string bytes;
  Append(&bytes, int32_t{-3});
  const std::string bad = Path("neg.fvecs");
  WriteRaw(bad, bytes);
  Result<Matrix> m = ReadFvecs(bad);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().message(), "'" + bad + "': vector 0 has invalid dimension -3");

  const std::string empty = Path("empty.fvecs");
  WriteRaw(empty, "");
  m = ReadFvecs(empty);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().message(), "'" + empty + "': file is empty");
}

TEST_F(VectorFileTest, MissingFileIsNotFound) {
  const std::string path = Path("nope.fvecs");
  Result<Matrix> m = ReadFvecs(path);
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(m.status().IsNotFound());
  EXPECT_EQ(m.status().message(), "'" + path + "': cannot open: No such file or directory");
  EXPECT_TRUE(ReadNpy(Path("nope.npy")).status().IsNotFound());
  EXPECT_TRUE(ReadIdxImages(Path("nope-ubyte.gz")).status().IsNotFound());
}

TEST_F(VectorFileTest, UnknownExtension) {
  Result<Matrix> m = ReadVectors(Path("data.csv"));
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(m.status().IsInvalidArgument());
  EXPECT_NE(m.status().message().find("unknown vector file type"), std::string::npos);
}

TEST_F(VectorFileTest, NpyRowReaderStreamsChunks) {
  const Matrix m = Sample(10, 3);
  const std::string path = Path("s.npy");
  ASSERT_TRUE(WriteNpy(path, m).ok());
  auto reader = NpyRowReader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  EXPECT_EQ((*reader)->rows(), 10u);
  EXPECT_EQ((*reader)->cols(), 3u);
  std::vector<float> all;
  std::vector<size_t> sizes;
  Matrix chunk;
  do {
    ASSERT_TRUE((*reader)->Next(4, &chunk).ok());
    sizes.push_back(chunk.rows);
    all.insert(all.end(), chunk.data.begin(), chunk.data.end());
  } while (chunk.rows > 0);
  EXPECT_EQ(sizes, (std::vector<size_t>{4, 4, 2, 0}));
  EXPECT_EQ(all, m.data);
}

TEST_F(VectorFileTest, NpyRoundTripIsNumpyAligned) {
  const Matrix m = Sample(6, 3);
  const std::string path = Path("a.npy");
  ASSERT_TRUE(WriteNpy(path, m).ok());
  // NumPy starts the data on a 64-byte boundary; our writer must produce files numpy reads.
  EXPECT_EQ((std::filesystem::file_size(path) - m.data.size() * sizeof(float)) % 64, 0u);

  Result<Matrix> back = ReadNpy(path);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->rows, 6u);
  EXPECT_EQ(back->cols, 3u);
  EXPECT_EQ(back->data, m.data);

  Result<Matrix> head = ReadVectors(path, 2);
  ASSERT_TRUE(head.ok()) << head.status().ToString();
  EXPECT_EQ(head->rows, 2u);
  EXPECT_EQ(head->data.size(), 6u);
}

TEST_F(VectorFileTest, NpyFloat64IsConverted) {
  std::string payload;
  const std::vector<double> values = {0.5, -1.25, 3.0, 1e-3, 2.0, 1e10};
  for (double v : values) Append(&payload, v);
  const std::string path = Path("f8.npy");
  WriteRaw(path, NpyBytes("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", payload));

  Result<Matrix> m = ReadNpy(path);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->rows, 2u);
  EXPECT_EQ(m->cols, 3u);
  for (size_t i = 0; i < values.size(); ++i) EXPECT_EQ(m->data[i], static_cast<float>(values[i]));
}

TEST_F(VectorFileTest, NpyBadMagic) {
  const std::string path = Path("bad.npy");
  WriteRaw(path, "PK\x03\x04 this is a zip, not an npy file");
  Result<Matrix> m = ReadNpy(path);
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(m.status().IsCorruption());
  EXPECT_EQ(m.status().message(),
            "'" + path + "': not a .npy file: bad magic (expected \\x93NUMPY)");
}

TEST_F(VectorFileTest, NpyRejectsThreeDimensions) {
  const std::string path = Path("cube.npy");
  WriteRaw(path, NpyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4), }",
                          std::string(2 * 3 * 4 * 4, '\0')));
  Result<Matrix> m = ReadNpy(path);
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(m.status().IsNotSupported());
  EXPECT_EQ(m.status().message(),
            "'" + path + "': expected a 2-D array, found 3-D shape (2, 3, 4)");
}

TEST_F(VectorFileTest, NpyRejectsFortranOrderAndForeignDtypes) {
  const std::string fortran = Path("f.npy");
  WriteRaw(fortran, NpyBytes("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }",
                             std::string(16, '\0')));
  Result<Matrix> m = ReadNpy(fortran);
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(m.status().IsNotSupported());
  EXPECT_NE(m.status().message().find("Fortran-order arrays are not supported"), std::string::npos);

  const std::string ints = Path("i1.npy");
  WriteRaw(ints, NpyBytes("{'descr': '|i1', 'fortran_order': False, 'shape': (2, 2), }",
                          std::string(4, '\0')));
  m = ReadNpy(ints);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().message(), "'" + ints +
                                      "': unsupported dtype '|i1': expected '<f4' or '<f8' "
                                      "(little-endian float32 or float64)");

  const std::string big_endian = Path("be.npy");
  WriteRaw(big_endian, NpyBytes("{'descr': '>f4', 'fortran_order': False, 'shape': (1, 1), }",
                                std::string(4, '\0')));
  EXPECT_TRUE(ReadNpy(big_endian).status().IsNotSupported());
}

TEST_F(VectorFileTest, NpyTruncatedData) {
  const std::string path = Path("short.npy");
  WriteRaw(path, NpyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }",
                          std::string(20, '\0')));
  Result<Matrix> m = ReadNpy(path);
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(m.status().IsCorruption());
  EXPECT_EQ(m.status().message(),
            "'" + path + "': truncated data: shape (3, 4) of '<f4' needs 48 bytes, found 20");
}

TEST_F(VectorFileTest, NpyIntNarrowsInt64) {
  std::string payload;
  for (int64_t v : {int64_t{1}, int64_t{-2}, int64_t{3}, int64_t{2147483647}}) Append(&payload, v);
  const std::string path = Path("gt.npy");
  WriteRaw(path, NpyBytes("{'descr': '<i8', 'fortran_order': False, 'shape': (2, 2), }", payload));
  Result<IntMatrix> m = ReadIntVectors(path);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->data, (std::vector<int32_t>{1, -2, 3, 2147483647}));

  payload.clear();
  for (int64_t v : {int64_t{1}, int64_t{5000000000}}) Append(&payload, v);
  const std::string big = Path("big.npy");
  WriteRaw(big, NpyBytes("{'descr': '<i8', 'fortran_order': False, 'shape': (1, 2), }", payload));
  m = ReadNpyInt(big);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().message(),
            "'" + big + "': value 5000000000 at row 0, column 1 does not fit in int32");
}

TEST_F(VectorFileTest, IdxImagesPlainAndGzipped) {
  std::vector<uint8_t> pixels;
  for (int i = 0; i < 3 * 2 * 2; ++i) pixels.push_back(static_cast<uint8_t>(i * 20));
  const std::string bytes = IdxBytes(3, {3, 2, 2}, pixels);

  const std::string plain = Path("x-idx3-ubyte");
  const std::string gz = Path("x-idx3-ubyte.gz");
  WriteRaw(plain, bytes);
  WriteGz(gz, bytes);
  for (const std::string& path : {plain, gz}) {
    Result<Matrix> m = ReadVectors(path);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    EXPECT_EQ(m->rows, 3u);
    EXPECT_EQ(m->cols, 4u);
    EXPECT_EQ(m->data, std::vector<float>(pixels.begin(), pixels.end()));
  }
  Result<Matrix> head = ReadIdxImages(gz, 2);
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(head->rows, 2u);

  Result<std::vector<int>> labels = ReadIdxLabels(gz);
  ASSERT_FALSE(labels.ok());
  EXPECT_EQ(labels.status().message(), "'" + gz + "': expected IDX labels (rank 1), found rank 3");
}

TEST_F(VectorFileTest, IdxTruncatedAndForeign) {
  const std::string torn = Path("torn-idx3-ubyte.gz");
  WriteGz(torn, IdxBytes(3, {3, 2, 2}, std::vector<uint8_t>(9, 7)));
  Result<Matrix> m = ReadIdxImages(torn);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().message(),
            "'" + torn + "': truncated at image 2: expected 4 bytes, found 1");

  const std::string floats = Path("f-idx3-ubyte");
  std::string bytes = IdxBytes(3, {1, 1, 1}, {0, 0, 0, 0});
  bytes[2] = 0x0d;
  WriteRaw(floats, bytes);
  m = ReadIdxImages(floats);
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(m.status().IsNotSupported());
  EXPECT_EQ(
      m.status().message(),
      "'" + floats + "': IDX element type 0x0d is not supported: expected 0x08 (unsigned byte)");

  const std::string foreign = Path("npy-idx3-ubyte");
  WriteRaw(foreign, "\x93NUMPY\x01\x00");
  m = ReadIdxImages(foreign);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().message(), "'" + foreign + "': not an IDX file: bad magic 0x934e554d");
}

TEST(VectorFileFashionMnist, ReadsTestSet) {
  if (!std::filesystem::exists(kFashionMnistTestImages) ||
      !std::filesystem::exists(kFashionMnistTestLabels)) {
    GTEST_SKIP() << "Fashion-MNIST not installed (Debian package dataset-fashion-mnist)";
  }
  Result<Matrix> images = ReadIdxImages(kFashionMnistTestImages);
  ASSERT_TRUE(images.ok()) << images.status().ToString();
  EXPECT_EQ(images->rows, 10000u);
  EXPECT_EQ(images->cols, 784u);
  ASSERT_EQ(images->data.size(), 10000u * 784u);
  const auto [lo, hi] = std::minmax_element(images->data.begin(), images->data.end());
  EXPECT_EQ(*lo, 0.0f);
  EXPECT_EQ(*hi, 255.0f);
  EXPECT_TRUE(std::all_of(images->data.begin(), images->data.end(),
                          [](float v) { return v == static_cast<float>(static_cast<int>(v)); }));

  Result<std::vector<int>> labels = ReadIdxLabels(kFashionMnistTestLabels);
  ASSERT_TRUE(labels.ok()) << labels.status().ToString();
  ASSERT_EQ(labels->size(), 10000u);
  std::vector<int> per_class(10, 0);
  for (int label : *labels) {
    ASSERT_GE(label, 0);
    ASSERT_LE(label, 9);
    ++per_class[static_cast<size_t>(label)];
  }
  // The test set is balanced: 1000 images of each of the 10 classes.
  EXPECT_EQ(per_class, std::vector<int>(10, 1000));

  Result<Matrix> head = ReadVectors(kFashionMnistTestImages, 100);
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(head->rows, 100u);
  EXPECT_TRUE(std::equal(head->data.begin(), head->data.end(), images->data.begin()));
}

}  // namespace
}  // namespace fathom
