// Small file helpers with Status errors: whole-file reads, atomic replacement (temporary file,
// fsync, rename, fsync of the directory) and CRC-32C-free checksums via zlib's crc32.
// All functions are thread-compatible: concurrent calls on different paths are safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>
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

// Removes its paths (files or directories, recursively; errors ignored) when it goes out of
// scope: the temporaries of a download or a transfer, however the function ends.
class RemoveOnExit {
 public:
  explicit RemoveOnExit(std::vector<std::string> paths) : paths_(std::move(paths)) {}
  ~RemoveOnExit();
  RemoveOnExit(const RemoveOnExit&) = delete;
  RemoveOnExit& operator=(const RemoveOnExit&) = delete;

 private:
  std::vector<std::string> paths_;
};
uint32_t Crc32(std::string_view data);
// Writes all n bytes at `offset` of `fd` (retrying short writes and EINTR); errors name `path`.
Status PwriteAll(int fd, const void* data, size_t n, uint64_t offset, const std::string& path);

// Little-endian append/read helpers for binary formats.
template <class T>
void AppendPod(std::string* out, const T& value) {
  out->append(reinterpret_cast<const char*>(&value), sizeof(T));
}
inline void AppendBytes(std::string* out, const void* data, size_t n) {
  out->append(static_cast<const char*>(data), n);
}

// Sequential binary output (index bodies): to a string, or streamed to a file.
class ByteSink {
 public:
  virtual ~ByteSink() = default;
  virtual Status Write(const void* data, size_t n) = 0;
  template <class T>
  Status Pod(const T& value) {
    return Write(&value, sizeof(T));
  }
};

class StringSink final : public ByteSink {
 public:
  explicit StringSink(std::string* out) : out_(out) {}
  Status Write(const void* data, size_t n) override {
    out_->append(static_cast<const char*>(data), n);
    return Status::OK();
  }

 private:
  std::string* out_;
};

// Sequential binary input that fails (not crashes) past the end: a byte range (ByteReader) or
// a file read in pieces (FileSource).
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  template <class T>
  Status Read(T* value) {
    return ReadBytes(value, sizeof(T));
  }
  virtual Status ReadBytes(void* dst, size_t n) = 0;
  virtual Status Skip(size_t n) = 0;
  virtual size_t remaining() const = 0;
};

class ByteReader final : public ByteSource {
 public:
  ByteReader(std::string_view data, std::string what) : data_(data), what_(std::move(what)) {}
  Status ReadBytes(void* dst, size_t n) override;
  Status Skip(size_t n) override;
  size_t remaining() const override { return data_.size() - pos_; }
  size_t position() const { return pos_; }
  std::string_view Peek(size_t n) const { return data_.substr(pos_, n); }

 private:
  std::string_view data_;
  size_t pos_ = 0;
  std::string what_;
};

// Writes a file so that a crash leaves either the old file or the complete new one, without
// holding it in memory: writes go to "<path>.tmp" through a 1 MiB buffer; Commit() flushes,
// fsyncs, renames and fsyncs the directory. Destroyed without Commit, the temporary is removed.
// crc() is the CRC-32 of every byte written since the last ResetCrc().
class AtomicFileWriter final : public ByteSink {
 public:
  static Result<std::unique_ptr<AtomicFileWriter>> Create(const std::string& path);
  ~AtomicFileWriter() override;
  Status Write(const void* data, size_t n) override;
  // Overwrites bytes already written at `offset` (a header field known only at the end); they
  // do not enter crc().
  Status Patch(uint64_t offset, const void* data, size_t n);
  uint64_t size() const { return size_; }
  uint32_t crc() const { return crc_; }
  void ResetCrc();
  Status Commit();

 private:
  AtomicFileWriter(std::string path, int fd);
  Status Flush();

  std::string path_, tmp_;
  int fd_;
  std::string buffer_;
  uint64_t size_ = 0;
  uint32_t crc_;
  bool committed_ = false;
};

// Reads a file sequentially through a 1 MiB buffer. crc() is the CRC-32 of the bytes in
// [0, crc_end) (default: all of them) that were read so far, computed a buffer at a time.
class FileSource final : public ByteSource {
 public:
  static Result<std::unique_ptr<FileSource>> Open(const std::string& path);
  void set_crc_end(uint64_t end) { crc_end_ = end; }
  ~FileSource() override;
  Status ReadBytes(void* dst, size_t n) override;
  Status Skip(size_t n) override;
  size_t remaining() const override { return size_ - pos_; }
  uint64_t size() const { return size_; }
  uint64_t position() const { return pos_; }
  uint32_t crc() const { return crc_; }

 private:
  FileSource(std::string path, int fd, uint64_t size);
  Status Fill();

  std::string path_;
  int fd_;
  uint64_t size_;
  uint64_t pos_ = 0;
  std::string buffer_;
  size_t buffer_pos_ = 0;
  uint64_t crc_end_ = UINT64_MAX;
  uint64_t crc_pos_ = 0;  // bytes [0, crc_pos_) are in crc_
  uint32_t crc_;
  uint64_t readahead_until_ = 0;  // the kernel was asked to fetch the file up to here
};

// CRC-32 of A followed by B, from crc(A), crc(B) and B's length.
uint32_t Crc32Combine(uint32_t crc_a, uint32_t crc_b, uint64_t length_b);
uint32_t Crc32Update(uint32_t crc, const void* data, size_t n);

}  // namespace fathom
