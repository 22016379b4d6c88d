// Readers and writers for the vector file formats that benchmarks and tests exchange with other
// tools: fvecs/ivecs/bvecs (the TEXMEX format of SIFT1M and ann-benchmarks' exports), NumPy .npy
// (2-D, C order) and the IDX files of (Fashion-)MNIST, gzipped or not.
//
// These are import formats owned by others, so nothing here carries our own magic or checksum;
// instead every reader checks the structure it can (dimension headers, sizes, dtype, shape) and
// rejects a truncated or foreign file with a message that names the file and the problem, e.g.
// "'/x/a.fvecs': truncated at vector 17: expected 516 bytes, found 100". Nothing throws.
//
// Every function is thread-compatible: concurrent calls on different paths are safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "fathom/status.h"

namespace fathom {

// A dense row-major float32 matrix: row i is data[i * cols, (i + 1) * cols).
struct Matrix {
  size_t rows = 0, cols = 0;
  std::vector<float> data;

  float* row(size_t i) { return data.data() + i * cols; }
  const float* row(size_t i) const { return data.data() + i * cols; }
};

// The int32 counterpart, for ground-truth neighbour ids (ivecs, .npy of int32/int64).
struct IntMatrix {
  size_t rows = 0, cols = 0;
  std::vector<int32_t> data;

  int32_t* row(size_t i) { return data.data() + i * cols; }
  const int32_t* row(size_t i) const { return data.data() + i * cols; }
};

// IDX3 unsigned-byte images (MNIST layout: big-endian magic 0x00000803, then the dimensions),
// gzipped or plain (zlib reads both). Each image becomes one row of floats in [0, 255]; any
// IDX file of rank >= 2 is accepted and flattened after the first dimension. Reads at most
// max_rows images.
Result<Matrix> ReadIdxImages(const std::string& path, size_t max_rows = SIZE_MAX);
// IDX1 unsigned-byte labels (magic 0x00000801), gzipped or plain.
Result<std::vector<int>> ReadIdxLabels(const std::string& path);

// fvecs: per vector a little-endian int32 dimension, then that many float32. Every vector must
// have the first vector's dimension.
Result<Matrix> ReadFvecs(const std::string& path, size_t max_rows = SIZE_MAX);
// ivecs: as fvecs with int32 values.
Result<IntMatrix> ReadIvecs(const std::string& path, size_t max_rows = SIZE_MAX);
// bvecs: as fvecs with uint8 values (SIFT1B), widened to float.
Result<Matrix> ReadBvecs(const std::string& path, size_t max_rows = SIZE_MAX);

// .npy (format versions 1-3) holding a 2-D C-order array of little-endian float32, or float64
// converted to float32. Fortran order, other dtypes and other ranks are rejected by name.
Result<Matrix> ReadNpy(const std::string& path, size_t max_rows = SIZE_MAX);
// .npy holding a 2-D C-order array of little-endian int32, or int64 narrowed to int32 (a value
// outside int32 is an error, not a silent wrap).
Result<IntMatrix> ReadNpyInt(const std::string& path, size_t max_rows = SIZE_MAX);

// Streams the rows of a float .npy file (the checks of ReadNpy), a chunk at a time, so that an
// import of a file larger than RAM holds only the chunk.
class NpyRowReader {
 public:
  static Result<std::unique_ptr<NpyRowReader>> Open(const std::string& path);
  ~NpyRowReader();
  size_t rows() const { return rows_; }
  size_t cols() const { return cols_; }
  // Reads the next min(n, rows left) rows into `m` (m->rows = 0 once every row was read).
  Status Next(size_t n, Matrix* m);

 private:
  NpyRowReader() = default;
  std::string path_;
  std::FILE* file_ = nullptr;
  size_t rows_ = 0, cols_ = 0, item_size_ = 4, next_ = 0;
};

// Chooses the reader by file name: .fvecs, .bvecs, .npy, or an IDX image file ("-ubyte" or
// "-ubyte.gz", as (Fashion-)MNIST ship them).
Result<Matrix> ReadVectors(const std::string& path, size_t max_rows = SIZE_MAX);
// Chooses by file name among .ivecs and .npy (ground-truth neighbour ids).
Result<IntMatrix> ReadIntVectors(const std::string& path, size_t max_rows = SIZE_MAX);

// Writers (used by tests and to export data for other tools). Not atomic: these files are
// scratch data, not database state.
Status WriteFvecs(const std::string& path, const Matrix& m);
Status WriteIvecs(const std::string& path, const IntMatrix& m);
// Writes format version 1.0, dtype '<f4', C order, with the header padded to 64 bytes as NumPy
// does.
Status WriteNpy(const std::string& path, const Matrix& m);

}  // namespace fathom
