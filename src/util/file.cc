#include "util/file.h"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace fathom {
namespace {

Status Errno(const std::string& what, const std::string& path) {
  return Status::IOError(what + " '" + path + "': " + std::strerror(errno));
}

Status WriteAll(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t w = ::write(fd, data.data(), data.size());
    if (w < 0) {
      if (errno == EINTR) continue;
      return Errno("cannot write", path);
    }
    data.remove_prefix(static_cast<size_t>(w));
  }
  return Status::OK();
}

void SyncParentDir(const std::string& path) {
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  const std::string dir = parent.empty() ? std::string(".") : parent.string();
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace

Result<std::string> ReadFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Status::NotFound("file '" + path + "' does not exist");
    return Errno("cannot open", path);
  }
  std::string out;
  char buf[1 << 16];
  while (true) {
    ssize_t r = ::read(fd, buf, sizeof(buf));
    if (r < 0) {
      if (errno == EINTR) continue;
      Status s = Errno("cannot read", path);
      ::close(fd);
      return s;
    }
    if (r == 0) break;
    out.append(buf, static_cast<size_t>(r));
  }
  ::close(fd);
  return out;
}

Status WriteFileAtomic(const std::string& path, std::string_view contents) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Errno("cannot create", tmp);
  Status s = WriteAll(fd, contents, tmp);
  if (s.ok() && ::fsync(fd) != 0) s = Errno("cannot fsync", tmp);
  ::close(fd);
  if (!s.ok()) {
    ::unlink(tmp.c_str());
    return s;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    s = Errno("cannot rename to", path);
    ::unlink(tmp.c_str());
    return s;
  }
  SyncParentDir(path);
  return Status::OK();
}

uint32_t Crc32Update(uint32_t crc, const void* data, size_t n) {
  uLong c = crc;
  const auto* p = static_cast<const Bytef*>(data);
  // zlib takes uInt lengths; feed large buffers in pieces.
  while (n > 0) {
    uInt piece = static_cast<uInt>(std::min<size_t>(n, 1u << 30));
    c = crc32(c, p, piece);
    p += piece;
    n -= piece;
  }
  return static_cast<uint32_t>(c);
}

uint32_t Crc32(std::string_view data) {
  return Crc32Update(static_cast<uint32_t>(crc32(0L, Z_NULL, 0)), data.data(), data.size());
}

uint32_t Crc32Combine(uint32_t crc_a, uint32_t crc_b, uint64_t length_b) {
  return static_cast<uint32_t>(crc32_combine64(crc_a, crc_b, static_cast<z_off64_t>(length_b)));
}

namespace {
constexpr size_t kStreamBuffer = size_t{1} << 20;

}  // namespace

Result<std::unique_ptr<AtomicFileWriter>> AtomicFileWriter::Create(const std::string& path) {
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Errno("cannot create", tmp);
  return std::unique_ptr<AtomicFileWriter>(new AtomicFileWriter(path, fd));
}

AtomicFileWriter::AtomicFileWriter(std::string path, int fd)
    : path_(std::move(path)), tmp_(path_ + ".tmp"), fd_(fd), crc_(Crc32({})) {
  buffer_.reserve(kStreamBuffer);
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_.c_str());
}

void AtomicFileWriter::ResetCrc() { crc_ = Crc32({}); }

Status AtomicFileWriter::Write(const void* data, size_t n) {
  crc_ = Crc32Update(crc_, data, n);
  size_ += n;
  const char* p = static_cast<const char*>(data);
  if (buffer_.size() + n > kStreamBuffer) FATHOM_RETURN_IF_ERROR(Flush());
  if (n >= kStreamBuffer) return WriteAll(fd_, std::string_view(p, n), tmp_);
  buffer_.append(p, n);
  return Status::OK();
}

Status AtomicFileWriter::Flush() {
  Status s = WriteAll(fd_, buffer_, tmp_);
  buffer_.clear();
  return s;
}

Status PwriteAll(int fd, const void* data, size_t n, uint64_t offset, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::pwrite(fd, p, n, static_cast<off_t>(offset));
    if (w < 0) {
      if (errno == EINTR) continue;
      return Errno("cannot write", path);
    }
    p += w;
    offset += static_cast<uint64_t>(w);
    n -= static_cast<size_t>(w);
  }
  return Status::OK();
}

Status AtomicFileWriter::Patch(uint64_t offset, const void* data, size_t n) {
  FATHOM_RETURN_IF_ERROR(Flush());
  return PwriteAll(fd_, data, n, offset, tmp_);
}

Status AtomicFileWriter::Commit() {
  FATHOM_RETURN_IF_ERROR(Flush());
  if (::fsync(fd_) != 0) return Errno("cannot fsync", tmp_);
  ::close(fd_);
  fd_ = -1;
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) return Errno("cannot rename to", path_);
  committed_ = true;
  SyncParentDir(path_);
  return Status::OK();
}

Result<std::unique_ptr<FileSource>> FileSource::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Status::NotFound("file '" + path + "' does not exist");
    return Errno("cannot open", path);
  }
  off_t size = ::lseek(fd, 0, SEEK_END);
  if (size < 0 || ::lseek(fd, 0, SEEK_SET) != 0) {
    Status s = Errno("cannot seek in", path);
    ::close(fd);
    return s;
  }
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  return std::unique_ptr<FileSource>(new FileSource(path, fd, static_cast<uint64_t>(size)));
}

FileSource::FileSource(std::string path, int fd, uint64_t size)
    : path_(std::move(path)), fd_(fd), size_(size), crc_(Crc32({})) {}

FileSource::~FileSource() { ::close(fd_); }

Status FileSource::Fill() {
  // Ask for the next 64 MiB ahead of the parser whenever it is within 32 MiB of what was asked
  // for: a cold multi-gigabyte index file then streams at the disk's speed instead of one
  // synchronous 1 MiB read after another (the sequential hint alone reads ahead ~256 KiB).
  constexpr uint64_t kAhead = 64 << 20;
  if (pos_ + kAhead / 2 >= readahead_until_ && readahead_until_ < size_) {
    const uint64_t from = std::max(pos_, readahead_until_);
    readahead_until_ = std::min(size_, pos_ + kAhead);
    ::posix_fadvise(fd_, static_cast<off_t>(from), static_cast<off_t>(readahead_until_ - from), POSIX_FADV_WILLNEED);
  }
  buffer_.resize(kStreamBuffer);
  size_t got = 0;
  const size_t want = static_cast<size_t>(std::min<uint64_t>(kStreamBuffer, size_ - pos_));
  while (got < want) {
    ssize_t r = ::read(fd_, buffer_.data() + got, want - got);
    if (r < 0) {
      if (errno == EINTR) continue;
      return Errno("cannot read", path_);
    }
    if (r == 0) return Status::Corruption("file '" + path_ + "' shrank while it was read");
    got += static_cast<size_t>(r);
  }
  buffer_.resize(got);
  buffer_pos_ = 0;
  // The buffer starts at pos_; checksum its part below crc_end_ (callers read every byte in
  // order, so each buffer is checksummed exactly once).
  const uint64_t upto = std::min<uint64_t>(pos_ + got, crc_end_);
  if (upto > crc_pos_) {
    crc_ = Crc32Update(crc_, buffer_.data() + (crc_pos_ - pos_), static_cast<size_t>(upto - crc_pos_));
    crc_pos_ = upto;
  }
  return Status::OK();
}

Status FileSource::ReadBytes(void* dst, size_t n) {
  if (remaining() < n) {
    return Status::Corruption("file '" + path_ + "' is truncated: needed " + std::to_string(n) +
                              " more bytes at offset " + std::to_string(pos_) + ", " +
                              std::to_string(remaining()) + " left");
  }
  char* out = static_cast<char*>(dst);
  while (n > 0) {
    if (buffer_pos_ == buffer_.size()) FATHOM_RETURN_IF_ERROR(Fill());
    const size_t take = std::min(n, buffer_.size() - buffer_pos_);
    std::memcpy(out, buffer_.data() + buffer_pos_, take);
    buffer_pos_ += take;
    pos_ += take;
    out += take;
    n -= take;
  }
  return Status::OK();
}

Status FileSource::Skip(size_t n) {
  char scratch[4096];
  while (n > 0) {
    const size_t take = std::min(n, sizeof(scratch));
    FATHOM_RETURN_IF_ERROR(ReadBytes(scratch, take));
    n -= take;
  }
  return Status::OK();
}

Status ByteReader::ReadBytes(void* dst, size_t n) {
  if (remaining() < n) {
    return Status::Corruption(what_ + " is truncated: needed " + std::to_string(n) +
                              " more bytes at offset " + std::to_string(pos_) + ", " +
                              std::to_string(remaining()) + " left");
  }
  std::memcpy(dst, data_.data() + pos_, n);
  pos_ += n;
  return Status::OK();
}

Status ByteReader::Skip(size_t n) {
  if (remaining() < n) {
    return Status::Corruption(what_ + " is truncated at offset " + std::to_string(pos_));
  }
  pos_ += n;
  return Status::OK();
}

RemoveOnExit::~RemoveOnExit() {
  for (const std::string& path : paths_) {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
}

Status CheckFreeSpace(const std::string& path, uint64_t need, uint64_t reserve) {
  if (reserve == 0) return Status::OK();
  struct statvfs st;
  if (::statvfs(path.c_str(), &st) != 0) return Status::OK();
  const uint64_t free_bytes = uint64_t(st.f_bavail) * st.f_frsize;
  if (free_bytes >= need + reserve) return Status::OK();
  return Status::NoSpace("disk full: " + std::to_string(free_bytes >> 20) + " MiB free under '" + path +
                         "', this write needs " + std::to_string((need + (1 << 20) - 1) >> 20) +
                         " MiB plus a reserve of " + std::to_string(reserve >> 20) +
                         " MiB; nothing was written; writes resume once space is freed (reads go on)");
}

}  // namespace fathom
