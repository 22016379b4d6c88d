// Small file helpers with Status errors: whole-file reads, atomic replacement (temporary file,
// fsync, rename, fsync of the directory) and CRC-32C-free checksums via zlib's crc32.
// All functions are thread-compatible: concurrent calls on different paths are safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "fathom/status.h"

namespace fathom {

Result<std::string> ReadFile(const std::string& path);
// Writes `contents` to `path` so that a crash leaves either the old file or the new one.
Status WriteFileAtomic(const std::string& path, std::string_view contents);

// NoSpace when the file system holding `path` has fewer than `need` + `reserve` bytes free
// (the message names both and says that nothing was written); OK otherwise, or when `reserve`
// is 0, or when the free space cannot be read.
Status CheckFreeSpace(const std::string& path, uint64_t need, uint64_t reserve);
uint32_t Crc32(std::string_view data);

// Little-endian append/read helpers for binary formats.
template <class T>
void AppendPod(std::string* out, const T& value) {
  out->append(reinterpret_cast<const char*>(&value), sizeof(T));
}
inline void AppendBytes(std::string* out, const void* data, size_t n) {
  out->append(static_cast<const char*>(data), n);
}

// Reads fixed-size values from a byte range, failing (not crashing) past the end.
class ByteReader {
 public:
  ByteReader(std::string_view data, std::string what) : data_(data), what_(std::move(what)) {}
  template <class T>
  Status Read(T* value) {
    return ReadBytes(value, sizeof(T));
  }
  Status ReadBytes(void* dst, size_t n);
  Status Skip(size_t n);
  size_t remaining() const { return data_.size() - pos_; }
  size_t position() const { return pos_; }
  std::string_view Peek(size_t n) const { return data_.substr(pos_, n); }

 private:
  std::string_view data_;
  size_t pos_ = 0;
  std::string what_;
};

}  // namespace fathom
