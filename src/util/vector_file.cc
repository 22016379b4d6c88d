#include "util/vector_file.h"

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <string_view>
#include <type_traits>

namespace fathom {

// Every format here is little-endian on disk except IDX (big-endian, handled explicitly); we
// read raw bytes into native values, so a big-endian host would need byte swaps everywhere.
static_assert(std::endian::native == std::endian::little,
              "vector_file assumes a little-endian host");

namespace {

std::string Quote(const std::string& path) {
  return "'" + path + "'";
}

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

Status ErrnoStatus(const std::string& path, const char* what, int err) {
  std::string msg = Quote(path) + ": " + what + ": " + std::strerror(err);
  return err == ENOENT ? Status::NotFound(std::move(msg)) : Status::IOError(std::move(msg));
}

// An open file and its size at open time: the size lets truncation errors say how many bytes
// were actually there instead of just "short read".
struct InputFile {
  FilePtr file;
  uint64_t size = 0;
};

Result<InputFile> OpenInput(const std::string& path) {
  InputFile in;
  in.file.reset(std::fopen(path.c_str(), "rb"));
  if (!in.file) return ErrnoStatus(path, "cannot open", errno);
  struct stat st;
  if (fstat(fileno(in.file.get()), &st) != 0) return ErrnoStatus(path, "cannot stat", errno);
  if (S_ISDIR(st.st_mode)) return Status::InvalidArgument(Quote(path) + ": is a directory");
  in.size = static_cast<uint64_t>(st.st_size);
  // Large sequential reads: a bigger stdio buffer saves syscalls on per-vector freads.
  std::setvbuf(in.file.get(), nullptr, _IOFBF, 1 << 20);
  return in;
}

// Reads exactly n bytes; a short read here means the file changed size after we measured it or
// the device failed, since callers check sizes first.
Status ReadExact(std::FILE* f, const std::string& path, void* dst, size_t n) {
  if (n == 0) return Status::OK();
  if (std::fread(dst, 1, n, f) == n) return Status::OK();
  if (std::ferror(f)) return ErrnoStatus(path, "read failed", errno);
  return Status::Corruption(Quote(path) +
                            ": unexpected end of file (was it truncated while being read?)");
}

// ---------------------------------------------------------------------------------------------
// fvecs / ivecs / bvecs

// Reads the TEXMEX layout: per vector an int32 dimension, then `dim` values of type Elem.
// Out is the element type of the result; conversion is a plain static_cast (bvecs widens).
template <class Elem, class Out>
Status ReadVecs(const std::string& path, size_t max_rows, size_t* rows, size_t* cols,
                std::vector<Out>* data) {
  FATHOM_ASSIGN_OR_RETURN(InputFile in, OpenInput(path));
  std::FILE* f = in.file.get();
  if (in.size == 0) return Status::Corruption(Quote(path) + ": file is empty");

  *rows = 0;
  *cols = 0;
  data->clear();
  if (max_rows == 0) return Status::OK();

  if (in.size < sizeof(int32_t)) {
    return Status::Corruption(Quote(path) +
                              ": truncated at vector 0: expected at least 4 bytes, found " +
                              std::to_string(in.size));
  }
  int32_t first_dim = 0;
  FATHOM_RETURN_IF_ERROR(ReadExact(f, path, &first_dim, sizeof(first_dim)));
  if (first_dim <= 0) {
    return Status::Corruption(Quote(path) + ": vector 0 has invalid dimension " +
                              std::to_string(first_dim));
  }
  const size_t dim = static_cast<size_t>(first_dim);
  const uint64_t record = sizeof(int32_t) + uint64_t{dim} * sizeof(Elem);
  const uint64_t whole_records = in.size / record;
  const size_t expected_rows = static_cast<size_t>(std::min<uint64_t>(whole_records, max_rows));
  data->reserve(expected_rows * dim);

  std::vector<Elem> buffer(std::is_same_v<Elem, Out> ? 0 : dim);
  uint64_t pos = 0;
  size_t i = 0;
  for (; i < max_rows && pos < in.size; ++i, pos += record) {
    const uint64_t remaining = in.size - pos;
    if (remaining < record) {
      return Status::Corruption(Quote(path) + ": truncated at vector " + std::to_string(i) +
                                ": expected " + std::to_string(record) + " bytes, found " +
                                std::to_string(remaining));
    }
    if (i > 0) {
      int32_t d = 0;
      FATHOM_RETURN_IF_ERROR(ReadExact(f, path, &d, sizeof(d)));
      if (d != first_dim) {
        return Status::Corruption(Quote(path) + ": vector " + std::to_string(i) +
                                  " has dimension " + std::to_string(d) + ", expected " +
                                  std::to_string(dim) + " (the dimension of vector 0)");
      }
    }
    const size_t old_size = data->size();
    data->resize(old_size + dim);
    if constexpr (std::is_same_v<Elem, Out>) {
      FATHOM_RETURN_IF_ERROR(ReadExact(f, path, data->data() + old_size, dim * sizeof(Elem)));
    } else {
      FATHOM_RETURN_IF_ERROR(ReadExact(f, path, buffer.data(), dim * sizeof(Elem)));
      std::transform(buffer.begin(), buffer.end(), data->begin() + static_cast<ptrdiff_t>(old_size),
                     [](Elem v) { return static_cast<Out>(v); });
    }
  }
  *rows = i;
  *cols = dim;
  return Status::OK();
}

// ---------------------------------------------------------------------------------------------
// .npy

struct NpyHeader {
  std::string descr;
  bool fortran_order = false;
  std::vector<uint64_t> shape;
  uint64_t data_offset = 0;
};

std::string ShapeString(const std::vector<uint64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ",";
  return s + ")";
}

// A parser for the one dict literal np.save writes, e.g.
// "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }". Not a Python parser: it
// finds each key and reads the value that follows, which is all the format allows.
class NpyDictParser {
 public:
  NpyDictParser(std::string_view text, const std::string& path) : text_(text), path_(path) {}

  Status Parse(NpyHeader* h) {
    size_t pos = 0;
    FATHOM_RETURN_IF_ERROR(FindValue("descr", &pos));
    FATHOM_RETURN_IF_ERROR(ParseString(&pos, &h->descr));
    FATHOM_RETURN_IF_ERROR(FindValue("fortran_order", &pos));
    if (text_.compare(pos, 4, "True") == 0) {
      h->fortran_order = true;
    } else if (text_.compare(pos, 5, "False") == 0) {
      h->fortran_order = false;
    } else {
      return Bad("'fortran_order' is neither True nor False");
    }
    FATHOM_RETURN_IF_ERROR(FindValue("shape", &pos));
    return ParseShape(&pos, &h->shape);
  }

 private:
  Status Bad(const std::string& what) const {
    return Status::Corruption(Quote(path_) + ": malformed .npy header: " + what + " in \"" +
                              std::string(text_) + "\"");
  }

  void SkipSpaces(size_t* pos) const {
    while (*pos < text_.size() && (text_[*pos] == ' ' || text_[*pos] == '\t')) ++*pos;
  }

  // Leaves *pos at the first character of the value of 'key' (or "key").
  Status FindValue(const char* key, size_t* pos) const {
    for (const char quote : {'\'', '"'}) {
      const std::string needle = std::string(1, quote) + key + quote;
      size_t p = text_.find(needle);
      if (p == std::string_view::npos) continue;
      p += needle.size();
      SkipSpaces(&p);
      if (p >= text_.size() || text_[p] != ':')
        return Bad(std::string("no ':' after '") + key + "'");
      ++p;
      SkipSpaces(&p);
      *pos = p;
      return Status::OK();
    }
    return Bad(std::string("no '") + key + "' key");
  }

  Status ParseString(size_t* pos, std::string* out) const {
    if (*pos >= text_.size() || (text_[*pos] != '\'' && text_[*pos] != '"')) {
      return Bad("'descr' is not a string");
    }
    const char quote = text_[*pos];
    const size_t end = text_.find(quote, *pos + 1);
    if (end == std::string_view::npos) return Bad("unterminated string");
    *out = std::string(text_.substr(*pos + 1, end - *pos - 1));
    *pos = end + 1;
    return Status::OK();
  }

  Status ParseShape(size_t* pos, std::vector<uint64_t>* shape) const {
    size_t p = *pos;
    if (p >= text_.size() || text_[p] != '(') return Bad("'shape' is not a tuple");
    ++p;
    shape->clear();
    while (true) {
      SkipSpaces(&p);
      if (p >= text_.size()) return Bad("unterminated 'shape' tuple");
      if (text_[p] == ')') break;
      uint64_t v = 0;
      size_t digits = 0;
      while (p < text_.size() && text_[p] >= '0' && text_[p] <= '9') {
        if (v > (std::numeric_limits<uint64_t>::max() - 9) / 10)
          return Bad("'shape' value overflows");
        v = v * 10 + static_cast<uint64_t>(text_[p] - '0');
        ++p;
        ++digits;
      }
      if (digits == 0) return Bad("'shape' holds a non-integer");
      if (p < text_.size() && text_[p] == 'L') ++p;  // Python 2 longs
      shape->push_back(v);
      SkipSpaces(&p);
      if (p < text_.size() && text_[p] == ',') {
        ++p;
      } else if (p < text_.size() && text_[p] != ')') {
        return Bad("unexpected character in 'shape'");
      }
    }
    *pos = p + 1;
    return Status::OK();
  }

  std::string_view text_;
  const std::string& path_;
};

constexpr char kNpyMagic[] = "\x93NUMPY";
constexpr size_t kNpyMagicSize = 6;

Status ReadNpyHeader(std::FILE* f, const std::string& path, uint64_t file_size, NpyHeader* h) {
  unsigned char prefix[8];
  if (file_size < sizeof(prefix)) {
    return Status::Corruption(Quote(path) + ": not a .npy file: " + std::to_string(file_size) +
                              " bytes is shorter than the 8-byte preamble");
  }
  FATHOM_RETURN_IF_ERROR(ReadExact(f, path, prefix, sizeof(prefix)));
  if (std::memcmp(prefix, kNpyMagic, kNpyMagicSize) != 0) {
    return Status::Corruption(Quote(path) + ": not a .npy file: bad magic (expected \\x93NUMPY)");
  }
  const int major = prefix[6], minor = prefix[7];
  uint64_t header_len = 0;
  uint64_t preamble = 0;
  if (major == 1) {
    uint8_t len[2];
    if (file_size < 10) return Status::Corruption(Quote(path) + ": truncated .npy preamble");
    FATHOM_RETURN_IF_ERROR(ReadExact(f, path, len, 2));
    header_len = len[0] | (uint64_t{len[1]} << 8);
    preamble = 10;
  } else if (major == 2 || major == 3) {
    uint8_t len[4];
    if (file_size < 12) return Status::Corruption(Quote(path) + ": truncated .npy preamble");
    FATHOM_RETURN_IF_ERROR(ReadExact(f, path, len, 4));
    header_len =
        len[0] | (uint64_t{len[1]} << 8) | (uint64_t{len[2]} << 16) | (uint64_t{len[3]} << 24);
    preamble = 12;
  } else {
    return Status::NotSupported(Quote(path) + ": unsupported .npy format version " +
                                std::to_string(major) + "." + std::to_string(minor) +
                                ": expected 1.x, 2.x or 3.x");
  }
  if (preamble + header_len > file_size) {
    return Status::Corruption(Quote(path) + ": truncated .npy header: expected " +
                              std::to_string(header_len) + " bytes, found " +
                              std::to_string(file_size - preamble));
  }
  std::string text(header_len, '\0');
  FATHOM_RETURN_IF_ERROR(ReadExact(f, path, text.data(), text.size()));
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ' || text.back() == '\0')) {
    text.pop_back();
  }
  FATHOM_RETURN_IF_ERROR(NpyDictParser(text, path).Parse(h));
  h->data_offset = preamble + header_len;
  return Status::OK();
}

// Checks order, rank and size shared by the float and int readers; returns the item size of
// the dtype chosen from `accepted` (e.g. {"f4", "f8"}).
Status CheckNpyLayout(const std::string& path, const NpyHeader& h, uint64_t file_size,
                      std::initializer_list<std::string_view> accepted, const char* accepted_text,
                      size_t* item_size) {
  std::string_view descr = h.descr;
  // '<' is little-endian, '=' native (little here, see the static_assert), '|' "not
  // applicable", which NumPy writes only for single-byte types and is harmless to accept.
  const bool little = !descr.empty() && (descr[0] == '<' || descr[0] == '=' || descr[0] == '|');
  const std::string_view type = descr.empty() ? descr : descr.substr(1);
  if (!little || std::find(accepted.begin(), accepted.end(), type) == accepted.end()) {
    return Status::NotSupported(Quote(path) + ": unsupported dtype '" + h.descr + "': expected " +
                                accepted_text);
  }
  *item_size = static_cast<size_t>(type[1] - '0');
  if (h.fortran_order) {
    return Status::NotSupported(Quote(path) +
                                ": Fortran-order arrays are not supported: save a C-order array "
                                "(numpy.ascontiguousarray)");
  }
  if (h.shape.size() != 2) {
    return Status::NotSupported(Quote(path) + ": expected a 2-D array, found " +
                                std::to_string(h.shape.size()) + "-D shape " +
                                ShapeString(h.shape));
  }
  const uint64_t rows = h.shape[0], cols = h.shape[1];
  if (cols != 0 && rows > std::numeric_limits<uint64_t>::max() / cols / *item_size) {
    return Status::Corruption(Quote(path) + ": shape " + ShapeString(h.shape) + " overflows");
  }
  const uint64_t need = rows * cols * *item_size;
  const uint64_t have = file_size - h.data_offset;
  if (have < need) {
    return Status::Corruption(Quote(path) + ": truncated data: shape " + ShapeString(h.shape) +
                              " of '" + h.descr + "' needs " + std::to_string(need) +
                              " bytes, found " + std::to_string(have));
  }
  return Status::OK();
}

// Reads count items of type Src and converts each with `convert(value, index) -> Result<Dst>`
// in chunks, so a float64 file never needs a second full-size buffer.
template <class Src, class Dst, class Convert>
Status ReadConverted(std::FILE* f, const std::string& path, size_t count, Dst* out,
                     Convert convert) {
  if constexpr (std::is_same_v<Src, Dst>) {
    return ReadExact(f, path, out, count * sizeof(Src));
  } else {
    constexpr size_t kChunk = 1 << 16;
    std::vector<Src> buffer(std::min(count, kChunk));
    for (size_t done = 0; done < count;) {
      const size_t n = std::min(kChunk, count - done);
      FATHOM_RETURN_IF_ERROR(ReadExact(f, path, buffer.data(), n * sizeof(Src)));
      for (size_t j = 0; j < n; ++j) {
        FATHOM_ASSIGN_OR_RETURN(out[done + j], convert(buffer[j], done + j));
      }
      done += n;
    }
    return Status::OK();
  }
}

// ---------------------------------------------------------------------------------------------
// IDX

struct GzCloser {
  void operator()(gzFile f) const { gzclose(f); }
};
using GzPtr = std::unique_ptr<std::remove_pointer_t<gzFile>, GzCloser>;

Result<GzPtr> OpenGz(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return ErrnoStatus(path, "cannot open", errno);
  if (S_ISDIR(st.st_mode)) return Status::InvalidArgument(Quote(path) + ": is a directory");
  errno = 0;
  GzPtr f(gzopen(path.c_str(), "rb"));
  if (!f) return ErrnoStatus(path, "cannot open", errno != 0 ? errno : ENOMEM);
  gzbuffer(f.get(), 1 << 18);
  return f;
}

// Reads up to n bytes; returns how many were read (fewer only at end of data) or the gzip error.
Result<size_t> GzRead(gzFile f, const std::string& path, void* dst, size_t n) {
  size_t done = 0;
  // gzread takes an unsigned count and returns an int, so read in chunks well below INT_MAX.
  constexpr size_t kChunk = size_t{1} << 24;
  while (done < n) {
    const unsigned want = static_cast<unsigned>(std::min(kChunk, n - done));
    const int got = gzread(f, static_cast<char*>(dst) + done, want);
    if (got < 0) {
      int errnum = 0;
      std::string_view msg = gzerror(f, &errnum);
      if (msg.starts_with(path + ": ")) msg.remove_prefix(path.size() + 2);
      return Status::Corruption(Quote(path) + ": gzip error: " + std::string(msg));
    }
    done += static_cast<size_t>(got);
    if (static_cast<unsigned>(got) < want) break;
  }
  return done;
}

// " (gzip: unexpected end of file)" when zlib saw a damaged stream, so a truncated .gz says so.
std::string GzNote(gzFile f, const std::string& path) {
  int errnum = Z_OK;
  const char* msg = gzerror(f, &errnum);
  if (errnum == Z_OK || errnum == Z_STREAM_END || msg == nullptr || *msg == '\0') return "";
  std::string_view text = msg;
  // zlib prefixes the path, which our message already starts with.
  if (text.starts_with(path + ": ")) text.remove_prefix(path.size() + 2);
  return " (gzip: " + std::string(text) + ")";
}

struct IdxHeader {
  std::vector<uint32_t> dims;
};

constexpr uint8_t kIdxUnsignedByte = 0x08;

Status ReadIdxHeader(gzFile f, const std::string& path, IdxHeader* h) {
  uint8_t magic[4];
  FATHOM_ASSIGN_OR_RETURN(size_t got, GzRead(f, path, magic, sizeof(magic)));
  if (got < sizeof(magic)) {
    return Status::Corruption(Quote(path) + ": truncated IDX header: expected 4 bytes, found " +
                              std::to_string(got) + GzNote(f, path));
  }
  if (magic[0] != 0 || magic[1] != 0 || magic[3] == 0) {
    char hex[16];
    std::snprintf(hex, sizeof(hex), "0x%02x%02x%02x%02x", magic[0], magic[1], magic[2], magic[3]);
    return Status::Corruption(Quote(path) + ": not an IDX file: bad magic " + hex);
  }
  if (magic[2] != kIdxUnsignedByte) {
    char hex[8];
    std::snprintf(hex, sizeof(hex), "0x%02x", magic[2]);
    return Status::NotSupported(Quote(path) + ": IDX element type " + hex +
                                " is not supported: expected 0x08 (unsigned byte)");
  }
  const size_t rank = magic[3];
  std::vector<uint8_t> raw(rank * 4);
  FATHOM_ASSIGN_OR_RETURN(got, GzRead(f, path, raw.data(), raw.size()));
  if (got < raw.size()) {
    return Status::Corruption(Quote(path) + ": truncated IDX header: expected " +
                              std::to_string(4 + raw.size()) + " bytes, found " +
                              std::to_string(4 + got) + GzNote(f, path));
  }
  h->dims.resize(rank);
  for (size_t i = 0; i < rank; ++i) {
    h->dims[i] = (uint32_t{raw[4 * i]} << 24) | (uint32_t{raw[4 * i + 1]} << 16) |
                 (uint32_t{raw[4 * i + 2]} << 8) | uint32_t{raw[4 * i + 3]};
  }
  return Status::OK();
}

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

Status CheckMatrixSize(const std::string& path, size_t rows, size_t cols, size_t data_size) {
  if (cols != 0 && rows > SIZE_MAX / cols)
    return Status::InvalidArgument(Quote(path) + ": matrix too large");
  if (data_size != rows * cols) {
    return Status::InvalidArgument(Quote(path) + ": matrix claims " + std::to_string(rows) + " x " +
                                   std::to_string(cols) + " but holds " +
                                   std::to_string(data_size) + " values");
  }
  if (cols > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    return Status::InvalidArgument(Quote(path) + ": " + std::to_string(cols) +
                                   " columns do not fit the int32 dimension header");
  }
  return Status::OK();
}

Result<FilePtr> OpenOutput(const std::string& path) {
  FilePtr f(std::fopen(path.c_str(), "wb"));
  if (!f) return ErrnoStatus(path, "cannot open for writing", errno);
  return f;
}

Status WriteBytes(std::FILE* f, const std::string& path, const void* src, size_t n) {
  if (n == 0 || std::fwrite(src, 1, n, f) == n) return Status::OK();
  return ErrnoStatus(path, "write failed", errno);
}

// fclose reports delayed write errors (e.g. a full disk) that fwrite buffered away.
Status CloseOutput(FilePtr f, const std::string& path) {
  if (std::fclose(f.release()) != 0) return ErrnoStatus(path, "write failed on close", errno);
  return Status::OK();
}

template <class T>
Status WriteVecs(const std::string& path, size_t rows, size_t cols, const std::vector<T>& data) {
  FATHOM_RETURN_IF_ERROR(CheckMatrixSize(path, rows, cols, data.size()));
  FATHOM_ASSIGN_OR_RETURN(FilePtr f, OpenOutput(path));
  const int32_t dim = static_cast<int32_t>(cols);
  for (size_t i = 0; i < rows; ++i) {
    FATHOM_RETURN_IF_ERROR(WriteBytes(f.get(), path, &dim, sizeof(dim)));
    FATHOM_RETURN_IF_ERROR(WriteBytes(f.get(), path, data.data() + i * cols, cols * sizeof(T)));
  }
  return CloseOutput(std::move(f), path);
}

}  // namespace

Result<Matrix> ReadIdxImages(const std::string& path, size_t max_rows) {
  FATHOM_ASSIGN_OR_RETURN(GzPtr f, OpenGz(path));
  IdxHeader h;
  FATHOM_RETURN_IF_ERROR(ReadIdxHeader(f.get(), path, &h));
  if (h.dims.size() < 2) {
    return Status::InvalidArgument(Quote(path) + ": expected IDX images (rank >= 2), found rank " +
                                   std::to_string(h.dims.size()) + " (a label file?)");
  }
  uint64_t cols = 1;
  for (size_t i = 1; i < h.dims.size(); ++i) {
    cols *= h.dims[i];
    // Beyond this a header is garbage, not an image; stop before trying to allocate it.
    if (cols > (uint64_t{1} << 31)) {
      return Status::Corruption(Quote(path) + ": implausible IDX image size (over 2^31 bytes)");
    }
  }
  if (cols == 0) return Status::Corruption(Quote(path) + ": IDX image has a zero dimension");
  Matrix m;
  m.cols = static_cast<size_t>(cols);
  const size_t rows = std::min<size_t>(h.dims[0], max_rows);

  // Read in chunks and grow as data arrives: a gzip stream's length is unknown up front, so a
  // damaged header claiming billions of images must fail as truncated, not as a huge allocation.
  const size_t chunk_rows = std::max<size_t>(1, (size_t{1} << 22) / m.cols);
  std::vector<uint8_t> bytes;
  while (m.rows < rows) {
    const size_t n = std::min(chunk_rows, rows - m.rows);
    bytes.resize(n * m.cols);
    FATHOM_ASSIGN_OR_RETURN(size_t got, GzRead(f.get(), path, bytes.data(), bytes.size()));
    if (got < bytes.size()) {
      const size_t row = got / m.cols;
      return Status::Corruption(Quote(path) + ": truncated at image " +
                                std::to_string(m.rows + row) + ": expected " +
                                std::to_string(m.cols) + " bytes, found " +
                                std::to_string(got - row * m.cols) + GzNote(f.get(), path));
    }
    m.data.insert(m.data.end(), bytes.begin(), bytes.end());
    m.rows += n;
  }
  return m;
}

Result<std::vector<int>> ReadIdxLabels(const std::string& path) {
  FATHOM_ASSIGN_OR_RETURN(GzPtr f, OpenGz(path));
  IdxHeader h;
  FATHOM_RETURN_IF_ERROR(ReadIdxHeader(f.get(), path, &h));
  if (h.dims.size() != 1) {
    return Status::InvalidArgument(Quote(path) + ": expected IDX labels (rank 1), found rank " +
                                   std::to_string(h.dims.size()));
  }
  // Chunked for the same reason as images: the header's count is not trusted for allocation.
  constexpr size_t kChunk = size_t{1} << 20;
  std::vector<int> labels;
  std::vector<uint8_t> bytes;
  const size_t count = h.dims[0];
  while (labels.size() < count) {
    bytes.resize(std::min(kChunk, count - labels.size()));
    FATHOM_ASSIGN_OR_RETURN(size_t got, GzRead(f.get(), path, bytes.data(), bytes.size()));
    labels.insert(labels.end(), bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(got));
    if (got < bytes.size()) {
      return Status::Corruption(Quote(path) + ": truncated at label " +
                                std::to_string(labels.size()) + ": header promises " +
                                std::to_string(count) + " labels" + GzNote(f.get(), path));
    }
  }
  return labels;
}

Result<Matrix> ReadFvecs(const std::string& path, size_t max_rows) {
  Matrix m;
  FATHOM_RETURN_IF_ERROR((ReadVecs<float, float>(path, max_rows, &m.rows, &m.cols, &m.data)));
  return m;
}

Result<IntMatrix> ReadIvecs(const std::string& path, size_t max_rows) {
  IntMatrix m;
  FATHOM_RETURN_IF_ERROR((ReadVecs<int32_t, int32_t>(path, max_rows, &m.rows, &m.cols, &m.data)));
  return m;
}

Result<Matrix> ReadBvecs(const std::string& path, size_t max_rows) {
  Matrix m;
  FATHOM_RETURN_IF_ERROR((ReadVecs<uint8_t, float>(path, max_rows, &m.rows, &m.cols, &m.data)));
  return m;
}

Result<Matrix> ReadNpy(const std::string& path, size_t max_rows) {
  FATHOM_ASSIGN_OR_RETURN(InputFile in, OpenInput(path));
  NpyHeader h;
  FATHOM_RETURN_IF_ERROR(ReadNpyHeader(in.file.get(), path, in.size, &h));
  size_t item_size = 0;
  FATHOM_RETURN_IF_ERROR(CheckNpyLayout(path, h, in.size, {"f4", "f8"},
                                        "'<f4' or '<f8' (little-endian float32 or float64)",
                                        &item_size));
  Matrix m;
  m.rows = static_cast<size_t>(std::min<uint64_t>(h.shape[0], max_rows));
  m.cols = static_cast<size_t>(h.shape[1]);
  m.data.resize(m.rows * m.cols);
  const size_t count = m.data.size();
  if (item_size == 4) {
    FATHOM_RETURN_IF_ERROR((ReadConverted<float, float>(in.file.get(), path, count, m.data.data(),
                                                        [](float v, size_t) { return v; })));
  } else {
    FATHOM_RETURN_IF_ERROR((ReadConverted<double, float>(
        in.file.get(), path, count, m.data.data(),
        [](double v, size_t) -> Result<float> { return static_cast<float>(v); })));
  }
  return m;
}

Result<std::unique_ptr<NpyRowReader>> NpyRowReader::Open(const std::string& path) {
  FATHOM_ASSIGN_OR_RETURN(InputFile in, OpenInput(path));
  NpyHeader h;
  FATHOM_RETURN_IF_ERROR(ReadNpyHeader(in.file.get(), path, in.size, &h));
  std::unique_ptr<NpyRowReader> r(new NpyRowReader());
  FATHOM_RETURN_IF_ERROR(CheckNpyLayout(path, h, in.size, {"f4", "f8"},
                                        "'<f4' or '<f8' (little-endian float32 or float64)",
                                        &r->item_size_));
  r->path_ = path;
  r->rows_ = static_cast<size_t>(h.shape[0]);
  r->cols_ = static_cast<size_t>(h.shape[1]);
  r->file_ = in.file.release();
  return r;
}

NpyRowReader::~NpyRowReader() {
  if (file_ != nullptr) std::fclose(file_);
}

Status NpyRowReader::Next(size_t n, Matrix* m) {
  m->cols = cols_;
  m->rows = std::min(n, rows_ - next_);
  m->data.resize(m->rows * m->cols);
  const size_t count = m->data.size();
  if (item_size_ == 4) {
    FATHOM_RETURN_IF_ERROR((ReadConverted<float, float>(file_, path_, count, m->data.data(),
                                                        [](float v, size_t) { return v; })));
  } else {
    FATHOM_RETURN_IF_ERROR((ReadConverted<double, float>(
        file_, path_, count, m->data.data(),
        [](double v, size_t) -> Result<float> { return static_cast<float>(v); })));
  }
  next_ += m->rows;
  return Status::OK();
}

Result<IntMatrix> ReadNpyInt(const std::string& path, size_t max_rows) {
  FATHOM_ASSIGN_OR_RETURN(InputFile in, OpenInput(path));
  NpyHeader h;
  FATHOM_RETURN_IF_ERROR(ReadNpyHeader(in.file.get(), path, in.size, &h));
  size_t item_size = 0;
  FATHOM_RETURN_IF_ERROR(CheckNpyLayout(
      path, h, in.size, {"i4", "i8"}, "'<i4' or '<i8' (little-endian int32 or int64)", &item_size));
  IntMatrix m;
  m.rows = static_cast<size_t>(std::min<uint64_t>(h.shape[0], max_rows));
  m.cols = static_cast<size_t>(h.shape[1]);
  m.data.resize(m.rows * m.cols);
  const size_t count = m.data.size();
  if (item_size == 4) {
    FATHOM_RETURN_IF_ERROR((ReadConverted<int32_t, int32_t>(
        in.file.get(), path, count, m.data.data(), [](int32_t v, size_t) { return v; })));
  } else {
    const size_t cols = m.cols;
    FATHOM_RETURN_IF_ERROR((ReadConverted<int64_t, int32_t>(
        in.file.get(), path, count, m.data.data(), [&](int64_t v, size_t index) -> Result<int32_t> {
          if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max()) {
            return Status::InvalidArgument(Quote(path) + ": value " + std::to_string(v) +
                                           " at row " + std::to_string(index / cols) + ", column " +
                                           std::to_string(index % cols) + " does not fit in int32");
          }
          return static_cast<int32_t>(v);
        })));
  }
  return m;
}

Result<Matrix> ReadVectors(const std::string& path, size_t max_rows) {
  if (EndsWith(path, ".fvecs")) return ReadFvecs(path, max_rows);
  if (EndsWith(path, ".bvecs")) return ReadBvecs(path, max_rows);
  if (EndsWith(path, ".npy")) return ReadNpy(path, max_rows);
  if (EndsWith(path, "ubyte") || EndsWith(path, "ubyte.gz")) return ReadIdxImages(path, max_rows);
  return Status::InvalidArgument(Quote(path) +
                                 ": unknown vector file type: expected a name ending in .fvecs, "
                                 ".bvecs, .npy, -ubyte or -ubyte.gz");
}

Result<IntMatrix> ReadIntVectors(const std::string& path, size_t max_rows) {
  if (EndsWith(path, ".ivecs")) return ReadIvecs(path, max_rows);
  if (EndsWith(path, ".npy")) return ReadNpyInt(path, max_rows);
  return Status::InvalidArgument(
      Quote(path) + ": unknown id file type: expected a name ending in .ivecs or .npy");
}

Status WriteFvecs(const std::string& path, const Matrix& m) {
  return WriteVecs(path, m.rows, m.cols, m.data);
}

Status WriteIvecs(const std::string& path, const IntMatrix& m) {
  return WriteVecs(path, m.rows, m.cols, m.data);
}

Status WriteNpy(const std::string& path, const Matrix& m) {
  FATHOM_RETURN_IF_ERROR(CheckMatrixSize(path, m.rows, m.cols, m.data.size()));
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" +
                       std::to_string(m.rows) + ", " + std::to_string(m.cols) + "), }";
  // NumPy pads so the data starts on a 64-byte boundary (aligned loads when memory-mapped); the
  // header ends with '\n'. 10 = magic (6) + version (2) + header length (2).
  constexpr size_t kPreamble = 10;
  const size_t total = (kPreamble + header.size() + 1 + 63) / 64 * 64;
  header.append(total - kPreamble - header.size() - 1, ' ');
  header.push_back('\n');
  if (header.size() > 0xffff)
    return Status::InvalidArgument(Quote(path) + ": .npy header too long");

  FATHOM_ASSIGN_OR_RETURN(FilePtr f, OpenOutput(path));
  const uint8_t preamble[kPreamble] = {0x93,
                                       'N',
                                       'U',
                                       'M',
                                       'P',
                                       'Y',
                                       1,
                                       0,
                                       static_cast<uint8_t>(header.size() & 0xff),
                                       static_cast<uint8_t>(header.size() >> 8)};
  FATHOM_RETURN_IF_ERROR(WriteBytes(f.get(), path, preamble, sizeof(preamble)));
  FATHOM_RETURN_IF_ERROR(WriteBytes(f.get(), path, header.data(), header.size()));
  FATHOM_RETURN_IF_ERROR(WriteBytes(f.get(), path, m.data.data(), m.data.size() * sizeof(float)));
  return CloseOutput(std::move(f), path);
}

}  // namespace fathom
