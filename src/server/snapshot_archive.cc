#include "server/snapshot_archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <vector>

namespace fathom::server {
namespace fs = std::filesystem;

namespace {

struct ArchiveCloser {
  void operator()(struct archive* a) const { archive_write_free(a); }
};
struct ReaderCloser {
  void operator()(struct archive* a) const { archive_read_free(a); }
};
struct EntryFree {
  void operator()(struct archive_entry* e) const { archive_entry_free(e); }
};

Status ArchiveError(struct archive* a, const std::string& what) {
  const char* message = archive_error_string(a);
  return Status::IOError(what + ": " + (message != nullptr ? message : "unknown error"));
}

// A relative path with no empty, "." or ".." component (what extraction accepts).
bool SafeRelativePath(const std::string& path) {
  if (path.empty() || path.front() == '/') return false;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    const std::string part = path.substr(start, end - start);
    if (part == "..") return false;
    if (part.empty() && end != path.size()) return false;  // "a//b"
    start = end + 1;
  }
  return true;
}

}  // namespace

Status WriteSnapshotArchive(const std::string& dir, const std::string& archive) {
  const std::string tmp = archive + ".tmp";
  std::error_code ec;
  std::vector<fs::path> files;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (it->is_regular_file(ec)) files.push_back(it->path());
  }
  if (ec) return Status::IOError("cannot list '" + dir + "': " + ec.message());
  std::sort(files.begin(), files.end());
  std::unique_ptr<struct archive, ArchiveCloser> a(archive_write_new());
  archive_write_set_format_pax_restricted(a.get());
  if (archive_write_open_filename(a.get(), tmp.c_str()) != ARCHIVE_OK) return ArchiveError(a.get(), "cannot create " + tmp);
  auto fail = [&](Status s) {
    a.reset();
    fs::remove(tmp, ec);
    return s;
  };
  std::vector<char> buffer(1 << 20);
  for (const fs::path& file : files) {
    const std::string relative = fs::relative(file, dir, ec).generic_string();
    if (ec) return fail(Status::IOError("cannot name '" + file.string() + "': " + ec.message()));
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fail(Status::IOError("cannot open '" + file.string() + "': " + std::strerror(errno)));
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      ::close(fd);
      return fail(Status::IOError("cannot stat '" + file.string() + "': " + std::strerror(errno)));
    }
    std::unique_ptr<struct archive_entry, EntryFree> entry(archive_entry_new());
    archive_entry_set_pathname(entry.get(), relative.c_str());
    archive_entry_set_size(entry.get(), st.st_size);
    archive_entry_set_filetype(entry.get(), AE_IFREG);
    archive_entry_set_perm(entry.get(), 0644);
    archive_entry_set_mtime(entry.get(), st.st_mtime, 0);
    Status s;
    if (archive_write_header(a.get(), entry.get()) != ARCHIVE_OK) s = ArchiveError(a.get(), "cannot write " + tmp);
    while (s.ok()) {
      const ssize_t n = ::read(fd, buffer.data(), buffer.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) s = Status::IOError("cannot read '" + file.string() + "': " + std::strerror(errno));
      if (n <= 0) break;
      if (archive_write_data(a.get(), buffer.data(), size_t(n)) != n) s = ArchiveError(a.get(), "cannot write " + tmp);
    }
    ::close(fd);
    if (!s.ok()) return fail(s);
  }
  if (archive_write_close(a.get()) != ARCHIVE_OK) return fail(ArchiveError(a.get(), "cannot finish " + tmp));
  a.reset();
  const int fd = ::open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
  fs::rename(tmp, archive, ec);
  if (ec) return Status::IOError("cannot rename '" + tmp + "': " + ec.message());
  return Status::OK();
}

Status ExtractSnapshotArchive(const std::string& archive, const std::string& dir) {
  std::error_code ec;
  if (fs::exists(dir, ec)) return Status::AlreadyExists("'" + dir + "' already exists");
  std::unique_ptr<struct archive, ReaderCloser> a(archive_read_new());
  archive_read_support_format_tar(a.get());
  if (archive_read_open_filename(a.get(), archive.c_str(), 1 << 16) != ARCHIVE_OK) {
    return Status::InvalidArgument(std::string("not a snapshot archive (tar): ") + archive_error_string(a.get()));
  }
  fs::create_directories(dir, ec);
  if (ec) return Status::IOError("cannot create '" + dir + "': " + ec.message());
  auto fail = [&](Status s) {
    fs::remove_all(dir, ec);
    return s;
  };
  // The archives this server writes are plain (no compression, no sparse files), so what they
  // unpack to is never larger than they are: a bound that stops a crafted one filling the disk.
  const uint64_t limit = fs::file_size(archive, ec) + (uint64_t{1} << 16);
  uint64_t written = 0;
  std::vector<char> buffer(1 << 20);
  size_t entries = 0;
  while (true) {
    struct archive_entry* entry = nullptr;
    const int r = archive_read_next_header(a.get(), &entry);
    if (r == ARCHIVE_EOF) break;
    if (r != ARCHIVE_OK) return fail(Status::InvalidArgument(std::string("not a snapshot archive (tar): ") + archive_error_string(a.get())));
    const char* name = archive_entry_pathname(entry);
    const std::string path = name != nullptr ? name : "";
    const mode_t type = archive_entry_filetype(entry);
    if (!SafeRelativePath(path) || (type != AE_IFREG && type != AE_IFDIR)) {
      return fail(Status::InvalidArgument("snapshot archive entry '" + path +
                                          "' is not a file or directory inside the snapshot"));
    }
    const fs::path target = fs::path(dir) / path;
    if (type == AE_IFDIR) {
      fs::create_directories(target, ec);
      if (ec) return fail(Status::IOError("cannot create '" + target.string() + "': " + ec.message()));
      continue;
    }
    fs::create_directories(target.parent_path(), ec);
    if (ec) return fail(Status::IOError("cannot create '" + target.parent_path().string() + "': " + ec.message()));
    const int fd = ::open(target.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return fail(Status::IOError("cannot create '" + target.string() + "': " + std::strerror(errno)));
    Status s;
    while (s.ok()) {
      const la_ssize_t n = archive_read_data(a.get(), buffer.data(), buffer.size());
      if (n < 0) s = Status::InvalidArgument(std::string("damaged snapshot archive: ") + archive_error_string(a.get()));
      if (n <= 0) break;
      written += uint64_t(n);
      if (written > limit) {
        s = Status::InvalidArgument("snapshot archive unpacks to more than its own size: not one this server reads");
        break;
      }
      for (la_ssize_t done = 0; done < n && s.ok();) {
        const ssize_t w = ::write(fd, buffer.data() + done, size_t(n - done));
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) s = Status::IOError("cannot write '" + target.string() + "': " + std::strerror(errno));
        else done += w;
      }
    }
    ::close(fd);
    if (!s.ok()) return fail(s);
    ++entries;
  }
  if (entries == 0) return fail(Status::InvalidArgument("the snapshot archive holds no files"));
  return Status::OK();
}

}  // namespace fathom::server
