#include "index/vector_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "util/file.h"

namespace fathom {
namespace {

constexpr char kMagic[8] = {'F', 'A', 'T', 'H', 'O', 'M', 'V', 'S'};
constexpr uint32_t kVersion = 1;

Status Errno(const std::string& what, const std::string& path) {
  return Status::IOError(what + " '" + path + "': " + std::strerror(errno));
}

}  // namespace

Result<std::shared_ptr<FileVectorStore>> FileVectorStore::Open(const std::string& path, size_t dim,
                                                               bool* created) {
  if (dim == 0) return Status::InvalidArgument("vector store '" + path + "': dimension must be at least 1");
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return Errno("cannot open vector store", path);
  std::shared_ptr<FileVectorStore> store(new FileVectorStore(path, fd, dim));
  struct stat st;
  if (::fstat(fd, &st) != 0) return Errno("cannot stat vector store", path);
  std::string header(kHeaderBytes, '\0');
  if (st.st_size == 0) {
    std::memcpy(header.data(), kMagic, sizeof(kMagic));
    std::memcpy(header.data() + 8, &kVersion, 4);
    const uint64_t d = dim;
    std::memcpy(header.data() + 12, &d, 8);
    if (::pwrite(fd, header.data(), header.size(), 0) != ssize_t(header.size()) || ::fdatasync(fd) != 0) {
      return Errno("cannot write vector store header", path);
    }
    if (created != nullptr) *created = true;
    return store;
  }
  if (created != nullptr) *created = false;
  if (st.st_size < ssize_t(kHeaderBytes) ||
      ::pread(fd, header.data(), header.size(), 0) != ssize_t(header.size()) ||
      std::memcmp(header.data(), kMagic, sizeof(kMagic)) != 0) {
    return Status::Corruption("'" + path + "' is not a Fathom vector store (bad magic or header)");
  }
  uint32_t version;
  uint64_t stored_dim;
  std::memcpy(&version, header.data() + 8, 4);
  std::memcpy(&stored_dim, header.data() + 12, 8);
  if (version != kVersion) {
    return Status::NotSupported("vector store '" + path + "' has format version " + std::to_string(version) +
                                "; this build reads version " + std::to_string(kVersion));
  }
  if (stored_dim != dim) {
    return Status::Corruption("vector store '" + path + "' holds " + std::to_string(stored_dim) +
                              "-dimensional vectors, expected " + std::to_string(dim));
  }
  return store;
}

FileVectorStore::FileVectorStore(std::string path, int fd, size_t dim)
    : path_(std::move(path)), fd_(fd), dim_(dim), row_bytes_(dim * sizeof(float)) {}

FileVectorStore::~FileVectorStore() { ::close(fd_); }

Status FileVectorStore::Write(label_t label, const float* v) {
  if (label < 0) return Status::InvalidArgument("vector store: negative label");
  return PwriteAll(fd_, v, row_bytes_, Offset(label), path_);
}

Status FileVectorStore::Read(size_t n, const label_t* labels, float* out) const {
  // Rows already in the page cache are copied without blocking (RWF_NOWAIT); for the others
  // the kernel is first asked for all of them at once (WILLNEED starts their reads in
  // parallel), then each is read.
  std::vector<size_t> missing;
  for (size_t i = 0; i < n; ++i) {
    struct iovec iov = {out + i * dim_, row_bytes_};
    ssize_t r = ::preadv2(fd_, &iov, 1, static_cast<off_t>(Offset(labels[i])), RWF_NOWAIT);
    if (r != ssize_t(row_bytes_)) missing.push_back(i);
  }
  if (missing.size() > 1) {
    for (size_t i : missing) {
      ::posix_fadvise(fd_, static_cast<off_t>(Offset(labels[i])), static_cast<off_t>(row_bytes_),
                      POSIX_FADV_WILLNEED);
    }
  }
  for (size_t i : missing) {
    char* p = reinterpret_cast<char*>(out + i * dim_);
    size_t left = row_bytes_;
    uint64_t offset = Offset(labels[i]);
    while (left > 0) {
      ssize_t r = ::pread(fd_, p, left, static_cast<off_t>(offset));
      if (r < 0) {
        if (errno == EINTR) continue;
        return Errno("cannot read from vector store", path_);
      }
      if (r == 0) {
        return Status::Corruption("vector store '" + path_ + "' has no row for label " +
                                  std::to_string(labels[i]) + " (the file is too short)");
      }
      p += r;
      left -= size_t(r);
      offset += uint64_t(r);
    }
  }
  return Status::OK();
}

Status FileVectorStore::Sync() {
  if (::fdatasync(fd_) != 0) return Errno("cannot sync vector store", path_);
  return Status::OK();
}

uint64_t FileVectorStore::disk_bytes() const {
  struct stat st;
  if (::fstat(fd_, &st) != 0) return 0;
  return uint64_t(st.st_blocks) * 512;
}

}  // namespace fathom
