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
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  const std::string dir = parent.empty() ? std::string(".") : parent.string();
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return Status::OK();
}

uint32_t Crc32(std::string_view data) {
  uLong crc = crc32(0L, Z_NULL, 0);
  // zlib takes uInt lengths; feed large buffers in pieces.
  while (!data.empty()) {
    uInt n = static_cast<uInt>(std::min<size_t>(data.size(), 1u << 30));
    crc = crc32(crc, reinterpret_cast<const Bytef*>(data.data()), n);
    data.remove_prefix(n);
  }
  return static_cast<uint32_t>(crc);
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
